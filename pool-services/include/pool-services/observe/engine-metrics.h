/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct evbuffer;
typedef struct ps_context ps_context;
typedef struct ps_registry ps_registry;
typedef struct ps_config ps_config;

/*
 * Engines' own metrics (llama-server --metrics, vLLM /metrics), scraped in
 * the background and served with the node's scrape.
 *
 * Every interval, each ready, managed replica of a pool that enables it
 * (pool key "engine_metrics") is fetched through the prober's curl multi
 * on the event loop. A good answer is parsed, relabelled with pool_id and
 * replica_id and cached; ps_engine_metrics_render() only formats what is
 * cached, so a scrape of the node never waits on an engine. A replica
 * whose scrape fails, or that is no longer ready, keeps its last good
 * metrics for stale_after intervals; then they vanish.
 *
 * docs/metrics.md ("Engine metrics") describes the renaming rules. In
 * short: ':' becomes '_' ("llamacpp:prompt_tokens_total" ->
 * "llamacpp_prompt_tokens_total"), a counter without "_total" gets it,
 * a family named like ours ("pool_managerd_*") gets an "engine_" prefix,
 * and a family promtool would reject (or one that does not parse) is left
 * out, so the node's scrape stays valid whatever an engine sends.
 *
 * Single-threaded, like the rest of pool-services.
 */

/* ---- one scrape: parse and relabel (pure) --------------------------------- */

typedef struct ps_engine_scrape ps_engine_scrape;

typedef struct ps_relabel_stats {
        size_t families;          /* kept                                    */
        size_t samples;           /* kept                                    */
        size_t dropped_lines;     /* malformed, duplicate or refused lines   */
        size_t dropped_families;  /* refused names, collisions, over the cap */
} ps_relabel_stats;

/*
 * Parses an exposition in the Prometheus text format 0.0.4 and relabels
 * every sample with pool_id and replica_id (added to its labels; an
 * engine label of the same name is kept as exported_pool_id /
 * exported_replica_id). Comments other than HELP and TYPE, blank lines,
 * timestamps and malformed lines are dropped. Families are sorted by
 * name; each keeps its HELP (one is made up when the engine gave none)
 * and TYPE. Families past max_bytes of output are dropped whole
 * (0: no cap).
 *
 * text need not be NUL-terminated. stats may be NULL. 0 and *ret, or
 * -EINVAL (NULL arguments), -ENOMEM.
 */
int ps_engine_metrics_relabel(const char *text, size_t len, const char *pool_id,
                              const char *replica_id, size_t max_bytes,
                              ps_engine_scrape **ret, ps_relabel_stats *stats);
ps_engine_scrape *ps_engine_scrape_free(ps_engine_scrape *scrape);

/* Bytes of exposition text it renders to. */
size_t ps_engine_scrape_bytes(const ps_engine_scrape *scrape);

/*
 * The sum of a sample's values over all its label sets, by the renamed
 * name: "vllm_generation_tokens_total", "vllm_time_to_first_token_seconds_sum",
 * "..._count". false when no such sample was kept.
 */
bool ps_engine_scrape_value(const ps_engine_scrape *scrape, const char *name, double *ret);

/*
 * Appends scrapes merged into one exposition: families by name, each
 * with one HELP and one TYPE line, its samples from scrapes[0], then
 * scrapes[1], ... A family whose TYPE differs between scrapes keeps the
 * first one's; the others' samples of it are left out. NULL entries are
 * skipped. 0, or -ENOMEM (out may hold part of it).
 */
int ps_engine_scrapes_render(const ps_engine_scrape *const *scrapes, size_t n,
                             struct evbuffer *out);

/* ---- performance hints (pure) ---------------------------------------------- */

/*
 * Smoothed generation speed and time to first token of one engine, from
 * successive scrapes. A plain struct so callers can embed it; read it
 * through the functions below.
 *
 * tokens per second: llama-server's tokens_predicted_total over
 * tokens_predicted_seconds_total (deltas: time spent generating), else
 * vLLM's generation_tokens_total delta over the wall time between
 * scrapes, else llama-server's predicted_tokens_seconds gauge when not 0.
 * first token: vLLM's time_to_first_token_seconds histogram, sum delta
 * over count delta. An interval without new tokens (or first tokens)
 * gives no sample: idle time does not drag the hint to 0. A counter that
 * goes back (the engine restarted) starts a new baseline.
 */
typedef struct ps_perf_hints {
        double alpha;             /* EWMA weight of a new sample, (0, 1]   */
        bool have_tokens_per_s, have_first_token_ms;
        double tokens_per_s, first_token_ms;
        /* the previous scrape's counters */
        bool prev_valid;
        int64_t prev_ms;
        bool prev_has[5];
        double prev[5];
} ps_perf_hints;

/* alpha outside (0, 1] (or NaN) means 0.3. */
void ps_perf_hints_init(ps_perf_hints *h, double alpha);
/* Feeds one scrape taken at now_ms (a monotonic clock). */
void ps_perf_hints_observe(ps_perf_hints *h, const ps_engine_scrape *scrape, int64_t now_ms);
bool ps_perf_hints_tokens_per_s(const ps_perf_hints *h, double *ret);
bool ps_perf_hints_first_token_ms(const ps_perf_hints *h, double *ret);

/* ---- the scraper ------------------------------------------------------------- */

typedef struct ps_engine_metrics ps_engine_metrics;

#define PS_ENGINE_METRICS_INTERVAL_MS 5000
#define PS_ENGINE_METRICS_TIMEOUT_MS 2000
#define PS_ENGINE_METRICS_MAX_BYTES (1024 * 1024)
#define PS_ENGINE_METRICS_STALE_AFTER 3
#define PS_ENGINE_METRICS_ALPHA 0.3

/* Zero fields take the defaults above. */
typedef struct ps_engine_metrics_options {
        int64_t interval_ms;      /* between scrapes of one replica         */
        int64_t timeout_ms;       /* one scrape; at most interval_ms        */
        size_t max_bytes;         /* one replica's body and relabelled text */
        unsigned stale_after;     /* missed scrapes before its metrics go   */
        double ewma_alpha;        /* performance hints' smoothing           */
} ps_engine_metrics_options;

/*
 * ctx (base, clock, prober) and reg are borrowed and must outlive it.
 * opts NULL: the defaults. NULL on OOM or bad options (no base or prober,
 * negative values, timeout over the interval). Scraping starts with
 * ps_engine_metrics_start().
 */
ps_engine_metrics *ps_engine_metrics_new(const ps_context *ctx, ps_registry *reg,
                                         const ps_engine_metrics_options *opts);
/* Cancels scrapes in flight. Accepts NULL; returns NULL. */
ps_engine_metrics *ps_engine_metrics_free(ps_engine_metrics *em);

/*
 * Whether a pool's engines are scraped, and at which path ("/metrics";
 * NULL keeps the current one, "/metrics" for a new pool). Pools are off
 * until enabled. Disabling drops the pool's cached metrics at once.
 * 0, -EINVAL (path not starting with '/' or with spaces), -ENOMEM.
 */
int ps_engine_metrics_set_pool(ps_engine_metrics *em, const char *pool_id, bool enabled,
                               const char *path);
/* ps_engine_metrics_set_pool() for every pool of a loaded configuration. */
int ps_engine_metrics_configure(ps_engine_metrics *em, const ps_config *config);

/* Scrapes at once (through the loop, not inside this call), then every
 * interval. 0 or -ENOMEM. */
int ps_engine_metrics_start(ps_engine_metrics *em);

/*
 * Appends the cached metrics of every replica, merged by family
 * (ps_engine_scrapes_render(), replicas ordered by pool_id, replica_id),
 * to out. Written after ps_metrics_render()'s text, the whole is one
 * valid exposition: no family of ours is repeated. Nothing is appended
 * when nothing is cached. 0, -EINVAL (NULL), -ENOMEM.
 */
int ps_engine_metrics_render(const ps_engine_metrics *em, struct evbuffer *out);

/*
 * Adds the performance hints to a snapshot, where known:
 * "perf_tokens_per_s" (tokens/s, one decimal) and "first_token_ms"
 * (integer) on each replica object; on the pool object the sum of its
 * replicas' tokens/s and the mean of their first-token times. Takes a
 * pool snapshot ({"pool_id", "replicas": [...]}) or a list
 * ({"pools": [...]}); keys are absent when the engine does not expose
 * them. 0, -EINVAL (not an object), -ENOMEM.
 */
int ps_engine_metrics_annotate(const ps_engine_metrics *em, json_t *snapshot);

/* One replica's hints; false each when unknown. */
bool ps_engine_metrics_perf(const ps_engine_metrics *em, const char *pool_id,
                            const char *replica_id, double *tokens_per_s,
                            double *first_token_ms);

/* Replicas with cached metrics (for tests). */
size_t ps_engine_metrics_cached(const ps_engine_metrics *em);
