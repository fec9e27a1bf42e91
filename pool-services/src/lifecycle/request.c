/* SPDX-License-Identifier: MIT */
/*
 * Operator requests that a pool-wide operation (drain, reload) sends to
 * each replica: tried on a copy of the machine first, so a refusal leaves
 * no callback behind.
 */
#include <errno.h>

#include "core/policy-private.h"
#include "lifecycle/replica-private.h"

int ps_replica_request(ps_replica *r, const pd_event *ev, pd_reply reply,
                    ps_done_fn fn, void *userdata) {
        pd_lifecycle trial = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;
        int rc;

        if (r->stepping)
                return -EBUSY;
        if (reply <= PD_REPLY_NONE || reply >= PD_REPLY_MAX)
                return -EINVAL;
        rc = pd_lifecycle_step(&trial, ps_policy_domain(r->policy), ev,
                               ps_clock_mono_ms(r->ctx->clock), &rng, &out);
        if (rc != 0)
                return rc;
        r->pending[reply] = (pending_reply) { .fn = fn, .userdata = userdata };
        return ps_replica_feed(r, ev);
}
