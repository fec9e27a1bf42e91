/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool-services/conf/config-diff.h"

const char *ps_pool_change_to_string(ps_pool_change c) {
        static const char *const names[PS_POOL_CHANGE_MAX] = {
                [PS_POOL_ADDED] = "added",
                [PS_POOL_REMOVED] = "removed",
                [PS_POOL_CHANGED] = "changed",
                [PS_POOL_UNCHANGED] = "unchanged",
        };

        return (unsigned) c < PS_POOL_CHANGE_MAX ? names[c] : NULL;
}

static bool str_same(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool list_same(char *const *a, size_t na, char *const *b, size_t nb) {
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!str_same(a[i], b[i]))
                        return false;
        return true;
}

static bool policy_same(const ps_policy *a, const ps_policy *b) {
        json_t *ja = ps_policy_to_json(a), *jb = ps_policy_to_json(b);
        bool same = ja && jb && json_equal(ja, jb);

        json_decref(ja);
        json_decref(jb);
        return same;
}

/* Where the replicas are: what a reload in place must keep. */
static bool placement_same(const ps_pool_config *a, const ps_pool_config *b) {
        return str_same(a->host, b->host) && a->port == b->port && a->replicas == b->replicas &&
               str_same(a->device_mask, b->device_mask) && a->shared_devices == b->shared_devices;
}

/* What the engines run from. */
static bool engine_same(const ps_pool_config *a, const ps_pool_config *b) {
        return str_same(a->engine, b->engine) && str_same(a->engine_version, b->engine_version) &&
               str_same(a->binary, b->binary) && list_same(a->args, a->n_args, b->args, b->n_args) &&
               str_same(a->model_path, b->model_path) && str_same(a->split, b->split) &&
               str_same(a->tensor_split, b->tensor_split) &&
               str_same(a->cuda_visible_devices, b->cuda_visible_devices) &&
               a->slots == b->slots && a->vram_required_bytes == b->vram_required_bytes &&
               list_same(a->env, a->n_env, b->env, b->n_env);
}

static const ps_pool_config *find(const ps_config *c, const char *id) {
        for (size_t i = 0; i < c->n_pools; i++)
                if (strcmp(c->pools[i].id, id) == 0)
                        return &c->pools[i];
        return NULL;
}

int ps_config_diff_compute(const ps_config *old, const ps_config *next, ps_config_diff **ret) {
        ps_config_diff *d;
        size_t n = 0;

        if (!old || !next || !ret)
                return -EINVAL;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->pools = calloc(old->n_pools + next->n_pools + 1, sizeof(*d->pools));
        if (!d->pools) {
                free(d);
                return -ENOMEM;
        }
        for (size_t i = 0; i < next->n_pools; i++) {
                const ps_pool_config *now = &next->pools[i], *was = find(old, now->id);
                ps_pool_diff *e = &d->pools[n++];

                e->pool_id = now->id;
                if (!was) {
                        e->change = PS_POOL_ADDED;
                } else if (placement_same(was, now) && engine_same(was, now) &&
                           policy_same(was->policy, now->policy)) {
                        e->change = PS_POOL_UNCHANGED;
                } else {
                        e->change = PS_POOL_CHANGED;
                        e->in_place = placement_same(was, now);
                        e->engine_changed = !engine_same(was, now) || !e->in_place;
                }
                d->count[e->change]++;
        }
        for (size_t i = 0; i < old->n_pools; i++)
                if (!find(next, old->pools[i].id)) {
                        d->pools[n++] = (ps_pool_diff) { .pool_id = old->pools[i].id,
                                                         .change = PS_POOL_REMOVED };
                        d->count[PS_POOL_REMOVED]++;
                }
        d->n_pools = n;
        *ret = d;
        return 0;
}

ps_config_diff *ps_config_diff_free(ps_config_diff *d) {
        if (!d)
                return NULL;
        free(d->pools);
        free(d);
        return NULL;
}
