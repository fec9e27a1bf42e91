/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ps_config;

/*
 * mkdir -p: makes path and every missing parent (mode 0755 before the
 * umask); one that exists already is fine. 0, -ENAMETOOLONG for an empty
 * path or one of PATH_MAX or more, or mkdir(2)'s negative errno.
 */
int ps_mkdir_p(const char *path);

/*
 * A directory that is ours alone, checked as sshd's StrictModes checks a
 * home directory: with create, a missing one is made (mode 0700; missing
 * parents as ps_mkdir_p() makes them). Then it is opened without following
 * a symbolic link (O_DIRECTORY | O_NOFOLLOW) and the descriptor is checked:
 * a directory, owned by the effective uid, writable by nobody else.
 *
 * ps_private_dir_open() returns the descriptor (O_CLOEXEC; the caller
 * closes it), for *at() calls that cannot be led elsewhere by a path
 * changed meanwhile; ps_private_dir() closes it and returns 0. On failure
 * a negative errno and, in err, the path and what to do about it:
 *   -ELOOP    "directory /x is a symbolic link: ..."
 *   -ENOTDIR  "directory /x is not a directory"
 *   -EPERM    "directory /x is owned by uid 1000, not 0: chown 0 /x"
 *   -EPERM    "directory /x is writable by group or others (mode 0777):
 *             chmod go-w /x"
 *   or what mkdir(2) or open(2) failed with, naming the step and the path.
 */
int ps_private_dir_open(const char *path, bool create, char *err, size_t errlen);
int ps_private_dir(const char *path, bool create, char *err, size_t errlen);

/*
 * Before a spawn: the runtime directory as ps_private_dir() checks it,
 * made again (*recreated true) when it is gone -- someone deleted it
 * while the daemon ran. 0 or ps_private_dir()'s errors.
 */
int ps_private_dir_again(const char *path, bool *recreated, char *err, size_t errlen);

/*
 * Reads until len bytes came or the end of the file (or the pipe's writer
 * closed), retrying after signals: the bytes read, fewer than len only at
 * the end, or a negative errno.
 */
ssize_t ps_read_full(int fd, void *buf, size_t len);

/*
 * /proc/<pid>/<name> (stat, status, cmdline, comm) into buf, at most
 * size - 1 bytes, NUL-terminated: the bytes read, or a negative errno
 * (-ENOENT once the process is gone).
 */
ssize_t ps_read_proc(pid_t pid, const char *name, char *buf, size_t size);
