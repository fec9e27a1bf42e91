/* SPDX-License-Identifier: MIT */
/*
 * The lines a replica writes about its machine's decisions, and the
 * machine's part of its status (supervise/report.h).
 */
#include <stdbool.h>

#include "supervise/report.h"
#include "pool-domain/crash.h"

void ps_report_emit(const ps_speaker *s, ps_event_type type, ps_log_level level,
                    const char *message, const ps_field *fields, size_t n_fields) {
        ps_event ev = {
                .type = type,
                .level = level,
                .pool_id = s->pool_id,
                .replica_id = s->replica_id,
                .correlation_id = s->correlation_id,
                .message = message,
                .fields = fields,
                .n_fields = n_fields,
        };
        ps_event_emit(&s->ctx->sink, &ev);
}

int64_t ps_report_wall(const ps_context *ctx, int64_t at_mono) {
        if (at_mono == 0)
                return 0;
        return ps_clock_wall_ms(ctx->clock) + (at_mono - ps_clock_mono_ms(ctx->clock));
}

static int64_t wall_to_mono(const ps_context *ctx, int64_t at_wall) {
        if (at_wall == 0)
                return 0;
        return ps_clock_mono_ms(ctx->clock) + (at_wall - ps_clock_wall_ms(ctx->clock));
}

const char *ps_report_shown_state(const pd_lifecycle *lc) {
        return pd_state_to_string(pd_lifecycle_retiring(lc) ? PD_STATE_READY : lc->state);
}

void ps_report_alert(const ps_speaker *s, const pd_action *a, const pd_lifecycle *lc) {
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
        PS_REPORT(s, PS_EVENT_ALERT, level, a->text,
                  PS_FIELD_STR("alert", pd_alert_to_string(a->alert)),
                  PS_FIELD_STR("class", a->cls < PD_CRASH_CLASS_MAX ? pd_crash_class_to_string(a->cls) : NULL),
                  PS_FIELD_STR("storm", a->alert == PD_ALERT_STORM ? pd_storm_kind_to_string(a->storm_kind) : NULL),
                  PS_FIELD_STR("hint", a->alert == PD_ALERT_STORM ? pd_storm_kind_hint(a->storm_kind) : NULL),
                  PS_FIELD_INT("restart_count", lc->restart_count),
                  PS_FIELD_INT("crash_count", lc->crash_count));
}

/* One line per change of a circuit's state. Generic, not an alert: the
 * alerts breaker_opened and breaker_closed are what metrics count. */
void ps_report_breaker_transition(const ps_speaker *s, const pd_action *a) {
        PS_REPORT(s, PS_EVENT_GENERIC, a->breaker_to == PD_BREAKER_OPEN ? PS_LOG_WARN : PS_LOG_INFO,
                  "breaker transition",
                  PS_FIELD_STR("old_state", pd_breaker_state_to_string(a->breaker_from)),
                  PS_FIELD_STR("new_state", pd_breaker_state_to_string(a->breaker_to)),
                  PS_FIELD_INT("failure_count", a->failures),
                  PS_FIELD_STR("circuit", pd_crash_family_to_string(a->circuit)));
}

void ps_report_request_done(const ps_speaker *s, const pd_action *a) {
        bool ok = a->outcome == PD_OUTCOME_OK;

        PS_REPORT(s, PS_EVENT_REQUEST_DONE, ok ? PS_LOG_INFO : PS_LOG_ERROR,
                  ok ? "request finished" : "request failed",
                  PS_FIELD_STR("request", pd_reply_to_string(a->reply)),
                  PS_FIELD_BOOL("ok", ok),
                  PS_FIELD_STR("outcome", a->text),
                  PS_FIELD_BOOL_IF("force_stopped", a->reply == PD_REPLY_DRAIN,
                                   a->force_stopped));
}

/* A stop that came first fails a preload like any start that did not come
 * up, and makes a drain or reload impossible. */
int ps_report_reply_code(pd_reply reply, pd_outcome outcome, int refusal) {
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

void ps_report_ready(const ps_speaker *s, int pid, const ps_engine_spec *spec, int64_t startup_ms) {
        PS_REPORT(s, PS_EVENT_READY, PS_LOG_INFO, "ready",
                  PS_FIELD_INT("pid", pid),
                  PS_FIELD_STR("engine_version", spec->engine_version),
                  PS_FIELD_STR("device_mask", spec->device_mask),
                  PS_FIELD_INT("startup_ms", startup_ms));
}

void ps_report_exited(const ps_speaker *s, int pid, const ps_report_exit *how, const char *cause,
                      const char *engine_version, bool expected) {
        const ps_exit_status *st = &how->status;

        PS_REPORT(s, PS_EVENT_ENGINE_EXITED, expected ? PS_LOG_INFO : PS_LOG_ERROR, "engine exited",
                  PS_FIELD_INT("pid", pid),
                  PS_FIELD_STR("engine_version", engine_version),
                  st->exited ? PS_FIELD_INT("exit_code", st->code) : PS_FIELD_STR("exit_code", NULL),
                  st->exited ? PS_FIELD_STR("signal", NULL) : PS_FIELD_STR("signal", pd_signal_name(st->signo)),
                  PS_FIELD_INT("uptime_s", how->uptime_ms / 1000),
                  PS_FIELD_STR("last_line", cause),
                  PS_FIELD_BOOL("expected", expected));
}

/* One line with the whole decision: what happened, what it counts as,
 * and what comes next. */
void ps_report_failure(const ps_speaker *s, const pd_lifecycle *lc, const char *engine_version,
                       const ps_report_exit *last) {
        bool exited = last->known;
        const ps_exit_status *st = &last->status;

        PS_REPORT(s, PS_EVENT_ENGINE_FAILED, PS_LOG_ERROR, "engine failed",
                  PS_FIELD_STR("engine_version", engine_version),
                  PS_FIELD_STR("class", pd_crash_class_to_string(lc->last_error_cls)),
                  PS_FIELD_STR("last_error", lc->last_error),
                  exited && st->exited ? PS_FIELD_INT("exit_code", st->code) : PS_FIELD_STR("exit_code", NULL),
                  exited && !st->exited ? PS_FIELD_STR("signal", pd_signal_name(st->signo))
                                        : PS_FIELD_STR("signal", NULL),
                  exited ? PS_FIELD_INT("uptime_s", last->uptime_ms / 1000) : PS_FIELD_STR("uptime_s", NULL),
                  PS_FIELD_INT("crash_count", lc->crash_count),
                  PS_FIELD_INT("restart_count", lc->restart_count),
                  PS_FIELD_STR("state", pd_state_to_string(lc->state)),
                  PS_FIELD_INT("backoff_ms", lc->backoff_ms),
                  lc->next_restart_at_ms ? PS_FIELD_INT("next_restart_at", ps_report_wall(s->ctx, lc->next_restart_at_ms))
                                         : PS_FIELD_STR("next_restart_at", NULL));
}

void ps_report_state_change(const ps_speaker *s, const pd_lifecycle *lc, pd_state before,
                            const char *engine_version) {
        if (lc->state == PD_STATE_BACKOFF) {
                PS_REPORT(s, PS_EVENT_RESTART_SCHEDULED, PS_LOG_WARN, "restart scheduled",
                          PS_FIELD_STR("engine_version", engine_version),
                          PS_FIELD_STR("requested_by", lc->override_pending ? "operator" : NULL),
                          PS_FIELD_INT("backoff_ms", lc->backoff_ms),
                          PS_FIELD_INT("next_restart_at", ps_report_wall(s->ctx, lc->next_restart_at_ms)),
                          PS_FIELD_INT("crash_count", lc->crash_count),
                          PS_FIELD_INT("restart_count", lc->restart_count));
        } else if (lc->state == PD_STATE_FAILED) {
                PS_REPORT(s, PS_EVENT_STATE_CHANGED, PS_LOG_ERROR, "state changed",
                          PS_FIELD_STR("from", pd_state_to_string(before)),
                          PS_FIELD_STR("state", pd_state_to_string(lc->state)),
                          PS_FIELD_STR("last_error", lc->last_error),
                          PS_FIELD_INT("crash_count", lc->crash_count),
                          PS_FIELD_INT("next_restart_at", ps_report_wall(s->ctx, lc->next_restart_at_ms)));
        } else {
                PS_REPORT(s, PS_EVENT_STATE_CHANGED, PS_LOG_INFO, "state changed",
                          PS_FIELD_STR("from", pd_state_to_string(before)),
                          PS_FIELD_STR("state", pd_state_to_string(lc->state)));
        }
}

void ps_report_status(const ps_context *ctx, const pd_lifecycle *lc, const pd_policy *p,
                      ps_replica_status *out) {
        const pd_breaker *gen = &lc->breakers.circuit[PD_CRASH_FAMILY_GENERAL];
        pd_breaker_state breaker = pd_breaker_set_state(&lc->breakers);

        out->state = ps_report_shown_state(lc);
        out->live = pd_lifecycle_live(lc);
        out->ready = pd_lifecycle_ready(lc);
        out->draining = pd_lifecycle_draining(lc);
        out->external = lc->external;
        out->last_error = lc->last_error[0] ? lc->last_error : NULL;
        out->last_error_class = lc->last_error_cls < PD_CRASH_CLASS_MAX ?
                                pd_crash_class_to_string(lc->last_error_cls) : NULL;
        out->last_error_at = ps_report_wall(ctx, lc->last_error_at_ms);
        out->restart_count = lc->restart_count;
        out->crash_count = lc->crash_count;
        out->restarts_in_window = pd_storm_in_window(&lc->storm, &p->storm,
                                                     ps_clock_mono_ms(ctx->clock));
        out->driver_resets = lc->driver_resets;
        out->backoff_ms = lc->backoff_ms;
        out->next_restart_at = ps_report_wall(ctx, lc->next_restart_at_ms);
        out->breaker.state = pd_breaker_state_to_string(breaker);
        out->breaker.failures = gen->failures;
        out->breaker.opens = gen->opens;
        out->breaker.open_until = breaker == PD_BREAKER_OPEN ?
                                  ps_report_wall(ctx, pd_breaker_set_open_until(&lc->breakers)) : 0;
}

static void policy_times(const ps_context *ctx, ps_replica_policy_state *st,
                         int64_t (*convert)(const ps_context *ctx, int64_t at)) {
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                st->breakers.circuit[i].open_until_ms = convert(ctx, st->breakers.circuit[i].open_until_ms);
        for (unsigned i = 0; i < st->storm.count && i < PD_STORM_LIMIT_MAX; i++) {
                pd_storm_entry *e = &st->storm.ring[(st->storm.head + i) % PD_STORM_LIMIT_MAX];

                e->at_ms = convert(ctx, e->at_ms);
        }
}

void ps_report_policy_state_get(const ps_context *ctx, const pd_lifecycle *lc,
                                ps_replica_policy_state *out) {
        *out = (ps_replica_policy_state) {
                .crash_count = lc->crash_count,
                .restart_count = lc->restart_count,
                .backoff_ms = lc->backoff_ms,
                .backoff = lc->backoff,
                .breakers = lc->breakers,
                .storm = lc->storm,
        };
        policy_times(ctx, out, ps_report_wall);
}

void ps_report_policy_state_set(const ps_context *ctx, pd_lifecycle *lc,
                                const ps_replica_policy_state *in) {
        ps_replica_policy_state st = *in;

        policy_times(ctx, &st, wall_to_mono);
        lc->crash_count = st.crash_count;
        lc->restart_count = st.restart_count;
        lc->backoff_ms = st.backoff_ms;
        lc->backoff = st.backoff;
        lc->breakers = st.breakers;
        lc->storm = st.storm;
}
