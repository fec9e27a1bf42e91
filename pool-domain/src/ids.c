/* SPDX-License-Identifier: MIT */
#include "pool-domain/ids.h"
