/* SPDX-License-Identifier: MIT */
#include "pool-domain/breaker.h"
