/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>

#include "pool-services/conf/config.h"
#include "pool-services/base/event.h"
#include "pool-services/observe/metrics.h"
#include "pool-services/pool/registry.h"

/*
 * The cloud side of the daemon, wired in one place: the handoff watcher
 * (cloud profile, or at home when POOL_MANAGERD_WATCH_INTERVAL_MS is set),
 * registration and heartbeats with the control plane (cloud profile), and
 * the etcd publisher (cloud profile with etcd endpoints).
 */
typedef struct pm_cloud pm_cloud;

/* Starts what the configuration asks for (ps_config_resolve_cloud() has
 * run). Everything passed is borrowed and must outlive the object. 0, or
 * an error already logged. */
int pm_cloud_start(const ps_context *ctx, ps_registry *reg, const ps_config *config,
                   ps_metrics *metrics, ps_logger *log, const char *version, pm_cloud **ret);
/* Every event of the sink: pool changes are published to etcd soon. */
void pm_cloud_on_event(pm_cloud *cloud, const ps_event *event);
/* Deregisters from the control plane and revokes the etcd lease, both at
 * once and each bounded; done runs once when both are over (at once when
 * there is nothing to do). */
void pm_cloud_stop(pm_cloud *cloud, ps_done_fn done, void *userdata);
pm_cloud *pm_cloud_free(pm_cloud *cloud);

/* {"profile", "control_plane": status|null, "etcd": status|null,
 * "handoff_watch": {"tracked": n}|null}, for a status route. */
json_t *pm_cloud_status(const pm_cloud *cloud);
