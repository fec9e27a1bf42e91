/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>

#include "pool-domain/backoff.h"

void pd_backoff_policy_init(pd_backoff_policy *p) {
        *p = (pd_backoff_policy) {
                .initial_ms = 1000,
                .factor = 2.0,
                .min_ms = 0,
                .max_ms = 60000,
                .jitter = 0.1,
                .stable_reset_ms = 300000,
        };
        for (unsigned i = 0; i < PD_CRASH_CLASS_MAX; i++)
                p->class_multiplier[i] = 1.0;
        /* A CUDA error often means the device needs time to settle (a
         * context being torn down, another process releasing memory). */
        p->class_multiplier[PD_CRASH_CUDA_ERROR] = 2.0;
}

int pd_backoff_policy_validate(const pd_backoff_policy *p, pd_error *err) {
        if (!p)
                return -EINVAL;

        /* 0 is allowed: "restart at once". It never grows (0 * factor is
         * 0), so the storm limiter and the breaker are what bound such a
         * loop -- and they always run. */
        if (p->initial_ms < 0)
                return pd_error_set(err, "backoff.initial_ms: must be >= 0, got %" PRId64,
                                    p->initial_ms);
        /* NaN fails every comparison: each condition is written so that
         * NaN lands in the error branch. */
        if (!(p->factor >= 1.0) || !isfinite(p->factor))
                return pd_error_set(err, "backoff.factor: must be >= 1, got %g", p->factor);
        if (p->min_ms < 0)
                return pd_error_set(err, "backoff.min_ms: must be >= 0, got %" PRId64,
                                    p->min_ms);
        if (p->max_ms <= 0)
                return pd_error_set(err, "backoff.max_ms: must be > 0, got %" PRId64,
                                    p->max_ms);
        if (p->min_ms > p->max_ms)
                return pd_error_set(err, "backoff.min_ms: must not exceed max_ms (%" PRId64
                                    "), got %" PRId64, p->max_ms, p->min_ms);
        if (!(p->jitter >= 0.0 && p->jitter < 1.0))
                return pd_error_set(err, "backoff.jitter: must be >= 0 and < 1, got %g",
                                    p->jitter);
        /* 0 would reset the crash count on every run, however short, and
         * the delay would never grow. */
        if (p->stable_reset_ms <= 0)
                return pd_error_set(err, "backoff.stable_reset_ms: must be > 0, got %" PRId64,
                                    p->stable_reset_ms);
        for (unsigned i = 0; i < PD_CRASH_CLASS_MAX; i++) {
                double m = p->class_multiplier[i];

                if (!(m > 0.0) || !isfinite(m))
                        return pd_error_set(err, "backoff.class_multipliers.%s: must be a finite "
                                            "number > 0, got %g",
                                            pd_crash_class_to_string((pd_crash_class) i), m);
        }
        return 0;
}

int64_t pd_backoff_delay(const pd_backoff_policy *p, unsigned n,
                         pd_crash_class cls, pd_rng *rng) {
        double cap = (double) p->max_ms;
        double mult = (unsigned) cls < PD_CRASH_CLASS_MAX ? p->class_multiplier[cls] : 1.0;
        double start = (double) p->initial_ms * mult;
        double base, delay;
        int64_t ms;

        if (n == 0)
                n = 1;

        /* factor^(n-1) overflows to inf after a long crash streak (2^1024),
         * and converting inf to an integer is undefined. Compare logarithms
         * first, so pow() is only called when its result stays below the
         * cap. pow() rather than exp(log) keeps exact powers exact
         * (1000 * 2^3 is 8000, not 7999.999...). */
        if (!(start < cap))
                base = cap;
        else if ((double) (n - 1) * log(p->factor) >= log(cap / start))
                base = cap;
        else
                base = start * pow(p->factor, (double) (n - 1));
        if (!(base < cap))
                base = cap;

        /* Without an rng there is nothing to draw from: the base stands. */
        delay = base;
        if (p->jitter > 0.0 && rng)
                delay = base * (1.0 + p->jitter * pd_rng_signed_unit(rng));

        /* Clamp in floating point before converting: the jittered cap can
         * exceed INT64_MAX when max_ms is near it. Then clamp again as
         * integers, because (double) max_ms may have rounded up. */
        if (!(delay < cap))
                return p->max_ms;
        if (!(delay > 0.0))
                return p->min_ms;
        ms = (int64_t) llround(delay);
        if (ms > p->max_ms)
                ms = p->max_ms;
        if (ms < p->min_ms)
                ms = p->min_ms;
        return ms;
}

void pd_backoff_init(pd_backoff *b) {
        *b = (pd_backoff) { .crashes = 0 };
}

int64_t pd_backoff_on_crash(pd_backoff *b, const pd_backoff_policy *p,
                            pd_crash_class cls, pd_rng *rng) {
        if (b->crashes < UINT_MAX)
                b->crashes++;
        b->last_delay_ms = pd_backoff_delay(p, b->crashes, cls, rng);
        return b->last_delay_ms;
}

/* now - started >= duration, without the subtraction overflowing for
 * timestamps far apart; a clock that went backwards is not a long run. */
static bool ran_for(int64_t started_at_ms, int64_t now_ms, int64_t duration_ms) {
        if (now_ms < started_at_ms)
                return false;
        if (duration_ms <= 0)
                return true;
        return (uint64_t) now_ms - (uint64_t) started_at_ms >= (uint64_t) duration_ms;
}

bool pd_backoff_on_running(pd_backoff *b, const pd_backoff_policy *p,
                           int64_t started_at_ms, int64_t now_ms) {
        if (!ran_for(started_at_ms, now_ms, p->stable_reset_ms))
                return false;
        if (b->crashes == 0)
                return false;
        pd_backoff_reset(b);
        return true;
}

void pd_backoff_reset(pd_backoff *b) {
        b->crashes = 0;
        b->last_delay_ms = 0;
}
