/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What a replica's machine decided, told to people: the lines about its
 * decisions (alerts, breaker transitions, failures, state changes,
 * finished requests), the machine's part of the status, and the restart
 * policy's state in wall time. For supervise/replica.c: it knows nothing
 * of the replica, only the machine (read-only), the clock and who speaks.
 */
#include <stddef.h>
#include <stdint.h>

#include "pool-domain/lifecycle.h"
#include "pool-services/base/event.h"
#include "pool-services/supervise/engine.h"
#include "pool-services/supervise/replica.h"
#include "supervise/replica.h"

/* Who speaks: the replica's names, on every line. Borrowed. */
typedef struct ps_speaker {
        const ps_context *ctx;
        const char *pool_id;
        const char *replica_id;
        const char *correlation_id;     /* NULL: none                       */
} ps_speaker;

void ps_report_emit(const ps_speaker *s, ps_event_type type, ps_log_level level,
                    const char *message, const ps_field *fields, size_t n_fields);

#define PS_REPORT(s, type, level, message, ...)                                \
        do {                                                                     \
                const ps_field f_[] = { __VA_ARGS__ };                           \
                ps_report_emit((s), (type), (level), (message), f_,              \
                               sizeof(f_) / sizeof(f_[0]));                      \
        } while (0)

/* The lifecycle counts in monotonic time; people read wall time. 0 stays 0. */
int64_t ps_report_wall(const ps_context *ctx, int64_t at_mono);

/* A replica whose surge engine took over is ready, while its old engine
 * still retires. */
const char *ps_report_shown_state(const pd_lifecycle *lc);

/* PD_ACT_ALERT, PD_ACT_BREAKER_TRANSITION and the line of a PD_ACT_REPLY. */
void ps_report_alert(const ps_speaker *s, const pd_action *a, const pd_lifecycle *lc);
void ps_report_breaker_transition(const ps_speaker *s, const pd_action *a);
void ps_report_request_done(const ps_speaker *s, const pd_action *a);

/* What the machine's answer means to whoever waits: 0 or the PS_E_* of
 * ps_done_fn. */
int ps_report_reply_code(pd_reply reply, pd_outcome outcome, int refusal);

/* The last exit of an engine, for the "engine failed" line. */
typedef struct ps_report_exit {
        bool known;
        ps_exit_status status;
        int64_t uptime_ms;
} ps_report_exit;

/* The line of a primary engine that serves (spec: what the replica runs). */
void ps_report_ready(const ps_speaker *s, int pid, const ps_engine_spec *spec, int64_t startup_ms);
/* The line of an engine's end (cause: its own words, or NULL). */
void ps_report_exited(const ps_speaker *s, int pid, const ps_report_exit *how, const char *cause,
                      const char *engine_version, bool expected);
/* The line of a step that counted a failure (crash_count rose). */
void ps_report_failure(const ps_speaker *s, const pd_lifecycle *lc, const char *engine_version,
                       const ps_report_exit *last);
/* The line of a change of state, but for one to ready (the replica's own). */
void ps_report_state_change(const ps_speaker *s, const pd_lifecycle *lc, pd_state before,
                            const char *engine_version);

/* Fills what the machine knows of out: its state, error, counts, backoff
 * and breaker; the rest of out is left as it is. */
void ps_report_status(const ps_context *ctx, const pd_lifecycle *lc, const pd_policy *p,
                      ps_replica_status *out);

/* The restart policy's state, with its times in wall-clock epoch ms. */
void ps_report_policy_state_get(const ps_context *ctx, const pd_lifecycle *lc,
                                ps_replica_policy_state *out);
void ps_report_policy_state_set(const ps_context *ctx, pd_lifecycle *lc,
                                const ps_replica_policy_state *in);
