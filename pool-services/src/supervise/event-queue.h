/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The events a replica's machine has still to take, in order: produced
 * while actions run, so the machine is never re-entered. A ring that
 * starts small and doubles up to PS_EVENT_QUEUE_MAX: most replicas never
 * hold more than a few events at once, and a node may run a thousand of
 * them. An event's detail is copied in (up to PS_EVENT_DETAIL_MAX).
 */
#include <stdbool.h>

#include "pool-domain/lifecycle.h"

#define PS_EVENT_QUEUE_MAX 32
#define PS_EVENT_DETAIL_MAX 256

typedef struct ps_event_queue ps_event_queue;

/* An event taken out: ev.detail points into detail (or is NULL). */
typedef struct ps_queued_event {
        pd_event ev;
        char detail[PS_EVENT_DETAIL_MAX];
} ps_queued_event;

/* Holds nothing until the first push. NULL on OOM. */
ps_event_queue *ps_event_queue_new(void);
/* Accepts NULL; returns NULL. */
ps_event_queue *ps_event_queue_free(ps_event_queue *q);
/* false, and nothing queued, when it is full (or memory ran out). */
bool ps_event_queue_push(ps_event_queue *q, const pd_event *ev);
/* The oldest event into out; false when there is none. */
bool ps_event_queue_pop(ps_event_queue *q, ps_queued_event *out);
bool ps_event_queue_empty(const ps_event_queue *q);
