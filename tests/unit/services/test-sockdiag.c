/* SPDX-License-Identifier: MIT */
/*
 * base/sockdiag.c against real sockets of this process and of children it
 * forks: the kernel's socket table read through netlink, and the holders
 * found through /proc.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/sockdiag.h"

/* A TCP socket bound to addr:port (0: any), listening when asked. */
static int tcp_socket(int family, const char *addr, uint16_t port, bool reuseport, bool listening) {
        struct sockaddr_storage ss = { 0 };
        socklen_t sl;
        int fd, one = 1;

        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;

                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
                sl = sizeof(*in);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
                sl = sizeof(*in6);
        }
        fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
        if (reuseport)
                assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &ss, sl), 0);
        if (listening)
                assert_int_equal(listen(fd, 8), 0);
        return fd;
}

static uint16_t port_of(int fd) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        assert_int_equal(getsockname(fd, (struct sockaddr *) &ss, &sl), 0);
        return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                              : ((struct sockaddr_in *) &ss)->sin_port);
}

/* A port nobody holds now: bound by the kernel's choice, then closed. */
static uint16_t free_port(void) {
        int fd = tcp_socket(AF_INET, "127.0.0.1", 0, false, false);
        uint16_t port = port_of(fd);

        close(fd);
        return port;
}

/* ---- children in a session of their own ----------------------------------- */

typedef struct child {
        pid_t leader;           /* setsid() */
        pid_t listener;         /* the leader, or its child that listens */
        uint16_t port;
} child;

/* Forks a session leader that listens on 127.0.0.1 (itself, or through
 * a child it forks, as vLLM's API workers do) and waits until it does. */
static child child_start(bool through_helper) {
        int pfd[2];
        child c = { 0 };
        pid_t pid;

        assert_int_equal(pipe(pfd), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                pid_t me;
                int fd;

                close(pfd[0]);
                if (setsid() < 0)
                        _exit(1);
                if (through_helper && fork() != 0) {
                        for (;;)
                                pause();
                }
                fd = tcp_socket(AF_INET, "127.0.0.1", 0, false, true);
                c.port = port_of(fd);
                me = getpid();
                if (write(pfd[1], &c.port, sizeof(c.port)) != sizeof(c.port) ||
                    write(pfd[1], &me, sizeof(me)) != sizeof(me))
                        _exit(1);
                for (;;)
                        pause();
        }
        close(pfd[1]);
        c.leader = pid;
        assert_int_equal(read(pfd[0], &c.port, sizeof(c.port)), sizeof(c.port));
        assert_int_equal(read(pfd[0], &c.listener, sizeof(c.listener)), sizeof(c.listener));
        close(pfd[0]);
        return c;
}

static void child_stop(child *c) {
        (void) kill(-c->leader, SIGKILL);
        (void) waitpid(c->leader, NULL, 0);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_our_listener_is_found_with_our_pid(void **state) {
        int fd = tcp_socket(AF_INET, "127.0.0.1", 0, false, true);
        uint16_t port = port_of(fd);
        ps_listener l[PS_SOCKDIAG_LISTENERS_MAX];
        char err[256];
        size_t n = 0;
        pid_t holder = 0;

        (void) state;
        assert_int_equal(ps_sockdiag_listeners("127.0.0.1", port, l, PS_SOCKDIAG_LISTENERS_MAX, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(l[0].family, AF_INET);
        assert_int_equal(l[0].uid, geteuid());
        assert_int_equal(ps_sockdiag_holder(l[0].inode, l[0].uid, &holder), 1);
        assert_int_equal(holder, getpid());
        holder = 0;
        assert_int_equal(ps_sockdiag_session_holds(getpid(), l[0].inode, &holder), 1);
        assert_int_equal(holder, getpid());
        assert_int_equal(ps_sockdiag_session_serves("127.0.0.1", port, getpid(), err, sizeof(err)), 0);
        /* Another address on the same port is nobody's. */
        assert_int_equal(ps_sockdiag_listeners("127.0.0.2", port, l, PS_SOCKDIAG_LISTENERS_MAX, &n), 0);
        assert_int_equal(n, 0);
        close(fd);
}

static void test_a_free_port_is_free(void **state) {
        uint16_t port = free_port();
        ps_listener l[1];
        char err[256] = "";
        size_t n = 1;

        (void) state;
        assert_int_equal(ps_sockdiag_listeners("127.0.0.1", port, l, 1, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(ps_sockdiag_port_free("127.0.0.1", port, err, sizeof(err)), 0);
        assert_string_equal(err, "");
        /* And nobody answers there: a 200 from it could not be an engine's. */
        assert_int_equal(ps_sockdiag_session_serves("127.0.0.1", port, getpid(), err, sizeof(err)),
                         -EADDRNOTAVAIL);
        assert_non_null(strstr(err, "no process listens on it in this network namespace"));
}

static void test_a_wildcard_listener_serves_the_loopback(void **state) {
        int fd = tcp_socket(AF_INET, "0.0.0.0", 0, false, true);
        uint16_t port = port_of(fd);
        ps_listener l[2];
        char err[256];
        size_t n = 0;

        (void) state;
        assert_int_equal(ps_sockdiag_listeners("127.0.0.1", port, l, 2, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(ps_sockdiag_session_serves("127.0.0.1", port, getpid(), err, sizeof(err)), 0);
        assert_int_equal(ps_sockdiag_port_free("127.0.0.1", port, err, sizeof(err)), -EADDRINUSE);
        close(fd);
}

static void test_a_child_in_another_session_holds_the_port(void **state) {
        child c = child_start(false);
        char err[512], want[128];
        ps_listener l[1];
        pid_t holder;
        size_t n = 0;
        int r;

        (void) state;
        r = ps_sockdiag_port_free("127.0.0.1", c.port, err, sizeof(err));
        assert_int_equal(r, -EADDRINUSE);
        snprintf(want, sizeof(want), "port %u on 127.0.0.1 is in use by pid %d (", (unsigned) c.port,
                 (int) c.listener);
        assert_memory_equal(err, want, strlen(want));
        assert_non_null(strstr(err, "test-services-sockdiag"));

        /* It serves for its own session, not for ours. */
        assert_int_equal(ps_sockdiag_session_serves("127.0.0.1", c.port, c.leader, err, sizeof(err)), 0);
        r = ps_sockdiag_session_serves("127.0.0.1", c.port, getpid(), err, sizeof(err));
        assert_int_equal(r, -EADDRNOTAVAIL);
        snprintf(want, sizeof(want), "port %u answers but no process of the engine listens on it "
                 "(pid %d of uid %u does: ", (unsigned) c.port, (int) c.listener, (unsigned) geteuid());
        assert_memory_equal(err, want, strlen(want));
        assert_int_equal(ps_sockdiag_listeners("127.0.0.1", c.port, l, 1, &n), 0);
        assert_int_equal(n, 1);
        child_stop(&c);

        /* A session whose leader is gone holds nothing. */
        assert_int_equal(ps_sockdiag_session_holds(c.leader, l[0].inode, &holder), -ESRCH);
}

static void test_a_helper_of_the_session_serves_for_it(void **state) {
        child c = child_start(true);
        ps_listener l[1];
        pid_t holder = 0;
        size_t n = 0;
        char err[256];

        (void) state;
        assert_int_not_equal(c.listener, c.leader);
        assert_int_equal(ps_sockdiag_listeners("127.0.0.1", c.port, l, 1, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(ps_sockdiag_session_holds(c.leader, l[0].inode, &holder), 1);
        assert_int_equal(holder, c.listener);
        assert_int_equal(ps_sockdiag_session_serves("127.0.0.1", c.port, c.leader, err, sizeof(err)), 0);
        child_stop(&c);
}

/* A restarting engine finds its old connections in TIME_WAIT (or
 * FIN_WAIT2) on its port: they do not make it taken. */
static void test_closed_connections_do_not_take_the_port(void **state) {
        int lfd = tcp_socket(AF_INET, "127.0.0.1", 0, false, true);
        uint16_t port = port_of(lfd);
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
        char err[256] = "";
        int cfd, afd;

        (void) state;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(cfd, (struct sockaddr *) &to, sizeof(to)), 0);
        afd = accept(lfd, NULL, NULL);
        assert_true(afd >= 0);
        /* The server side closes first: its socket on the port lingers. */
        close(afd);
        close(lfd);
        close(cfd);
        assert_int_equal(ps_sockdiag_port_free("127.0.0.1", port, err, sizeof(err)), 0);
        assert_string_equal(err, "");
}

/* A listener that set SO_REUSEPORT would share the port with an engine
 * that set it too: it is taken all the same. */
static void test_a_reuseport_listener_takes_the_port(void **state) {
        int fd = tcp_socket(AF_INET, "127.0.0.1", 0, true, true);
        uint16_t port = port_of(fd);
        char err[256], want[96];

        (void) state;
        assert_int_equal(ps_sockdiag_port_free("127.0.0.1", port, err, sizeof(err)), -EADDRINUSE);
        snprintf(want, sizeof(want), "port %u on 127.0.0.1 is in use by pid %d (", (unsigned) port,
                 (int) getpid());
        assert_memory_equal(err, want, strlen(want));
        close(fd);
}

static void test_ipv6_listeners(void **state) {
        ps_listener l[2];
        char err[256];
        size_t n = 0;
        uint16_t port;
        int fd;

        (void) state;
        fd = tcp_socket(AF_INET6, "::1", 0, false, true);
        port = port_of(fd);
        assert_int_equal(ps_sockdiag_listeners("[::1]", port, l, 2, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(l[0].family, AF_INET6);
        assert_int_equal(ps_sockdiag_listeners("127.0.0.1", port, l, 2, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(ps_sockdiag_port_free("::1", port, err, sizeof(err)), -EADDRINUSE);
        close(fd);

        /* [::] takes IPv4 clients too, after anything bound to IPv4. */
        fd = tcp_socket(AF_INET6, "::", 0, false, true);
        port = port_of(fd);
        assert_int_equal(ps_sockdiag_listeners("127.0.0.1", port, l, 2, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(l[0].family, AF_INET6);
        assert_int_equal(ps_sockdiag_session_serves("127.0.0.1", port, getpid(), err, sizeof(err)), 0);
        close(fd);
}

static void test_hosts_must_be_numeric(void **state) {
        ps_listener l[1];
        char err[256];
        size_t n = 0;

        (void) state;
        assert_int_equal(ps_sockdiag_listeners("localhost", 80, l, 1, &n), -EINVAL);
        assert_int_equal(ps_sockdiag_port_free("example.org", 80, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "host example.org: not a numeric address");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_our_listener_is_found_with_our_pid),
                cmocka_unit_test(test_a_free_port_is_free),
                cmocka_unit_test(test_a_wildcard_listener_serves_the_loopback),
                cmocka_unit_test(test_a_child_in_another_session_holds_the_port),
                cmocka_unit_test(test_a_helper_of_the_session_serves_for_it),
                cmocka_unit_test(test_closed_connections_do_not_take_the_port),
                cmocka_unit_test(test_a_reuseport_listener_takes_the_port),
                cmocka_unit_test(test_ipv6_listeners),
                cmocka_unit_test(test_hosts_must_be_numeric),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
