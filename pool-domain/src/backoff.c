/* SPDX-License-Identifier: MIT */
#include "pool-domain/backoff.h"
