/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the metrics files share: metrics.c owns the ps_metrics object and
 * puts a scrape together, metrics-counters.c keeps and renders the
 * event-fed counters and histograms, metrics-events.c turns events into
 * counts, metrics-pools.c renders the gauges of a snapshot, and
 * metrics-render.c writes the text format. Only they include this.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/strbuf.h"
#include "pool-services/observe/metrics.h"

/*
 * Counters are kept per pool; gauges are read from the snapshot at render
 * time. Label values that events carry come from the domain's enums, so
 * they are few; PS_METRICS_LABEL_VALUES_MAX only bounds the damage should
 * an event ever carry free text.
 */
#define PS_METRICS_LABEL_VALUES_MAX 32
#define PS_METRICS_LABEL_VALUE_OVERFLOW "other"
#define PS_METRICS_LABEL_VALUE_UNKNOWN "unknown"

/* ---- what is counted ------------------------------------------------------ */

typedef enum ps_metrics_plain {
        PS_PLAIN_READY_TRANSITIONS,
        PS_PLAIN_ENGINE_SPAWNS,
        PS_PLAIN_SPAWN_FAILURES,
        PS_PLAIN_RESTARTS_SCHEDULED,
        PS_PLAIN_RESTARTS_THROTTLED,
        PS_PLAIN_MANUAL_RESTARTS,
        PS_PLAIN_STORM_WARNINGS,
        PS_PLAIN_BREAKER_OPENS,
        PS_PLAIN_PROBE_FAILURES,
        PS_PLAIN_DRIVER_RESETS,
        PS_PLAIN_LEASES_GRANTED,
        PS_PLAIN_LEASES_RELEASED,
        PS_PLAIN_LEASES_EXPIRED,
        PS_PLAIN_LEASES_DROPPED,
        PS_PLAIN_MAX,
} ps_metrics_plain;

typedef enum ps_metrics_labelled {
        PS_LABELLED_PRELOADS,
        PS_LABELLED_DRAINS,
        PS_LABELLED_RELOADS,
        PS_LABELLED_CRASHES,
        PS_LABELLED_EXITS,
        PS_LABELLED_STORMS,
        PS_LABELLED_LOG_ERRORS,
        PS_LABELLED_RELOAD_FAILURES,
        PS_LABELLED_LEASE_REFUSALS,
        PS_LABELLED_MAX,
} ps_metrics_labelled;

typedef enum ps_metrics_request {
        PS_REQUEST_PRELOAD,
        PS_REQUEST_DRAIN,
        PS_REQUEST_RELOAD,
        PS_REQUEST_MAX,
} ps_metrics_request;

/* "preload", "drain", "reload": the request field of a request_done event
 * and the request label of the duration histogram. */
extern const char *const ps_metrics_request_names[PS_REQUEST_MAX];

/* Histogram bucket bounds in milliseconds, rendered in seconds. */
#define PS_METRICS_BUCKETS_MAX 11

typedef struct ps_metrics_histogram_spec {
        const char *name;
        const char *help;
        int64_t bounds_ms[PS_METRICS_BUCKETS_MAX];
} ps_metrics_histogram_spec;

extern const ps_metrics_histogram_spec ps_metrics_startup_spec;
extern const ps_metrics_histogram_spec ps_metrics_request_spec;

typedef struct ps_metrics_histogram {
        uint64_t bucket[PS_METRICS_BUCKETS_MAX];        /* per bucket, not cumulative */
        uint64_t count;
        int64_t sum_ms;
} ps_metrics_histogram;

typedef struct ps_metrics_label_count {
        char *value;
        uint64_t count;
} ps_metrics_label_count;

/* Sorted by value, so the output order does not depend on event order. */
typedef struct ps_metrics_label_counts {
        ps_metrics_label_count *v;
        size_t n, cap;
} ps_metrics_label_counts;

typedef struct ps_metrics_pool {
        char *pool_id;
        uint64_t plain[PS_PLAIN_MAX];
        ps_metrics_label_counts labelled[PS_LABELLED_MAX];
        ps_metrics_histogram startup;
        ps_metrics_histogram request[PS_REQUEST_MAX];
        bool driver_resets_seen;
        int64_t driver_resets_last;     /* last value the snapshot showed */
} ps_metrics_pool;

#define PS_METRICS_COLLECTORS_MAX 8

typedef struct ps_metrics_collector {
        ps_metrics_collect_fn fn;
        void *userdata;
} ps_metrics_collector;

struct ps_metrics {
        char *version;
        ps_metrics_pool **pools;        /* sorted by pool_id */
        size_t n_pools, cap_pools;
        ps_metrics_collector collectors[PS_METRICS_COLLECTORS_MAX];    /* in the order added */
        size_t n_collectors;
        ps_metrics_label_counts handoff_refusals;       /* the node's, by reason */
        ps_metrics_label_counts node_errors;            /* the node's, by kind   */
        bool config_known;              /* ps_metrics_config_loaded() was called */
        bool config_ok;                 /* the last load was applied             */
        int64_t config_ok_wall_ms;      /* the last one that was                 */
};

/* ---- stored state (metrics-counters.c, metrics.c) ------------------------ */

/* Adds delta to value's count, making it at delta; past
 * PS_METRICS_LABEL_VALUES_MAX values the count goes to "other". -ENOMEM. */
int ps_metrics_label_counts_add(ps_metrics_label_counts *lc, const char *value, uint64_t delta);
void ps_metrics_label_counts_done(ps_metrics_label_counts *lc);

void ps_metrics_histogram_observe(ps_metrics_histogram *h, const ps_metrics_histogram_spec *spec,
                                  int64_t ms);

/* A pool's counters, each labelled family with its preset values at 0.
 * NULL on OOM. */
ps_metrics_pool *ps_metrics_pool_new(const char *pool_id);
/* Accepts NULL; returns NULL. */
ps_metrics_pool *ps_metrics_pool_free(ps_metrics_pool *p);

/* The pool's record, made on first sight (metrics.c). NULL on OOM. */
ps_metrics_pool *ps_metrics_pool_get(ps_metrics *m, const char *pool_id);

/* ---- the text format (metrics-render.c) ---------------------------------- */

/*
 * The exposition is written into a ps_strbuf; an allocation failure is
 * checked once at the end (its oom).
 */

typedef struct ps_expo_label {
        const char *key;
        const char *value;
} ps_expo_label;

void ps_expo_header(ps_strbuf *o, const char *name, const char *type, const char *help);
/* `name{k="v",...} ` -- the value follows. */
void ps_expo_series(ps_strbuf *o, const char *name, const char *suffix,
                    const ps_expo_label *labels, size_t n);
/* Milliseconds as seconds, without trailing zeros: 1500 -> "1.5". */
const char *ps_expo_format_ms(char buf[32], int64_t ms);
void ps_expo_u64_line(ps_strbuf *o, uint64_t v);
void ps_expo_int_line(ps_strbuf *o, json_int_t v);
void ps_expo_ms_line(ps_strbuf *o, int64_t ms);

/* ---- families ------------------------------------------------------------ */

/* build_info, every counter family, then the histograms, for every known
 * pool (metrics-counters.c). */
void ps_metrics_render_counters(ps_strbuf *o, const ps_metrics *m);

/* The status's pools that have a pool_id, sorted by it, without
 * duplicates; *ret is NULL when there are none. -ENOMEM. */
int ps_metrics_sorted_pools(const ps_registry_status *status, const ps_pool_status ***ret,
                            size_t *n_ret);

/* Pool, breaker and replica gauges of the sorted pools, then the GPU
 * gauges of devices (metrics-pools.c). */
void ps_metrics_render_pool_gauges(ps_strbuf *o, const ps_pool_status *const *pools, size_t n);
void ps_metrics_render_devices(ps_strbuf *o, const json_t *devices_doc);
/* The GPU inventory's health, the configuration's last load and the
 * process_* families (metrics-node.c). */
void ps_metrics_render_node(ps_strbuf *o, const ps_metrics *m, const json_t *devices_doc);
