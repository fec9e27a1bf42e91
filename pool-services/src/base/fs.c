/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errfmt.h"
#include "pool-services/base/fs.h"

/* Makes every missing parent of buf (0755 before the umask), then buf
 * itself with mode. */
static int mkdir_parents(char *buf, mode_t mode) {
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int ps_mkdir_p(const char *path) {
        char buf[PATH_MAX];
        size_t len = strlen(path);

        if (len == 0 || len >= sizeof(buf))
                return -ENAMETOOLONG;
        memcpy(buf, path, len + 1);
        return mkdir_parents(buf, 0755);
}

int ps_private_dir_open(const char *path, bool create, char *err, size_t errlen) {
        char buf[PATH_MAX];
        size_t len = path ? strlen(path) : 0;
        struct stat st;
        uid_t euid = geteuid();
        int fd, r;

        if (len == 0 || len >= sizeof(buf))
                return ps_errf(err, errlen, -ENAMETOOLONG, "directory \"%s\": empty or too long",
                               path ? path : "");
        memcpy(buf, path, len + 1);
        /* "/x/" would follow a link named /x: look at the name itself. */
        while (len > 1 && buf[len - 1] == '/')
                buf[--len] = '\0';
        if (create && (r = mkdir_parents(buf, 0700)) < 0)
                return ps_errf(err, errlen, r, "cannot create directory %s: %s", buf, strerror(-r));

        fd = open(buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                if ((r == -ELOOP || r == -ENOTDIR) && lstat(buf, &st) == 0) {
                        if (S_ISLNK(st.st_mode))
                                return ps_errf(err, errlen, -ELOOP,
                                               "directory %s is a symbolic link: use the real path, "
                                               "or remove the link", buf);
                        if (!S_ISDIR(st.st_mode))
                                return ps_errf(err, errlen, -ENOTDIR,
                                               "directory %s is not a directory", buf);
                }
                return ps_errf(err, errlen, r, "cannot open directory %s: %s", buf, strerror(-r));
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return ps_errf(err, errlen, r, "cannot stat directory %s: %s", buf, strerror(-r));
        }
        if (!S_ISDIR(st.st_mode)) {
                close(fd);
                return ps_errf(err, errlen, -ENOTDIR, "directory %s is not a directory", buf);
        }
        if (st.st_uid != euid) {
                close(fd);
                return ps_errf(err, errlen, -EPERM, "directory %s is owned by uid %u, not %u: chown %u %s",
                               buf, (unsigned) st.st_uid, (unsigned) euid, (unsigned) euid, buf);
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                close(fd);
                return ps_errf(err, errlen, -EPERM,
                               "directory %s is writable by group or others (mode %04o): chmod go-w %s",
                               buf, (unsigned) (st.st_mode & 07777), buf);
        }
        return fd;
}

int ps_private_dir(const char *path, bool create, char *err, size_t errlen) {
        int fd = ps_private_dir_open(path, create, err, errlen);

        if (fd < 0)
                return fd;
        close(fd);
        return 0;
}

int ps_private_dir_again(const char *path, bool *recreated, char *err, size_t errlen) {
        struct stat st;

        *recreated = lstat(path, &st) < 0 && errno == ENOENT;
        return ps_private_dir(path, *recreated, err, errlen);
}

ssize_t ps_read_full(int fd, void *buf, size_t len) {
        size_t got = 0;

        while (got < len) {
                ssize_t n = read(fd, (char *) buf + got, len - got);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        return (ssize_t) got;
}

ssize_t ps_read_proc(pid_t pid, const char *name, char *buf, size_t size) {
        char path[64];
        ssize_t n;
        int fd;

        if (!buf || size == 0)
                return -EINVAL;
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = ps_read_full(fd, buf, size - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        return n;
}
