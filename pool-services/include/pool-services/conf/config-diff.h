/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pool-services/conf/config.h"

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
