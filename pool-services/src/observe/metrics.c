/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/strbuf.h"
#include "pool-domain/breaker.h"
#include "pool-domain/crash.h"
#include "pool-domain/lifecycle.h"
#include "pool-domain/storm.h"
#include "pool-services/handoff-watch.h"
#include "pool-services/metrics.h"

/*
 * Counters are kept per pool; gauges are read from the snapshot at render
 * time. Label values that events carry come from the domain's enums, so
 * they are few; LABEL_VALUES_MAX only bounds the damage should an event
 * ever carry free text.
 */
#define LABEL_VALUES_MAX 32
#define LABEL_VALUE_OVERFLOW "other"
#define LABEL_VALUE_UNKNOWN "unknown"

/* ---- what is counted -------------------------------------------------- */

typedef enum plain_counter {
        PLAIN_READY_TRANSITIONS,
        PLAIN_ENGINE_SPAWNS,
        PLAIN_SPAWN_FAILURES,
        PLAIN_RESTARTS_SCHEDULED,
        PLAIN_RESTARTS_THROTTLED,
        PLAIN_STORM_WARNINGS,
        PLAIN_BREAKER_OPENS,
        PLAIN_PROBE_FAILURES,
        PLAIN_DRIVER_RESETS,
        PLAIN_LEASES_GRANTED,
        PLAIN_LEASES_RELEASED,
        PLAIN_LEASES_EXPIRED,
        PLAIN_LEASES_DROPPED,
        PLAIN_MAX,
} plain_counter;

typedef enum labelled_counter {
        LABELLED_PRELOADS,
        LABELLED_DRAINS,
        LABELLED_RELOADS,
        LABELLED_CRASHES,
        LABELLED_STORMS,
        LABELLED_LOG_ERRORS,
        LABELLED_RELOAD_FAILURES,
        LABELLED_LEASE_REFUSALS,
        LABELLED_MAX,
} labelled_counter;

typedef enum request_kind {
        REQUEST_PRELOAD,
        REQUEST_DRAIN,
        REQUEST_RELOAD,
        REQUEST_MAX,
} request_kind;

static const char *const request_names[REQUEST_MAX] = {
        [REQUEST_PRELOAD] = "preload",
        [REQUEST_DRAIN] = "drain",
        [REQUEST_RELOAD] = "reload",
};

static const labelled_counter request_counter[REQUEST_MAX] = {
        [REQUEST_PRELOAD] = LABELLED_PRELOADS,
        [REQUEST_DRAIN] = LABELLED_DRAINS,
        [REQUEST_RELOAD] = LABELLED_RELOADS,
};

/* Histogram bucket bounds in milliseconds, rendered in seconds. */
#define BUCKETS_MAX 11

typedef struct histogram_spec {
        const char *name;
        const char *help;
        int64_t bounds_ms[BUCKETS_MAX];
} histogram_spec;

/* Model loads take from well under a second (a small GGUF from the page
 * cache) to minutes (a large model from network storage). */
static const histogram_spec startup_spec = {
        .name = "pool_managerd_engine_startup_seconds",
        .help = "Time from an engine's spawn until it answered its health probe.",
        .bounds_ms = { 100, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000 },
};

/* Drains wait for leases up to their deadline; reloads add a load. */
static const histogram_spec request_spec = {
        .name = "pool_managerd_request_duration_seconds",
        .help = "Time a preload, drain or reload took until it was answered.",
        .bounds_ms = { 100, 500, 1000, 5000, 10000, 30000, 60000, 120000, 300000, 600000, 1800000 },
};

typedef struct histogram {
        uint64_t bucket[BUCKETS_MAX];   /* per bucket, not cumulative */
        uint64_t count;
        int64_t sum_ms;
} histogram;

typedef struct label_count {
        char *value;
        uint64_t count;
} label_count;

/* Sorted by value, so the output order does not depend on event order. */
typedef struct label_counts {
        label_count *v;
        size_t n, cap;
} label_counts;

typedef struct pool_metrics {
        char *pool_id;
        uint64_t plain[PLAIN_MAX];
        label_counts labelled[LABELLED_MAX];
        histogram startup;
        histogram request[REQUEST_MAX];
        bool driver_resets_seen;
        int64_t driver_resets_last;     /* last value the snapshot showed */
} pool_metrics;

#define COLLECTORS_MAX 8

typedef struct collector {
        ps_metrics_collect_fn fn;
        void *userdata;
} collector;

struct ps_metrics {
        char *version;
        pool_metrics **pools;           /* sorted by pool_id */
        size_t n_pools, cap_pools;
        collector collectors[COLLECTORS_MAX];   /* in the order added */
        size_t n_collectors;
        label_counts handoff_refusals;  /* the node's, by reason */
};

/* ---- families ------------------------------------------------------------ */

typedef struct plain_family {
        const char *name;
        const char *help;
} plain_family;

static const plain_family plain_families[PLAIN_MAX] = {
        [PLAIN_READY_TRANSITIONS] = { "pool_managerd_ready_transitions_total",
                "Times a replica of the pool became ready." },
        [PLAIN_ENGINE_SPAWNS] = { "pool_managerd_engine_spawns_total",
                "Engine processes started for the pool." },
        [PLAIN_SPAWN_FAILURES] = { "pool_managerd_spawn_failures_total",
                "Engine processes that could not be started (exec or fork failed)." },
        [PLAIN_RESTARTS_SCHEDULED] = { "pool_managerd_restarts_scheduled_total",
                "Restarts scheduled after a failure, each after a backoff delay." },
        [PLAIN_RESTARTS_THROTTLED] = { "pool_managerd_restarts_throttled_total",
                "Restarts the storm limiter delayed beyond the backoff." },
        [PLAIN_STORM_WARNINGS] = { "pool_managerd_storm_warnings_total",
                "Warnings that restarts approach the storm limit." },
        [PLAIN_BREAKER_OPENS] = { "pool_managerd_breaker_opens_total",
                "Times the pool's circuit breaker opened." },
        [PLAIN_PROBE_FAILURES] = { "pool_managerd_probe_failures_total",
                "Failed health probes of ready engines." },
        [PLAIN_DRIVER_RESETS] = { "pool_managerd_driver_resets_total",
                "GPU driver resets under the pool's replicas." },
        [PLAIN_LEASES_GRANTED] = { "pool_managerd_leases_granted_total",
                "Leases granted on the pool." },
        [PLAIN_LEASES_RELEASED] = { "pool_managerd_leases_released_total",
                "Leases released by their holder." },
        [PLAIN_LEASES_EXPIRED] = { "pool_managerd_leases_expired_total",
                "Leases ended because their TTL ran out." },
        [PLAIN_LEASES_DROPPED] = { "pool_managerd_leases_dropped_total",
                "Leases ended by force: engine stopped at a drain deadline or otherwise." },
};

typedef struct labelled_family {
        const char *name;
        const char *help;
        const char *label;
        /* values rendered at 0 before any event: i-th, NULL past the end */
        const char *(*preset)(unsigned i);
} labelled_family;

static const char *outcome_preset(unsigned i) {
        static const char *const names[] = { "failure", "success" };

        return i < sizeof(names) / sizeof(names[0]) ? names[i] : NULL;
}

static const char *drain_outcome_preset(unsigned i) {
        static const char *const names[] = { "drained", "failure", "force_stopped" };

        return i < sizeof(names) / sizeof(names[0]) ? names[i] : NULL;
}

static const char *reload_reason_preset(unsigned i) {
        static const char *const names[] = {
                "checksum", "drain_timeout", "engine_failed", "health", "not_ready",
                "rollback_failed", "staging", "stopped",
        };

        return i < sizeof(names) / sizeof(names[0]) ? names[i] : NULL;
}

static const char *lease_refusal_preset(unsigned i) {
        static const char *const names[] = { "draining", "no_slot", "not_ready" };

        return i < sizeof(names) / sizeof(names[0]) ? names[i] : NULL;
}

static const char *crash_class_preset(unsigned i) {
        return i < PD_CRASH_CLASS_MAX ? pd_crash_class_to_string((pd_crash_class) i) : NULL;
}

static const char *storm_kind_preset(unsigned i) {
        return i < PD_STORM_KIND_MAX ? pd_storm_kind_to_string((pd_storm_kind) i) : NULL;
}

/* What pd_crash_scan_line() finds in an engine log. */
static const char *log_class_preset(unsigned i) {
        static const pd_crash_class classes[] = {
                PD_CRASH_CUDA_ERROR, PD_CRASH_DRIVER_ERROR, PD_CRASH_VRAM_OOM,
        };

        return i < sizeof(classes) / sizeof(classes[0]) ? pd_crash_class_to_string(classes[i]) : NULL;
}

static const labelled_family labelled_families[LABELLED_MAX] = {
        [LABELLED_PRELOADS] = { "pool_managerd_preloads_total",
                "Preloads answered, by outcome.", "outcome", outcome_preset },
        [LABELLED_DRAINS] = { "pool_managerd_drains_total",
                "Drains of the pool finished, by outcome.", "outcome", drain_outcome_preset },
        [LABELLED_RELOADS] = { "pool_managerd_reloads_total",
                "Reloads of the pool answered, by outcome.", "outcome", outcome_preset },
        [LABELLED_CRASHES] = { "pool_managerd_engine_crashes_total",
                "Engine failures counted by the supervisor, by crash class.", "reason", crash_class_preset },
        [LABELLED_STORMS] = { "pool_managerd_restart_storms_total",
                "Restart storms detected, by kind.", "kind", storm_kind_preset },
        [LABELLED_LOG_ERRORS] = { "pool_managerd_engine_log_errors_total",
                "CUDA, driver and out-of-memory lines seen in engine logs, by class.", "class", log_class_preset },
        [LABELLED_RELOAD_FAILURES] = { "pool_managerd_reload_failures_total",
                "Reloads that failed (the pool kept or got back its previous engine), by reason.",
                "reason", reload_reason_preset },
        [LABELLED_LEASE_REFUSALS] = { "pool_managerd_lease_refusals_total",
                "Lease requests refused, by reason.", "reason", lease_refusal_preset },
};

/* The order counters appear in a scrape. */
typedef struct counter_ref {
        bool labelled;
        unsigned which;
} counter_ref;

static const counter_ref counter_order[] = {
        { true, LABELLED_PRELOADS },
        { false, PLAIN_READY_TRANSITIONS },
        { false, PLAIN_ENGINE_SPAWNS },
        { false, PLAIN_SPAWN_FAILURES },
        { true, LABELLED_CRASHES },
        { false, PLAIN_RESTARTS_SCHEDULED },
        { false, PLAIN_RESTARTS_THROTTLED },
        { false, PLAIN_STORM_WARNINGS },
        { true, LABELLED_STORMS },
        { false, PLAIN_BREAKER_OPENS },
        { false, PLAIN_PROBE_FAILURES },
        { true, LABELLED_LOG_ERRORS },
        { true, LABELLED_DRAINS },
        { true, LABELLED_RELOADS },
        { true, LABELLED_RELOAD_FAILURES },
        { false, PLAIN_DRIVER_RESETS },
        { false, PLAIN_LEASES_GRANTED },
        { false, PLAIN_LEASES_RELEASED },
        { false, PLAIN_LEASES_EXPIRED },
        { false, PLAIN_LEASES_DROPPED },
        { true, LABELLED_LEASE_REFUSALS },
};

/* ---- stored state -------------------------------------------------------- */

static int label_counts_add(label_counts *lc, const char *value, uint64_t delta) {
        size_t i;
        int c = 1;

        for (i = 0; i < lc->n; i++) {
                c = strcmp(lc->v[i].value, value);
                if (c == 0) {
                        lc->v[i].count += delta;
                        return 0;
                }
                if (c > 0)
                        break;
        }
        if (lc->n >= LABEL_VALUES_MAX && strcmp(value, LABEL_VALUE_OVERFLOW) != 0)
                return label_counts_add(lc, LABEL_VALUE_OVERFLOW, delta);
        if (lc->n == lc->cap) {
                size_t cap = lc->cap ? lc->cap * 2 : 4;
                label_count *v = realloc(lc->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                lc->v = v;
                lc->cap = cap;
        }
        char *copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        memmove(&lc->v[i + 1], &lc->v[i], (lc->n - i) * sizeof(*lc->v));
        lc->v[i] = (label_count) { .value = copy, .count = delta };
        lc->n++;
        return 0;
}

static void label_counts_done(label_counts *lc) {
        for (size_t i = 0; i < lc->n; i++)
                free(lc->v[i].value);
        free(lc->v);
}

static void histogram_observe(histogram *h, const histogram_spec *spec, int64_t ms) {
        if (ms < 0)
                ms = 0;
        for (size_t i = 0; i < BUCKETS_MAX; i++)
                if (ms <= spec->bounds_ms[i]) {
                        h->bucket[i]++;
                        break;
                }
        h->count++;
        h->sum_ms += ms;
}

static pool_metrics *pool_metrics_free(pool_metrics *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < LABELLED_MAX; i++)
                label_counts_done(&p->labelled[i]);
        free(p->pool_id);
        free(p);
        return NULL;
}

static pool_metrics *pool_metrics_new(const char *pool_id) {
        pool_metrics *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->pool_id = strdup(pool_id);
        if (!p->pool_id)
                return pool_metrics_free(p);
        for (size_t f = 0; f < LABELLED_MAX; f++) {
                const char *value;

                for (unsigned i = 0; (value = labelled_families[f].preset(i)); i++)
                        if (label_counts_add(&p->labelled[f], value, 0) < 0)
                                return pool_metrics_free(p);
        }
        return p;
}

/* Index of pool_id, or of where it belongs (*found false). */
static size_t pool_search(const ps_metrics *m, const char *pool_id, bool *found) {
        size_t lo = 0, hi = m->n_pools;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(m->pools[mid]->pool_id, pool_id);

                if (c == 0) {
                        *found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

/* The pool's record, made on first sight. NULL on OOM. */
static pool_metrics *pool_get(ps_metrics *m, const char *pool_id) {
        bool found;
        size_t at = pool_search(m, pool_id, &found);
        pool_metrics *p;

        if (found)
                return m->pools[at];
        if (m->n_pools == m->cap_pools) {
                size_t cap = m->cap_pools ? m->cap_pools * 2 : 8;
                pool_metrics **pools = realloc(m->pools, cap * sizeof(*pools));

                if (!pools)
                        return NULL;
                m->pools = pools;
                m->cap_pools = cap;
        }
        p = pool_metrics_new(pool_id);
        if (!p)
                return NULL;
        memmove(&m->pools[at + 1], &m->pools[at], (m->n_pools - at) * sizeof(*m->pools));
        m->pools[at] = p;
        m->n_pools++;
        return p;
}

ps_metrics *ps_metrics_new(void) {
        ps_metrics *m = calloc(1, sizeof(*m));
        const char *reason;

        if (!m)
                return NULL;
        m->version = strdup("unknown");
        if (!m->version)
                return ps_metrics_free(m);
        for (unsigned i = 0; (reason = ps_handoff_refusal_to_string((ps_handoff_refusal) i)); i++)
                if (label_counts_add(&m->handoff_refusals, reason, 0) < 0)
                        return ps_metrics_free(m);
        return m;
}

int ps_metrics_add_collector(ps_metrics *m, ps_metrics_collect_fn fn, void *userdata) {
        if (!m || !fn)
                return -EINVAL;
        if (m->n_collectors == COLLECTORS_MAX)
                return -ENOSPC;
        m->collectors[m->n_collectors++] = (collector) { fn, userdata };
        return 0;
}

void ps_metrics_remove_collector(ps_metrics *m, ps_metrics_collect_fn fn, void *userdata) {
        for (size_t i = 0; m && i < m->n_collectors; i++)
                if (m->collectors[i].fn == fn && m->collectors[i].userdata == userdata) {
                        memmove(&m->collectors[i], &m->collectors[i + 1],
                                (m->n_collectors - i - 1) * sizeof(m->collectors[0]));
                        m->n_collectors--;
                        return;
                }
}

ps_metrics *ps_metrics_free(ps_metrics *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_pools; i++)
                pool_metrics_free(m->pools[i]);
        free(m->pools);
        label_counts_done(&m->handoff_refusals);
        free(m->version);
        free(m);
        return NULL;
}

int ps_metrics_set_version(ps_metrics *m, const char *version) {
        char *copy;

        if (!m || !version)
                return -EINVAL;
        copy = strdup(version);
        if (!copy)
                return -ENOMEM;
        free(m->version);
        m->version = copy;
        return 0;
}

/* ---- events -------------------------------------------------------------- */

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

        return s ? s : LABEL_VALUE_UNKNOWN;
}

static bool field_int(const ps_event *ev, const char *key, int64_t *ret) {
        const ps_field *f = field_find(ev, key, PS_FIELD_TYPE_INTEGER);

        if (!f)
                return false;
        *ret = f->integer;
        return true;
}

static void observe_alert(pool_metrics *p, const ps_event *ev) {
        const char *alert = field_str(ev, "alert");

        if (!alert)
                return;
        if (strcmp(alert, "storm") == 0)
                (void) label_counts_add(&p->labelled[LABELLED_STORMS], field_str_or_unknown(ev, "storm"), 1);
        else if (strcmp(alert, "storm_warning") == 0)
                p->plain[PLAIN_STORM_WARNINGS]++;
        else if (strcmp(alert, "throttled") == 0)
                p->plain[PLAIN_RESTARTS_THROTTLED]++;
        else if (strcmp(alert, "breaker_opened") == 0)
                p->plain[PLAIN_BREAKER_OPENS]++;
        /* breaker_closed: breaker_state shows it */
}

static void observe_request_done(pool_metrics *p, const ps_event *ev) {
        const char *request = field_str(ev, "request"), *ok = field_str(ev, "ok");
        const char *outcome;
        int64_t duration_ms;

        if (!request || !ok || (strcmp(ok, "true") != 0 && strcmp(ok, "false") != 0))
                return;
        for (size_t k = 0; k < REQUEST_MAX; k++) {
                if (strcmp(request, request_names[k]) != 0)
                        continue;
                /* A drain or reload is counted once for its pool; each
                 * replica's own answer (with a replica_id) is a detail. */
                if (k != REQUEST_PRELOAD && ev->replica_id)
                        return;
                outcome = strcmp(ok, "true") == 0 ? "success" : "failure";
                if (k == REQUEST_DRAIN && strcmp(outcome, "success") == 0) {
                        const char *forced = field_str(ev, "force_stopped");

                        outcome = forced && strcmp(forced, "true") == 0 ? "force_stopped" : "drained";
                }
                (void) label_counts_add(&p->labelled[request_counter[k]], outcome, 1);
                if (k == REQUEST_RELOAD && strcmp(outcome, "failure") == 0)
                        (void) label_counts_add(&p->labelled[LABELLED_RELOAD_FAILURES],
                                                field_str_or_unknown(ev, "reason"), 1);
                if (field_int(ev, "duration_ms", &duration_ms))
                        histogram_observe(&p->request[k], &request_spec, duration_ms);
                return;
        }
}

static void observe_lease(pool_metrics *p, const ps_event *ev) {
        const char *what = field_str(ev, "lease");
        int64_t n = 1;

        if (!what)
                return;
        if (strcmp(what, "granted") == 0)
                p->plain[PLAIN_LEASES_GRANTED]++;
        else if (strcmp(what, "released") == 0)
                p->plain[PLAIN_LEASES_RELEASED]++;
        else if (strcmp(what, "expired") == 0)
                p->plain[PLAIN_LEASES_EXPIRED]++;
        else if (strcmp(what, "dropped") == 0 && field_int(ev, "leases", &n) && n > 0)
                p->plain[PLAIN_LEASES_DROPPED] += (uint64_t) n;
        else if (strcmp(what, "refused") == 0)
                (void) label_counts_add(&p->labelled[LABELLED_LEASE_REFUSALS],
                                        field_str_or_unknown(ev, "reason"), 1);
}

/* A refused handoff file: the node's, whatever pool it named. Only the
 * watcher's fixed reasons become label values. */
static void observe_handoff_refusal(ps_metrics *m, const ps_event *ev) {
        const char *reason = field_str(ev, "reason"), *known;

        for (unsigned i = 0; reason && (known = ps_handoff_refusal_to_string((ps_handoff_refusal) i)); i++)
                if (strcmp(reason, known) == 0) {
                        (void) label_counts_add(&m->handoff_refusals, known, 1);
                        return;
                }
}

void ps_metrics_observe(ps_metrics *m, const ps_event *ev) {
        pool_metrics *p;
        int64_t startup_ms;

        if (m && ev && ev->type == PS_EVENT_GENERIC && ev->message &&
            strcmp(ev->message, PS_HANDOFF_IGNORED) == 0) {
                observe_handoff_refusal(m, ev);
                return;
        }
        if (!m || !ev || !ev->pool_id)
                return;
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
        p = pool_get(m, ev->pool_id);
        if (!p)
                return;

        switch (ev->type) {
        case PS_EVENT_ENGINE_SPAWNED:
                p->plain[PLAIN_ENGINE_SPAWNS]++;
                break;
        case PS_EVENT_SPAWN_FAILED:
                p->plain[PLAIN_SPAWN_FAILURES]++;
                break;
        case PS_EVENT_ENGINE_FAILED:
                (void) label_counts_add(&p->labelled[LABELLED_CRASHES], field_str_or_unknown(ev, "class"), 1);
                break;
        case PS_EVENT_READY:
                p->plain[PLAIN_READY_TRANSITIONS]++;
                if (field_int(ev, "startup_ms", &startup_ms))
                        histogram_observe(&p->startup, &startup_spec, startup_ms);
                break;
        case PS_EVENT_RESTART_SCHEDULED:
                p->plain[PLAIN_RESTARTS_SCHEDULED]++;
                break;
        case PS_EVENT_ALERT:
                observe_alert(p, ev);
                break;
        case PS_EVENT_PROBE_FAILED:
                p->plain[PLAIN_PROBE_FAILURES]++;
                break;
        case PS_EVENT_ENGINE_LOG_ERROR:
                (void) label_counts_add(&p->labelled[LABELLED_LOG_ERRORS], field_str_or_unknown(ev, "class"), 1);
                break;
        case PS_EVENT_REQUEST_DONE:
                observe_request_done(p, ev);
                break;
        case PS_EVENT_LEASE:
                observe_lease(p, ev);
                break;
        case PS_EVENT_DRAIN_STARTED:   /* the draining gauge shows it */
        case PS_EVENT_ENGINE_EXITED:   /* engine_crashes_total counts the failure */
        case PS_EVENT_STATE_CHANGED:   /* gauges show states */
        case PS_EVENT_GENERIC:
        case PS_EVENT_HTTP_REQUEST:
        case PS_EVENT_TYPE_MAX:
                break;
        }
}

/* ---- the text format ----------------------------------------------------- */

/* The exposition being written; an allocation failure is checked once at
 * the end (ps_strbuf's oom). */
typedef ps_strbuf out;

static void put_header(out *o, const char *name, const char *type, const char *help) {
        ps_strbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef struct label {
        const char *key;
        const char *value;
} label;

/* `name{k="v",...} ` -- the value follows. */
static void put_series(out *o, const char *name, const char *suffix, const label *labels, size_t n) {
        ps_strbuf_str(o, name);
        ps_strbuf_str(o, suffix);
        if (n > 0) {
                ps_strbuf_str(o, "{");
                for (size_t i = 0; i < n; i++) {
                        ps_strbuf_printf(o, "%s%s=\"", i ? "," : "", labels[i].key);
                        ps_strbuf_label_value(o, labels[i].value);
                        ps_strbuf_str(o, "\"");
                }
                ps_strbuf_str(o, "}");
        }
        ps_strbuf_str(o, " ");
}

/* Milliseconds as seconds, without trailing zeros: 1500 -> "1.5". */
static const char *format_ms(char buf[32], int64_t ms) {
        uint64_t a = ms < 0 ? (uint64_t) 0 - (uint64_t) ms : (uint64_t) ms;
        unsigned frac = (unsigned) (a % 1000);
        int n;

        if (frac == 0) {
                snprintf(buf, 32, "%s%" PRIu64, ms < 0 ? "-" : "", a / 1000);
                return buf;
        }
        n = snprintf(buf, 32, "%s%" PRIu64 ".%03u", ms < 0 ? "-" : "", a / 1000, frac);
        while (n > 0 && buf[n - 1] == '0')
                buf[--n] = '\0';
        return buf;
}

static void put_u64_line(out *o, uint64_t v) {
        ps_strbuf_printf(o, "%" PRIu64 "\n", v);
}

static void put_int_line(out *o, json_int_t v) {
        ps_strbuf_printf(o, "%" JSON_INTEGER_FORMAT "\n", v);
}

static void put_ms_line(out *o, int64_t ms) {
        char buf[32];

        ps_strbuf_str(o, format_ms(buf, ms));
        ps_strbuf_str(o, "\n");
}

/* ---- counters and histograms (every known pool) ------------------------ */

static void render_build_info(out *o, const ps_metrics *m) {
        const label l = { "version", m->version };

        put_header(o, "pool_managerd_build_info", "gauge",
                   "Always 1; the version label is the running daemon's.");
        put_series(o, "pool_managerd_build_info", "", &l, 1);
        ps_strbuf_str(o, "1\n");
}

static void render_counter(out *o, const ps_metrics *m, counter_ref ref) {
        if (!ref.labelled) {
                const plain_family *f = &plain_families[ref.which];

                put_header(o, f->name, "counter", f->help);
                for (size_t i = 0; i < m->n_pools; i++) {
                        const label l = { "pool_id", m->pools[i]->pool_id };

                        put_series(o, f->name, "", &l, 1);
                        put_u64_line(o, m->pools[i]->plain[ref.which]);
                }
                return;
        }

        const labelled_family *f = &labelled_families[ref.which];

        put_header(o, f->name, "counter", f->help);
        for (size_t i = 0; i < m->n_pools; i++) {
                const label_counts *lc = &m->pools[i]->labelled[ref.which];

                for (size_t j = 0; j < lc->n; j++) {
                        const label l[] = { { "pool_id", m->pools[i]->pool_id }, { f->label, lc->v[j].value } };

                        put_series(o, f->name, "", l, 2);
                        put_u64_line(o, lc->v[j].count);
                }
        }
}

static void render_handoff_refusals(out *o, const ps_metrics *m) {
        static const char *const name = "pool_managerd_handoff_refusals_total";

        put_header(o, name, "counter",
                   "Handoff files from others refused (or malformed), by reason.");
        for (size_t i = 0; i < m->handoff_refusals.n; i++) {
                const label l = { "reason", m->handoff_refusals.v[i].value };

                put_series(o, name, "", &l, 1);
                put_u64_line(o, m->handoff_refusals.v[i].count);
        }
}

/* labels[n] is free for le. */
static void render_histogram_series(out *o, const histogram_spec *spec, const histogram *h,
                                    label *labels, size_t n) {
        char le[32];
        uint64_t cumulative = 0;

        for (size_t i = 0; i < BUCKETS_MAX; i++) {
                cumulative += h->bucket[i];
                labels[n] = (label) { "le", format_ms(le, spec->bounds_ms[i]) };
                put_series(o, spec->name, "_bucket", labels, n + 1);
                put_u64_line(o, cumulative);
        }
        labels[n] = (label) { "le", "+Inf" };
        put_series(o, spec->name, "_bucket", labels, n + 1);
        put_u64_line(o, h->count);
        put_series(o, spec->name, "_sum", labels, n);
        put_ms_line(o, h->sum_ms);
        put_series(o, spec->name, "_count", labels, n);
        put_u64_line(o, h->count);
}

static void render_histograms(out *o, const ps_metrics *m) {
        label l[3];

        put_header(o, startup_spec.name, "histogram", startup_spec.help);
        for (size_t i = 0; i < m->n_pools; i++) {
                l[0] = (label) { "pool_id", m->pools[i]->pool_id };
                render_histogram_series(o, &startup_spec, &m->pools[i]->startup, l, 1);
        }

        /* Only requests that reported a duration: most pools never drain
         * or reload, and a histogram of nothing is 14 lines of noise. */
        put_header(o, request_spec.name, "histogram", request_spec.help);
        for (size_t i = 0; i < m->n_pools; i++)
                for (size_t k = 0; k < REQUEST_MAX; k++) {
                        if (m->pools[i]->request[k].count == 0)
                                continue;
                        l[0] = (label) { "pool_id", m->pools[i]->pool_id };
                        l[1] = (label) { "request", request_names[k] };
                        render_histogram_series(o, &request_spec, &m->pools[i]->request[k], l, 2);
                }
}

/* ---- gauges (the snapshot as it is) ------------------------------------ */

static const char *pool_id_of(const json_t *pool) {
        return json_string_value(json_object_get(pool, "pool_id"));
}

static int compare_pools(const void *a, const void *b) {
        return strcmp(pool_id_of(*(const json_t *const *) a), pool_id_of(*(const json_t *const *) b));
}

static const char *replica_id_of(const json_t *replica) {
        return json_string_value(json_object_get(replica, "replica_id"));
}

static int compare_replicas(const void *a, const void *b) {
        return strcmp(replica_id_of(*(const json_t *const *) a), replica_id_of(*(const json_t *const *) b));
}

static int64_t device_index_of(const json_t *device) {
        return json_integer_value(json_object_get(device, "index"));
}

static int compare_devices(const void *a, const void *b) {
        int64_t x = device_index_of(*(const json_t *const *) a), y = device_index_of(*(const json_t *const *) b);

        return (x > y) - (x < y);
}

/*
 * The objects of array that have an identifier (has_id), sorted, without
 * duplicates: a duplicated series would make the scrape invalid. *ret is
 * NULL when there are none; -ENOMEM.
 */
static int sorted_objects(const json_t *array, bool (*has_id)(const json_t *),
                          int (*compare)(const void *, const void *),
                          const json_t ***ret, size_t *n_ret) {
        size_t n = 0, kept = 0, size = json_array_size(array);
        const json_t **v;

        *ret = NULL;
        *n_ret = 0;
        if (size == 0)
                return 0;
        v = malloc(size * sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < size; i++) {
                const json_t *item = json_array_get(array, i);

                if (json_is_object(item) && has_id(item))
                        v[n++] = item;
        }
        qsort(v, n, sizeof(*v), compare);
        for (size_t i = 0; i < n; i++)
                if (kept == 0 || compare(&v[kept - 1], &v[i]) != 0)
                        v[kept++] = v[i];
        *ret = v;
        *n_ret = kept;
        return 0;
}

static bool pool_has_id(const json_t *pool) {
        return pool_id_of(pool) != NULL;
}

static bool replica_has_id(const json_t *replica) {
        return replica_id_of(replica) != NULL;
}

static bool device_has_id(const json_t *device) {
        return json_is_integer(json_object_get(device, "index"));
}

typedef enum gauge_kind {
        GAUGE_BOOL,             /* true 1, false 0 */
        GAUGE_INT,              /* an integer as it is */
        GAUGE_MS,               /* milliseconds shown as seconds; null 0 */
        GAUGE_COUNT,            /* the length of an array */
} gauge_kind;

typedef struct pool_gauge {
        const char *name;
        const char *help;
        const char *key;
        const char *subkey;     /* NULL, or key is an object holding it */
        gauge_kind kind;
} pool_gauge;

/* In scrape order, after pool_state. */
static const pool_gauge pool_gauges[] = {
        { "pool_managerd_pool_ready", "1 when a replica of the pool is ready to serve.",
          "ready", NULL, GAUGE_BOOL },
        { "pool_managerd_pool_live", "1 when an engine of the pool is running.",
          "live", NULL, GAUGE_BOOL },
        { "pool_managerd_pool_draining", "1 while the pool drains.",
          "draining", NULL, GAUGE_BOOL },
        { "pool_managerd_pool_replicas", "Replicas registered in the pool.",
          "replicas", NULL, GAUGE_COUNT },
        { "pool_managerd_pool_slots", "Slots (concurrent requests) of the pool's replicas.",
          "slots_total", NULL, GAUGE_INT },
        { "pool_managerd_pool_slots_free", "Slots of ready replicas not held by a lease.",
          "slots_free", NULL, GAUGE_INT },
        { "pool_managerd_pool_active_leases", "Leases held on the pool.",
          "active_leases", NULL, GAUGE_INT },
        { "pool_managerd_backoff_delay_seconds", "The restart delay last chosen for the pool.",
          "backoff_ms", NULL, GAUGE_MS },
};

/* After breaker_state. */
static const pool_gauge breaker_gauges[] = {
        { "pool_managerd_breaker_failures", "Failures the pool's breaker has counted towards opening.",
          "breaker", "failures", GAUGE_INT },
};

static void render_pool_gauge(out *o, const pool_gauge *g, const json_t *const *pools, size_t n) {
        put_header(o, g->name, "gauge", g->help);
        for (size_t i = 0; i < n; i++) {
                const label l = { "pool_id", pool_id_of(pools[i]) };
                const json_t *v = json_object_get(pools[i], g->key);

                if (g->subkey)
                        v = json_object_get(v, g->subkey);
                switch (g->kind) {
                case GAUGE_BOOL:
                        if (!json_is_boolean(v))
                                continue;
                        put_series(o, g->name, "", &l, 1);
                        put_int_line(o, json_is_true(v) ? 1 : 0);
                        break;
                case GAUGE_INT:
                        if (!json_is_integer(v))
                                continue;
                        put_series(o, g->name, "", &l, 1);
                        put_int_line(o, json_integer_value(v));
                        break;
                case GAUGE_MS:
                        if (!json_is_integer(v) && !json_is_null(v))
                                continue;
                        put_series(o, g->name, "", &l, 1);
                        put_ms_line(o, json_integer_value(v));
                        break;
                case GAUGE_COUNT:
                        if (!json_is_array(v))
                                continue;
                        put_series(o, g->name, "", &l, 1);
                        put_u64_line(o, json_array_size(v));
                        break;
                }
        }
}

/*
 * A state set: one series per possible state, 1 for the current one and 0
 * for the rest; a state the set does not know gets a series of its own.
 * labels[n] is free for the state.
 */
static void render_state_set(out *o, const char *name, const char *state,
                             const char *(*names)(unsigned i), unsigned n_names,
                             label *labels, size_t n) {
        bool known = false;

        for (unsigned i = 0; i < n_names; i++) {
                const char *s = names(i);
                bool current = strcmp(s, state) == 0;

                known |= current;
                labels[n] = (label) { "state", s };
                put_series(o, name, "", labels, n + 1);
                ps_strbuf_str(o, current ? "1\n" : "0\n");
        }
        if (!known) {
                labels[n] = (label) { "state", state };
                put_series(o, name, "", labels, n + 1);
                ps_strbuf_str(o, "1\n");
        }
}

static const char *lifecycle_state_name(unsigned i) {
        return pd_state_to_string((pd_state) i);
}

static const char *breaker_state_name(unsigned i) {
        return pd_breaker_state_to_string((pd_breaker_state) i);
}

/* A state set per pool, from pools[i][key] (or [key][subkey]). */
static void render_pool_state_set(out *o, const char *name, const char *help, const char *key,
                                  const char *subkey, const char *(*names)(unsigned i), unsigned n_names,
                                  const json_t *const *pools, size_t n) {
        label l[2];

        put_header(o, name, "gauge", help);
        for (size_t i = 0; i < n; i++) {
                const json_t *v = json_object_get(pools[i], key);
                const char *state;

                if (subkey)
                        v = json_object_get(v, subkey);
                state = json_string_value(v);
                if (!state)
                        continue;
                l[0] = (label) { "pool_id", pool_id_of(pools[i]) };
                render_state_set(o, name, state, names, n_names, l, 1);
        }
}

static void render_replica_states(out *o, const json_t *const *pools, size_t n) {
        static const char *const name = "pool_managerd_replica_state";
        label l[3];

        put_header(o, name, "gauge",
                   "Each replica's lifecycle state: 1 for the current state, 0 for the others.");
        for (size_t i = 0; i < n; i++) {
                const json_t **replicas;
                size_t n_replicas;

                if (sorted_objects(json_object_get(pools[i], "replicas"), replica_has_id,
                                   compare_replicas, &replicas, &n_replicas) < 0) {
                        o->oom = true;
                        return;
                }
                for (size_t j = 0; j < n_replicas; j++) {
                        const char *state = json_string_value(json_object_get(replicas[j], "state"));

                        if (!state)
                                continue;
                        l[0] = (label) { "pool_id", pool_id_of(pools[i]) };
                        l[1] = (label) { "replica_id", replica_id_of(replicas[j]) };
                        render_state_set(o, name, state, lifecycle_state_name, PD_STATE_MAX, l, 2);
                }
                free(replicas);
        }
}

typedef struct replica_gauge {
        const char *name;
        const char *help;
        const char *key;        /* an integer of each replica's snapshot */
} replica_gauge;

/* In scrape order, after replica_state. */
static const replica_gauge replica_gauges[] = {
        { "pool_managerd_consecutive_crashes",
          "Failures of the replica since its last run that stayed ready for backoff.stable_reset_ms.",
          "crash_count" },
        { "pool_managerd_restarts_in_window",
          "Restarts of the replica the storm limiter counts in its window (storm.window_ms).",
          "restarts_in_window" },
};

static void render_replica_gauge(out *o, const replica_gauge *g, const json_t *const *pools, size_t n) {
        label l[2];

        put_header(o, g->name, "gauge", g->help);
        for (size_t i = 0; i < n; i++) {
                const json_t **replicas;
                size_t n_replicas;

                if (sorted_objects(json_object_get(pools[i], "replicas"), replica_has_id,
                                   compare_replicas, &replicas, &n_replicas) < 0) {
                        o->oom = true;
                        return;
                }
                for (size_t j = 0; j < n_replicas; j++) {
                        const json_t *v = json_object_get(replicas[j], g->key);

                        if (!json_is_integer(v))
                                continue;
                        l[0] = (label) { "pool_id", pool_id_of(pools[i]) };
                        l[1] = (label) { "replica_id", replica_id_of(replicas[j]) };
                        put_series(o, g->name, "", l, 2);
                        put_int_line(o, json_integer_value(v));
                }
                free(replicas);
        }
}

static void render_pool_gauges(out *o, const json_t *const *pools, size_t n) {
        render_pool_state_set(o, "pool_managerd_pool_state",
                              "The pool's lifecycle state: 1 for the current state, 0 for the others.",
                              "state", NULL, lifecycle_state_name, PD_STATE_MAX, pools, n);
        for (size_t i = 0; i < sizeof(pool_gauges) / sizeof(pool_gauges[0]); i++)
                render_pool_gauge(o, &pool_gauges[i], pools, n);
        render_pool_state_set(o, "pool_managerd_breaker_state",
                              "The pool's circuit breaker: 1 for the current state, 0 for the others.",
                              "breaker", "state", breaker_state_name, PD_BREAKER_STATE_MAX, pools, n);
        for (size_t i = 0; i < sizeof(breaker_gauges) / sizeof(breaker_gauges[0]); i++)
                render_pool_gauge(o, &breaker_gauges[i], pools, n);
        render_replica_states(o, pools, n);
        for (size_t i = 0; i < sizeof(replica_gauges) / sizeof(replica_gauges[0]); i++)
                render_replica_gauge(o, &replica_gauges[i], pools, n);
}

static void render_devices(out *o, const json_t *devices_doc) {
        static const struct {
                const char *name;
                const char *help;
                const char *key;
        } vram[] = {
                { "pool_managerd_gpu_vram_total_bytes", "The device's memory.", "vram_total_bytes" },
                { "pool_managerd_gpu_vram_free_bytes", "The device's free memory at the last sample.",
                  "vram_free_bytes" },
        };
        const json_t **devices;
        size_t n;

        if (sorted_objects(json_object_get(devices_doc, "devices"), device_has_id, compare_devices,
                           &devices, &n) < 0) {
                o->oom = true;
                return;
        }
        put_header(o, "pool_managerd_gpu_info", "gauge",
                   "Always 1 for each GPU of the inventory; labels name it.");
        for (size_t i = 0; i < n; i++) {
                char index[32];
                const char *uuid = json_string_value(json_object_get(devices[i], "uuid"));
                const char *name = json_string_value(json_object_get(devices[i], "name"));

                snprintf(index, sizeof(index), "%" PRId64, device_index_of(devices[i]));
                const label l[] = { { "device", index }, { "uuid", uuid ? uuid : "" }, { "name", name ? name : "" } };

                put_series(o, "pool_managerd_gpu_info", "", l, 3);
                ps_strbuf_str(o, "1\n");
        }
        for (size_t f = 0; f < sizeof(vram) / sizeof(vram[0]); f++) {
                put_header(o, vram[f].name, "gauge", vram[f].help);
                for (size_t i = 0; i < n; i++) {
                        char index[32];
                        const char *uuid = json_string_value(json_object_get(devices[i], "uuid"));
                        const json_t *v = json_object_get(devices[i], vram[f].key);

                        if (!json_is_integer(v))
                                continue;
                        snprintf(index, sizeof(index), "%" PRId64, device_index_of(devices[i]));
                        const label l[] = { { "device", index }, { "uuid", uuid ? uuid : "" } };

                        put_series(o, vram[f].name, "", l, 2);
                        put_int_line(o, json_integer_value(v));
                }
        }
        free(devices);
}

/* ---- render ------------------------------------------------------------- */

/* The snapshot's driver reset count (the pool's, or its replicas' summed);
 * false when it has none. */
static bool snapshot_driver_resets(const json_t *pool, int64_t *ret) {
        const json_t *v = json_object_get(pool, "driver_resets"), *replica;
        bool any = false;
        int64_t sum = 0;
        size_t i;

        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
                return true;
        }
        json_array_foreach(json_object_get(pool, "replicas"), i, replica) {
                v = json_object_get(replica, "driver_resets");
                if (json_is_integer(v)) {
                        sum += json_integer_value(v);
                        any = true;
                }
        }
        *ret = sum;
        return any;
}

/*
 * Pools of the snapshot become known, and its driver reset counts are
 * folded into a counter: the registry's count starts again at 0 when a
 * pool is removed and added back, ours only grows.
 */
static int learn_pools(ps_metrics *m, const json_t *const *pools, size_t n) {
        for (size_t i = 0; i < n; i++) {
                pool_metrics *p = pool_get(m, pool_id_of(pools[i]));
                int64_t resets;

                if (!p)
                        return -ENOMEM;
                if (!snapshot_driver_resets(pools[i], &resets) || resets < 0)
                        continue;
                if (p->driver_resets_seen && resets >= p->driver_resets_last)
                        p->plain[PLAIN_DRIVER_RESETS] += (uint64_t) (resets - p->driver_resets_last);
                else
                        p->plain[PLAIN_DRIVER_RESETS] += (uint64_t) resets;
                p->driver_resets_seen = true;
                p->driver_resets_last = resets;
        }
        return 0;
}

char *ps_metrics_render(ps_metrics *m, const json_t *snapshot, const json_t *devices) {
        out o = { 0 };
        const json_t **pools = NULL;
        size_t n_pools = 0;

        if (!m)
                return NULL;
        ps_strbuf_reserve(&o, 4096);
        if (sorted_objects(json_object_get(snapshot, "pools"), pool_has_id, compare_pools,
                           &pools, &n_pools) < 0 ||
            learn_pools(m, pools, n_pools) < 0) {
                free(pools);
                return NULL;
        }

        render_build_info(&o, m);
        for (size_t i = 0; i < sizeof(counter_order) / sizeof(counter_order[0]); i++)
                render_counter(&o, m, counter_order[i]);
        render_handoff_refusals(&o, m);
        render_histograms(&o, m);
        render_pool_gauges(&o, pools, n_pools);
        render_devices(&o, devices);
        free(pools);
        for (size_t i = 0; i < m->n_collectors; i++) {
                char *text = m->collectors[i].fn(m->collectors[i].userdata);

                if (!text) {
                        o.oom = true;
                        continue;
                }
                ps_strbuf_str(&o, text);
                free(text);
        }

        if (o.oom) {
                free(o.s);
                return NULL;
        }
        return o.s;
}
