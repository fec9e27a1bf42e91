/* SPDX-License-Identifier: MIT */
#include "pool-domain/lease.h"
