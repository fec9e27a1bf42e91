/* SPDX-License-Identifier: MIT */
/*
 * The registry: pools in the order they were added, each with its
 * replicas. It owns the replica records and fills the pool statuses the
 * API, metrics and control plane show; supervision itself lives in
 * supervise/replica.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/errfmt.h"
#include "base/strmap.h"
#include "pool/registry-private.h"
#include "supervise/replica.h"
#include "pool-domain/ids.h"
#include "pool-domain/lease.h"

typedef struct pool {
        char *id;
        ps_replica **replicas;
        size_t n_replicas;
        bool removing;             /* stopped, forgotten once at rest    */
        ps_pool_op ops[PS_POOL_OP_KIND_MAX];
} pool;

/* State a feature keeps for the whole registry (see registry-private.h). */
typedef struct feature {
        const ps_registry_hooks *hooks;
        void *state;
} feature;

struct ps_registry {
        const ps_context *ctx;
        feature *features;         /* in the order attached             */
        size_t n_features;
        pool *pools;
        size_t n_pools, cap_pools;
        ps_strmap index;           /* pool id -> position in pools       */
        bool index_ok;             /* false: a rebuild ran out of memory */
        ps_done_fn stop_done;
        void *stop_userdata;
        bool stopping_all;
        struct event *sweep;       /* forgets removed pools, off-stack   */
};

static void on_sweep(evutil_socket_t fd, short what, void *userdata);
/* What the registry does for its replicas (at the end of this file). */
static const ps_replica_owner replica_owner;

/* Reports something about the registry itself, not about one replica. */
static void say(const ps_registry *reg, ps_log_level level, const char *message,
                const ps_field *fields, size_t n_fields) {
        const ps_event ev = {
                .type = PS_EVENT_GENERIC,
                .level = level,
                .message = message,
                .fields = fields,
                .n_fields = n_fields,
        };

        ps_event_emit(&reg->ctx->sink, &ev);
}

ps_registry *ps_registry_new(const ps_context *ctx) {
        ps_registry *reg;

        if (!ctx || !ctx->base || !ctx->runtime_dir)
                return NULL;
        reg = calloc(1, sizeof(*reg));
        if (!reg)
                return NULL;
        reg->ctx = ctx;
        reg->index_ok = true;
        reg->sweep = evtimer_new(ctx->base, on_sweep, reg);
        if (!reg->sweep) {
                free(reg);
                return NULL;
        }
        if (geteuid() == 0 && !(ctx->engine_user && ctx->engine_user[0]))
                say(reg, PS_LOG_WARN, "running as root with no engines.user: engines will run as root too",
                    NULL, 0);
        return reg;
}

static void pool_clear(ps_registry *reg, pool *p) {
        for (size_t k = 0; k < PS_POOL_OP_KIND_MAX; k++) {
                ps_pool_op op = p->ops[k];

                p->ops[k] = (ps_pool_op) { 0 };
                if (op.state && op.hooks && op.hooks->pool_removed)
                        op.hooks->pool_removed(op.state);
        }
        for (size_t i = 0; i < p->n_replicas; i++) {
                for (size_t f = 0; f < reg->n_features; f++)
                        if (reg->features[f].hooks->replica_removed)
                                reg->features[f].hooks->replica_removed(reg->features[f].state,
                                                                        p->replicas[i]);
                ps_replica_free(p->replicas[i]);
        }
        free(p->replicas);
        free(p->id);
}

ps_registry *ps_registry_free(ps_registry *reg) {
        if (!reg)
                return NULL;
        for (size_t i = 0; i < reg->n_pools; i++)
                pool_clear(reg, &reg->pools[i]);
        for (size_t f = 0; f < reg->n_features; f++)
                if (reg->features[f].hooks->free)
                        reg->features[f].hooks->free(reg->features[f].state);
        free(reg->features);
        free(reg->pools);
        ps_strmap_clear(&reg->index);
        if (reg->sweep)
                event_free(reg->sweep);
        free(reg);
        return NULL;
}

/* A thousand pools are looked up by id on every request and at start
 * once each: through the index, not a walk. */
static pool *pool_find(const ps_registry *reg, const char *id) {
        size_t at;

        if (!id)
                return NULL;
        if (reg->index_ok)
                return ps_strmap_get(&reg->index, id, strlen(id), &at) && at < reg->n_pools &&
                       strcmp(reg->pools[at].id, id) == 0 ? &reg->pools[at] : NULL;
        for (size_t i = 0; i < reg->n_pools; i++)
                if (strcmp(reg->pools[i].id, id) == 0)
                        return &reg->pools[i];
        return NULL;
}

/* After a pool left the middle of the array. */
static void index_rebuild(ps_registry *reg) {
        ps_strmap_clear(&reg->index);
        reg->index_ok = true;
        for (size_t i = 0; i < reg->n_pools && reg->index_ok; i++)
                reg->index_ok = ps_strmap_put(&reg->index, reg->pools[i].id,
                                              strlen(reg->pools[i].id), i) >= 0;
}

static pool *pool_get(ps_registry *reg, const char *id) {
        pool *p = pool_find(reg, id), *grown;

        if (p)
                return p;
        if (reg->n_pools == reg->cap_pools) {
                /* doubling: a thousand pools added one by one copy the
                 * array a few times, not a thousand */
                size_t cap = reg->cap_pools ? reg->cap_pools * 2 : 16;

                grown = realloc(reg->pools, cap * sizeof(*grown));
                if (!grown)
                        return NULL;
                reg->pools = grown;
                reg->cap_pools = cap;
        }
        p = &reg->pools[reg->n_pools];
        *p = (pool) { .id = strdup(id) };
        if (!p->id)
                return NULL;
        if (reg->index_ok && ps_strmap_put(&reg->index, id, strlen(id), reg->n_pools) < 0) {
                free(p->id);
                return NULL;
        }
        reg->n_pools++;
        return p;
}

static int pool_append(pool *p, ps_replica *r) {
        ps_replica **grown = realloc(p->replicas, (p->n_replicas + 1) * sizeof(*grown));

        if (!grown)
                return -ENOMEM;
        p->replicas = grown;
        p->replicas[p->n_replicas++] = r;
        return 0;
}

ps_replica *ps_registry_find(ps_registry *reg, const char *pool_id, const char *replica_id) {
        pool *p = pool_find(reg, pool_id);

        for (size_t i = 0; p && replica_id && i < p->n_replicas; i++)
                if (strcmp(ps_replica_id(p->replicas[i]), replica_id) == 0)
                        return p->replicas[i];
        return NULL;
}

ps_replica *ps_registry_replica_at(ps_registry *reg, const char *pool_id, size_t i) {
        pool *p = pool_find(reg, pool_id);

        return p && i < p->n_replicas ? p->replicas[i] : NULL;
}

const char *ps_registry_pool_id_at(const ps_registry *reg, size_t i) {
        return i < reg->n_pools ? reg->pools[i].id : NULL;
}

bool ps_registry_has_pool(const ps_registry *reg, const char *pool_id) {
        return pool_find(reg, pool_id) != NULL;
}

size_t ps_registry_pool_count(const ps_registry *reg) {
        return reg->n_pools;
}

uint32_t ps_registry_active_leases(const ps_registry *reg, const char *pool_id) {
        const pool *p = pool_find(reg, pool_id);
        uint32_t n = 0;

        for (size_t i = 0; p && i < p->n_replicas; i++)
                n = pd_sat_add_u32(n, ps_replica_leases(p->replicas[i]));
        return n;
}

const ps_context *ps_registry_ctx(const ps_registry *reg) {
        return reg->ctx;
}

int ps_registry_attach(ps_registry *reg, const ps_registry_hooks *hooks, void *state) {
        feature *grown = realloc(reg->features, (reg->n_features + 1) * sizeof(*grown));

        if (!grown)
                return -ENOMEM;
        reg->features = grown;
        reg->features[reg->n_features++] = (feature) { .hooks = hooks, .state = state };
        return 0;
}

void *ps_registry_attached(const ps_registry *reg, const ps_registry_hooks *hooks) {
        for (size_t f = 0; f < reg->n_features; f++)
                if (reg->features[f].hooks == hooks)
                        return reg->features[f].state;
        return NULL;
}

ps_pool_op *ps_registry_pool_op(ps_registry *reg, const char *pool_id, ps_pool_op_kind kind) {
        pool *p = pool_find(reg, pool_id);

        return p && (unsigned) kind < PS_POOL_OP_KIND_MAX ? &p->ops[kind] : NULL;
}

size_t ps_registry_pool_size(ps_registry *reg, const char *pool_id) {
        pool *p = pool_find(reg, pool_id);

        return p ? p->n_replicas : 0;
}

static int validate_spec(const ps_engine_spec *spec, char *err, size_t errlen) {
        pd_error perr;

        if (!spec)
                return -EINVAL;
        if (pd_id_validate(spec->pool_id, "pool id", &perr) != 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s", perr.msg);
        if (pd_id_validate(spec->replica_id, "replica id", &perr) != 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s", perr.msg);
        if (!spec->binary_path || spec->binary_path[0] != '/')
                return ps_errf(err, errlen, PS_E_INVALID,
                            "binary_path: must be an absolute path");
        if (spec->port == 0)
                return ps_errf(err, errlen, PS_E_INVALID, "port: must be 1..65535");
        if (spec->slots == 0)
                return ps_errf(err, errlen, PS_E_INVALID, "slots: must be at least 1");
        return 0;
}

int ps_registry_add(ps_registry *reg, const ps_engine_spec *spec, const ps_policy *policy,
                    ps_replica **ret, char *err, size_t errlen) {
        ps_replica_owner owner;
        ps_replica *r;
        pool *p;
        int rc;

        rc = validate_spec(spec, err, errlen);
        if (rc != 0)
                return rc;
        if (ps_registry_find(reg, spec->pool_id, spec->replica_id))
                return ps_errf(err, errlen, PS_E_EXISTS, "pool %s replica %s already exists",
                            spec->pool_id, spec->replica_id);
        owner = replica_owner;
        owner.userdata = reg;
        r = ps_replica_new(reg->ctx, spec, policy, &owner);
        if (!r)
                return -ENOMEM;
        p = pool_get(reg, spec->pool_id);
        if (!p || pool_append(p, r) < 0) {
                ps_replica_free(r);
                return -ENOMEM;
        }
        if (ret)
                *ret = r;
        return 0;
}

static bool replica_at_rest(const ps_replica *r) {
        return !ps_replica_engine_running(r) && !ps_replica_live(r);
}

static void pool_forget(ps_registry *reg, pool *p) {
        size_t at = (size_t) (p - reg->pools);

        pool_clear(reg, p);
        memmove(&reg->pools[at], &reg->pools[at + 1], (reg->n_pools - at - 1) * sizeof(*p));
        reg->n_pools--;
        index_rebuild(reg);
}

static bool pool_at_rest(const pool *p) {
        for (size_t i = 0; i < p->n_replicas; i++)
                if (ps_replica_engine_running(p->replicas[i]))
                        return false;
        return true;
}

int ps_registry_remove_pool(ps_registry *reg, const char *pool_id, char *err, size_t errlen) {
        pool *p = pool_find(reg, pool_id);

        if (!p)
                return ps_errf(err, errlen, PS_E_NOT_FOUND, "pool %s not found", pool_id);
        if (!pool_at_rest(p))
                return ps_errf(err, errlen, PS_E_CONFLICT,
                               "pool %s still has a running engine", pool_id);
        pool_forget(reg, p);
        return 0;
}

/*
 * Removed pools are forgotten from a zero-delay timer, never from inside a
 * replica's own step: the replica may still be on the stack.
 */
static void sweep_soon(ps_registry *reg) {
        static const struct timeval now = { 0, 0 };

        evtimer_add(reg->sweep, &now);
}

static void on_sweep(evutil_socket_t fd, short what, void *userdata) {
        ps_registry *reg = userdata;

        (void) fd;
        (void) what;
        for (size_t i = 0; i < reg->n_pools;) {
                pool *p = &reg->pools[i];

                if (p->removing && pool_at_rest(p)) {
                        const ps_field fields[] = { PS_FIELD_STR("pool_id", p->id) };

                        say(reg, PS_LOG_INFO, "pool removed", fields, 1);
                        pool_forget(reg, p);
                } else {
                        i++;
                }
        }
}

int ps_registry_forget_pool(ps_registry *reg, const char *pool_id, char *err, size_t errlen) {
        pool *p = pool_find(reg, pool_id);
        pd_event ev = { .type = PD_EV_STOP };
        char *id;

        if (!p)
                return ps_errf(err, errlen, PS_E_NOT_FOUND, "pool %s not found", pool_id);
        if (p->removing)
                return 0;
        /* A reload answers its caller when it ends; removing the pool under
         * it would leave that caller waiting. */
        if (p->ops[PS_POOL_OP_RELOAD].state)
                return ps_errf(err, errlen, PS_E_CONFLICT,
                               "pool %s is reloading; remove it once the reload has finished",
                               pool_id);
        p->removing = true;
        /* A replica's callbacks may run during the feed and touch the
         * registry (p may move): find the pool again each time. */
        id = strdup(p->id);
        if (!id)
                return -ENOMEM;
        for (size_t i = 0;; i++) {
                ps_replica *r = ps_registry_replica_at(reg, id, i);

                if (!r)
                        break;
                pd_state state = ps_replica_lifecycle(r)->state;

                ps_replica_mark_removing(r);
                if (state != PD_STATE_EMPTY && state != PD_STATE_STOPPED)
                        ps_replica_feed(r, &ev);
        }
        free(id);
        sweep_soon(reg);
        return 0;
}

bool ps_registry_pool_removing(const ps_registry *reg, const char *pool_id) {
        const pool *p = pool_find(reg, pool_id);

        return p && p->removing;
}

/* ---- handoffs from outside ------------------------------------------- */

int ps_registry_register_handoff(ps_registry *reg, const ps_handoff_claim *c,
                                 char *err, size_t errlen) {
        ps_engine_spec *spec;
        ps_replica *r;
        ps_replica_handoff h;
        pd_error perr;
        int rc;

        if (pd_id_validate(c->pool_id, "handoff pool_id", &perr) != 0 ||
            pd_id_validate(c->replica_id, "handoff replica_id", &perr) != 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s", perr.msg);
        if (!c->engine_version || !c->engine_version[0])
                return ps_errf(err, errlen, PS_E_INVALID, "handoff engine_version: required string");
        if (c->slots < 1)
                return ps_errf(err, errlen, PS_E_INVALID, "handoff slots_total: must be at least 1");
        if (c->has_slots_free && c->slots_free > c->slots)
                return ps_errf(err, errlen, PS_E_INVALID, "handoff slots_free: %u is above the "
                               "slot count %u", c->slots_free, c->slots);

        r = ps_registry_find(reg, c->pool_id, c->replica_id);
        if (r && !ps_replica_external(r) && !replica_at_rest(r))
                return ps_errf(err, errlen, PS_E_CONFLICT, "pool %s replica %s is managed by "
                               "this daemon", c->pool_id, c->replica_id);
        if (!r) {
                spec = ps_engine_spec_new();
                if (!spec)
                        return -ENOMEM;
                spec->pool_id = strdup(c->pool_id);
                spec->replica_id = strdup(c->replica_id);
                spec->binary_path = strdup("/");   /* never spawned */
                spec->port = 1;
                rc = spec->pool_id && spec->replica_id && spec->binary_path ?
                     ps_registry_add(reg, spec, NULL, &r, err, errlen) : -ENOMEM;
                ps_engine_spec_free(spec);
                if (rc != 0)
                        return rc;
        }

        h = (ps_replica_handoff) {
                .engine_version = c->engine_version,
                .engine = c->engine,
                .device_mask = c->device_mask,
                .url = c->url,
                .model_id = c->model_id,
                .slots = c->slots,
                .has_slots_free = c->has_slots_free,
                .slots_free = c->slots_free,
        };
        return ps_replica_take_handoff(r, &h);
}

int ps_registry_unregister_handoff(ps_registry *reg, const char *pool_id,
                                   const char *replica_id) {
        ps_replica *r = ps_registry_find(reg, pool_id, replica_id);
        pd_event ev = { .type = PD_EV_HANDOFF_VANISHED };

        if (!r || !ps_replica_external(r))
                return PS_E_NOT_FOUND;
        return ps_replica_feed(r, &ev);
}

/* ---- status -------------------------------------------------------------- */

void ps_pool_status_done(ps_pool_status *s) {
        if (!s)
                return;
        free(s->replicas);
        *s = (ps_pool_status) { 0 };
}

void ps_registry_status_done(ps_registry_status *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_pools; i++)
                ps_pool_status_done(&s->pools[i]);
        free(s->pools);
        *s = (ps_registry_status) { 0 };
}

/* The pool's totals and the replicas it repeats fields of. */
static void pool_sum(const pool *p, ps_pool_status *out) {
        const ps_replica_status *backoff_from = NULL;

        for (size_t i = 0; i < out->n_replicas; i++) {
                const ps_replica_status *rs = &out->replicas[i];

                out->live |= rs->live;
                out->ready |= rs->ready;
                out->draining |= rs->draining;
                out->slots_total += rs->slots_total;
                out->slots_free += rs->slots_free;
                out->active_leases += rs->active_leases;
                out->restart_count += rs->restart_count;
                out->crash_count += rs->crash_count;
                out->restarts_in_window += rs->restarts_in_window;
                out->driver_resets += rs->driver_resets;
                if (!out->last_error && rs->last_error)
                        out->last_error = rs->last_error;
                if (!backoff_from && rs->next_restart_at > 0)
                        backoff_from = rs;
        }
        out->first = out->n_replicas ? &out->replicas[0] : NULL;
        if (!backoff_from)
                backoff_from = out->first;
        if (backoff_from) {
                out->backoff_ms = backoff_from->backoff_ms;
                out->next_restart_at = backoff_from->next_restart_at > 0 ?
                                       backoff_from->next_restart_at : 0;
        }
        /* A pool serves when any replica serves; otherwise it shows its
         * first replica's state. */
        if (p->removing)
                out->state = "removing";
        else if (out->ready)
                out->state = "ready";
        else if (out->first)
                out->state = out->first->state;
        else
                out->state = "empty";
}

static int pool_status(const pool *p, ps_pool_status *out) {
        *out = (ps_pool_status) { .pool_id = p->id };
        if (p->n_replicas) {
                out->replicas = calloc(p->n_replicas, sizeof(*out->replicas));
                if (!out->replicas)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < p->n_replicas; i++)
                ps_replica_status_get(p->replicas[i], &out->replicas[out->n_replicas++]);
        pool_sum(p, out);
        return 0;
}

int ps_registry_pool_status_get(const ps_registry *reg, const char *pool_id,
                                ps_pool_status *out) {
        const pool *p = pool_find(reg, pool_id);

        return p ? pool_status(p, out) : PS_E_NOT_FOUND;
}

int ps_registry_status_get(const ps_registry *reg, ps_registry_status *out) {
        *out = (ps_registry_status) { 0 };
        if (reg->n_pools == 0)
                return 0;
        out->pools = calloc(reg->n_pools, sizeof(*out->pools));
        if (!out->pools)
                return -ENOMEM;
        for (size_t i = 0; i < reg->n_pools; i++) {
                if (pool_status(&reg->pools[i], &out->pools[i]) < 0) {
                        ps_registry_status_done(out);
                        return -ENOMEM;
                }
                out->n_pools++;
        }
        return 0;
}

/* ---- shutdown ------------------------------------------------------------ */

static bool all_at_rest(const ps_registry *reg) {
        for (size_t i = 0; i < reg->n_pools; i++)
                for (size_t j = 0; j < reg->pools[i].n_replicas; j++)
                        if (ps_replica_engine_running(reg->pools[i].replicas[j]))
                                return false;
        return true;
}

/* A stop_all is over once no engine runs. */
static void stop_all_check(ps_registry *reg) {
        ps_done_fn done;

        if (!reg->stopping_all || !all_at_rest(reg))
                return;
        done = reg->stop_done;
        reg->stopping_all = false;
        reg->stop_done = NULL;
        if (done)
                done(0, "all engines stopped", reg->stop_userdata);
}

/* What a replica's step may have finished for its pool: a removal that
 * waited for the engines to exit, the reload's wait for an old engine to
 * retire, the stop of everything. */
static void pool_settled(ps_registry *reg, pool *p) {
        if (p->removing && pool_at_rest(p))
                sweep_soon(reg);
        for (size_t k = 0; k < PS_POOL_OP_KIND_MAX; k++) {
                const ps_pool_op *op = &p->ops[k];

                if (op->state && op->hooks && op->hooks->pool_settled)
                        op->hooks->pool_settled(op->state);
        }
}

void ps_registry_stop_all(ps_registry *reg, ps_done_fn done, void *userdata) {
        pd_event ev = { .type = PD_EV_STOP };

        reg->stop_done = done;
        reg->stop_userdata = userdata;
        reg->stopping_all = true;
        for (size_t i = 0; i < reg->n_pools; i++)
                for (size_t j = 0; j < reg->pools[i].n_replicas; j++)
                        ps_replica_feed(reg->pools[i].replicas[j], &ev);
        for (size_t i = 0; i < reg->n_pools; i++)
                pool_settled(reg, &reg->pools[i]);
        stop_all_check(reg);
}

void ps_registry_foreach(ps_registry *reg, void (*fn)(ps_replica *r, void *userdata),
                         void *userdata) {
        for (size_t i = 0; reg && fn && i < reg->n_pools; i++)
                for (size_t j = 0; j < reg->pools[i].n_replicas; j++)
                        fn(reg->pools[i].replicas[j], userdata);
}

/* ---- what replicas tell the registry ------------------------------------- */

static void on_replica_settled(ps_replica *r, void *userdata) {
        ps_registry *reg = userdata;
        pool *p = pool_find(reg, ps_replica_pool_id(r));

        if (p)
                pool_settled(reg, p);
        stop_all_check(reg);
}

static void on_drop_leases(ps_replica *r, pd_instance_id inst, void *userdata) {
        ps_registry *reg = userdata;

        for (size_t f = 0; f < reg->n_features; f++)
                if (reg->features[f].hooks->leases_dropped)
                        reg->features[f].hooks->leases_dropped(reg->features[f].state, r, inst);
}

static void on_leases_moved(ps_replica *r, void *userdata) {
        ps_registry *reg = userdata;

        for (size_t f = 0; f < reg->n_features; f++)
                if (reg->features[f].hooks->leases_moved)
                        reg->features[f].hooks->leases_moved(reg->features[f].state, r);
}

typedef struct device_trouble {
        const ps_replica *from;
        const char *why;
} device_trouble;

static void share_trouble(ps_replica *r, void *userdata) {
        const device_trouble *t = userdata;

        ps_replica_share_trouble(r, t->from, t->why);
}

/* A driver error is the device's: every replica on one of its GPUs, in
 * any pool, is reset. */
static void on_device_trouble(ps_replica *r, const char *why, void *userdata) {
        device_trouble t = { .from = r, .why = why };

        ps_registry_foreach(userdata, share_trouble, &t);
}

static const ps_replica_owner replica_owner = {
        .settled = on_replica_settled,
        .drop_leases = on_drop_leases,
        .leases_moved = on_leases_moved,
        .device_trouble = on_device_trouble,
};
