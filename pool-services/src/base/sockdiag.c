/* SPDX-License-Identifier: MIT */
/*
 * Listening sockets and their processes (sockdiag.h): the kernel's TCP
 * socket table through NETLINK_SOCK_DIAG, and socket:[inode] links in
 * /proc/<pid>/fd.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "base/sockdiag.h"
#include "pool-services/base/fs.h"

#define TCP_STATE_LISTEN 10     /* include/net/tcp_states.h */
#define SESSION_MAX 1024        /* processes of one engine we look at */
#define NL_BUF 32768

/* ---- addresses ----------------------------------------------------------- */

typedef struct host_addr {
        int family;
        unsigned char b[16];    /* IPv4: the first 4 */
} host_addr;

static int parse_host(const char *host, host_addr *a) {
        char buf[INET6_ADDRSTRLEN + 2];
        size_t len;

        if (!host)
                return -EINVAL;
        len = strlen(host);
        if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
                if (len - 2 >= sizeof(buf))
                        return -EINVAL;
                memcpy(buf, host + 1, len - 2);
                buf[len - 2] = '\0';
        } else if (len < sizeof(buf)) {
                memcpy(buf, host, len + 1);
        } else {
                return -EINVAL;
        }
        memset(a, 0, sizeof(*a));
        if (inet_pton(AF_INET, buf, a->b) == 1)
                a->family = AF_INET;
        else if (inet_pton(AF_INET6, buf, a->b) == 1)
                a->family = AF_INET6;
        else
                return -EINVAL;
        return 0;
}

static bool all_zero(const unsigned char *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

/* How well a socket bound to (family, src) matches a client of host:
 * 0 exactly, 1 the wildcard of host's family, 2 [::] for an IPv4 host,
 * -1 not at all. */
static int match_level(const host_addr *host, int family, const unsigned char *src) {
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        if (family == AF_INET) {
                if (host->family != AF_INET)
                        return -1;
                if (memcmp(src, host->b, 4) == 0)
                        return 0;
                return all_zero(src, 4) ? 1 : -1;
        }
        if (host->family == AF_INET6) {
                if (memcmp(src, host->b, 16) == 0)
                        return 0;
                return all_zero(src, 16) ? 1 : -1;
        }
        if (memcmp(src, mapped, 12) == 0 && memcmp(src + 12, host->b, 4) == 0)
                return 0;
        return all_zero(src, 16) ? 2 : -1;
}

/* ---- the netlink dump ------------------------------------------------------ */

typedef struct found {
        const host_addr *host;
        uint16_t port;
        int level;              /* of what out holds; 3: nothing yet */
        ps_listener *out;
        size_t max, n;
} found;

static void consider(found *f, const struct inet_diag_msg *m) {
        int level;

        if (ntohs(m->id.idiag_sport) != f->port || m->idiag_state != TCP_STATE_LISTEN)
                return;
        level = match_level(f->host, m->idiag_family, (const unsigned char *) m->id.idiag_src);
        if (level < 0 || level > f->level)
                return;
        if (level < f->level) {
                f->level = level;
                f->n = 0;
        }
        if (f->n < f->max)
                f->out[f->n++] = (ps_listener) { .inode = m->idiag_inode, .uid = m->idiag_uid,
                                                 .family = m->idiag_family };
}

static int nl_request(int fd, int family) {
        struct {
                struct nlmsghdr nlh;
                struct inet_diag_req_v2 req;
        } msg = {
                .nlh = { .nlmsg_len = sizeof(msg), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                         .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
                .req = { .sdiag_family = (uint8_t) family, .sdiag_protocol = IPPROTO_TCP,
                         .idiag_states = 1U << TCP_STATE_LISTEN },
        };
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

        if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *) &kernel, sizeof(kernel)) < 0)
                return -errno;
        return 0;
}

/* Reads the dump's answers until NLMSG_DONE. */
static int nl_read(int fd, char *buf, found *f) {
        for (;;) {
                ssize_t got = recv(fd, buf, NL_BUF, 0);

                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return -errno;
                if (got == 0)
                        return -EIO;
                for (struct nlmsghdr *h = (struct nlmsghdr *) (void *) buf; NLMSG_OK(h, (size_t) got);
                     h = NLMSG_NEXT(h, got)) {
                        if (h->nlmsg_type == NLMSG_DONE)
                                return 0;
                        if (h->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = NLMSG_DATA(h);

                                return e->error < 0 ? e->error : -EIO;
                        }
                        if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
                            h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                                consider(f, NLMSG_DATA(h));
                }
        }
}

static int nl_dump(found *f) {
        static const int families[] = { AF_INET, AF_INET6 };
        struct timeval tv = { .tv_sec = 1 };
        char *buf;
        int fd, r = 0;

        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (fd < 0)
                return -errno;
        buf = malloc(NL_BUF);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        /* The kernel answers at once; this only bounds a broken one. */
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        for (size_t i = 0; r == 0 && i < sizeof(families) / sizeof(families[0]); i++) {
                r = nl_request(fd, families[i]);
                if (r == 0)
                        r = nl_read(fd, buf, f);
                /* A kernel without IPv6 has no table to dump. */
                if (r == -ENOENT && families[i] == AF_INET6)
                        r = 0;
        }
        free(buf);
        close(fd);
        return r;
}

int ps_sockdiag_listeners(const char *host, uint16_t port, ps_listener *out, size_t max,
                          size_t *n) {
        host_addr addr;
        found f;
        int r;

        if (!n || (max > 0 && !out))
                return -EINVAL;
        *n = 0;
        r = parse_host(host, &addr);
        if (r < 0)
                return r;
        f = (found) { .host = &addr, .port = port, .level = 3, .out = out, .max = max };
        r = nl_dump(&f);
        if (r < 0)
                return r;
        *n = f.n;
        return 0;
}

/* ---- processes -------------------------------------------------------------- */

/* 1 when pid has a descriptor on the socket, 0 when not, -EACCES when its
 * descriptors cannot be read, -ESRCH when it is gone. */
static int pid_holds(pid_t pid, uint64_t inode) {
        char path[64], link[64];
        struct dirent *de;
        int dfd, r = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? -ESRCH : -errno;
        d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return -ENOMEM;
        }
        while (r == 0 && (de = readdir(d))) {
                ssize_t len;

                if (de->d_name[0] == '.')
                        continue;
                len = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
                if (len <= 8)
                        continue;
                link[len] = '\0';
                if (strncmp(link, "socket:[", 8) == 0 && strtoull(link + 8, NULL, 10) == inode)
                        r = 1;
        }
        closedir(d);
        return r;
}

/* The session field of /proc/<pid>/stat. */
static int pid_session(pid_t pid, pid_t *sid) {
        char buf[512], *p;
        int ppid, pgrp, session;

        if (ps_read_proc(pid, "stat", buf, sizeof(buf)) <= 0)
                return -ESRCH;
        /* "pid (comm) S ppid pgrp session ...": comm may hold anything. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %d %d %d", &ppid, &pgrp, &session) != 3)
                return -EIO;
        *sid = (pid_t) session;
        return 0;
}

typedef struct pid_set {
        pid_t pids[SESSION_MAX];
        size_t n;
} pid_set;

static bool pid_set_has(const pid_set *s, pid_t pid) {
        for (size_t i = 0; i < s->n; i++)
                if (s->pids[i] == pid)
                        return true;
        return false;
}

static void pid_set_add(pid_set *s, pid_t pid) {
        if (pid > 0 && s->n < SESSION_MAX && !pid_set_has(s, pid))
                s->pids[s->n++] = pid;
}

/* Adds the children of every thread of pid (/proc/<pid>/task/<tid>/children). */
static void add_children(pid_set *s, pid_t pid) {
        char path[64], buf[4096];
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d)
                return;
        while ((de = readdir(d))) {
                char *p, *end;
                ssize_t len;
                int fd;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/task/%.16s/children", (int) pid, de->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                len = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (len <= 0)
                        continue;
                buf[len] = '\0';
                for (p = buf;; p = end) {
                        long child = strtol(p, &end, 10);

                        if (end == p)
                                break;
                        pid_set_add(s, (pid_t) child);
                }
        }
        closedir(d);
}

/* Calls fn(pid, userdata) for each process in /proc until it returns
 * non-zero; that value, or 0. */
static int each_process(int (*fn)(pid_t pid, int procfd, const char *name, void *userdata),
                        void *userdata) {
        struct dirent *de;
        DIR *d = opendir("/proc");
        int r = 0;

        if (!d)
                return -errno;
        while (r == 0 && (de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);

                if (pid > 0 && *end == '\0')
                        r = fn((pid_t) pid, dirfd(d), de->d_name, userdata);
        }
        closedir(d);
        return r;
}

typedef struct session_scan {
        pid_t sid;
        uint64_t inode;
        const pid_set *seen;
        pid_t holder;
} session_scan;

static int scan_session_member(pid_t pid, int procfd, const char *name, void *userdata) {
        session_scan *s = userdata;
        pid_t sid;

        (void) procfd;
        (void) name;
        if (pid_set_has(s->seen, pid) || pid_session(pid, &sid) < 0 || sid != s->sid)
                return 0;
        if (pid_holds(pid, s->inode) != 1)
                return 0;
        s->holder = pid;
        return 1;
}

int ps_sockdiag_session_holds(pid_t leader, uint64_t inode, pid_t *holder) {
        pid_set *set;
        session_scan scan;
        pid_t sid, s;
        int r = 0;

        if (leader <= 0 || !holder)
                return -EINVAL;
        if (pid_session(leader, &sid) < 0)
                return -ESRCH;
        set = calloc(1, sizeof(*set));
        if (!set)
                return -ENOMEM;
        /* The engine and its descendants first: a few processes. */
        pid_set_add(set, leader);
        for (size_t i = 0; i < set->n && r == 0; i++) {
                pid_t pid = set->pids[i];

                if (pid != leader && (pid_session(pid, &s) < 0 || s != sid))
                        continue;      /* left the session, and its subtree with it */
                if (pid_holds(pid, inode) == 1) {
                        *holder = pid;
                        r = 1;
                }
                add_children(set, pid);
        }
        if (r == 0) {
                /* A member whose parent died was re-parented out of the tree. */
                scan = (session_scan) { .sid = sid, .inode = inode, .seen = set };
                r = each_process(scan_session_member, &scan) == 1 ? 1 : 0;
                if (r == 1)
                        *holder = scan.holder;
        }
        free(set);
        return r;
}

typedef struct uid_scan {
        uid_t uid;
        uint64_t inode;
        bool unreadable;
        pid_t holder;
} uid_scan;

static int scan_uid_member(pid_t pid, int procfd, const char *name, void *userdata) {
        uid_scan *s = userdata;
        struct stat st;
        int r;

        if (fstatat(procfd, name, &st, 0) < 0 || st.st_uid != s->uid)
                return 0;
        r = pid_holds(pid, s->inode);
        if (r == -EACCES || r == -EPERM)
                s->unreadable = true;
        if (r != 1)
                return 0;
        s->holder = pid;
        return 1;
}

int ps_sockdiag_holder(uint64_t inode, uid_t uid, pid_t *holder) {
        uid_scan scan = { .uid = uid, .inode = inode };
        int r;

        if (!holder)
                return -EINVAL;
        r = each_process(scan_uid_member, &scan);
        if (r == 1) {
                *holder = scan.holder;
                return 1;
        }
        if (r < 0)
                return r;
        return scan.unreadable ? -EACCES : 0;
}

void ps_sockdiag_command(pid_t pid, char *buf, size_t len) {
        ssize_t got;

        if (!buf || len == 0)
                return;
        got = ps_read_proc(pid, "cmdline", buf, len);
        if (got <= 0)
                got = ps_read_proc(pid, "comm", buf, len);
        if (got <= 0) {
                snprintf(buf, len, "?");
                return;
        }
        buf[got] = '\0';
        for (ssize_t i = 0; i < got; i++)
                if (buf[i] == '\0' || buf[i] == '\n' || (unsigned char) buf[i] < 0x20)
                        buf[i] = ' ';
        while (got > 0 && buf[got - 1] == ' ')
                buf[--got] = '\0';
}

/* ---- the checks ---------------------------------------------------------- */

/* The process holding l and its command line; 0 when it cannot be seen. */
static pid_t find_holder(const ps_listener *l, char *cmd, size_t len) {
        pid_t pid;

        if (ps_sockdiag_holder(l->inode, l->uid, &pid) != 1)
                return 0;
        ps_sockdiag_command(pid, cmd, len);
        return pid;
}

int ps_sockdiag_session_serves(const char *host, uint16_t port, pid_t leader, char *err,
                               size_t errlen) {
        ps_listener l[PS_SOCKDIAG_LISTENERS_MAX];
        char cmd[160];
        size_t n = 0;
        pid_t holder;
        int r;

        r = ps_sockdiag_listeners(host, port, l, PS_SOCKDIAG_LISTENERS_MAX, &n);
        if (r < 0) {
                snprintf(err, errlen, "listening sockets on port %u: %s", (unsigned) port,
                         strerror(-r));
                return r;
        }
        if (n == 0) {
                snprintf(err, errlen, "port %u on %s answers but no process listens on it in "
                         "this network namespace (a forwarded port? set health.verify_listener "
                         "to false)", (unsigned) port, host);
                return -EADDRNOTAVAIL;
        }
        for (size_t i = 0; i < n; i++) {
                r = ps_sockdiag_session_holds(leader, l[i].inode, &holder);
                if (r < 0) {
                        snprintf(err, errlen, "engine process %d is gone", (int) leader);
                        return r;
                }
                if (r == 0) {
                        pid_t pid = find_holder(&l[i], cmd, sizeof(cmd));

                        if (pid > 0)
                                snprintf(err, errlen, "port %u answers but no process of the "
                                         "engine listens on it (pid %d of uid %u does: %s)",
                                         (unsigned) port, (int) pid, (unsigned) l[i].uid, cmd);
                        else
                                snprintf(err, errlen, "port %u answers but no process of the "
                                         "engine listens on it (a socket of uid %u does)",
                                         (unsigned) port, (unsigned) l[i].uid);
                        return -EADDRNOTAVAIL;
                }
        }
        return 0;
}

/* Binds a socket of host's family to host:port and closes it. */
static int try_bind(const host_addr *a, uint16_t port) {
        struct sockaddr_storage ss = { 0 };
        socklen_t sl;
        int fd, one = 1, r = 0;

        if (a->family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;

                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                memcpy(&in->sin_addr, a->b, 4);
                sl = sizeof(*in);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                memcpy(&in6->sin6_addr, a->b, 16);
                sl = sizeof(*in6);
        }
        fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &ss, sl) < 0)
                r = -errno;
        close(fd);
        return r;
}

int ps_sockdiag_port_free(const char *host, uint16_t port, char *err, size_t errlen) {
        ps_listener l[PS_SOCKDIAG_LISTENERS_MAX];
        char cmd[160];
        host_addr a;
        size_t n = 0;
        pid_t holder;
        int r;

        r = parse_host(host, &a);
        if (r < 0) {
                snprintf(err, errlen, "host %s: not a numeric address", host ? host : "(none)");
                return r;
        }
        r = try_bind(&a, port);
        if (r == 0)
                return 0;
        if (r != -EADDRINUSE) {
                snprintf(err, errlen, "port %u on %s: cannot bind: %s", (unsigned) port, host,
                         strerror(-r));
                return r;
        }
        if (ps_sockdiag_listeners(host, port, l, PS_SOCKDIAG_LISTENERS_MAX, &n) < 0 || n == 0) {
                snprintf(err, errlen, "port %u on %s is in use", (unsigned) port, host);
                return -EADDRINUSE;
        }
        holder = find_holder(&l[0], cmd, sizeof(cmd));
        if (holder > 0)
                snprintf(err, errlen, "port %u on %s is in use by pid %d (%s)", (unsigned) port,
                         host, (int) holder, cmd);
        else
                snprintf(err, errlen, "port %u on %s is in use by a socket of uid %u",
                         (unsigned) port, host, (unsigned) l[0].uid);
        return -EADDRINUSE;
}
