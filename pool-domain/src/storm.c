/* SPDX-License-Identifier: MIT */
#include "pool-domain/storm.h"
