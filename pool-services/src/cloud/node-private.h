/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "pool-services/placement/inventory.h"
#include "pool-services/pool/registry.h"

/*
 * What the control plane and etcd are told about this node, built in one
 * place so both say the same.
 */

/* Which pools the node advertises: every pool in the registry when !set,
 * otherwise the listed ids (POOL_MANAGERD_POOLS). Borrowed. */
typedef struct ps_node_pools {
        bool set;
        const char *const *ids;
        size_t n;
} ps_node_pools;

/* {"gpus": [devices...], "cpu_cores": n, "ram_bytes": n}; inv may be NULL
 * (no GPUs). NULL on OOM. */
json_t *ps_node_capabilities(const ps_inventory *inv);

/* ["pool-a", ...]: the advertised ids (the list when set, else the
 * registry's pools). NULL on OOM. */
json_t *ps_node_pool_ids(const ps_registry *reg, const ps_node_pools *pools);

/* [{pool_id, ready, draining, slots_free, slots_total, vram_free_bytes,
 * engine, state}] for the advertised pools the registry has. vram_free_bytes
 * sums the free VRAM of the devices in the pool's mask (inv may be NULL:
 * 0). NULL on OOM. */
json_t *ps_node_pool_status(const ps_registry *reg, const ps_inventory *inv,
                            const ps_node_pools *pools);
