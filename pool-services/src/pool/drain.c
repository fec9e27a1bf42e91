/* SPDX-License-Identifier: MIT */
/*
 * Draining a pool: each replica's machine drains its engine (no new
 * leases; stop once the leases reach zero; stop by force at the deadline),
 * and this file gathers their answers into one outcome for the pool.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "base/errfmt.h"
#include "pool/registry-private.h"
#include "supervise/replica.h"
#include "pool-domain/lease.h"
#include "pool-services/pool/drain.h"
#include "pool-services/pool/store.h"

typedef struct drain_op drain_op;

typedef struct drain_part {
        drain_op *op;
        ps_replica *replica;
        bool waiting;
} drain_part;

struct drain_op {
        ps_registry *reg;
        char *pool_id;
        drain_part *parts;
        size_t n_parts;
        size_t waiting;
        int64_t started_mono, started_wall, deadline_wall;
        bool ok, force_stopped;
        uint32_t leases_left;
        char failure[PD_ACTION_TEXT_MAX];
        struct event *finish;
        ps_drain_done_fn fn;
        void *userdata;
};

static drain_op *drain_op_free(drain_op *op) {
        if (!op)
                return NULL;
        /* Replicas still waiting forget us: their answer goes nowhere. */
        for (size_t i = 0; i < op->n_parts; i++)
                if (op->parts[i].waiting)
                        ps_replica_forget_reply(op->parts[i].replica, PD_REPLY_DRAIN);
        if (op->finish)
                event_free(op->finish);
        free(op->parts);
        free(op->pool_id);
        free(op);
        return NULL;
}

/* The pool goes with the drain running: its callback is not called. */
static void on_pool_removed(void *state) {
        drain_op_free(state);
}

static const ps_pool_op_hooks drain_hooks = {
        .pool_removed = on_pool_removed,
};

/* The pool's drain slot; NULL for an unknown pool. */
static ps_pool_op *slot_of(ps_registry *reg, const char *pool_id) {
        return ps_registry_pool_op(reg, pool_id, PS_POOL_OP_DRAIN);
}

static void emit_done(drain_op *op, const ps_drain_outcome *o) {
        const ps_context *ctx = ps_registry_ctx(op->reg);
        const ps_field fields[] = {
                PS_FIELD_STR("request", "drain"),
                PS_FIELD_BOOL("ok", o->ok),
                PS_FIELD_BOOL("force_stopped", o->force_stopped),
                PS_FIELD_INT("leases_left", o->leases_left),
                PS_FIELD_INT("duration_ms", o->duration_ms),
                PS_FIELD_STR("outcome", o->message),
        };
        ps_event ev = {
                .type = PS_EVENT_REQUEST_DONE,
                .level = o->force_stopped || !o->ok ? PS_LOG_WARN : PS_LOG_INFO,
                .pool_id = op->pool_id,
                .message = "drain finished",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        ps_event_emit(&ctx->sink, &ev);
}

static void on_finish(evutil_socket_t fd, short what, void *userdata) {
        drain_op *op = userdata;
        ps_pool_op *slot = slot_of(op->reg, op->pool_id);
        char message[PD_ACTION_TEXT_MAX + 64];
        ps_drain_outcome o = {
                .ok = op->ok,
                .force_stopped = op->force_stopped,
                .leases_left = op->leases_left,
                .duration_ms = ps_clock_mono_ms(ps_registry_ctx(op->reg)->clock) - op->started_mono,
                .message = message,
        };

        (void) fd;
        (void) what;
        if (!op->ok)
                snprintf(message, sizeof(message), "%s", op->failure);
        else if (op->force_stopped)
                snprintf(message, sizeof(message),
                         "drain deadline reached: engine force-stopped with %u leases left",
                         op->leases_left);
        else
                snprintf(message, sizeof(message), "drained: engine stopped");
        /* Detached first: the callback may remove the pool. */
        if (slot && slot->state == op)
                *slot = (ps_pool_op) { 0 };
        (void) ps_store_del_drain(ps_store_of(op->reg), op->pool_id);
        emit_done(op, &o);
        if (op->fn)
                op->fn(op->pool_id, &o, op->userdata);
        drain_op_free(op);
}

static void arm_finish(drain_op *op) {
        struct timeval now = { 0, 0 };

        evtimer_add(op->finish, &now);
}

static void on_part_done(int rc, const char *message, void *userdata) {
        drain_part *part = userdata;
        drain_op *op = part->op;
        ps_replica *r = part->replica;

        if (!part->waiting)
                return;
        part->waiting = false;
        op->waiting--;
        if (rc != 0 && op->ok) {
                op->ok = false;
                snprintf(op->failure, sizeof(op->failure), "drain ended: %s",
                         message ? message : "failed");
        }
        if (ps_replica_lifecycle(r)->force_stopped)
                op->force_stopped = true;
        op->leases_left = pd_sat_add_u32(op->leases_left, ps_replica_take_leases_dropped(r));
        if (op->waiting == 0)
                arm_finish(op);
}

static bool drainable(const ps_replica *r, int64_t deadline_ms) {
        pd_event ev = { .type = PD_EV_DRAIN, .deadline_ms = deadline_ms };

        return ps_replica_accepts(r, &ev);
}

static void fill_info(drain_op *op, bool already, ps_drain_info *info) {
        if (!info)
                return;
        *info = (ps_drain_info) {
                .already_running = already,
                .started_at = op->started_wall,
                .deadline_at = op->deadline_wall,
                .active_leases = ps_registry_active_leases(op->reg, op->pool_id),
        };
}

static void emit_started(drain_op *op, int64_t deadline_ms) {
        const ps_field fields[] = {
                PS_FIELD_INT("active_leases", ps_registry_active_leases(op->reg, op->pool_id)),
                PS_FIELD_INT("deadline_ms", deadline_ms),
                PS_FIELD_INT("replicas", (int64_t) op->n_parts),
        };
        ps_event ev = {
                .type = PS_EVENT_DRAIN_STARTED,
                .level = PS_LOG_WARN,
                .pool_id = op->pool_id,
                .message = "draining: no new leases",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        ps_event_emit(&ps_registry_ctx(op->reg)->sink, &ev);
}

int ps_pool_drain(ps_registry *reg, const char *pool_id, int64_t deadline_ms,
                  ps_drain_done_fn done, void *userdata, ps_drain_info *info,
                  char *err, size_t errlen) {
        const ps_context *ctx;
        ps_pool_op *slot;
        drain_op *op;
        ps_replica *r;
        size_t n, accepted = 0;

        if (!reg || !pool_id)
                return -EINVAL;
        slot = slot_of(reg, pool_id);
        if (!slot)
                return ps_errf(err, errlen, PS_E_NOT_FOUND, "pool %s not found", pool_id);
        if (slot->state) {
                fill_info(slot->state, true, info);
                return 0;
        }
        if (deadline_ms < 0)
                return ps_errf(err, errlen, PS_E_INVALID, "deadline_ms: must be >= 0");
        if (ps_registry_pool_op(reg, pool_id, PS_POOL_OP_RELOAD)->state)
                return ps_errf(err, errlen, PS_E_CONFLICT, "pool %s is reloading", pool_id);
        n = ps_registry_pool_size(reg, pool_id);
        for (size_t i = 0; i < n; i++) {
                r = ps_registry_replica_at(reg, pool_id, i);
                if (pd_lifecycle_retiring(ps_replica_lifecycle(r)))
                        return ps_errf(err, errlen, PS_E_CONFLICT,
                                       "pool %s replica %s is still retiring its previous engine "
                                       "(surge reload): drain again once it has stopped",
                                       pool_id, ps_replica_id(r));
        }
        for (size_t i = 0; i < n; i++)
                if (drainable(ps_registry_replica_at(reg, pool_id, i), deadline_ms))
                        accepted++;
        if (accepted == 0)
                return ps_errf(err, errlen, PS_E_CONFLICT, "pool %s is not running", pool_id);

        ctx = ps_registry_ctx(reg);
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->reg = reg;
        op->ok = true;
        op->fn = done;
        op->userdata = userdata;
        op->pool_id = strdup(pool_id);
        op->parts = calloc(n, sizeof(*op->parts));
        op->finish = evtimer_new(ctx->base, on_finish, op);
        if (!op->pool_id || !op->parts || !op->finish) {
                drain_op_free(op);
                return -ENOMEM;
        }
        op->n_parts = n;
        op->started_mono = ps_clock_mono_ms(ctx->clock);
        op->started_wall = ps_clock_wall_ms(ctx->clock);
        op->deadline_wall = pd_sat_add_i64(op->started_wall, deadline_ms);
        *slot = (ps_pool_op) { .hooks = &drain_hooks, .state = op };
        (void) ps_store_put_drain(ps_store_of(reg), pool_id, op->deadline_wall);
        emit_started(op, deadline_ms);

        for (size_t i = 0; i < n; i++) {
                pd_event ev = { .type = PD_EV_DRAIN, .deadline_ms = deadline_ms };
                drain_part *part = &op->parts[i];

                r = ps_registry_replica_at(reg, pool_id, i);
                *part = (drain_part) { .op = op, .replica = r, .waiting = true };
                (void) ps_replica_take_leases_dropped(r);
                op->waiting++;
                if (ps_replica_request(r, &ev, PD_REPLY_DRAIN, on_part_done, part) != 0 &&
                    part->waiting) {
                        part->waiting = false;   /* stopped already: nothing to wait for */
                        op->waiting--;
                }
        }
        fill_info(op, false, info);
        if (op->waiting == 0)
                arm_finish(op);
        return 0;
}

bool ps_pool_draining(ps_registry *reg, const char *pool_id) {
        const ps_pool_op *slot = reg ? slot_of(reg, pool_id) : NULL;

        return slot && slot->state;
}

json_t *ps_drain_info_to_json(const char *pool_id, const ps_drain_info *info) {
        return json_pack("{s:s, s:b, s:b, s:I, s:I, s:I}",
                         "pool_id", pool_id,
                         "draining", true,
                         "already_running", info->already_running,
                         "started_at", (json_int_t) info->started_at,
                         "deadline_at", (json_int_t) info->deadline_at,
                         "active_leases", (json_int_t) info->active_leases);
}

int ps_pool_drain_resume(ps_registry *reg, const char *pool_id, int64_t deadline_at,
                         char *err, size_t errlen) {
        int64_t now = reg ? ps_clock_wall_ms(ps_registry_ctx(reg)->clock) : 0;
        ps_pool_op *slot;
        int rc;

        if (!reg || !pool_id)
                return -EINVAL;
        rc = ps_pool_drain(reg, pool_id, deadline_at > now ? deadline_at - now : 0, NULL, NULL,
                           NULL, err, errlen);
        slot = rc == 0 ? slot_of(reg, pool_id) : NULL;
        if (slot && slot->state) {
                ((drain_op *) slot->state)->deadline_wall = deadline_at;
                (void) ps_store_put_drain(ps_store_of(reg), pool_id, deadline_at);
        }
        return rc;
}
