/* SPDX-License-Identifier: MIT */
/*
 * The health probes of a replica's engines: a quick schedule while one
 * loads, the policy's interval once it is ready. Each answer becomes an
 * event for the lifecycle machine.
 */
#include <string.h>

#include <event2/event.h>

#include "lifecycle/replica-private.h"

/*
 * While an engine loads: 5, 10, 20 ms, then every 25 ms for the first
 * second (most small models come up within it, and a quick look costs the
 * engine nothing), then every 50 ms -- 20 probes per second for as long as a
 * big model takes. Output from the engine triggers probes besides these.
 */
#define LOAD_FAST_PHASE_MS 1000
#define LOAD_FAST_INTERVAL_MS 25
#define LOAD_SLOW_INTERVAL_MS 50

static int64_t loading_probe_delay(replica_inst *in, int64_t now) {
        int64_t delay = in->probe_delay_ms;

        if (in->probe_delay_ms < LOAD_FAST_INTERVAL_MS)
                in->probe_delay_ms = in->probe_delay_ms * 2 > LOAD_FAST_INTERVAL_MS ?
                                     LOAD_FAST_INTERVAL_MS : in->probe_delay_ms * 2;
        else if (now - in->probe_started_ms >= LOAD_FAST_PHASE_MS)
                in->probe_delay_ms = LOAD_SLOW_INTERVAL_MS;
        return delay;
}

void ps_replica_probe_schedule(replica_inst *in, int64_t delay_ms) {
        struct timeval tv = ps_replica_ms_to_tv(delay_ms);

        evtimer_add(in->probe_timer, &tv);
}

static void on_probe(ps_probe_result result, long http_status, const char *detail,
                     void *userdata) {
        replica_inst *in = userdata;
        ps_replica *r = in->owner;
        const pd_policy *p = ps_replica_domain_policy(r);
        int64_t now = ps_replica_mono_now(r);
        pd_event_type type;

        in->probe = NULL;
        if (!in->probing)
                return;

        if (!ps_replica_inst_ready(in)) {
                /* Loading: a changing answer is progress; 200 is readiness. */
                if (http_status != in->last_http_status) {
                        in->last_http_status = http_status;
                        in->last_progress_ms = now;
                }
                if (result == PS_PROBE_OK) {
                        ps_replica_enqueue_simple(r, PD_EV_PROBE_OK, in->id, NULL);
                        ps_replica_run(r);
                        /* ready now: the steady schedule takes over */
                        if (in->probing && !in->probe && !evtimer_pending(in->probe_timer, NULL))
                                ps_replica_probe_schedule(in, p->health.interval_ms);
                        return;
                }
                if (p->health.stall_timeout_ms > 0 &&
                    now - in->last_progress_ms >= p->health.stall_timeout_ms) {
                        char why[REPLICA_DETAIL_MAX];

                        snprintf(why, sizeof(why), "no output and no change in health answer for %lld ms",
                                 (long long) (now - in->last_progress_ms));
                        in->last_progress_ms = now;
                        ps_replica_enqueue_simple(r, PD_EV_STALL, in->id, why);
                        ps_replica_run(r);
                        if (!in->probing)
                                return;
                }
                if (in->probe_again) {
                        in->probe_again = false;
                        ps_replica_probe_send(in);
                        return;
                }
                ps_replica_probe_schedule(in, loading_probe_delay(in, now));
                return;
        }

        switch (result) {
        case PS_PROBE_OK:
                type = PD_EV_PROBE_OK;
                break;
        case PS_PROBE_TIMEOUT:
                type = PD_EV_PROBE_TIMEOUT;
                break;
        case PS_PROBE_FAILED:
        case PS_PROBE_RESULT_MAX:
        default:
                type = PD_EV_PROBE_FAILED;
                break;
        }
        if (type != PD_EV_PROBE_OK)
                REPLICA_EMIT(r, PS_EVENT_PROBE_FAILED, PS_LOG_WARN, "health probe failed",
                             PS_FIELD_STR("detail", detail),
                             PS_FIELD_INT("consecutive", r->lc.inst[in->id].probe_failures + 1));
        ps_replica_enqueue_simple(r, type, in->id, detail);
        ps_replica_run(r);
        if (in->probing && !in->probe && !evtimer_pending(in->probe_timer, NULL))
                ps_replica_probe_schedule(in, p->health.interval_ms);
}

void ps_replica_probe_send(replica_inst *in) {
        ps_replica *r = in->owner;
        const ps_engine_spec *spec = in->id == PD_INSTANCE_SURGE && r->staged ? r->staged : r->current;
        const pd_policy *p = ps_replica_domain_policy(r);
        char url[512];
        int64_t timeout = p->health.timeout_ms > 0 ? p->health.timeout_ms : 1000;
        int rc;

        if (in->probe) {
                in->probe_again = true;
                return;
        }
        ps_engine_spec_url(spec, url, sizeof(url) - 256);
        strncat(url, ps_policy_health_path(r->policy), sizeof(url) - strlen(url) - 1);
        in->last_probe_ms = ps_replica_mono_now(r);
        rc = ps_prober_get(r->ctx->prober, url, timeout, on_probe, in, &in->probe);
        if (rc < 0) {
                REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "cannot start health probe",
                             PS_FIELD_STR("url", url), PS_FIELD_STR("error", strerror(-rc)));
                ps_replica_probe_schedule(in, p->health.interval_ms);
        }
}

void ps_replica_on_probe_timer(evutil_socket_t fd, short what, void *userdata) {
        replica_inst *in = userdata;

        (void) fd;
        (void) what;
        if (in->probing)
                ps_replica_probe_send(in);
}

void ps_replica_probe_start(replica_inst *in) {
        in->probing = true;
        in->probe_again = false;
        in->probe_delay_ms = 5;
        in->probe_started_ms = ps_replica_mono_now(in->owner);
        in->last_http_status = -1;
        in->last_progress_ms = ps_replica_mono_now(in->owner);
        evtimer_del(in->probe_timer);
        ps_replica_probe_send(in);
}

void ps_replica_probe_stop(replica_inst *in) {
        in->probing = false;
        in->probe_again = false;
        evtimer_del(in->probe_timer);
        if (in->probe) {
                ps_probe_cancel(in->probe);
                in->probe = NULL;
        }
}
