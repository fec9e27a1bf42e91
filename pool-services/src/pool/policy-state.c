/* SPDX-License-Identifier: MIT */
/*
 * A replica's restart policy state in the state store: the counts in
 * columns, the breaker circuits and backoff, and the storm window, as
 * JSON. Times are wall-clock (the replica's accessors convert).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool/registry-private.h"
#include "supervise/replica.h"
#include "pool-services/base/errors.h"
#include "pool-services/pool/store.h"

static json_t *breaker_json(const ps_replica_policy_state *st) {
        json_t *circuits = json_array();

        for (unsigned i = 0; circuits && i < PD_CRASH_FAMILY_MAX; i++) {
                const pd_breaker *b = &st->breakers.circuit[i];

                json_array_append_new(circuits, json_pack("{s:i, s:I, s:I, s:I, s:I, s:b}",
                        "state", (int) b->state,
                        "failures", (json_int_t) b->failures,
                        "opens", (json_int_t) b->opens,
                        "open_until", (json_int_t) b->open_until_ms,
                        "open_period_ms", (json_int_t) b->open_period_ms,
                        "trial_taken", b->trial_taken));
        }
        return json_pack("{s:o*, s:{s:I, s:I}}", "circuits", circuits,
                         "backoff", "crashes", (json_int_t) st->backoff.crashes,
                         "last_delay_ms", (json_int_t) st->backoff.last_delay_ms);
}

static json_t *storm_json(const ps_replica_policy_state *st) {
        json_t *window = json_array();

        for (unsigned i = 0; window && i < st->storm.count && i < PD_STORM_LIMIT_MAX; i++) {
                const pd_storm_entry *e = &st->storm.ring[(st->storm.head + i) % PD_STORM_LIMIT_MAX];

                json_array_append_new(window, json_pack("[I, i]", (json_int_t) e->at_ms, (int) e->cls));
        }
        return json_pack("{s:I, s:o*}", "storms", (json_int_t) st->storm.storms, "window", window);
}

int ps_store_save_policy(ps_store *s, const ps_replica *r) {
        ps_replica_policy_state st;
        ps_store_policy rec = { .crash_count = 0 };
        json_t *breaker, *storm;
        char *btext, *stext;
        int rc;

        if (!s || !r)
                return 0;
        ps_replica_policy_state_get(r, &st);
        breaker = breaker_json(&st);
        storm = storm_json(&st);
        btext = breaker ? json_dumps(breaker, JSON_COMPACT) : NULL;
        stext = storm ? json_dumps(storm, JSON_COMPACT) : NULL;
        json_decref(breaker);
        json_decref(storm);
        if (!btext || !stext) {
                free(btext);
                free(stext);
                return -ENOMEM;
        }
        snprintf(rec.pool_id, sizeof(rec.pool_id), "%s", ps_replica_pool_id(r));
        snprintf(rec.replica_id, sizeof(rec.replica_id), "%s", ps_replica_id(r));
        rec.crash_count = st.crash_count;
        rec.restart_count = st.restart_count;
        rec.backoff_ms = st.backoff_ms;
        rec.breaker = btext;
        rec.storm = stext;
        rc = ps_store_put_policy(s, &rec);
        free(btext);
        free(stext);
        return rc;
}

static int circuits_from(const json_t *circuits, ps_replica_policy_state *st) {
        size_t i;
        json_t *c;

        if (!json_is_array(circuits) || json_array_size(circuits) > PD_CRASH_FAMILY_MAX)
                return -EBADMSG;
        json_array_foreach(circuits, i, c) {
                pd_breaker *b = &st->breakers.circuit[i];
                int state = -1, trial = 0;
                json_int_t failures = 0, opens = 0, until = 0, period = 0;

                if (json_unpack((json_t *) c, "{s:i, s:I, s:I, s:I, s:I, s:b}", "state", &state,
                                "failures", &failures, "opens", &opens, "open_until", &until,
                                "open_period_ms", &period, "trial_taken", &trial) != 0 ||
                    state < 0 || state >= PD_BREAKER_STATE_MAX || failures < 0 || opens < 0)
                        return -EBADMSG;
                *b = (pd_breaker) { .state = (pd_breaker_state) state, .failures = (unsigned) failures,
                                    .opens = (unsigned) opens, .open_until_ms = until,
                                    .open_period_ms = period, .trial_taken = trial };
        }
        return 0;
}

static int window_from(const json_t *storm, ps_replica_policy_state *st) {
        const json_t *window;
        json_int_t storms = 0;
        size_t i;
        json_t *e;

        if (json_unpack((json_t *) storm, "{s:I, s:o}", "storms", &storms, "window", &window) != 0 ||
            !json_is_array(window) || json_array_size(window) > PD_STORM_LIMIT_MAX || storms < 0)
                return -EBADMSG;
        st->storm.storms = (unsigned) storms;
        st->storm.head = 0;
        st->storm.count = 0;
        json_array_foreach(window, i, e) {
                json_int_t at = 0;
                int cls = -1;

                if (json_unpack(e, "[I, i]", &at, &cls) != 0 || cls < 0 || cls >= PD_CRASH_CLASS_MAX)
                        return -EBADMSG;
                st->storm.ring[i] = (pd_storm_entry) { .at_ms = at, .cls = (pd_crash_class) cls };
                st->storm.count++;
        }
        return 0;
}

int ps_store_restore_policy(ps_store *s, ps_replica *r) {
        ps_replica_policy_state st;
        ps_store_policy rec;
        json_t *breaker = NULL, *storm = NULL;
        json_int_t crashes = 0, last_delay = 0;
        int rc;

        if (!s || !r)
                return -EINVAL;
        rc = ps_store_get_policy(s, ps_replica_pool_id(r), ps_replica_id(r), &rec);
        if (rc != 0)
                return rc;
        ps_replica_policy_state_get(r, &st);
        breaker = rec.breaker ? json_loads(rec.breaker, 0, NULL) : NULL;
        storm = rec.storm ? json_loads(rec.storm, 0, NULL) : NULL;
        rc = breaker && storm ? 0 : -EBADMSG;
        if (rc == 0)
                rc = circuits_from(json_object_get(breaker, "circuits"), &st);
        if (rc == 0 && json_unpack(breaker, "{s:{s:I, s:I}}", "backoff", "crashes", &crashes,
                                   "last_delay_ms", &last_delay) != 0)
                rc = -EBADMSG;
        if (rc == 0)
                rc = window_from(storm, &st);
        json_decref(breaker);
        json_decref(storm);
        if (rc != 0 || crashes < 0)
                return rc ? rc : -EBADMSG;
        st.crash_count = rec.crash_count;
        st.restart_count = rec.restart_count;
        st.backoff_ms = rec.backoff_ms;
        st.backoff.crashes = (unsigned) crashes;
        st.backoff.last_delay_ms = last_delay;
        ps_replica_policy_state_set(r, &st);
        return 0;
}

int ps_store_save_replica_policy(ps_registry *reg, const char *pool_id, const char *replica_id) {
        ps_store *s = reg ? ps_store_of(reg) : NULL;
        ps_replica *r;

        if (!s || !pool_id || !replica_id)
                return 0;
        for (size_t i = 0; (r = ps_registry_replica_at(reg, pool_id, i)); i++)
                if (strcmp(ps_replica_id(r), replica_id) == 0)
                        return ps_store_save_policy(s, r);
        return 0;
}
