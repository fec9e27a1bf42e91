/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-domain/error.h"
#include "pool-domain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Slot accounting of one replica. The invariant 0 <= leased <= total holds
 * after every call: acquire and release refuse rather than wrap.
 */
typedef struct pd_slots {
        uint32_t total;
        uint32_t leased;
} pd_slots;

void pd_slots_init(pd_slots *s, uint32_t total);
uint32_t pd_slots_free(const pd_slots *s);
/* 0, or PD_E_NO_SLOT when every slot is leased. */
int pd_slots_acquire(pd_slots *s);
/* 0, or PD_E_NOT_LEASED when nothing is leased. */
int pd_slots_release(pd_slots *s);
/* Changes the slot count; PD_E_INVALID when it would drop below the leases
 * in flight (they are never lost). */
int pd_slots_resize(pd_slots *s, uint32_t total, pd_error *err);

/* Index of the replica with the most free slots among the eligible ones
 * (ties: the lowest index). eligible may be NULL (all). PD_E_NO_SLOT when no
 * eligible replica has a free slot. */
int pd_slots_pick_least_loaded(const pd_slots *replicas, const bool *eligible,
                               size_t n, size_t *out);

/* Saturating arithmetic for counters that must never wrap. */
uint32_t pd_sat_add_u32(uint32_t a, uint32_t b);
uint32_t pd_sat_sub_u32(uint32_t a, uint32_t b);
int64_t pd_sat_add_i64(int64_t a, int64_t b);

/* Lease expiry: now + ttl, saturating. A negative ttl counts as 0: a lease
 * never expires before it was granted. A lease is expired from its
 * expires_at on (now >= expires_at). */
int64_t pd_lease_expires_at(int64_t now_ms, int64_t ttl_ms);
bool pd_lease_is_expired(int64_t expires_at_ms, int64_t now_ms);

/* Lease ids: 32 lowercase hex digits (128 bits from the caller's RNG:
 * two pd_rng_next() draws, each printed as %016 hex, first draw first). */
#define PD_LEASE_ID_LEN 32
void pd_lease_id_generate(pd_rng *rng, char out[PD_LEASE_ID_LEN + 1]);
int pd_lease_id_validate(const char *id, pd_error *err);

#ifdef __cplusplus
}
#endif
