/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Copy-then-truncate rotation of a log file another process keeps open
 * with O_APPEND (an engine's stdout and stderr): the bytes are copied to
 * <path>.1.part in bounded chunks, one chunk per loop turn, the part is
 * renamed over <path>.1, then the live file is truncated to 0. Only
 * supervise/logtail.c uses it.
 */

#include <stdint.h>
#include <sys/types.h>

typedef struct ps_logcopy ps_logcopy;

/* Creates <path>.1.part (mode: the log's, st_mode & 0777). 0 or -errno. */
int ps_logcopy_start(ps_logcopy **out, const char *path, mode_t mode);

/* Copies at most max bytes from src_fd (read with offsets: its own file
 * offset is left alone). The number copied (0 at the end of the file) or
 * -errno. */
int64_t ps_logcopy_chunk(ps_logcopy *c, int src_fd, int64_t max);

/* Bytes copied so far. */
int64_t ps_logcopy_done(const ps_logcopy *c);

/* Renames the part over <path>.1 and truncates the live file, after
 * checking that path still names the file (dev, ino) copied from. 0 or
 * -errno; the copy is freed either way. */
int ps_logcopy_commit(ps_logcopy *c, const char *path, dev_t dev, ino_t ino);

/* Gives up: the part is removed. NULL. */
ps_logcopy *ps_logcopy_abort(ps_logcopy *c);
