/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/strbuf.h"
#include "observe/metrics-private.h"
#include "pool-domain/crash.h"
#include "pool-services/cloud/handoff-watch.h"
#include "pool-services/observe/metrics.h"

/*
 * The ps_metrics object: its pools' counters (metrics-counters.c, fed by
 * metrics-events.c), its collectors, and the scrape put together from
 * them and the snapshot's gauges (metrics-pools.c).
 */

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

ps_metrics_pool *ps_metrics_pool_get(ps_metrics *m, const char *pool_id) {
        bool found;
        size_t at = pool_search(m, pool_id, &found);
        ps_metrics_pool *p;

        if (found)
                return m->pools[at];
        if (m->n_pools == m->cap_pools) {
                size_t cap = m->cap_pools ? m->cap_pools * 2 : 8;
                ps_metrics_pool **pools = realloc(m->pools, cap * sizeof(*pools));

                if (!pools)
                        return NULL;
                m->pools = pools;
                m->cap_pools = cap;
        }
        p = ps_metrics_pool_new(pool_id);
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
                if (ps_metrics_label_counts_add(&m->handoff_refusals, reason, 0) < 0)
                        return ps_metrics_free(m);
        for (unsigned i = 0; (reason = pd_node_error_kind_to_string((pd_node_error_kind) i)); i++)
                if (ps_metrics_label_counts_add(&m->node_errors, reason, 0) < 0)
                        return ps_metrics_free(m);
        return m;
}

int ps_metrics_add_collector(ps_metrics *m, ps_metrics_collect_fn fn, void *userdata) {
        if (!m || !fn)
                return -EINVAL;
        if (m->n_collectors == PS_METRICS_COLLECTORS_MAX)
                return -ENOSPC;
        m->collectors[m->n_collectors++] = (ps_metrics_collector) { fn, userdata };
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
                ps_metrics_pool_free(m->pools[i]);
        free(m->pools);
        ps_metrics_label_counts_done(&m->handoff_refusals);
        ps_metrics_label_counts_done(&m->node_errors);
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

/* ---- render ------------------------------------------------------------- */

/*
 * Pools of the status become known, and their replicas' driver reset
 * counts are folded into a counter: the registry's count starts again at
 * 0 when a pool is removed and added back, ours only grows. A pool without
 * replicas has no count.
 */
static int learn_pools(ps_metrics *m, const ps_pool_status *const *pools, size_t n) {
        for (size_t i = 0; i < n; i++) {
                ps_metrics_pool *p = ps_metrics_pool_get(m, pools[i]->pool_id);
                uint64_t resets = pools[i]->driver_resets;

                if (!p)
                        return -ENOMEM;
                if (pools[i]->n_replicas == 0)
                        continue;
                if (p->driver_resets_seen && (int64_t) resets >= p->driver_resets_last)
                        p->plain[PS_PLAIN_DRIVER_RESETS] += resets - (uint64_t) p->driver_resets_last;
                else
                        p->plain[PS_PLAIN_DRIVER_RESETS] += resets;
                p->driver_resets_seen = true;
                p->driver_resets_last = (int64_t) resets;
        }
        return 0;
}

char *ps_metrics_render(ps_metrics *m, const ps_registry_status *status, const json_t *devices) {
        ps_strbuf o = { 0 };
        const ps_pool_status **pools = NULL;
        size_t n_pools = 0;

        if (!m)
                return NULL;
        ps_strbuf_reserve(&o, 4096);
        if (ps_metrics_sorted_pools(status, &pools, &n_pools) < 0 ||
            learn_pools(m, pools, n_pools) < 0) {
                free(pools);
                return NULL;
        }

        ps_metrics_render_counters(&o, m);
        ps_metrics_render_pool_gauges(&o, pools, n_pools);
        ps_metrics_render_devices(&o, devices);
        ps_metrics_render_node(&o, m, devices);
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

json_t *ps_metrics_node_errors(const ps_metrics *m) {
        json_t *o = json_object();

        for (size_t i = 0; m && o && i < m->node_errors.n; i++)
                if (json_object_set_new(o, m->node_errors.v[i].value,
                                        json_integer((json_int_t) m->node_errors.v[i].count)) < 0) {
                        json_decref(o);
                        return NULL;
                }
        return o;
}
