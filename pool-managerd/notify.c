/* SPDX-License-Identifier: MIT */
/*
 * sd_notify(3) by hand (pool-managerd/notify.h). The protocol: newline
 * separated KEY=VALUE assignments in one datagram to the AF_UNIX socket
 * named by $NOTIFY_SOCKET ('@' first: the abstract namespace).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "notify.h"

/* While preloads load: every 10 s, ask for 30 s more. */
#define EXTEND_EVERY_S 10
#define EXTEND_BY_USEC 30000000ULL

struct pm_notify {
        ps_logger *log;
        struct sockaddr_un addr;
        socklen_t addr_len;       /* 0: no $NOTIFY_SOCKET                 */
        int fd;
        struct event *watchdog;   /* every half $WATCHDOG_USEC            */
        struct event *extend;     /* while preloads load                  */
        bool ready;               /* READY=1 was sent                     */
        bool stopping;
        size_t pools_ready, pools;
        bool status_sent;
};

int pm_notify_send(pm_notify *n, const char *message) {
        struct iovec iov = { .iov_base = (void *) message, .iov_len = strlen(message) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (!n || n->addr_len == 0)
                return 0;
        mh.msg_name = &n->addr;
        mh.msg_namelen = n->addr_len;
        if (n->fd < 0 && (n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
                return -errno;
        if (sendmsg(n->fd, &mh, MSG_NOSIGNAL) < 0) {
                int e = errno;

                ps_log(n->log, PS_LOG_WARN, "cannot notify the service manager",
                       PS_FIELD_STR("error", strerror(e)));
                return -e;
        }
        return 0;
}

/* $NOTIFY_SOCKET into n->addr; false when unset or unusable. */
static bool parse_socket(pm_notify *n, const char *path) {
        size_t len = path ? strlen(path) : 0;

        if (len == 0 || len >= sizeof(n->addr.sun_path) || (path[0] != '/' && path[0] != '@'))
                return false;
        n->addr.sun_family = AF_UNIX;
        memcpy(n->addr.sun_path, path, len);
        if (path[0] == '@')
                n->addr.sun_path[0] = '\0';
        n->addr_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len +
                                   (path[0] == '/' ? 1 : 0));
        return true;
}

static void on_watchdog(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        pm_notify_send(userdata, "WATCHDOG=1");
}

static void on_extend(evutil_socket_t fd, short what, void *userdata) {
        char msg[64];

        (void) fd;
        (void) what;
        snprintf(msg, sizeof(msg), "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long) EXTEND_BY_USEC);
        pm_notify_send(userdata, msg);
}

/* WATCHDOG_USEC, when it is meant for this process (WATCHDOG_PID). */
static uint64_t watchdog_usec(void) {
        const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        char *end;
        unsigned long long v;

        if (!usec || (pid && strtol(pid, NULL, 10) != (long) getpid()))
                return 0;
        errno = 0;
        v = strtoull(usec, &end, 10);
        return errno || *end || end == usec ? 0 : (uint64_t) v;
}

static int start_watchdog(pm_notify *n, struct event_base *base) {
        uint64_t usec = watchdog_usec();
        struct timeval half = { .tv_sec = (time_t) (usec / 2 / 1000000),
                                .tv_usec = (suseconds_t) (usec / 2 % 1000000) };

        if (usec == 0 || n->addr_len == 0)
                return 0;
        n->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, n);
        if (!n->watchdog || event_add(n->watchdog, &half) < 0)
                return -1;
        ps_log(n->log, PS_LOG_DEBUG, "watchdog armed", PS_FIELD_INT("interval_us", usec / 2));
        return 0;
}

pm_notify *pm_notify_new(struct event_base *base, ps_logger *log) {
        pm_notify *n = calloc(1, sizeof(*n));

        if (!n)
                return NULL;
        n->log = log;
        n->fd = -1;
        if (getenv("NOTIFY_SOCKET") && !parse_socket(n, getenv("NOTIFY_SOCKET")))
                ps_log(log, PS_LOG_WARN,
                       "NOTIFY_SOCKET ignored: not an absolute path or @abstract name of at most 107 bytes",
                       PS_FIELD_STR("NOTIFY_SOCKET", getenv("NOTIFY_SOCKET")));
        if (parse_socket(n, getenv("NOTIFY_SOCKET")) &&
            (start_watchdog(n, base) < 0 ||
             !(n->extend = event_new(base, -1, EV_PERSIST, on_extend, n)))) {
                pm_notify_free(n);
                return NULL;
        }
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        return n;
}

pm_notify *pm_notify_free(pm_notify *n) {
        if (!n)
                return NULL;
        if (n->watchdog)
                event_free(n->watchdog);
        if (n->extend)
                event_free(n->extend);
        if (n->fd >= 0)
                close(n->fd);
        free(n);
        return NULL;
}

void pm_notify_preloading(pm_notify *n) {
        struct timeval every = { .tv_sec = EXTEND_EVERY_S, .tv_usec = 0 };

        if (!n || !n->extend || n->ready)
                return;
        on_extend(-1, 0, n);
        event_add(n->extend, &every);
}

/* The pools ready and configured; true when either changed. */
static bool count_pools(pm_notify *n, ps_registry *reg) {
        ps_registry_status st;
        size_t ready = 0;

        if (!reg || ps_registry_status_get(reg, &st) != 0)
                return false;
        for (size_t i = 0; i < st.n_pools; i++)
                ready += st.pools[i].ready;
        if (n->status_sent && ready == n->pools_ready && st.n_pools == n->pools) {
                ps_registry_status_done(&st);
                return false;
        }
        n->pools_ready = ready;
        n->pools = st.n_pools;
        ps_registry_status_done(&st);
        return true;
}

/* prefix, then STATUS= with the pools ready. */
static void send_status(pm_notify *n, const char *prefix) {
        char msg[160];

        snprintf(msg, sizeof(msg), "%sSTATUS=%zu/%zu pools ready", prefix, n->pools_ready, n->pools);
        if (pm_notify_send(n, msg) == 0)
                n->status_sent = true;
}

void pm_notify_started(pm_notify *n, ps_registry *reg) {
        if (!n || n->ready || n->addr_len == 0)
                return;
        n->ready = true;
        if (n->extend)
                event_del(n->extend);
        count_pools(n, reg);
        send_status(n, "READY=1\n");
}

void pm_notify_update(pm_notify *n, ps_registry *reg) {
        if (n && n->addr_len && !n->stopping && count_pools(n, reg))
                send_status(n, "");
}

void pm_notify_reloading(pm_notify *n) {
        struct timespec ts;
        char msg[96];

        /* Before READY=1, a reload is part of the start-up. */
        if (!n || !n->ready || n->stopping || n->addr_len == 0)
                return;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000);
        pm_notify_send(n, msg);
}

void pm_notify_reloaded(pm_notify *n, ps_registry *reg) {
        if (!n || !n->ready || n->stopping || n->addr_len == 0)
                return;
        count_pools(n, reg);
        send_status(n, "READY=1\n");
}

void pm_notify_stopping(pm_notify *n) {
        if (!n || n->stopping)
                return;
        n->stopping = true;
        if (n->extend)
                event_del(n->extend);
        pm_notify_send(n, "STOPPING=1\nSTATUS=stopping");
}
