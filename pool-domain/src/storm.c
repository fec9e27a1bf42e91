/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>

#include "pool-domain/storm.h"

/*
 * The ring holds restarts sorted by at_ms, oldest at head. Scheduled
 * restarts lie in the future and an override records one at `now` before
 * them, so insertion keeps the order rather than appending. The ring keeps
 * up to PD_STORM_LIMIT_MAX entries whatever the limit: decisions need only
 * the newest `limit`, the rest keep pd_storm_in_window() honest when
 * overrides push the window past the limit.
 */

static const char *const storm_kind_table[PD_STORM_KIND_MAX] = {
        [PD_STORM_CRASH]     = "crash_storm",
        [PD_STORM_SIGNAL]    = "signal_storm",
        [PD_STORM_OOM]       = "oom_storm",
        [PD_STORM_CUDA]      = "cuda_storm",
        [PD_STORM_DRIVER]    = "driver_storm",
        [PD_STORM_TIMEOUT]   = "timeout_storm",
        [PD_STORM_PREFLIGHT] = "preflight_storm",
};

static const char *const storm_hint_table[PD_STORM_KIND_MAX] = {
        [PD_STORM_CRASH] =
                "The engine keeps exiting with an error: read the engine log for the cause "
                "and check the model path, the flags and the engine version.",
        [PD_STORM_SIGNAL] =
                "The engine keeps being killed by signals: look for segfaults or aborts in "
                "the engine log and dmesg, and try another engine build or model file.",
        [PD_STORM_OOM] =
                "The engine keeps running out of memory: reduce the context size, slots or "
                "batch size, use a smaller quantisation, or free VRAM and host RAM on the "
                "device mask.",
        [PD_STORM_CUDA] =
                "The engine keeps hitting CUDA errors: check that the engine was built for "
                "this driver and compute capability, and look for a faulty GPU in the "
                "device mask.",
        [PD_STORM_DRIVER] =
                "The GPU driver keeps failing: check dmesg for Xid errors, make sure the "
                "driver and CUDA versions match, and reset or drain the affected GPU.",
        [PD_STORM_TIMEOUT] =
                "The engine keeps failing its health checks: raise startup_timeout_ms or "
                "timeout_ms if the model loads slowly, and check the health path and port.",
        [PD_STORM_PREFLIGHT] =
                "Preflight keeps refusing the engine: free the VRAM or host memory named in "
                "last_error, or fix the binary path or device mask.",
};

/* Ties between kinds go to the more specific one: its hint names a cause,
 * while crash_storm only says to read the log. Same spirit as the
 * evidence order in crash.h (vram_oom > driver_error > cuda_error). */
static const pd_storm_kind storm_kind_priority[PD_STORM_KIND_MAX] = {
        PD_STORM_OOM,
        PD_STORM_DRIVER,
        PD_STORM_CUDA,
        PD_STORM_PREFLIGHT,
        PD_STORM_TIMEOUT,
        PD_STORM_SIGNAL,
        PD_STORM_CRASH,
};

const char *pd_storm_kind_to_string(pd_storm_kind kind) {
        if ((unsigned) kind >= PD_STORM_KIND_MAX)
                return NULL;
        return storm_kind_table[kind];
}

const char *pd_storm_kind_hint(pd_storm_kind kind) {
        if ((unsigned) kind >= PD_STORM_KIND_MAX)
                return NULL;
        return storm_hint_table[kind];
}

pd_storm_kind pd_storm_kind_for_class(pd_crash_class cls) {
        switch (cls) {
        case PD_CRASH_SIGNAL:
                return PD_STORM_SIGNAL;
        case PD_CRASH_VRAM_OOM:
        case PD_CRASH_HOST_OOM:
                return PD_STORM_OOM;
        case PD_CRASH_CUDA_ERROR:
                return PD_STORM_CUDA;
        case PD_CRASH_DRIVER_ERROR:
                return PD_STORM_DRIVER;
        case PD_CRASH_HEALTH_TIMEOUT:
        case PD_CRASH_STARTUP_TIMEOUT:
        case PD_CRASH_STALL_TIMEOUT:
                return PD_STORM_TIMEOUT;
        case PD_CRASH_PREFLIGHT:
                return PD_STORM_PREFLIGHT;
        case PD_CRASH_GRACEFUL:
        case PD_CRASH_EXIT_CODE:
        case PD_CRASH_NODE_ERROR:
        case PD_CRASH_CLASS_MAX:
                break;
        }
        return PD_STORM_CRASH;
}

void pd_storm_policy_init(pd_storm_policy *p) {
        *p = (pd_storm_policy) {
                .limit = 10,
                .window_ms = 60000,
                .burst_window_ms = 30000,
                .warn_above = 5,
        };
}

int pd_storm_policy_validate(const pd_storm_policy *p, pd_error *err) {
        if (!p)
                return -EINVAL;

        if (p->limit < 1 || p->limit > PD_STORM_LIMIT_MAX)
                return pd_error_set(err, "storm.limit: must be between 1 and %d, got %u",
                                    PD_STORM_LIMIT_MAX, p->limit);
        if (p->window_ms <= 0)
                return pd_error_set(err, "storm.window_ms: must be > 0, got %" PRId64,
                                    p->window_ms);
        if (p->burst_window_ms <= 0)
                return pd_error_set(err, "storm.burst_window_ms: must be > 0, got %" PRId64,
                                    p->burst_window_ms);
        if (p->burst_window_ms > p->window_ms)
                return pd_error_set(err, "storm.burst_window_ms: must not exceed window_ms (%"
                                    PRId64 "), got %" PRId64, p->window_ms, p->burst_window_ms);
        /* At the limit every further restart is delayed anyway; a warning
         * that can never fire is a typo, not a choice. */
        if (p->warn_above >= p->limit)
                return pd_error_set(err, "storm.warn_above: must be below limit (%u), got %u",
                                    p->limit, p->warn_above);
        return 0;
}

void pd_storm_init(pd_storm *s) {
        *s = (pd_storm) { .head = 0 };
}

void pd_storm_allow_once(pd_storm *s) {
        s->override = true;
}

static pd_storm_entry *storm_at(pd_storm *s, unsigned i) {
        return &s->ring[(s->head + i) % PD_STORM_LIMIT_MAX];
}

static const pd_storm_entry *storm_at_const(const pd_storm *s, unsigned i) {
        return &s->ring[(s->head + i) % PD_STORM_LIMIT_MAX];
}

/* A restart at at_ms counts at now_ms while now - at < window; scheduled
 * ones (at > now) count too. Unsigned arithmetic keeps far-apart
 * timestamps from overflowing. */
static bool storm_in_window(int64_t at_ms, int64_t now_ms, int64_t window_ms) {
        if (at_ms >= now_ms)
                return true;
        if (window_ms <= 0)
                return false;
        return (uint64_t) now_ms - (uint64_t) at_ms < (uint64_t) window_ms;
}

/* Unvalidated policies must not overrun the ring: clamp defensively. */
static unsigned storm_limit(const pd_storm_policy *p) {
        if (p->limit < 1)
                return 1;
        if (p->limit > PD_STORM_LIMIT_MAX)
                return PD_STORM_LIMIT_MAX;
        return p->limit;
}

static void storm_forget_old(pd_storm *s, int64_t window_ms, int64_t now_ms) {
        while (s->count > 0 && !storm_in_window(storm_at(s, 0)->at_ms, now_ms, window_ms)) {
                s->head = (s->head + 1) % PD_STORM_LIMIT_MAX;
                s->count--;
        }
}

/* Returns the index (from head) the new entry landed at. */
static unsigned storm_insert(pd_storm *s, int64_t at_ms, pd_crash_class cls) {
        unsigned i;

        if (s->count == PD_STORM_LIMIT_MAX) {
                s->head = (s->head + 1) % PD_STORM_LIMIT_MAX;
                s->count--;
        }
        /* Equal times keep arrival order. */
        for (i = s->count; i > 0 && storm_at(s, i - 1)->at_ms > at_ms; i--)
                *storm_at(s, i) = *storm_at(s, i - 1);
        *storm_at(s, i) = (pd_storm_entry) { .at_ms = at_ms, .cls = cls };
        s->count++;
        return i;
}

static int64_t add_saturating(int64_t a, int64_t b) {
        if (b > 0 && a > INT64_MAX - b)
                return INT64_MAX;
        return a + b;
}

/* Looks for `limit` consecutive restarts, one of them the restart at index
 * k, that span less than the burst window. Returns the index of the first
 * restart of the earliest such run, or -1. */
static int storm_find_burst(pd_storm *s, unsigned limit, int64_t burst_ms, unsigned k) {
        unsigned first, last;

        if (burst_ms <= 0 || s->count < limit)
                return -1;
        first = k >= limit - 1 ? k - (limit - 1) : 0;
        last = k < s->count - limit ? k : s->count - limit;
        for (unsigned i = first; i <= last; i++) {
                uint64_t span = (uint64_t) storm_at(s, i + limit - 1)->at_ms -
                                (uint64_t) storm_at(s, i)->at_ms;

                if (span < (uint64_t) burst_ms)
                        return (int) i;
        }
        return -1;
}

static pd_storm_kind storm_classify(pd_storm *s, unsigned first, unsigned limit) {
        unsigned count[PD_STORM_KIND_MAX] = { 0 };
        pd_storm_kind best = storm_kind_priority[0];

        for (unsigned i = first; i < first + limit; i++)
                count[pd_storm_kind_for_class(storm_at(s, i)->cls)]++;
        /* Strictly more wins; on a tie the earlier kind in the priority
         * order stays. */
        for (unsigned i = 1; i < PD_STORM_KIND_MAX; i++)
                if (count[storm_kind_priority[i]] > count[best])
                        best = storm_kind_priority[i];
        return best;
}

void pd_storm_admit(pd_storm *s, const pd_storm_policy *p, int64_t now_ms,
                    pd_crash_class cls, pd_storm_verdict *out) {
        unsigned limit = storm_limit(p);
        pd_storm_verdict v = { .run_at_ms = now_ms, .kind = PD_STORM_CRASH };
        unsigned k;
        int burst;

        storm_forget_old(s, p->window_ms, now_ms);

        if (s->override) {
                s->override = false;
                v.overridden = true;
        } else if (s->count >= limit) {
                /* Sorted, so the limit-th newest restart is the one that
                 * must leave the window before this one fits. */
                int64_t fits_at = add_saturating(storm_at(s, s->count - limit)->at_ms,
                                                 p->window_ms);

                if (fits_at > now_ms)
                        v.run_at_ms = fits_at;
        }
        v.delayed = v.run_at_ms > now_ms;

        k = storm_insert(s, v.run_at_ms, cls);
        v.in_window = pd_storm_in_window(s, p, now_ms);
        v.warn = v.in_window > p->warn_above;

        /* An operator who lets a restart through has seen the storm; it is
         * not reported (or counted) again for that restart. */
        if (!v.overridden) {
                burst = storm_find_burst(s, limit, p->burst_window_ms, k);
                if (burst >= 0) {
                        v.storm = true;
                        v.kind = storm_classify(s, (unsigned) burst, limit);
                        if (s->storms < UINT_MAX)
                                s->storms++;
                }
        }

        if (out)
                *out = v;
}

unsigned pd_storm_in_window(const pd_storm *s, const pd_storm_policy *p,
                            int64_t now_ms) {
        unsigned n = 0;

        for (unsigned i = 0; i < s->count; i++)
                if (storm_in_window(storm_at_const(s, i)->at_ms, now_ms, p->window_ms))
                        n++;
        return n;
}
