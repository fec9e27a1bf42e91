/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Who waits for which of a replica's answers (a preload, a drain, a
 * reload: pd_reply), and the answers a step of its machine gave, to be
 * handed out once the step is over (a callback may free the replica).
 * For supervise/replica.c.
 */
#include <stddef.h>

#include "pool-domain/lifecycle.h"
#include "pool-services/supervise/replica.h"

typedef struct ps_replies ps_replies;

#define PS_REPLY_BATCH_MAX 4

/* The answers of one step. Starts zeroed. */
typedef struct ps_reply_batch {
        struct {
                ps_done_fn fn;
                void *userdata;
                int rc;
                char text[PD_ACTION_TEXT_MAX];
        } out[PS_REPLY_BATCH_MAX];
        size_t n;
} ps_reply_batch;

/* NULL on OOM. */
ps_replies *ps_replies_new(void);
/* Whoever still waits is answered (text) first. Accepts NULL; returns NULL. */
ps_replies *ps_replies_free(ps_replies *w, const char *text);
/* fn waits for reply (in place of whoever did). */
void ps_replies_expect(ps_replies *w, pd_reply reply, ps_done_fn fn, void *userdata);
/* Whoever waits for reply is gone: it is not answered. */
void ps_replies_forget(ps_replies *w, pd_reply reply);
/* A PD_ACT_REPLY: its answer goes into b for whoever waits for it. */
void ps_replies_take(ps_replies *w, const pd_action *a, ps_reply_batch *b);
/* Hands out the answers in b. */
void ps_reply_batch_send(const ps_reply_batch *b);
