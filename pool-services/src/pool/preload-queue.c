/* SPDX-License-Identifier: MIT */
/* Preloads spread over loop turns, a bounded batch per turn. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pool-services/pool/preload-queue.h"
#include "pool-services/base/clock.h"

typedef struct queued {
        char *pool_id;
        char *replica_id;
        ps_done_fn done;
        void *userdata;
        struct queued *next;
} queued;

struct ps_preload_queue {
        ps_registry *reg;
        struct event *turn;
        unsigned per_turn;
        queued *head, **tail;
        size_t pending;
};

static void queued_free(queued *e) {
        free(e->pool_id);
        free(e->replica_id);
        free(e);
}

static void start_one(ps_preload_queue *q, queued *e) {
        ps_replica *r = ps_registry_find(q->reg, e->pool_id, e->replica_id);
        char err[512];
        int rc;

        if (!r) {
                snprintf(err, sizeof(err), "pool %s replica %s: removed before its start",
                         e->pool_id, e->replica_id);
                e->done(PS_E_NOT_FOUND, err, e->userdata);
                return;
        }
        rc = ps_replica_preload(r, e->done, e->userdata, err, sizeof(err));
        if (rc != 0)
                e->done(rc, err, e->userdata);
}

/* One batch -- per_turn starts, or fewer once the turn has taken
 * PS_PRELOAD_TURN_MS -- and the next waits for a later turn, after the
 * loop has polled. */
static void on_turn(evutil_socket_t fd, short what, void *userdata) {
        ps_preload_queue *q = userdata;
        struct timeval now = { 0, 0 };
        int64_t began = ps_clock_mono_ms(ps_clock_system());

        (void) fd;
        (void) what;
        for (unsigned n = 0; n < q->per_turn && q->head; n++) {
                if (n > 0 && ps_clock_mono_ms(ps_clock_system()) - began >= PS_PRELOAD_TURN_MS)
                        break;
                queued *e = q->head;

                q->head = e->next;
                if (!q->head)
                        q->tail = &q->head;
                q->pending--;
                start_one(q, e);
                queued_free(e);
        }
        if (q->head)
                evtimer_add(q->turn, &now);
}

ps_preload_queue *ps_preload_queue_new(struct event_base *base, ps_registry *reg,
                                       unsigned per_turn) {
        ps_preload_queue *q;

        if (!base || !reg)
                return NULL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return NULL;
        q->reg = reg;
        q->per_turn = per_turn ? per_turn : PS_PRELOAD_PER_TURN;
        q->tail = &q->head;
        q->turn = evtimer_new(base, on_turn, q);
        if (!q->turn) {
                free(q);
                return NULL;
        }
        return q;
}

ps_preload_queue *ps_preload_queue_free(ps_preload_queue *q) {
        if (!q)
                return NULL;
        event_free(q->turn);
        while (q->head) {
                queued *e = q->head;

                q->head = e->next;
                queued_free(e);
        }
        free(q);
        return NULL;
}

int ps_preload_queue_add(ps_preload_queue *q, const char *pool_id, const char *replica_id,
                         ps_done_fn done, void *userdata) {
        struct timeval now = { 0, 0 };
        queued *e;

        if (!q || !pool_id || !replica_id || !done)
                return -EINVAL;
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->pool_id = strdup(pool_id);
        e->replica_id = strdup(replica_id);
        if (!e->pool_id || !e->replica_id) {
                queued_free(e);
                return -ENOMEM;
        }
        e->done = done;
        e->userdata = userdata;
        *q->tail = e;
        q->tail = &e->next;
        q->pending++;
        if (!evtimer_pending(q->turn, NULL))
                evtimer_add(q->turn, &now);
        return 0;
}

size_t ps_preload_queue_cancel(ps_preload_queue *q, int rc, const char *message) {
        queued *list;
        size_t n = 0;

        if (!q)
                return 0;
        evtimer_del(q->turn);
        /* Detached first: a done function may queue again. */
        list = q->head;
        q->head = NULL;
        q->tail = &q->head;
        q->pending = 0;
        while (list) {
                queued *e = list;

                list = e->next;
                e->done(rc, message, e->userdata);
                queued_free(e);
                n++;
        }
        return n;
}

size_t ps_preload_queue_pending(const ps_preload_queue *q) {
        return q ? q->pending : 0;
}
