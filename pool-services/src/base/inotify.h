/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/inotify.h>

struct event_base;

/*
 * One inotify instance read on the loop. Whenever it is readable, every
 * queued event is handed to on_event in order (IN_Q_OVERFLOW and
 * IN_IGNORED included: the owner rescans or re-adds its watch), then
 * on_batch is called once (may be NULL) so the owner can act on what the
 * batch marked. Never blocks: the descriptor is non-blocking and read
 * until EAGAIN.
 */
typedef struct ps_inotify ps_inotify;

typedef void (*ps_inotify_event_fn)(const struct inotify_event *ev, void *userdata);
typedef void (*ps_inotify_batch_fn)(void *userdata);

/* NULL with errno set (inotify_init1's, or ENOMEM). */
ps_inotify *ps_inotify_new(struct event_base *base, ps_inotify_event_fn on_event,
                           ps_inotify_batch_fn on_batch, void *userdata);
ps_inotify *ps_inotify_free(ps_inotify *in);

/* inotify_add_watch / inotify_rm_watch on this instance. */
int ps_inotify_add(ps_inotify *in, const char *path, uint32_t mask);
void ps_inotify_rm(ps_inotify *in, int wd);
