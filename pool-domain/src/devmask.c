/* SPDX-License-Identifier: MIT */
#include "pool-domain/devmask.h"
