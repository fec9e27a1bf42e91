/* SPDX-License-Identifier: MIT */
#pragma once

/* Every pool-domain header: #include <pool-domain/pool-domain.h>. */
#include "pool-domain/version.h"

#include "pool-domain/backoff.h"
#include "pool-domain/breaker.h"
#include "pool-domain/cause.h"
#include "pool-domain/crash.h"
#include "pool-domain/devmask.h"
#include "pool-domain/error.h"
#include "pool-domain/ids.h"
#include "pool-domain/lease.h"
#include "pool-domain/lifecycle.h"
#include "pool-domain/policy.h"
#include "pool-domain/rng.h"
#include "pool-domain/split.h"
#include "pool-domain/storm.h"
