/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/pool/registry.h"

/*
 * Leases: one slot of one ready replica, held by the control plane for one
 * unit of work. A lease is taken on the replica with the most free slots;
 * it ends when released, when its TTL runs out (a timer on the loop), or
 * by force when its engine is stopped (drain deadline, stop).
 *
 * Invariants: a replica never has more leases than slots nor fewer than
 * zero; a lease id (128 random bits from getrandom(2), 32 lowercase hex
 * digits) is never handed out twice; releasing an unknown or already
 * ended lease changes nothing.
 *
 * Calls return 0, a negative errno (-ENOMEM, -EINVAL for NULL arguments,
 * the errno of getrandom), or a positive PS_E_* outcome with a message in
 * err (may be NULL).
 */

#define PS_LEASE_ID_LEN 32

typedef struct ps_lease {
        char lease_id[PS_LEASE_ID_LEN + 1];
        char replica_id[65];
        char url[300];                 /* the engine's base URL            */
        int64_t granted_at;            /* epoch ms: when its TTL began (the
                                          grant, or the last renewal)      */
        int64_t expires_at;            /* epoch ms                         */
} ps_lease;

/*
 * Takes one slot on the least-loaded ready replica of the pool. ttl_ms 0:
 * the pool's lease_ttl_ms (default 600000); negative: PS_E_INVALID.
 *   PS_E_NOT_FOUND   unknown pool             ("pool x not found")
 *   PS_E_DRAINING    the pool drains           ("pool x is draining")
 *   PS_E_NOT_READY   no replica serves        ("pool x is not ready")
 *   PS_E_NO_SLOT     every slot is leased     ("pool x has no free slot (4 of 4 leased)")
 */
int ps_lease_acquire(ps_registry *reg, const char *pool_id, int64_t ttl_ms,
                     ps_lease *ret, char *err, size_t errlen);

/*
 * Extends a lease to now + ttl_ms (0: the pool's lease_ttl_ms); *ret (may
 * be NULL) receives it. PS_E_NOT_FOUND for an unknown pool, or a lease
 * that is unknown, already ended, or of another pool
 * ("lease <id> not found in pool x"); PS_E_INVALID for a negative ttl.
 */
int ps_lease_renew(ps_registry *reg, const char *pool_id, const char *lease_id,
                   int64_t ttl_ms, ps_lease *ret, char *err, size_t errlen);

/* Ends a lease and frees its slot. PS_E_NOT_FOUND as for renew. */
int ps_lease_release(ps_registry *reg, const char *pool_id, const char *lease_id,
                     char *err, size_t errlen);

/* {lease_id, pool_id, replica_id, url, expires_at}; NULL on OOM. */
json_t *ps_lease_to_json(const ps_lease *lease, const char *pool_id);

/*
 * The leases held on a pool, oldest grant first (ties by id): *ret
 * malloc'd (NULL when none), *n their count. 0, -ENOMEM, or
 * PS_E_NOT_FOUND for an unknown pool.
 */
int ps_lease_list(ps_registry *reg, const char *pool_id, ps_lease **ret, size_t *n);

/* Leases held in the whole registry (every pool). */
size_t ps_registry_lease_count(ps_registry *reg);

/*
 * At start: a lease the state store kept, held again on its replica with
 * the same id and expiry. The time left is capped at the TTL it was
 * granted with (a wall clock stepped back cannot stretch it).
 *   PS_E_NOT_FOUND   its pool or replica is gone
 *   PS_E_CONFLICT    it expired meanwhile
 *   PS_E_NO_SLOT     the replica's slots are taken
 *   PS_E_EXISTS      held already; PS_E_INVALID: a malformed record
 */
struct ps_store_lease;
int ps_lease_restore(ps_registry *reg, const struct ps_store_lease *rec, char *err, size_t errlen);
