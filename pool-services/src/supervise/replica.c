/* SPDX-License-Identifier: MIT */
/*
 * A supervised replica: the glue between the pure lifecycle machine in
 * pool-domain and the world. What happens (spawned, probe answered, pidfd
 * fired, log line written, timer expired, operator asked) becomes a
 * pd_event; pd_lifecycle_step() answers with actions; this file carries
 * them out. Events produced while actions run are queued, so the machine
 * is never re-entered. The engines themselves are supervise/instance.c's.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/policy-private.h"
#include "supervise/replica-private.h"
#include "supervise/report.h"
#include "pool-services/placement/inventory.h"
#include "pool-domain/crash.h"
#include "pool-domain/lease.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/base/hash.h"

static void run(ps_replica *r);

/* ---- time ------------------------------------------------------------- */

static int64_t mono_now(const ps_replica *r) {
        return ps_clock_mono_ms(r->ctx->clock);
}

static int64_t wall_now(const ps_replica *r) {
        return ps_clock_wall_ms(r->ctx->clock);
}

static const pd_policy *policy(const ps_replica *r) {
        return ps_policy_domain(r->policy);
}

/* ---- reporting -------------------------------------------------------- */

static ps_speaker speaker(const ps_replica *r) {
        return (ps_speaker) { .ctx = r->ctx, .pool_id = r->pool_id, .replica_id = r->replica_id,
                              .correlation_id = r->correlation_id };
}

static void emit(ps_replica *r, ps_event_type type, ps_log_level level, const char *message,
                 const ps_field *fields, size_t n_fields) {
        ps_speaker who = speaker(r);

        ps_report_emit(&who, type, level, message, fields, n_fields);
}

#define EMIT(r, type, level, message, ...)                                    \
        do {                                                                     \
                const ps_field f_[] = { __VA_ARGS__ };                           \
                emit((r), (type), (level), (message), f_, sizeof(f_) / sizeof(f_[0])); \
        } while (0)

static const char *engine_version(const ps_replica *r) {
        return r->current ? r->current->engine_version : NULL;
}

/* ---- queue -------------------------------------------------------------- */

static void enqueue(ps_replica *r, const pd_event *ev) {
        /* Cannot fail with the machine's bounded fan-out; losing an event
         * silently would be worse than saying so. */
        if (!ps_event_queue_push(r->queue, ev))
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "event queue full: event dropped",
                     PS_FIELD_STR("event", pd_event_type_to_string(ev->type)));
}

int ps_replica_feed(ps_replica *r, const pd_event *ev) {
        enqueue(r, ev);
        run(r);
        return 0;
}

void ps_replica_kick(ps_replica *r) {
        run(r);
}

static void feed_simple(ps_replica *r, pd_event_type type, pd_instance_id id,
                        const char *detail) {
        pd_event ev = { .type = type, .instance = id, .detail = detail };

        enqueue(r, &ev);
}

/* ---- leases ------------------------------------------------------------- */

uint32_t ps_replica_slots(const ps_replica *r) { return r->current->slots; }

uint32_t ps_replica_leases(const ps_replica *r) {
        return pd_sat_add_u32(r->inst[PD_INSTANCE_PRIMARY].leases,
                              r->inst[PD_INSTANCE_SURGE].leases);
}

uint32_t ps_replica_inst_leases(const ps_replica *r, pd_instance_id inst) { return r->inst[inst].leases; }

int ps_replica_lease_add(ps_replica *r, pd_instance_id inst) {
        pd_slots slots = { .total = r->current->slots, .leased = r->inst[inst].leases };

        if (pd_slots_acquire(&slots) != 0)
                return PS_E_NO_SLOT;
        r->inst[inst].leases = slots.leased;
        return 0;
}

void ps_replica_lease_remove(ps_replica *r, pd_instance_id inst) {
        if (r->inst[inst].leases > 0)
                r->inst[inst].leases--;
}

uint32_t ps_replica_take_leases_dropped(ps_replica *r) {
        uint32_t n = r->leases_dropped;

        r->leases_dropped = 0;
        return n;
}

/* Ends the leases held on one engine instance by force (drain deadline,
 * engine gone); they count as dropped. */
static void drop_leases(ps_replica *r, pd_instance_id inst) {
        uint32_t counted = r->inst[inst].leases;
        /* not a request's doing: no correlation id */
        ps_speaker who = { .ctx = r->ctx, .pool_id = r->pool_id, .replica_id = r->replica_id };

        if (r->owner.drop_leases)
                r->owner.drop_leases(r, inst, r->owner.userdata);
        r->inst[inst].leases = 0;
        if (counted == 0)
                return;
        r->leases_dropped = pd_sat_add_u32(r->leases_dropped, counted);
        PS_REPORT(&who, PS_EVENT_LEASE, PS_LOG_WARN, "leases ended by force",
                  PS_FIELD_STR("lease", "dropped"), PS_FIELD_STR("reason", NULL),
                  PS_FIELD_INT("leases", counted));
}

/* ---- driver errors --------------------------------------------------------- */

/* The GPUs the replica's engine runs on; false when it names none. */
static bool gpu_mask(const ps_replica *r, ps_device_mask *m) {
        const char *text = ps_replica_device_mask(r);

        return text && ps_inventory_parse_mask(NULL, text, m, NULL, 0) == 0 && !m->none;
}

void ps_replica_share_trouble(ps_replica *r, const ps_replica *from, const char *why) {
        ps_device_mask theirs, mine;

        if (r == from || r->lc.external || !ps_replica_engine_running(r) ||
            !gpu_mask(from, &theirs) || !gpu_mask(r, &mine) ||
            !ps_device_mask_overlaps(&theirs, &mine, NULL))
                return;
        EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "driver error on a shared GPU: restarting",
             PS_FIELD_STR("from_pool", from->pool_id),
             PS_FIELD_STR("from_replica", from->replica_id),
             PS_FIELD_STR("line", why));
        ps_replica_driver_reset(r, why);
}

/*
 * A driver error is the device's, not one engine's (the GPU fell off the
 * bus, the driver and library disagree): the owner resets every other
 * replica with one of its GPUs, which restarts with backoff once it can.
 */
static void spread_driver_trouble(ps_replica *r, const char *why) {
        ps_device_mask m;

        if (r->owner.device_trouble && gpu_mask(r, &m))
                r->owner.device_trouble(r, why, r->owner.userdata);
}

/* ---- what the engine instances report ------------------------------------ */

static void inst_emit(ps_instance *proc, ps_event_type type, ps_log_level level,
                      const char *message, const ps_field *fields, size_t n_fields,
                      void *userdata) {
        (void) proc;
        emit(userdata, type, level, message, fields, n_fields);
}

static bool inst_ready(const ps_instance *proc, void *userdata) {
        const ps_replica *r = userdata;

        return r->lc.inst[ps_instance_id(proc)].ready_at_ms != 0;
}

static const char *inst_probe_host(const ps_instance *proc, void *userdata) {
        const ps_replica *r = userdata;
        const ps_engine_spec *spec = ps_instance_id(proc) == PD_INSTANCE_SURGE && r->staged ?
                                     r->staged : r->current;

        return spec->host;
}

static void inst_spawned(ps_instance *proc, void *userdata) {
        ps_replica *r = userdata;

        ps_replica_note_engine(r, PS_ENGINE_UP, ps_instance_id(proc), ps_instance_engine(proc),
                               r->spawning);
        feed_simple(r, PD_EV_SPAWNED, ps_instance_id(proc), NULL);
}

/* Recorded before the fork: a daemon killed before its next commit still
 * finds the engine by its command line. */
static void inst_starting(ps_instance *proc, void *userdata) {
        ps_replica *r = userdata;

        ps_replica_note_engine(r, PS_ENGINE_STARTING, ps_instance_id(proc), NULL, r->spawning);
}

static void inst_preflight_failed(ps_instance *proc, int refusal, const char *err,
                                  void *userdata) {
        pd_event ev = { .type = PD_EV_PREFLIGHT_FAILED, .instance = ps_instance_id(proc),
                        .refusal = refusal, .detail = err };

        enqueue(userdata, &ev);
}

/* A start that failed for the node's fault is fed as a node error, retried
 * on its own schedule and never counted as a crash. */
static void inst_spawn_failed(ps_instance *proc, bool node_error, const char *err,
                              void *userdata) {
        pd_event ev = { .type = PD_EV_SPAWN_FAILED, .instance = ps_instance_id(proc),
                        .detail = err };

        if (node_error)
                ev.cls = PD_CRASH_NODE_ERROR;
        enqueue(userdata, &ev);
}

static void inst_probe_result(ps_instance *proc, pd_event_type kind, const char *detail,
                              void *userdata) {
        ps_replica *r = userdata;
        pd_instance_id id = ps_instance_id(proc);

        if (kind == PD_EV_PROBE_TIMEOUT || kind == PD_EV_PROBE_FAILED)
                EMIT(r, PS_EVENT_PROBE_FAILED, PS_LOG_WARN, "health probe failed",
                     PS_FIELD_STR("detail", detail),
                     PS_FIELD_INT("consecutive", r->lc.inst[id].probe_failures + 1));
        feed_simple(r, kind, id, detail);
        run(r);
}

/* A 200 from someone else on the engine's port: last_error says who. */
static void inst_probe_not_counted(ps_instance *proc, const char *why, void *userdata) {
        ps_replica *r = userdata;

        (void) proc;
        if (strcmp(r->lc.last_error, why) != 0) {
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN, "health probe not counted",
                     PS_FIELD_STR("error", why));
                snprintf(r->lc.last_error, sizeof(r->lc.last_error), "%s", why);
                r->lc.last_error_cls = PD_CRASH_CLASS_MAX;
                r->lc.last_error_at_ms = mono_now(r);
        }
}

static bool inst_log_line(ps_instance *proc, const char *line, size_t len, void *userdata) {
        ps_replica *r = userdata;
        const char *last = ps_instance_last_line(proc);
        pd_crash_class cls;
        pd_event ev;

        if (!pd_crash_scan_line(line, len, &cls))
                return false;
        ev = (pd_event) { .type = PD_EV_LOG_ERROR, .instance = ps_instance_id(proc), .cls = cls,
                          .detail = last };
        EMIT(r, PS_EVENT_ENGINE_LOG_ERROR, cls == PD_CRASH_VRAM_OOM ? PS_LOG_WARN : PS_LOG_ERROR,
             "engine reported an error",
             PS_FIELD_STR("class", pd_crash_class_to_string(cls)),
             PS_FIELD_STR("line", last));
        /* Before r's own step, which may end with r freed. */
        if (cls == PD_CRASH_DRIVER_ERROR)
                spread_driver_trouble(r, last);
        enqueue(r, &ev);
        run(r);
        return true;
}

static void inst_exited(ps_instance *proc, const ps_instance_exit *how, void *userdata) {
        ps_replica *r = userdata;
        pd_instance_id id = ps_instance_id(proc);
        const ps_exit_status *st = how->status;
        pd_event ev = { .type = PD_EV_EXITED, .instance = id, .cls = PD_CRASH_CLASS_MAX,
                        .detail = how->cause };
        ps_speaker who = speaker(r);

        ps_replica_note_engine(r, PS_ENGINE_GONE, id, NULL, NULL);
        r->last_exit = (ps_report_exit) { .known = true, .status = *st, .uptime_ms = how->uptime_ms };
        ev.exit = (pd_exit) { .exited = st->exited, .code = st->code, .signo = st->signo,
                              .status_unknown = st->status_unknown };
        ps_report_exited(&who, how->pid, &r->last_exit, how->cause, engine_version(r),
                         r->lc.inst[id].exit_expected);
        if (how->host_oom) {
                /* evidence for the classifier: the kernel killed it */
                pd_event hint = { .type = PD_EV_LOG_ERROR, .instance = id,
                                  .cls = PD_CRASH_HOST_OOM };
                enqueue(r, &hint);
        }
        enqueue(r, &ev);
        run(r);
}

static void inst_idle(ps_instance *proc, void *userdata) {
        (void) proc;
        run(userdata);
}

static const ps_instance_ops inst_ops = {
        .emit = inst_emit,
        .ready = inst_ready,
        .probe_host = inst_probe_host,
        .spawned = inst_spawned,
                .starting = inst_starting,
        .preflight_failed = inst_preflight_failed,
        .spawn_failed = inst_spawn_failed,
        .probe_result = inst_probe_result,
        .probe_not_counted = inst_probe_not_counted,
        .log_line = inst_log_line,
        .exited = inst_exited,
        .idle = inst_idle,
};

/* ---- actions -------------------------------------------------------------- */

static void act_spawn(ps_replica *r, const pd_action *a) {
        replica_inst *in = &r->inst[a->instance];
        const ps_engine_spec *spec = a->spec == PD_SPEC_STAGED && r->staged ? r->staged : r->current;
        ps_instance_start how = { .spec = spec, .restart_count = r->lc.restart_count };
        ps_engine_identity recorded;
        char surge_pid[PATH_MAX], surge_log[PATH_MAX];

        if (spec->port != r->home_port) {
                /* An engine on the spare port (a surge reload) must not
                 * clobber the files of the one on the home port: the files
                 * follow the port, so the two never share them. */
                snprintf(surge_pid, sizeof(surge_pid), "%s_%s.surge.pid", spec->pool_id, spec->replica_id);
                snprintf(surge_log, sizeof(surge_log), "engine-%s_%s.surge.log", spec->pool_id,
                         spec->replica_id);
                how.pid_name = surge_pid;
                how.log_name = surge_log;
        }
        /* The first start of a replica takes over an engine a previous
         * daemon left running: the one the state store recorded, else the
         * one its PID file names. */
        if (!r->started_once && (r->ctx->engine_recorded || spec->port == r->home_port)) {
                r->started_once = true;
                how.adopt = true;
                if (r->ctx->engine_recorded)
                        how.recorded = r->ctx->engine_recorded(r, &recorded, r->ctx->engine_userdata) == 0 ?
                                       &recorded : NULL;
                how.recorded_only = r->ctx->engine_recorded != NULL;
        }
        r->spawning = spec;
        ps_instance_spawn(in->proc, &how);
        r->spawning = NULL;
}

/* A failed write is tried again (ps_handoff_retry); only the first failure
 * of an episode is logged, and its end. */
static int write_handoff(void *userdata) {
        ps_replica *r = userdata;
        ps_handoff h = {
                .spec = r->current,
                .pid = ps_instance_pid(r->inst[PD_INSTANCE_PRIMARY].proc),
                .slots_free = pd_sat_sub_u32(r->current->slots,
                                             r->inst[PD_INSTANCE_PRIMARY].leases),
        };
        char err[REPLICA_DETAIL_MAX], buf[PATH_MAX];
        const char *dir = ps_handoff_dir(r->ctx, buf, sizeof(buf));
        int rc = ps_handoff_write(dir, &h, err, sizeof(err));

        if (rc == 0) {
                if (ps_handoff_retry_cancel(r->handoff_retry))
                        EMIT(r, PS_EVENT_GENERIC, PS_LOG_INFO, "handoff written after a failure",
                             PS_FIELD_STR("dir", dir));
                return 0;
        }
        if (!r->handoff_retry)
                r->handoff_retry = ps_handoff_retry_new(r->ctx->base, write_handoff, r);
        if (!r->handoff_retry || ps_handoff_retry_failed(r->handoff_retry))
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "cannot write handoff; retrying with backoff",
                     PS_FIELD_STR("error", err));
        return rc;
}

static void act_write_handoff(ps_replica *r) {
        (void) write_handoff(r);
}

static void act_stage(ps_replica *r) {
        char why[REPLICA_DETAIL_MAX];
        pd_event ev = { .type = PD_EV_RELOAD_STAGED, .ok = true };

        if (!r->staged) {
                ev.ok = false;
                ev.detail = "nothing staged";
        } else if (r->staged->model_path && access(r->staged->model_path, R_OK) < 0) {
                snprintf(why, sizeof(why), "model %s: %s", r->staged->model_path, strerror(errno));
                ev.ok = false;
                ev.detail = why;
        }
        enqueue(r, &ev);
}

/* The primary engine serves: ready_at is now, and a line says so. */
static void announce_ready(ps_replica *r) {
        const replica_inst *in = &r->inst[PD_INSTANCE_PRIMARY];
        ps_speaker who = speaker(r);

        r->ready_wall_ms = wall_now(r);
        r->ready_pid = ps_instance_pid(in->proc);
        r->last_heartbeat_wall_ms = r->ready_wall_ms;
        ps_report_ready(&who, r->ready_pid, r->current,
                        r->ready_wall_ms - ps_instance_started_wall_ms(in->proc));
}

/* The surge engine becomes the primary: the two slots swap, and each
 * instance is told its new place. A probe in flight is cancelled and sent
 * again. */
static void swap_inst(ps_replica *r) {
        replica_inst tmp;

        for (int i = 0; i < PD_INSTANCE_MAX; i++)
                ps_instance_idle_forget(r->inst[i].proc);
        tmp = r->inst[PD_INSTANCE_PRIMARY];
        r->inst[PD_INSTANCE_PRIMARY] = r->inst[PD_INSTANCE_SURGE];
        r->inst[PD_INSTANCE_SURGE] = tmp;
        ps_replica_note_engine(r, PS_ENGINE_SWAPPED, PD_INSTANCE_PRIMARY, NULL, NULL);
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                ps_instance_set_id(r->inst[i].proc, (pd_instance_id) i);
                ps_instance_probe_restart(r->inst[i].proc);
        }
        /* The surge engine serves from now on: the replica is ready with
         * it, not once the old one has finished retiring. */
        announce_ready(r);
}

static void execute(ps_replica *r, const pd_action *a, ps_reply_batch *replies) {
        replica_inst *in = &r->inst[a->instance];
        ps_speaker who = speaker(r);

        switch (a->type) {
        case PD_ACT_SPAWN:
                act_spawn(r, a);
                break;
        case PD_ACT_PROBE_START:
                ps_instance_probe_start(in->proc);
                break;
        case PD_ACT_PROBE_STOP:
                ps_instance_probe_stop(in->proc);
                break;
        case PD_ACT_SIGNAL_TERM:
                ps_instance_signal(in->proc, SIGTERM);
                break;
        case PD_ACT_SIGNAL_KILL:
                ps_instance_signal(in->proc, SIGKILL);
                break;
        case PD_ACT_TIMER_ARM:
                ps_machine_timers_arm(r->timers, a->timer, a->instance, a->at_ms - mono_now(r));
                break;
        case PD_ACT_TIMER_CANCEL:
                ps_machine_timers_cancel(r->timers, a->timer, a->instance);
                break;
        case PD_ACT_WRITE_HANDOFF:
                act_write_handoff(r);
                break;
        case PD_ACT_REMOVE_HANDOFF:
                ps_handoff_retry_cancel(r->handoff_retry);
                (void) ps_handoff_remove(ps_handoff_dir(r->ctx, (char[PATH_MAX]) { "" }, PATH_MAX),
                                         r->pool_id, r->replica_id);
                break;
        case PD_ACT_STAGE:
                act_stage(r);
                break;
        case PD_ACT_COMMIT_STAGED:
                if (r->staged) {
                        ps_engine_spec_free(r->current);
                        r->current = r->staged;
                        r->staged = NULL;
                }
                break;
        case PD_ACT_DISCARD_STAGED:
                r->staged = ps_engine_spec_free(r->staged);
                break;
        case PD_ACT_PROMOTE_SURGE:
                swap_inst(r);
                if (r->owner.leases_moved)
                        r->owner.leases_moved(r, r->owner.userdata);
                break;
        case PD_ACT_DROP_LEASES:
                drop_leases(r, a->instance);
                break;
        case PD_ACT_REPLY:
                ps_report_request_done(&who, a);
                ps_replies_take(r->replies, a, replies);
                break;
        case PD_ACT_ALERT:
                ps_report_alert(&who, a, &r->lc);
                break;
        case PD_ACT_BREAKER_TRANSITION:
                ps_report_breaker_transition(&who, a);
                break;
        case PD_ACTION_TYPE_MAX:
                break;
        }
}

/* One log line per decision an operator cares about. */
static void report_transition(ps_replica *r, pd_state before, unsigned crashes_before) {
        const pd_lifecycle *lc = &r->lc;
        const ps_instance *primary = r->inst[PD_INSTANCE_PRIMARY].proc;
        ps_speaker who = speaker(r);

        /* A stable run sets crash_count back to 0: only a rise is a failure. */
        if (lc->crash_count > crashes_before) {
                ps_report_failure(&who, lc, engine_version(r), &r->last_exit);
                r->last_exit.known = false;
        }
        if (lc->state == before)
                return;
        if (lc->state == PD_STATE_READY && ps_instance_running(primary)) {
                /* The engine that served throughout (a surge that failed
                 * beside it, or its own promotion said so) is no news. */
                if (ps_instance_pid(primary) != r->ready_pid)
                        announce_ready(r);
        } else {
                ps_report_state_change(&who, lc, before, engine_version(r));
        }
}

/*
 * What the leases mean for the machine once the queue is empty: an
 * instance it drains may have none left (and no request in flight), and a
 * stopped replica serves none (a crashed engine's leases stay until then:
 * the control plane may still release them). Returns whether an event was
 * queued.
 */
static bool queue_lease_events(ps_replica *r) {
        pd_instance_id id = PD_INSTANCE_MAX;
        bool none;

        if (r->lc.state == PD_STATE_STOPPED && ps_replica_leases(r) > 0)
                for (int i = 0; i < PD_INSTANCE_MAX; i++)
                        drop_leases(r, (pd_instance_id) i);
        none = pd_lifecycle_awaits_leases(&r->lc, &id) && r->inst[id].leases == 0;
        for (int i = 0; i < PD_INSTANCE_MAX; i++)
                if (!none || i != (int) id)
                        ps_instance_idle_forget(r->inst[i].proc);
        if (!none || !ps_instance_idle_reached(r->inst[id].proc))
                return false;
        feed_simple(r, PD_EV_LEASES_ZERO, id, NULL);
        return true;
}

/*
 * Runs queued events through the machine until the queue is empty, then
 * answers the requests that finished. Answers go out last and nothing of r
 * is touched afterwards: a callback may free the replica.
 */
static void run(ps_replica *r) {
        ps_reply_batch replies = { .n = 0 };
        pd_actions out;

        if (r->stepping)
                return;
        r->stepping = true;
        for (;;) {
                if (ps_event_queue_empty(r->queue) && !queue_lease_events(r))
                        break;
                ps_queued_event q;
                pd_state before = r->lc.state;
                unsigned crashes = r->lc.crash_count;
                int rc;

                (void) ps_event_queue_pop(r->queue, &q);
                rc = pd_lifecycle_step(&r->lc, policy(r), &q.ev, mono_now(r), &r->rng, &out);
                if (rc < 0)
                        EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "lifecycle refused an event",
                             PS_FIELD_STR("event", pd_event_type_to_string(q.ev.type)),
                             PS_FIELD_STR("error", strerror(-rc)));
                for (size_t i = 0; i < out.count; i++)
                        execute(r, &out.item[i], &replies);
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
        ps_reply_batch_send(&replies);
}

/* ---- timers ------------------------------------------------------------- */

static void on_timer(pd_timer timer, pd_instance_id inst, void *userdata) {
        ps_replica *r = userdata;
        pd_event ev = { .type = PD_EV_TIMER, .timer = timer, .instance = inst };
        pd_instance_id id;

        /* The deadline bounds the wait for requests in flight: an engine
         * whose leases have ended leaves now, as one that went idle. */
        if (timer == PD_TIMER_DEADLINE && pd_lifecycle_awaits_leases(&r->lc, &id) &&
            id == inst && r->inst[id].leases == 0) {
                ps_instance_idle_forget(r->inst[id].proc);
                feed_simple(r, PD_EV_LEASES_ZERO, id, NULL);
        }
        ps_replica_feed(r, &ev);
}

/* ---- life of the record ------------------------------------------------ */

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
        r->queue = ps_event_queue_new();
        r->replies = ps_replies_new();
        if (!r->current || !r->policy || !r->pool_id || !r->replica_id || !r->queue || !r->replies)
                return ps_replica_free(r);
        pd_lifecycle_init(&r->lc);
        pd_rng_seed(&r->rng, ctx->seed ^ ps_fnv1a_str(ps_fnv1a_str(PS_FNV1A_INIT, r->pool_id),
                                                      r->replica_id));
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                replica_inst *in = &r->inst[i];

                in->proc = ps_instance_new(ctx, (pd_instance_id) i, r->policy, &inst_ops, r);
                if (!in->proc)
                        return ps_replica_free(r);
        }
        r->timers = ps_machine_timers_new(ctx->base, on_timer, r);
        return r->timers ? r : ps_replica_free(r);
}

ps_replica *ps_replica_free(ps_replica *r) {
        if (!r)
                return NULL;
        /* Whoever waits for an answer gets one: the replica is gone. */
        ps_replies_free(r->replies, "the replica was removed");
        for (int i = 0; i < PD_INSTANCE_MAX; i++)
                ps_instance_free(r->inst[i].proc);   /* never kills: adoption */
        ps_machine_timers_free(r->timers);
        ps_engine_spec_free(r->current);
        ps_engine_spec_free(r->staged);
        ps_policy_free(r->policy);
        free(r->pool_id);
        free(r->replica_id);
        free(r->correlation_id);
        ps_event_queue_free(r->queue);
        free(r->ext_url);
        ps_handoff_retry_free(r->handoff_retry);
        free(r);
        return NULL;
}

bool ps_replica_engine_running(const ps_replica *r) {
        return ps_instance_running(r->inst[PD_INSTANCE_PRIMARY].proc) ||
               ps_instance_running(r->inst[PD_INSTANCE_SURGE].proc);
}

/* ---- operations --------------------------------------------------------- */

/* "pool <id> replica <id> <what>" into err; returns code. */
static int refuse(char *err, size_t errlen, int code, const char *what, const ps_replica *r) {
        if (err && errlen)
                snprintf(err, errlen, "pool %s replica %s %s", r->pool_id, r->replica_id, what);
        return code;
}

/* What the machine says to ev, tried on a copy: a refusal leaves nothing
 * changed. The pd_lifecycle_step() result. */
static int trial_step(const ps_replica *r, const pd_event *ev) {
        pd_lifecycle trial = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;

        return pd_lifecycle_step(&trial, policy(r), ev, mono_now(r), &rng, &out);
}

int ps_replica_preload(ps_replica *r, ps_done_fn done, void *userdata, char *err, size_t errlen) {
        return ps_replica_preload_spec(r, NULL, done, userdata, err, errlen);
}

int ps_replica_preload_spec(ps_replica *r, const ps_engine_spec *spec, ps_done_fn done,
                            void *userdata, char *err, size_t errlen) {
        ps_engine_spec *copy = NULL;
        pd_event ev = { .type = PD_EV_PRELOAD };
        int rc;

        if (r->stepping)
                return -EBUSY;
        if (r->removing)
                return refuse(err, errlen, PS_E_CONFLICT, "is being removed: cannot start", r);
        /* Try the transition first so a refusal leaves nothing pending. */
        rc = trial_step(r, &ev);
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
        ps_replies_expect(r->replies, PD_REPLY_PRELOAD, done, userdata);
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
        pd_event ev = { .type = PD_EV_RESTART };

        if (r->removing)
                return refuse(err, errlen, PS_E_CONFLICT, "is being removed: cannot restart", r);
        if (trial_step(r, &ev) != 0)
                return refuse(err, errlen, PS_E_CONFLICT,
                              "cannot restart while draining, reloading or stopping", r);
        EMIT(r, PS_EVENT_GENERIC, PS_LOG_INFO, PS_REPLICA_RESTART_REQUESTED,
             PS_FIELD_STR("state", pd_state_to_string(r->lc.state)));
        return ps_replica_feed(r, &ev);
}

void ps_replica_mark_removing(ps_replica *r) { r->removing = true; }

int ps_replica_breaker_reset(ps_replica *r) {
        pd_event ev = { .type = PD_EV_BREAKER_RESET };

        return ps_replica_feed(r, &ev);
}

int ps_replica_driver_reset(ps_replica *r, const char *why) {
        pd_event ev = { .type = PD_EV_DRIVER_RESET, .detail = why };

        return ps_replica_feed(r, &ev);
}

const char *ps_replica_device_mask(const ps_replica *r) {
        return r->current ? r->current->device_mask : NULL;
}

const char *ps_replica_pool_id(const ps_replica *r) { return r->pool_id; }
const char *ps_replica_id(const ps_replica *r) { return r->replica_id; }

int ps_replica_log_path(const ps_replica *r, char *buf, size_t len) {
        const char *path = ps_instance_log_path(r->inst[PD_INSTANCE_PRIMARY].proc);
        int n;

        if (path)
                n = snprintf(buf, len, "%s", path);
        else
                n = snprintf(buf, len, "%s/engine-%s_%s.log", r->ctx->runtime_dir, r->pool_id,
                             r->replica_id);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

const char *ps_replica_state(const ps_replica *r) { return ps_report_shown_state(&r->lc); }
bool ps_replica_live(const ps_replica *r) { return pd_lifecycle_live(&r->lc); }
bool ps_replica_ready(const ps_replica *r) { return pd_lifecycle_ready(&r->lc); }
bool ps_replica_draining(const ps_replica *r) { return pd_lifecycle_draining(&r->lc); }
bool ps_replica_external(const ps_replica *r) { return r->lc.external; }
unsigned ps_replica_crash_count(const ps_replica *r) { return r->lc.crash_count; }
unsigned ps_replica_restart_count(const ps_replica *r) { return r->lc.restart_count; }

int ps_replica_pid(const ps_replica *r) { return ps_instance_pid(r->inst[PD_INSTANCE_PRIMARY].proc); }

int ps_replica_url(const ps_replica *r, char *buf, size_t len) {
        if (r->ext_url)
                return snprintf(buf, len, "%s", r->ext_url);
        return ps_engine_spec_url(r->current, buf, len);
}

void ps_replica_status_get(const ps_replica *r, ps_replica_status *out) {
        const ps_engine_spec *s = r->current;
        const replica_inst *in = &r->inst[PD_INSTANCE_PRIMARY];
        int64_t started = ps_instance_running(in->proc) ? ps_instance_started_wall_ms(in->proc) : 0;
        bool ready = pd_lifecycle_ready(&r->lc);

        *out = (ps_replica_status) {
                .pool_id = r->pool_id,
                .replica_id = r->replica_id,
                .pid = ps_replica_pid(r),
                .port = s->port,
                .home_port = r->home_port,
                .engine = s->engine,
                .engine_version = s->engine_version,
                .model_id = s->model_id,
                .model_digest = s->model_digest,
                .device_mask = s->device_mask,
                .slots_total = s->slots,
                .active_leases = ps_replica_leases(r),
                .primary_leases = in->leases,
                .surge_leases = r->inst[PD_INSTANCE_SURGE].leases,
                .retiring_leases = pd_lifecycle_retiring(&r->lc) ? r->inst[PD_INSTANCE_SURGE].leases : 0,
                .last_heartbeat = r->last_heartbeat_wall_ms,
                .started_at = started,
                .ready_at = ready ? r->ready_wall_ms : 0,
                .uptime_s = started ? (wall_now(r) - started) / 1000 : 0,
        };
        ps_report_status(r->ctx, &r->lc, policy(r), out);
        ps_replica_url(r, out->url, sizeof(out->url));
        if (ready)
                out->slots_free = r->has_slots_free ? r->ext_slots_free :
                                  pd_sat_sub_u32(s->slots, in->leases);
}

/* ---- for the pool ------------------------------------------------------- */

bool ps_replica_accepts(const ps_replica *r, const pd_event *ev) {
        return trial_step(r, ev) == 0;
}

int ps_replica_request(ps_replica *r, const pd_event *ev, pd_reply reply,
                       ps_done_fn fn, void *userdata) {
        int rc;

        if (r->stepping)
                return -EBUSY;
        if (reply <= PD_REPLY_NONE || reply >= PD_REPLY_MAX)
                return -EINVAL;
        rc = trial_step(r, ev);
        if (rc != 0)
                return rc;
        ps_replies_expect(r->replies, reply, fn, userdata);
        return ps_replica_feed(r, ev);
}

void ps_replica_forget_reply(ps_replica *r, pd_reply reply) { ps_replies_forget(r->replies, reply); }

const pd_lifecycle *ps_replica_lifecycle(const ps_replica *r) { return &r->lc; }
const ps_engine_spec *ps_replica_spec(const ps_replica *r) { return r->current; }
uint16_t ps_replica_home_port(const ps_replica *r) { return r->home_port; }
const ps_policy *ps_replica_policy(const ps_replica *r) { return r->policy; }

int ps_replica_stage(ps_replica *r, const ps_engine_spec *spec) {
        ps_engine_spec *copy = NULL;

        if (spec && !(copy = ps_engine_spec_copy(spec)))
                return -ENOMEM;
        ps_engine_spec_free(r->staged);
        r->staged = copy;
        return 0;
}

int ps_replica_set_policy(ps_replica *r, const ps_policy *pol) {
        ps_policy *copy = ps_policy_copy(pol);

        if (!copy)
                return -ENOMEM;
        ps_policy_free(r->policy);
        r->policy = copy;
        for (int i = 0; i < PD_INSTANCE_MAX; i++)
                ps_instance_set_policy(r->inst[i].proc, r->policy);
        return 0;
}

static void set_str(char **at, const char *value) {
        if (!value)
                return;
        free(*at);
        *at = strdup(value);
}

int ps_replica_take_handoff(ps_replica *r, const ps_replica_handoff *h) {
        pd_event ev = { .type = PD_EV_HANDOFF_APPEARED };

        /* Seed semantics: what the handoff says is set, the rest stays
         * (but for the slots, below). */
        set_str(&r->current->engine_version, h->engine_version);
        set_str(&r->current->engine, h->engine);
        set_str(&r->current->device_mask, h->device_mask);
        set_str(&r->ext_url, h->url);
        set_str(&r->current->model_id, h->model_id);
        /* The slots are the file's, every time: absent ones are not kept. */
        r->current->slots = h->slots;
        r->has_slots_free = h->has_slots_free;
        r->ext_slots_free = h->slots_free;
        r->last_heartbeat_wall_ms = wall_now(r);
        r->ready_wall_ms = r->last_heartbeat_wall_ms;
        return ps_replica_feed(r, &ev);
}

/* ---- the policy's state, for the state store ------------------------------ */

void ps_replica_policy_state_get(const ps_replica *r, ps_replica_policy_state *out) {
        ps_report_policy_state_get(r->ctx, &r->lc, out);
}

void ps_replica_policy_state_set(ps_replica *r, const ps_replica_policy_state *in) {
        ps_report_policy_state_set(r->ctx, &r->lc, in);
}

/* ---- the engines' record (the daemon's state store) ----------------------- */

void ps_replica_note_engine(ps_replica *r, ps_engine_change what, unsigned instance,
                            const ps_engine *engine, const ps_engine_spec *spec) {
        if (r->ctx->engine_changed)
                r->ctx->engine_changed(r, what, instance, engine, spec, r->ctx->engine_userdata);
}
