/* SPDX-License-Identifier: MIT */
/*
 * Preflight: the GPUs, VRAM and host RAM a start needs, checked against
 * the inventory and /proc/meminfo before anything is spawned.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errfmt.h"
#include "pool-services/placement/preflight.h"

#define GIB 1073741824.0

static double gib(uint64_t bytes) {
        return (double) bytes / GIB;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* "GPU0,GPU1" into buf. */
static void names(const int *index, unsigned n, char *buf, size_t len) {
        size_t used = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < n && used < len; i++) {
                int w = snprintf(buf + used, len - used, "%sGPU%d", i ? "," : "", index[i]);

                if (w < 0)
                        break;
                used += (size_t) w;
        }
}

static void inventory_names(const ps_inventory *inv, char *buf, size_t len) {
        int index[PS_DEVICES_MAX];
        size_t n = ps_inventory_count(inv);

        for (size_t i = 0; i < n; i++)
                index[i] = ps_inventory_device(inv, i)->index;
        names(index, (unsigned) n, buf, len);
}

/* The mask names devices the inventory does not have. */
static int missing_devices(const ps_preflight_node *node, const ps_preflight_request *req,
                           const char *why, char *err, size_t errlen) {
        const ps_inventory *inv = node->inventory;
        ps_device_mask syntax;
        int missing[PS_DEVICES_MAX];
        unsigned n = 0;
        char need[PS_DEVICES_MAX * 8], have[PS_DEVICES_MAX * 8];
        const char *id = req->pool_id ? req->pool_id : "?";

        if (!node->require_gpu)
                return ps_errf(err, errlen, PS_E_PREFLIGHT, "device_mask \"%s\": %s",
                               req->device_mask, why);
        if (ps_inventory_parse_mask(NULL, req->device_mask, &syntax, NULL, 0) == 0) {
                for (unsigned i = 0; i < syntax.count; i++)
                        if (!ps_inventory_find(inv, syntax.index[i]))
                                missing[n++] = syntax.index[i];
                names(missing, n, need, sizeof(need));
        } else {
                /* a UUID, which only an inventory resolves */
                snprintf(need, sizeof(need), "%s", req->device_mask);
        }
        if (ps_inventory_count(inv) == 0)
                return ps_errf(err, errlen, PS_E_GPU_ONLY,
                               "GPU-only enforcement: pool %s needs %s, and this node has no GPU "
                               "(%s); no CPU fallback is attempted", id, need,
                               ps_inventory_problem(inv) ? ps_inventory_problem(inv)
                               : "gpu.backend finds no devices");
        inventory_names(inv, have, sizeof(have));
        return ps_errf(err, errlen, PS_E_GPU_ONLY,
                       "GPU-only enforcement: pool %s needs %s, which this node does not have "
                       "(it has %s); no CPU fallback is attempted", id, need, have);
}

static int check_vram(const ps_preflight_node *node, const ps_preflight_request *req,
                      const ps_device_mask *mask, uint64_t required, char *err, size_t errlen) {
        double ratio[PS_DEVICES_MAX];
        unsigned n = 0;
        uint64_t need = required, free_total = 0;
        char where[PS_DEVICES_MAX * 8];

        /* a split names each device's share */
        if (req->tensor_split && mask->count > 1) {
                const char *p = req->tensor_split;

                while (*p && n < PS_DEVICES_MAX) {
                        char *end;

                        ratio[n++] = strtod(p, &end);
                        if (end == p)
                                break;
                        p = *end == ',' ? end + 1 : end;
                }
        }
        if (n == mask->count && n > 1) {
                for (unsigned i = 0; i < n; i++) {
                        const ps_gpu_device *d = ps_inventory_find(node->inventory, mask->index[i]);
                        uint64_t share = (uint64_t) ((double) required * ratio[i]);

                        need = sat_add(share, node->headroom_bytes);
                        if (need > d->vram_free_bytes)
                                return ps_errf(err, errlen, PS_E_PREFLIGHT,
                                               "insufficient VRAM: need %.1f GiB, free %.1f GiB "
                                               "on GPU%d (its share %.4g of the split)",
                                               gib(need), gib(d->vram_free_bytes), d->index,
                                               ratio[i]);
                }
                return 0;
        }
        for (unsigned i = 0; i < mask->count; i++) {
                const ps_gpu_device *d = ps_inventory_find(node->inventory, mask->index[i]);

                need = sat_add(need, node->headroom_bytes);
                free_total = sat_add(free_total, d->vram_free_bytes);
        }
        if (need > free_total) {
                names(mask->index, mask->count, where, sizeof(where));
                return ps_errf(err, errlen, PS_E_PREFLIGHT,
                               "insufficient VRAM: need %.1f GiB, free %.1f GiB on %s",
                               gib(need), gib(free_total), where);
        }
        return 0;
}

int ps_preflight_check(const ps_preflight_node *node, const ps_preflight_request *req,
                       char *err, size_t errlen) {
        ps_device_mask mask;
        uint64_t required;
        char why[256];
        int r;

        if (!node || !req)
                return -EINVAL;
        if (req->ram_required_bytes > 0 && node->mem_known &&
            req->ram_required_bytes > node->mem_available_bytes)
                return ps_errf(err, errlen, PS_E_PREFLIGHT,
                               "insufficient host RAM: need %.1f GiB, MemAvailable %.1f GiB",
                               gib(req->ram_required_bytes), gib(node->mem_available_bytes));

        if (!req->device_mask || strcmp(req->device_mask, "none") == 0) {
                if (node->require_gpu)
                        return ps_errf(err, errlen, PS_E_GPU_ONLY,
                                       "GPU-only enforcement: pool %s has no device_mask (CPU "
                                       "only) and gpu.require is on; no CPU fallback is attempted",
                                       req->pool_id ? req->pool_id : "?");
                return 0;
        }
        r = ps_inventory_parse_mask(node->inventory, req->device_mask, &mask, why, sizeof(why));
        if (r < 0)
                return r;
        if (r > 0)
                return missing_devices(node, req, why, err, errlen);
        if (mask.none)
                return 0;
        if (ps_inventory_problem(node->inventory)) {
                char where[PS_DEVICES_MAX * 8];

                names(mask.index, mask.count, where, sizeof(where));
                if (node->require_gpu)
                        return ps_errf(err, errlen, PS_E_GPU_ONLY,
                                       "GPU-only enforcement: pool %s needs %s, which cannot be used "
                                       "now: %s", req->pool_id ? req->pool_id : "?", where,
                                       ps_inventory_problem(node->inventory));
                return ps_errf(err, errlen, PS_E_PREFLIGHT, "%s cannot be used now: %s", where,
                               ps_inventory_problem(node->inventory));
        }

        required = req->vram_required_bytes;
        if (required == 0 && req->model_path &&
            ps_preflight_estimate_vram(req->model_path, &required) < 0)
                required = 0;   /* no file to measure: the engine will say */
        return check_vram(node, req, &mask, required, err, errlen);
}

static uint64_t estimate(uint64_t bytes) {
        return bytes / 100 * PS_VRAM_OVERHEAD_PERCENT + bytes % 100 * PS_VRAM_OVERHEAD_PERCENT / 100;
}

int ps_preflight_estimate_vram(const char *model_path, uint64_t *ret) {
        struct stat st;
        uint64_t total = 0;
        DIR *dir;
        struct dirent *e;

        if (!model_path || !ret)
                return -EINVAL;
        if (stat(model_path, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode)) {
                *ret = estimate((uint64_t) st.st_size);
                return 0;
        }
        if (!S_ISDIR(st.st_mode))
                return -EINVAL;
        /* a model directory (safetensors shards, config files) */
        dir = opendir(model_path);
        if (!dir)
                return -errno;
        while ((e = readdir(dir))) {
                if (fstatat(dirfd(dir), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
                        total = sat_add(total, (uint64_t) st.st_size);
        }
        closedir(dir);
        *ret = estimate(total);
        return 0;
}

int ps_preflight_mem_available(const char *meminfo_path, uint64_t *ret) {
        FILE *f = fopen(meminfo_path ? meminfo_path : "/proc/meminfo", "re");
        char line[256];
        unsigned long long kb;
        int r = -EINVAL;

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                        *ret = (uint64_t) kb * 1024;
                        r = 0;
                        break;
                }
        fclose(f);
        return r;
}
