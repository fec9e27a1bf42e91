/* SPDX-License-Identifier: MIT */
/* The server's listening sockets (listen-private.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen-private.h"
#include "pool-services/base/fs.h"

/* A listening socket made here rather than by evhttp_bind_socket(), so a
 * failure comes back with the errno of the call that failed. */
int pa_listen_tcp(const pa_bind_addr *a, const char *shown, pa_error *err) {
        static const int one = 1;
        int fd, r;

        fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return pa_error_set(err, -errno, "cannot listen on %s: socket: %s",
                                    shown, strerror(errno));
        /* Lets a restarted daemon bind while connections of the old one sit
         * in TIME_WAIT; on Linux it does not let two listeners share a port. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                goto fail;
        if (a->sa.ss_family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                goto fail;
        if (bind(fd, (const struct sockaddr *) &a->sa, a->sa_len) < 0)
                goto fail;
        if (listen(fd, SOMAXCONN) < 0)
                goto fail;
        return fd;

fail:
        r = -errno;
        close(fd);
        return pa_error_set(err, r, "cannot listen on %s: %s", shown, strerror(-r));
}

/*
 * A path where a socket is to be made: nothing there, or a socket nobody
 * accepts on any more (removed here). A live socket is another daemon's
 * and is never taken over; anything else is not ours to remove.
 */
static int clear_socket_path(const struct sockaddr_un *sa, socklen_t sa_len, pa_error *err) {
        const char *path = sa->sun_path;
        struct stat st;
        int fd, r, e;

        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return pa_error_set(err, -errno, "cannot check the API socket path %s: %s",
                                    path, strerror(errno));
        }
        if (!S_ISSOCK(st.st_mode))
                return pa_error_set(err, -EEXIST, "cannot create the API socket %s: the path exists "
                                    "and is not a socket (set api.socket to another path)", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return pa_error_set(err, -errno, "cannot probe the API socket %s: socket: %s",
                                    path, strerror(errno));
        r = connect(fd, (const struct sockaddr *) sa, sa_len);
        e = errno;
        close(fd);
        /* EAGAIN: its backlog is full, so someone listens. */
        if (r == 0 || e == EAGAIN || e == EINPROGRESS)
                return pa_error_set(err, -EADDRINUSE, "another process is serving the API socket %s: "
                                    "refusing to take it over (is another pool-managerd running with "
                                    "this runtime directory?)", path);
        if (e != ECONNREFUSED)
                return pa_error_set(err, -e, "cannot probe the API socket %s: %s", path, strerror(e));
        /* Left by a daemon that did not exit cleanly. */
        if (unlink(path) < 0 && errno != ENOENT)
                return pa_error_set(err, -errno, "cannot remove the stale API socket %s: %s",
                                    path, strerror(errno));
        return 0;
}

/*
 * The socket's directory is checked like the runtime directory: ours, and
 * writable by nobody else, so nobody can swap the socket for a link
 * between its bind and its chmod, or take its name.
 */
static int check_socket_dir(const char *path, pa_error *err) {
        char dir[PATH_MAX], why[PATH_MAX + 256];
        const char *slash = strrchr(path, '/');
        int r;

        if (!slash)
                snprintf(dir, sizeof(dir), ".");
        else if (slash == path)
                snprintf(dir, sizeof(dir), "/");
        else
                snprintf(dir, sizeof(dir), "%.*s", (int) (slash - path), path);
        r = ps_private_dir(dir, false, why, sizeof(why));
        if (r < 0)
                return pa_error_set(err, r, "cannot listen on the API socket %s: %s", path, why);
        return 0;
}

/*
 * The Unix-domain listening socket at path: mode 0600 from the moment it
 * exists (bound under umask 0177), then group gid and mode 0660. *st is
 * what was made, to recognise it at the end.
 */
int pa_listen_unix(const char *path, const char *group, struct stat *st, pa_error *err) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = strlen(path);
        socklen_t sa_len;
        gid_t gid = getegid();
        mode_t old_mask;
        int fd, r;

        if (len >= sizeof(sa.sun_path))
                return pa_error_set(err, -ENAMETOOLONG,
                                    "the API socket path %s is %zu bytes; a Unix socket path may have "
                                    "at most %zu (set api.socket, or use a shorter runtime directory)",
                                    path, len, sizeof(sa.sun_path) - 1);
        if (group && group[0]) {
                const struct group *gr;

                errno = 0;
                gr = getgrnam(group);
                if (!gr) {
                        /* getgrnam(3): these mean "no such group" */
                        bool unknown = errno == 0 || errno == ENOENT || errno == ESRCH ||
                                       errno == EBADF || errno == EPERM;

                        if (unknown)
                                return pa_error_set(err, -ENOENT, "api.socket_group: unknown "
                                                    "group \"%s\"", group);
                        return pa_error_set(err, -errno, "api.socket_group: cannot look up group "
                                            "\"%s\": %s", group, strerror(errno));
                }
                gid = gr->gr_gid;
        }
        memcpy(sa.sun_path, path, len + 1);
        sa_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1);
        r = check_socket_dir(path, err);
        if (r < 0)
                return r;

        r = clear_socket_path(&sa, sa_len, err);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return pa_error_set(err, -errno, "cannot listen on the API socket %s: socket: %s",
                                    path, strerror(errno));
        old_mask = umask(0177);
        r = bind(fd, (const struct sockaddr *) &sa, sa_len);
        umask(old_mask);
        if (r < 0) {
                r = -errno;
                close(fd);
                return pa_error_set(err, r, "cannot listen on the API socket %s: %s", path, strerror(-r));
        }
        /* The group first: until the mode is 0660 only we may connect. */
        if (lchown(path, (uid_t) -1, gid) < 0) {
                r = -errno;
                if (group && group[0])
                        pa_error_set(err, r, "cannot give the API socket %s to group %s: %s",
                                     path, group, strerror(-r));
                else
                        pa_error_set(err, r, "cannot give the API socket %s to group %u: %s",
                                     path, (unsigned) gid, strerror(-r));
                goto fail;
        }
        /* Never through a symlink swapped in since bind: fchmodat with
         * AT_SYMLINK_NOFOLLOW refuses to touch one. */
        if (fchmodat(AT_FDCWD, path, 0660, AT_SYMLINK_NOFOLLOW) < 0 || lstat(path, st) < 0) {
                r = -errno;
                pa_error_set(err, r, "cannot listen on the API socket %s: %s", path, strerror(-r));
                goto fail;
        }
        if (!S_ISSOCK(st->st_mode)) {
                r = -ELOOP;
                pa_error_set(err, r, "cannot listen on the API socket %s: it was replaced while "
                             "it was being made", path);
                goto fail;
        }
        if (listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                pa_error_set(err, r, "cannot listen on the API socket %s: %s", path, strerror(-r));
                goto fail;
        }
        return fd;

fail:
        unlink(path);
        close(fd);
        return r;
}
