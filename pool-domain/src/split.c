/* SPDX-License-Identifier: MIT */
#include "pool-domain/split.h"
