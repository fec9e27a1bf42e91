/* SPDX-License-Identifier: MIT */
#include "pool-domain/policy.h"
