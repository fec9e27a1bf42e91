/* SPDX-License-Identifier: MIT */
/*
 * lifecycle-crash: steps the lifecycle machine of one replica through a
 * start, a crash, the backoff and the restart, printing each event, the
 * state it leads to and the actions the caller would carry out. No
 * process, no clock: time is a number the program advances.
 *
 * Builds against an installed pool-domain (C or C++):
 *
 *     cc lifecycle-crash.c $(pkg-config --cflags --libs pool-domain) \
 *        -o lifecycle-crash
 */
#include <stdio.h>
#include <string.h>

#include <pool-domain/pool-domain.h>

static pd_lifecycle lc;
static pd_policy policy;
static pd_rng rng;
static int64_t restart_at;   /* the RESTART timer the machine armed */

/* Applies one event at now_ms and prints what follows. 0 or the rc. */
static int step(const pd_event *ev, int64_t now_ms) {
        pd_actions out;
        int rc = pd_lifecycle_step(&lc, &policy, ev, now_ms, &rng, &out);

        printf("t=%-5lld %-14s -> %-10s", (long long) now_ms, pd_event_type_to_string(ev->type),
               pd_state_to_string(lc.state));
        if (rc != 0) {
                printf(" refused: %s\n", pd_strerror(rc));
                return rc;
        }
        for (size_t i = 0; i < out.count; i++) {
                const pd_action *a = &out.item[i];

                printf(" %s", pd_action_type_to_string(a->type));
                if (a->type == PD_ACT_TIMER_ARM) {
                        printf("(%s@%lld)", pd_timer_to_string(a->timer), (long long) a->at_ms);
                        if (a->timer == PD_TIMER_RESTART)
                                restart_at = a->at_ms;
                }
        }
        printf("\n");
        return 0;
}

int main(void) {
        pd_event ev;

        pd_policy_init(&policy);
        policy.backoff.jitter = 0;       /* exact numbers for the printout */
        pd_lifecycle_init(&lc);
        pd_rng_seed(&rng, 42);
        printf("pool-domain %s\n", pd_version());

        memset(&ev, 0, sizeof(ev));
        ev.type = PD_EV_PRELOAD;
        step(&ev, 0);
        ev.type = PD_EV_SPAWNED;
        step(&ev, 10);
        ev.type = PD_EV_PROBE_OK;
        step(&ev, 1500);

        /* The engine dies of a signal 2 s after it became ready. */
        ev.type = PD_EV_EXITED;
        ev.exit.exited = false;
        ev.exit.signo = 11;
        step(&ev, 3500);
        printf("crash_count=%u backoff_ms=%lld last_error=\"%s\"\n", lc.crash_count,
               (long long) lc.backoff_ms, lc.last_error);
        if (lc.state != PD_STATE_BACKOFF || restart_at == 0) {
                fprintf(stderr, "lifecycle-crash: no restart scheduled\n");
                return 1;
        }

        /* The backoff ends: the machine spawns again, and it comes up. */
        memset(&ev, 0, sizeof(ev));
        ev.type = PD_EV_TIMER;
        ev.timer = PD_TIMER_RESTART;
        step(&ev, restart_at);
        ev.type = PD_EV_SPAWNED;
        step(&ev, restart_at + 10);
        ev.type = PD_EV_PROBE_OK;
        step(&ev, restart_at + 1200);
        printf("restart_count=%u state=%s\n", lc.restart_count, pd_state_to_string(lc.state));

        /* An operator request that makes no sense now is refused. */
        ev.type = PD_EV_PRELOAD;
        return step(&ev, restart_at + 2000) == PD_E_TRANSITION && pd_lifecycle_ready(&lc) ? 0 : 1;
}
