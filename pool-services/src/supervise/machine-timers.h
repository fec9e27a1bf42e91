/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The timers a replica's machine arms and cancels (PD_ACT_TIMER_ARM,
 * PD_ACT_TIMER_CANCEL): one per kind and engine instance, on the loop.
 * For supervise/replica.c.
 */
#include <stdint.h>

#include "pool-domain/lifecycle.h"

struct event_base;

typedef struct ps_machine_timers ps_machine_timers;

/* A timer went off, from the loop. */
typedef void (*ps_machine_timer_fn)(pd_timer timer, pd_instance_id inst, void *userdata);

/* NULL on OOM. */
ps_machine_timers *ps_machine_timers_new(struct event_base *base, ps_machine_timer_fn fn,
                                         void *userdata);
/* Accepts NULL; returns NULL. */
ps_machine_timers *ps_machine_timers_free(ps_machine_timers *t);
/* Goes off in delay_ms (at once when not positive); an armed one moves. */
void ps_machine_timers_arm(ps_machine_timers *t, pd_timer timer, pd_instance_id inst,
                           int64_t delay_ms);
void ps_machine_timers_cancel(ps_machine_timers *t, pd_timer timer, pd_instance_id inst);
