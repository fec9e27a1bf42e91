/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "pool-domain/lease.h"

void pd_slots_init(pd_slots *s, uint32_t total) {
        if (!s)
                return;
        s->total = total;
        s->leased = 0;
}

uint32_t pd_slots_free(const pd_slots *s) {
        /* A struct filled in by hand may break the invariant; answer 0
         * rather than a wrapped count near UINT32_MAX. */
        return s->leased < s->total ? s->total - s->leased : 0;
}

int pd_slots_acquire(pd_slots *s) {
        if (!s)
                return -EINVAL;
        if (s->leased >= s->total)
                return PD_E_NO_SLOT;
        s->leased++;
        return 0;
}

int pd_slots_release(pd_slots *s) {
        if (!s)
                return -EINVAL;
        if (s->leased == 0)
                return PD_E_NOT_LEASED;
        s->leased--;
        return 0;
}

int pd_slots_resize(pd_slots *s, uint32_t total, pd_error *err) {
        if (!s)
                return -EINVAL;
        if (total < s->leased)
                return pd_error_set(err,
                                    "slots: cannot shrink to %" PRIu32 " while %" PRIu32 " are leased",
                                    total, s->leased);
        s->total = total;
        return 0;
}

int pd_slots_pick_least_loaded(const pd_slots *replicas, const bool *eligible,
                               size_t n, size_t *out) {
        uint32_t best_free = 0;
        size_t best = 0;

        if ((!replicas && n > 0) || !out)
                return -EINVAL;

        for (size_t i = 0; i < n; i++) {
                uint32_t f;

                if (eligible && !eligible[i])
                        continue;
                f = pd_slots_free(&replicas[i]);
                /* Strictly greater: on a tie the lower index stays. */
                if (f > best_free) {
                        best_free = f;
                        best = i;
                }
        }
        if (best_free == 0)
                return PD_E_NO_SLOT;
        *out = best;
        return 0;
}

uint32_t pd_sat_add_u32(uint32_t a, uint32_t b) {
        return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

uint32_t pd_sat_sub_u32(uint32_t a, uint32_t b) {
        return a > b ? a - b : 0;
}

int64_t pd_sat_add_i64(int64_t a, int64_t b) {
        if (b > 0 && a > INT64_MAX - b)
                return INT64_MAX;
        if (b < 0 && a < INT64_MIN - b)
                return INT64_MIN;
        return a + b;
}

int64_t pd_lease_expires_at(int64_t now_ms, int64_t ttl_ms) {
        /* A negative TTL is a caller's mistake; a lease still never
         * expires before it was granted. */
        return pd_sat_add_i64(now_ms, ttl_ms > 0 ? ttl_ms : 0);
}

bool pd_lease_is_expired(int64_t expires_at_ms, int64_t now_ms) {
        return now_ms >= expires_at_ms;
}

void pd_lease_id_generate(pd_rng *rng, char out[PD_LEASE_ID_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";

        if (!rng || !out)
                return;

        for (size_t half = 0; half < 2; half++) {
                uint64_t v = pd_rng_next(rng);

                /* Most significant nibble first, so the id reads as the
                 * draws printed with %016llx. */
                for (size_t i = 0; i < 16; i++)
                        out[half * 16 + i] = hex[(v >> (60 - 4 * i)) & 0xf];
        }
        out[PD_LEASE_ID_LEN] = '\0';
}

int pd_lease_id_validate(const char *id, pd_error *err) {
        size_t len;

        if (!id)
                return pd_error_set(err, "lease id: missing");

        len = strnlen(id, PD_LEASE_ID_LEN + 1);
        if (len != PD_LEASE_ID_LEN)
                return pd_error_set(err, "lease id: expected %d lowercase hex digits, got %s%zu characters",
                                    PD_LEASE_ID_LEN, len > PD_LEASE_ID_LEN ? "more than " : "",
                                    len > PD_LEASE_ID_LEN ? (size_t) PD_LEASE_ID_LEN : len);

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) id[i];

                if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
                        continue;
                if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
                        return pd_error_set(err, "lease id: character '%c' at position %zu is not a lowercase hex digit",
                                            c, i);
                return pd_error_set(err, "lease id: character '\\x%02x' at position %zu is not a lowercase hex digit",
                                    c, i);
        }
        return 0;
}
