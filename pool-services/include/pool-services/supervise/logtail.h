/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/*
 * Follows a log file as it is written (inotify on the loop, no polling) and
 * hands over complete lines. A partial line waits for its newline; a line
 * longer than 16 KiB is handed over in pieces. Truncation (the offset shrinks)
 * restarts from 0; replacement of the file (rotation: IN_MOVE_SELF,
 * IN_DELETE_SELF) reopens the path when it reappears. One turn of the loop
 * reads at most 64 KiB of a file; the rest comes on the next turns, so a
 * writer that floods its log cannot hold the loop.
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
/*
 * Caps the file: once it is above max_bytes (0: no cap), it is copied to
 * <path>.1 (replacing it) over a few turns of the loop, 1 MiB a turn, then
 * truncated to 0 in place: the writer keeps its descriptor (O_APPEND).
 * Lines written between the last copy and the truncation are lost to the
 * copy, never to the follower. on_rotate (may be NULL) hears each
 * rotation, with the line callback's userdata: rc 0, or -errno when it
 * failed (then no new try before the file has grown by another max_bytes).
 */
typedef void (*ps_logtail_rotate_fn)(int rc, const char *path, void *userdata);
void ps_logtail_set_max_bytes(ps_logtail *tail, int64_t max_bytes, ps_logtail_rotate_fn on_rotate);

/* Seconds-free progress signal for stall detection: the offset read so far. */
int64_t ps_logtail_offset(const ps_logtail *tail);
ps_logtail *ps_logtail_free(ps_logtail *tail);
/* Changes what the line callback receives (its owner moved). */
void ps_logtail_set_userdata(ps_logtail *tail, void *userdata);

/* The tail keeps the last PS_LOGTAIL_RECENT non-empty lines it handed over
 * (each cut to PS_LOGTAIL_RECENT_LINE_MAX bytes), allocated only once lines
 * come, so an engine's last words outlive its exit. */
#define PS_LOGTAIL_RECENT 16
#define PS_LOGTAIL_RECENT_LINE_MAX 512

/* The recent lines, oldest first: how many were copied into lines[] (at
 * most max). They stay valid until the next line or ps_logtail_free(). */
size_t ps_logtail_recent(const ps_logtail *tail, const char **lines, size_t *lens, size_t max);

/* last_error's text from the recent lines: the cause an engine gave
 * before its generic last line, without the engine's log prefix
 * (pd_log_cause_pick). true and buf filled; false (buf emptied) when no
 * line has come. */
bool ps_logtail_cause(const ps_logtail *tail, char *buf, size_t size);
