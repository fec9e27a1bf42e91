/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervise/logcopy.h"

#define PLAIN_CHUNK (64 * 1024)

struct ps_logcopy {
        int fd;
        int64_t done;
        char *part;       /* <path>.1.part */
        char *rotated;    /* <path>.1      */
        char *buf;        /* for filesystems without copy_file_range */
};

int ps_logcopy_start(ps_logcopy **out, const char *path, mode_t mode) {
        ps_logcopy *c = calloc(1, sizeof(*c));
        int r;

        *out = NULL;
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        if (asprintf(&c->part, "%s.1.part", path) < 0 || asprintf(&c->rotated, "%s.1", path) < 0) {
                c->part = c->rotated = NULL;
                ps_logcopy_abort(c);
                return -ENOMEM;
        }
        unlink(c->part);        /* a leftover of an earlier try */
        c->fd = open(c->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                     mode & 0777);
        if (c->fd < 0) {
                r = -errno;
                free(c->part);
                c->part = NULL;  /* not ours: leave it */
                ps_logcopy_abort(c);
                return r;
        }
        *out = c;
        return 0;
}

/* read and write, for where copy_file_range cannot go (across file
 * systems on old kernels, some file systems). */
static int64_t copy_plain(ps_logcopy *c, int src_fd, int64_t max) {
        ssize_t n, w;

        if (!c->buf) {
                c->buf = malloc(PLAIN_CHUNK);
                if (!c->buf)
                        return -ENOMEM;
        }
        n = pread(src_fd, c->buf, max < PLAIN_CHUNK ? (size_t) max : PLAIN_CHUNK, (off_t) c->done);
        if (n <= 0)
                return n < 0 ? -errno : 0;
        for (ssize_t off = 0; off < n; off += w) {
                w = pwrite(c->fd, c->buf + off, (size_t) (n - off), (off_t) (c->done + off));
                if (w < 0 && errno == EINTR)
                        w = 0;
                else if (w <= 0)
                        return w < 0 ? -errno : -EIO;
        }
        c->done += n;
        return n;
}

int64_t ps_logcopy_chunk(ps_logcopy *c, int src_fd, int64_t max) {
        int64_t total = 0;

        while (total < max) {
                loff_t in = (loff_t) c->done, out = (loff_t) c->done;
                ssize_t n = copy_file_range(src_fd, &in, c->fd, &out, (size_t) (max - total), 0);
                int64_t m;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                              errno == EOPNOTSUPP || errno == EBADF)) {
                        m = copy_plain(c, src_fd, max - total);
                        if (m < 0)
                                return m;
                        if (m == 0)
                                break;
                        total += m;
                        continue;
                }
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                c->done += n;
                total += n;
        }
        return total;
}

int64_t ps_logcopy_done(const ps_logcopy *c) {
        return c->done;
}

int ps_logcopy_commit(ps_logcopy *c, const char *path, dev_t dev, ino_t ino) {
        struct stat st;
        int fd, r = 0;

        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                r = -errno;
        else if (fstat(fd, &st) < 0)
                r = -errno;
        else if (st.st_dev != dev || st.st_ino != ino)
                r = -ESTALE;          /* replaced meanwhile: not ours to cut */
        if (r == 0 && rename(c->part, c->rotated) < 0)
                r = -errno;
        if (r == 0) {
                free(c->part);
                c->part = NULL;       /* renamed: nothing to remove */
                if (ftruncate(fd, 0) < 0)
                        r = -errno;
        }
        if (fd >= 0)
                close(fd);
        ps_logcopy_abort(c);
        return r;
}

ps_logcopy *ps_logcopy_abort(ps_logcopy *c) {
        if (!c)
                return NULL;
        if (c->fd >= 0)
                close(c->fd);
        if (c->part)
                unlink(c->part);
        free(c->part);
        free(c->rotated);
        free(c->buf);
        free(c);
        return NULL;
}
