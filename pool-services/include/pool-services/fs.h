/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/*
 * mkdir -p: makes path and every missing parent (mode 0755 before the
 * umask); one that exists already is fine. 0, -ENAMETOOLONG for an empty
 * path or one of PATH_MAX or more, or mkdir(2)'s negative errno.
 */
int ps_mkdir_p(const char *path);

/*
 * Reads until len bytes came or the end of the file (or the pipe's writer
 * closed), retrying after signals: the bytes read, fewer than len only at
 * the end, or a negative errno.
 */
ssize_t ps_read_full(int fd, void *buf, size_t len);
