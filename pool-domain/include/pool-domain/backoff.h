/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pool-domain/crash.h"
#include "pool-domain/error.h"
#include "pool-domain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Restart delay. All times are milliseconds in int64_t so that validation can
 * reject negative values instead of silently wrapping them.
 *
 * For the n-th consecutive crash (n >= 1):
 *   base  = min(initial * factor^(n-1) * class_multiplier[cls], max)
 *   delay = base * (1 + jitter * u), u uniform in [-1, 1)
 *   delay = clamp(delay, min, max)
 */
typedef struct pd_backoff_policy {
        int64_t initial_ms;         /* 1000   */
        double factor;              /* 2.0    */
        int64_t min_ms;             /* 0      */
        int64_t max_ms;             /* 60000  */
        double jitter;              /* 0.1    */
        int64_t stable_reset_ms;    /* 300000 */
        double class_multiplier[PD_CRASH_CLASS_MAX];  /* 1.0; cuda_error 2.0 */
} pd_backoff_policy;

void pd_backoff_policy_init(pd_backoff_policy *p);
/* Rejects negative delays, factor < 1, jitter outside [0, 1), min > max,
 * initial of 0, multipliers <= 0; the message names the field
 * ("backoff.factor: must be >= 1, got 0.5"). */
int pd_backoff_policy_validate(const pd_backoff_policy *p, pd_error *err);

/* The delay for the n-th consecutive crash (n >= 1; 0 is treated as 1).
 * rng may be NULL when p->jitter is 0. */
int64_t pd_backoff_delay(const pd_backoff_policy *p, unsigned n,
                         pd_crash_class cls, pd_rng *rng);

typedef struct pd_backoff {
        unsigned crashes;           /* consecutive crashes since a stable run */
        int64_t last_delay_ms;
} pd_backoff;

void pd_backoff_init(pd_backoff *b);
/* Counts one crash and returns the delay before the next restart. */
int64_t pd_backoff_on_crash(pd_backoff *b, const pd_backoff_policy *p,
                            pd_crash_class cls, pd_rng *rng);
/* Tells the policy an engine has run since started_at_ms. Once the run has
 * lasted stable_reset_ms the crash count returns to 0 (the next delay is
 * `initial` again); returns true when this call reset it. */
bool pd_backoff_on_running(pd_backoff *b, const pd_backoff_policy *p,
                           int64_t started_at_ms, int64_t now_ms);
void pd_backoff_reset(pd_backoff *b);

#ifdef __cplusplus
}
#endif
