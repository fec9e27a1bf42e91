/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-services/base/clock.h"
#include "pool-services/base/errors.h"
#include "pool-services/base/event.h"
#include "pool-services/conf/policy.h"
#include "pool-services/supervise/replica.h"
#include "pool-services/conf/spec.h"

/*
 * The registry: pools, each with replicas; each replica is a supervised
 * engine (or a tracked external one registered from a handoff file), see
 * pool-services/supervise/replica.h.
 *
 * Everything runs on the caller's event loop. Calls return 0, a negative
 * errno, or a positive PS_E_* outcome with a message in err.
 */

typedef struct ps_registry ps_registry;

ps_registry *ps_registry_new(const ps_context *ctx);
/* Frees every record without stopping engines: running engines keep
 * running (a later daemon adopts them). Stop first for a clean shutdown. */
ps_registry *ps_registry_free(ps_registry *reg);

/*
 * Registers a replica from a PreparedEngine (copied) and its policy
 * (copied; NULL: the defaults). The pool is created with its first replica.
 * PS_E_INVALID (bad ids, no binary, port 0), PS_E_EXISTS.
 */
int ps_registry_add(ps_registry *reg, const ps_engine_spec *spec,
                    const ps_policy *policy, ps_replica **ret,
                    char *err, size_t errlen);

ps_replica *ps_registry_find(ps_registry *reg, const char *pool_id,
                             const char *replica_id);
/* The i-th replica of a pool, in the order added; NULL past the end. */
ps_replica *ps_registry_replica_at(ps_registry *reg, const char *pool_id, size_t i);
/* The id of the i-th pool, in the order added; NULL past the end. Borrowed:
 * valid until the pool is removed. */
const char *ps_registry_pool_id_at(const ps_registry *reg, size_t i);
bool ps_registry_has_pool(const ps_registry *reg, const char *pool_id);
size_t ps_registry_pool_count(const ps_registry *reg);
/* Leases held on a pool; 0 for an unknown pool. */
uint32_t ps_registry_active_leases(const ps_registry *reg, const char *pool_id);

/* Forgets a pool whose replicas are all stopped (or never started).
 * PS_E_NOT_FOUND, PS_E_CONFLICT while an engine runs. */
int ps_registry_remove_pool(ps_registry *reg, const char *pool_id,
                            char *err, size_t errlen);

/*
 * Stops every replica of the pool and forgets the pool once its engines
 * have exited (at once when none runs; always from the loop, never inside
 * this call). Preload answers still pending fail (PS_E_START_FAILED).
 * Again while pending: 0. PS_E_NOT_FOUND.
 */
int ps_registry_forget_pool(ps_registry *reg, const char *pool_id,
                            char *err, size_t errlen);
/* Whether the pool is being forgotten (stopped, not yet gone). */
bool ps_registry_pool_removing(const ps_registry *reg, const char *pool_id);

/*
 * What a handoff file claims about a replica an external provisioner runs
 * (pool-services/cloud/handoff-doc.h reads it from the file's JSON).
 * Strings are borrowed for the call.
 */
typedef struct ps_handoff_claim {
        const char *pool_id;           /* required                           */
        const char *replica_id;        /* required                           */
        const char *engine_version;    /* required                           */
        const char *engine;            /* these: NULL leaves them as they are */
        const char *device_mask;
        const char *url;
        const char *model_id;
        uint32_t slots;                /* at least 1                          */
        bool has_slots_free;           /* else the free slots follow leases  */
        uint32_t slots_free;           /* at most slots                       */
} ps_handoff_claim;

/*
 * Registers (or refreshes) a replica from a handoff claim. The replica
 * becomes live and ready, last_error is cleared and its heartbeat set to
 * now. It is tracked, never supervised. PS_E_INVALID naming the field,
 * PS_E_CONFLICT when a managed replica owns the id.
 */
int ps_registry_register_handoff(ps_registry *reg, const ps_handoff_claim *claim,
                                 char *err, size_t errlen);
/* The external replica's file is gone: it is no longer ready. */
int ps_registry_unregister_handoff(ps_registry *reg, const char *pool_id,
                                   const char *replica_id);

/*
 * A pool's status: its replicas' (ps_replica_status, in the order added)
 * and what they add up to. Filled by ps_registry_pool_status_get(); the
 * JSON the API and the control plane see is rendered from it at the edges
 * (pool-services/observe/status-json.h). Strings are borrowed like a
 * replica's (pool-services/supervise/status.h).
 */
typedef struct ps_pool_status {
        const char *pool_id;
        /* "removing" while forgotten, else "ready" when a replica is,
         * else the first replica's state; "empty" without replicas. */
        const char *state;
        bool live;                     /* any replica's                      */
        bool ready;
        bool draining;
        uint64_t slots_total;          /* summed over the replicas           */
        uint64_t slots_free;
        uint64_t active_leases;
        uint64_t restart_count;
        uint64_t crash_count;
        uint64_t restarts_in_window;
        uint64_t driver_resets;
        /* The replica the pool repeats the engine, versions, model, device
         * mask, breaker, pid and url of; NULL without replicas. */
        const ps_replica_status *first;
        /* The first replica's last_error that has one; NULL: none. */
        const char *last_error;
        /* The first replica with a restart scheduled gives both; without
         * one, backoff_ms is the first replica's, next_restart_at 0. */
        int64_t backoff_ms;
        int64_t next_restart_at;
        ps_replica_status *replicas;   /* owned                              */
        size_t n_replicas;
} ps_pool_status;

typedef struct ps_registry_status {
        ps_pool_status *pools;         /* owned, pools in the order added    */
        size_t n_pools;
} ps_registry_status;

/* One pool's status, or every pool's: 0, PS_E_NOT_FOUND, -ENOMEM. out is
 * to be released with its _done() on 0 only. */
int ps_registry_pool_status_get(const ps_registry *reg, const char *pool_id,
                                ps_pool_status *out);
int ps_registry_status_get(const ps_registry *reg, ps_registry_status *out);
/* Frees what a status owns; accepts a zeroed one. */
void ps_pool_status_done(ps_pool_status *s);
void ps_registry_status_done(ps_registry_status *s);

/*
 * Stops every engine (SIGTERM, grace, SIGKILL). done runs once all are
 * stopped -- at once when none runs.
 */
void ps_registry_stop_all(ps_registry *reg, ps_done_fn done, void *userdata);

/* Calls fn for every replica, pools in the order added. fn must not add
 * or remove replicas. */
void ps_registry_foreach(ps_registry *reg, void (*fn)(ps_replica *r, void *userdata),
                         void *userdata);
