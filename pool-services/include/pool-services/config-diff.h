/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pool-services/config.h"
#include "pool-services/registry.h"

/*
 * What changed between two loaded configurations, pool by pool -- the
 * plan of a configuration reload (SIGHUP). Pure: no I/O.
 */

typedef enum ps_pool_change {
        PS_POOL_ADDED,
        PS_POOL_REMOVED,
        PS_POOL_CHANGED,
        PS_POOL_UNCHANGED,
        PS_POOL_CHANGE_MAX,
} ps_pool_change;

/* "added", "removed", "changed", "unchanged"; NULL out of range. */
const char *ps_pool_change_to_string(ps_pool_change c);

typedef struct ps_pool_diff {
        const char *pool_id;      /* borrowed from the configuration it is in */
        ps_pool_change change;
        /* CHANGED only: host, port, replicas and device_mask are the same,
         * so the running replicas can be reloaded in place; otherwise the
         * pool is replaced (drained, removed, added again). */
        bool in_place;
        /* CHANGED only: something the engines run from changed (model,
         * binary, args, version, slots, env, split); false: the policy
         * alone changed, and no engine needs to restart. */
        bool engine_changed;
} ps_pool_diff;

typedef struct ps_config_diff {
        ps_pool_diff *pools;      /* the new file's pools in order, then the removed ones */
        size_t n_pools;
        size_t count[PS_POOL_CHANGE_MAX];
} ps_config_diff;

/* 0 and *ret, -EINVAL, or -ENOMEM. Both configurations must outlive the
 * diff (it borrows their pool ids). */
int ps_config_diff_compute(const ps_config *old, const ps_config *next, ps_config_diff **ret);
ps_config_diff *ps_config_diff_free(ps_config_diff *diff);

/* How long a configuration reload lets a removed or replaced pool drain. */
#define PS_CONFIG_DRAIN_DEADLINE_MS 60000

/*
 * Brings the registry from `old` to `next` (both loaded and valid):
 * added pools are registered and preloaded; removed pools are drained,
 * stopped and forgotten; changed pools are reloaded in place (drain-first,
 * one replica at a time) or replaced; a policy-only change is applied to
 * the running replicas without a restart; unchanged pools are not touched.
 * What happens later (a preload, a drain, a reload finishing) is reported
 * through the registry's event sink. Returns 0, PS_E_INVALID when `next`
 * does not resolve to engines (nothing is changed then), or -ENOMEM.
 * `next` may be freed once this returns.
 */
int ps_registry_apply_config(ps_registry *reg, const ps_config *old, const ps_config *next,
                             char *err, size_t errlen);
