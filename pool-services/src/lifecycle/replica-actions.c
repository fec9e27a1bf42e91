/* SPDX-License-Identifier: MIT */
/*
 * The actions of the lifecycle machine carried out: spawn (or adopt) an
 * engine, signal it, arm timers, write the handoff, stage and promote a
 * reload, report alerts and answer whoever waits.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "lifecycle/replica-private.h"
#include "pool-domain/crash.h"
#include "pool-domain/lease.h"
#include "pool-services/fs.h"
#include "pool-services/handoff.h"

/*
 * The runtime directory was deleted while the daemon ran (a tmp cleaner,
 * an operator): make it again, ours alone, rather than fail the start, and
 * say what was lost with it. A directory that fails the check fails the
 * start like a spawn failure. 0, or -1 with the failure fed.
 */
static int runtime_dir_ready(ps_replica *r, unsigned instance) {
        char err[512];
        bool recreated = false;

        if (ps_private_dir_again(r->ctx->runtime_dir, &recreated, err, sizeof(err)) < 0) {
                REPLICA_EMIT(r, PS_EVENT_SPAWN_FAILED, PS_LOG_ERROR, "cannot use the runtime directory",
                             PS_FIELD_STR("error", err));
                ps_replica_enqueue_simple(r, PD_EV_SPAWN_FAILED, instance, err);
                return -1;
        }
        if (recreated) {
                REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN,
                             "runtime directory was gone and has been made again: the PID files, engine "
                             "logs, handoff files and API socket in it were lost",
                             PS_FIELD_STR("runtime_dir", r->ctx->runtime_dir));
                if (r->ctx->runtime_dir_recreated)
                        r->ctx->runtime_dir_recreated(r->ctx->runtime_dir_userdata);
        }
        return 0;
}

/*
 * The first start of a replica takes over an engine a previous daemon left
 * running, before preflight counts its VRAM as taken. Whether it did.
 */
static bool adopt_engine(ps_replica *r, const pd_action *a, const ps_engine_spec *spec,
                         const ps_engine_options *opts) {
        replica_inst *in = &r->inst[a->instance];
        char err[REPLICA_DETAIL_MAX] = "";
        int rc;

        r->started_once = true;
        rc = ps_engine_adopt(r->ctx->base, spec, opts, ps_replica_on_engine_exit, in, &in->engine,
                             err, sizeof(err));
        if (rc == 0) {
                in->started_wall_ms = ps_replica_wall_now(r);
                in->tail = ps_logtail_new(r->ctx->base, ps_engine_log_path(in->engine),
                                          ps_engine_log_start(in->engine), ps_replica_on_log_line, in);
                REPLICA_EMIT(r, PS_EVENT_ENGINE_SPAWNED, PS_LOG_INFO, "engine adopted",
                             PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
                             PS_FIELD_STR("engine", spec->engine),
                             PS_FIELD_STR("engine_version", spec->engine_version),
                             PS_FIELD_STR("device_mask", spec->device_mask),
                             PS_FIELD_STR("model_id", spec->model_id));
                ps_replica_enqueue_simple(r, PD_EV_SPAWNED, a->instance, NULL);
                return true;
        }
        /* A PID file naming someone else's process (another user's, or
         * through a symlink) is not ours to take over: say so. */
        if (rc == -EPERM)
                REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN, "engine not adopted",
                             PS_FIELD_STR("error", err));
        return false;
}

static void act_spawn(ps_replica *r, const pd_action *a) {
        replica_inst *in = &r->inst[a->instance];
        const ps_engine_spec *spec = a->spec == PD_SPEC_STAGED && r->staged ? r->staged : r->current;
        ps_engine_options opts = {
                .runtime_dir = r->ctx->runtime_dir,
                .run_as_user = r->ctx->engine_user,
                .env_pass = r->ctx->engine_env_pass,
                .n_env_pass = r->ctx->n_engine_env_pass,
        };
        char err[REPLICA_DETAIL_MAX] = "";
        char surge_pid[PATH_MAX], surge_log[PATH_MAX];
        int rc;

        in->dead = ps_engine_free(in->dead);
        in->tail = ps_logtail_free(in->tail);
        in->last_line[0] = '\0';
        if (spec->port != r->home_port) {
                /* An engine on the spare port (a surge reload) must not
                 * clobber the files of the one on the home port: the files
                 * follow the port, so the two never share them. */
                snprintf(surge_pid, sizeof(surge_pid), "%s_%s.surge.pid", spec->pool_id, spec->replica_id);
                snprintf(surge_log, sizeof(surge_log), "engine-%s_%s.surge.log", spec->pool_id,
                         spec->replica_id);
                opts.pid_name = surge_pid;
                opts.log_name = surge_log;
        }
        if (!r->started_once && spec->port == r->home_port && adopt_engine(r, a, spec, &opts))
                return;
        rc = r->ctx->preflight ? r->ctx->preflight(spec, r->ctx->preflight_userdata, err,
                                                   sizeof(err)) : 0;
        if (rc != 0) {
                /* The refusal's own code goes back to whoever waits for
                 * the start; a check that broke is a refusal too. */
                pd_event ev = { .type = PD_EV_PREFLIGHT_FAILED, .instance = a->instance,
                                .refusal = rc > 0 ? rc : PS_E_PREFLIGHT, .detail = err };

                REPLICA_EMIT(r, PS_EVENT_SPAWN_FAILED, PS_LOG_ERROR, "preflight refused the start",
                             PS_FIELD_STR("error", err), PS_FIELD_STR("device_mask", spec->device_mask));
                ps_replica_enqueue(r, &ev);
                return;
        }
        if (runtime_dir_ready(r, a->instance) < 0)
                return;
        in->oom_known = ps_replica_read_oom_kill(&in->oom_kill_before);
        rc = ps_engine_spawn(r->ctx->base, spec, &opts, ps_replica_on_engine_exit, in, &in->engine,
                             err, sizeof(err));
        if (rc < 0) {
                REPLICA_EMIT(r, PS_EVENT_SPAWN_FAILED, PS_LOG_ERROR, "engine spawn failed",
                             PS_FIELD_STR("error", err),
                             PS_FIELD_STR("binary", spec->binary_path));
                ps_replica_enqueue_simple(r, PD_EV_SPAWN_FAILED, a->instance, err);
                return;
        }
        in->started_wall_ms = ps_replica_wall_now(r);
        in->tail = ps_logtail_new(r->ctx->base, ps_engine_log_path(in->engine),
                                  ps_engine_log_start(in->engine), ps_replica_on_log_line, in);
        if (!in->tail)
                REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN,
                             "cannot follow engine log; CUDA errors in it go unnoticed",
                             PS_FIELD_STR("path", ps_engine_log_path(in->engine)),
                             PS_FIELD_STR("error", strerror(errno)));
        REPLICA_EMIT(r, PS_EVENT_ENGINE_SPAWNED, PS_LOG_INFO, "engine spawned",
                     PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
                     PS_FIELD_STR("engine", spec->engine),
                     PS_FIELD_STR("engine_version", spec->engine_version),
                     PS_FIELD_STR("device_mask", spec->device_mask),
                     PS_FIELD_STR("model_id", spec->model_id),
                     PS_FIELD_INT("restart_count", r->lc.restart_count));
        ps_replica_enqueue_simple(r, PD_EV_SPAWNED, a->instance, NULL);
}

static void act_signal(ps_replica *r, const pd_action *a, int signo) {
        replica_inst *in = &r->inst[a->instance];

        if (!in->engine)
                return;
        REPLICA_EMIT(r, PS_EVENT_GENERIC, signo == SIGKILL ? PS_LOG_WARN : PS_LOG_INFO,
                     signo == SIGKILL ? "stop grace over: killing engine" : "stopping engine",
                     PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
                     PS_FIELD_STR("signal", pd_signal_name(signo)));
        (void) ps_engine_signal(in->engine, signo);
}

static void act_timer(ps_replica *r, const pd_action *a) {
        replica_timer *t = &r->timers[a->timer][a->instance];
        struct timeval tv;

        if (a->type == PD_ACT_TIMER_CANCEL) {
                evtimer_del(t->ev);
                return;
        }
        tv = ps_replica_ms_to_tv(a->at_ms - ps_replica_mono_now(r));
        evtimer_add(t->ev, &tv);
}

static void act_write_handoff(ps_replica *r) {
        ps_handoff h = {
                .spec = r->current,
                .pid = r->inst[PD_INSTANCE_PRIMARY].engine ?
                       ps_engine_pid(r->inst[PD_INSTANCE_PRIMARY].engine) : 0,
                .slots_free = pd_sat_sub_u32(r->current->slots,
                                             r->inst[PD_INSTANCE_PRIMARY].leases),
        };
        char err[REPLICA_DETAIL_MAX];

        if (ps_handoff_write(ps_handoff_dir(r->ctx, (char[PATH_MAX]) { "" }, PATH_MAX), &h,
                             err, sizeof(err)) < 0)
                REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "cannot write handoff",
                             PS_FIELD_STR("error", err));
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
        ps_replica_enqueue(r, &ev);
}

/* The surge engine becomes the primary. Every callback (exit, log lines,
 * probe timer) holds a pointer to the slot, not to its contents, so each
 * is pointed at the slot its engine moves to; a probe in flight is
 * cancelled and sent again. */
static void swap_inst(ps_replica *r) {
        replica_inst tmp;

        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                evtimer_del(r->inst[i].probe_timer);
                if (r->inst[i].probe) {
                        ps_probe_cancel(r->inst[i].probe);
                        r->inst[i].probe = NULL;
                }
        }
        tmp = r->inst[PD_INSTANCE_PRIMARY];
        r->inst[PD_INSTANCE_PRIMARY] = r->inst[PD_INSTANCE_SURGE];
        r->inst[PD_INSTANCE_SURGE] = tmp;
        /* The surge engine serves from now on: the replica's ready_at is
         * its, not the moment the old one has finished retiring. */
        r->ready_wall_ms = ps_replica_wall_now(r);
        r->promoted = true;
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                replica_inst *in = &r->inst[i];

                in->id = (pd_instance_id) i;
                event_assign(in->probe_timer, r->ctx->base, -1, 0, ps_replica_on_probe_timer, in);
                if (in->engine)
                        ps_engine_set_userdata(in->engine, in);
                if (in->tail)
                        ps_logtail_set_userdata(in->tail, in);
                if (in->probing)
                        ps_replica_probe_schedule(in, ps_replica_domain_policy(r)->health.interval_ms);
        }
}

static void act_alert(ps_replica *r, const pd_action *a) {
        ps_log_level level = PS_LOG_WARN;

        switch (a->alert) {
        case PD_ALERT_STORM:
                level = PS_LOG_CRITICAL;
                break;
        case PD_ALERT_BREAKER_OPENED:
                level = PS_LOG_ERROR;
                break;
        case PD_ALERT_BREAKER_CLOSED:
                level = PS_LOG_INFO;
                break;
        case PD_ALERT_STORM_WARNING:
        case PD_ALERT_THROTTLED:
        case PD_ALERT_MAX:
                break;
        }
        REPLICA_EMIT(r, PS_EVENT_ALERT, level, a->text,
                     PS_FIELD_STR("alert", pd_alert_to_string(a->alert)),
                     PS_FIELD_STR("class", a->cls < PD_CRASH_CLASS_MAX ? pd_crash_class_to_string(a->cls) : NULL),
                     PS_FIELD_STR("storm", a->alert == PD_ALERT_STORM ? pd_storm_kind_to_string(a->storm_kind) : NULL),
                     PS_FIELD_STR("hint", a->alert == PD_ALERT_STORM ? pd_storm_kind_hint(a->storm_kind) : NULL),
                     PS_FIELD_INT("restart_count", r->lc.restart_count),
                     PS_FIELD_INT("crash_count", r->lc.crash_count));
}

/* One line per change of a circuit's state. Generic, not an alert: the
 * alerts breaker_opened and breaker_closed are what metrics count. */
static void act_breaker_transition(ps_replica *r, const pd_action *a) {
        REPLICA_EMIT(r, PS_EVENT_GENERIC, a->breaker_to == PD_BREAKER_OPEN ? PS_LOG_WARN : PS_LOG_INFO,
                     "breaker transition",
                     PS_FIELD_STR("old_state", pd_breaker_state_to_string(a->breaker_from)),
                     PS_FIELD_STR("new_state", pd_breaker_state_to_string(a->breaker_to)),
                     PS_FIELD_INT("failure_count", a->failures),
                     PS_FIELD_STR("circuit", pd_crash_family_to_string(a->circuit)));
}

/* What the machine's answer means to whoever waits: 0 or the PS_E_* of
 * ps_done_fn. A stop that came first fails a preload like any start that
 * did not come up, and makes a drain or reload impossible. */
int ps_replica_reply_code(pd_reply reply, pd_outcome outcome, int refusal) {
        switch (outcome) {
        case PD_OUTCOME_OK:
                return 0;
        case PD_OUTCOME_PREFLIGHT:
                return refusal > 0 ? refusal : PS_E_PREFLIGHT;
        case PD_OUTCOME_STARTUP_TIMEOUT:
                return PS_E_HEALTH_CHECK;
        case PD_OUTCOME_SPAWN_FAILED:
        case PD_OUTCOME_CRASHED:
                return PS_E_START_FAILED;
        case PD_OUTCOME_STAGE_FAILED:
                return PS_E_STAGE_FAILED;
        case PD_OUTCOME_DRAIN_TIMEOUT:
                return PS_E_DRAIN_TIMEOUT;
        case PD_OUTCOME_ROLLED_BACK:
                return PS_E_RELOAD_FAILED;
        case PD_OUTCOME_ROLLBACK_FAILED:
                return PS_E_ROLLBACK_FAILED;
        case PD_OUTCOME_ENGINE_FAILED:
                return PS_E_ENGINE_FAILED;
        case PD_OUTCOME_STOPPED:
        case PD_OUTCOME_MAX:
                break;
        }
        return reply == PD_REPLY_PRELOAD ? PS_E_START_FAILED : PS_E_CONFLICT;
}

void ps_replica_execute(ps_replica *r, const pd_action *a, reply_out *replies, size_t *n_replies) {
        replica_inst *in = &r->inst[a->instance];
        bool ok;

        switch (a->type) {
        case PD_ACT_SPAWN:
                act_spawn(r, a);
                break;
        case PD_ACT_PROBE_START:
                ps_replica_probe_start(in);
                break;
        case PD_ACT_PROBE_STOP:
                ps_replica_probe_stop(in);
                break;
        case PD_ACT_SIGNAL_TERM:
                act_signal(r, a, SIGTERM);
                break;
        case PD_ACT_SIGNAL_KILL:
                act_signal(r, a, SIGKILL);
                break;
        case PD_ACT_TIMER_ARM:
        case PD_ACT_TIMER_CANCEL:
                act_timer(r, a);
                break;
        case PD_ACT_WRITE_HANDOFF:
                act_write_handoff(r);
                break;
        case PD_ACT_REMOVE_HANDOFF:
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
                ps_replica_drop_leases(r, a->instance);
                break;
        case PD_ACT_REPLY:
                ok = a->outcome == PD_OUTCOME_OK;
                REPLICA_EMIT(r, PS_EVENT_REQUEST_DONE, ok ? PS_LOG_INFO : PS_LOG_ERROR,
                             ok ? "request finished" : "request failed",
                             PS_FIELD_STR("request", pd_reply_to_string(a->reply)),
                             PS_FIELD_STR("ok", ok ? "true" : "false"),
                             PS_FIELD_STR("outcome", a->text),
                             PS_FIELD_STR("force_stopped", a->reply == PD_REPLY_DRAIN ?
                                          (a->force_stopped ? "true" : "false") : NULL));
                if (a->reply < PD_REPLY_MAX && r->pending[a->reply].fn && *n_replies < REPLICA_REPLIES_MAX) {
                        reply_out *o = &replies[(*n_replies)++];

                        o->to = r->pending[a->reply];
                        o->rc = ps_replica_reply_code(a->reply, a->outcome, a->refusal);
                        snprintf(o->text, sizeof(o->text), "%s", a->text + a->reason_at);
                        r->pending[a->reply] = (pending_reply) { 0 };
                }
                break;
        case PD_ACT_ALERT:
                act_alert(r, a);
                break;
        case PD_ACT_BREAKER_TRANSITION:
                act_breaker_transition(r, a);
                break;
        case PD_ACTION_TYPE_MAX:
                break;
        }
}
