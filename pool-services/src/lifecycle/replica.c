/* SPDX-License-Identifier: MIT */
/*
 * A supervised replica: the glue between the pure lifecycle machine in
 * pool-domain and the world. What happens (spawned, probe answered, pidfd
 * fired, log line written, timer expired, operator asked) becomes a
 * pd_event; pd_lifecycle_step() answers with actions, which
 * replica-actions.c carries out. Events produced while actions run are
 * queued, so the machine is never re-entered. This file holds the queue,
 * the step loop, the record's life and the operator's requests; probes,
 * engine output, leases and the snapshot have files of their own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "lifecycle/replica-private.h"
#include "pool-services/hash.h"

/* ---- reporting -------------------------------------------------------- */

void ps_replica_emit(ps_replica *r, ps_event_type type, ps_log_level level, const char *message,
                     const ps_field *fields, size_t n_fields) {
        ps_event ev = {
                .type = type,
                .level = level,
                .pool_id = r->pool_id,
                .replica_id = r->replica_id,
                .correlation_id = r->correlation_id,
                .message = message,
                .fields = fields,
                .n_fields = n_fields,
        };
        ps_event_emit(&r->ctx->sink, &ev);
}

/* ---- queue -------------------------------------------------------------- */

/* The queue starts small and doubles up to REPLICA_QUEUE_MAX: most
 * replicas never hold more than a few events at once, and a node may run
 * a thousand of them. */
static bool queue_grow(ps_replica *r) {
        unsigned cap = r->q_cap ? r->q_cap * 2 : 4;
        queued_event *q;

        if (cap > REPLICA_QUEUE_MAX)
                return false;
        q = malloc(cap * sizeof(*q));
        if (!q)
                return false;
        for (unsigned i = 0; i < r->q_len; i++)
                q[i] = r->queue[(r->q_head + i) % r->q_cap];
        free(r->queue);
        r->queue = q;
        r->q_cap = cap;
        r->q_head = 0;
        return true;
}

void ps_replica_enqueue(ps_replica *r, const pd_event *ev) {
        queued_event *q;

        if (r->q_len == r->q_cap && !queue_grow(r)) {
                /* Cannot happen with the machine's bounded fan-out; losing an
                 * event silently would be worse than saying so. */
                REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "event queue full: event dropped",
                             PS_FIELD_STR("event", pd_event_type_to_string(ev->type)));
                return;
        }
        q = &r->queue[(r->q_head + r->q_len++) % r->q_cap];
        q->ev = *ev;
        q->detail[0] = '\0';
        if (ev->detail)
                snprintf(q->detail, sizeof(q->detail), "%s", ev->detail);
        q->ev.detail = q->detail[0] ? q->detail : NULL;
}

int ps_replica_feed(ps_replica *r, const pd_event *ev) {
        ps_replica_enqueue(r, ev);
        ps_replica_run(r);
        return 0;
}

void ps_replica_kick(ps_replica *r) {
        ps_replica_run(r);
}

void ps_replica_enqueue_simple(ps_replica *r, pd_event_type type, pd_instance_id id,
                               const char *detail) {
        pd_event ev = { .type = type, .instance = id, .detail = detail };

        ps_replica_enqueue(r, &ev);
}

/* One log line per decision an operator cares about. */
static void report_transition(ps_replica *r, pd_state before, unsigned crashes_before) {
        const pd_lifecycle *lc = &r->lc;

        /* A stable run sets crash_count back to 0: only a rise is a failure. */
        if (lc->crash_count > crashes_before) {
                /* One line with the whole decision: what happened, what
                 * it counts as, and what comes next. */
                bool exited = r->last_exit_known;
                const ps_exit_status *st = &r->last_exit;

                REPLICA_EMIT(r, PS_EVENT_ENGINE_FAILED, PS_LOG_ERROR, "engine failed",
                             PS_FIELD_STR("engine_version", ps_replica_engine_version(r)),
                             PS_FIELD_STR("class", pd_crash_class_to_string(lc->last_error_cls)),
                             PS_FIELD_STR("last_error", lc->last_error),
                             exited && st->exited ? PS_FIELD_INT("exit_code", st->code) : PS_FIELD_STR("exit_code", NULL),
                             exited && !st->exited ? PS_FIELD_STR("signal", pd_signal_name(st->signo))
                                                   : PS_FIELD_STR("signal", NULL),
                             exited ? PS_FIELD_INT("uptime_s", r->last_uptime_ms / 1000) : PS_FIELD_STR("uptime_s", NULL),
                             PS_FIELD_INT("crash_count", lc->crash_count),
                             PS_FIELD_INT("restart_count", lc->restart_count),
                             PS_FIELD_STR("state", pd_state_to_string(lc->state)),
                             PS_FIELD_INT("backoff_ms", lc->backoff_ms),
                             lc->next_restart_at_ms ?
                                     PS_FIELD_INT("next_restart_at",
                                                  ps_replica_mono_to_wall(r, lc->next_restart_at_ms)) :
                                     PS_FIELD_STR("next_restart_at", NULL));
                r->last_exit_known = false;
        }
        if (lc->state == before)
                return;
        if (lc->state != PD_STATE_READY && lc->state != PD_STATE_RELOADING)
                r->promoted = false;   /* the surge did not end in ready */
        if (lc->state == PD_STATE_READY && r->inst[PD_INSTANCE_PRIMARY].engine) {
                if (!r->promoted)
                        r->ready_wall_ms = ps_replica_wall_now(r);
                r->promoted = false;
                r->last_heartbeat_wall_ms = ps_replica_wall_now(r);
                REPLICA_EMIT(r, PS_EVENT_READY, PS_LOG_INFO, "ready",
                             PS_FIELD_INT("pid", ps_engine_pid(r->inst[PD_INSTANCE_PRIMARY].engine)),
                             PS_FIELD_STR("engine_version", ps_replica_engine_version(r)),
                             PS_FIELD_STR("device_mask", r->current->device_mask),
                             PS_FIELD_INT("startup_ms", r->ready_wall_ms -
                                                        r->inst[PD_INSTANCE_PRIMARY].started_wall_ms));
        } else if (lc->state == PD_STATE_BACKOFF) {
                REPLICA_EMIT(r, PS_EVENT_RESTART_SCHEDULED, PS_LOG_WARN, "restart scheduled",
                             PS_FIELD_STR("engine_version", ps_replica_engine_version(r)),
                             PS_FIELD_INT("backoff_ms", lc->backoff_ms),
                             PS_FIELD_INT("next_restart_at", ps_replica_mono_to_wall(r, lc->next_restart_at_ms)),
                             PS_FIELD_INT("crash_count", lc->crash_count),
                             PS_FIELD_INT("restart_count", lc->restart_count));
        } else if (lc->state == PD_STATE_FAILED) {
                REPLICA_EMIT(r, PS_EVENT_STATE_CHANGED, PS_LOG_ERROR, "state changed",
                             PS_FIELD_STR("from", pd_state_to_string(before)),
                             PS_FIELD_STR("state", pd_state_to_string(lc->state)),
                             PS_FIELD_STR("last_error", lc->last_error),
                             PS_FIELD_INT("crash_count", lc->crash_count),
                             PS_FIELD_INT("next_restart_at", ps_replica_mono_to_wall(r, lc->next_restart_at_ms)));
        } else {
                REPLICA_EMIT(r, PS_EVENT_STATE_CHANGED, PS_LOG_INFO, "state changed",
                             PS_FIELD_STR("from", pd_state_to_string(before)),
                             PS_FIELD_STR("state", pd_state_to_string(lc->state)));
        }
}

/*
 * Runs queued events through the machine until the queue is empty, then
 * answers the requests that finished. Answers go out last and nothing of r
 * is touched afterwards: a callback may free the replica.
 */
void ps_replica_run(ps_replica *r) {
        reply_out replies[REPLICA_REPLIES_MAX];
        size_t n_replies = 0;
        pd_actions out;

        if (r->stepping)
                return;
        r->stepping = true;
        for (;;) {
                if (r->q_len == 0 && !ps_replica_queue_lease_events(r))
                        break;
                queued_event q = r->queue[r->q_head];
                pd_state before = r->lc.state;
                unsigned crashes = r->lc.crash_count;
                int rc;

                r->q_head = (r->q_head + 1) % r->q_cap;
                r->q_len--;
                q.ev.detail = q.detail[0] ? q.detail : NULL;
                rc = pd_lifecycle_step(&r->lc, ps_replica_domain_policy(r), &q.ev,
                                       ps_replica_mono_now(r), &r->rng, &out);
                if (rc < 0)
                        REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "lifecycle refused an event",
                                     PS_FIELD_STR("event", pd_event_type_to_string(q.ev.type)),
                                     PS_FIELD_STR("error", strerror(-rc)));
                for (size_t i = 0; i < out.count; i++)
                        ps_replica_execute(r, &out.item[i], replies, &n_replies);
                report_transition(r, before, crashes);
        }
        r->stepping = false;
        /* What a request set in motion has played out. */
        if (r->correlation_id && (r->lc.state == PD_STATE_READY || r->lc.state == PD_STATE_FAILED ||
                                  r->lc.state == PD_STATE_STOPPED)) {
                free(r->correlation_id);
                r->correlation_id = NULL;
        }
        if (r->owner.settled)
                r->owner.settled(r, r->owner.userdata);
        for (size_t i = 0; i < n_replies; i++)
                replies[i].to.fn(replies[i].rc, replies[i].text, replies[i].to.userdata);
}

/* ---- timers ------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        replica_timer *t = userdata;
        pd_event ev = { .type = PD_EV_TIMER, .timer = t->timer, .instance = t->inst };

        (void) fd;
        (void) what;
        ps_replica_feed(t->owner, &ev);
}

/* ---- life of the record ------------------------------------------------ */

static uint64_t hash_ids(const char *a, const char *b) {
        return ps_fnv1a_str(ps_fnv1a_str(PS_FNV1A_INIT, a), b);
}

ps_replica *ps_replica_new(const ps_context *ctx, const ps_engine_spec *spec,
                           const ps_policy *pol, const ps_replica_owner *owner) {
        ps_replica *r = calloc(1, sizeof(*r));

        if (!r)
                return NULL;
        if (owner)
                r->owner = *owner;
        r->ctx = ctx;
        r->current = ps_engine_spec_copy(spec);
        r->policy = pol ? ps_policy_copy(pol) : ps_policy_new();
        r->pool_id = spec ? strdup(spec->pool_id) : NULL;
        r->home_port = spec ? spec->port : 0;
        r->replica_id = spec ? strdup(spec->replica_id) : NULL;
        if (!r->current || !r->policy || !r->pool_id || !r->replica_id)
                return ps_replica_free(r);
        pd_lifecycle_init(&r->lc);
        pd_rng_seed(&r->rng, ctx->seed ^ hash_ids(r->pool_id, r->replica_id));
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                replica_inst *in = &r->inst[i];

                in->owner = r;
                in->id = (pd_instance_id) i;
                in->probe_timer = evtimer_new(ctx->base, ps_replica_on_probe_timer, in);
                if (!in->probe_timer)
                        return ps_replica_free(r);
                for (int t = 0; t < PD_TIMER_MAX; t++) {
                        replica_timer *rt = &r->timers[t][i];

                        *rt = (replica_timer) { .owner = r, .timer = (pd_timer) t,
                                                .inst = (pd_instance_id) i };
                        rt->ev = evtimer_new(ctx->base, on_timer, rt);
                        if (!rt->ev)
                                return ps_replica_free(r);
                }
        }
        return r;
}

ps_replica *ps_replica_free(ps_replica *r) {
        if (!r)
                return NULL;
        /* Whoever waits for an answer gets one: the replica is gone. */
        for (int i = 0; i < PD_REPLY_MAX; i++) {
                pending_reply to = r->pending[i];

                r->pending[i] = (pending_reply) { 0 };
                if (to.fn)
                        to.fn(ps_replica_reply_code((pd_reply) i, PD_OUTCOME_STOPPED, 0),
                              "the replica was removed", to.userdata);
        }
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                replica_inst *in = &r->inst[i];

                if (in->probe)
                        ps_probe_cancel(in->probe);
                if (in->probe_timer)
                        event_free(in->probe_timer);
                ps_logtail_free(in->tail);
                ps_engine_free(in->engine);   /* never kills: adoption */
                ps_engine_free(in->dead);
                for (int t = 0; t < PD_TIMER_MAX; t++)
                        if (r->timers[t][i].ev)
                                event_free(r->timers[t][i].ev);
        }
        ps_engine_spec_free(r->current);
        ps_engine_spec_free(r->staged);
        ps_policy_free(r->policy);
        free(r->pool_id);
        free(r->replica_id);
        free(r->correlation_id);
        free(r->queue);
        free(r->ext_url);
        free(r);
        return NULL;
}

bool ps_replica_engine_running(const ps_replica *r) {
        return r->inst[PD_INSTANCE_PRIMARY].engine || r->inst[PD_INSTANCE_SURGE].engine;
}

/* ---- operations --------------------------------------------------------- */

/* "pool <id> replica <id> <what>" into err; returns code. */
static int refuse(char *err, size_t errlen, int code, const char *what, const ps_replica *r) {
        if (err && errlen)
                snprintf(err, errlen, "pool %s replica %s %s", r->pool_id, r->replica_id, what);
        return code;
}

int ps_replica_preload(ps_replica *r, ps_done_fn done, void *userdata, char *err, size_t errlen) {
        return ps_replica_preload_spec(r, NULL, done, userdata, err, errlen);
}

int ps_replica_preload_spec(ps_replica *r, const ps_engine_spec *spec, ps_done_fn done,
                            void *userdata, char *err, size_t errlen) {
        ps_engine_spec *copy = NULL;
        pd_actions out;
        pd_event ev = { .type = PD_EV_PRELOAD };
        int rc;

        if (r->stepping)
                return -EBUSY;
        /* Try the transition first so a refusal leaves nothing pending. */
        {
                pd_lifecycle probe = r->lc;
                pd_rng rng = r->rng;

                rc = pd_lifecycle_step(&probe, ps_replica_domain_policy(r), &ev,
                                       ps_replica_mono_now(r), &rng, &out);
        }
        if (rc == PD_E_BREAKER_OPEN)
                return refuse(err, errlen, PS_E_BREAKER_OPEN,
                              "cannot start: its circuit breaker is open", r);
        if (rc != 0)
                return refuse(err, errlen, PS_E_CONFLICT,
                              "is already running", r);
        /* Accepted: only now does the new spec replace the old one. */
        if (spec) {
                if (r->lc.external || ps_replica_engine_running(r))
                        return refuse(err, errlen, PS_E_CONFLICT, "is running", r);
                copy = ps_engine_spec_copy(spec);
                if (!copy)
                        return -ENOMEM;
                ps_engine_spec_free(r->current);
                r->current = copy;
        }
        r->pending[PD_REPLY_PRELOAD] = (pending_reply) { .fn = done, .userdata = userdata };
        return ps_replica_feed(r, &ev);
}

int ps_replica_set_correlation_id(ps_replica *r, const char *id) {
        char *copy = NULL;

        if (id && !(copy = strdup(id)))
                return -ENOMEM;
        free(r->correlation_id);
        r->correlation_id = copy;
        return 0;
}

int ps_replica_set_spec(ps_replica *r, const ps_engine_spec *spec, char *err, size_t errlen) {
        ps_engine_spec *copy;

        if (r->stepping || r->lc.external || ps_replica_engine_running(r) ||
            pd_lifecycle_live(&r->lc))
                return refuse(err, errlen, PS_E_CONFLICT, "is running", r);
        copy = ps_engine_spec_copy(spec);
        if (!copy)
                return -ENOMEM;
        ps_engine_spec_free(r->current);
        r->current = copy;
        return 0;
}

int ps_replica_stop(ps_replica *r, char *err, size_t errlen) {
        pd_event ev = { .type = PD_EV_STOP };

        if (!ps_replica_engine_running(r) && !r->lc.external &&
            (r->lc.state == PD_STATE_EMPTY || r->lc.state == PD_STATE_STOPPED))
                return refuse(err, errlen, PS_E_NOT_RUNNING,
                              "has no engine to stop", r);
        return ps_replica_feed(r, &ev);
}

int ps_replica_restart(ps_replica *r, char *err, size_t errlen) {
        pd_lifecycle probe = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;
        pd_event ev = { .type = PD_EV_RESTART };

        if (pd_lifecycle_step(&probe, ps_replica_domain_policy(r), &ev, ps_replica_mono_now(r),
                              &rng, &out) != 0)
                return refuse(err, errlen, PS_E_CONFLICT,
                              "cannot restart while draining, reloading or stopping", r);
        return ps_replica_feed(r, &ev);
}

int ps_replica_breaker_reset(ps_replica *r) {
        pd_event ev = { .type = PD_EV_BREAKER_RESET };

        return ps_replica_feed(r, &ev);
}

int ps_replica_driver_reset(ps_replica *r, const char *why) {
        pd_event ev = { .type = PD_EV_DRIVER_RESET, .detail = why };

        return ps_replica_feed(r, &ev);
}

/* ---- for the pool ------------------------------------------------------- */

bool ps_replica_accepts(const ps_replica *r, const pd_event *ev) {
        pd_lifecycle trial = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;

        return pd_lifecycle_step(&trial, ps_replica_domain_policy(r), ev, ps_replica_mono_now(r),
                                 &rng, &out) == 0;
}

int ps_replica_request(ps_replica *r, const pd_event *ev, pd_reply reply,
                       ps_done_fn fn, void *userdata) {
        pd_lifecycle trial = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;
        int rc;

        if (r->stepping)
                return -EBUSY;
        if (reply <= PD_REPLY_NONE || reply >= PD_REPLY_MAX)
                return -EINVAL;
        rc = pd_lifecycle_step(&trial, ps_replica_domain_policy(r), ev, ps_replica_mono_now(r), &rng, &out);
        if (rc != 0)
                return rc;
        r->pending[reply] = (pending_reply) { .fn = fn, .userdata = userdata };
        return ps_replica_feed(r, ev);
}

void ps_replica_forget_reply(ps_replica *r, pd_reply reply) {
        if (reply < PD_REPLY_MAX)
                r->pending[reply] = (pending_reply) { 0 };
}
