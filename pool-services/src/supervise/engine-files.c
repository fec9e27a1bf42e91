/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PS_ENGINE_PRIVATE_ALLOW
#include "supervise/engine-internal.h"
#include "pool-services/base/fs.h"

#define LAST_LINE_WINDOW (64 * 1024)

/* Says why a runtime_dir file that open() with O_NOFOLLOW refused, or that
 * fstat() showed, is not one to use: 0 when it is fine. what: "log file",
 * "PID file". */
static int check_runtime_file(const char *what, const char *path, const struct stat *st,
                              char *err, size_t errlen) {
        if (!S_ISREG(st->st_mode)) {
                snprintf(err, errlen, "%s %s: not a regular file", what, path);
                return -EPERM;
        }
        if (st->st_uid != geteuid()) {
                snprintf(err, errlen, "%s %s is owned by uid %u, not the daemon's user (uid %u)",
                         what, path, (unsigned) st->st_uid, (unsigned) geteuid());
                return -EPERM;
        }
        /* A hard link is another name for someone's file: writing through
         * it would append engine output there, as a symlink would. */
        if (st->st_nlink != 1) {
                snprintf(err, errlen, "%s %s has %lu hard links; refusing to write through one",
                         what, path, (unsigned long) st->st_nlink);
                return -EPERM;
        }
        return 0;
}

/* The message for open(path, O_NOFOLLOW ...) failing with -r. */
static void describe_open_error(const char *what, const char *path, int r, char *err,
                                size_t errlen) {
        struct stat st;

        if (r == -ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
                snprintf(err, errlen, "%s %s is a symbolic link; refusing to follow it", what, path);
        else if (r == -ENXIO)           /* a FIFO or socket, thanks to O_NONBLOCK */
                snprintf(err, errlen, "%s %s: not a regular file", what, path);
        else
                snprintf(err, errlen, "%s %s: %s", what, path, strerror(-r));
}

/*
 * Opens the log for appending; *created tells whether this call made it.
 * Whoever can write to runtime_dir must not get the daemon to append to
 * (or create) a file elsewhere, so a symbolic link is refused, not
 * followed, and what opened must be a regular file of the daemon's user.
 * O_NONBLOCK keeps a FIFO there from blocking us.
 */
int ps_engine_open_log(const char *path, bool *created, char *err, size_t errlen) {
        const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK;
        struct stat st;
        int fd = -1, r = -EBUSY;

        for (int tries = 0; tries < 8; tries++) {
                fd = open(path, flags);
                if (fd >= 0) {
                        *created = false;
                        break;
                }
                r = -errno;
                if (r != -ENOENT)
                        break;
                fd = open(path, flags | O_CREAT | O_EXCL, 0640);
                if (fd >= 0) {
                        *created = true;
                        break;
                }
                r = -errno;
                if (r != -EEXIST)
                        break;
        }
        if (fd < 0) {
                describe_open_error("log file", path, r, err, errlen);
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "log file %s: %s", path, strerror(-r));
        } else {
                r = check_runtime_file("log file", path, &st, err, errlen);
        }
        /* Blocking again: the engine writes to it as its stdout. */
        if (r == 0 && fcntl(fd, F_SETFL, O_APPEND) < 0) {
                r = -errno;
                snprintf(err, errlen, "log file %s: %s", path, strerror(-r));
        }
        if (r < 0) {
                close(fd);
                if (*created)
                        unlink(path);
                return r;
        }
        return fd;
}

/* Written to a fresh name (O_EXCL: never through a symbolic link) and
 * renamed over the old, which replaces a link rather than following it. */
int ps_engine_write_pid_file(const char *path, pid_t pid) {
        char *tmp = NULL;
        char text[32];
        int fd, n, r = 0;

        if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                r = -errno;
                free(tmp);
                return r;
        }
        n = snprintf(text, sizeof(text), "%ld\n", (long) pid);
        errno = 0;
        if (fchmod(fd, 0644) < 0 || write(fd, text, (size_t) n) != n)
                r = errno ? -errno : -EIO;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        free(tmp);
        return r;
}

/* The pid in the PID file at path. 0; -ENOENT when there is none or it
 * holds no pid; -EPERM with a message in err when it is not a regular
 * file of the daemon's user (a symbolic link is not followed: whoever
 * placed it could point us at any process); another negative errno. */
int ps_engine_read_pid_file(const char *path, pid_t *ret, char *err, size_t errlen) {
        struct stat st;
        char buf[32];
        ssize_t n;
        long v;
        char *end;
        int r, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);

        if (fd < 0) {
                r = -errno;
                if (r == -ENOENT)
                        return r;
                describe_open_error("PID file", path, r, err, errlen);
                return r == -ELOOP ? -EPERM : r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "PID file %s: %s", path, strerror(-r));
                close(fd);
                return r;
        }
        r = check_runtime_file("PID file", path, &st, err, errlen);
        if (r < 0) {
                close(fd);
                return r;
        }
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -ENOENT;
        buf[n] = '\0';
        errno = 0;
        v = strtol(buf, &end, 10);
        if (errno || v <= 1 || (*end && *end != '\n'))
                return -ENOENT;
        *ret = (pid_t) v;
        return 0;
}

/* Removes the PID file only while it still names this process: a later
 * engine may have claimed the same name. */
void ps_engine_remove_pid_file(const ps_engine *engine) {
        char err[1];
        pid_t pid = 0;

        if (ps_engine_read_pid_file(engine->pid_path, &pid, err, sizeof(err)) == 0 &&
            pid == engine->pid)
                unlink(engine->pid_path);
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int ps_engine_real_last_log_line(const ps_engine *engine, char *buf, size_t len) {
        char *text;
        off_t from;
        struct stat st;
        ssize_t n;
        size_t got, want, end, start, i;
        int fd, r = 0;

        buf[0] = '\0';
        /* Not through a symbolic link: its target could be any file the
         * daemon may read, and this line is shown to API clients. */
        fd = open(engine->log_path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                r = -errno;
        else if (!S_ISREG(st.st_mode))
                r = -EINVAL;
        if (r < 0) {
                close(fd);
                return r;
        }
        /* A log smaller than our start was truncated (copytruncate): all of
         * it is this incarnation's. */
        from = st.st_size < engine->log_start ? 0 : (off_t) engine->log_start;
        if (st.st_size - from > LAST_LINE_WINDOW)
                from = st.st_size - LAST_LINE_WINDOW;
        want = (size_t) (st.st_size - from);
        text = malloc(want + 1);
        if (!text) {
                close(fd);
                return -ENOMEM;
        }
        n = lseek(fd, from, SEEK_SET) < 0 ? -errno : ps_read_full(fd, text, want);
        close(fd);
        if (n < 0) {
                free(text);
                return (int) n;
        }
        got = (size_t) n;

        /* Trailing blanks include newlines, so blank lines are skipped. */
        end = got;
        while (end > 0 && is_blank(text[end - 1]))
                end--;
        if (end == 0) {
                free(text);
                return -ENODATA;
        }
        start = end;
        while (start > 0 && text[start - 1] != '\n')
                start--;
        while (start < end && is_blank(text[start]))
                start++;
        i = end - start;
        if (i >= len)
                i = len - 1;
        memcpy(buf, text + start, i);
        buf[i] = '\0';
        free(text);
        return 0;
}
