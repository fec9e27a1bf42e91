/* SPDX-License-Identifier: MIT */
/* The timers of a replica's machine (supervise/machine-timers.h). */
#include <stdlib.h>

#include <event2/event.h>

#include "supervise/machine-timers.h"

typedef struct machine_timer {
        ps_machine_timers *owner;
        pd_timer timer;
        pd_instance_id inst;
        struct event *ev;
} machine_timer;

struct ps_machine_timers {
        ps_machine_timer_fn fn;
        void *userdata;
        machine_timer at[PD_TIMER_MAX][PD_INSTANCE_MAX];
};

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        machine_timer *t = userdata;

        (void) fd;
        (void) what;
        t->owner->fn(t->timer, t->inst, t->owner->userdata);
}

ps_machine_timers *ps_machine_timers_new(struct event_base *base, ps_machine_timer_fn fn,
                                         void *userdata) {
        ps_machine_timers *mt = calloc(1, sizeof(*mt));

        if (!mt)
                return NULL;
        mt->fn = fn;
        mt->userdata = userdata;
        for (int t = 0; t < PD_TIMER_MAX; t++)
                for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                        machine_timer *one = &mt->at[t][i];

                        *one = (machine_timer) { .owner = mt, .timer = (pd_timer) t,
                                                 .inst = (pd_instance_id) i };
                        one->ev = evtimer_new(base, on_timer, one);
                        if (!one->ev)
                                return ps_machine_timers_free(mt);
                }
        return mt;
}

ps_machine_timers *ps_machine_timers_free(ps_machine_timers *mt) {
        if (!mt)
                return NULL;
        for (int t = 0; t < PD_TIMER_MAX; t++)
                for (int i = 0; i < PD_INSTANCE_MAX; i++)
                        if (mt->at[t][i].ev)
                                event_free(mt->at[t][i].ev);
        free(mt);
        return NULL;
}

void ps_machine_timers_arm(ps_machine_timers *mt, pd_timer timer, pd_instance_id inst,
                           int64_t delay_ms) {
        struct timeval tv;

        if (delay_ms < 0)
                delay_ms = 0;
        tv = (struct timeval) { .tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000 };
        evtimer_add(mt->at[timer][inst].ev, &tv);
}

void ps_machine_timers_cancel(ps_machine_timers *mt, pd_timer timer, pd_instance_id inst) {
        evtimer_del(mt->at[timer][inst].ev);
}
