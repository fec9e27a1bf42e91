/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-services/base/errors.h"
#include "pool-services/placement/inventory.h"

/*
 * The checks before an engine is spawned: does the node have the GPUs the
 * pool names, is there VRAM and host RAM for it. A refusal fails the
 * start fast, before anything runs, with numbers in the message:
 *
 *   insufficient VRAM: need 9.1 GiB, free 7.8 GiB on GPU0
 *   insufficient host RAM: need 64.0 GiB, MemAvailable 31.2 GiB
 *   GPU-only enforcement: pool llama-7b needs GPU0, and this node has no
 *   GPU (no CUDA: libcuda.so.1 not found ...); no CPU fallback is attempted
 */

/*
 * Without a declared vram_required_bytes, the VRAM a model needs is
 * estimated as its file size (a directory: the files in it) times this
 * factor in percent: the weights plus room for the KV cache of a default
 * context, the CUDA context and activations. Declare vram_required_bytes
 * for long contexts or many slots.
 */
#define PS_VRAM_OVERHEAD_PERCENT 120

/* What is started. */
typedef struct ps_preflight_request {
        const char *pool_id;
        const char *device_mask;      /* "0,1", "GPU-...", "none"; NULL: none */
        const char *tensor_split;     /* "0.6,0.4" (mask order) or NULL       */
        const char *model_path;       /* for the estimate; may be NULL        */
        uint64_t vram_required_bytes; /* 0: estimated from model_path         */
        uint64_t ram_required_bytes;  /* host RAM; 0: not checked             */
} ps_preflight_request;

/* The node as it is now. */
typedef struct ps_preflight_node {
        const ps_inventory *inventory;
        bool require_gpu;             /* gpu.require                          */
        uint64_t headroom_bytes;      /* kept free on every device            */
        bool mem_known;               /* mem_available_bytes was read         */
        uint64_t mem_available_bytes; /* MemAvailable of /proc/meminfo        */
} ps_preflight_node;

/*
 * 0 when the start may go ahead; PS_E_GPU_ONLY (the message starts with
 * "GPU-only enforcement:") when gpu.require is on and a device the pool
 * needs is missing or failing; PS_E_PREFLIGHT for too little VRAM or host
 * RAM, a mask that does not parse, or (gpu.require off) a missing device.
 * The need is the required VRAM plus headroom_bytes on each device; with
 * a tensor split each device must hold its share, otherwise the mask's
 * devices together.
 */
int ps_preflight_check(const ps_preflight_node *node, const ps_preflight_request *req,
                       char *err, size_t errlen);

/* The VRAM estimate for a model file or directory: 0 with *ret, or a
 * negative errno (no such file). */
int ps_preflight_estimate_vram(const char *model_path, uint64_t *ret);

/* MemAvailable from a meminfo file (NULL: /proc/meminfo), in bytes. 0 or a
 * negative errno (-ENOENT, -EINVAL when the line is missing). */
int ps_preflight_mem_available(const char *meminfo_path, uint64_t *ret);
