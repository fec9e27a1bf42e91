/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include <jansson.h>

/*
 * The supervision policy of a pool: health probing, backoff, breaker,
 * storm limit, stop grace, lease TTL. Built from the defaults
 * (docs/configuration.md, "defaults") and changed through JSON in the shape of the config file's
 * "defaults" object, so the config, the API and tests speak one language:
 *
 *   {"health": {"interval_ms": 50}, "backoff": {"initial_ms": 10}}
 */
typedef struct ps_policy ps_policy;

ps_policy *ps_policy_new(void);
ps_policy *ps_policy_copy(const ps_policy *policy);
ps_policy *ps_policy_free(ps_policy *policy);

/*
 * Applies the keys present in obj over the current values and validates
 * the result. Unknown keys, wrong types (5000.0 where an integer belongs),
 * out-of-range and inconsistent values are errors; the message names the
 * place, prefixed with `where` ("defaults", "pools[1].policy"):
 * "defaults.backoff.factor: must be >= 1, got 0.5". On error the policy
 * is left unchanged. Returns 0 or -EINVAL.
 */
int ps_policy_apply_json(ps_policy *policy, const json_t *obj, const char *where,
                         char *err, size_t errlen);

/* The policy as JSON in the same shape (for snapshots and tests). */
json_t *ps_policy_to_json(const ps_policy *policy);
