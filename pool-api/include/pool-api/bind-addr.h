/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pool-api/error.h"

/*
 * The address the API listens on. Written HOST:PORT, where HOST is a
 * numeric IPv4 address or an IPv6 address in brackets:
 *
 *   127.0.0.1:9200    [::1]:9200    127.0.0.1:0 (the kernel picks a port)
 *
 * Names such as `localhost` are refused rather than resolved: resolution
 * can block, and "which address did it bind?" must have one answer.
 */
typedef struct pa_bind_addr {
        struct sockaddr_storage sa;
        socklen_t sa_len;
} pa_bind_addr;

/* "[ffff:...:ffff]:65535" plus NUL fits. */
#define PA_BIND_ADDR_STRING_MAX 64

/* 0 and *ret filled, or -EINVAL with err saying what is wrong and how the
 * address should look. ret is untouched on failure. */
int pa_bind_addr_parse(const char *s, pa_bind_addr *ret, pa_error *err);

/* From a socket address (getsockname()); -EAFNOSUPPORT for other families. */
int pa_bind_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len,
                               pa_bind_addr *ret);

/* 127.0.0.0/8, ::1, and 127/8 mapped into IPv6. */
bool pa_bind_addr_is_loopback(const pa_bind_addr *a);

uint16_t pa_bind_addr_port(const pa_bind_addr *a);

/* Writes "127.0.0.1:9200" or "[::1]:9200" (the form parse accepts) into
 * buf; returns buf, or "?" when it does not fit or the address is bad. */
const char *pa_bind_addr_to_string(const pa_bind_addr *a, char *buf, size_t size);
