/* SPDX-License-Identifier: MIT */
#include "pool-domain/crash.h"
