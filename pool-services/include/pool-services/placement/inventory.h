/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/placement/cuda.h"
#include "pool-services/base/errors.h"
#include "pool-services/placement/gpu.h"

/*
 * The node's GPU inventory and the placement checks made against it:
 * device masks, their overlap, CUDA_VISIBLE_DEVICES and tensor splits.
 *
 * Backends: "fake" lists the devices of the config's gpu.devices; "none"
 * has no devices; "cuda" lists what a CUDA probe finds (pool-services/placement/cuda.h)
 * and fails when it finds nothing; "auto" is "cuda" when a device is found
 * and otherwise an inventory of backend "none" whose problem says why
 * ("no CUDA: libcuda.so.1 not found ..."). Never a silent fake.
 */
typedef struct ps_inventory ps_inventory;

/* A copy of the devices; PS_E_INVALID for an index listed twice or out
 * of 0..PS_DEVICES_MAX-1; -ENOMEM. */
int ps_inventory_new(ps_gpu_backend backend, const ps_gpu_device *devices, size_t n,
                     ps_inventory **ret, char *err, size_t errlen);
/* From the config's gpu section. auto and cuda run a CUDA probe and wait
 * for it (gpu.probe_timeout_ms at most): call before the loop serves.
 * cuda: PS_E_INVALID with the probe's reason when it finds no device. */
int ps_inventory_from_config(const ps_gpu_config *gpu, ps_inventory **ret,
                             char *err, size_t errlen);
ps_inventory *ps_inventory_free(ps_inventory *inv);
/* A copy (devices, backend, problem). 0, -EINVAL, -ENOMEM. */
int ps_inventory_copy(const ps_inventory *inv, ps_inventory **ret);

/* The backend in effect: fake, none or cuda (auto resolves to one). */
ps_gpu_backend ps_inventory_backend(const ps_inventory *inv);
size_t ps_inventory_count(const ps_inventory *inv);
/* The i-th device (0 <= i < count), in index order; NULL past the end. */
const ps_gpu_device *ps_inventory_device(const ps_inventory *inv, size_t i);
/* By CUDA ordinal; NULL when absent. */
const ps_gpu_device *ps_inventory_find(const ps_inventory *inv, int index);

/*
 * Why there are no devices ("no CUDA: ..."), or why the devices listed
 * cannot be used now ("the CUDA probe failed: ..."); NULL when all is well.
 */
const char *ps_inventory_problem(const ps_inventory *inv);

/* What a probe changed (ps_inventory_apply_probe). */
typedef struct ps_inventory_change {
        bool was_failing;         /* devices were listed and failing before  */
        bool failed;              /* the probe failed after it had worked    */
        bool recovered;           /* it works again                          */
        bool devices_changed;     /* devices appeared, vanished or moved     */
} ps_inventory_change;

/*
 * Folds a later probe into the inventory (the object stays the same, so
 * borrowers keep their pointer): free and total VRAM of the same devices
 * are updated; a different device set replaces the list (backend cuda); a
 * failed probe keeps the devices listed and sets the problem. change may
 * be NULL. 0 or a negative errno.
 */
int ps_inventory_apply_probe(ps_inventory *inv, const ps_cuda_result *res,
                             ps_inventory_change *change);

/* {"backend": "fake", "status": "ok" | "no_devices" | "failing",
 * "reason": null or ps_inventory_problem(),
 * "devices": [{index, uuid, name, pci_bus_id (null
 * when unknown), compute_capability "8.9", vram_total_bytes,
 * vram_free_bytes}]}, for GET /v2/devices. NULL on OOM. */
json_t *ps_inventory_to_json(const ps_inventory *inv);

#define PS_DEVICES_MAX 64

/* A parsed device mask: devices in the order written, or none. */
typedef struct ps_device_mask {
        bool none;
        unsigned count;
        int index[PS_DEVICES_MAX];
} ps_device_mask;

/*
 * Parses "0,1", "GPU0,GPU1", "GPU-<uuid>" (any mix) or "none". Every
 * device must be in the inventory (inv NULL: syntax only, no UUIDs).
 * PS_E_INVALID with a message naming the token ("GPU7 is not a known
 * device"); callers put the field in front.
 */
int ps_inventory_parse_mask(const ps_inventory *inv, const char *text,
                            ps_device_mask *ret, char *err, size_t errlen);
/* Canonical text "0,1" or "none" / CUDA_VISIBLE_DEVICES by index ("" for
 * none). Return the length, or -ENOSPC when buf is too small. */
int ps_device_mask_format(const ps_device_mask *m, char *buf, size_t len);
int ps_device_mask_format_visible(const ps_device_mask *m, char *buf, size_t len);
/* CUDA_VISIBLE_DEVICES for a mask: by UUID ("GPU-...,GPU-...") when by_uuid,
 * the inventory is CUDA's and knows every device of the mask (UUIDs survive
 * renumbering by CUDA_DEVICE_ORDER or an outer CUDA_VISIBLE_DEVICES),
 * otherwise by index. */
int ps_inventory_format_visible(const ps_inventory *inv, const ps_device_mask *m,
                                bool by_uuid, char *buf, size_t len);
/* True when a and b share a device; *shared (may be NULL) gets the first. */
bool ps_device_mask_overlaps(const ps_device_mask *a, const ps_device_mask *b,
                             int *shared);

/*
 * The tensor split of a mask's devices as engine flag text
 * ("0.6667,0.3333", mask order). split "auto": proportional to each
 * device's free VRAM minus headroom_bytes (inv NULL: even), capped so
 * that no device is asked for more than it can hold when required_bytes > 0.
 * Otherwise explicit ratios, one per device, summing to 1, capped the same
 * way. PS_E_INVALID with the reason; -ENOSPC when buf is too small.
 */
int ps_inventory_plan_split(const ps_inventory *inv, const ps_device_mask *mask,
                            const char *split, uint64_t headroom_bytes,
                            uint64_t required_bytes, char *buf, size_t len,
                            char *err, size_t errlen);
