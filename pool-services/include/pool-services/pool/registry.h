/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

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
 * Registers (or refreshes) a replica from a handoff document as written by
 * an external provisioner: pool_id, replica_id and engine_version are
 * required; url, engine, device_mask and model are optional and stay
 * unset (or as they were) when missing; other fields are ignored. The
 * slot count is slots_total, else llama-orch's "slots", else 1; it must be
 * at least 1, and slots and slots_total given together must agree;
 * slots_free (at most the count) is taken when given, else the free slots
 * follow the leases. The replica becomes live and
 * ready, last_error is cleared and its heartbeat set to now. It is tracked,
 * never supervised. PS_E_INVALID naming the field, PS_E_CONFLICT when a
 * managed replica owns the id.
 */
int ps_registry_register_ready_from_handoff(ps_registry *reg, const json_t *handoff,
                                            char *err, size_t errlen);
/* The external replica's file is gone: it is no longer ready. */
int ps_registry_unregister_handoff(ps_registry *reg, const char *pool_id,
                                   const char *replica_id);

/* {"pools": [snapshot...]} and one pool's snapshot (NULL: unknown). */
json_t *ps_registry_snapshot(const ps_registry *reg);
json_t *ps_registry_pool_snapshot(const ps_registry *reg, const char *pool_id);

/*
 * Stops every engine (SIGTERM, grace, SIGKILL). done runs once all are
 * stopped -- at once when none runs.
 */
void ps_registry_stop_all(ps_registry *reg, ps_done_fn done, void *userdata);

/* Calls fn for every replica, pools in the order added. fn must not add
 * or remove replicas. */
void ps_registry_foreach(ps_registry *reg, void (*fn)(ps_replica *r, void *userdata),
                         void *userdata);
