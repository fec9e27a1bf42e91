/* SPDX-License-Identifier: MIT */
#pragma once

#include "pool-services/conf/config.h"
#include "pool-services/placement/cuda.h"
#include "pool-services/base/event.h"
#include "pool-services/placement/inventory.h"
#include "pool-services/pool/registry.h"

struct event_base;

/*
 * Re-samples the CUDA devices every gpu.sample_interval_ms, on the event
 * loop: a timer starts a probe child (pool-services/placement/cuda.h), its answer is
 * read when it comes, and only then is the next sample scheduled, so
 * probes never overlap and the loop never waits.
 *
 * Each answer is folded into the inventory (free VRAM for /v2/devices,
 * the metrics and preflight). When the probe fails after it had worked,
 * every replica whose mask uses a listed device gets a driver reset
 * (unready, stopped, restarted with backoff; preflight refuses its starts
 * until a probe works again). Reports go to the sink as events.
 */
typedef struct ps_gpu_monitor ps_gpu_monitor;

/* Borrowed: base, inventory and registry (may be NULL: no resets) must
 * outlive the monitor. options NULL: the defaults. NULL on OOM. */
ps_gpu_monitor *ps_gpu_monitor_new(struct event_base *base, ps_inventory *inventory,
                                   ps_registry *registry, const ps_cuda_options *options,
                                   int64_t interval_ms, ps_event_sink sink);
/* Arms the first sample interval_ms from now; 0 when interval_ms is 0
 * (nothing to do), a negative errno otherwise. */
int ps_gpu_monitor_start(ps_gpu_monitor *m);
/* Samples now (a probe already running is left to finish). */
int ps_gpu_monitor_sample_now(ps_gpu_monitor *m);
/* Kills a probe in flight. Accepts NULL; returns NULL. */
ps_gpu_monitor *ps_gpu_monitor_free(ps_gpu_monitor *m);
