/* SPDX-License-Identifier: MIT */
/*
 * The scraper: every interval, each ready, managed replica of a pool that
 * enables it is fetched through the prober on the event loop; a good
 * answer is relabelled (prom-relabel.c) and kept, with the performance
 * hints it feeds (perf-hints.c). docs/metrics.md ("Engine metrics") is
 * the user's side.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "pool-services/conf/config.h"
#include "pool-services/observe/engine-metrics.h"
#include "pool-services/supervise/probe.h"
#include "pool-services/pool/registry.h"

#define PATH_MAX_LEN 255

typedef struct pool_setting {
        char *pool_id;
        char *path;
        bool enabled;
} pool_setting;

typedef struct entry {
        ps_engine_metrics *em;
        char *pool_id, *replica_id;
        ps_probe *probe;          /* in flight */
        ps_engine_scrape *cache;  /* last good one */
        unsigned missed;
        bool seen;                /* ready and enabled at this tick */
        int pid;                  /* the engine the hints describe */
        ps_perf_hints perf;
} entry;

struct ps_engine_metrics {
        const ps_context *ctx;
        ps_registry *reg;
        ps_engine_metrics_options opt;
        struct event *timer;
        pool_setting *pools;
        size_t n_pools;
        entry **entries;
        size_t n_entries;
};

static void entry_free(entry *e) {
        if (!e)
                return;
        ps_probe_cancel(e->probe);
        ps_engine_scrape_free(e->cache);
        free(e->pool_id);
        free(e->replica_id);
        free(e);
}

static void entry_remove(ps_engine_metrics *em, size_t i) {
        entry_free(em->entries[i]);
        memmove(&em->entries[i], &em->entries[i + 1],
                (em->n_entries - i - 1) * sizeof(*em->entries));
        em->n_entries--;
}

static entry *entry_find(const ps_engine_metrics *em, const char *pool_id,
                         const char *replica_id, size_t *index) {
        for (size_t i = 0; i < em->n_entries; i++) {
                entry *e = em->entries[i];

                if (strcmp(e->pool_id, pool_id) == 0 && strcmp(e->replica_id, replica_id) == 0) {
                        if (index)
                                *index = i;
                        return e;
                }
        }
        return NULL;
}

static entry *entry_get(ps_engine_metrics *em, const char *pool_id, const char *replica_id) {
        entry *e = entry_find(em, pool_id, replica_id, NULL), **grown;

        if (e)
                return e;
        grown = realloc(em->entries, (em->n_entries + 1) * sizeof(*grown));
        if (!grown)
                return NULL;
        em->entries = grown;
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        e->em = em;
        e->pool_id = strdup(pool_id);
        e->replica_id = strdup(replica_id);
        if (!e->pool_id || !e->replica_id) {
                entry_free(e);
                return NULL;
        }
        ps_perf_hints_init(&e->perf, em->opt.ewma_alpha);
        em->entries[em->n_entries++] = e;
        return e;
}

/* A scrape that did not happen or failed: after stale_after of them in a
 * row the cache goes, and with it the hints. */
static void entry_missed(entry *e) {
        if (e->missed < UINT32_MAX)
                e->missed++;
        if (e->missed >= e->em->opt.stale_after) {
                e->cache = ps_engine_scrape_free(e->cache);
                ps_perf_hints_init(&e->perf, e->em->opt.ewma_alpha);
        }
}

static void on_scrape(ps_probe_result result, long http_status, const char *detail,
                      const char *body, size_t body_len, void *userdata) {
        entry *e = userdata;
        ps_engine_metrics *em = e->em;
        ps_engine_scrape *s = NULL;

        (void) http_status;
        (void) detail;
        e->probe = NULL;
        if (result != PS_PROBE_OK ||
            ps_engine_metrics_relabel(body, body_len, e->pool_id, e->replica_id,
                                      em->opt.max_bytes, &s, NULL) < 0) {
                entry_missed(e);
                return;
        }
        ps_engine_scrape_free(e->cache);
        e->cache = s;
        e->missed = 0;
        ps_perf_hints_observe(&e->perf, s, ps_clock_mono_ms(em->ctx->clock));
}

static const pool_setting *setting_find(const ps_engine_metrics *em, const char *pool_id) {
        for (size_t i = 0; i < em->n_pools; i++)
                if (strcmp(em->pools[i].pool_id, pool_id) == 0)
                        return &em->pools[i];
        return NULL;
}

static void scrape_replica(ps_engine_metrics *em, const pool_setting *ps, ps_replica *r) {
        char url[600];
        entry *e;
        int pid, n;

        if (!ps_replica_ready(r) || ps_replica_external(r))
                return;
        e = entry_get(em, ps->pool_id, ps_replica_id(r));
        if (!e)
                return;                 /* OOM: try at the next tick */
        e->seen = true;
        if (e->probe)
                return;                 /* the last one is still running */
        pid = ps_replica_pid(r);
        if (pid != e->pid) {            /* another engine: other hints */
                ps_perf_hints_init(&e->perf, em->opt.ewma_alpha);
                e->pid = pid;
        }
        n = ps_replica_url(r, url, sizeof(url) - PATH_MAX_LEN - 1);
        if (n < 0 || (size_t) n >= sizeof(url) - PATH_MAX_LEN - 1) {
                entry_missed(e);
                return;
        }
        snprintf(url + n, sizeof(url) - (size_t) n, "%s", ps->path);
        if (ps_prober_fetch(em->ctx->prober, url, em->opt.timeout_ms, em->opt.max_bytes,
                            on_scrape, e, &e->probe) < 0) {
                e->probe = NULL;
                entry_missed(e);
        }
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        ps_engine_metrics *em = userdata;
        const char *pool_id;

        (void) fd;
        (void) what;
        for (size_t i = 0; i < em->n_entries; i++)
                em->entries[i]->seen = false;
        for (size_t i = 0; (pool_id = ps_registry_pool_id_at(em->reg, i)); i++) {
                const pool_setting *ps = setting_find(em, pool_id);
                ps_replica *r;

                if (!ps || !ps->enabled)
                        continue;
                for (size_t j = 0; (r = ps_registry_replica_at(em->reg, pool_id, j)); j++)
                        scrape_replica(em, ps, r);
        }
        for (size_t i = 0; i < em->n_entries;) {
                entry *e = em->entries[i];

                if (!e->seen && !e->probe)
                        entry_missed(e);
                /* gone, not ready and nothing left to show: forget it */
                if (!e->seen && !e->probe && !e->cache) {
                        entry_remove(em, i);
                        continue;
                }
                i++;
        }
}

ps_engine_metrics *ps_engine_metrics_new(const ps_context *ctx, ps_registry *reg,
                                         const ps_engine_metrics_options *opts) {
        ps_engine_metrics_options o = opts ? *opts : (ps_engine_metrics_options) { 0 };
        ps_engine_metrics *em;

        if (!ctx || !ctx->base || !ctx->prober || !reg)
                return NULL;
        if (o.interval_ms < 0 || o.timeout_ms < 0 || !(o.ewma_alpha >= 0 && o.ewma_alpha <= 1))
                return NULL;
        if (o.interval_ms == 0)
                o.interval_ms = PS_ENGINE_METRICS_INTERVAL_MS;
        if (o.timeout_ms == 0)
                o.timeout_ms = o.interval_ms < PS_ENGINE_METRICS_TIMEOUT_MS ?
                               o.interval_ms : PS_ENGINE_METRICS_TIMEOUT_MS;
        if (o.timeout_ms > o.interval_ms)
                return NULL;
        if (o.max_bytes == 0)
                o.max_bytes = PS_ENGINE_METRICS_MAX_BYTES;
        if (o.stale_after == 0)
                o.stale_after = PS_ENGINE_METRICS_STALE_AFTER;
        if (o.ewma_alpha == 0)
                o.ewma_alpha = PS_ENGINE_METRICS_ALPHA;

        em = calloc(1, sizeof(*em));
        if (!em)
                return NULL;
        em->ctx = ctx;
        em->reg = reg;
        em->opt = o;
        em->timer = event_new(ctx->base, -1, EV_PERSIST, on_tick, em);
        if (!em->timer)
                return ps_engine_metrics_free(em);
        return em;
}

ps_engine_metrics *ps_engine_metrics_free(ps_engine_metrics *em) {
        if (!em)
                return NULL;
        if (em->timer)
                event_free(em->timer);
        for (size_t i = 0; i < em->n_entries; i++)
                entry_free(em->entries[i]);
        free(em->entries);
        for (size_t i = 0; i < em->n_pools; i++) {
                free(em->pools[i].pool_id);
                free(em->pools[i].path);
        }
        free(em->pools);
        free(em);
        return NULL;
}

static bool path_valid(const char *path) {
        if (path[0] != '/' || strlen(path) > PATH_MAX_LEN)
                return false;
        for (const char *c = path; *c; c++)
                if ((unsigned char) *c <= ' ' || *c == 0x7f || *c == '#')
                        return false;
        return true;
}

int ps_engine_metrics_set_pool(ps_engine_metrics *em, const char *pool_id, bool enabled,
                               const char *path) {
        pool_setting *ps;
        char *copy = NULL;

        if (!em || !pool_id || (path && !path_valid(path)))
                return -EINVAL;
        ps = (pool_setting *) setting_find(em, pool_id);
        if (!ps) {
                pool_setting *grown = realloc(em->pools, (em->n_pools + 1) * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                em->pools = grown;
                ps = &em->pools[em->n_pools];
                *ps = (pool_setting) { .pool_id = strdup(pool_id), .path = strdup("/metrics") };
                if (!ps->pool_id || !ps->path) {
                        free(ps->pool_id);
                        free(ps->path);
                        return -ENOMEM;
                }
                em->n_pools++;
        }
        if (path) {
                copy = strdup(path);
                if (!copy)
                        return -ENOMEM;
                free(ps->path);
                ps->path = copy;
        }
        ps->enabled = enabled;
        for (size_t i = 0; !enabled && i < em->n_entries;) {
                if (strcmp(em->entries[i]->pool_id, pool_id) == 0)
                        entry_remove(em, i);
                else
                        i++;
        }
        return 0;
}

int ps_engine_metrics_configure(ps_engine_metrics *em, const ps_config *config) {
        if (!em || !config)
                return -EINVAL;
        for (size_t i = 0; i < config->n_pools; i++) {
                const ps_pool_config *p = &config->pools[i];
                int r = ps_engine_metrics_set_pool(em, p->id, p->engine_metrics,
                                                   p->engine_metrics_path);

                if (r < 0)
                        return r;
        }
        return 0;
}

int ps_engine_metrics_start(ps_engine_metrics *em) {
        struct timeval tv;

        if (!em)
                return -EINVAL;
        tv.tv_sec = em->opt.interval_ms / 1000;
        tv.tv_usec = (em->opt.interval_ms % 1000) * 1000;
        if (event_add(em->timer, &tv) < 0)
                return -ENOMEM;
        event_active(em->timer, EV_TIMEOUT, 0);
        return 0;
}

static int entry_cmp(const void *a, const void *b) {
        const entry *x = *(const entry *const *) a, *y = *(const entry *const *) b;
        int c = strcmp(x->pool_id, y->pool_id);

        return c ? c : strcmp(x->replica_id, y->replica_id);
}

int ps_engine_metrics_render(const ps_engine_metrics *em, struct evbuffer *out) {
        const ps_engine_scrape **scrapes;
        entry **sorted;
        size_t n = 0;
        int r;

        if (!em || !out)
                return -EINVAL;
        if (em->n_entries == 0)
                return 0;
        sorted = malloc(em->n_entries * sizeof(*sorted));
        scrapes = malloc(em->n_entries * sizeof(*scrapes));
        if (!sorted || !scrapes) {
                free(sorted);
                free(scrapes);
                return -ENOMEM;
        }
        memcpy(sorted, em->entries, em->n_entries * sizeof(*sorted));
        qsort(sorted, em->n_entries, sizeof(*sorted), entry_cmp);
        for (size_t i = 0; i < em->n_entries; i++)
                if (sorted[i]->cache)
                        scrapes[n++] = sorted[i]->cache;
        r = ps_engine_scrapes_render(scrapes, n, out);
        free(sorted);
        free(scrapes);
        return r;
}

bool ps_engine_metrics_perf(const ps_engine_metrics *em, const char *pool_id,
                            const char *replica_id, double *tokens_per_s,
                            double *first_token_ms) {
        const entry *e;
        bool any = false;

        if (!em || !pool_id || !replica_id)
                return false;
        e = entry_find(em, pool_id, replica_id, NULL);
        if (!e || !e->cache)
                return false;
        if (tokens_per_s)
                any |= ps_perf_hints_tokens_per_s(&e->perf, tokens_per_s);
        if (first_token_ms)
                any |= ps_perf_hints_first_token_ms(&e->perf, first_token_ms);
        return any;
}

static int set_real(json_t *obj, const char *key, double v) {
        return json_object_set_new(obj, key, json_real(round(v * 10) / 10)) < 0 ? -ENOMEM : 0;
}

static int set_ms(json_t *obj, const char *key, double v) {
        return json_object_set_new(obj, key, json_integer((json_int_t) llround(v))) < 0 ? -ENOMEM : 0;
}

static int annotate_pool(const ps_engine_metrics *em, json_t *pool) {
        const char *pool_id = json_string_value(json_object_get(pool, "pool_id"));
        json_t *replicas = json_object_get(pool, "replicas"), *rep;
        double tps_sum = 0, ttft_sum = 0;
        size_t n_tps = 0, n_ttft = 0, i;
        int r = 0;

        if (!pool_id || !json_is_array(replicas))
                return 0;
        json_array_foreach(replicas, i, rep) {
                const char *rid = json_string_value(json_object_get(rep, "replica_id"));
                const entry *e = rid ? entry_find(em, pool_id, rid, NULL) : NULL;
                double v;

                if (!e || !e->cache)
                        continue;
                if (ps_perf_hints_tokens_per_s(&e->perf, &v)) {
                        tps_sum += v;
                        n_tps++;
                        r = r ? r : set_real(rep, "perf_tokens_per_s", v);
                }
                if (ps_perf_hints_first_token_ms(&e->perf, &v)) {
                        ttft_sum += v;
                        n_ttft++;
                        r = r ? r : set_ms(rep, "first_token_ms", v);
                }
        }
        if (n_tps)
                r = r ? r : set_real(pool, "perf_tokens_per_s", tps_sum);
        if (n_ttft)
                r = r ? r : set_ms(pool, "first_token_ms", ttft_sum / (double) n_ttft);
        return r;
}

int ps_engine_metrics_annotate(const ps_engine_metrics *em, json_t *snapshot) {
        json_t *pools, *pool;
        size_t i;

        if (!em || !json_is_object(snapshot))
                return -EINVAL;
        pools = json_object_get(snapshot, "pools");
        if (!json_is_array(pools))
                return annotate_pool(em, snapshot);
        json_array_foreach(pools, i, pool) {
                int r = json_is_object(pool) ? annotate_pool(em, pool) : 0;

                if (r < 0)
                        return r;
        }
        return 0;
}

size_t ps_engine_metrics_cached(const ps_engine_metrics *em) {
        size_t n = 0;

        for (size_t i = 0; em && i < em->n_entries; i++)
                n += em->entries[i]->cache != NULL;
        return n;
}
