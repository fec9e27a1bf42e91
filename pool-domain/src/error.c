/* SPDX-License-Identifier: MIT */
#include "pool-domain/error.h"
