/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "pool-services/placement/cuda.h"

/*
 * The probe child's side, apart from the parent's plumbing in cuda.c.
 *
 * The child answers with one JSON document:
 *
 *   {"status": "ok", "driver_version": 12040, "free_source": "nvml",
 *    "devices": [{"index": 0, "uuid": "GPU-...", "name": "...",
 *                 "pci_bus_id": "0000:01:00.0", "cc_major": 8, "cc_minor": 9,
 *                 "vram_total_bytes": N, "vram_free_bytes": N}]}
 *   {"status": "init_failed", "message": "cuInit failed: ..."}
 *
 * status is one of ps_cuda_status_to_string()'s names.
 */

/* Runs in the forked child: the answer as a new JSON object (NULL on
 * OOM). Loads the libraries named; never returns an error otherwise. */
json_t *ps_cuda_probe_run(const char *library, const char *nvml_library);

/* The parent's reading of an answer. 0, or PS_E_INVALID with the reason in
 * r->message (r->status is then PS_CUDA_PROBE_FAILED), or -ENOMEM. */
int ps_cuda_answer_parse(const char *text, size_t len, ps_cuda_result *r);
