/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "pool-domain/policy.h"
#include "pool-services/conf/policy.h"

/* The domain policy inside a ps_policy (borrowed). */
const pd_policy *ps_policy_domain(const ps_policy *policy);
/* The health probe path, "/health" by default (borrowed). */
const char *ps_policy_health_path(const ps_policy *policy);
/* Whether a first 200 counts only once the engine is seen holding the
 * socket listening on its port (health.verify_listener, true by default). */
bool ps_policy_verify_listener(const ps_policy *policy);
