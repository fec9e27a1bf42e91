/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "supervise/replica.h"
#include "pool-services/pool/registry.h"

/*
 * The registry is the ground the pool-wide features stand on: the lease
 * index (pool/lease.c) and a pool's drain or reload (pool/drain.c,
 * pool/reload.c) call it, and it tells them what happens through the
 * hooks they leave with their state. It never calls them by name.
 */

const ps_context *ps_registry_ctx(const ps_registry *reg);
size_t ps_registry_pool_size(ps_registry *reg, const char *pool_id);

/*
 * A feature kept for the whole registry. Hooks may be NULL; each is told
 * about every replica:
 *   replica_removed  the replica leaves the registry (its pool is
 *                    forgotten, or the registry freed)
 *   leases_dropped   the replica ended the leases on one engine instance
 *                    by force (it has counted them)
 *   leases_moved     the replica promoted its surge engine: its leases
 *                    swap instances
 *   free             the registry goes: free the state
 */
typedef struct ps_registry_hooks {
        void (*replica_removed)(void *state, const ps_replica *r);
        void (*leases_dropped)(void *state, const ps_replica *r, pd_instance_id inst);
        void (*leases_moved)(void *state, const ps_replica *r);
        void (*free)(void *state);
} ps_registry_hooks;

/* Attaches state (taken) under hooks, which identify it. 0, -ENOMEM. */
int ps_registry_attach(ps_registry *reg, const ps_registry_hooks *hooks, void *state);
/* The state attached under hooks; NULL when none is. */
void *ps_registry_attached(const ps_registry *reg, const ps_registry_hooks *hooks);

/*
 * The operation running on a pool: at most one of each kind, owned by the
 * pool while attached. Hooks may be NULL:
 *   pool_settled  a replica of the pool ran its machine, or a stop of
 *                 everything began
 *   pool_removed  the pool is forgotten (or the registry freed) with the
 *                 operation still attached, and already detached: free
 *                 the state, answering whoever waits on it
 * Kinds are told in the order of this enum.
 */
typedef enum ps_pool_op_kind {
        PS_POOL_OP_DRAIN,
        PS_POOL_OP_RELOAD,
        PS_POOL_OP_KIND_MAX,
} ps_pool_op_kind;

typedef struct ps_pool_op_hooks {
        void (*pool_settled)(void *state);
        void (*pool_removed)(void *state);
} ps_pool_op_hooks;

typedef struct ps_pool_op {
        const ps_pool_op_hooks *hooks;
        void *state;                   /* NULL: none runs */
} ps_pool_op;

/* The pool's slot for one kind of operation, to read, fill or empty;
 * NULL for an unknown pool. Valid until the registry changes its pools. */
ps_pool_op *ps_registry_pool_op(ps_registry *reg, const char *pool_id, ps_pool_op_kind kind);
