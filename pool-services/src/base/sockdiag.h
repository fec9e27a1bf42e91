/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Who listens on a TCP port of this node's network namespace, from the
 * kernel's socket table (NETLINK_SOCK_DIAG, TCP sockets in LISTEN state of
 * both families) and the descriptors in /proc/<pid>/fd. Everything here is
 * synchronous and quick: one netlink dump of the listening sockets, then
 * the descriptor directories of a few processes. Hosts are numeric
 * addresses ("127.0.0.1", "::1", "[::1]"); anything else is -EINVAL.
 */

#define PS_SOCKDIAG_LISTENERS_MAX 8

typedef struct ps_listener {
        uint64_t inode;           /* of the socket: /proc/<pid>/fd/N -> socket:[inode] */
        uid_t uid;                /* who created it                         */
        int family;               /* AF_INET or AF_INET6                    */
} ps_listener;

/*
 * The listening sockets a client connecting to host:port reaches: those
 * bound to host exactly (an IPv4 host also as ::ffff:a.b.c.d), else to
 * the wildcard of host's family (0.0.0.0 or ::), else, for an IPv4 host,
 * to [::]. Several at one level are a SO_REUSEPORT group: all of them are
 * returned (at most max). 0 and *n (0: nobody listens there), -EINVAL for
 * a host that is not a numeric address, or the negative errno of the
 * netlink socket (a kernel without inet_diag: -EPROTONOSUPPORT, ...).
 */
int ps_sockdiag_listeners(const char *host, uint16_t port, ps_listener *out, size_t max,
                          size_t *n);

/*
 * Whether a process of the session led by leader holds the socket: the
 * leader, its descendants that are still in its session, and, when none
 * of them does, the other members of the session (a helper re-parented
 * after its parent died). 1 and *holder, 0 when none does, -ESRCH when the
 * leader is gone.
 */
int ps_sockdiag_session_holds(pid_t leader, uint64_t inode, pid_t *holder);

/*
 * The process that holds the socket, among those running as uid (another
 * user's socket lives in its own processes: only theirs are read). 1 and
 * *holder, 0 when none of the readable ones does, -EACCES when none of the
 * readable ones does and some could not be read (a daemon that is not root
 * may not look into another user's descriptors).
 */
int ps_sockdiag_holder(uint64_t inode, uid_t uid, pid_t *holder);

/* The command line of pid, its arguments separated by spaces and cut to
 * fit ("python3 -m http.server 8081"), else its name, else "?". */
void ps_sockdiag_command(pid_t pid, char *buf, size_t len);

/*
 * Whether the socket a client of host:port reaches belongs to a process
 * of the session led by leader (an engine and the helpers it forked, like
 * vLLM's API server processes). 0 when every listener there does;
 * -EADDRNOTAVAIL with err naming who listens instead ("port 8081 answers
 * but no process of the engine listens on it (pid 4242 of uid 1000 does:
 * python3 -m http.server 8081)") or that nobody does; -ESRCH when the
 * leader is gone; another negative errno with err set when it cannot be
 * told (-EINVAL: host not numeric; the netlink socket's errors).
 */
int ps_sockdiag_session_serves(const char *host, uint16_t port, pid_t leader, char *err,
                               size_t errlen);

/*
 * Whether an engine about to start can bind host:port: a socket bound
 * there the way a server restarting on its own port binds (SO_REUSEADDR,
 * so sockets of a dead engine in TIME_WAIT do not count; no SO_REUSEPORT,
 * so a listener that set it does), and closed again. 0 when free;
 * -EADDRINUSE with err "port 8081 on 127.0.0.1 is in use by pid 4242
 * (python3 -m http.server 8081)" (or "by a socket of uid 1001" when its
 * process cannot be seen, or just "is in use" for a socket that does not
 * listen); -EINVAL for a host that is not a numeric address; another
 * negative errno with err set when the test itself fails.
 */
int ps_sockdiag_port_free(const char *host, uint16_t port, char *err, size_t errlen);
