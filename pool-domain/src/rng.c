/* SPDX-License-Identifier: MIT */
#include "pool-domain/rng.h"
