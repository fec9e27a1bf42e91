/* SPDX-License-Identifier: MIT */
/*
 * Periodic CUDA re-sampling on the loop, and what a broken driver does to
 * the replicas on it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pool-services/observe/gpu-monitor.h"

struct ps_gpu_monitor {
        struct event_base *base;
        ps_inventory *inventory;
        ps_registry *registry;
        ps_cuda_options options;
        int64_t interval_ms;
        ps_event_sink sink;
        struct event *timer;
        ps_cuda_probe *probe;       /* in flight, or NULL */
};

static void emit(ps_gpu_monitor *m, ps_log_level level, const char *message,
                 const ps_field *fields, size_t n) {
        ps_event ev = {
                .type = PS_EVENT_GENERIC,
                .level = level,
                .message = message,
                .fields = fields,
                .n_fields = n,
        };

        ps_event_emit(&m->sink, &ev);
}

static int arm(ps_gpu_monitor *m) {
        struct timeval tv = { .tv_sec = m->interval_ms / 1000,
                              .tv_usec = (suseconds_t) (m->interval_ms % 1000) * 1000 };

        if (m->interval_ms <= 0)
                return 0;
        return evtimer_add(m->timer, &tv) < 0 ? -ENOMEM : 0;
}

typedef struct reset_ctx {
        const ps_inventory *inventory;
        const char *why;
        unsigned count;
} reset_ctx;

static void reset_one(ps_replica *r, void *userdata) {
        reset_ctx *c = userdata;
        const char *mask = ps_replica_device_mask(r);
        ps_device_mask m;

        if (ps_replica_external(r) || !mask ||
            ps_inventory_parse_mask(NULL, mask, &m, NULL, 0) != 0 || m.none)
                return;
        /* the whole driver failed: every listed device is affected */
        for (unsigned i = 0; i < m.count; i++)
                if (ps_inventory_find(c->inventory, m.index[i])) {
                        if (ps_replica_driver_reset(r, c->why) == 0)
                                c->count++;
                        return;
                }
}

static void on_probe(const ps_cuda_result *res, void *userdata) {
        ps_gpu_monitor *m = userdata;
        ps_inventory_change change = { .failed = false };
        int r;

        m->probe = ps_cuda_probe_free(m->probe);
        r = ps_inventory_apply_probe(m->inventory, res, &change);
        if (r < 0) {
                ps_field f[] = { PS_FIELD_STR("error", strerror(-r)) };

                emit(m, PS_LOG_ERROR, "cannot record a GPU sample", f, 1);
        } else if (change.failed) {
                reset_ctx c = { .inventory = m->inventory, .why = ps_inventory_problem(m->inventory) };

                ps_registry_foreach(m->registry, reset_one, &c);
                ps_field f[] = {
                        PS_FIELD_STR("status", ps_cuda_status_to_string(res->status)),
                        PS_FIELD_STR("error", res->message),
                        PS_FIELD_INT("replicas_reset", c.count),
                };

                emit(m, PS_LOG_ERROR, "the CUDA probe failed after it had worked: "
                     "replicas on the GPUs restart once it works again", f, 3);
        } else if (change.recovered) {
                ps_field f[] = { PS_FIELD_INT("gpus", ps_inventory_count(m->inventory)) };

                emit(m, PS_LOG_INFO, "the CUDA probe works again", f, 1);
        } else if (change.devices_changed) {
                ps_field f[] = { PS_FIELD_INT("gpus", ps_inventory_count(m->inventory)) };

                emit(m, PS_LOG_WARN, "the set of CUDA devices changed", f, 1);
        }
        if (arm(m) < 0)
                emit(m, PS_LOG_ERROR, "cannot schedule the next GPU sample", NULL, 0);
}

int ps_gpu_monitor_sample_now(ps_gpu_monitor *m) {
        int r;

        if (!m)
                return -EINVAL;
        if (m->probe)
                return 0;
        evtimer_del(m->timer);
        r = ps_cuda_probe_start(m->base, &m->options, on_probe, m, &m->probe);
        if (r < 0) {
                ps_field f[] = { PS_FIELD_STR("error", strerror(-r)) };

                emit(m, PS_LOG_ERROR, "cannot start the CUDA probe", f, 1);
                m->probe = NULL;
                return arm(m) < 0 ? -ENOMEM : r;
        }
        return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        ps_gpu_monitor_sample_now(userdata);
}

ps_gpu_monitor *ps_gpu_monitor_new(struct event_base *base, ps_inventory *inventory,
                                   ps_registry *registry, const ps_cuda_options *options,
                                   int64_t interval_ms, ps_event_sink sink) {
        ps_gpu_monitor *m;

        if (!base || !inventory)
                return NULL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->base = base;
        m->inventory = inventory;
        m->registry = registry;
        if (options)
                m->options = *options;
        m->interval_ms = interval_ms;
        m->sink = sink;
        m->timer = evtimer_new(base, on_timer, m);
        if (!m->timer) {
                free(m);
                return NULL;
        }
        return m;
}

int ps_gpu_monitor_start(ps_gpu_monitor *m) {
        if (!m)
                return -EINVAL;
        return arm(m);
}

ps_gpu_monitor *ps_gpu_monitor_free(ps_gpu_monitor *m) {
        if (!m)
                return NULL;
        ps_cuda_probe_free(m->probe);
        event_free(m->timer);
        free(m);
        return NULL;
}
