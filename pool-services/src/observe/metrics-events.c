/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "observe/metrics-private.h"
#include "pool-domain/crash.h"
#include "pool-services/base/event.h"
#include "pool-services/cloud/handoff-watch.h"
#include "pool-services/supervise/replica.h"

/* Supervision events become counts. */

static const ps_metrics_labelled request_counter[PS_REQUEST_MAX] = {
        [PS_REQUEST_PRELOAD] = PS_LABELLED_PRELOADS,
        [PS_REQUEST_DRAIN] = PS_LABELLED_DRAINS,
        [PS_REQUEST_RELOAD] = PS_LABELLED_RELOADS,
};

/* On OOM the event is not counted. */
static void count_labelled(ps_metrics_pool *p, ps_metrics_labelled which, const char *value) {
        (void) ps_metrics_label_counts_add(&p->labelled[which], value, 1);
}

static const ps_field *field_find(const ps_event *ev, const char *key, ps_field_type type) {
        for (size_t i = 0; ev->fields && i < ev->n_fields; i++)
                if (ev->fields[i].type == type && ev->fields[i].key &&
                    strcmp(ev->fields[i].key, key) == 0)
                        return &ev->fields[i];
        return NULL;
}

static const char *field_str(const ps_event *ev, const char *key) {
        const ps_field *f = field_find(ev, key, PS_FIELD_TYPE_STRING);

        return f ? f->str : NULL;
}

static const char *field_str_or_unknown(const ps_event *ev, const char *key) {
        const char *s = field_str(ev, key);

        return s ? s : PS_METRICS_LABEL_VALUE_UNKNOWN;
}

static bool field_int(const ps_event *ev, const char *key, int64_t *ret) {
        const ps_field *f = field_find(ev, key, PS_FIELD_TYPE_INTEGER);

        if (!f)
                return false;
        *ret = f->integer;
        return true;
}

/* -1 when absent, else 0 or 1. */
static int field_bool(const ps_event *ev, const char *key) {
        const ps_field *f = field_find(ev, key, PS_FIELD_TYPE_BOOL);

        return f ? f->boolean : -1;
}

static void observe_alert(ps_metrics_pool *p, const ps_event *ev) {
        const char *alert = field_str(ev, "alert");

        if (!alert)
                return;
        if (strcmp(alert, "storm") == 0)
                count_labelled(p, PS_LABELLED_STORMS, field_str_or_unknown(ev, "storm"));
        else if (strcmp(alert, "storm_warning") == 0)
                p->plain[PS_PLAIN_STORM_WARNINGS]++;
        else if (strcmp(alert, "throttled") == 0)
                p->plain[PS_PLAIN_RESTARTS_THROTTLED]++;
        else if (strcmp(alert, "breaker_opened") == 0)
                p->plain[PS_PLAIN_BREAKER_OPENS]++;
        /* breaker_closed: breaker_state shows it */
}

/* An engine_exited event: asked for, exit 0 on its own, or failed. */
static void observe_exit(ps_metrics_pool *p, const ps_event *ev) {
        int expected = field_bool(ev, "expected");
        int64_t code;

        if (expected < 0)
                return;
        if (expected)
                count_labelled(p, PS_LABELLED_EXITS, "requested");
        else if (field_int(ev, "exit_code", &code) && code == 0)
                count_labelled(p, PS_LABELLED_EXITS, "unrequested");
        else
                count_labelled(p, PS_LABELLED_EXITS, "failed");
}

static void observe_request_done(ps_metrics_pool *p, const ps_event *ev) {
        const char *request = field_str(ev, "request"), *outcome;
        int ok = field_bool(ev, "ok");
        int64_t duration_ms;

        if (!request || ok < 0)
                return;
        for (size_t k = 0; k < PS_REQUEST_MAX; k++) {
                if (strcmp(request, ps_metrics_request_names[k]) != 0)
                        continue;
                /* A drain or reload is counted once for its pool; each
                 * replica's own answer (with a replica_id) is a detail. */
                if (k != PS_REQUEST_PRELOAD && ev->replica_id)
                        return;
                outcome = ok ? "success" : "failure";
                if (k == PS_REQUEST_DRAIN && ok)
                        outcome = field_bool(ev, "force_stopped") > 0 ? "force_stopped" : "drained";
                count_labelled(p, request_counter[k], outcome);
                if (k == PS_REQUEST_RELOAD && strcmp(outcome, "failure") == 0)
                        count_labelled(p, PS_LABELLED_RELOAD_FAILURES, field_str_or_unknown(ev, "reason"));
                if (field_int(ev, "duration_ms", &duration_ms))
                        ps_metrics_histogram_observe(&p->request[k], &ps_metrics_request_spec, duration_ms);
                return;
        }
}

static void observe_lease(ps_metrics_pool *p, const ps_event *ev) {
        const char *what = field_str(ev, "lease");
        int64_t n = 1;

        if (!what)
                return;
        if (strcmp(what, "granted") == 0)
                p->plain[PS_PLAIN_LEASES_GRANTED]++;
        else if (strcmp(what, "released") == 0)
                p->plain[PS_PLAIN_LEASES_RELEASED]++;
        else if (strcmp(what, "expired") == 0)
                p->plain[PS_PLAIN_LEASES_EXPIRED]++;
        else if (strcmp(what, "dropped") == 0 && field_int(ev, "leases", &n) && n > 0)
                p->plain[PS_PLAIN_LEASES_DROPPED] += (uint64_t) n;
        else if (strcmp(what, "refused") == 0)
                count_labelled(p, PS_LABELLED_LEASE_REFUSALS, field_str_or_unknown(ev, "reason"));
}

/* A refused handoff file: the node's, whatever pool it named. Only the
 * watcher's fixed reasons become label values. */
static void observe_handoff_refusal(ps_metrics *m, const ps_event *ev) {
        const char *reason = field_str(ev, "reason"), *known;

        for (unsigned i = 0; reason && (known = ps_handoff_refusal_to_string((ps_handoff_refusal) i)); i++)
                if (strcmp(reason, known) == 0) {
                        (void) ps_metrics_label_counts_add(&m->handoff_refusals, known, 1);
                        return;
                }
}

/* A start the node failed: the node's count, by the domain's kinds only. */
static void observe_node_error(ps_metrics *m, const ps_event *ev) {
        const char *kind = field_str(ev, "node_error"), *known;

        for (unsigned i = 0; kind && (known = pd_node_error_kind_to_string((pd_node_error_kind) i)); i++)
                if (strcmp(kind, known) == 0) {
                        (void) ps_metrics_label_counts_add(&m->node_errors, known, 1);
                        return;
                }
}

void ps_metrics_observe(ps_metrics *m, const ps_event *ev) {
        ps_metrics_pool *p;
        int64_t startup_ms;

        if (m && ev && ev->type == PS_EVENT_GENERIC && ev->message &&
            strcmp(ev->message, PS_HANDOFF_IGNORED) == 0) {
                observe_handoff_refusal(m, ev);
                return;
        }
        if (!m || !ev || !ev->pool_id)
                return;
        if (ev->type == PS_EVENT_GENERIC && ev->message &&
            strcmp(ev->message, PS_REPLICA_RESTART_REQUESTED) == 0) {
                p = ps_metrics_pool_get(m, ev->pool_id);
                if (p)
                        p->plain[PS_PLAIN_MANUAL_RESTARTS]++;
                return;
        }
        /* Only supervision events make a pool known: a request about a pool
         * that does not exist must not add series. */
        switch (ev->type) {
        case PS_EVENT_GENERIC:
        case PS_EVENT_HTTP_REQUEST:
        case PS_EVENT_TYPE_MAX:
                return;
        case PS_EVENT_ENGINE_SPAWNED:
        case PS_EVENT_SPAWN_FAILED:
        case PS_EVENT_ENGINE_EXITED:
        case PS_EVENT_ENGINE_FAILED:
        case PS_EVENT_READY:
        case PS_EVENT_RESTART_SCHEDULED:
        case PS_EVENT_STATE_CHANGED:
        case PS_EVENT_ALERT:
        case PS_EVENT_PROBE_FAILED:
        case PS_EVENT_ENGINE_LOG_ERROR:
        case PS_EVENT_REQUEST_DONE:
        case PS_EVENT_LEASE:
        case PS_EVENT_DRAIN_STARTED:
                break;
        }
        p = ps_metrics_pool_get(m, ev->pool_id);
        if (!p)
                return;

        switch (ev->type) {
        case PS_EVENT_ENGINE_SPAWNED:
                p->plain[PS_PLAIN_ENGINE_SPAWNS]++;
                break;
        case PS_EVENT_SPAWN_FAILED:
                p->plain[PS_PLAIN_SPAWN_FAILURES]++;
                observe_node_error(m, ev);
                break;
        case PS_EVENT_ENGINE_FAILED:
                /* exit 0 is counted in engine_exits_total, never as a crash */
                if (strcmp(field_str_or_unknown(ev, "class"),
                           pd_crash_class_to_string(PD_CRASH_GRACEFUL)) != 0)
                        count_labelled(p, PS_LABELLED_CRASHES, field_str_or_unknown(ev, "class"));
                break;
        case PS_EVENT_ENGINE_EXITED:
                observe_exit(p, ev);
                break;
        case PS_EVENT_READY:
                p->plain[PS_PLAIN_READY_TRANSITIONS]++;
                if (field_int(ev, "startup_ms", &startup_ms))
                        ps_metrics_histogram_observe(&p->startup, &ps_metrics_startup_spec, startup_ms);
                break;
        case PS_EVENT_RESTART_SCHEDULED:
                /* an operator's restart passes through backoff too: it is
                 * counted from its own event (PS_REPLICA_RESTART_REQUESTED) */
                if (!field_str(ev, "requested_by"))
                        p->plain[PS_PLAIN_RESTARTS_SCHEDULED]++;
                break;
        case PS_EVENT_ALERT:
                observe_alert(p, ev);
                break;
        case PS_EVENT_PROBE_FAILED:
                p->plain[PS_PLAIN_PROBE_FAILURES]++;
                break;
        case PS_EVENT_ENGINE_LOG_ERROR:
                count_labelled(p, PS_LABELLED_LOG_ERRORS, field_str_or_unknown(ev, "class"));
                break;
        case PS_EVENT_REQUEST_DONE:
                observe_request_done(p, ev);
                break;
        case PS_EVENT_LEASE:
                observe_lease(p, ev);
                break;
        case PS_EVENT_DRAIN_STARTED:   /* the draining gauge shows it */
        case PS_EVENT_STATE_CHANGED:   /* gauges show states */
        case PS_EVENT_GENERIC:
        case PS_EVENT_HTTP_REQUEST:
        case PS_EVENT_TYPE_MAX:
                break;
        }
}
