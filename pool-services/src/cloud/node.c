/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cloud/node-private.h"

/*
 * The seed's NodeCapabilities: gpus [{device_id u32, name, vram_total_bytes
 * u64, compute_capability String}], cpu_cores and ram_total_bytes optional.
 * Extra fields (index, uuid, ...) are ignored by its reader.
 */
json_t *ps_node_capabilities(const ps_inventory *inv) {
        json_t *gpus = json_array();
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

        if (!gpus)
                return NULL;
        for (size_t i = 0; i < ps_inventory_count(inv); i++) {
                const ps_gpu_device *d = ps_inventory_device(inv, i);
                char cc[32];

                snprintf(cc, sizeof(cc), "%d.%d", d->cc_major, d->cc_minor);
                if (json_array_append_new(gpus, json_pack(
                            "{s:i, s:i, s:s, s:s, s:s, s:I, s:I}",
                            "device_id", d->index < 0 ? 0 : d->index,
                            "index", d->index,
                            "uuid", d->uuid,
                            "name", d->name,
                            "compute_capability", cc,
                            "vram_total_bytes", (json_int_t) d->vram_total_bytes,
                            "vram_free_bytes", (json_int_t) d->vram_free_bytes)) < 0) {
                        json_decref(gpus);
                        return NULL;
                }
        }
        return json_pack("{s:o, s:I, s:I}", "gpus", gpus,
                         "cpu_cores", (json_int_t) (cores > 0 ? cores : 0),
                         "ram_total_bytes", (json_int_t) (pages > 0 && page > 0 ? pages * page : 0));
}

static bool advertised(const ps_node_pools *pools, const char *id) {
        if (!pools || !pools->set)
                return true;
        for (size_t i = 0; i < pools->n; i++)
                if (strcmp(pools->ids[i], id) == 0)
                        return true;
        return false;
}

json_t *ps_node_pool_ids(const ps_registry *reg, const ps_node_pools *pools) {
        json_t *ids = json_array();
        const char *id;

        if (!ids)
                return NULL;
        if (pools && pools->set) {
                for (size_t k = 0; k < pools->n; k++)
                        json_array_append_new(ids, json_string(pools->ids[k]));
                return ids;
        }
        for (size_t i = 0; (id = ps_registry_pool_id_at(reg, i)); i++)
                json_array_append_new(ids, json_string(id));
        return ids;
}

static json_int_t vram_free(const ps_inventory *inv, const char *mask_text) {
        ps_device_mask mask;
        json_int_t sum = 0;

        if (!inv || !mask_text || ps_inventory_parse_mask(inv, mask_text, &mask, NULL, 0) != 0 ||
            mask.none)
                return 0;
        for (unsigned i = 0; i < mask.count; i++) {
                const ps_gpu_device *d = ps_inventory_find(inv, mask.index[i]);

                if (d)
                        sum += (json_int_t) d->vram_free_bytes;
        }
        return sum;
}

static json_t *opt_str(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *pool_entry(const ps_pool_status *p, const ps_inventory *inv) {
        const ps_replica_status *f = p->first;

        return json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:o, s:o}",
                         "pool_id", p->pool_id,
                         "state", p->state,
                         "ready", p->ready,
                         "draining", p->draining,
                         "slots_free", (json_int_t) p->slots_free,
                         "slots_total", (json_int_t) p->slots_total,
                         "vram_free_bytes", vram_free(inv, f ? f->device_mask : NULL),
                         "engine", opt_str(f ? f->engine : NULL),
                         "engine_version", opt_str(f ? f->engine_version : NULL));
}

json_t *ps_node_pool_status(const ps_registry *reg, const ps_inventory *inv,
                            const ps_node_pools *pools) {
        ps_registry_status status;
        json_t *out;

        if (ps_registry_status_get(reg, &status) < 0)
                return NULL;
        out = json_array();
        for (size_t i = 0; out && i < status.n_pools; i++) {
                const ps_pool_status *p = &status.pools[i];

                if (advertised(pools, p->pool_id))
                        json_array_append_new(out, pool_entry(p, inv));
        }
        ps_registry_status_done(&status);
        return out;
}
