/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pool-domain/crash.h"
#include "pool-domain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pd_breaker_state {
        PD_BREAKER_CLOSED,
        PD_BREAKER_OPEN,
        PD_BREAKER_HALF_OPEN,
        PD_BREAKER_STATE_MAX,
} pd_breaker_state;

const char *pd_breaker_state_to_string(pd_breaker_state s);

/* The open period doubles after each failed trial, up to this bound. */
#define PD_BREAKER_OPEN_MAX_MS (24LL * 3600 * 1000)

typedef struct pd_breaker_policy {
        unsigned threshold;         /* 5: opens at the 5th consecutive failure */
        int64_t open_ms;            /* 300000                                 */
        int64_t close_after_ms;     /* 60000: a run this long is stable       */
        bool separate_gpu_circuit;  /* false: one circuit for every failure   */
} pd_breaker_policy;

void pd_breaker_policy_init(pd_breaker_policy *p);
int pd_breaker_policy_validate(const pd_breaker_policy *p, pd_error *err);

typedef struct pd_breaker {
        pd_breaker_state state;
        unsigned failures;          /* consecutive, reset only by a stable run */
        unsigned opens;             /* how many times it opened, ever         */
        int64_t open_until_ms;      /* OPEN: when it turns half-open          */
        int64_t open_period_ms;     /* current period; doubles on failed trial */
        bool trial_taken;           /* HALF_OPEN: the one trial was handed out */
} pd_breaker;

void pd_breaker_init(pd_breaker *b);

/*
 * OPEN becomes HALF_OPEN once open_until_ms has come. The domain has no
 * timers, so every other call below does this first, at the time it is
 * given; a caller that reports transitions calls this on its own first, so
 * that turning half-open is told apart from what the next call does (a
 * failed trial seen late is open -> half_open -> open, not open -> open).
 * Returns true when the state changed.
 */
bool pd_breaker_advance(pd_breaker *b, int64_t now_ms);

/*
 * May a restart begin now? CLOSED: yes. OPEN: no, until open_until_ms, when
 * it becomes HALF_OPEN. HALF_OPEN: yes exactly once (the trial); further
 * calls say no until the trial is judged.
 */
bool pd_breaker_allow(pd_breaker *b, const pd_breaker_policy *p, int64_t now_ms);

/* Counts a failure. Opens at the threshold-th consecutive failure; a failed
 * trial reopens with the period doubled. Returns true when it (re)opened. */
bool pd_breaker_record_failure(pd_breaker *b, const pd_breaker_policy *p,
                               int64_t now_ms);

/* Tells the breaker an engine has run since started_at_ms. Once the run has
 * lasted close_after_ms it is stable: failures return to 0 and a HALF_OPEN
 * breaker closes (its period returns to the policy's). Returns true when
 * this call changed anything. Merely becoming ready changes nothing. */
bool pd_breaker_record_running(pd_breaker *b, const pd_breaker_policy *p,
                               int64_t started_at_ms, int64_t now_ms);

/* Opens at once (a restart storm). Counts as an open. */
void pd_breaker_trip(pd_breaker *b, const pd_breaker_policy *p, int64_t now_ms);

/* Operator reset: CLOSED, failures 0, period back to the policy's. */
void pd_breaker_reset(pd_breaker *b);

/*
 * The circuits of one replica: a general one and, when the policy says so, a
 * separate one for GPU failures (cuda_error, driver_error, vram_oom).
 */
typedef struct pd_breaker_set {
        pd_breaker circuit[PD_CRASH_FAMILY_MAX];
} pd_breaker_set;

void pd_breaker_set_init(pd_breaker_set *s);
/* The circuit that counts failures of this class under this policy. */
pd_breaker *pd_breaker_set_for(pd_breaker_set *s, const pd_breaker_policy *p,
                               pd_crash_class cls);
/* A restart is allowed only when every circuit allows it. */
bool pd_breaker_set_allow(pd_breaker_set *s, const pd_breaker_policy *p,
                          int64_t now_ms);
bool pd_breaker_set_record_failure(pd_breaker_set *s, const pd_breaker_policy *p,
                                   pd_crash_class cls, int64_t now_ms);
bool pd_breaker_set_record_running(pd_breaker_set *s, const pd_breaker_policy *p,
                                   int64_t started_at_ms, int64_t now_ms);
void pd_breaker_set_reset(pd_breaker_set *s);
/* A restart storm opens the general circuit at once (it counts every
 * class); the GPU circuit keeps its own state. */
void pd_breaker_set_trip(pd_breaker_set *s, const pd_breaker_policy *p,
                         int64_t now_ms);
/* The most restrictive state of the set (OPEN > HALF_OPEN > CLOSED), and the
 * latest open_until_ms among open circuits. */
pd_breaker_state pd_breaker_set_state(const pd_breaker_set *s);
int64_t pd_breaker_set_open_until(const pd_breaker_set *s);
/* pd_breaker_advance() on every circuit; true when any changed. */
bool pd_breaker_set_advance(pd_breaker_set *s, int64_t now_ms);
/* The earliest open_until_ms among open circuits: when the next one turns
 * half-open. 0 when none is open. */
int64_t pd_breaker_set_next_half_open(const pd_breaker_set *s);

#ifdef __cplusplus
}
#endif
