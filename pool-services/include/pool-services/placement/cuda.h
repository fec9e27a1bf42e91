/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "pool-services/placement/gpu.h"

struct event_base;

/*
 * CUDA device discovery through the driver API, loaded with
 * dlopen("libcuda.so.1") -- no link-time dependency, so the same binary
 * runs on a machine without a driver and says so.
 *
 * The driver is never initialised in the daemon: cuInit is not fork-safe
 * and a sick driver can hang it. Every discovery forks a short-lived probe
 * child that loads the library, asks for the devices (index, UUID, name,
 * PCI bus id, compute capability, total VRAM) and their free VRAM (NVML
 * through dlopen("libnvidia-ml.so.1") when present, otherwise a context
 * created and destroyed in the child), writes one JSON document to a pipe
 * and exits. The parent reads it on the event loop; a child that does not
 * answer in time is killed, one that dies is reported with its signal.
 */

/* cuInit on a node with many GPUs and no persistence daemon takes seconds. */
#define PS_CUDA_TIMEOUT_MS_DEFAULT 30000

typedef struct ps_cuda_options {
        const char *library;       /* NULL: "libcuda.so.1"                   */
        const char *nvml_library;  /* NULL: "libnvidia-ml.so.1"; "": no NVML */
        int64_t timeout_ms;        /* <= 0: PS_CUDA_TIMEOUT_MS_DEFAULT       */
} ps_cuda_options;

typedef enum ps_cuda_status {
        PS_CUDA_OK,                /* at least one device                    */
        PS_CUDA_NO_DEVICES,        /* the driver works and sees no device    */
        PS_CUDA_NO_LIBRARY,        /* libcuda.so.1 cannot be loaded          */
        PS_CUDA_MISSING_SYMBOL,    /* it lacks an entry point we use         */
        PS_CUDA_VERSION_MISMATCH,  /* driver and library versions disagree   */
        PS_CUDA_INIT_FAILED,       /* cuInit returned another error          */
        PS_CUDA_CALL_FAILED,       /* a later driver call failed             */
        PS_CUDA_TIMEOUT,           /* the probe did not answer in time       */
        PS_CUDA_CRASHED,           /* the probe died of a signal             */
        PS_CUDA_PROBE_FAILED,      /* fork, pipe, or an unreadable answer    */
        PS_CUDA_STATUS_MAX,
} ps_cuda_status;

/* "ok", "no_devices", "no_library", ...; NULL when out of range. */
const char *ps_cuda_status_to_string(ps_cuda_status s);

typedef struct ps_cuda_result {
        ps_cuda_status status;
        /* Why, when not OK: "cuInit failed: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH
         * (803): ...", "libcuda.so.1 has no symbol cuDeviceTotalMem_v2 ...".
         * "" when OK. */
        char message[512];
        int driver_version;        /* cuDriverGetVersion: 12040; 0 unknown   */
        const char *free_source;   /* "nvml" or "cuda" (static); NULL        */
        ps_gpu_device *devices;    /* owned; index order                     */
        size_t n_devices;
} ps_cuda_result;

/* Frees the devices; the result may be reused. */
void ps_cuda_result_clear(ps_cuda_result *r);

/*
 * Runs one probe and waits for it (on a private event loop): for startup,
 * before the API serves. Returns 0 with *ret filled (ret->status says what
 * was found: every failure of the driver is a status, not an error), or a
 * negative errno when the probe could not even be run (-ENOMEM).
 */
int ps_cuda_discover(const ps_cuda_options *o, ps_cuda_result *ret);

/* One probe on the caller's loop. */
typedef struct ps_cuda_probe ps_cuda_probe;

/* Called once with the result (borrowed for the call). The probe is
 * finished by then: the callback may free it. */
typedef void (*ps_cuda_done_fn)(const ps_cuda_result *result, void *userdata);

/*
 * Forks the probe child and watches it on base (its pipe, its pidfd and a
 * timeout timer): nothing blocks the loop. 0, or a negative errno (the
 * callback is then never called).
 */
int ps_cuda_probe_start(struct event_base *base, const ps_cuda_options *o,
                        ps_cuda_done_fn done, void *userdata, ps_cuda_probe **ret);
/* Kills and reaps a child still running (the callback is not called).
 * Accepts NULL; returns NULL. */
ps_cuda_probe *ps_cuda_probe_free(ps_cuda_probe *p);
