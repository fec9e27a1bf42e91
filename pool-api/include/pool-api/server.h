/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-api/bind-addr.h"
#include "pool-api/error.h"
#include "pool-services/base/clock.h"
#include "pool-services/conf/config.h"
#include "pool-services/observe/engine-metrics.h"
#include "pool-services/base/event.h"
#include "pool-services/placement/inventory.h"
#include "pool-services/observe/metrics.h"
#include "pool-services/pool/registry.h"

struct event_base;

/*
 * What the routes serve. All borrowed; they must outlive the server. A
 * NULL registry makes every pool route answer 503 (the skeleton's tests
 * run the server alone).
 */
typedef struct pa_backend {
        ps_registry *registry;
        const ps_inventory *inventory;
        const ps_config *config;        /* allowlist, gpu.require, defaults */
        ps_metrics *metrics;
        ps_engine_metrics *engine_metrics; /* engines' own, appended to /metrics */
        /* Supervision events seen so far (not request logs): a pool
         * snapshot is served from cache while it and the wall-clock second
         * stay the same. NULL: no cache. */
        const uint64_t *events_seen;
        /* GET /v2/node: the node's cloud status, a new reference (NULL:
         * the route answers a home node's {"profile": "home"}). */
        json_t *(*node_status)(void *userdata);
        void *node_userdata;
        /* POST /v2/config/reload: re-reads the configuration file as
         * SIGHUP does. 0 with *ret (a new reference) the pools "added",
         * "removed", "changed" and "unchanged" (lists of ids); PS_E_CONFLICT
         * when the daemon runs without a file, PS_E_INVALID when the file
         * was refused (nothing changed), each with err saying why; a
         * negative errno otherwise. NULL: the route answers 409. */
        int (*reload_config)(void *userdata, json_t **ret, char *err, size_t errlen);
        void *reload_userdata;
} pa_backend;

/* Request bodies above this get 413 (docs/api.md, "Limits"). */
#define PA_SERVER_MAX_BODY_DEFAULT ((size_t) 1 << 20)

typedef struct pa_server_config {
        pa_bind_addr bind;        /* loopback, unless api_token is set      */
        const char *api_token;    /* NULL/"": no token, and TCP is read-only
                                     (403 READ_ONLY for changes). Else every
                                     route but GET /health, /metrics and
                                     /ready needs "Authorization: Bearer
                                     <token>" over TCP; copied            */
        const char *socket_path;  /* NULL/"": no Unix-domain socket. Else the
                                     API is served there too, every route
                                     without a token; copied               */
        const char *socket_group; /* the socket's group (mode 0660); NULL:
                                     the daemon's primary group            */
        ps_event_sink events;     /* one debug event per request           */
        bool quiet_requests;      /* no per-request events (the log is not
                                     at debug): saves their cost           */
        const ps_clock *clock;    /* borrowed; NULL: the system clock       */
        size_t max_body_size;     /* 0: PA_SERVER_MAX_BODY_DEFAULT          */
        pa_backend backend;
} pa_server_config;

typedef struct pa_server pa_server;

/*
 * Listens on config->bind (and on config->socket_path) and serves the API
 * on base (borrowed; it must outlive the server). Returns NULL on failure
 * with err (may be NULL) saying why: a non-loopback address without a
 * token is refused (-EPERM), a token that is too long or not printable
 * ASCII (-EINVAL), a busy port is -EADDRINUSE, and so on; the message
 * names the address.
 *
 * The socket is created with mode 0600 (umask 0177 while it is bound),
 * then given its group and mode 0660. An existing path is probed first: a
 * socket some process still accepts on is never taken over (-EADDRINUSE,
 * naming the path); a stale one is removed; anything that is not a socket
 * is left alone (-EEXIST). A path over 107 bytes is -ENAMETOOLONG, an
 * unknown group -ENOENT. The server removes the socket when freed.
 */
pa_server *pa_server_new(struct event_base *base, const pa_server_config *config,
                         pa_error *err);

/* The configuration requests are checked against from now on (after a
 * reload); borrowed like the first. */
void pa_server_set_config(pa_server *server, const ps_config *config);

/* The daemon is shutting down: from now on every request that is not
 * read-only (GET, HEAD, POST .../status) is answered 503
 * SERVICE_UNAVAILABLE, so nothing starts an engine the shutdown would then
 * wait for. */
void pa_server_set_stopping(pa_server *server);

/* The daemon is starting (its configured pools are being registered):
 * until called with false, every request but GET/HEAD /health is
 * answered 503 SERVICE_UNAVAILABLE, so nothing reads a node half known
 * (a configured pool "not found", an empty node "ready"). */
void pa_server_set_starting(pa_server *server, bool starting);

/*
 * Listens on the Unix socket again when its file is gone (its directory
 * was deleted and made again): the old listener is closed, a new socket is
 * made as at start. 0 when there is nothing to do or it worked; a negative
 * errno with err saying why.
 */
int pa_server_rebind_socket(pa_server *server, pa_error *err);

/* Closes the listener and every open connection. Accepts NULL; returns NULL. */
pa_server *pa_server_free(pa_server *server);

/* The address actually bound: with port 0 in the config, the kernel's pick. */
const pa_bind_addr *pa_server_address(const pa_server *server);
uint16_t pa_server_port(const pa_server *server);

/* The Unix-domain socket's path; NULL when there is none. */
const char *pa_server_socket_path(const pa_server *server);
