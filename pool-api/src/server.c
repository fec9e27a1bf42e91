/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "auth-private.h"
#include "listen-private.h"
#include "snapshot-cache-private.h"
#include "pool-api/server.h"
#include "pool-services/pool/store.h"
#include "request-private.h"
#include "routes-private.h"

/* Headers beyond this get 400 from evhttp: nothing we serve needs more. */
#define MAX_HEADERS_SIZE (64 * 1024)
#define CONNECTION_TIMEOUT_S 30

/* X-Correlation-Id values longer than this, or with bytes outside visible
 * ASCII, are ignored rather than logged or echoed. */
#define CORRELATION_ID_MAX 128

/* What evhttp hands on_request(): the server, and which listener. */
typedef struct listener_ctx {
        pa_server *server;
        pa_listener via;
} listener_ctx;

struct pa_server {
        struct evhttp *http;            /* TCP: the listener and connections */
        struct evhttp *http_local;      /* the Unix socket's; NULL: none     */
        listener_ctx tcp, local;        /* evhttp's callback arguments       */
        char *socket_path;              /* NULL: no socket                   */
        char *socket_group;             /* NULL: the daemon's primary group  */
        struct evhttp_bound_socket *local_listener;
        /* Out of descriptors, a listener stops accepting for a while
         * instead of spinning on accept(): one per listener. */
        struct accept_pause {
                pa_server *server;
                struct evconnlistener *listener;
                struct event *resume;
                const char *name;
                unsigned pauses;        /* in this episode; 0: none */
        } pause_tcp, pause_local;
        dev_t socket_dev;               /* the socket file we made, so only  */
        ino_t socket_ino;               /* that one is removed at the end    */
        struct event_base *base;
        pa_bind_addr address;           /* the address actually bound        */
        ps_event_sink events;
        const ps_clock *clock;
        pa_backend backend;
        pa_auth auth;
        bool log_requests;              /* one debug event per request      */
        pa_snapshot_cache *snapshots;
        uint64_t changing_requests;     /* handled requests other than GET */
        pa_deferred *deferred;          /* requests waiting for an answer    */
        bool stopping;                  /* only GET and HEAD are served      */
        bool starting;                  /* only /health is served            */
        bool freeing;                   /* replies go now, none is held      */
};

/*
 * A request answered later. It keeps copies of what the log line needs,
 * because evhttp may free the request (and its URI) first.
 */
struct pa_deferred {
        pa_deferred *prev, *next;       /* in server->deferred               */
        pa_server *server;              /* NULL: an orphan (server freed)    */
        struct evhttp_connection *conn;
        pa_request request;
        char *raw_path;
        char *correlation_id;
        char peer[PA_BIND_ADDR_STRING_MAX + 8];
        struct held_send *held;         /* a reply waiting for the commit   */
};

/* A reply kept until the state store commits (pa_request_hold()). */
typedef struct held_send {
        pa_deferred *d;
        bool ours;                      /* deferred by the hold, not a handler */
        int status;
        char *content_type;             /* NULL: a 204                      */
        char *body;
        size_t len;
} held_send;

/* Length of the host in "127.0.0.1:9200" or "[::1]:9200". */
static int host_length(const char *address) {
        const char *colon = strrchr(address, ':');

        return (int) (colon ? (size_t) (colon - address) : strlen(address));
}

static const char *correlation_id(struct evhttp_request *req) {
        const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Correlation-Id");
        size_t n = 0;

        if (!v || !*v)
                return NULL;
        for (; v[n]; n++)
                if (n == CORRELATION_ID_MAX || v[n] < 0x21 || v[n] > 0x7e)
                        return NULL;
        return v;
}

static void format_peer(struct evhttp_request *req, bool local, char *buf, size_t size) {
        struct evhttp_connection *conn = req ? evhttp_request_get_connection(req) : NULL;
        char *peer_host = NULL;
        uint16_t peer_port = 0;

        buf[0] = '\0';
        if (!conn)
                return;
        if (local) {
                snprintf(buf, size, "unix");
                return;
        }
        evhttp_connection_get_peer(conn, &peer_host, &peer_port);
        if (peer_host)
                snprintf(buf, size, "%s:%u", peer_host, (unsigned) peer_port);
}

static void log_request(const pa_request *r, const char *peer) {
        if (!r->server->events.fn || !r->server->log_requests)
                return;

        const ps_field fields[] = {
                PS_FIELD_STR("method", pa_method_to_string(r->method)),
                PS_FIELD_STR("path", r->raw_path),
                PS_FIELD_INT("status", r->status),
                PS_FIELD_INT("duration_ms", ps_clock_mono_ms(r->server->clock) - r->started_ms),
                PS_FIELD_STR("peer", peer[0] ? peer : NULL),
                PS_FIELD_STR("correlation_id", r->correlation_id),
        };
        const ps_event ev = {
                .type = PS_EVENT_HTTP_REQUEST,
                .level = PS_LOG_DEBUG,
                .message = "request",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };
        ps_event_emit(&r->server->events, &ev);
}

/* The uid and pid of the process at the other end of a Unix-socket
 * connection; -1 when the kernel does not say. Only for the log: whether a
 * request came through the socket is decided by its listener. */
static void peer_credentials(struct evhttp_request *req, int64_t *uid, int64_t *pid) {
        struct evhttp_connection *conn = evhttp_request_get_connection(req);
        struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
        evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
        struct ucred cred;
        socklen_t len = sizeof(cred);

        *uid = *pid = -1;
        if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
            len == sizeof(cred)) {
                *uid = cred.uid;
                *pid = cred.pid;
        }
}

/* Every change made through the socket says who made it. */
static void log_local_change(const pa_request *r) {
        int64_t uid, pid;

        if (!r->server->events.fn)
                return;
        peer_credentials(r->req, &uid, &pid);

        const ps_field fields[] = {
                PS_FIELD_STR("method", pa_method_to_string(r->method)),
                PS_FIELD_STR("path", r->raw_path),
                PS_FIELD_INT("uid", uid),
                PS_FIELD_INT("peer_pid", pid),
                PS_FIELD_STR("socket", r->server->socket_path),
        };
        const ps_event ev = {
                .type = PS_EVENT_HTTP_REQUEST,
                .level = PS_LOG_INFO,
                .correlation_id = r->correlation_id,
                .message = "change requested through the API socket",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };
        ps_event_emit(&r->server->events, &ev);
}

void pa_request_warn_root_engines(const pa_request *r) {
        const pa_backend *b = pa_request_backend(r);

        if (!b || !b->config || geteuid() != 0 ||
            (b->config->engines_user && b->config->engines_user[0]))
                return;

        const ps_field fields[] = {
                PS_FIELD_STR("method", pa_method_to_string(r->method)),
                PS_FIELD_STR("path", r->raw_path),
        };
        const ps_event ev = {
                .type = PS_EVENT_HTTP_REQUEST,
                .level = PS_LOG_WARN,
                .correlation_id = r->correlation_id,
                .message = "starting an engine as root: engines.user is not set",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };
        ps_event_emit(&r->server->events, &ev);
}

#define ACCEPT_PAUSE_MS 1000

static void on_accept_resume(evutil_socket_t fd, short what, void *userdata) {
        struct accept_pause *p = userdata;

        (void) fd;
        (void) what;
        if (p->listener)
                evconnlistener_enable(p->listener);
}

/*
 * libevent hands an error callback the listener's own argument, which is
 * evhttp's: the pause is found by its listener. One loop thread; a
 * handful of listeners in a process.
 */
#define ACCEPT_PAUSES_MAX 16
static struct accept_pause *accept_pauses[ACCEPT_PAUSES_MAX];

static void pause_register(struct accept_pause *p, bool on) {
        for (size_t i = 0; i < ACCEPT_PAUSES_MAX; i++) {
                if (on && !accept_pauses[i]) {
                        accept_pauses[i] = p;
                        return;
                }
                if (!on && accept_pauses[i] == p)
                        accept_pauses[i] = NULL;
        }
}

static struct accept_pause *pause_of(const struct evconnlistener *lev) {
        for (size_t i = 0; i < ACCEPT_PAUSES_MAX; i++)
                if (accept_pauses[i] && accept_pauses[i]->listener == lev)
                        return accept_pauses[i];
        return NULL;
}

static void pause_say(struct accept_pause *p, ps_log_level level, const char *message, int e) {
        const ps_field fields[] = {
                PS_FIELD_STR("listener", p->name),
                e ? PS_FIELD_STR("error", strerror(e)) : PS_FIELD_INT("pauses", p->pauses),
                PS_FIELD_INT("pause_ms", ACCEPT_PAUSE_MS),
        };
        const ps_event ev = {
                .type = PS_EVENT_GENERIC,
                .level = level,
                .message = message,
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        if (p->server->events.fn)
                ps_event_emit(&p->server->events, &ev);
}

/* A request came: accept() works again, the episode of pauses is over. */
static void pauses_end(pa_server *server) {
        struct accept_pause *all[] = { &server->pause_tcp, &server->pause_local };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                if (all[i]->pauses > 0) {
                        pause_say(all[i], PS_LOG_INFO, "accepting API connections again", 0);
                        all[i]->pauses = 0;
                }
}

/*
 * accept() failed. Out of descriptors (many open connections), every
 * further readiness would fail the same way at once: stop accepting for a
 * second, rather than spin the loop. Said once per episode: the first
 * pause, and the first request served after the last.
 */
static void on_accept_error(struct evconnlistener *lev, void *unused) {
        struct accept_pause *p = pause_of(lev);
        const struct timeval tv = { ACCEPT_PAUSE_MS / 1000, (ACCEPT_PAUSE_MS % 1000) * 1000 };
        int e = EVUTIL_SOCKET_ERROR();

        (void) unused;
        if (!p || (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM))
                return;
        evconnlistener_disable(lev);
        if (p->resume)
                event_add(p->resume, &tv);
        if (p->pauses++ == 0)
                pause_say(p, PS_LOG_WARN, "cannot accept API connections: pausing", e);
}

static int watch_accept_errors(pa_server *server, struct accept_pause *p,
                               struct evhttp_bound_socket *bound, const char *name) {
        p->server = server;
        p->name = name;
        p->listener = evhttp_bound_socket_get_listener(bound);
        if (!p->resume) {
                p->resume = evtimer_new(server->base, on_accept_resume, p);
                if (p->resume)
                        pause_register(p, true);
        }
        if (!p->listener || !p->resume)
                return -ENOMEM;
        evconnlistener_set_error_cb(p->listener, on_accept_error);
        return 0;
}

/* 403 READ_ONLY: a change over TCP with no token configured. */
static void reply_read_only(pa_request *r, const pa_path *path) {
        const char *sock = r->server->socket_path;

        if (pa_auth_path_is_private(path))
                pa_reply_error(r, PA_CODE_READ_ONLY,
                               "engine logs can carry prompts: without an API token they are "
                               "served only through the Unix socket%s%s",
                               sock ? " " : " (off: api.socket is \"\")", sock ? sock : "");
        else if (sock)
                pa_reply_error(r, PA_CODE_READ_ONLY,
                               "without an API token the TCP listener is read-only: send changes "
                               "through the Unix socket %s (curl --unix-socket %s http://localhost/...), "
                               "or configure a token (api.token_file or LLORCH_API_TOKEN)",
                               sock, sock);
        else
                pa_reply_error(r, PA_CODE_READ_ONLY,
                               "without an API token the TCP listener is read-only, and the Unix "
                               "socket is off (api.socket is \"\"): configure a token "
                               "(api.token_file or LLORCH_API_TOKEN) to make changes");
}

/*
 * Without a token the TCP listener answers only requests addressed to an
 * IP address or "localhost" (but for the public /health, /metrics and
 * /ready): a web page whose name was rebound to 127.0.0.1 (DNS rebinding)
 * sends its own host name and is refused.
 */
static bool host_header_ok(const char *host) {
        char name[256];
        size_t n;

        if (!host)
                return true;            /* HTTP/1.0 */
        if (host[0] == '[')
                return strchr(host, ']') != NULL;       /* an IPv6 literal */
        n = strcspn(host, ":");
        if (n == 0 || n >= sizeof(name))
                return false;
        memcpy(name, host, n);
        name[n] = '\0';
        if (strcasecmp(name, "localhost") == 0)
                return true;
        return strspn(name, "0123456789.") == n;
}

static void dispatch(pa_request *r) {
        const char *method = pa_method_to_string(r->method);
        pa_listener via = r->local ? PA_LISTENER_UNIX : PA_LISTENER_TCP;
        const pa_route *route = NULL;
        unsigned allowed = 0;
        pa_error err;
        pa_path path;
        char allow[128];

        /* Before routing: without the token, no route is seen to exist. */
        if (pa_auth_token_required(&r->server->auth, via, method, r->raw_path) &&
            !pa_auth_check(&r->server->auth, evhttp_find_header(
                                   evhttp_request_get_input_headers(r->req), "Authorization"))) {
                evhttp_add_header(evhttp_request_get_output_headers(r->req), "WWW-Authenticate",
                                  "Bearer realm=\"pool-managerd\"");
                pa_reply_error(r, PA_CODE_UNAUTHORIZED, "a valid bearer token is required");
                return;
        }
        if (via == PA_LISTENER_TCP && !r->server->auth.enabled &&
            !pa_auth_route_is_public(method, r->raw_path) &&
            !host_header_ok(evhttp_find_header(evhttp_request_get_input_headers(r->req), "Host"))) {
                pa_reply_error(r, PA_CODE_BAD_REQUEST, "Host: without an API token only requests "
                               "addressed to an IP address or localhost are answered");
                return;
        }
        if (pa_path_parse(r->raw_path, &path, &err) < 0) {
                if (err.error == -ENOMEM)
                        pa_reply_error(r, PA_CODE_INTERNAL, "%s", err.msg);
                else
                        pa_reply_error(r, PA_CODE_BAD_REQUEST, "%s", err.msg);
                return;
        }

        switch (pa_router_match(pa_routes, pa_n_routes, r->method, &path,
                                &route, &r->params, &allowed)) {
        case PA_MATCH_FOUND:
                if (r->server->starting && strcmp(r->raw_path, "/health") != 0)
                        pa_reply_error(r, PA_CODE_SERVICE_UNAVAILABLE, "the daemon is starting: "
                                       "the configured pools are being registered");
                else if (pa_auth_read_only_refused(&r->server->auth, via, method, &path))
                        reply_read_only(r, &path);
                else if (r->server->stopping && !pa_auth_path_is_read_only(method, &path))
                        pa_reply_error(r, PA_CODE_SERVICE_UNAVAILABLE, "the daemon is shutting down");
                else
                        route->handler(r);
                break;
        case PA_MATCH_NO_METHOD:
                pa_methods_format(allowed, allow, sizeof(allow));
                evhttp_add_header(evhttp_request_get_output_headers(r->req), "Allow", allow);
                pa_reply_error(r, PA_CODE_METHOD_NOT_ALLOWED, "method %s not allowed on %.200s",
                               pa_method_to_string(r->method), r->raw_path);
                break;
        case PA_MATCH_NO_ROUTE:
        default:
                pa_reply_error(r, PA_CODE_NOT_FOUND, "no route for %s %.200s",
                               pa_method_to_string(r->method), r->raw_path);
                break;
        }

        /* A handler that returns without answering is a bug; the client
         * still gets an answer. Params point into path: done with them. */
        if (r->status == 0 && !r->deferred)
                pa_reply_error(r, PA_CODE_INTERNAL, "handler sent no reply");
        pa_path_done(&path);
}

/* The one callback evhttp calls: routing is ours (router.c). userdata
 * says which listener the connection was accepted on. */
static void on_request(struct evhttp_request *req, void *userdata) {
        const listener_ctx *l = userdata;
        pa_server *server = l->server;
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
        char peer[PA_BIND_ADDR_STRING_MAX + 8];
        pa_request r = {
                .req = req,
                .server = server,
                .method = evhttp_request_get_command(req),
                .raw_path = raw_path && *raw_path ? raw_path : "/",
                .query = uri ? evhttp_uri_get_query(uri) : NULL,
                .correlation_id = correlation_id(req),
                .started_ms = ps_clock_mono_ms(server->clock),
                .local = l->via == PA_LISTENER_UNIX,
        };

        if (server->pause_tcp.pauses || server->pause_local.pauses)
                pauses_end(server);
        if (r.correlation_id)
                evhttp_add_header(evhttp_request_get_output_headers(req),
                                  "X-Correlation-Id", r.correlation_id);
        /* Before the reply: evhttp may free the request while sending. */
        if (server->events.fn && server->log_requests)
                format_peer(req, r.local, peer, sizeof(peer));
        else
                peer[0] = '\0';
        if (r.local && !pa_auth_route_is_read_only(pa_method_to_string(r.method), r.raw_path))
                log_local_change(&r);
        dispatch(&r);
        /* Whatever a change changed, the next read builds afresh; a read
         * by POST (the orchestrator's status poll) keeps the cache. */
        if (!pa_auth_route_is_read_only(pa_method_to_string(r.method), r.raw_path))
                server->changing_requests++;
        /* A deferred request is logged when it is answered. */
        if (!r.deferred)
                log_request(&r, peer);
}

/* ---- deferred replies ---------------------------------------------------- */

const pa_backend *pa_request_backend(const pa_request *r) {
        return r && r->server ? &r->server->backend : NULL;
}

pa_snapshot_cache *pa_request_snapshots(const pa_request *r, pa_snapshot_stamp *stamp) {
        const pa_server *s = r ? r->server : NULL;

        if (!s || !s->snapshots || !s->backend.events_seen)
                return NULL;
        *stamp = (pa_snapshot_stamp) {
                .events = *s->backend.events_seen,
                .requests = s->changing_requests,
                .second = ps_clock_wall_ms(s->clock) / 1000,
        };
        return s->snapshots;
}

struct event_base *pa_request_base(const pa_request *r) {
        return r && r->server ? r->server->base : NULL;
}

static void deferred_unlink(pa_deferred *d) {
        if (!d->server)
                return;
        if (d->prev)
                d->prev->next = d->next;
        else
                d->server->deferred = d->next;
        if (d->next)
                d->next->prev = d->prev;
        d->prev = d->next = NULL;
}

/*
 * evhttp frees the requests still attached to a connection when it frees
 * the connection; a request whose client went away while it waited was
 * detached first (evhttp 2.1 keeps it for us, and sending the reply frees
 * it). Only the attached ones must be forgotten here.
 */
static void on_connection_close(struct evhttp_connection *conn, void *userdata) {
        pa_server *server = userdata;

        for (pa_deferred *d = server->deferred; d; d = d->next) {
                if (d->conn != conn)
                        continue;
                d->conn = NULL;
                if (d->request.req && evhttp_request_get_connection(d->request.req) == conn)
                        d->request.req = NULL;
        }
}

pa_deferred *pa_request_defer(pa_request *r) {
        pa_deferred *d;

        if (!r || !r->server || !r->req || r->status != 0 || r->deferred)
                return NULL;
        d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->raw_path = strdup(r->raw_path);
        d->correlation_id = r->correlation_id ? strdup(r->correlation_id) : NULL;
        if (!d->raw_path || (r->correlation_id && !d->correlation_id)) {
                free(d->raw_path);
                free(d->correlation_id);
                free(d);
                return NULL;
        }
        d->server = r->server;
        d->conn = evhttp_request_get_connection(r->req);
        format_peer(r->req, r->local, d->peer, sizeof(d->peer));
        d->request = *r;
        d->request.raw_path = d->raw_path;
        d->request.correlation_id = d->correlation_id;
        d->request.query = NULL;                 /* points into the URI */
        d->request.params = (pa_params) { .n = 0 };  /* into the path   */
        d->request.deferred = true;
        d->request.deferral = d;
        if (d->conn)
                evhttp_connection_set_closecb(d->conn, on_connection_close, r->server);

        d->next = r->server->deferred;
        if (d->next)
                d->next->prev = d;
        r->server->deferred = d;
        r->deferred = true;
        return d;
}

const pa_backend *pa_deferred_backend(const pa_deferred *d) {
        return d && d->server ? &d->server->backend : NULL;
}

static void deferred_free(pa_deferred *d) {
        deferred_unlink(d);
        free(d->raw_path);
        free(d->correlation_id);
        free(d);
}

/* After the reply was sent (or dropped): the log line, then d is gone. */
static void deferred_finish(pa_deferred *d) {
        if (d->server)
                log_request(&d->request, d->peer);
        deferred_free(d);
}

void pa_deferred_reply_json(pa_deferred *d, int status, json_t *body) {
        if (!d) {
                json_decref(body);
                return;
        }
        if (d->server)
                pa_reply_json(&d->request, status, body);
        else
                json_decref(body);
        if (!d->held)
                deferred_finish(d);
}

void pa_deferred_reply_error(pa_deferred *d, pa_code code, const char *fmt, ...) {
        va_list ap;

        if (!d)
                return;
        if (d->server) {
                va_start(ap, fmt);
                pa_reply_errorv(&d->request, code, fmt, ap);
                va_end(ap);
        }
        if (!d->held)
                deferred_finish(d);
}

/* ---- replies held until the state store commits ------------------------ */

static void held_free(held_send *h) {
        free(h->content_type);
        free(h->body);
        free(h);
}

/* After the commit (or its failure: the reply still says what is true in
 * memory; the store's failure is /v2/node's to report). */
static void on_held_commit(int rc, void *userdata) {
        held_send *h = userdata;
        pa_deferred *d = h->d;

        (void) rc;
        d->held = NULL;
        if (d->server)
                pa_reply_send_now(&d->request, h->status, h->content_type, h->body, h->len);
        held_free(h);
        deferred_finish(d);
}

bool pa_request_hold(pa_request *r, int status, const char *content_type,
                     const char *body, size_t len) {
        ps_store *store = r->server && r->server->backend.registry
                          ? ps_store_of(r->server->backend.registry) : NULL;
        held_send *h;

        if (!ps_store_pending(store) || r->server->freeing || (r->deferred && !r->deferral) ||
            (r->deferral && r->deferral->held))
                return false;
        h = calloc(1, sizeof(*h));
        if (!h)
                return false;
        h->status = status;
        h->len = len;
        h->content_type = content_type ? strdup(content_type) : NULL;
        h->body = len ? malloc(len) : NULL;
        if ((content_type && !h->content_type) || (len && !h->body)) {
                held_free(h);
                return false;   /* sent now: better than not at all */
        }
        if (len)
                memcpy(h->body, body, len);
        /* Deferred last: nothing can fail after it but the store's queue. */
        h->ours = !r->deferred;
        h->d = r->deferred ? r->deferral : pa_request_defer(r);
        if (!h->d) {
                held_free(h);
                return false;
        }
        if (ps_store_after_commit(store, on_held_commit, h) < 0) {
                /* Sent now after all; a hold that deferred finishes it. */
                pa_deferred *d = h->d;
                bool ours = h->ours;

                held_free(h);
                if (!ours)
                        return false;
                pa_reply_send_now(&d->request, status, content_type, body, len);
                deferred_finish(d);
                return true;
        }
        r->status = status;
        h->d->request.status = status;
        h->d->held = h;
        return true;
}

/*
 * The server goes away while requests still wait: each gets a 503 now
 * (delivered if the loop still runs) and becomes an orphan, which the
 * callback it waits for frees without touching the backend.
 */
static void deferred_orphan_all(pa_server *server) {
        pa_deferred *d;

        while ((d = server->deferred)) {
                pa_reply_error(&d->request, PA_CODE_SERVICE_UNAVAILABLE,
                               "the server is shutting down");
                log_request(&d->request, d->peer);
                deferred_unlink(d);
                d->server = NULL;
                d->conn = NULL;
                d->request.server = NULL;
        }
}

/* One evhttp with our settings, calling on_request() with ctx. */
static struct evhttp *new_http(struct event_base *base, const pa_server_config *config,
                               listener_ctx *ctx) {
        struct evhttp *http = evhttp_new(base);

        if (!http)
                return NULL;
        /* Every method reaches our callback, so PATCH and OPTIONS get a
         * JSON 405 from the router instead of evhttp's HTML 501. */
        evhttp_set_allowed_methods(http, PA_METHODS_ALL);
        evhttp_set_max_body_size(http, (ev_ssize_t) (config->max_body_size ? config->max_body_size
                                                                           : PA_SERVER_MAX_BODY_DEFAULT));
        evhttp_set_max_headers_size(http, MAX_HEADERS_SIZE);
        /* A client that stalls while sending its request, or does not read
         * its reply, is dropped. A request waiting for its answer (a
         * preload) is not I/O and is not cut short by this. */
        evhttp_set_timeout(http, CONNECTION_TIMEOUT_S);
        /* Without it a client sending too large a body sees EPIPE instead
         * of the 413: evhttp reads and drops the rest, then answers. The
         * 413 body is evhttp's HTML, not our JSON (no hook in 2.1). */
        evhttp_set_flags(http, EVHTTP_SERVER_LINGERING_CLOSE);
        evhttp_set_gencb(http, on_request, ctx);
        return http;
}

/*
 * The Unix-domain socket, served by an evhttp of its own: a request's
 * listener is then known from which evhttp called on_request(), never
 * from anything the connection or the client says.
 */
static int bind_local(pa_server *server, pa_error *err) {
        struct stat st;
        int fd = pa_listen_unix(server->socket_path, server->socket_group, &st, err);

        if (fd < 0)
                return fd;
        server->socket_dev = st.st_dev;
        server->socket_ino = st.st_ino;
        server->local_listener = evhttp_accept_socket_with_handle(server->http_local, fd);
        if (server->local_listener &&
            watch_accept_errors(server, &server->pause_local, server->local_listener, "unix") < 0)
                return pa_error_set(err, -ENOMEM, "out of memory");
        if (!server->local_listener) {
                if (fcntl(fd, F_GETFD) >= 0)
                        close(fd);
                unlink(server->socket_path);
                return pa_error_set(err, -ENOMEM, "cannot listen on the API socket %s: "
                                    "libevent refused the socket", server->socket_path);
        }
        return 0;
}

static int listen_local(pa_server *server, const pa_server_config *config, pa_error *err) {
        server->http_local = new_http(server->base, config, &server->local);
        if (!server->http_local)
                return pa_error_set(err, -ENOMEM, "cannot create the HTTP server");
        server->socket_path = strdup(config->socket_path);
        if (config->socket_group && !(server->socket_group = strdup(config->socket_group)))
                return pa_error_set(err, -ENOMEM, "out of memory");
        if (!server->socket_path)
                return pa_error_set(err, -ENOMEM, "out of memory");
        return bind_local(server, err);
}

int pa_server_rebind_socket(pa_server *server, pa_error *err) {
        struct stat st;

        if (!server || !server->socket_path || !server->http_local)
                return 0;
        if (lstat(server->socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
            st.st_dev == server->socket_dev && st.st_ino == server->socket_ino)
                return 0;               /* still ours */
        if (server->local_listener) {
                evhttp_del_accept_socket(server->http_local, server->local_listener);
                server->local_listener = NULL;
                server->pause_local.listener = NULL;
        }
        return bind_local(server, err);
}

/* The socket we made, unless something else has taken its place. */
static void remove_socket(pa_server *server) {
        struct stat st;

        if (!server->socket_path)
                return;
        if (lstat(server->socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
            st.st_dev == server->socket_dev && st.st_ino == server->socket_ino)
                unlink(server->socket_path);
        free(server->socket_path);
        server->socket_path = NULL;
        free(server->socket_group);
        server->socket_group = NULL;
}

pa_server *pa_server_new(struct event_base *base, const pa_server_config *config,
                         pa_error *err) {
        char shown[PA_BIND_ADDR_STRING_MAX];
        struct evhttp_bound_socket *listener;
        struct sockaddr_storage ss;
        socklen_t ss_len = sizeof(ss);
        pa_server *server;
        int fd, r;

        if (!base || !config) {
                pa_error_set(err, -EINVAL, "no event base or config");
                return NULL;
        }

        pa_bind_addr_to_string(&config->bind, shown, sizeof(shown));
        if (!pa_bind_addr_is_loopback(&config->bind) &&
            !(config->api_token && config->api_token[0])) {
                /* The host alone: the port is not what is wrong. */
                pa_error_set(err, -EPERM,
                             "refusing to listen on %.*s: non-loopback binds need an API token",
                             host_length(shown), shown);
                return NULL;
        }

        server = calloc(1, sizeof(*server));
        if (!server) {
                pa_error_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        server->base = base;
        server->events = config->events;
        server->log_requests = !config->quiet_requests;
        server->clock = config->clock ? config->clock : ps_clock_system();
        server->backend = config->backend;
        server->snapshots = pa_snapshot_cache_new();
        if (!server->snapshots) {
                pa_error_set(err, -ENOMEM, "out of memory");
                return pa_server_free(server);
        }
        if (pa_auth_init(&server->auth, config->api_token) < 0) {
                pa_error_set(err, -EINVAL, "the API token must be 1-%d printable ASCII characters "
                             "without spaces", PA_AUTH_TOKEN_MAX);
                return pa_server_free(server);
        }

        server->tcp = (listener_ctx) { .server = server, .via = PA_LISTENER_TCP };
        server->local = (listener_ctx) { .server = server, .via = PA_LISTENER_UNIX };
        server->http = new_http(base, config, &server->tcp);
        if (!server->http) {
                pa_error_set(err, -ENOMEM, "cannot create the HTTP server");
                return pa_server_free(server);
        }

        fd = pa_listen_tcp(&config->bind, shown, err);
        if (fd < 0)
                return pa_server_free(server);
        listener = evhttp_accept_socket_with_handle(server->http, fd);
        if (!listener) {
                /* Depending on where it failed, libevent has closed fd or
                 * not; one thread, so nothing can have reused the number. */
                if (fcntl(fd, F_GETFD) >= 0)
                        close(fd);
                pa_error_set(err, -ENOMEM, "cannot listen on %s: libevent refused the socket", shown);
                return pa_server_free(server);
        }

        if (watch_accept_errors(server, &server->pause_tcp, listener, "tcp") < 0) {
                pa_error_set(err, -ENOMEM, "out of memory");
                return pa_server_free(server);
        }
        /* With port 0 the kernel chose: read back what it gave us. */
        if (getsockname(evhttp_bound_socket_get_fd(listener), (struct sockaddr *) &ss, &ss_len) < 0) {
                pa_error_set(err, -errno, "cannot listen on %s: getsockname: %s", shown, strerror(errno));
                return pa_server_free(server);
        }
        r = pa_bind_addr_from_sockaddr((struct sockaddr *) &ss, ss_len, &server->address);
        if (r < 0) {
                pa_error_set(err, r, "cannot listen on %s: unexpected address family", shown);
                return pa_server_free(server);
        }

        if (config->socket_path && config->socket_path[0] &&
            listen_local(server, config, err) < 0)
                return pa_server_free(server);
        return server;
}

pa_server *pa_server_free(pa_server *server) {
        if (!server)
                return NULL;
        server->freeing = true;
        deferred_orphan_all(server);
        pa_auth_clear(&server->auth);
        pa_snapshot_cache_free(server->snapshots);
        if (server->http)
                evhttp_free(server->http);
        if (server->http_local)
                evhttp_free(server->http_local);
        if (server->pause_tcp.resume) {
                pause_register(&server->pause_tcp, false);
                event_free(server->pause_tcp.resume);
        }
        if (server->pause_local.resume) {
                pause_register(&server->pause_local, false);
                event_free(server->pause_local.resume);
        }
        remove_socket(server);
        free(server);
        return NULL;
}

void pa_server_set_stopping(pa_server *server) {
        if (server)
                server->stopping = true;
}

void pa_server_set_starting(pa_server *server, bool starting) {
        if (server)
                server->starting = starting;
}

void pa_server_set_config(pa_server *server, const ps_config *config) {
        if (server && config)
                server->backend.config = config;
}

const pa_bind_addr *pa_server_address(const pa_server *server) {
        return server ? &server->address : NULL;
}

uint16_t pa_server_port(const pa_server *server) {
        return server ? pa_bind_addr_port(&server->address) : 0;
}

const char *pa_server_socket_path(const pa_server *server) {
        return server ? server->socket_path : NULL;
}
