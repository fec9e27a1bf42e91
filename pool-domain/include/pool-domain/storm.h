/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pool-domain/crash.h"
#include "pool-domain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Restart-storm limiter.
 *
 * At most `limit` restarts in any sliding `window_ms`: a restart that would
 * be the limit+1-th is delayed until the oldest one leaves the window (a
 * restart at t counts in the window at `now` while now - t < window_ms).
 * With the defaults, restarts at t = 0..7 s and 37, 38 s are allowed; one
 * more at 39 s runs at t = 60 s.
 *
 * A storm is `limit` restarts within `burst_window_ms`: the caller opens the
 * breaker and raises a critical alert. More than `warn_above` restarts in the
 * window is a warning. A storm is classified by the dominant crash class of
 * the restarts in the burst.
 */
#define PD_STORM_LIMIT_MAX 64

typedef struct pd_storm_policy {
        unsigned limit;             /* 10    */
        int64_t window_ms;          /* 60000 */
        int64_t burst_window_ms;    /* 30000 */
        unsigned warn_above;        /* 5     */
} pd_storm_policy;

void pd_storm_policy_init(pd_storm_policy *p);
/* Rejects limit 0 or above PD_STORM_LIMIT_MAX, windows <= 0, a burst window
 * longer than the window, warn_above >= limit. */
int pd_storm_policy_validate(const pd_storm_policy *p, pd_error *err);

typedef enum pd_storm_kind {
        PD_STORM_CRASH,             /* exit codes                        */
        PD_STORM_SIGNAL,            /* killed by signals                 */
        PD_STORM_OOM,               /* vram_oom or host_oom              */
        PD_STORM_CUDA,              /* cuda_error                        */
        PD_STORM_DRIVER,            /* driver_error                      */
        PD_STORM_TIMEOUT,           /* health/startup/stall timeouts     */
        PD_STORM_PREFLIGHT,         /* preflight refusals                */
        PD_STORM_KIND_MAX,
} pd_storm_kind;

/* "crash_storm", "signal_storm", "oom_storm", "cuda_storm", "driver_storm",
 * "timeout_storm", "preflight_storm". */
const char *pd_storm_kind_to_string(pd_storm_kind kind);
/* One sentence an operator can act on. */
const char *pd_storm_kind_hint(pd_storm_kind kind);
pd_storm_kind pd_storm_kind_for_class(pd_crash_class cls);

typedef struct pd_storm_entry {
        int64_t at_ms;
        pd_crash_class cls;
} pd_storm_entry;

typedef struct pd_storm {
        pd_storm_entry ring[PD_STORM_LIMIT_MAX];  /* oldest first from head */
        unsigned head;
        unsigned count;
        unsigned storms;            /* storms seen, ever                  */
        bool override;              /* next admit runs at once             */
} pd_storm;

typedef struct pd_storm_verdict {
        int64_t run_at_ms;          /* when the restart may run (>= now)   */
        bool delayed;               /* run_at_ms > now                     */
        unsigned in_window;         /* restarts in the window, this one too */
        bool warn;                  /* in_window > warn_above              */
        bool storm;                 /* limit restarts within burst window  */
        bool overridden;            /* an operator override let it through */
        pd_storm_kind kind;         /* valid when storm                    */
} pd_storm_verdict;

void pd_storm_init(pd_storm *s);

/*
 * Admits one restart of class `cls` requested at now_ms: decides when it may
 * run, records it at that time and reports warning and storm. An override
 * (pd_storm_allow_once) makes it run at now_ms, is consumed, and never
 * reports a storm; the restart is still recorded, so the window is kept.
 */
void pd_storm_admit(pd_storm *s, const pd_storm_policy *p, int64_t now_ms,
                    pd_crash_class cls, pd_storm_verdict *out);

/* Operator override: the next restart runs at once, without resetting the
 * window or the storm count. */
void pd_storm_allow_once(pd_storm *s);

/* Restarts that count in the window at now_ms (scheduled ones included). */
unsigned pd_storm_in_window(const pd_storm *s, const pd_storm_policy *p,
                            int64_t now_ms);

#ifdef __cplusplus
}
#endif
