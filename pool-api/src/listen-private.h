/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The server's listening sockets, made here rather than by evhttp so a
 * failure comes back with the errno of the call that failed and names
 * what it was about. For pool-api/src/server.c.
 */
#include <sys/stat.h>

#include "pool-api/bind-addr.h"
#include "pool-api/error.h"

/* A TCP listener on a (shown: how errors name it). The descriptor, or a
 * negative errno with err set. */
int pa_listen_tcp(const pa_bind_addr *a, const char *shown, pa_error *err);

/*
 * The API socket at path: its directory checked, a stale socket there
 * removed, made 0660 and given to group (NULL or "": the daemon's own);
 * st gets what was made, to recognise it at the end. The descriptor, or
 * a negative errno with err set.
 */
int pa_listen_unix(const char *path, const char *group, struct stat *st, pa_error *err);
