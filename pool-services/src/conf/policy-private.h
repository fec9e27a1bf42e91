/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pool-domain/policy.h"
#include "pool-services/conf/policy.h"

/* The domain policy inside a ps_policy (borrowed). */
const pd_policy *ps_policy_domain(const ps_policy *policy);
/* The health probe path, "/health" by default (borrowed). */
const char *ps_policy_health_path(const ps_policy *policy);
/* Whether a first 200 counts only once the engine is seen holding the
 * socket listening on its port (health.verify_listener, true by default). */
bool ps_policy_verify_listener(const ps_policy *policy);

/*
 * How long an engine leaving service (a drain, or the old engine of a
 * reload) stays out of rotation after its leases end when it shows no
 * in-flight count of its own (llama-server without --metrics): requests
 * sent to it without a lease may still be running. "reload.retire_grace_ms".
 */
#define PS_POLICY_RETIRE_GRACE_DEFAULT_MS 5000
int64_t ps_policy_retire_grace_ms(const ps_policy *policy);
