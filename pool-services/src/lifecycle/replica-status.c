/* SPDX-License-Identifier: MIT */
/*
 * What a replica is and runs, read and changed from outside the machine:
 * its ids, spec, policy, URL, the handoff of an external replica, and the
 * snapshot the API serves.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle/replica-private.h"
#include "pool-domain/crash.h"
#include "pool-domain/lease.h"

const char *ps_replica_device_mask(const ps_replica *r) {
        return r->current ? r->current->device_mask : NULL;
}

const char *ps_replica_pool_id(const ps_replica *r) { return r->pool_id; }
const char *ps_replica_id(const ps_replica *r) { return r->replica_id; }
const char *ps_replica_state(const ps_replica *r) { return pd_state_to_string(r->lc.state); }
bool ps_replica_live(const ps_replica *r) { return pd_lifecycle_live(&r->lc); }
bool ps_replica_ready(const ps_replica *r) { return pd_lifecycle_ready(&r->lc); }
bool ps_replica_draining(const ps_replica *r) { return pd_lifecycle_draining(&r->lc); }
bool ps_replica_external(const ps_replica *r) { return r->lc.external; }
unsigned ps_replica_crash_count(const ps_replica *r) { return r->lc.crash_count; }
unsigned ps_replica_restart_count(const ps_replica *r) { return r->lc.restart_count; }

int ps_replica_pid(const ps_replica *r) {
        const ps_engine *e = r->inst[PD_INSTANCE_PRIMARY].engine;

        return e ? (int) ps_engine_pid(e) : 0;
}

int ps_replica_url(const ps_replica *r, char *buf, size_t len) {
        if (r->ext_url)
                return snprintf(buf, len, "%s", r->ext_url);
        return ps_engine_spec_url(r->current, buf, len);
}

const pd_lifecycle *ps_replica_lifecycle(const ps_replica *r) {
        return &r->lc;
}

const ps_engine_spec *ps_replica_spec(const ps_replica *r) {
        return r->current;
}

uint16_t ps_replica_home_port(const ps_replica *r) {
        return r->home_port;
}

int ps_replica_stage(ps_replica *r, const ps_engine_spec *spec) {
        ps_engine_spec *copy = NULL;

        if (spec && !(copy = ps_engine_spec_copy(spec)))
                return -ENOMEM;
        ps_engine_spec_free(r->staged);
        r->staged = copy;
        return 0;
}

const ps_policy *ps_replica_policy(const ps_replica *r) {
        return r->policy;
}

int ps_replica_set_policy(ps_replica *r, const ps_policy *pol) {
        ps_policy *copy = ps_policy_copy(pol);

        if (!copy)
                return -ENOMEM;
        ps_policy_free(r->policy);
        r->policy = copy;
        return 0;
}

static void set_str(char **at, const char *value) {
        if (!value)
                return;
        free(*at);
        *at = strdup(value);
}

int ps_replica_take_handoff(ps_replica *r, const ps_replica_handoff *h) {
        pd_event ev = { .type = PD_EV_HANDOFF_APPEARED };

        /* Seed semantics: what the handoff says is set, the rest stays
         * (but for the slots, below). */
        set_str(&r->current->engine_version, h->engine_version);
        set_str(&r->current->engine, h->engine);
        set_str(&r->current->device_mask, h->device_mask);
        set_str(&r->ext_url, h->url);
        set_str(&r->current->model_id, h->model_id);
        /* The slots are the file's, every time: absent ones are not kept. */
        r->current->slots = h->slots;
        r->has_slots_free = h->has_slots_free;
        r->ext_slots_free = h->slots_free;
        r->last_heartbeat_wall_ms = ps_replica_wall_now(r);
        r->ready_wall_ms = r->last_heartbeat_wall_ms;
        return ps_replica_feed(r, &ev);
}

static json_t *opt_str(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *opt_time(int64_t wall_ms) {
        return wall_ms > 0 ? json_integer(wall_ms) : json_null();
}

json_t *ps_replica_snapshot(const ps_replica *r) {
        const pd_lifecycle *lc = &r->lc;
        const ps_engine_spec *s = r->current;
        const replica_inst *in = &r->inst[PD_INSTANCE_PRIMARY];
        const pd_breaker *gen = &lc->breakers.circuit[PD_CRASH_FAMILY_GENERAL];
        bool ready = pd_lifecycle_ready(lc);
        char url[300];
        uint32_t slots_free;
        int64_t started = in->engine ? in->started_wall_ms : 0;
        int64_t ready_at = ready ? r->ready_wall_ms : 0;
        json_t *j;

        ps_replica_url(r, url, sizeof(url));
        slots_free = r->has_slots_free ? r->ext_slots_free :
                     pd_sat_sub_u32(s->slots, in->leases);
        if (!ready)
                slots_free = 0;
        j = json_pack("{s:s, s:s, s:b, s:b, s:b, s:b, s:I, s:s, s:o, s:o, s:o, s:o, s:o,"
                         " s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:o,"
                         " s:{s:s, s:I, s:I, s:o}, s:o, s:o, s:I}",
                         "replica_id", r->replica_id,
                         "state", pd_state_to_string(lc->state),
                         "live", pd_lifecycle_live(lc),
                         "ready", ready,
                         "draining", pd_lifecycle_draining(lc),
                         "external", lc->external,
                         "pid", (json_int_t) (in->engine ? ps_engine_pid(in->engine) : 0),
                         "url", url,
                         "engine", opt_str(s->engine),
                         "engine_version", opt_str(s->engine_version),
                         "model_id", opt_str(s->model_id),
                         "model_digest", opt_str(s->model_digest),
                         "device_mask", opt_str(s->device_mask),
                         "slots_total", (json_int_t) s->slots,
                         "slots_free", (json_int_t) slots_free,
                         "active_leases", (json_int_t) ps_replica_leases(r),
                         "last_error", lc->last_error[0] ? json_string(lc->last_error) : json_null(),
                         "last_error_class", lc->last_error_cls < PD_CRASH_CLASS_MAX ?
                                json_string(pd_crash_class_to_string(lc->last_error_cls)) : json_null(),
                         "last_error_at", opt_time(lc->last_error_at_ms ?
                                ps_replica_mono_to_wall(r, lc->last_error_at_ms) : 0),
                         "last_heartbeat", opt_time(r->last_heartbeat_wall_ms),
                         "restart_count", (json_int_t) lc->restart_count,
                         "crash_count", (json_int_t) lc->crash_count,
                         "restarts_in_window", (json_int_t) pd_storm_in_window(&lc->storm,
                                &ps_replica_domain_policy(r)->storm, ps_replica_mono_now(r)),
                         "backoff_ms", (json_int_t) lc->backoff_ms,
                         "next_restart_at", opt_time(ps_replica_mono_to_wall(r, lc->next_restart_at_ms)),
                         "breaker", "state", pd_breaker_state_to_string(pd_breaker_set_state(&lc->breakers)),
                                    "failures", (json_int_t) gen->failures,
                                    "opens", (json_int_t) gen->opens,
                                    "open_until", opt_time(pd_breaker_set_state(&lc->breakers) == PD_BREAKER_OPEN ?
                                        ps_replica_mono_to_wall(r, pd_breaker_set_open_until(&lc->breakers)) : 0),
                         "started_at", opt_time(started),
                         "ready_at", opt_time(ready_at),
                         "uptime_s", (json_int_t) (started ? (ps_replica_wall_now(r) - started) / 1000 : 0));
        if (j && json_object_set_new(j, "driver_resets", json_integer(lc->driver_resets)) < 0)
                j = (json_decref(j), NULL);
        return j;
}
