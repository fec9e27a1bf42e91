/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The replica lifecycle as one pure transition function:
 *
 *     (state, event, policy, now) -> (new state, actions)
 *
 * pool-services turns what happens (a process spawned, a probe answered, a
 * pidfd fired, an operator asked) into pd_event values, calls
 * pd_lifecycle_step(), and carries out the actions in order. The machine
 * never does I/O and never reads a clock: `now_ms` and the RNG are passed
 * in, so tests drive it event by event.
 *
 *   empty -> preloading -> ready -> draining -> stopped
 *                 |          |  \-> reloading -> ready
 *                 v          v
 *              backoff <-----+  (crash: restart after a delay)
 *                 |
 *                 v
 *              failed     (breaker open: no restart until its period ends)
 *
 * plus `stopping` while a stop waits for the engine to exit.
 *
 * A replica can hold two engine instances: the primary, and a surge instance
 * that a surge reload starts beside it. Exits the daemon asked for (stop,
 * drain, reload, operator restart) are never counted as crashes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-domain/backoff.h"
#include "pool-domain/breaker.h"
#include "pool-domain/crash.h"
#include "pool-domain/policy.h"
#include "pool-domain/rng.h"
#include "pool-domain/storm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pd_state {
        PD_STATE_EMPTY,          /* registered, nothing started yet          */
        PD_STATE_PRELOADING,     /* spawning / loading until the first probe ok */
        PD_STATE_READY,
        PD_STATE_DRAINING,       /* no new leases; stops when leases reach 0  */
        PD_STATE_RELOADING,      /* see pd_reload_phase                       */
        PD_STATE_BACKOFF,        /* waiting to restart after a failure        */
        PD_STATE_FAILED,         /* breaker open: no restart until it allows  */
        PD_STATE_STOPPING,       /* stop requested, waiting for the exit      */
        PD_STATE_STOPPED,
        PD_STATE_MAX,
} pd_state;

typedef enum pd_reload_phase {
        PD_RELOAD_NONE,
        PD_RELOAD_STAGING,        /* new model being verified; old serves     */
        PD_RELOAD_DRAIN_OLD,      /* drain-first: old refuses new leases      */
        PD_RELOAD_STOP_OLD,       /* drain-first: old asked to exit           */
        PD_RELOAD_START_NEW,      /* drain-first: new engine loading          */
        PD_RELOAD_ROLLBACK_STOP,  /* new engine failed: waiting for its exit  */
        PD_RELOAD_ROLLBACK_START, /* old engine restarting                    */
        PD_RELOAD_SURGE_START,    /* surge: new engine loading beside the old */
        PD_RELOAD_SURGE_RETIRE,   /* surge: new serves; old drains its leases */
        PD_RELOAD_SURGE_STOP_OLD, /* surge: old asked to exit                 */
        PD_RELOAD_PHASE_MAX,
} pd_reload_phase;

typedef enum pd_reload_strategy {
        PD_RELOAD_DRAIN_FIRST,    /* default: drain, stop, start, or roll back */
        PD_RELOAD_SURGE,          /* start beside the old one, then retire it  */
        PD_RELOAD_STRATEGY_MAX,
} pd_reload_strategy;

typedef enum pd_instance_id {
        PD_INSTANCE_PRIMARY,
        PD_INSTANCE_SURGE,
        PD_INSTANCE_MAX,
} pd_instance_id;

/* Which PreparedEngine a spawn uses: the one the pool runs, or the one a
 * reload staged. */
typedef enum pd_spec {
        PD_SPEC_CURRENT,
        PD_SPEC_STAGED,
        PD_SPEC_MAX,
} pd_spec;

typedef enum pd_timer {
        PD_TIMER_RESTART,         /* backoff over, or breaker period over    */
        PD_TIMER_STARTUP,         /* engine not ready in time                */
        PD_TIMER_KILL,            /* stop grace over: SIGKILL                */
        PD_TIMER_DEADLINE,        /* drain deadline                          */
        PD_TIMER_STABLE,          /* a run reached a stability mark          */
        PD_TIMER_BREAKER,         /* an open circuit's period is over        */
        PD_TIMER_MAX,
} pd_timer;

typedef enum pd_event_type {
        PD_EV_PRELOAD,            /* operator or config asks for the engine  */
        PD_EV_PREFLIGHT_FAILED,   /* refused before spawn: refusal, detail   */
        PD_EV_SPAWNED,
        PD_EV_SPAWN_FAILED,       /* exec failed; detail says why            */
        PD_EV_PROBE_OK,
        PD_EV_PROBE_FAILED,       /* detail: "HTTP 503", "connection refused" */
        PD_EV_PROBE_TIMEOUT,
        PD_EV_STALL,              /* no progress for stall_timeout_ms        */
        PD_EV_EXITED,             /* exit                                    */
        PD_EV_LOG_ERROR,          /* cls found in the engine log             */
        PD_EV_DRAIN,              /* deadline_ms                             */
        PD_EV_LEASES_ZERO,        /* the instance being drained has none left */
        PD_EV_RELOAD,             /* strategy, deadline_ms                   */
        PD_EV_RELOAD_STAGED,      /* ok; detail says why not                 */
        PD_EV_ROLLBACK,           /* abandon the reload in progress          */
        PD_EV_DRIVER_RESET,       /* the GPU under this replica failed       */
        PD_EV_HANDOFF_APPEARED,   /* external replica registered             */
        PD_EV_HANDOFF_VANISHED,
        PD_EV_BREAKER_RESET,      /* operator closes the breaker             */
        PD_EV_RESTART,            /* operator: one restart, even if open     */
        PD_EV_STOP,
        PD_EV_TIMER,              /* timer fired                             */
        PD_EVENT_TYPE_MAX,
} pd_event_type;

typedef struct pd_event {
        pd_event_type type;
        pd_instance_id instance;
        pd_timer timer;                 /* PD_EV_TIMER                       */
        pd_exit exit;                   /* PD_EV_EXITED                      */
        pd_crash_class cls;             /* PD_EV_LOG_ERROR                   */
        bool ok;                        /* PD_EV_RELOAD_STAGED               */
        int64_t deadline_ms;            /* PD_EV_DRAIN, PD_EV_RELOAD         */
        pd_reload_strategy strategy;    /* PD_EV_RELOAD                      */
        int refusal;                    /* PD_EV_PREFLIGHT_FAILED: the caller's
                                           own code for the refusal, handed
                                           back untouched in the reply       */
        const char *detail;             /* borrowed human text, may be NULL  */
} pd_event;

typedef enum pd_action_type {
        PD_ACT_SPAWN,             /* instance, spec                          */
        PD_ACT_PROBE_START,       /* instance                                */
        PD_ACT_PROBE_STOP,        /* instance                                */
        PD_ACT_SIGNAL_TERM,       /* instance's process group                */
        PD_ACT_SIGNAL_KILL,
        PD_ACT_TIMER_ARM,         /* timer, instance, at_ms                  */
        PD_ACT_TIMER_CANCEL,      /* timer, instance                         */
        PD_ACT_WRITE_HANDOFF,     /* the primary became ready                */
        PD_ACT_REMOVE_HANDOFF,
        PD_ACT_STAGE,             /* verify the model a reload asks for      */
        PD_ACT_COMMIT_STAGED,     /* the staged spec becomes current         */
        PD_ACT_DISCARD_STAGED,
        PD_ACT_PROMOTE_SURGE,     /* swap instances: surge becomes primary   */
        PD_ACT_DROP_LEASES,       /* instance: leases ended by force         */
        PD_ACT_REPLY,             /* reply, outcome, refusal, cls, text      */
        PD_ACT_ALERT,             /* alert, cls, text                        */
        PD_ACT_BREAKER_TRANSITION, /* circuit, breaker_from/to, failures     */
        PD_ACTION_TYPE_MAX,
} pd_action_type;

/* The request a PD_ACT_REPLY answers. */
typedef enum pd_reply {
        PD_REPLY_NONE,
        PD_REPLY_PRELOAD,
        PD_REPLY_DRAIN,
        PD_REPLY_RELOAD,
        PD_REPLY_MAX,
} pd_reply;

/*
 * Why a request ended, as a PD_ACT_REPLY says it. Code acts on this and on
 * cls, never on the text: the text is for people and may be reworded.
 */
typedef enum pd_outcome {
        PD_OUTCOME_OK,              /* ready, reloaded, drained (a drain that
                                       hit its deadline too: force_stopped) */
        PD_OUTCOME_PREFLIGHT,       /* refused before the spawn; refusal is
                                       the caller's code for it            */
        PD_OUTCOME_SPAWN_FAILED,    /* the engine could not be started      */
        PD_OUTCOME_STARTUP_TIMEOUT, /* not ready within the startup timeout */
        PD_OUTCOME_CRASHED,         /* the engine failed while starting: it
                                       exited, stalled, or its GPU failed;
                                       cls says which                      */
        PD_OUTCOME_STAGE_FAILED,    /* reload: the new model is not usable  */
        PD_OUTCOME_DRAIN_TIMEOUT,   /* reload: leases outlived the drain
                                       budget; the old engine serves on    */
        PD_OUTCOME_ROLLED_BACK,     /* reload: undone (the new engine failed,
                                       or a rollback was asked); the
                                       previous engine serves              */
        PD_OUTCOME_ROLLBACK_FAILED, /* reload: the new engine failed and the
                                       previous one did not come back      */
        PD_OUTCOME_ENGINE_FAILED,   /* reload: the serving engine failed
                                       while the reload was under way      */
        PD_OUTCOME_STOPPED,         /* a stop, a drain or a restart came
                                       first                               */
        PD_OUTCOME_MAX,
} pd_outcome;

typedef enum pd_alert {
        PD_ALERT_STORM_WARNING,   /* more than warn_above restarts in window */
        PD_ALERT_THROTTLED,       /* restart delayed by the storm limit      */
        PD_ALERT_STORM,           /* critical: storm, breaker opened         */
        PD_ALERT_BREAKER_OPENED,
        PD_ALERT_BREAKER_CLOSED,
        PD_ALERT_MAX,
} pd_alert;

#define PD_ACTION_TEXT_MAX 224

typedef struct pd_action {
        pd_action_type type;
        pd_instance_id instance;
        pd_spec spec;                   /* SPAWN                             */
        pd_timer timer;                 /* TIMER_ARM, TIMER_CANCEL           */
        int64_t at_ms;                  /* TIMER_ARM                         */
        pd_reply reply;                 /* REPLY                             */
        pd_outcome outcome;             /* REPLY                             */
        int refusal;                    /* REPLY, outcome PREFLIGHT: the
                                           event's refusal                   */
        bool force_stopped;             /* REPLY to a drain                  */
        pd_alert alert;                 /* ALERT                             */
        pd_storm_kind storm_kind;       /* ALERT STORM                       */
        pd_crash_class cls;             /* REPLY (failure), ALERT            */
        pd_crash_family circuit;        /* BREAKER_TRANSITION                */
        pd_breaker_state breaker_from;  /* BREAKER_TRANSITION                */
        pd_breaker_state breaker_to;    /* BREAKER_TRANSITION                */
        unsigned failures;              /* BREAKER_TRANSITION: the circuit's
                                           consecutive failures after it     */
        char text[PD_ACTION_TEXT_MAX];  /* REPLY, ALERT: human text          */
        size_t reason_at;               /* REPLY: text + reason_at says what
                                           happened without naming the
                                           request ("preload failed: " is
                                           skipped); 0 for success           */
} pd_action;

#define PD_ACTIONS_MAX 32

typedef struct pd_actions {
        size_t count;
        pd_action item[PD_ACTIONS_MAX];
} pd_actions;

/* One engine process of a replica, as the machine sees it. */
typedef struct pd_instance {
        bool running;                   /* spawned and not yet exited        */
        bool exit_expected;             /* we asked it to stop               */
        pd_crash_class kill_cls;        /* we stopped it for this failure;
                                           PD_CRASH_CLASS_MAX: not a failure */
        int64_t started_at_ms;
        int64_t ready_at_ms;            /* 0 until the first probe ok        */
        unsigned probe_failures;        /* consecutive, while ready          */
        pd_crash_class evidence;        /* worst log class seen; MAX = none  */
} pd_instance;

typedef struct pd_lifecycle {
        pd_state state;
        pd_reload_phase phase;
        pd_reload_strategy strategy;
        bool external;                  /* registered from a handoff file:
                                           tracked, never supervised         */
        pd_instance inst[PD_INSTANCE_MAX];

        pd_backoff backoff;
        pd_breaker_set breakers;
        pd_storm storm;

        unsigned restart_count;         /* restarts after failures, ever     */
        unsigned crash_count;           /* failures since the last run that
                                           lasted backoff.stable_reset_ms    */
        unsigned driver_resets;
        unsigned node_errors;           /* node errors in a row, since the
                                           last engine that started          */
        int64_t backoff_ms;             /* last delay chosen                 */
        int64_t next_restart_at_ms;     /* 0: none scheduled                 */
        int64_t deadline_at_ms;         /* drain deadline, 0: none           */
        int64_t reload_deadline_ms;     /* drain budget of a reload          */
        int64_t breaker_timer_at_ms;    /* PD_TIMER_BREAKER armed for; 0: not */

        pd_reply pending;               /* request awaiting its answer       */
        bool restart_on_exit;           /* spawn once the old instance exits */
        bool override_pending;          /* operator restart: skip breaker    */
        bool force_stopped;             /* the drain hit its deadline        */

        pd_crash_class last_error_cls;  /* MAX: none                         */
        char last_error[PD_ACTION_TEXT_MAX];
        int64_t last_error_at_ms;
        char reload_error[PD_ACTION_TEXT_MAX];
        pd_crash_class reload_error_cls; /* how the reload's new engine
                                           failed; MAX: it did not       */
} pd_lifecycle;

void pd_lifecycle_init(pd_lifecycle *lc);

/* A start the node failed (PD_EV_SPAWN_FAILED with cls
 * PD_CRASH_NODE_ERROR) is retried after 1 s, doubling to 30 s, counted in
 * node_errors and not as a crash: the backoff, the storm limiter and the
 * breaker are left alone. The n-th in a row (n >= 1) waits this long. */
#define PD_NODE_RETRY_INITIAL_MS 1000
#define PD_NODE_RETRY_MAX_MS 30000
int64_t pd_node_retry_delay_ms(unsigned n);

/*
 * Applies one event. `out` is cleared and receives the actions to carry out,
 * in order. Returns 0 when the event was applied or is stale and ignored
 * (a probe answer for an engine that has already exited is normal),
 * PD_E_TRANSITION when an operator request makes no sense in the current
 * state (drain a stopped pool, preload a running one, reload a pool that is
 * not ready), PD_E_BREAKER_OPEN for a preload while the breaker is open, or
 * -EINVAL for a NULL argument or an out-of-range enum.
 *
 * Every change of a breaker circuit's state is one
 * PD_ACT_BREAKER_TRANSITION, in the order the changes happened. An open
 * circuit turns half-open when its period is over: the machine keeps
 * PD_TIMER_BREAKER armed for the earliest such moment, and the first event
 * at or after it (that timer, or anything sooner) makes the turn.
 */
int pd_lifecycle_step(pd_lifecycle *lc, const pd_policy *p, const pd_event *ev,
                      int64_t now_ms, pd_rng *rng, pd_actions *out);

/* Derived views: never stored twice. */
bool pd_lifecycle_live(const pd_lifecycle *lc);      /* an engine is meant to run */
bool pd_lifecycle_ready(const pd_lifecycle *lc);     /* serves new work           */
bool pd_lifecycle_draining(const pd_lifecycle *lc);  /* refuses new leases        */
/* Whether the machine waits for an instance's leases to reach zero, and
 * which one: the caller feeds PD_EV_LEASES_ZERO when that count is 0. */
bool pd_lifecycle_awaits_leases(const pd_lifecycle *lc, pd_instance_id *inst);
pd_breaker_state pd_lifecycle_breaker_state(const pd_lifecycle *lc);
/* A surge reload's new engine serves (the replica is ready) and the old
 * one, PD_INSTANCE_SURGE now, is on its way out: no other reload, drain
 * or restart until it has left. */
bool pd_lifecycle_retiring(const pd_lifecycle *lc);

const char *pd_state_to_string(pd_state s);
const char *pd_reload_phase_to_string(pd_reload_phase ph);
const char *pd_reload_strategy_to_string(pd_reload_strategy st);
int pd_reload_strategy_from_string(const char *name, pd_reload_strategy *out);
const char *pd_timer_to_string(pd_timer t);
const char *pd_event_type_to_string(pd_event_type t);
const char *pd_action_type_to_string(pd_action_type t);
const char *pd_reply_to_string(pd_reply r);
const char *pd_outcome_to_string(pd_outcome o);
const char *pd_alert_to_string(pd_alert a);

#ifdef __cplusplus
}
#endif
