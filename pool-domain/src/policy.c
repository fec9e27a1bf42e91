/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "pool-domain/policy.h"

void pd_health_policy_init(pd_health_policy *p) {
        *p = (pd_health_policy) {
                .interval_ms = 1000,
                .timeout_ms = 1000,
                .startup_timeout_ms = 120000,
                .stall_timeout_ms = 0,
                .failure_threshold = 3,
        };
}

int pd_health_policy_validate(const pd_health_policy *p, pd_error *err) {
        if (!p)
                return -EINVAL;

        /* 0 would probe in a busy loop. */
        if (p->interval_ms <= 0)
                return pd_error_set(err, "health.interval_ms: must be > 0, got %" PRId64,
                                    p->interval_ms);
        /* The timeouts may be 0: no limit, as curl reads a 0 timeout. */
        if (p->timeout_ms < 0)
                return pd_error_set(err, "health.timeout_ms: must be >= 0, got %" PRId64,
                                    p->timeout_ms);
        if (p->startup_timeout_ms < 0)
                return pd_error_set(err, "health.startup_timeout_ms: must be >= 0, got %" PRId64,
                                    p->startup_timeout_ms);
        if (p->stall_timeout_ms < 0)
                return pd_error_set(err, "health.stall_timeout_ms: must be >= 0, got %" PRId64,
                                    p->stall_timeout_ms);
        if (p->failure_threshold < 1)
                return pd_error_set(err, "health.failure_threshold: must be at least 1");
        return 0;
}

static const char *const restart_mode_table[PD_RESTART_MODE_MAX] = {
        [PD_RESTART_ON_FAILURE] = "on-failure",
        [PD_RESTART_ALWAYS]     = "always",
        [PD_RESTART_NEVER]      = "never",
};

const char *pd_restart_mode_to_string(pd_restart_mode mode) {
        return (unsigned) mode < PD_RESTART_MODE_MAX ? restart_mode_table[mode] : NULL;
}

int pd_restart_mode_from_string(const char *name, pd_restart_mode *out) {
        if (!name)
                return PD_E_INVALID;
        for (unsigned i = 0; i < PD_RESTART_MODE_MAX; i++)
                if (strcmp(name, restart_mode_table[i]) == 0) {
                        if (out)
                                *out = (pd_restart_mode) i;
                        return 0;
                }
        return PD_E_INVALID;
}

void pd_policy_init(pd_policy *p) {
        pd_health_policy_init(&p->health);
        pd_backoff_policy_init(&p->backoff);
        pd_breaker_policy_init(&p->breaker);
        pd_storm_policy_init(&p->storm);
        p->stop_grace_ms = 5000;
        p->lease_ttl_ms = 600000;
        p->restart = PD_RESTART_ON_FAILURE;
}

int pd_policy_validate(const pd_policy *p, pd_error *err) {
        int r;

        if (!p)
                return -EINVAL;

        /* Same order as the config file, so the first complaint is the
         * first one an operator reading the file top-down would meet. */
        r = pd_health_policy_validate(&p->health, err);
        if (r != 0)
                return r;
        r = pd_backoff_policy_validate(&p->backoff, err);
        if (r != 0)
                return r;
        r = pd_breaker_policy_validate(&p->breaker, err);
        if (r != 0)
                return r;
        r = pd_storm_policy_validate(&p->storm, err);
        if (r != 0)
                return r;
        /* 0 is allowed: SIGKILL right after SIGTERM. */
        if (p->stop_grace_ms < 0)
                return pd_error_set(err, "stop_grace_ms: must be >= 0, got %" PRId64,
                                    p->stop_grace_ms);
        if (p->lease_ttl_ms <= 0)
                return pd_error_set(err, "lease_ttl_ms: must be > 0, got %" PRId64,
                                    p->lease_ttl_ms);
        if ((unsigned) p->restart >= PD_RESTART_MODE_MAX)
                return pd_error_set(err, "restart: must be \"on-failure\", \"always\" or \"never\"");
        return 0;
}
