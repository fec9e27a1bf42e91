/* SPDX-License-Identifier: MIT */
#pragma once

#include "pool-services/pool/registry.h"
#include "pool-services/pool/store.h"
#include "pool-services/supervise/replica.h"

/*
 * The engines a previous daemon left, made to match what this one wants
 * (docs/reliability.md, "Engines after a restart"). At start, after the
 * configured replicas are added and before any of them starts, every
 * engine in the store's engines table is looked at:
 *
 *  - gone, or its pid now another process (start time, uid or command
 *    line differ): the record is dropped; nothing is signalled;
 *  - alive, the primary ("home") of a configured replica: the replica
 *    takes the spec it was started from and adopts it at its first start;
 *  - alive but no longer wanted (its pool or replica is not configured, or
 *    a surge engine left by a reload the restart interrupted): stopped from
 *    the loop, SIGTERM, then SIGKILL after the grace, with a log line.
 *
 * Reloads in flight end on the engine recorded as the primary: a surge
 * engine is recorded as such only once it was healthy and promoted. Their
 * records are dropped with a log line.
 *
 * From then on the object records in the store every engine a replica
 * spawns or adopts, the promotion of a surge engine, and each exit, through
 * ctx's engine hooks, which it sets.
 */
typedef struct ps_reconcile ps_reconcile;

/* Reconciles and installs the hooks in ctx (the registry's context). The
 * store may be NULL: nothing is read or recorded, and the replicas adopt
 * by PID file. 0 and *ret set, or -ENOMEM. */
int ps_reconcile_start(ps_context *ctx, ps_registry *reg, ps_store *store, int64_t grace_ms,
                       ps_reconcile **ret);
/* Stops watching the engines being stopped (they are left as they are).
 * NULL-safe; returns NULL. */
ps_reconcile *ps_reconcile_free(ps_reconcile *rc);
