/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "cloud.h"
#include "pool-services/cloud/control-plane.h"
#include "pool-services/cloud/etcd.h"
#include "pool-services/cloud/handoff-watch.h"

/* How long a clean shutdown waits for the control plane and etcd. */
#define STOP_TIMEOUT_MS 3000

struct pm_cloud {
        const ps_config *config;
        ps_metrics *metrics;
        ps_handoff_watch *watch;
        ps_control_plane *cp;
        ps_etcd *etcd;
        unsigned stops_pending;
        ps_done_fn done;
        void *done_userdata;
};

static char *collect_control_plane(void *userdata) {
        return ps_control_plane_render_metrics(userdata);
}

static char *collect_etcd(void *userdata) {
        return ps_etcd_render_metrics(userdata);
}

int pm_cloud_start(const ps_context *ctx, ps_registry *reg, const ps_config *config,
                   ps_metrics *metrics, ps_logger *log, const char *version, pm_cloud **ret) {
        const ps_cloud_config *cl = &config->cloud;
        pm_cloud *c = calloc(1, sizeof(*c));
        char err[512];
        int r = 0;

        if (!c) {
                ps_log(log, PS_LOG_ERROR, "out of memory");
                return -ENOMEM;
        }
        c->config = config;
        c->metrics = metrics;
        *ret = c;
        if (config->profile == PS_PROFILE_CLOUD || config->watch_interval_set) {
                r = ps_handoff_watch_new_config(ctx, reg, config, &c->watch, err, sizeof(err));
                if (r != 0) {
                        ps_log(log, PS_LOG_ERROR, err);
                        return r;
                }
                ps_log(log, PS_LOG_INFO, "watching handoff files",
                       PS_FIELD_INT("rescan_ms", config->watch_interval_ms),
                       PS_FIELD_INT("external_replicas", ps_handoff_watch_tracked(c->watch)));
        }
        if (config->profile != PS_PROFILE_CLOUD)
                return 0;

        r = ps_control_plane_new(ctx, reg, &(ps_control_plane_config) {
                        .url = cl->orchestrator_url,
                        .node_id = cl->node_id,
                        .machine_id = cl->machine_id,
                        .address = cl->address,
                        .token = cl->api_token,
                        .version = version,
                        .pools = (const char *const *) config->advertise_pools,
                        .n_pools = config->n_advertise_pools,
                        .pools_set = config->advertise_pools_set,
                        .heartbeat_interval_ms = cl->heartbeat_interval_ms,
                        .register_on_startup = cl->register_on_startup,
                        .inventory = config->inventory,
                }, &c->cp, err, sizeof(err));
        if (r == 0)
                r = ps_metrics_add_collector(metrics, collect_control_plane, c->cp);
        if (r == 0)
                r = ps_control_plane_start(c->cp);
        if (r != 0) {
                ps_log(log, PS_LOG_ERROR, r > 0 ? err : "cannot set up the control plane client");
                return r;
        }
        ps_log(log, PS_LOG_INFO, "cloud profile", PS_FIELD_STR("node_id", cl->node_id),
               PS_FIELD_STR("machine_id", cl->machine_id), PS_FIELD_STR("address", cl->address),
               PS_FIELD_STR("control_plane", cl->orchestrator_url),
               PS_FIELD_INT("heartbeat_interval_ms", cl->heartbeat_interval_ms),
               PS_FIELD_STR("auth", cl->api_token ? "bearer" : "none"));

        if (cl->n_etcd_endpoints == 0)
                return 0;
        r = ps_etcd_new(ctx, reg, &(ps_etcd_config) {
                        .endpoints = (const char *const *) cl->etcd_endpoints,
                        .n_endpoints = cl->n_etcd_endpoints,
                        .prefix = cl->etcd_prefix,
                        .ttl_ms = cl->etcd_ttl_ms,
                        .node_id = cl->node_id,
                        .machine_id = cl->machine_id,
                        .address = cl->address,
                        .version = version,
                        .pools = (const char *const *) config->advertise_pools,
                        .n_pools = config->n_advertise_pools,
                        .pools_set = config->advertise_pools_set,
                        .inventory = config->inventory,
                }, &c->etcd, err, sizeof(err));
        if (r == 0)
                r = ps_metrics_add_collector(metrics, collect_etcd, c->etcd);
        if (r == 0)
                r = ps_etcd_start(c->etcd);
        if (r != 0) {
                ps_log(log, PS_LOG_ERROR, r > 0 ? err : "cannot set up the etcd publisher");
                return r;
        }
        ps_log(log, PS_LOG_INFO, "publishing to etcd", PS_FIELD_STR("endpoint", cl->etcd_endpoints[0]),
               PS_FIELD_STR("prefix", cl->etcd_prefix), PS_FIELD_INT("ttl_ms", cl->etcd_ttl_ms));
        return 0;
}

void pm_cloud_on_event(pm_cloud *c, const ps_event *event) {
        if (c && c->etcd && event->pool_id)
                ps_etcd_poke(c->etcd);
}

static void on_one_stopped(int rc, const char *message, void *userdata) {
        pm_cloud *c = userdata;
        ps_done_fn done;

        (void) rc;
        (void) message;
        if (--c->stops_pending > 0)
                return;
        done = c->done;
        c->done = NULL;
        if (done)
                done(0, "cloud services stopped", c->done_userdata);
}

void pm_cloud_stop(pm_cloud *c, ps_done_fn done, void *userdata) {
        if (!c) {
                done(0, "no cloud services", userdata);
                return;
        }
        c->watch = ps_handoff_watch_free(c->watch);
        c->done = done;
        c->done_userdata = userdata;
        /* One extra count so that a part finishing at once cannot end the
         * whole before the other has started. */
        c->stops_pending = 1;
        if (c->cp) {
                c->stops_pending++;
                ps_control_plane_stop(c->cp, STOP_TIMEOUT_MS, on_one_stopped, c);
        }
        if (c->etcd) {
                c->stops_pending++;
                ps_etcd_stop(c->etcd, STOP_TIMEOUT_MS, on_one_stopped, c);
        }
        on_one_stopped(true, NULL, c);
}

pm_cloud *pm_cloud_free(pm_cloud *c) {
        if (!c)
                return NULL;
        if (c->cp)
                ps_metrics_remove_collector(c->metrics, collect_control_plane, c->cp);
        if (c->etcd)
                ps_metrics_remove_collector(c->metrics, collect_etcd, c->etcd);
        ps_handoff_watch_free(c->watch);
        ps_control_plane_free(c->cp);
        ps_etcd_free(c->etcd);
        free(c);
        return NULL;
}

json_t *pm_cloud_status(const pm_cloud *c) {
        return json_pack("{s:s, s:o, s:o, s:o}",
                         "profile", ps_profile_to_string(c->config->profile),
                         "control_plane", c->cp ? ps_control_plane_status(c->cp) : json_null(),
                         "etcd", c->etcd ? ps_etcd_status(c->etcd) : json_null(),
                         "handoff_watch", c->watch ?
                                json_pack("{s:I}", "tracked",
                                          (json_int_t) ps_handoff_watch_tracked(c->watch)) :
                                json_null());
}
