/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "lifecycle/replica.h"
#include "pool-services/registry.h"

/*
 * What the registry keeps besides its pools, for the code that works on a
 * whole pool at once: the lease table (core/lease.c) and the drain or
 * reload in progress (lifecycle/drain.c, lifecycle/reload.c).
 */
typedef struct lease_table lease_table;
typedef struct drain_op drain_op;
typedef struct reload_op reload_op;

/* The operation running on a pool; at most one of each. Owned by the
 * pool: removing the pool frees a drain without calling its callback, and
 * answers a reload's caller (ps_reload_op_abandon). */
typedef struct pool_ops {
        drain_op *drain;
        reload_op *reload;
} pool_ops;

const ps_context *ps_registry_ctx(const ps_registry *reg);
lease_table *ps_registry_leases(ps_registry *reg);
/* NULL for an unknown pool. */
pool_ops *ps_registry_pool_ops(ps_registry *reg, const char *pool_id);
size_t ps_registry_pool_size(ps_registry *reg, const char *pool_id);

lease_table *ps_lease_table_new(ps_registry *reg);
lease_table *ps_lease_table_free(lease_table *t);
/* The replica leaves the registry: its lease records go, uncounted. */
void ps_lease_table_forget_replica(lease_table *t, const ps_replica *r);
/* The replica ended the leases on one engine instance by force: their
 * records go (the replica has counted them). */
void ps_lease_table_drop(lease_table *t, const ps_replica *r, pd_instance_id inst);
/* The replica promoted its surge engine: its records swap instances. */
void ps_lease_table_swap(lease_table *t, const ps_replica *r);

drain_op *ps_drain_op_free(drain_op *op);
reload_op *ps_reload_op_free(reload_op *op);
/* Frees a registered reload that has not finished, answering its caller
 * (PS_E_CONFLICT, no result) as a replica answers its waiters when freed:
 * a request waiting on it must not wait, or leak, forever. */
reload_op *ps_reload_op_abandon(reload_op *op);
/* A replica of the reload's pool ran its machine: a rollback waiting for
 * a surged replica's old engine to leave goes on once it has. */
void ps_reload_op_replica_settled(reload_op *op);
