/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>

#include "pool-domain/breaker.h"

/*
 * open_period_ms is the period of the current (or last) open; 0 while the
 * breaker is closed means "the policy's open_ms at the next open". Keeping
 * the policy out of the closed state lets pd_breaker_reset() work without
 * one, and a policy reloaded while closed takes effect at the next open.
 */

static const char *const breaker_state_table[PD_BREAKER_STATE_MAX] = {
        [PD_BREAKER_CLOSED]    = "closed",
        [PD_BREAKER_OPEN]      = "open",
        [PD_BREAKER_HALF_OPEN] = "half_open",
};

const char *pd_breaker_state_to_string(pd_breaker_state s) {
        if ((unsigned) s >= PD_BREAKER_STATE_MAX)
                return NULL;
        return breaker_state_table[s];
}

void pd_breaker_policy_init(pd_breaker_policy *p) {
        *p = (pd_breaker_policy) {
                .threshold = 5,
                .open_ms = 300000,
                .close_after_ms = 60000,
                .separate_gpu_circuit = false,
        };
}

int pd_breaker_policy_validate(const pd_breaker_policy *p, pd_error *err) {
        if (!p)
                return -EINVAL;

        if (p->threshold < 1)
                return pd_error_set(err, "breaker.threshold: must be at least 1");
        if (p->open_ms <= 0)
                return pd_error_set(err, "breaker.open_ms: must be > 0, got %" PRId64,
                                    p->open_ms);
        /* The doubling is capped there, so a longer first period could only
         * shrink on the first failed trial. */
        if (p->open_ms > PD_BREAKER_OPEN_MAX_MS)
                return pd_error_set(err, "breaker.open_ms: must be at most %lld, got %" PRId64,
                                    PD_BREAKER_OPEN_MAX_MS, p->open_ms);
        /* 0 would call every run stable, so merely becoming ready would
         * close the breaker and a crash-after-ready loop would never open it. */
        if (p->close_after_ms <= 0)
                return pd_error_set(err, "breaker.close_after_ms: must be > 0, got %" PRId64,
                                    p->close_after_ms);
        return 0;
}

void pd_breaker_init(pd_breaker *b) {
        *b = (pd_breaker) { .state = PD_BREAKER_CLOSED };
}

static int64_t add_saturating(int64_t a, int64_t b) {
        if (b > 0 && a > INT64_MAX - b)
                return INT64_MAX;
        return a + b;
}

static bool ran_for(int64_t started_at_ms, int64_t now_ms, int64_t duration_ms) {
        if (now_ms < started_at_ms)
                return false;
        if (duration_ms <= 0)
                return true;
        return (uint64_t) now_ms - (uint64_t) started_at_ms >= (uint64_t) duration_ms;
}

/* OPEN turns HALF_OPEN lazily, at the first call that looks at it after the
 * deadline: the domain has no timers. */
static bool breaker_advance(pd_breaker *b, int64_t now_ms) {
        if (b->state != PD_BREAKER_OPEN || now_ms < b->open_until_ms)
                return false;
        b->state = PD_BREAKER_HALF_OPEN;
        b->trial_taken = false;
        return true;
}

bool pd_breaker_advance(pd_breaker *b, int64_t now_ms) {
        return breaker_advance(b, now_ms);
}

static void breaker_enter_open(pd_breaker *b, int64_t period_ms, int64_t now_ms) {
        if (b->opens < UINT_MAX)
                b->opens++;
        b->state = PD_BREAKER_OPEN;
        b->open_period_ms = period_ms;
        b->open_until_ms = add_saturating(now_ms, period_ms);
        b->trial_taken = false;
}

static void breaker_enter_closed(pd_breaker *b) {
        b->state = PD_BREAKER_CLOSED;
        b->failures = 0;
        b->open_until_ms = 0;
        b->open_period_ms = 0;
        b->trial_taken = false;
}

static int64_t breaker_period(const pd_breaker *b, const pd_breaker_policy *p) {
        return b->open_period_ms > 0 ? b->open_period_ms : p->open_ms;
}

static int64_t period_doubled(int64_t period_ms) {
        if (period_ms >= PD_BREAKER_OPEN_MAX_MS / 2)
                return PD_BREAKER_OPEN_MAX_MS;
        return period_ms * 2;
}

/* Would allow() say yes, without handing out the trial? */
static bool breaker_would_allow(const pd_breaker *b) {
        switch (b->state) {
        case PD_BREAKER_CLOSED:
                return true;
        case PD_BREAKER_HALF_OPEN:
                return !b->trial_taken;
        case PD_BREAKER_OPEN:
        case PD_BREAKER_STATE_MAX:
                break;
        }
        return false;
}

static bool breaker_take(pd_breaker *b) {
        if (!breaker_would_allow(b))
                return false;
        if (b->state == PD_BREAKER_HALF_OPEN)
                b->trial_taken = true;
        return true;
}

bool pd_breaker_allow(pd_breaker *b, const pd_breaker_policy *p, int64_t now_ms) {
        (void) p;
        breaker_advance(b, now_ms);
        return breaker_take(b);
}

bool pd_breaker_record_failure(pd_breaker *b, const pd_breaker_policy *p,
                               int64_t now_ms) {
        breaker_advance(b, now_ms);
        if (b->failures < UINT_MAX)
                b->failures++;

        switch (b->state) {
        case PD_BREAKER_CLOSED:
                if (b->failures < p->threshold)
                        return false;
                breaker_enter_open(b, p->open_ms, now_ms);
                return true;
        case PD_BREAKER_HALF_OPEN:
                /* Whatever ran after the timeout failed: the trial did. */
                breaker_enter_open(b, period_doubled(breaker_period(b, p)), now_ms);
                return true;
        case PD_BREAKER_OPEN:
        case PD_BREAKER_STATE_MAX:
                break;
        }
        /* Already open (an operator-forced restart failed): counted, but the
         * deadline stays, so the operator is not punished for trying. */
        return false;
}

bool pd_breaker_record_running(pd_breaker *b, const pd_breaker_policy *p,
                               int64_t started_at_ms, int64_t now_ms) {
        bool changed = false;

        if (!ran_for(started_at_ms, now_ms, p->close_after_ms))
                return false;

        breaker_advance(b, now_ms);
        if (b->state == PD_BREAKER_HALF_OPEN) {
                breaker_enter_closed(b);
                return true;
        }
        if (b->failures > 0) {
                b->failures = 0;
                changed = true;
        }
        return changed;
}

void pd_breaker_trip(pd_breaker *b, const pd_breaker_policy *p, int64_t now_ms) {
        breaker_advance(b, now_ms);
        if (b->state == PD_BREAKER_OPEN) {
                /* Already open: a storm seen now keeps it open a full period
                 * from now, but it is not a new open. */
                int64_t until = add_saturating(now_ms, breaker_period(b, p));

                if (until > b->open_until_ms)
                        b->open_until_ms = until;
                return;
        }
        breaker_enter_open(b, breaker_period(b, p), now_ms);
}

void pd_breaker_reset(pd_breaker *b) {
        breaker_enter_closed(b);
}

void pd_breaker_set_init(pd_breaker_set *s) {
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                pd_breaker_init(&s->circuit[i]);
}

pd_breaker *pd_breaker_set_for(pd_breaker_set *s, const pd_breaker_policy *p,
                               pd_crash_class cls) {
        pd_crash_family family = PD_CRASH_FAMILY_GENERAL;

        if (p->separate_gpu_circuit)
                family = pd_crash_class_family(cls);
        if ((unsigned) family >= PD_CRASH_FAMILY_MAX)
                family = PD_CRASH_FAMILY_GENERAL;
        return &s->circuit[family];
}

bool pd_breaker_set_allow(pd_breaker_set *s, const pd_breaker_policy *p,
                          int64_t now_ms) {
        (void) p;

        /* Ask every circuit before taking anything: a half-open circuit's
         * single trial must not be spent on a restart that another circuit
         * refuses. A circuit the policy does not use is always closed, so
         * consulting it costs nothing. */
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                breaker_advance(&s->circuit[i], now_ms);
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                if (!breaker_would_allow(&s->circuit[i]))
                        return false;
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                (void) breaker_take(&s->circuit[i]);
        return true;
}

bool pd_breaker_set_record_failure(pd_breaker_set *s, const pd_breaker_policy *p,
                                   pd_crash_class cls, int64_t now_ms) {
        return pd_breaker_record_failure(pd_breaker_set_for(s, p, cls), p, now_ms);
}

bool pd_breaker_set_record_running(pd_breaker_set *s, const pd_breaker_policy *p,
                                   int64_t started_at_ms, int64_t now_ms) {
        bool changed = false;

        /* A stable run proves every kind of failure has stopped. */
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                if (pd_breaker_record_running(&s->circuit[i], p, started_at_ms, now_ms))
                        changed = true;
        return changed;
}

void pd_breaker_set_trip(pd_breaker_set *s, const pd_breaker_policy *p, int64_t now_ms) {
        pd_breaker_trip(&s->circuit[PD_CRASH_FAMILY_GENERAL], p, now_ms);
}

void pd_breaker_set_reset(pd_breaker_set *s) {
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                pd_breaker_reset(&s->circuit[i]);
}

static int breaker_state_rank(pd_breaker_state state) {
        switch (state) {
        case PD_BREAKER_OPEN:
                return 2;
        case PD_BREAKER_HALF_OPEN:
                return 1;
        case PD_BREAKER_CLOSED:
        case PD_BREAKER_STATE_MAX:
                break;
        }
        return 0;
}

pd_breaker_state pd_breaker_set_state(const pd_breaker_set *s) {
        pd_breaker_state worst = PD_BREAKER_CLOSED;

        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                if (breaker_state_rank(s->circuit[i].state) > breaker_state_rank(worst))
                        worst = s->circuit[i].state;
        return worst;
}

int64_t pd_breaker_set_open_until(const pd_breaker_set *s) {
        int64_t until = 0;

        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                if (s->circuit[i].state == PD_BREAKER_OPEN && s->circuit[i].open_until_ms > until)
                        until = s->circuit[i].open_until_ms;
        return until;
}

bool pd_breaker_set_advance(pd_breaker_set *s, int64_t now_ms) {
        bool changed = false;

        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                if (breaker_advance(&s->circuit[i], now_ms))
                        changed = true;
        return changed;
}

int64_t pd_breaker_set_next_half_open(const pd_breaker_set *s) {
        int64_t next = 0;

        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                if (s->circuit[i].state == PD_BREAKER_OPEN &&
                    (next == 0 || s->circuit[i].open_until_ms < next))
                        next = s->circuit[i].open_until_ms;
        return next;
}
