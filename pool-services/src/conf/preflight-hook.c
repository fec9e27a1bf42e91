/* SPDX-License-Identifier: MIT */
/* The preflight hook: a spec checked with what the configuration declares. */
#include <errno.h>
#include <string.h>

#include "pool-services/conf/preflight-hook.h"

int ps_preflight_spec(const ps_engine_spec *spec, void *userdata, char *err, size_t errlen) {
        const ps_preflight_source *src = userdata;
        const ps_pool_config *pool;
        ps_preflight_node node;
        ps_preflight_request req;
        uint64_t avail = 0;

        if (!spec || !src || !src->config)
                return -EINVAL;
        node = (ps_preflight_node) {
                .inventory = src->inventory ? src->inventory : src->config->inventory,
                .require_gpu = src->config->gpu.require,
                .headroom_bytes = src->config->gpu.headroom_bytes,
        };
        pool = ps_config_find_pool(src->config, spec->pool_id);
        req = (ps_preflight_request) {
                .pool_id = spec->pool_id,
                .device_mask = spec->device_mask,
                .model_path = spec->model_path,
        };
        if (pool) {
                req.vram_required_bytes = pool->vram_required_bytes;
                req.ram_required_bytes = pool->ram_required_bytes;
                /* the planned split applies to the mask it was planned for */
                if (pool->device_mask && spec->device_mask &&
                    strcmp(pool->device_mask, spec->device_mask) == 0)
                        req.tensor_split = pool->tensor_split;
        }
        if (req.ram_required_bytes > 0 &&
            ps_preflight_mem_available(src->meminfo_path, &avail) == 0) {
                node.mem_known = true;
                node.mem_available_bytes = avail;
        }
        return ps_preflight_check(&node, &req, err, errlen);
}
