/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "pool-api/bind-addr.h"

#define EXAMPLE "expected HOST:PORT, e.g. 127.0.0.1:9200 or [::1]:9200"

/* Enough of the input for a message; the rest of a long string adds nothing. */
#define SHOWN "%.80s"

/* Decimal 0..65535, digits only: no sign, no spaces, no leading zeros
 * (an operator writing 09200 more likely made a typo than meant 9200). */
static int parse_port(const char *input, const char *p, uint16_t *ret, pa_error *err) {
        unsigned long v = 0;

        if (!*p)
                return pa_error_set(err, -EINVAL, "bind address '" SHOWN "' has no port (" EXAMPLE ")", input);
        for (const char *c = p; *c; c++) {
                if (*c < '0' || *c > '9')
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "': port '" SHOWN "' is not a decimal number",
                                            input, p);
                v = v * 10 + (unsigned long) (*c - '0');
                if (v > 65535)
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "': port " SHOWN " is out of range (0-65535)",
                                            input, p);
        }
        if (p[0] == '0' && p[1])
                return pa_error_set(err, -EINVAL,
                                    "bind address '" SHOWN "': port '" SHOWN "' has a leading zero",
                                    input, p);
        *ret = (uint16_t) v;
        return 0;
}

int pa_bind_addr_parse(const char *s, pa_bind_addr *ret, pa_error *err) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *port_str, *colon;
        pa_bind_addr a = { .sa_len = 0 };
        uint16_t port;
        size_t host_len;
        bool v6;
        int r;

        if (!s || !*s)
                return pa_error_set(err, -EINVAL, "bind address is empty (" EXAMPLE ")");

        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close)
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "' has no ']' after the IPv6 address (" EXAMPLE ")",
                                            s);
                if (close[1] != ':')
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "' has no ':PORT' after ']' (" EXAMPLE ")", s);
                v6 = true;
                host_len = (size_t) (close - (s + 1));
                if (host_len >= sizeof(host))
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "': '[...]' is not an IPv6 address", s);
                memcpy(host, s + 1, host_len);
                port_str = close + 2;
        } else {
                colon = strrchr(s, ':');
                if (!colon)
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "' has no port (" EXAMPLE ")", s);
                if (memchr(s, ':', (size_t) (colon - s)))
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "': an IPv6 address must be in brackets, e.g. [::1]:9200",
                                            s);
                v6 = false;
                host_len = (size_t) (colon - s);
                if (host_len >= sizeof(host))
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "': host is not a numeric IPv4 address", s);
                memcpy(host, s, host_len);
                port_str = colon + 1;
        }
        host[host_len] = '\0';
        if (host_len == 0)
                return pa_error_set(err, -EINVAL, "bind address '" SHOWN "' has no host (" EXAMPLE ")", s);

        r = parse_port(s, port_str, &port, err);
        if (r < 0)
                return r;

        if (v6) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &a.sa;

                /* inet_pton() takes no zone (fe80::1%eth0): link-local
                 * addresses are not loopback anyway. */
                if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "': '" SHOWN "' is not an IPv6 address", s, host);
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons(port);
                a.sa_len = sizeof(*sin6);
        } else {
                struct sockaddr_in *sin = (struct sockaddr_in *) &a.sa;

                /* inet_pton() wants exactly four decimal parts, unlike
                 * inet_aton(), which takes 127.1 and octal. */
                if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
                        return pa_error_set(err, -EINVAL,
                                            "bind address '" SHOWN "': host '" SHOWN "' is not a numeric IPv4 address "
                                            "(names are not resolved; use 127.0.0.1 or [::1])",
                                            s, host);
                sin->sin_family = AF_INET;
                sin->sin_port = htons(port);
                a.sa_len = sizeof(*sin);
        }

        *ret = a;
        return 0;
}

int pa_bind_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, pa_bind_addr *ret) {
        pa_bind_addr a = { .sa_len = 0 };

        if (!sa || !ret)
                return -EINVAL;
        if (sa->sa_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in))
                a.sa_len = sizeof(struct sockaddr_in);
        else if (sa->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6))
                a.sa_len = sizeof(struct sockaddr_in6);
        else
                return -EAFNOSUPPORT;
        memcpy(&a.sa, sa, a.sa_len);
        *ret = a;
        return 0;
}

bool pa_bind_addr_is_loopback(const pa_bind_addr *a) {
        if (!a)
                return false;
        if (a->sa.ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *) &a->sa;

                return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
        }
        if (a->sa.ss_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) &a->sa;

                if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
                        return true;
                /* ::ffff:127.x.y.z: the last four bytes are the IPv4 address. */
                return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
                       sin6->sin6_addr.s6_addr[12] == 127;
        }
        return false;
}

uint16_t pa_bind_addr_port(const pa_bind_addr *a) {
        if (!a)
                return 0;
        if (a->sa.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *) &a->sa)->sin_port);
        if (a->sa.ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *) &a->sa)->sin6_port);
        return 0;
}

const char *pa_bind_addr_to_string(const pa_bind_addr *a, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN];
        const void *addr;
        bool v6;
        int n;

        if (!a || !buf || size == 0)
                return "?";
        if (a->sa.ss_family == AF_INET) {
                addr = &((const struct sockaddr_in *) &a->sa)->sin_addr;
                v6 = false;
        } else if (a->sa.ss_family == AF_INET6) {
                addr = &((const struct sockaddr_in6 *) &a->sa)->sin6_addr;
                v6 = true;
        } else
                return "?";
        if (!inet_ntop(a->sa.ss_family, addr, host, sizeof(host)))
                return "?";
        n = snprintf(buf, size, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned) pa_bind_addr_port(a));
        if (n < 0 || (size_t) n >= size)
                return "?";
        return buf;
}
