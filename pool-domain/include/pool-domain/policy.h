/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "pool-domain/backoff.h"
#include "pool-domain/breaker.h"
#include "pool-domain/error.h"
#include "pool-domain/storm.h"

typedef struct pd_health_policy {
        int64_t interval_ms;        /* 1000: probe period while ready      */
        int64_t timeout_ms;         /* 1000: one probe                     */
        int64_t startup_timeout_ms; /* 120000: spawn to first probe ok     */
        int64_t stall_timeout_ms;   /* 0: disabled                         */
        unsigned failure_threshold; /* 3 consecutive failures while ready  */
} pd_health_policy;

/* Everything that governs one pool; pd_policy_init() fills in the
 * defaults docs/configuration.md lists. */
typedef struct pd_policy {
        pd_health_policy health;
        pd_backoff_policy backoff;
        pd_breaker_policy breaker;
        pd_storm_policy storm;
        int64_t stop_grace_ms;      /* 5000: SIGTERM, then SIGKILL          */
        int64_t lease_ttl_ms;       /* 600000                              */
} pd_policy;

void pd_health_policy_init(pd_health_policy *p);
int pd_health_policy_validate(const pd_health_policy *p, pd_error *err);

void pd_policy_init(pd_policy *p);
/* Validates every part; the first problem found is reported with its
 * dotted field name ("breaker.threshold: must be at least 1"). */
int pd_policy_validate(const pd_policy *p, pd_error *err);
