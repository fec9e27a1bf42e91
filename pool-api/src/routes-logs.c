/* SPDX-License-Identifier: MIT */
/*
 * GET /v2/pools/{id}/replicas/{replica}/logs?tail=N[&follow=true]: the
 * engine's own log file, as text. follow keeps the reply open (chunked)
 * and sends each line as the engine writes it, through a follower of its
 * own on the file (supervise/logtail.h: truncation and rotation are
 * followed). A follower ends when its client goes (a read event on the
 * socket sees the EOF at once, so a quiet engine's follower does not wait
 * for a write to fail), when the client reads too slowly (more than
 * BACKLOG_MAX unsent: it is cut off, not buffered), or with the server.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "pool-services/supervise/logtail.h"
#include "pool-services/supervise/replica.h"
#include "routes-private.h"

#define TAIL_DEFAULT 100
#define TAIL_MAX 10000
/* Read back from the end at most: 10,000 long lines, not a whole file. */
#define SCAN_MAX (8u << 20)
/* A follower's output not yet taken by its client; more and it is cut off. */
#define BACKLOG_MAX (1u << 20)
/* Output that makes no progress this long ends the follow (evhttp's own
 * limit for any reply); silence of the engine does not. */
#define FOLLOW_WRITE_TIMEOUT_S 30
#define CONTENT_TYPE "text/plain; charset=utf-8"

typedef struct follower {
        struct evhttp_request *req;
        struct evhttp_connection *conn;
        ps_logtail *tail;
        struct event *hangup;           /* EV_READ on the client's socket */
        struct evbuffer *chunk;
} follower;

/* ---- the last lines ---------------------------------------------------- */

/*
 * The last n lines of the file into out. With complete_only a partial
 * last line (still being written) is left out: a follower delivers it
 * whole. *ret_end is the offset after what was sent.
 */
static int read_tail(int fd, unsigned n, bool complete_only, struct evbuffer *out,
                     int64_t *ret_end) {
        struct stat st;
        size_t len, stop, start;
        char *buf;
        ssize_t got;

        if (fstat(fd, &st) < 0)
                return -errno;
        len = (size_t) st.st_size < SCAN_MAX ? (size_t) st.st_size : SCAN_MAX;
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        got = pread(fd, buf, len, st.st_size - (off_t) len);
        if (got < 0) {
                free(buf);
                return -errno;
        }
        len = (size_t) got;
        stop = len;
        if (complete_only)
                while (stop > 0 && buf[stop - 1] != '\n')
                        stop--;
        start = stop;
        /* The terminator of the last line is not a line of its own. */
        if (start > 0 && buf[start - 1] == '\n')
                start--;
        for (unsigned seen = 0; start > 0 && n > 0; start--)
                if (buf[start - 1] == '\n' && ++seen == n)
                        break;
        if (n == 0)
                start = stop;
        if (stop > start && evbuffer_add(out, buf + start, stop - start) < 0) {
                free(buf);
                return -ENOMEM;
        }
        if (stop > start && buf[stop - 1] != '\n')
                evbuffer_add(out, "\n", 1);
        *ret_end = (int64_t) (st.st_size - (off_t) len + (off_t) stop);
        free(buf);
        return 0;
}

/* ---- following ---------------------------------------------------------- */

static void follower_free(follower *f) {
        if (!f)
                return;
        if (f->hangup)
                event_free(f->hangup);
        f->tail = ps_logtail_free(f->tail);
        if (f->chunk)
                evbuffer_free(f->chunk);
        free(f);
}

/*
 * evhttp frees the connection (client gone, write failed, server freed).
 * When the client went, evhttp 2.1 detached the unfinished request from
 * it and left it to us: ending the reply frees it. An attached one goes
 * with the connection.
 */
static void on_close(struct evhttp_connection *conn, void *userdata) {
        follower *f = userdata;

        if (evhttp_request_get_connection(f->req) != conn)
                evhttp_send_reply_end(f->req);
        follower_free(f);
}

/* Ends the follow now: the connection (and its request) and f go. */
static void cut_off(follower *f) {
        struct evhttp_connection *conn = f->conn;

        evhttp_connection_set_closecb(conn, NULL, NULL);
        follower_free(f);
        evhttp_connection_free(conn);
}

static size_t backlog(const follower *f) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(f->conn);

        return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void on_line(const char *line, size_t len, void *userdata) {
        follower *f = userdata;

        if (backlog(f) + len > BACKLOG_MAX) {
                cut_off(f);
                return;
        }
        if (evbuffer_add(f->chunk, line, len) < 0 || evbuffer_add(f->chunk, "\n", 1) < 0) {
                cut_off(f);
                return;
        }
        evhttp_send_reply_chunk(f->req, f->chunk);
}

/* The client's socket is readable: EOF (or an error) means it left. */
static void on_hangup(evutil_socket_t fd, short what, void *userdata) {
        follower *f = userdata;
        char c;
        ssize_t n;

        (void) what;
        n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                cut_off(f);
        else if (n > 0)
                /* it sent more: evhttp reads it; stop watching here */
                event_del(f->hangup);
}

static int follow_start(pa_request *r, const char *path, int64_t offset, struct evbuffer *first) {
        struct bufferevent *bev;
        follower *f = calloc(1, sizeof(*f));

        if (!f)
                return -ENOMEM;
        f->req = r->req;
        f->conn = evhttp_request_get_connection(r->req);
        bev = f->conn ? evhttp_connection_get_bufferevent(f->conn) : NULL;
        f->chunk = evbuffer_new();
        if (!bev || !f->chunk)
                goto fail;
        f->hangup = event_new(pa_request_base(r), bufferevent_getfd(bev), EV_READ | EV_PERSIST,
                              on_hangup, f);
        if (!f->hangup || event_add(f->hangup, NULL) < 0)
                goto fail;
        f->tail = ps_logtail_new(pa_request_base(r), path, offset, on_line, f);
        if (!f->tail)
                goto fail;
        /* evhttp's read timeout would close a quiet engine's follow: the
         * client sends nothing more, and its leaving is seen by f->hangup. */
        bufferevent_set_timeouts(bev, NULL, &(struct timeval) { FOLLOW_WRITE_TIMEOUT_S, 0 });
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", CONTENT_TYPE);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Cache-Control", "no-store");
        evhttp_send_reply_start(r->req, 200, "OK");
        evhttp_connection_set_closecb(f->conn, on_close, f);
        if (evbuffer_get_length(first) > 0)
                evhttp_send_reply_chunk(r->req, first);
        /* evhttp owns the request; the follower answers from here on */
        r->status = 200;
        r->req = NULL;
        return 0;
fail:
        follower_free(f);
        return -ENOMEM;
}

/* ---- the route ---------------------------------------------------------- */

/* tail (0..TAIL_MAX) and follow from the query. -1 with a 400 sent. */
static int logs_query(pa_request *r, unsigned *tail, bool *follow) {
        struct evkeyvalq q = { 0 };
        const char *v;
        char *end;
        int rc = 0;

        *tail = TAIL_DEFAULT;
        *follow = false;
        if (!r->query || !*r->query)
                return 0;
        if (evhttp_parse_query_str(r->query, &q) < 0) {
                pa_reply_error(r, PA_CODE_BAD_REQUEST, "malformed query string");
                return -1;
        }
        if ((v = evhttp_find_header(&q, "tail"))) {
                long n;

                errno = 0;
                n = strtol(v, &end, 10);
                if (errno || end == v || *end || n < 0 || n > TAIL_MAX) {
                        pa_reply_error(r, PA_CODE_BAD_REQUEST, "query tail: must be 0..%d, got \"%.40s\"",
                                       TAIL_MAX, v);
                        rc = -1;
                }
                *tail = (unsigned) n;
        }
        if (rc == 0 && (v = evhttp_find_header(&q, "follow"))) {
                if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
                        *follow = true;
                else if (strcmp(v, "false") != 0 && strcmp(v, "0") != 0) {
                        pa_reply_error(r, PA_CODE_BAD_REQUEST,
                                       "query follow: must be true or false, got \"%.40s\"", v);
                        rc = -1;
                }
        }
        evhttp_clear_headers(&q);
        return rc;
}

static void reply_logs(pa_request *r, const char *path, unsigned tail, bool follow) {
        struct evbuffer *out = evbuffer_new();
        int64_t end = 0;
        int fd, rc;

        if (!out) {
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
                return;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        rc = fd < 0 ? (errno == ENOENT && follow ? 0 : -errno) : read_tail(fd, tail, follow, out, &end);
        if (fd >= 0)
                close(fd);
        if (rc == -ENOENT)
                pa_reply_error(r, PA_CODE_NOT_FOUND, "no log yet: the engine has not been started");
        else if (rc < 0)
                pa_reply_error(r, PA_CODE_INTERNAL, "cannot read the engine's log: %s", strerror(-rc));
        else if (!follow)
                pa_reply_text(r, 200, CONTENT_TYPE, (const char *) evbuffer_pullup(out, -1),
                              evbuffer_get_length(out));
        else if (follow_start(r, path, end, out) < 0)
                pa_reply_error(r, PA_CODE_INTERNAL, "out of memory");
        evbuffer_free(out);
}

void pa_route_logs(pa_request *r) {
        ps_registry *reg;
        const char *id = pa_known_pool(r, &reg), *replica_id;
        ps_replica *replica;
        char path[4096];
        unsigned tail;
        bool follow;

        if (!id || logs_query(r, &tail, &follow) < 0)
                return;
        /* HEAD: the headers of the tail; there is no body to follow */
        if (r->method == EVHTTP_REQ_HEAD)
                follow = false;
        replica_id = pa_params_get(&r->params, "replica");
        replica = replica_id ? ps_registry_find(reg, id, replica_id) : NULL;
        if (!replica) {
                pa_reply_error(r, PA_CODE_NOT_FOUND, "pool %s has no replica %.80s", id,
                               replica_id ? replica_id : "");
                return;
        }
        if (ps_replica_log_path(replica, path, sizeof(path)) < 0) {
                pa_reply_error(r, PA_CODE_INTERNAL, "the log's path is too long");
                return;
        }
        reply_logs(r, path, tail, follow);
}
