/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pool-domain/lease.h"
#include "pool-domain/lifecycle.h"

/*
 * Reading guide. pd_lifecycle_step() dispatches on the event; each handler
 * looks at the state (and, while reloading, the phase) and calls one of a
 * few procedures that keep the invariants in one place:
 *
 *   spawn()        ask for an engine instance
 *   stop()         ask an instance to exit (TERM now, KILL after the grace)
 *   enter_ready()  the primary serves: handoff written, stability timer armed
 *   fail()         a failure of the primary: count it, feed the breaker and
 *                  the backoff, schedule the restart or open the breaker
 *   restart_due()  the delay is over: spawn, unless the breaker refuses
 *
 * Exits we asked for are never crashes: stop() marks the instance
 * exit_expected before the signal is sent, and fail() has already counted
 * the failure that made us stop it.
 */

#define NO_CLASS PD_CRASH_CLASS_MAX

typedef struct step {
        pd_lifecycle *lc;
        const pd_policy *p;
        const pd_event *ev;
        int64_t now;
        pd_rng *rng;
        pd_actions *out;
        /* each circuit's state as last reported */
        pd_breaker_state breaker_seen[PD_CRASH_FAMILY_MAX];
} step;

/* Human text is cut at PD_ACTION_TEXT_MAX on purpose: a message too long
 * for a log line loses its tail, never the process its memory. */
static void textf(char *buf, size_t len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void textf(char *buf, size_t len, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
}

/* ---- actions -------------------------------------------------------- */

static pd_action *push(step *s, pd_action_type type, pd_instance_id inst) {
        pd_action *a;

        /* PD_ACTIONS_MAX is sized for the longest path (a stop of both
         * instances with every timer cancelled); dropping would be a bug,
         * so the last slot is reused rather than written past. */
        if (s->out->count >= PD_ACTIONS_MAX)
                s->out->count = PD_ACTIONS_MAX - 1;
        a = &s->out->item[s->out->count++];
        memset(a, 0, sizeof(*a));
        a->type = type;
        a->instance = inst;
        a->cls = NO_CLASS;
        return a;
}

static void timer_arm(step *s, pd_timer t, pd_instance_id inst, int64_t at_ms) {
        pd_action *a = push(s, PD_ACT_TIMER_ARM, inst);

        a->timer = t;
        a->at_ms = at_ms;
}

static void timer_cancel(step *s, pd_timer t, pd_instance_id inst) {
        pd_action *a = push(s, PD_ACT_TIMER_CANCEL, inst);

        a->timer = t;
}

/* The words a failed request's text starts with; reason_at skips them. */
static const char *failed_prefix(pd_reply what) {
        switch (what) {
        case PD_REPLY_PRELOAD:
                return "preload failed: ";
        case PD_REPLY_RELOAD:
                return "reload failed: ";
        case PD_REPLY_DRAIN:
                return "drain ended: ";
        case PD_REPLY_NONE:
        case PD_REPLY_MAX:
                break;
        }
        return "";
}

/* Answers a request. fmt says what happened; a failure's text is prefixed
 * with the request's name for the log, and reason_at skips that prefix.
 * A refusal only exists while its PD_EV_PREFLIGHT_FAILED is handled. */
static void reply(step *s, pd_reply what, pd_outcome outcome, pd_crash_class cls,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reply(step *s, pd_reply what, pd_outcome outcome, pd_crash_class cls,
                  const char *fmt, ...) {
        pd_action *a = push(s, PD_ACT_REPLY, PD_INSTANCE_PRIMARY);
        const char *prefix = outcome == PD_OUTCOME_OK ? "" : failed_prefix(what);
        int n;
        va_list ap;

        a->reply = what;
        a->outcome = outcome;
        if (outcome == PD_OUTCOME_PREFLIGHT && s->ev->type == PD_EV_PREFLIGHT_FAILED)
                a->refusal = s->ev->refusal;
        a->cls = cls;
        a->force_stopped = s->lc->force_stopped;
        n = snprintf(a->text, sizeof(a->text), "%s", prefix);
        a->reason_at = n > 0 ? (size_t) n : 0;
        va_start(ap, fmt);
        vsnprintf(a->text + a->reason_at, sizeof(a->text) - a->reason_at, fmt, ap);
        va_end(ap);
        if (s->lc->pending == what)
                s->lc->pending = PD_REPLY_NONE;
}

static pd_action *alert(step *s, pd_alert what, pd_crash_class cls,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static pd_action *alert(step *s, pd_alert what, pd_crash_class cls,
                        const char *fmt, ...) {
        pd_action *a = push(s, PD_ACT_ALERT, PD_INSTANCE_PRIMARY);
        va_list ap;

        a->alert = what;
        a->cls = cls;
        va_start(ap, fmt);
        vsnprintf(a->text, sizeof(a->text), fmt, ap);
        va_end(ap);
        return a;
}

/* One PD_ACT_BREAKER_TRANSITION per circuit whose state changed since the
 * last call. Called after each call that may change a circuit: none makes
 * more than one change once pd_breaker_set_advance() has run. */
static void breakers_note(step *s) {
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++) {
                const pd_breaker *b = &s->lc->breakers.circuit[i];
                pd_action *a;

                if (b->state == s->breaker_seen[i])
                        continue;
                a = push(s, PD_ACT_BREAKER_TRANSITION, PD_INSTANCE_PRIMARY);
                a->circuit = (pd_crash_family) i;
                a->breaker_from = s->breaker_seen[i];
                a->breaker_to = b->state;
                a->failures = b->failures;
                s->breaker_seen[i] = b->state;
        }
}

/* Answers a request still waiting, when the work it waited for is gone. */
static void reply_pending_failed(step *s, pd_outcome outcome, const char *why) {
        switch (s->lc->pending) {
        case PD_REPLY_PRELOAD:
                reply(s, PD_REPLY_PRELOAD, outcome, s->lc->last_error_cls, "%s", why);
                break;
        case PD_REPLY_RELOAD:
                reply(s, PD_REPLY_RELOAD, outcome, NO_CLASS, "%s", why);
                break;
        case PD_REPLY_DRAIN:
                reply(s, PD_REPLY_DRAIN, outcome, NO_CLASS, "%s", why);
                break;
        case PD_REPLY_NONE:
        case PD_REPLY_MAX:
                break;
        }
}

static void set_error(pd_lifecycle *lc, pd_crash_class cls, const char *text,
                      int64_t now) {
        lc->last_error_cls = cls;
        textf(lc->last_error, sizeof(lc->last_error), "%s", text);
        lc->last_error_at_ms = now;
}

static void clear_error(pd_lifecycle *lc) {
        lc->last_error_cls = NO_CLASS;
        lc->last_error[0] = '\0';
        lc->last_error_at_ms = 0;
}

/* ---- instances ------------------------------------------------------ */

static bool any_running(const pd_lifecycle *lc) {
        return lc->inst[PD_INSTANCE_PRIMARY].running ||
               lc->inst[PD_INSTANCE_SURGE].running;
}

static void instance_reset(pd_instance *in) {
        *in = (pd_instance) { .kill_cls = NO_CLASS, .evidence = NO_CLASS };
}

static void spawn(step *s, pd_instance_id id, pd_spec spec) {
        pd_action *a;

        instance_reset(&s->lc->inst[id]);
        a = push(s, PD_ACT_SPAWN, id);
        a->spec = spec;
}

/* Asks an instance to exit: SIGTERM to its process group now, SIGKILL when
 * the grace is over. kill_cls records the failure that made us stop it
 * (NO_CLASS for a requested stop); either way its exit is not a new crash. */
static void stop(step *s, pd_instance_id id, pd_crash_class kill_cls) {
        pd_instance *in = &s->lc->inst[id];

        if (!in->running || in->exit_expected)
                return;
        in->exit_expected = true;
        in->kill_cls = kill_cls;
        timer_cancel(s, PD_TIMER_STARTUP, id);
        push(s, PD_ACT_PROBE_STOP, id);
        push(s, PD_ACT_SIGNAL_TERM, id);
        timer_arm(s, PD_TIMER_KILL, id, pd_sat_add_i64(s->now, s->p->stop_grace_ms));
}

/* ---- stability, readiness ------------------------------------------- */

/* The next stability mark of the primary's run still ahead of now: the
 * breaker's close period and the backoff's reset period both count from
 * the moment the engine became ready, so merely reaching ready changes
 * nothing. */
static void arm_stable(step *s) {
        const pd_instance *in = &s->lc->inst[PD_INSTANCE_PRIMARY];
        int64_t marks[2], next = 0;

        if (!in->running || in->ready_at_ms == 0)
                return;
        marks[0] = pd_sat_add_i64(in->ready_at_ms, s->p->breaker.close_after_ms);
        marks[1] = pd_sat_add_i64(in->ready_at_ms, s->p->backoff.stable_reset_ms);
        for (size_t i = 0; i < 2; i++)
                if (marks[i] > s->now && (next == 0 || marks[i] < next))
                        next = marks[i];
        if (next != 0)
                timer_arm(s, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY, next);
}

static void enter_ready(step *s) {
        pd_lifecycle *lc = s->lc;
        pd_instance *in = &lc->inst[PD_INSTANCE_PRIMARY];

        lc->state = PD_STATE_READY;
        lc->phase = PD_RELOAD_NONE;
        lc->next_restart_at_ms = 0;
        lc->override_pending = false;
        in->ready_at_ms = s->now;
        in->probe_failures = 0;
        timer_cancel(s, PD_TIMER_STARTUP, PD_INSTANCE_PRIMARY);
        push(s, PD_ACT_WRITE_HANDOFF, PD_INSTANCE_PRIMARY);
        arm_stable(s);
}

static void on_stable(step *s) {
        pd_lifecycle *lc = s->lc;
        const pd_instance *in = &lc->inst[PD_INSTANCE_PRIMARY];
        pd_breaker_state before = pd_breaker_set_state(&lc->breakers);

        if (!in->running || in->exit_expected || in->ready_at_ms == 0)
                return;
        pd_breaker_set_record_running(&lc->breakers, &s->p->breaker,
                                      in->ready_at_ms, s->now);
        breakers_note(s);
        pd_backoff_on_running(&lc->backoff, &s->p->backoff, in->ready_at_ms, s->now);
        /* crash_count is what the backoff counts: crashes since a run this
         * long. restart_count stays the lifetime count. */
        if (pd_sat_add_i64(in->ready_at_ms, s->p->backoff.stable_reset_ms) <= s->now)
                lc->crash_count = 0;
        if (before != PD_BREAKER_CLOSED &&
            pd_breaker_set_state(&lc->breakers) == PD_BREAKER_CLOSED)
                alert(s, PD_ALERT_BREAKER_CLOSED, NO_CLASS,
                      "trial restart ran stable for %lld ms: breaker closed",
                      (long long) s->p->breaker.close_after_ms);
        arm_stable(s);
}

/* ---- failure and restart -------------------------------------------- */

static void enter_failed(step *s) {
        pd_lifecycle *lc = s->lc;

        lc->state = PD_STATE_FAILED;
        lc->phase = PD_RELOAD_NONE;
        lc->next_restart_at_ms = pd_breaker_set_open_until(&lc->breakers);
        timer_arm(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY, lc->next_restart_at_ms);
}

/* Storm admission for a restart that would run at run_at. Returns false
 * when a storm opened the breaker instead. */
static bool admit_restart(step *s, int64_t run_at, pd_crash_class cls) {
        pd_lifecycle *lc = s->lc;
        pd_storm_verdict v;
        pd_action *a;

        pd_storm_admit(&lc->storm, &s->p->storm, run_at, cls, &v);
        if (v.storm) {
                pd_breaker_set_trip(&lc->breakers, &s->p->breaker, s->now);
                breakers_note(s);
                a = alert(s, PD_ALERT_STORM, cls,
                          "restart storm (%s): %u restarts within %lld ms; breaker opened. %s",
                          pd_storm_kind_to_string(v.kind), v.in_window,
                          (long long) s->p->storm.burst_window_ms,
                          pd_storm_kind_hint(v.kind));
                a->storm_kind = v.kind;
                enter_failed(s);
                return false;
        }
        if (v.delayed)
                alert(s, PD_ALERT_THROTTLED, cls,
                      "restart limit reached (%u in %lld ms): restart delayed by %lld ms",
                      s->p->storm.limit, (long long) s->p->storm.window_ms,
                      (long long) (v.run_at_ms - run_at));
        else if (v.warn)
                alert(s, PD_ALERT_STORM_WARNING, cls,
                      "%u restarts in the last %lld ms", v.in_window,
                      (long long) s->p->storm.window_ms);
        lc->state = PD_STATE_BACKOFF;
        lc->phase = PD_RELOAD_NONE;
        lc->next_restart_at_ms = v.run_at_ms;
        timer_arm(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY, v.run_at_ms);
        return true;
}

/*
 * A failure of the primary: count it, stop the engine if it still runs,
 * answer a waiting preload with `outcome`, and either schedule the restart
 * (backoff, storm limit) or open the breaker.
 */
static void fail(step *s, pd_crash_class cls, pd_outcome outcome, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

int64_t pd_node_retry_delay_ms(unsigned n) {
        int64_t d = PD_NODE_RETRY_INITIAL_MS;

        for (unsigned i = 1; i < n && d < PD_NODE_RETRY_MAX_MS; i++)
                d *= 2;
        return d < PD_NODE_RETRY_MAX_MS ? d : PD_NODE_RETRY_MAX_MS;
}

/* The node could not start the engine: not the engine's failure. Retried
 * on a schedule of its own; crash_count, backoff, storm and breaker stay
 * as they are. */
static void node_failed(step *s, pd_outcome outcome, const char *text) {
        pd_lifecycle *lc = s->lc;
        int64_t delay;

        lc->node_errors++;
        set_error(lc, PD_CRASH_NODE_ERROR, text, s->now);
        timer_cancel(s, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        push(s, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY);
        reply_pending_failed(s, outcome, text);
        delay = pd_node_retry_delay_ms(lc->node_errors);
        lc->backoff_ms = delay;
        lc->state = PD_STATE_BACKOFF;
        lc->phase = PD_RELOAD_NONE;
        lc->next_restart_at_ms = pd_sat_add_i64(s->now, delay);
        timer_arm(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY, lc->next_restart_at_ms);
}

static void fail(step *s, pd_crash_class cls, pd_outcome outcome, const char *fmt, ...) {
        pd_lifecycle *lc = s->lc;
        char text[PD_ACTION_TEXT_MAX];
        bool opened;
        int64_t delay;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);

        if (cls == PD_CRASH_NODE_ERROR) {
                node_failed(s, outcome, text);
                return;
        }

        lc->crash_count++;
        set_error(lc, cls, text, s->now);
        stop(s, PD_INSTANCE_PRIMARY, cls);
        timer_cancel(s, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        push(s, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY);
        reply_pending_failed(s, outcome, text);
        lc->phase = PD_RELOAD_NONE;

        if (s->p->restart == PD_RESTART_NEVER) {
                /* down until an operator restarts it: no timer, and the
                 * breaker is left alone (its trial would be a restart) */
                lc->next_restart_at_ms = 0;
                lc->restart_on_exit = false;
                lc->state = any_running(lc) ? PD_STATE_STOPPING : PD_STATE_STOPPED;
                return;
        }

        opened = pd_breaker_set_record_failure(&lc->breakers, &s->p->breaker, cls, s->now);
        breakers_note(s);
        if (opened || pd_breaker_set_state(&lc->breakers) == PD_BREAKER_OPEN) {
                if (opened)
                        alert(s, PD_ALERT_BREAKER_OPENED, cls,
                              "breaker opened after %u consecutive failures; next trial in %lld ms",
                              pd_breaker_set_for(&lc->breakers, &s->p->breaker, cls)->failures,
                              (long long) (pd_breaker_set_open_until(&lc->breakers) - s->now));
                enter_failed(s);
                return;
        }

        delay = pd_backoff_on_crash(&lc->backoff, &s->p->backoff, cls, s->rng);
        lc->backoff_ms = delay;
        admit_restart(s, pd_sat_add_i64(s->now, delay), cls);
}

/* The restart delay is over (or an operator asked): spawn, unless the
 * breaker refuses. An instance still on its way out is waited for. */
static void restart_due(step *s) {
        pd_lifecycle *lc = s->lc;

        if (lc->inst[PD_INSTANCE_PRIMARY].running) {
                lc->restart_on_exit = true;
                return;
        }
        lc->restart_on_exit = false;
        if (!lc->override_pending &&
            !pd_breaker_set_allow(&lc->breakers, &s->p->breaker, s->now)) {
                enter_failed(s);
                return;
        }
        lc->override_pending = false;
        lc->restart_count++;
        lc->next_restart_at_ms = 0;
        lc->state = PD_STATE_PRELOADING;
        lc->phase = PD_RELOAD_NONE;
        spawn(s, PD_INSTANCE_PRIMARY, PD_SPEC_CURRENT);
}

/* The breaker's open period is over: the trial restart goes through the
 * storm limiter like any other. */
static void breaker_period_over(step *s) {
        if (admit_restart(s, s->now, s->lc->last_error_cls == NO_CLASS ?
                                     PD_CRASH_EXIT_CODE : s->lc->last_error_cls) &&
            s->lc->next_restart_at_ms <= s->now)
                restart_due(s);
}

/* ---- reload ----------------------------------------------------------- */

static void reload_abort(step *s, pd_outcome outcome, const char *why) {
        pd_lifecycle *lc = s->lc;

        timer_cancel(s, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY);
        push(s, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY);
        textf(lc->reload_error, sizeof(lc->reload_error), "%s", why);
        reply(s, PD_REPLY_RELOAD, outcome, NO_CLASS, "%s", why);
        lc->state = PD_STATE_READY;
        lc->phase = PD_RELOAD_NONE;
}

/* Drain-first reload: the new engine failed. Bring the old one back. */
static void rollback_begin(step *s, const char *why) {
        pd_lifecycle *lc = s->lc;

        textf(lc->reload_error, sizeof(lc->reload_error), "%s", why);
        if (lc->inst[PD_INSTANCE_PRIMARY].running) {
                stop(s, PD_INSTANCE_PRIMARY, NO_CLASS);
                lc->phase = PD_RELOAD_ROLLBACK_STOP;
                return;
        }
        push(s, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY);
        spawn(s, PD_INSTANCE_PRIMARY, PD_SPEC_CURRENT);
        lc->phase = PD_RELOAD_ROLLBACK_START;
}

/* Surge reload: the new engine failed beside the old one, which never
 * stopped serving. */
static void surge_abort(step *s, const char *why) {
        stop(s, PD_INSTANCE_SURGE, NO_CLASS);
        reload_abort(s, PD_OUTCOME_ROLLED_BACK, why);
}

/* The old engine could not be brought back: a failure of the pool. */
static void rollback_failed(step *s, pd_crash_class cls, pd_outcome outcome,
                            const char *why) {
        char text[PD_ACTION_TEXT_MAX];

        textf(text, sizeof(text), "%s; rollback failed: %s", s->lc->reload_error, why);
        reply(s, PD_REPLY_RELOAD, PD_OUTCOME_ROLLBACK_FAILED, cls, "%s", text);
        fail(s, cls, outcome, "%s", text);
}

/* A failure of the engine that is being started, in whichever role:
 * first preload or restart, new engine of a reload, surge engine, or the
 * old engine coming back after a failed reload. `outcome` says how it
 * failed (PREFLIGHT, SPAWN_FAILED, STARTUP_TIMEOUT, CRASHED). */
static void start_failed(step *s, pd_instance_id id, pd_crash_class cls,
                         pd_outcome outcome, const char *why) {
        pd_lifecycle *lc = s->lc;

        if (lc->state == PD_STATE_PRELOADING && id == PD_INSTANCE_PRIMARY) {
                fail(s, cls, outcome, "%s", why);
                return;
        }
        if (lc->state != PD_STATE_RELOADING)
                return;
        switch (lc->phase) {
        case PD_RELOAD_START_NEW:
                if (id == PD_INSTANCE_PRIMARY) {
                        lc->reload_error_cls = cls;
                        stop(s, id, cls);
                        rollback_begin(s, why);
                }
                break;
        case PD_RELOAD_ROLLBACK_START:
                if (id == PD_INSTANCE_PRIMARY)
                        rollback_failed(s, cls, outcome, why);
                break;
        case PD_RELOAD_SURGE_START:
                if (id == PD_INSTANCE_SURGE) {
                        lc->reload_error_cls = cls;
                        surge_abort(s, why);
                }
                break;
        case PD_RELOAD_NONE:
        case PD_RELOAD_STAGING:
        case PD_RELOAD_DRAIN_OLD:
        case PD_RELOAD_STOP_OLD:
        case PD_RELOAD_ROLLBACK_STOP:
        case PD_RELOAD_SURGE_RETIRE:
        case PD_RELOAD_SURGE_STOP_OLD:
        case PD_RELOAD_PHASE_MAX:
                break;
        }
}

/* The serving primary failed (crash, health, driver). A reload in
 * progress is abandoned first, so the request gets its answer. */
static void serving_failed(step *s, pd_crash_class cls, const char *why) {
        pd_lifecycle *lc = s->lc;

        if (lc->state == PD_STATE_RELOADING) {
                switch (lc->phase) {
                case PD_RELOAD_SURGE_START:
                        stop(s, PD_INSTANCE_SURGE, NO_CLASS);
                        break;
                case PD_RELOAD_SURGE_RETIRE:
                case PD_RELOAD_SURGE_STOP_OLD:
                        /* the old engine is leaving anyway: end it now */
                        push(s, PD_ACT_DROP_LEASES, PD_INSTANCE_SURGE);
                        stop(s, PD_INSTANCE_SURGE, NO_CLASS);
                        break;
                case PD_RELOAD_NONE:
                case PD_RELOAD_STAGING:
                case PD_RELOAD_DRAIN_OLD:
                case PD_RELOAD_STOP_OLD:
                case PD_RELOAD_START_NEW:
                case PD_RELOAD_ROLLBACK_STOP:
                case PD_RELOAD_ROLLBACK_START:
                case PD_RELOAD_PHASE_MAX:
                        break;
                }
                if (lc->pending == PD_REPLY_RELOAD) {
                        timer_cancel(s, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY);
                        push(s, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY);
                        reply(s, PD_REPLY_RELOAD, PD_OUTCOME_ENGINE_FAILED, cls,
                              "the running engine failed: %s", why);
                }
        }
        fail(s, cls, PD_OUTCOME_CRASHED, "%s", why);
}

static bool serving(const pd_lifecycle *lc) {
        if (lc->state == PD_STATE_READY)
                return true;
        if (lc->state != PD_STATE_RELOADING)
                return false;
        switch (lc->phase) {
        case PD_RELOAD_STAGING:
        case PD_RELOAD_DRAIN_OLD:
        case PD_RELOAD_SURGE_START:
        case PD_RELOAD_SURGE_RETIRE:
        case PD_RELOAD_SURGE_STOP_OLD:
                return true;
        case PD_RELOAD_NONE:
        case PD_RELOAD_STOP_OLD:
        case PD_RELOAD_START_NEW:
        case PD_RELOAD_ROLLBACK_STOP:
        case PD_RELOAD_ROLLBACK_START:
        case PD_RELOAD_PHASE_MAX:
                break;
        }
        return false;
}

/* ---- drain and stop --------------------------------------------------- */

static void drain_finished(step *s) {
        pd_lifecycle *lc = s->lc;

        lc->state = PD_STATE_STOPPED;
        lc->deadline_at_ms = 0;
        push(s, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY);
        reply(s, PD_REPLY_DRAIN, PD_OUTCOME_OK, NO_CLASS,
              lc->force_stopped ? "drain deadline reached: engine force-stopped"
                                : "drained: engine stopped");
}

static void stop_all(step *s, const char *why) {
        pd_lifecycle *lc = s->lc;

        timer_cancel(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
        timer_cancel(s, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY);
        timer_cancel(s, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        if (lc->state == PD_STATE_RELOADING)
                push(s, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY);
        reply_pending_failed(s, PD_OUTCOME_STOPPED, why);
        for (int id = 0; id < PD_INSTANCE_MAX; id++)
                stop(s, (pd_instance_id) id, NO_CLASS);
        push(s, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY);
        lc->phase = PD_RELOAD_NONE;
        lc->restart_on_exit = false;
        lc->override_pending = false;
        lc->next_restart_at_ms = 0;
        lc->deadline_at_ms = 0;
        lc->state = any_running(lc) ? PD_STATE_STOPPING : PD_STATE_STOPPED;
}

/* ---- event handlers --------------------------------------------------- */

static const char *detail(const step *s, const char *fallback) {
        return s->ev->detail && s->ev->detail[0] ? s->ev->detail : fallback;
}

static int on_preload(step *s) {
        pd_lifecycle *lc = s->lc;

        if (lc->external)
                return PD_E_TRANSITION;
        switch (lc->state) {
        case PD_STATE_FAILED:
                return PD_E_BREAKER_OPEN;
        case PD_STATE_EMPTY:
        case PD_STATE_STOPPED:
        case PD_STATE_BACKOFF:
                if (lc->inst[PD_INSTANCE_PRIMARY].running)
                        return PD_E_TRANSITION;   /* old engine still exiting */
                timer_cancel(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                lc->pending = PD_REPLY_PRELOAD;
                lc->next_restart_at_ms = 0;
                lc->restart_on_exit = false;
                lc->force_stopped = false;
                lc->state = PD_STATE_PRELOADING;
                lc->phase = PD_RELOAD_NONE;
                spawn(s, PD_INSTANCE_PRIMARY, PD_SPEC_CURRENT);
                return 0;
        case PD_STATE_PRELOADING:
        case PD_STATE_READY:
        case PD_STATE_DRAINING:
        case PD_STATE_RELOADING:
        case PD_STATE_STOPPING:
        case PD_STATE_MAX:
                break;
        }
        return PD_E_TRANSITION;
}

static void on_spawned(step *s) {
        pd_instance *in = &s->lc->inst[s->ev->instance];

        if (in->running)
                return;
        in->running = true;
        in->started_at_ms = s->now;
        s->lc->node_errors = 0;
        push(s, PD_ACT_PROBE_START, s->ev->instance);
        if (s->p->health.startup_timeout_ms > 0)
                timer_arm(s, PD_TIMER_STARTUP, s->ev->instance,
                          pd_sat_add_i64(s->now, s->p->health.startup_timeout_ms));
}

static void on_not_started(step *s) {
        bool refused = s->ev->type == PD_EV_PREFLIGHT_FAILED;
        char why[PD_ACTION_TEXT_MAX];

        if (s->lc->inst[s->ev->instance].running)
                return;   /* stale: that instance did start */
        if (refused)
                textf(why, sizeof(why), "preflight failed: %s", detail(s, "refused"));
        else if (s->ev->cls == PD_CRASH_NODE_ERROR)
                textf(why, sizeof(why), "node error: %s", detail(s, "cannot start engines"));
        else
                textf(why, sizeof(why), "spawn failed: %s", detail(s, "exec failed"));
        start_failed(s, s->ev->instance,
                     !refused && s->ev->cls == PD_CRASH_NODE_ERROR ? PD_CRASH_NODE_ERROR
                                                                   : PD_CRASH_PREFLIGHT,
                     refused ? PD_OUTCOME_PREFLIGHT : PD_OUTCOME_SPAWN_FAILED, why);
}

static void on_probe_ok(step *s) {
        pd_lifecycle *lc = s->lc;
        pd_instance_id id = s->ev->instance;
        pd_instance *in = &lc->inst[id];
        pd_instance swap;

        if (!in->running || in->exit_expected)
                return;
        in->probe_failures = 0;
        if (in->ready_at_ms != 0)
                return;   /* already ready: a routine probe */

        if (lc->state == PD_STATE_PRELOADING && id == PD_INSTANCE_PRIMARY) {
                enter_ready(s);
                if (lc->pending == PD_REPLY_PRELOAD)
                        reply(s, PD_REPLY_PRELOAD, PD_OUTCOME_OK, NO_CLASS, "ready");
                return;
        }
        if (lc->state != PD_STATE_RELOADING)
                return;
        switch (lc->phase) {
        case PD_RELOAD_START_NEW:
                if (id != PD_INSTANCE_PRIMARY)
                        break;
                push(s, PD_ACT_COMMIT_STAGED, PD_INSTANCE_PRIMARY);
                enter_ready(s);
                reply(s, PD_REPLY_RELOAD, PD_OUTCOME_OK, NO_CLASS, "reloaded (drain-first)");
                break;
        case PD_RELOAD_ROLLBACK_START:
                if (id != PD_INSTANCE_PRIMARY)
                        break;
                enter_ready(s);
                reply(s, PD_REPLY_RELOAD, PD_OUTCOME_ROLLED_BACK, NO_CLASS,
                      "%s; rolled back to the previous engine", lc->reload_error);
                break;
        case PD_RELOAD_SURGE_START:
                if (id != PD_INSTANCE_SURGE)
                        break;
                /* The new engine serves: it becomes the primary, the old one
                 * keeps its leases until they end or the deadline comes. */
                push(s, PD_ACT_COMMIT_STAGED, PD_INSTANCE_PRIMARY);
                push(s, PD_ACT_PROMOTE_SURGE, PD_INSTANCE_SURGE);
                timer_cancel(s, PD_TIMER_STARTUP, PD_INSTANCE_SURGE);
                timer_cancel(s, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
                swap = lc->inst[PD_INSTANCE_PRIMARY];
                lc->inst[PD_INSTANCE_PRIMARY] = lc->inst[PD_INSTANCE_SURGE];
                lc->inst[PD_INSTANCE_SURGE] = swap;
                lc->inst[PD_INSTANCE_PRIMARY].ready_at_ms = s->now;
                push(s, PD_ACT_WRITE_HANDOFF, PD_INSTANCE_PRIMARY);
                arm_stable(s);
                reply(s, PD_REPLY_RELOAD, PD_OUTCOME_OK, NO_CLASS, "reloaded (surge)");
                lc->phase = PD_RELOAD_SURGE_RETIRE;
                lc->deadline_at_ms = pd_sat_add_i64(s->now, lc->reload_deadline_ms);
                timer_arm(s, PD_TIMER_DEADLINE, PD_INSTANCE_SURGE, lc->deadline_at_ms);
                break;
        case PD_RELOAD_NONE:
        case PD_RELOAD_STAGING:
        case PD_RELOAD_DRAIN_OLD:
        case PD_RELOAD_STOP_OLD:
        case PD_RELOAD_ROLLBACK_STOP:
        case PD_RELOAD_SURGE_RETIRE:
        case PD_RELOAD_SURGE_STOP_OLD:
        case PD_RELOAD_PHASE_MAX:
                break;
        }
}

static void on_probe_bad(step *s) {
        pd_instance_id id = s->ev->instance;
        pd_instance *in = &s->lc->inst[id];
        const char *what = s->ev->type == PD_EV_PROBE_TIMEOUT ? "timed out" : "failed";

        /* While loading, only the startup timeout judges the engine. */
        if (!in->running || in->exit_expected || in->ready_at_ms == 0)
                return;
        if (id != PD_INSTANCE_PRIMARY || !serving(s->lc))
                return;
        in->probe_failures++;
        if (in->probe_failures < s->p->health.failure_threshold)
                return;
        char why[PD_ACTION_TEXT_MAX];
        textf(why, sizeof(why), "health check failed: %u consecutive probes %s (%s)",
                 in->probe_failures, what, detail(s, "no detail"));
        serving_failed(s, PD_CRASH_HEALTH_TIMEOUT, why);
}

static void on_stall(step *s) {
        pd_instance_id id = s->ev->instance;
        pd_instance *in = &s->lc->inst[id];
        char why[PD_ACTION_TEXT_MAX];

        if (!in->running || in->exit_expected)
                return;
        textf(why, sizeof(why), "stalled: %s", detail(s, "no progress"));
        if (in->ready_at_ms == 0)
                start_failed(s, id, PD_CRASH_STALL_TIMEOUT, PD_OUTCOME_CRASHED, why);
        else if (id == PD_INSTANCE_PRIMARY && serving(s->lc))
                serving_failed(s, PD_CRASH_STALL_TIMEOUT, why);
}

static void on_log_error(step *s) {
        pd_instance *in = &s->lc->inst[s->ev->instance];
        char why[PD_ACTION_TEXT_MAX];

        if (s->ev->cls >= PD_CRASH_CLASS_MAX)
                return;
        in->evidence = pd_crash_evidence_merge(in->evidence, s->ev->cls);
        /* CUDA and driver errors leave a serving engine unusable even when it
         * keeps answering /health; an out-of-memory line may be one failed
         * request, so it only colours the classification of a later exit. */
        if (s->ev->cls != PD_CRASH_CUDA_ERROR && s->ev->cls != PD_CRASH_DRIVER_ERROR)
                return;
        if (!in->running || in->exit_expected || in->ready_at_ms == 0 ||
            s->ev->instance != PD_INSTANCE_PRIMARY || !serving(s->lc))
                return;
        textf(why, sizeof(why), "%s in engine log: %s",
                 pd_crash_class_to_string(s->ev->cls), detail(s, "(no line)"));
        serving_failed(s, s->ev->cls, why);
}

/* The serving primary exited 0 without being asked: the engine chose to
 * stop. Said in last_error; restarted only under `restart: always`. */
static void unrequested_exit(step *s) {
        pd_lifecycle *lc = s->lc;
        static const char why[] = "exited with code 0 (not requested)";

        if (s->p->restart == PD_RESTART_ALWAYS) {
                fail(s, PD_CRASH_GRACEFUL, PD_OUTCOME_CRASHED, "%s", why);
                return;
        }
        set_error(lc, PD_CRASH_GRACEFUL, why, s->now);
        timer_cancel(s, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
        push(s, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY);
        lc->state = PD_STATE_STOPPED;
}

static void on_exited(step *s) {
        pd_lifecycle *lc = s->lc;
        pd_instance_id id = s->ev->instance;
        pd_instance *in = &lc->inst[id];
        bool expected;
        pd_crash crash;
        char why[PD_ACTION_TEXT_MAX];

        if (!in->running)
                return;
        expected = in->exit_expected || s->ev->exit.requested;
        in->running = false;
        timer_cancel(s, PD_TIMER_KILL, id);
        timer_cancel(s, PD_TIMER_STARTUP, id);
        pd_crash_classify(&s->ev->exit, in->evidence, false, &crash);
        if (s->ev->exit.requested)
                crash.is_crash = false;
        if (s->ev->detail && s->ev->detail[0])
                textf(why, sizeof(why), "%s: %s", crash.reason, s->ev->detail);
        else
                textf(why, sizeof(why), "%s", crash.reason);
        /* An engine that exits 0 before it ever served has failed to start. */
        if (!expected && !crash.is_crash && in->ready_at_ms == 0 &&
            lc->state != PD_STATE_DRAINING && lc->state != PD_STATE_STOPPING) {
                crash.cls = PD_CRASH_EXIT_CODE;
                crash.is_crash = true;
                textf(why, sizeof(why), "exited with code 0 before it became ready");
        }

        switch (lc->state) {
        case PD_STATE_STOPPING:
                if (!any_running(lc)) {
                        timer_cancel(s, PD_TIMER_KILL, PD_INSTANCE_PRIMARY);
                        lc->state = PD_STATE_STOPPED;
                }
                return;
        case PD_STATE_DRAINING:
                if (!expected && crash.is_crash) {
                        lc->crash_count++;
                        set_error(lc, crash.cls, why, s->now);
                }
                if (id == PD_INSTANCE_PRIMARY) {
                        timer_cancel(s, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY);
                        drain_finished(s);
                }
                return;
        case PD_STATE_BACKOFF:
        case PD_STATE_FAILED:
                if (id == PD_INSTANCE_PRIMARY && lc->restart_on_exit &&
                    lc->state == PD_STATE_BACKOFF)
                        restart_due(s);
                return;
        case PD_STATE_PRELOADING:
                if (!expected && id == PD_INSTANCE_PRIMARY)
                        start_failed(s, id, crash.cls, PD_OUTCOME_CRASHED, why);
                return;
        case PD_STATE_READY:
                if (expected || id != PD_INSTANCE_PRIMARY)
                        return;
                if (!crash.is_crash) {
                        unrequested_exit(s);
                        return;
                }
                fail(s, crash.cls, PD_OUTCOME_CRASHED, "%s", why);
                return;
        case PD_STATE_RELOADING:
                break;
        case PD_STATE_EMPTY:
        case PD_STATE_STOPPED:
        case PD_STATE_MAX:
                return;
        }

        switch (lc->phase) {
        case PD_RELOAD_STOP_OLD:
                if (id == PD_INSTANCE_PRIMARY) {
                        spawn(s, PD_INSTANCE_PRIMARY, PD_SPEC_STAGED);
                        lc->phase = PD_RELOAD_START_NEW;
                }
                return;
        case PD_RELOAD_ROLLBACK_STOP:
                if (id == PD_INSTANCE_PRIMARY) {
                        push(s, PD_ACT_DISCARD_STAGED, PD_INSTANCE_PRIMARY);
                        spawn(s, PD_INSTANCE_PRIMARY, PD_SPEC_CURRENT);
                        lc->phase = PD_RELOAD_ROLLBACK_START;
                }
                return;
        case PD_RELOAD_START_NEW:
        case PD_RELOAD_ROLLBACK_START:
                if (!expected)
                        start_failed(s, id, crash.cls, PD_OUTCOME_CRASHED, why);
                return;
        case PD_RELOAD_SURGE_START:
                if (expected)
                        return;
                if (id == PD_INSTANCE_SURGE)
                        start_failed(s, id, crash.cls, PD_OUTCOME_CRASHED, why);
                else
                        serving_failed(s, crash.cls, why);
                return;
        case PD_RELOAD_SURGE_RETIRE:
        case PD_RELOAD_SURGE_STOP_OLD:
                if (id == PD_INSTANCE_SURGE) {
                        /* the old engine is gone: the reload is complete */
                        timer_cancel(s, PD_TIMER_DEADLINE, PD_INSTANCE_SURGE);
                        lc->state = PD_STATE_READY;
                        lc->phase = PD_RELOAD_NONE;
                        lc->deadline_at_ms = 0;
                } else if (!expected) {
                        serving_failed(s, crash.cls, why);
                }
                return;
        case PD_RELOAD_STAGING:
        case PD_RELOAD_DRAIN_OLD:
                if (!expected && id == PD_INSTANCE_PRIMARY)
                        serving_failed(s, crash.cls, why);
                return;
        case PD_RELOAD_NONE:
        case PD_RELOAD_PHASE_MAX:
                return;
        }
}

static int on_drain(step *s) {
        pd_lifecycle *lc = s->lc;

        if (s->ev->deadline_ms < 0)
                return -EINVAL;
        switch (lc->state) {
        case PD_STATE_DRAINING:
                return 0;   /* the drain already running answers */
        case PD_STATE_READY:
                lc->state = PD_STATE_DRAINING;
                lc->pending = PD_REPLY_DRAIN;
                lc->force_stopped = false;
                lc->deadline_at_ms = pd_sat_add_i64(s->now, s->ev->deadline_ms);
                if (lc->external) {
                        lc->state = PD_STATE_STOPPED;
                        reply(s, PD_REPLY_DRAIN, PD_OUTCOME_OK, NO_CLASS,
                              "external replica released");
                        return 0;
                }
                timer_arm(s, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY, lc->deadline_at_ms);
                return 0;
        case PD_STATE_PRELOADING:
        case PD_STATE_BACKOFF:
        case PD_STATE_FAILED:
                timer_cancel(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                reply_pending_failed(s, PD_OUTCOME_STOPPED,
                                     "drain requested before the engine became ready");
                lc->next_restart_at_ms = 0;
                lc->restart_on_exit = false;
                lc->force_stopped = false;
                lc->pending = PD_REPLY_DRAIN;
                lc->state = PD_STATE_DRAINING;
                if (lc->inst[PD_INSTANCE_PRIMARY].running)
                        stop(s, PD_INSTANCE_PRIMARY, NO_CLASS);
                else
                        drain_finished(s);
                return 0;
        case PD_STATE_RELOADING:
        case PD_STATE_STOPPING:
        case PD_STATE_STOPPED:
        case PD_STATE_EMPTY:
        case PD_STATE_MAX:
                break;
        }
        return PD_E_TRANSITION;
}

static void on_leases_zero(step *s) {
        pd_lifecycle *lc = s->lc;
        pd_instance_id waited;

        if (!pd_lifecycle_awaits_leases(lc, &waited) || waited != s->ev->instance)
                return;
        timer_cancel(s, PD_TIMER_DEADLINE, waited);
        lc->deadline_at_ms = 0;
        stop(s, waited, NO_CLASS);
        if (lc->state == PD_STATE_RELOADING)
                lc->phase = lc->phase == PD_RELOAD_DRAIN_OLD ? PD_RELOAD_STOP_OLD
                                                             : PD_RELOAD_SURGE_STOP_OLD;
}

static int on_reload(step *s) {
        pd_lifecycle *lc = s->lc;

        if (lc->external || lc->state != PD_STATE_READY)
                return PD_E_TRANSITION;
        if (s->ev->deadline_ms < 0 || s->ev->strategy >= PD_RELOAD_STRATEGY_MAX)
                return -EINVAL;
        lc->state = PD_STATE_RELOADING;
        lc->phase = PD_RELOAD_STAGING;
        lc->strategy = s->ev->strategy;
        lc->reload_deadline_ms = s->ev->deadline_ms;
        lc->reload_error[0] = '\0';
        lc->reload_error_cls = NO_CLASS;
        lc->pending = PD_REPLY_RELOAD;
        push(s, PD_ACT_STAGE, PD_INSTANCE_PRIMARY);
        return 0;
}

static void on_reload_staged(step *s) {
        pd_lifecycle *lc = s->lc;
        char why[PD_ACTION_TEXT_MAX];

        if (lc->state != PD_STATE_RELOADING || lc->phase != PD_RELOAD_STAGING)
                return;
        if (!s->ev->ok) {
                textf(why, sizeof(why), "staging failed: %s", detail(s, "model not usable"));
                reload_abort(s, PD_OUTCOME_STAGE_FAILED, why);
                return;
        }
        if (lc->strategy == PD_RELOAD_SURGE) {
                lc->phase = PD_RELOAD_SURGE_START;
                spawn(s, PD_INSTANCE_SURGE, PD_SPEC_STAGED);
                return;
        }
        lc->phase = PD_RELOAD_DRAIN_OLD;
        lc->deadline_at_ms = pd_sat_add_i64(s->now, lc->reload_deadline_ms);
        timer_arm(s, PD_TIMER_DEADLINE, PD_INSTANCE_PRIMARY, lc->deadline_at_ms);
}

static int on_rollback(step *s) {
        pd_lifecycle *lc = s->lc;
        const char *why = detail(s, "rollback requested");

        if (lc->state != PD_STATE_RELOADING)
                return PD_E_TRANSITION;
        switch (lc->phase) {
        case PD_RELOAD_STAGING:
        case PD_RELOAD_DRAIN_OLD:
                reload_abort(s, PD_OUTCOME_ROLLED_BACK, why);
                return 0;
        case PD_RELOAD_STOP_OLD:
        case PD_RELOAD_START_NEW:
                /* the old engine is already going: bring it back */
                rollback_begin(s, why);
                return 0;
        case PD_RELOAD_SURGE_START:
                surge_abort(s, why);
                return 0;
        case PD_RELOAD_ROLLBACK_STOP:
        case PD_RELOAD_ROLLBACK_START:
                return 0;   /* already rolling back */
        case PD_RELOAD_SURGE_RETIRE:
        case PD_RELOAD_SURGE_STOP_OLD:
        case PD_RELOAD_NONE:
        case PD_RELOAD_PHASE_MAX:
                break;
        }
        return PD_E_TRANSITION;   /* the new engine already serves */
}

static void on_driver_reset(step *s) {
        pd_lifecycle *lc = s->lc;
        pd_instance *in = &lc->inst[PD_INSTANCE_PRIMARY];
        char why[PD_ACTION_TEXT_MAX];

        if (lc->external)
                return;
        lc->driver_resets++;
        textf(why, sizeof(why), "driver reset: %s", detail(s, "GPU failed"));
        switch (lc->state) {
        case PD_STATE_READY:
        case PD_STATE_RELOADING:
                if (in->running && !in->exit_expected)
                        serving_failed(s, PD_CRASH_DRIVER_ERROR, why);
                else if (lc->phase == PD_RELOAD_START_NEW || lc->phase == PD_RELOAD_ROLLBACK_START)
                        start_failed(s, PD_INSTANCE_PRIMARY, PD_CRASH_DRIVER_ERROR,
                                     PD_OUTCOME_CRASHED, why);
                return;
        case PD_STATE_PRELOADING:
                start_failed(s, PD_INSTANCE_PRIMARY, PD_CRASH_DRIVER_ERROR, PD_OUTCOME_CRASHED, why);
                return;
        case PD_STATE_DRAINING:
                /* the GPU is gone: the leases cannot finish */
                lc->force_stopped = true;
                push(s, PD_ACT_DROP_LEASES, PD_INSTANCE_PRIMARY);
                stop(s, PD_INSTANCE_PRIMARY, PD_CRASH_DRIVER_ERROR);
                return;
        case PD_STATE_EMPTY:
        case PD_STATE_BACKOFF:
        case PD_STATE_FAILED:
        case PD_STATE_STOPPING:
        case PD_STATE_STOPPED:
        case PD_STATE_MAX:
                return;
        }
}

static void on_handoff(step *s) {
        pd_lifecycle *lc = s->lc;

        if (s->ev->type == PD_EV_HANDOFF_APPEARED) {
                if (!lc->external && lc->state != PD_STATE_EMPTY &&
                    lc->state != PD_STATE_STOPPED)
                        return;   /* a managed replica owns this id */
                lc->external = true;
                lc->state = PD_STATE_READY;
                lc->phase = PD_RELOAD_NONE;
                instance_reset(&lc->inst[PD_INSTANCE_PRIMARY]);
                lc->inst[PD_INSTANCE_PRIMARY].ready_at_ms = s->now;
                clear_error(lc);
                return;
        }
        if (lc->external)
                lc->state = PD_STATE_STOPPED;
}

static void on_breaker_reset(step *s) {
        pd_lifecycle *lc = s->lc;
        bool was_open = pd_breaker_set_state(&lc->breakers) != PD_BREAKER_CLOSED;

        pd_breaker_set_reset(&lc->breakers);
        breakers_note(s);
        if (was_open)
                alert(s, PD_ALERT_BREAKER_CLOSED, NO_CLASS, "breaker reset by operator");
        if (lc->state == PD_STATE_FAILED) {
                timer_cancel(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                restart_due(s);
        }
}

static int on_restart(step *s) {
        pd_lifecycle *lc = s->lc;
        pd_storm_verdict v;

        if (lc->external)
                return PD_E_TRANSITION;
        switch (lc->state) {
        case PD_STATE_BACKOFF:
        case PD_STATE_FAILED:
        case PD_STATE_STOPPED:
                /* One restart now, past the breaker and the storm limit,
                 * without resetting either. */
                timer_cancel(s, PD_TIMER_RESTART, PD_INSTANCE_PRIMARY);
                pd_storm_allow_once(&lc->storm);
                pd_storm_admit(&lc->storm, &s->p->storm, s->now, PD_CRASH_GRACEFUL, &v);
                lc->override_pending = true;
                lc->state = PD_STATE_BACKOFF;
                lc->next_restart_at_ms = s->now;
                restart_due(s);
                return 0;
        case PD_STATE_READY:
        case PD_STATE_PRELOADING:
                timer_cancel(s, PD_TIMER_STABLE, PD_INSTANCE_PRIMARY);
                reply_pending_failed(s, PD_OUTCOME_STOPPED, "restart requested");
                push(s, PD_ACT_REMOVE_HANDOFF, PD_INSTANCE_PRIMARY);
                stop(s, PD_INSTANCE_PRIMARY, NO_CLASS);
                lc->override_pending = true;
                lc->state = PD_STATE_BACKOFF;
                lc->next_restart_at_ms = s->now;
                restart_due(s);
                return 0;
        case PD_STATE_EMPTY:
        case PD_STATE_DRAINING:
        case PD_STATE_RELOADING:
        case PD_STATE_STOPPING:
        case PD_STATE_MAX:
                break;
        }
        return PD_E_TRANSITION;
}

static void on_timer(step *s) {
        pd_lifecycle *lc = s->lc;
        pd_instance_id id = s->ev->instance;
        pd_instance *in = &lc->inst[id];
        char why[PD_ACTION_TEXT_MAX];
        pd_instance_id waited;

        switch (s->ev->timer) {
        case PD_TIMER_RESTART:
                if (lc->state == PD_STATE_BACKOFF)
                        restart_due(s);
                else if (lc->state == PD_STATE_FAILED)
                        breaker_period_over(s);
                return;
        case PD_TIMER_STARTUP:
                if (!in->running || in->exit_expected || in->ready_at_ms != 0)
                        return;
                textf(why, sizeof(why), "health check failed: not ready within the startup timeout (%lld ms)",
                         (long long) s->p->health.startup_timeout_ms);
                start_failed(s, id, PD_CRASH_STARTUP_TIMEOUT, PD_OUTCOME_STARTUP_TIMEOUT, why);
                return;
        case PD_TIMER_KILL:
                if (in->running)
                        push(s, PD_ACT_SIGNAL_KILL, id);
                return;
        case PD_TIMER_DEADLINE:
                if (!pd_lifecycle_awaits_leases(lc, &waited) || waited != id)
                        return;
                lc->deadline_at_ms = 0;
                if (lc->state == PD_STATE_DRAINING) {
                        lc->force_stopped = true;
                        push(s, PD_ACT_DROP_LEASES, id);
                        stop(s, id, NO_CLASS);
                } else if (lc->phase == PD_RELOAD_DRAIN_OLD) {
                        reload_abort(s, PD_OUTCOME_DRAIN_TIMEOUT,
                                     "drain timeout: leases still active at the deadline");
                } else {
                        push(s, PD_ACT_DROP_LEASES, id);
                        stop(s, id, NO_CLASS);
                        lc->phase = PD_RELOAD_SURGE_STOP_OLD;
                }
                return;
        case PD_TIMER_STABLE:
                on_stable(s);
                return;
        case PD_TIMER_BREAKER:
                /* The turn to half-open was made before the event was
                 * handled (a replica in `failed` restarts on its own timer).
                 * Nothing is armed now: breaker_timer_follow() arms it again
                 * for a circuit still open. */
                lc->breaker_timer_at_ms = 0;
                return;
        case PD_TIMER_MAX:
                return;
        }
}

/* ---- public ----------------------------------------------------------- */

void pd_lifecycle_init(pd_lifecycle *lc) {
        memset(lc, 0, sizeof(*lc));
        lc->state = PD_STATE_EMPTY;
        lc->phase = PD_RELOAD_NONE;
        lc->strategy = PD_RELOAD_DRAIN_FIRST;
        for (int i = 0; i < PD_INSTANCE_MAX; i++)
                instance_reset(&lc->inst[i]);
        pd_backoff_init(&lc->backoff);
        pd_breaker_set_init(&lc->breakers);
        pd_storm_init(&lc->storm);
        lc->last_error_cls = NO_CLASS;
        lc->reload_error_cls = NO_CLASS;
}

/* Keeps PD_TIMER_BREAKER armed for the next open circuit's turn to
 * half-open; an action only when that moment changed. */
static void breaker_timer_follow(step *s) {
        pd_lifecycle *lc = s->lc;
        int64_t next = pd_breaker_set_next_half_open(&lc->breakers);

        if (next == lc->breaker_timer_at_ms)
                return;
        lc->breaker_timer_at_ms = next;
        if (next == 0)
                timer_cancel(s, PD_TIMER_BREAKER, PD_INSTANCE_PRIMARY);
        else
                timer_arm(s, PD_TIMER_BREAKER, PD_INSTANCE_PRIMARY, next);
}

static int dispatch(step *s) {
        pd_lifecycle *lc = s->lc;
        const pd_event *ev = s->ev;

        switch (ev->type) {
        case PD_EV_PRELOAD:
                return on_preload(s);
        case PD_EV_PREFLIGHT_FAILED:
        case PD_EV_SPAWN_FAILED:
                on_not_started(s);
                return 0;
        case PD_EV_SPAWNED:
                on_spawned(s);
                return 0;
        case PD_EV_PROBE_OK:
                on_probe_ok(s);
                return 0;
        case PD_EV_PROBE_FAILED:
        case PD_EV_PROBE_TIMEOUT:
                on_probe_bad(s);
                return 0;
        case PD_EV_STALL:
                on_stall(s);
                return 0;
        case PD_EV_EXITED:
                on_exited(s);
                return 0;
        case PD_EV_LOG_ERROR:
                on_log_error(s);
                return 0;
        case PD_EV_DRAIN:
                return on_drain(s);
        case PD_EV_LEASES_ZERO:
                on_leases_zero(s);
                return 0;
        case PD_EV_RELOAD:
                return on_reload(s);
        case PD_EV_RELOAD_STAGED:
                on_reload_staged(s);
                return 0;
        case PD_EV_ROLLBACK:
                return on_rollback(s);
        case PD_EV_DRIVER_RESET:
                on_driver_reset(s);
                return 0;
        case PD_EV_HANDOFF_APPEARED:
        case PD_EV_HANDOFF_VANISHED:
                on_handoff(s);
                return 0;
        case PD_EV_BREAKER_RESET:
                on_breaker_reset(s);
                return 0;
        case PD_EV_RESTART:
                return on_restart(s);
        case PD_EV_STOP:
                if (lc->external) {
                        lc->state = PD_STATE_STOPPED;
                        return 0;
                }
                if (lc->state == PD_STATE_EMPTY || lc->state == PD_STATE_STOPPED) {
                        lc->state = PD_STATE_STOPPED;
                        return 0;
                }
                stop_all(s, "stopped");
                return 0;
        case PD_EV_TIMER:
                on_timer(s);
                return 0;
        case PD_EVENT_TYPE_MAX:
                break;
        }
        return -EINVAL;
}

int pd_lifecycle_step(pd_lifecycle *lc, const pd_policy *p, const pd_event *ev,
                      int64_t now_ms, pd_rng *rng, pd_actions *out) {
        step s = { .lc = lc, .p = p, .ev = ev, .now = now_ms, .rng = rng, .out = out };
        int rc;

        if (!lc || !p || !ev || !out)
                return -EINVAL;
        out->count = 0;
        if (ev->type >= PD_EVENT_TYPE_MAX || ev->instance >= PD_INSTANCE_MAX ||
            (ev->type == PD_EV_TIMER && ev->timer >= PD_TIMER_MAX))
                return -EINVAL;

        /* A replica from an external handoff is tracked, not supervised:
         * only the handoff itself, a drain and a stop concern it. */
        if (lc->external && ev->type != PD_EV_HANDOFF_APPEARED &&
            ev->type != PD_EV_HANDOFF_VANISHED && ev->type != PD_EV_STOP &&
            ev->type != PD_EV_DRAIN && ev->type != PD_EV_PRELOAD &&
            ev->type != PD_EV_RELOAD && ev->type != PD_EV_RESTART)
                return 0;

        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                s.breaker_seen[i] = lc->breakers.circuit[i].state;
        /* Time has passed since the last event: a period that is over ends
         * before the event is judged, and is reported on its own. */
        pd_breaker_set_advance(&lc->breakers, now_ms);
        breakers_note(&s);
        rc = dispatch(&s);
        breakers_note(&s);
        breaker_timer_follow(&s);
        return rc;
}

bool pd_lifecycle_live(const pd_lifecycle *lc) {
        switch (lc->state) {
        case PD_STATE_PRELOADING:
        case PD_STATE_READY:
        case PD_STATE_DRAINING:
        case PD_STATE_RELOADING:
        case PD_STATE_STOPPING:
                return true;
        case PD_STATE_EMPTY:
        case PD_STATE_BACKOFF:
        case PD_STATE_FAILED:
        case PD_STATE_STOPPED:
        case PD_STATE_MAX:
                break;
        }
        return false;
}

bool pd_lifecycle_ready(const pd_lifecycle *lc) {
        return serving(lc) && !pd_lifecycle_draining(lc);
}

bool pd_lifecycle_draining(const pd_lifecycle *lc) {
        return lc->state == PD_STATE_DRAINING ||
               (lc->state == PD_STATE_RELOADING && lc->phase == PD_RELOAD_DRAIN_OLD);
}

bool pd_lifecycle_awaits_leases(const pd_lifecycle *lc, pd_instance_id *inst) {
        pd_instance_id id;

        if (lc->state == PD_STATE_DRAINING && !lc->external)
                id = PD_INSTANCE_PRIMARY;
        else if (lc->state == PD_STATE_RELOADING && lc->phase == PD_RELOAD_DRAIN_OLD)
                id = PD_INSTANCE_PRIMARY;
        else if (lc->state == PD_STATE_RELOADING && lc->phase == PD_RELOAD_SURGE_RETIRE)
                id = PD_INSTANCE_SURGE;
        else
                return false;
        if (!lc->inst[id].running || lc->inst[id].exit_expected)
                return false;
        if (inst)
                *inst = id;
        return true;
}

bool pd_lifecycle_retiring(const pd_lifecycle *lc) {
        return lc->state == PD_STATE_RELOADING &&
               (lc->phase == PD_RELOAD_SURGE_RETIRE || lc->phase == PD_RELOAD_SURGE_STOP_OLD);
}

pd_breaker_state pd_lifecycle_breaker_state(const pd_lifecycle *lc) {
        return pd_breaker_set_state(&lc->breakers);
}

/* ---- names ------------------------------------------------------------ */

#define NAME_OF(table, value, max) \
        ((unsigned) (value) < (unsigned) (max) ? (table)[(value)] : "unknown")

const char *pd_state_to_string(pd_state st) {
        static const char *const names[PD_STATE_MAX] = {
                [PD_STATE_EMPTY] = "empty",         [PD_STATE_PRELOADING] = "preloading",
                [PD_STATE_READY] = "ready",         [PD_STATE_DRAINING] = "draining",
                [PD_STATE_RELOADING] = "reloading", [PD_STATE_BACKOFF] = "backoff",
                [PD_STATE_FAILED] = "failed",       [PD_STATE_STOPPING] = "stopping",
                [PD_STATE_STOPPED] = "stopped",
        };
        return NAME_OF(names, st, PD_STATE_MAX);
}

const char *pd_reload_phase_to_string(pd_reload_phase ph) {
        static const char *const names[PD_RELOAD_PHASE_MAX] = {
                [PD_RELOAD_NONE] = "none",
                [PD_RELOAD_STAGING] = "staging",
                [PD_RELOAD_DRAIN_OLD] = "drain_old",
                [PD_RELOAD_STOP_OLD] = "stop_old",
                [PD_RELOAD_START_NEW] = "start_new",
                [PD_RELOAD_ROLLBACK_STOP] = "rollback_stop",
                [PD_RELOAD_ROLLBACK_START] = "rollback_start",
                [PD_RELOAD_SURGE_START] = "surge_start",
                [PD_RELOAD_SURGE_RETIRE] = "surge_retire",
                [PD_RELOAD_SURGE_STOP_OLD] = "surge_stop_old",
        };
        return NAME_OF(names, ph, PD_RELOAD_PHASE_MAX);
}

static const char *const strategy_names[PD_RELOAD_STRATEGY_MAX] = {
        [PD_RELOAD_DRAIN_FIRST] = "drain-first",
        [PD_RELOAD_SURGE] = "surge",
};

const char *pd_reload_strategy_to_string(pd_reload_strategy st) {
        return NAME_OF(strategy_names, st, PD_RELOAD_STRATEGY_MAX);
}

int pd_reload_strategy_from_string(const char *name, pd_reload_strategy *out) {
        if (!name || !out)
                return -EINVAL;
        for (int i = 0; i < PD_RELOAD_STRATEGY_MAX; i++)
                if (strcmp(name, strategy_names[i]) == 0) {
                        *out = (pd_reload_strategy) i;
                        return 0;
                }
        return PD_E_INVALID;
}

const char *pd_timer_to_string(pd_timer t) {
        static const char *const names[PD_TIMER_MAX] = {
                [PD_TIMER_RESTART] = "restart", [PD_TIMER_STARTUP] = "startup",
                [PD_TIMER_KILL] = "kill",       [PD_TIMER_DEADLINE] = "deadline",
                [PD_TIMER_STABLE] = "stable",   [PD_TIMER_BREAKER] = "breaker",
        };
        return NAME_OF(names, t, PD_TIMER_MAX);
}

const char *pd_event_type_to_string(pd_event_type t) {
        static const char *const names[PD_EVENT_TYPE_MAX] = {
                [PD_EV_PRELOAD] = "preload",
                [PD_EV_PREFLIGHT_FAILED] = "preflight_failed",
                [PD_EV_SPAWNED] = "spawned",
                [PD_EV_SPAWN_FAILED] = "spawn_failed",
                [PD_EV_PROBE_OK] = "probe_ok",
                [PD_EV_PROBE_FAILED] = "probe_failed",
                [PD_EV_PROBE_TIMEOUT] = "probe_timeout",
                [PD_EV_STALL] = "stall",
                [PD_EV_EXITED] = "exited",
                [PD_EV_LOG_ERROR] = "log_error",
                [PD_EV_DRAIN] = "drain",
                [PD_EV_LEASES_ZERO] = "leases_zero",
                [PD_EV_RELOAD] = "reload",
                [PD_EV_RELOAD_STAGED] = "reload_staged",
                [PD_EV_ROLLBACK] = "rollback",
                [PD_EV_DRIVER_RESET] = "driver_reset",
                [PD_EV_HANDOFF_APPEARED] = "handoff_appeared",
                [PD_EV_HANDOFF_VANISHED] = "handoff_vanished",
                [PD_EV_BREAKER_RESET] = "breaker_reset",
                [PD_EV_RESTART] = "restart",
                [PD_EV_STOP] = "stop",
                [PD_EV_TIMER] = "timer",
        };
        return NAME_OF(names, t, PD_EVENT_TYPE_MAX);
}

const char *pd_action_type_to_string(pd_action_type t) {
        static const char *const names[PD_ACTION_TYPE_MAX] = {
                [PD_ACT_SPAWN] = "spawn",
                [PD_ACT_PROBE_START] = "probe_start",
                [PD_ACT_PROBE_STOP] = "probe_stop",
                [PD_ACT_SIGNAL_TERM] = "signal_term",
                [PD_ACT_SIGNAL_KILL] = "signal_kill",
                [PD_ACT_TIMER_ARM] = "timer_arm",
                [PD_ACT_TIMER_CANCEL] = "timer_cancel",
                [PD_ACT_WRITE_HANDOFF] = "write_handoff",
                [PD_ACT_REMOVE_HANDOFF] = "remove_handoff",
                [PD_ACT_STAGE] = "stage",
                [PD_ACT_COMMIT_STAGED] = "commit_staged",
                [PD_ACT_DISCARD_STAGED] = "discard_staged",
                [PD_ACT_PROMOTE_SURGE] = "promote_surge",
                [PD_ACT_DROP_LEASES] = "drop_leases",
                [PD_ACT_REPLY] = "reply",
                [PD_ACT_ALERT] = "alert",
                [PD_ACT_BREAKER_TRANSITION] = "breaker_transition",
        };
        return NAME_OF(names, t, PD_ACTION_TYPE_MAX);
}

const char *pd_reply_to_string(pd_reply r) {
        static const char *const names[PD_REPLY_MAX] = {
                [PD_REPLY_NONE] = "none",   [PD_REPLY_PRELOAD] = "preload",
                [PD_REPLY_DRAIN] = "drain", [PD_REPLY_RELOAD] = "reload",
        };
        return NAME_OF(names, r, PD_REPLY_MAX);
}

const char *pd_outcome_to_string(pd_outcome o) {
        static const char *const names[PD_OUTCOME_MAX] = {
                [PD_OUTCOME_OK] = "ok",
                [PD_OUTCOME_PREFLIGHT] = "preflight",
                [PD_OUTCOME_SPAWN_FAILED] = "spawn_failed",
                [PD_OUTCOME_STARTUP_TIMEOUT] = "startup_timeout",
                [PD_OUTCOME_CRASHED] = "crashed",
                [PD_OUTCOME_STAGE_FAILED] = "stage_failed",
                [PD_OUTCOME_DRAIN_TIMEOUT] = "drain_timeout",
                [PD_OUTCOME_ROLLED_BACK] = "rolled_back",
                [PD_OUTCOME_ROLLBACK_FAILED] = "rollback_failed",
                [PD_OUTCOME_ENGINE_FAILED] = "engine_failed",
                [PD_OUTCOME_STOPPED] = "stopped",
        };
        return NAME_OF(names, o, PD_OUTCOME_MAX);
}

const char *pd_alert_to_string(pd_alert a) {
        static const char *const names[PD_ALERT_MAX] = {
                [PD_ALERT_STORM_WARNING] = "storm_warning",
                [PD_ALERT_THROTTLED] = "throttled",
                [PD_ALERT_STORM] = "storm",
                [PD_ALERT_BREAKER_OPENED] = "breaker_opened",
                [PD_ALERT_BREAKER_CLOSED] = "breaker_closed",
        };
        return NAME_OF(names, a, PD_ALERT_MAX);
}
