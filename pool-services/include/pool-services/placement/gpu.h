/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The GPU types the placement floor owns: the configured backend, one
 * device, and the config file's "gpu" section (docs/configuration.md).
 * The configuration embeds them; the inventory is built from them.
 */

typedef enum ps_gpu_backend {
        PS_GPU_BACKEND_AUTO,      /* CUDA when found, else no devices      */
        PS_GPU_BACKEND_CUDA,
        PS_GPU_BACKEND_FAKE,      /* devices described in the config       */
        PS_GPU_BACKEND_NONE,
        PS_GPU_BACKEND_MAX,
} ps_gpu_backend;

/* "auto", "cuda", "fake", "none"; NULL when out of range. */
const char *ps_gpu_backend_to_string(ps_gpu_backend b);
/* The same names, indexed by backend (what gpu.backend accepts). */
extern const char *const ps_gpu_backend_names[PS_GPU_BACKEND_MAX];

#define PS_GPU_UUID_MAX 64
#define PS_GPU_NAME_MAX 96
#define PS_GPU_PCI_BUS_ID_MAX 32

/* One GPU: an entry of gpu.devices (fake backend) or a discovered one. */
typedef struct ps_gpu_device {
        int index;                               /* CUDA ordinal            */
        char uuid[PS_GPU_UUID_MAX];              /* "GPU-..."               */
        char name[PS_GPU_NAME_MAX];
        char pci_bus_id[PS_GPU_PCI_BUS_ID_MAX];  /* "" when unknown         */
        int cc_major, cc_minor;                  /* compute capability      */
        uint64_t vram_total_bytes;
        uint64_t vram_free_bytes;
} ps_gpu_device;

typedef struct ps_gpu_config {
        ps_gpu_backend backend;
        bool require;             /* false: pools may use device_mask "none" */
        uint64_t headroom_bytes;  /* kept free on every device              */
        int64_t probe_timeout_ms; /* a CUDA probe that takes longer is killed */
        int64_t sample_interval_ms; /* free VRAM re-sampled (auto, cuda); 0: never */
        bool uuid_visible_devices; /* CUDA_VISIBLE_DEVICES by UUID (needs one per device) */
        ps_gpu_device *devices;   /* fake backend only                      */
        size_t n_devices;
} ps_gpu_config;
