/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "pool-domain/backoff.h"
#include "pool-domain/breaker.h"
#include "pool-domain/error.h"
#include "pool-domain/storm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pd_health_policy {
        int64_t interval_ms;        /* 1000: probe period while ready      */
        int64_t timeout_ms;         /* 1000: one probe                     */
        int64_t startup_timeout_ms; /* 120000: spawn to first probe ok     */
        int64_t stall_timeout_ms;   /* 0: disabled                         */
        unsigned failure_threshold; /* 3 consecutive failures while ready  */
} pd_health_policy;

/* Which exits restart the engine on their own (the key `restart`). An exit
 * the daemon asked for (stop, drain, reload) never does. */
typedef enum pd_restart_mode {
        PD_RESTART_ON_FAILURE,      /* default: failures, not an exit 0     */
        PD_RESTART_ALWAYS,          /* an unrequested exit 0 too, with the
                                       same backoff                          */
        PD_RESTART_NEVER,           /* nothing: down until an operator
                                       restart or preload                    */
        PD_RESTART_MODE_MAX,
} pd_restart_mode;

/* "on-failure", "always", "never"; NULL out of range. */
const char *pd_restart_mode_to_string(pd_restart_mode mode);
/* 0 and *out set, or PD_E_INVALID for an unknown name. */
int pd_restart_mode_from_string(const char *name, pd_restart_mode *out);

/* Everything that governs one pool; pd_policy_init() fills in the
 * defaults docs/configuration.md lists. */
typedef struct pd_policy {
        pd_health_policy health;
        pd_backoff_policy backoff;
        pd_breaker_policy breaker;
        pd_storm_policy storm;
        int64_t stop_grace_ms;      /* 5000: SIGTERM, then SIGKILL          */
        int64_t lease_ttl_ms;       /* 600000                              */
        pd_restart_mode restart;    /* PD_RESTART_ON_FAILURE               */
} pd_policy;

void pd_health_policy_init(pd_health_policy *p);
int pd_health_policy_validate(const pd_health_policy *p, pd_error *err);

void pd_policy_init(pd_policy *p);
/* Validates every part; the first problem found is reported with its
 * dotted field name ("breaker.threshold: must be at least 1"). */
int pd_policy_validate(const pd_policy *p, pd_error *err);

#ifdef __cplusplus
}
#endif
