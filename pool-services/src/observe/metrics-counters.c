/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "observe/metrics-private.h"
#include "pool-domain/crash.h"
#include "pool-domain/storm.h"

/* The counter and histogram families, how a pool's counts are kept, and
 * how they are rendered for every known pool. */

const char *const ps_metrics_request_names[PS_REQUEST_MAX] = {
        [PS_REQUEST_PRELOAD] = "preload",
        [PS_REQUEST_DRAIN] = "drain",
        [PS_REQUEST_RELOAD] = "reload",
};

/* Model loads take from well under a second (a small GGUF from the page
 * cache) to minutes (a large model from network storage). */
const ps_metrics_histogram_spec ps_metrics_startup_spec = {
        .name = "pool_managerd_engine_startup_seconds",
        .help = "Time from an engine's spawn until it answered its health probe.",
        .bounds_ms = { 100, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000, 600000 },
};

/* Drains wait for leases up to their deadline; reloads add a load. */
const ps_metrics_histogram_spec ps_metrics_request_spec = {
        .name = "pool_managerd_request_duration_seconds",
        .help = "Time a preload, drain or reload took until it was answered.",
        .bounds_ms = { 100, 500, 1000, 5000, 10000, 30000, 60000, 120000, 300000, 600000, 1800000 },
};

/* ---- families ------------------------------------------------------------ */

typedef struct plain_family {
        const char *name;
        const char *help;
} plain_family;

static const plain_family plain_families[PS_PLAIN_MAX] = {
        [PS_PLAIN_READY_TRANSITIONS] = { "pool_managerd_ready_transitions_total",
                "Times a replica of the pool became ready." },
        [PS_PLAIN_ENGINE_SPAWNS] = { "pool_managerd_engine_spawns_total",
                "Engine processes started for the pool." },
        [PS_PLAIN_SPAWN_FAILURES] = { "pool_managerd_spawn_failures_total",
                "Engine processes that could not be started (exec or fork failed)." },
        [PS_PLAIN_RESTARTS_SCHEDULED] = { "pool_managerd_restarts_scheduled_total",
                "Restarts scheduled after a failure, each after a backoff delay." },
        [PS_PLAIN_RESTARTS_THROTTLED] = { "pool_managerd_restarts_throttled_total",
                "Restarts the storm limiter delayed beyond the backoff." },
        [PS_PLAIN_MANUAL_RESTARTS] = { "pool_managerd_manual_restarts_total",
                "Restarts an operator asked for (POST /v2/pools/{id}/restart), not after a failure." },
        [PS_PLAIN_STORM_WARNINGS] = { "pool_managerd_storm_warnings_total",
                "Warnings that restarts approach the storm limit." },
        [PS_PLAIN_BREAKER_OPENS] = { "pool_managerd_breaker_opens_total",
                "Times the pool's circuit breaker opened." },
        [PS_PLAIN_PROBE_FAILURES] = { "pool_managerd_probe_failures_total",
                "Failed health probes of ready engines." },
        [PS_PLAIN_DRIVER_RESETS] = { "pool_managerd_driver_resets_total",
                "GPU driver resets under the pool's replicas." },
        [PS_PLAIN_LEASES_GRANTED] = { "pool_managerd_leases_granted_total",
                "Leases granted on the pool." },
        [PS_PLAIN_LEASES_RELEASED] = { "pool_managerd_leases_released_total",
                "Leases released by their holder." },
        [PS_PLAIN_LEASES_EXPIRED] = { "pool_managerd_leases_expired_total",
                "Leases ended because their TTL ran out." },
        [PS_PLAIN_LEASES_DROPPED] = { "pool_managerd_leases_dropped_total",
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

/* How an engine process ended: the daemon asked; exit 0 on its own; any
 * other end on its own (non-zero, a signal, unknown status). */
static const char *exit_kind_preset(unsigned i) {
        static const char *const names[] = { "failed", "requested", "unrequested" };

        return i < sizeof(names) / sizeof(names[0]) ? names[i] : NULL;
}

/* node_error is never an engine failure: it has a family of its own. */
_Static_assert(PD_CRASH_NODE_ERROR + 1 == PD_CRASH_CLASS_MAX, "node_error is the last class");
/* Every class but graceful: an engine that exited 0 did not crash. */
static const char *crash_class_preset(unsigned i) {
        return i + 1 < PD_CRASH_NODE_ERROR ? pd_crash_class_to_string((pd_crash_class) (i + 1)) : NULL;
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

static const labelled_family labelled_families[PS_LABELLED_MAX] = {
        [PS_LABELLED_PRELOADS] = { "pool_managerd_preloads_total",
                "Preloads answered, by outcome.", "outcome", outcome_preset },
        [PS_LABELLED_DRAINS] = { "pool_managerd_drains_total",
                "Drains of the pool finished, by outcome.", "outcome", drain_outcome_preset },
        [PS_LABELLED_RELOADS] = { "pool_managerd_reloads_total",
                "Reloads of the pool answered, by outcome.", "outcome", outcome_preset },
        [PS_LABELLED_CRASHES] = { "pool_managerd_engine_crashes_total",
                "Engine failures counted by the supervisor, by crash class.", "reason", crash_class_preset },
        [PS_LABELLED_EXITS] = { "pool_managerd_engine_exits_total",
                "Engine processes that ended, by kind: requested by the daemon, exit 0 on their own "
                "(unrequested), or failed.", "kind", exit_kind_preset },
        [PS_LABELLED_STORMS] = { "pool_managerd_restart_storms_total",
                "Restart storms detected, by kind.", "kind", storm_kind_preset },
        [PS_LABELLED_LOG_ERRORS] = { "pool_managerd_engine_log_errors_total",
                "CUDA, driver and out-of-memory lines seen in engine logs, by class.", "class", log_class_preset },
        [PS_LABELLED_RELOAD_FAILURES] = { "pool_managerd_reload_failures_total",
                "Reloads that failed (the pool kept or got back its previous engine), by reason.",
                "reason", reload_reason_preset },
        [PS_LABELLED_LEASE_REFUSALS] = { "pool_managerd_lease_refusals_total",
                "Lease requests refused, by reason.", "reason", lease_refusal_preset },
};

/* The order counters appear in a scrape. */
typedef struct counter_ref {
        bool labelled;
        unsigned which;
} counter_ref;

static const counter_ref counter_order[] = {
        { true, PS_LABELLED_PRELOADS },
        { false, PS_PLAIN_READY_TRANSITIONS },
        { false, PS_PLAIN_ENGINE_SPAWNS },
        { false, PS_PLAIN_SPAWN_FAILURES },
        { true, PS_LABELLED_CRASHES },
        { true, PS_LABELLED_EXITS },
        { false, PS_PLAIN_RESTARTS_SCHEDULED },
        { false, PS_PLAIN_RESTARTS_THROTTLED },
        { false, PS_PLAIN_MANUAL_RESTARTS },
        { false, PS_PLAIN_STORM_WARNINGS },
        { true, PS_LABELLED_STORMS },
        { false, PS_PLAIN_BREAKER_OPENS },
        { false, PS_PLAIN_PROBE_FAILURES },
        { true, PS_LABELLED_LOG_ERRORS },
        { true, PS_LABELLED_DRAINS },
        { true, PS_LABELLED_RELOADS },
        { true, PS_LABELLED_RELOAD_FAILURES },
        { false, PS_PLAIN_DRIVER_RESETS },
        { false, PS_PLAIN_LEASES_GRANTED },
        { false, PS_PLAIN_LEASES_RELEASED },
        { false, PS_PLAIN_LEASES_EXPIRED },
        { false, PS_PLAIN_LEASES_DROPPED },
        { true, PS_LABELLED_LEASE_REFUSALS },
};

/* ---- stored state -------------------------------------------------------- */

int ps_metrics_label_counts_add(ps_metrics_label_counts *lc, const char *value, uint64_t delta) {
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
        if (lc->n >= PS_METRICS_LABEL_VALUES_MAX && strcmp(value, PS_METRICS_LABEL_VALUE_OVERFLOW) != 0)
                return ps_metrics_label_counts_add(lc, PS_METRICS_LABEL_VALUE_OVERFLOW, delta);
        if (lc->n == lc->cap) {
                size_t cap = lc->cap ? lc->cap * 2 : 4;
                ps_metrics_label_count *v = realloc(lc->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                lc->v = v;
                lc->cap = cap;
        }
        char *copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        memmove(&lc->v[i + 1], &lc->v[i], (lc->n - i) * sizeof(*lc->v));
        lc->v[i] = (ps_metrics_label_count) { .value = copy, .count = delta };
        lc->n++;
        return 0;
}

void ps_metrics_label_counts_done(ps_metrics_label_counts *lc) {
        for (size_t i = 0; i < lc->n; i++)
                free(lc->v[i].value);
        free(lc->v);
}

void ps_metrics_histogram_observe(ps_metrics_histogram *h, const ps_metrics_histogram_spec *spec,
                                  int64_t ms) {
        if (ms < 0)
                ms = 0;
        for (size_t i = 0; i < PS_METRICS_BUCKETS_MAX; i++)
                if (ms <= spec->bounds_ms[i]) {
                        h->bucket[i]++;
                        break;
                }
        h->count++;
        h->sum_ms += ms;
}

ps_metrics_pool *ps_metrics_pool_free(ps_metrics_pool *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < PS_LABELLED_MAX; i++)
                ps_metrics_label_counts_done(&p->labelled[i]);
        free(p->pool_id);
        free(p);
        return NULL;
}

ps_metrics_pool *ps_metrics_pool_new(const char *pool_id) {
        ps_metrics_pool *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->pool_id = strdup(pool_id);
        if (!p->pool_id)
                return ps_metrics_pool_free(p);
        for (size_t f = 0; f < PS_LABELLED_MAX; f++) {
                const char *value;

                for (unsigned i = 0; (value = labelled_families[f].preset(i)); i++)
                        if (ps_metrics_label_counts_add(&p->labelled[f], value, 0) < 0)
                                return ps_metrics_pool_free(p);
        }
        return p;
}

/* ---- counters and histograms (every known pool) ------------------------ */

static void render_build_info(ps_strbuf *o, const ps_metrics *m) {
        const ps_expo_label l = { "version", m->version };

        ps_expo_header(o, "pool_managerd_build_info", "gauge",
                       "Always 1; the version label is the running daemon's.");
        ps_expo_series(o, "pool_managerd_build_info", "", &l, 1);
        ps_strbuf_str(o, "1\n");
}

static void render_counter(ps_strbuf *o, const ps_metrics *m, counter_ref ref) {
        if (!ref.labelled) {
                const plain_family *f = &plain_families[ref.which];

                ps_expo_header(o, f->name, "counter", f->help);
                for (size_t i = 0; i < m->n_pools; i++) {
                        const ps_expo_label l = { "pool_id", m->pools[i]->pool_id };

                        ps_expo_series(o, f->name, "", &l, 1);
                        ps_expo_u64_line(o, m->pools[i]->plain[ref.which]);
                }
                return;
        }

        const labelled_family *f = &labelled_families[ref.which];

        ps_expo_header(o, f->name, "counter", f->help);
        for (size_t i = 0; i < m->n_pools; i++) {
                const ps_metrics_label_counts *lc = &m->pools[i]->labelled[ref.which];

                for (size_t j = 0; j < lc->n; j++) {
                        const ps_expo_label l[] = {
                                { "pool_id", m->pools[i]->pool_id }, { f->label, lc->v[j].value },
                        };

                        ps_expo_series(o, f->name, "", l, 2);
                        ps_expo_u64_line(o, lc->v[j].count);
                }
        }
}

static void render_handoff_refusals(ps_strbuf *o, const ps_metrics *m) {
        static const char *const name = "pool_managerd_handoff_refusals_total";

        ps_expo_header(o, name, "counter",
                       "Handoff files from others refused (or malformed), by reason.");
        for (size_t i = 0; i < m->handoff_refusals.n; i++) {
                const ps_expo_label l = { "reason", m->handoff_refusals.v[i].value };

                ps_expo_series(o, name, "", &l, 1);
                ps_expo_u64_line(o, m->handoff_refusals.v[i].count);
        }
}

static void render_node_errors(ps_strbuf *o, const ps_metrics *m) {
        static const char *const name = "pool_managerd_node_errors_total";

        ps_expo_header(o, name, "counter",
                       "Engine starts the node failed (not the engine), by kind.");
        for (size_t i = 0; i < m->node_errors.n; i++) {
                const ps_expo_label l = { "kind", m->node_errors.v[i].value };

                ps_expo_series(o, name, "", &l, 1);
                ps_expo_u64_line(o, m->node_errors.v[i].count);
        }
}

/* labels[n] is free for le. */
static void render_histogram_series(ps_strbuf *o, const ps_metrics_histogram_spec *spec,
                                    const ps_metrics_histogram *h, ps_expo_label *labels, size_t n) {
        char le[32];
        uint64_t cumulative = 0;

        for (size_t i = 0; i < PS_METRICS_BUCKETS_MAX; i++) {
                cumulative += h->bucket[i];
                labels[n] = (ps_expo_label) { "le", ps_expo_format_ms(le, spec->bounds_ms[i]) };
                ps_expo_series(o, spec->name, "_bucket", labels, n + 1);
                ps_expo_u64_line(o, cumulative);
        }
        labels[n] = (ps_expo_label) { "le", "+Inf" };
        ps_expo_series(o, spec->name, "_bucket", labels, n + 1);
        ps_expo_u64_line(o, h->count);
        ps_expo_series(o, spec->name, "_sum", labels, n);
        ps_expo_ms_line(o, h->sum_ms);
        ps_expo_series(o, spec->name, "_count", labels, n);
        ps_expo_u64_line(o, h->count);
}

static void render_histograms(ps_strbuf *o, const ps_metrics *m) {
        ps_expo_label l[3];

        ps_expo_header(o, ps_metrics_startup_spec.name, "histogram", ps_metrics_startup_spec.help);
        for (size_t i = 0; i < m->n_pools; i++) {
                l[0] = (ps_expo_label) { "pool_id", m->pools[i]->pool_id };
                render_histogram_series(o, &ps_metrics_startup_spec, &m->pools[i]->startup, l, 1);
        }

        /* Only requests that reported a duration: most pools never drain
         * or reload, and a histogram of nothing is 14 lines of noise. */
        ps_expo_header(o, ps_metrics_request_spec.name, "histogram", ps_metrics_request_spec.help);
        for (size_t i = 0; i < m->n_pools; i++)
                for (size_t k = 0; k < PS_REQUEST_MAX; k++) {
                        if (m->pools[i]->request[k].count == 0)
                                continue;
                        l[0] = (ps_expo_label) { "pool_id", m->pools[i]->pool_id };
                        l[1] = (ps_expo_label) { "request", ps_metrics_request_names[k] };
                        render_histogram_series(o, &ps_metrics_request_spec, &m->pools[i]->request[k], l, 2);
                }
}

void ps_metrics_render_counters(ps_strbuf *o, const ps_metrics *m) {
        render_build_info(o, m);
        for (size_t i = 0; i < sizeof(counter_order) / sizeof(counter_order[0]); i++)
                render_counter(o, m, counter_order[i]);
        render_handoff_refusals(o, m);
        render_node_errors(o, m);
        render_histograms(o, m);
}
