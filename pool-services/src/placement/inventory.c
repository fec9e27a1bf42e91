/* SPDX-License-Identifier: MIT */
/*
 * The GPU inventory and the placement checks against it. The arithmetic
 * (mask parsing, overlap, split planning) is pool-domain's; this file
 * holds the devices and translates between the public ps_ types and the
 * domain's pd_ ones, which do not leave pool-services.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/errfmt.h"
#include "pool-domain/devmask.h"
#include "pool-domain/split.h"
#include "pool-services/placement/cuda.h"
#include "pool-services/placement/inventory.h"

static_assert(PS_GPU_UUID_MAX == PD_UUID_MAX, "uuid sizes differ");
static_assert(PS_GPU_NAME_MAX == PD_DEVICE_NAME_MAX, "name sizes differ");
static_assert(PS_GPU_PCI_BUS_ID_MAX == PD_PCI_BUS_ID_MAX, "pci bus id sizes differ");
static_assert(PS_DEVICES_MAX == PD_DEVICES_MAX, "mask sizes differ");

struct ps_inventory {
        ps_gpu_backend backend;
        char *problem;            /* why no devices, or why they fail; NULL */
        ps_gpu_device *devices;   /* sorted by index */
        pd_device *pd;            /* the same, for pool-domain */
        size_t count;
};

static int device_cmp(const void *a, const void *b) {
        const ps_gpu_device *x = a, *y = b;

        return (x->index > y->index) - (x->index < y->index);
}

static void device_to_pd(const ps_gpu_device *d, pd_device *out) {
        *out = (pd_device) {
                .index = d->index,
                .cc_major = d->cc_major,
                .cc_minor = d->cc_minor,
                .vram_total_bytes = d->vram_total_bytes,
                .vram_free_bytes = d->vram_free_bytes,
        };
        snprintf(out->uuid, sizeof(out->uuid), "%s", d->uuid);
        snprintf(out->name, sizeof(out->name), "%s", d->name);
        snprintf(out->pci_bus_id, sizeof(out->pci_bus_id), "%s", d->pci_bus_id);
}

int ps_inventory_new(ps_gpu_backend backend, const ps_gpu_device *devices, size_t n,
                     ps_inventory **ret, char *err, size_t errlen) {
        ps_inventory *inv;

        if (!ret || (n > 0 && !devices) || (unsigned) backend >= PS_GPU_BACKEND_MAX)
                return -EINVAL;
        if (n > PS_DEVICES_MAX)
                return ps_errf(err, errlen, PS_E_INVALID, "%zu devices, at most %d allowed",
                            n, PS_DEVICES_MAX);
        inv = calloc(1, sizeof(*inv));
        if (!inv)
                return -ENOMEM;
        inv->backend = backend;
        if (n > 0) {
                inv->devices = calloc(n, sizeof(*inv->devices));
                inv->pd = calloc(n, sizeof(*inv->pd));
                if (!inv->devices || !inv->pd) {
                        ps_inventory_free(inv);
                        return -ENOMEM;
                }
                memcpy(inv->devices, devices, n * sizeof(*devices));
                qsort(inv->devices, n, sizeof(*inv->devices), device_cmp);
        }
        inv->count = n;
        for (size_t i = 0; i < n; i++) {
                const ps_gpu_device *d = &inv->devices[i];
                int index = d->index;

                if (index < 0 || index >= PS_DEVICES_MAX) {
                        ps_inventory_free(inv);
                        return ps_errf(err, errlen, PS_E_INVALID,
                                    "device index %d is out of range (0..%d)",
                                    index, PS_DEVICES_MAX - 1);
                }
                if (i > 0 && inv->devices[i - 1].index == index) {
                        ps_inventory_free(inv);
                        return ps_errf(err, errlen, PS_E_INVALID,
                                    "device %d is listed twice", index);
                }
                device_to_pd(d, &inv->pd[i]);
        }
        *ret = inv;
        return 0;
}

static int set_problem(ps_inventory *inv, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static int set_problem(ps_inventory *inv, const char *fmt, ...) {
        va_list ap;
        char *text = NULL;
        int n;

        if (!fmt) {
                free(inv->problem);
                inv->problem = NULL;
                return 0;
        }
        va_start(ap, fmt);
        n = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        free(inv->problem);
        inv->problem = text;
        return 0;
}

/* auto and cuda: what a probe child finds now. */
static int discover(const ps_gpu_config *gpu, ps_inventory **ret, char *err, size_t errlen) {
        ps_cuda_options o = { .timeout_ms = gpu->probe_timeout_ms };
        ps_cuda_result res;
        ps_inventory *inv = NULL;
        int r;

        r = ps_cuda_discover(&o, &res);
        if (r < 0)
                return r;
        if (res.status == PS_CUDA_OK) {
                r = ps_inventory_new(PS_GPU_BACKEND_CUDA, res.devices, res.n_devices, &inv,
                                     err, errlen);
        } else if (gpu->backend == PS_GPU_BACKEND_CUDA) {
                r = ps_errf(err, errlen, PS_E_INVALID, "backend \"cuda\": %s", res.message);
        } else {
                /* auto: no devices, and the reason kept for the log and the API */
                r = ps_inventory_new(PS_GPU_BACKEND_NONE, NULL, 0, &inv, err, errlen);
                if (r == 0 && set_problem(inv, "no CUDA: %s", res.message) < 0)
                        r = -ENOMEM;
        }
        ps_cuda_result_clear(&res);
        if (r) {
                ps_inventory_free(inv);
                return r;
        }
        *ret = inv;
        return 0;
}

int ps_inventory_copy(const ps_inventory *inv, ps_inventory **ret) {
        ps_inventory *copy;
        int r;

        if (!inv || !ret)
                return -EINVAL;
        r = ps_inventory_new(inv->backend, inv->devices, inv->count, &copy, NULL, 0);
        if (r)
                return r < 0 ? r : -EINVAL;
        if (inv->problem && !(copy->problem = strdup(inv->problem))) {
                ps_inventory_free(copy);
                return -ENOMEM;
        }
        *ret = copy;
        return 0;
}

const char *const ps_gpu_backend_names[PS_GPU_BACKEND_MAX] = {
        [PS_GPU_BACKEND_AUTO] = "auto",
        [PS_GPU_BACKEND_CUDA] = "cuda",
        [PS_GPU_BACKEND_FAKE] = "fake",
        [PS_GPU_BACKEND_NONE] = "none",
};

const char *ps_gpu_backend_to_string(ps_gpu_backend b) {
        return (unsigned) b < PS_GPU_BACKEND_MAX ? ps_gpu_backend_names[b] : NULL;
}

int ps_inventory_from_config(const ps_gpu_config *gpu, ps_inventory **ret,
                             char *err, size_t errlen) {
        if (!gpu || !ret)
                return -EINVAL;
        switch (gpu->backend) {
        case PS_GPU_BACKEND_FAKE:
                return ps_inventory_new(PS_GPU_BACKEND_FAKE, gpu->devices, gpu->n_devices,
                                        ret, err, errlen);
        case PS_GPU_BACKEND_AUTO:
        case PS_GPU_BACKEND_CUDA:
                return discover(gpu, ret, err, errlen);
        case PS_GPU_BACKEND_NONE:
                return ps_inventory_new(PS_GPU_BACKEND_NONE, NULL, 0, ret, err, errlen);
        case PS_GPU_BACKEND_MAX:
                break;
        }
        return -EINVAL;
}

ps_inventory *ps_inventory_free(ps_inventory *inv) {
        if (!inv)
                return NULL;
        free(inv->devices);
        free(inv->pd);
        free(inv->problem);
        free(inv);
        return NULL;
}

const char *ps_inventory_problem(const ps_inventory *inv) {
        return inv ? inv->problem : NULL;
}

/* Same devices (by UUID, at the same index), whatever their free VRAM. */
static bool same_devices(const ps_inventory *inv, const ps_gpu_device *d, size_t n) {
        if (n != inv->count)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!ps_inventory_find(inv, d[i].index) ||
                    strcasecmp(ps_inventory_find(inv, d[i].index)->uuid, d[i].uuid) != 0)
                        return false;
        return true;
}

int ps_inventory_apply_probe(ps_inventory *inv, const ps_cuda_result *res,
                             ps_inventory_change *change) {
        ps_inventory_change c = { .was_failing = inv && inv->problem && inv->count > 0 };
        int r;

        if (!inv || !res)
                return -EINVAL;
        if (res->status != PS_CUDA_OK) {
                /* the devices stay listed (masks still name them); starts on
                 * them are refused until a probe works again */
                c.failed = inv->count > 0 && !c.was_failing;
                r = inv->count > 0 ? set_problem(inv, "the CUDA probe failed: %s", res->message)
                                   : set_problem(inv, "no CUDA: %s", res->message);
                if (r < 0)
                        return r;
        } else if (same_devices(inv, res->devices, res->n_devices)) {
                for (size_t i = 0; i < res->n_devices; i++) {
                        for (size_t j = 0; j < inv->count; j++)
                                if (inv->devices[j].index == res->devices[i].index) {
                                        inv->devices[j].vram_free_bytes = res->devices[i].vram_free_bytes;
                                        inv->devices[j].vram_total_bytes = res->devices[i].vram_total_bytes;
                                        inv->pd[j].vram_free_bytes = res->devices[i].vram_free_bytes;
                                        inv->pd[j].vram_total_bytes = res->devices[i].vram_total_bytes;
                                }
                }
                c.recovered = c.was_failing;
                set_problem(inv, NULL);
        } else {
                ps_inventory *fresh = NULL;

                r = ps_inventory_new(PS_GPU_BACKEND_CUDA, res->devices, res->n_devices, &fresh,
                                     NULL, 0);
                if (r)
                        return r < 0 ? r : -EINVAL;
                c.devices_changed = true;
                c.recovered = c.was_failing;
                /* the object stays (others hold it); its contents are swapped */
                free(inv->devices);
                free(inv->pd);
                free(inv->problem);
                *inv = *fresh;
                free(fresh);
        }
        if (change)
                *change = c;
        return 0;
}

ps_gpu_backend ps_inventory_backend(const ps_inventory *inv) {
        return inv ? inv->backend : PS_GPU_BACKEND_NONE;
}

size_t ps_inventory_count(const ps_inventory *inv) {
        return inv ? inv->count : 0;
}

const ps_gpu_device *ps_inventory_device(const ps_inventory *inv, size_t i) {
        if (!inv || i >= inv->count)
                return NULL;
        return &inv->devices[i];
}

const ps_gpu_device *ps_inventory_find(const ps_inventory *inv, int index) {
        for (size_t i = 0; inv && i < inv->count; i++)
                if (inv->devices[i].index == index)
                        return &inv->devices[i];
        return NULL;
}

static json_t *device_to_json(const ps_gpu_device *d) {
        char cc[32];

        snprintf(cc, sizeof(cc), "%d.%d", d->cc_major, d->cc_minor);
        return json_pack("{s:i, s:s, s:s, s:o, s:s, s:I, s:I}",
                         "index", d->index,
                         "uuid", d->uuid,
                         "name", d->name,
                         "pci_bus_id", d->pci_bus_id[0] ? json_string(d->pci_bus_id) : json_null(),
                         "compute_capability", cc,
                         "vram_total_bytes", (json_int_t) d->vram_total_bytes,
                         "vram_free_bytes", (json_int_t) d->vram_free_bytes);
}

json_t *ps_inventory_to_json(const ps_inventory *inv) {
        json_t *devices = json_array();

        if (!devices)
                return NULL;
        for (size_t i = 0; inv && i < inv->count; i++) {
                if (json_array_append_new(devices, device_to_json(&inv->devices[i])) < 0) {
                        json_decref(devices);
                        return NULL;
                }
        }
        return json_pack("{s:s, s:s, s:o, s:o}",
                         "backend", ps_gpu_backend_to_string(ps_inventory_backend(inv)),
                         "status", !inv || !inv->problem ? "ok"
                                   : inv->count > 0 ? "failing" : "no_devices",
                         "reason", inv && inv->problem ? json_string(inv->problem) : json_null(),
                         "devices", devices);
}

static void mask_to_pd(const ps_device_mask *m, pd_devmask *out) {
        *out = (pd_devmask) { .none = m->none, .count = m->count };
        for (unsigned i = 0; i < m->count && i < PD_DEVICES_MAX; i++)
                out->index[i] = m->index[i];
}

int ps_inventory_parse_mask(const ps_inventory *inv, const char *text,
                            ps_device_mask *ret, char *err, size_t errlen) {
        pd_inventory view = { .devices = NULL, .count = 0 };
        pd_devmask m;
        pd_error perr;
        int r;

        if (!text || !ret)
                return -EINVAL;
        if (inv) {
                view.devices = inv->pd;
                view.count = inv->count;
        }
        r = pd_devmask_parse(text, inv ? &view : NULL, &m, &perr);
        if (r < 0)
                return r;
        if (r > 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s", perr.msg);
        *ret = (ps_device_mask) { .none = m.none, .count = m.count };
        for (unsigned i = 0; i < m.count; i++)
                ret->index[i] = m.index[i];
        return 0;
}

int ps_device_mask_format(const ps_device_mask *m, char *buf, size_t len) {
        pd_devmask pm;

        if (!m)
                return -EINVAL;
        mask_to_pd(m, &pm);
        return pd_devmask_format(&pm, buf, len);
}

int ps_device_mask_format_visible(const ps_device_mask *m, char *buf, size_t len) {
        pd_devmask pm;

        if (!m)
                return -EINVAL;
        mask_to_pd(m, &pm);
        return pd_devmask_format_visible(&pm, NULL, false, buf, len);
}

int ps_inventory_format_visible(const ps_inventory *inv, const ps_device_mask *m,
                                bool by_uuid, char *buf, size_t len) {
        pd_inventory view = { .devices = NULL, .count = 0 };
        pd_devmask pm;

        if (!m)
                return -EINVAL;
        mask_to_pd(m, &pm);
        if (!by_uuid || !inv || inv->backend != PS_GPU_BACKEND_CUDA)
                return pd_devmask_format_visible(&pm, NULL, false, buf, len);
        for (unsigned i = 0; i < m->count; i++)
                if (!ps_inventory_find(inv, m->index[i]))
                        return pd_devmask_format_visible(&pm, NULL, false, buf, len);
        view.devices = inv->pd;
        view.count = inv->count;
        return pd_devmask_format_visible(&pm, &view, true, buf, len);
}

bool ps_device_mask_overlaps(const ps_device_mask *a, const ps_device_mask *b,
                             int *shared) {
        pd_devmask pa, pb;

        if (!a || !b)
                return false;
        mask_to_pd(a, &pa);
        mask_to_pd(b, &pb);
        return pd_devmask_overlaps(&pa, &pb, shared);
}

int ps_inventory_plan_split(const ps_inventory *inv, const ps_device_mask *mask,
                            const char *split, uint64_t headroom_bytes,
                            uint64_t required_bytes, char *buf, size_t len,
                            char *err, size_t errlen) {
        uint64_t usable[PS_DEVICES_MAX];
        pd_split s;
        pd_error perr;
        int r;

        if (!mask || !split || !buf)
                return -EINVAL;
        if (mask->none || mask->count == 0)
                return ps_errf(err, errlen, PS_E_INVALID, "a pool without devices cannot be split");

        if (strcmp(split, "auto") == 0) {
                for (unsigned i = 0; i < mask->count; i++) {
                        const ps_gpu_device *d = ps_inventory_find(inv, mask->index[i]);

                        if (!inv) {
                                /* no device to plan from yet: even */
                                usable[i] = 1;
                                continue;
                        }
                        if (!d)
                                return ps_errf(err, errlen, PS_E_INVALID,
                                            "device %d is not in the inventory", mask->index[i]);
                        usable[i] = d->vram_free_bytes > headroom_bytes
                                            ? d->vram_free_bytes - headroom_bytes : 0;
                }
                r = pd_split_plan_auto(usable, mask->count, &s, &perr);
                if (r == 0 && inv && required_bytes > 0)
                        r = pd_split_cap(&s, usable, required_bytes, &perr);
        } else {
                r = pd_split_parse(split, mask->count, &s, &perr);
                /* explicit ratios are capped for the smallest GPU too */
                if (r == 0 && inv && required_bytes > 0) {
                        for (unsigned i = 0; i < mask->count; i++) {
                                const ps_gpu_device *d = ps_inventory_find(inv, mask->index[i]);

                                if (!d)
                                        return ps_errf(err, errlen, PS_E_INVALID,
                                                       "device %d is not in the inventory",
                                                       mask->index[i]);
                                usable[i] = d->vram_free_bytes > headroom_bytes
                                                    ? d->vram_free_bytes - headroom_bytes : 0;
                        }
                        r = pd_split_cap(&s, usable, required_bytes, &perr);
                }
        }
        if (r < 0)
                return r;
        if (r > 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s", perr.msg);

        r = pd_split_format(&s, PD_SPLIT_STYLE_FRACTION, buf, len);
        return r < 0 ? r : 0;
}
