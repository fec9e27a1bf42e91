/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "pool-services/pool/registry.h"

struct event_base;

/*
 * Preloads spread over loop turns. A node with a thousand pools must not
 * fork and exec a thousand engines in one turn: the API would not answer
 * for seconds, and probes due meanwhile would time out. The queue starts
 * at most `per_turn` preloads per turn, fewer once the turn has spent
 * PS_PRELOAD_TURN_MS on them (a loaded machine forks slowly), and lets the
 * loop serve everything else between two batches. Replicas are named by id and looked up when
 * their turn comes: one removed meanwhile is answered PS_E_NOT_FOUND.
 */
typedef struct ps_preload_queue ps_preload_queue;

#define PS_PRELOAD_PER_TURN 8
#define PS_PRELOAD_TURN_MS 10

/* per_turn 0: PS_PRELOAD_PER_TURN. NULL when out of memory. */
ps_preload_queue *ps_preload_queue_new(struct event_base *base, ps_registry *reg,
                                       unsigned per_turn);
/* Drops what has not started (their done functions are not called). */
ps_preload_queue *ps_preload_queue_free(ps_preload_queue *q);

/*
 * Queues a preload of one registered replica; done runs as for
 * ps_replica_preload() (with its refusal when it refuses at once). 0 or
 * -ENOMEM, -EINVAL.
 */
int ps_preload_queue_add(ps_preload_queue *q, const char *pool_id, const char *replica_id,
                         ps_done_fn done, void *userdata);

/*
 * Answers every preload not started yet with rc and message (the daemon
 * is shutting down: nothing more is started) and empties the queue; what
 * is added later is queued as before. Returns how many were dropped.
 */
size_t ps_preload_queue_cancel(ps_preload_queue *q, int rc, const char *message);

/* Queued and not started yet. */
size_t ps_preload_queue_pending(const ps_preload_queue *q);
