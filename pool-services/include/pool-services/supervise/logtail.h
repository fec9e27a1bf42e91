/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct event_base;

/*
 * Follows a log file as it is written (inotify on the loop, no polling) and
 * hands over complete lines. A partial line waits for its newline; a line
 * longer than 16 KiB is handed over in pieces. Truncation (the offset shrinks)
 * restarts from 0; replacement of the file (rotation: IN_MOVE_SELF,
 * IN_DELETE_SELF) reopens the path when it reappears.
 */
typedef struct ps_logtail ps_logtail;

/* line is not NUL-terminated and has no trailing newline; borrowed. */
typedef void (*ps_logtail_line_fn)(const char *line, size_t len, void *userdata);

/* Starts reading at byte `offset` (the engine's start offset). NULL with
 * errno set when the file cannot be watched. */
ps_logtail *ps_logtail_new(struct event_base *base, const char *path, int64_t offset,
                           ps_logtail_line_fn on_line, void *userdata);
/* Reads whatever is there now (also used right before an exit is handled,
 * so the last lines are seen before the exit). */
void ps_logtail_drain(ps_logtail *tail);
/* Seconds-free progress signal for stall detection: the offset read so far. */
int64_t ps_logtail_offset(const ps_logtail *tail);
ps_logtail *ps_logtail_free(ps_logtail *tail);
/* Changes what the line callback receives (its owner moved). */
void ps_logtail_set_userdata(ps_logtail *tail, void *userdata);
