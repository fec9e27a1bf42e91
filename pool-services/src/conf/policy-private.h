/* SPDX-License-Identifier: MIT */
#pragma once

#include "pool-domain/policy.h"
#include "pool-services/conf/policy.h"

/* The domain policy inside a ps_policy (borrowed). */
const pd_policy *ps_policy_domain(const ps_policy *policy);
/* The health probe path, "/health" by default (borrowed). */
const char *ps_policy_health_path(const ps_policy *policy);
