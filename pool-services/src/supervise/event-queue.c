/* SPDX-License-Identifier: MIT */
/* The events a replica's machine has still to take (supervise/event-queue.h). */
#include <stdio.h>
#include <stdlib.h>

#include "supervise/event-queue.h"

struct ps_event_queue {
        ps_queued_event *ring;      /* of cap, grown on demand            */
        unsigned cap, head, len;
};

ps_event_queue *ps_event_queue_new(void) {
        return calloc(1, sizeof(ps_event_queue));
}

ps_event_queue *ps_event_queue_free(ps_event_queue *q) {
        if (q)
                free(q->ring);
        free(q);
        return NULL;
}

static bool grow(ps_event_queue *q) {
        unsigned cap = q->cap ? q->cap * 2 : 4;
        ps_queued_event *ring;

        if (cap > PS_EVENT_QUEUE_MAX)
                return false;
        ring = malloc(cap * sizeof(*ring));
        if (!ring)
                return false;
        for (unsigned i = 0; i < q->len; i++)
                ring[i] = q->ring[(q->head + i) % q->cap];
        free(q->ring);
        q->ring = ring;
        q->cap = cap;
        q->head = 0;
        return true;
}

bool ps_event_queue_push(ps_event_queue *q, const pd_event *ev) {
        ps_queued_event *e;

        if (q->len == q->cap && !grow(q))
                return false;
        e = &q->ring[(q->head + q->len++) % q->cap];
        e->ev = *ev;
        e->detail[0] = '\0';
        if (ev->detail)
                snprintf(e->detail, sizeof(e->detail), "%s", ev->detail);
        e->ev.detail = e->detail[0] ? e->detail : NULL;
        return true;
}

bool ps_event_queue_pop(ps_event_queue *q, ps_queued_event *out) {
        if (q->len == 0)
                return false;
        *out = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        out->ev.detail = out->detail[0] ? out->detail : NULL;
        return true;
}

bool ps_event_queue_empty(const ps_event_queue *q) {
        return q->len == 0;
}
