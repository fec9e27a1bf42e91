/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/reap.h"

static void reap_now(pid_t pid) {
        while (waitpid(pid, NULL, WNOHANG) < 0 && errno == EINTR)
                ;
}

static void on_gone(evutil_socket_t fd, short what, void *userdata) {
        (void) what;
        reap_now((pid_t) (intptr_t) userdata);
        close(fd);
}

void ps_reap_when_gone(struct event_base *base, pid_t pid, int pidfd) {
        if (pid <= 0)
                return;
        if (pidfd < 0)
                pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                reap_now(pid);
                return;
        }
        /* A one-shot event: libevent frees it when it fires, or with the
         * base. */
        if (!base || event_base_once(base, pidfd, EV_READ, on_gone, (void *) (intptr_t) pid,
                                     NULL) < 0) {
                reap_now(pid);
                close(pidfd);
        }
}
