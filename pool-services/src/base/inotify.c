/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/inotify.h"

struct ps_inotify {
        int fd;
        struct event *ev;
        ps_inotify_event_fn on_event;
        ps_inotify_batch_fn on_batch;
        void *userdata;
};

static void on_readable(evutil_socket_t fd, short what, void *userdata) {
        ps_inotify *in = userdata;
        _Alignas(struct inotify_event) char buf[8192];

        (void) what;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;  /* EAGAIN: all read */
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *) (void *) p;

                        p += sizeof(*ev) + ev->len;
                        in->on_event(ev, in->userdata);
                }
        }
        if (in->on_batch)
                in->on_batch(in->userdata);
}

ps_inotify *ps_inotify_new(struct event_base *base, ps_inotify_event_fn on_event,
                           ps_inotify_batch_fn on_batch, void *userdata) {
        ps_inotify *in;

        if (!base || !on_event) {
                errno = EINVAL;
                return NULL;
        }
        in = calloc(1, sizeof(*in));
        if (!in)
                return NULL;
        *in = (ps_inotify) { .fd = -1, .on_event = on_event, .on_batch = on_batch,
                             .userdata = userdata };
        in->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (in->fd < 0) {
                int r = errno;

                free(in);
                errno = r;
                return NULL;
        }
        in->ev = event_new(base, in->fd, EV_READ | EV_PERSIST, on_readable, in);
        if (!in->ev || event_add(in->ev, NULL) < 0) {
                ps_inotify_free(in);
                errno = ENOMEM;
                return NULL;
        }
        return in;
}

ps_inotify *ps_inotify_free(ps_inotify *in) {
        if (!in)
                return NULL;
        if (in->ev)
                event_free(in->ev);
        if (in->fd >= 0)
                close(in->fd);
        free(in);
        return NULL;
}

int ps_inotify_add(ps_inotify *in, const char *path, uint32_t mask) {
        return inotify_add_watch(in->fd, path, mask);
}

void ps_inotify_rm(ps_inotify *in, int wd) {
        inotify_rm_watch(in->fd, wd);
}
