/* SPDX-License-Identifier: MIT */
/*
 * fake-engine: a stand-in for llama.cpp's llama-server in tests and the demo.
 *
 * It looks like llama-server where the supervisor can see it (see the
 * "llama.cpp's llama-server" section of TRAPS.md): it binds its port, then
 * "loads" while every endpoint answers 503 "Loading model", then /health
 * answers 200; it logs only to stderr in llama-server's style; a missing
 * model exits 1 within milliseconds with the GGUF line; SIGTERM while
 * loading kills it by the default action, SIGTERM when idle exits 0, a
 * completion in flight at SIGTERM gets no answer, a second SIGTERM exits 1. Test knobs (--exit-after-ms, --signal-after-ms,
 * --cuda-error-after-ms, --hang-after-ms, ...) make it fail the ways real
 * engines fail.
 *
 * One thread, one poll() loop, non-blocking sockets: a slow or silent
 * client costs a slot in the connection table until its timeout, never the
 * loop. SIGTERM and SIGINT arrive through a signalfd. Nothing depends on
 * the parent: the engine keeps serving when its parent dies, and a stderr
 * nobody reads any more (EPIPE) is not an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS        256
#define HEADER_MAX       (16 * 1024)
#define BODY_MAX         (1024 * 1024)
#define IN_MAX           (HEADER_MAX + BODY_MAX)
#define READ_TIMEOUT_MS  10000          /* a whole request, or keep-alive idle */
#define WRITE_TIMEOUT_MS 10000
#define DRAIN_TIMEOUT_MS 1000           /* reading leftovers after our FIN */
#define MS_MAX           (24LL * 3600 * 1000)
#define NEVER            INT64_MAX
#define METRICS_TOKENS_PER_S 80

/* ---- options ------------------------------------------------------------ */

typedef struct options {
        const char *host;
        long port;                      /* -1: not given */
        const char *model;
        long parallel;
        int64_t load_ms;
        bool never_ready;
        bool fail_load;                 /* llama-server's failed-load sequence */
        int64_t exit_after_ms;          /* -1: off, as for every *_after_ms */
        long exit_code;
        bool exit_code_set;
        int64_t signal_after_ms;
        int signal_no;
        bool signal_set;
        int64_t cuda_error_after_ms;
        int64_t cuda_oom_after_ms;
        int64_t unhealthy_after_ms;
        int64_t hang_after_ms;
        int64_t slow_health_ms;
        int64_t completion_ms;
        int64_t log_progress_ms;
        bool ignore_sigterm;
        bool announce;
        bool print_ready_time;
        bool log_probes;
        bool metrics;                   /* serve /metrics (llama-server: --metrics) */
        const char *pid_file;
} options;

/* ---- logging ------------------------------------------------------------ */

static int64_t log_start_us;

static int64_t mono_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Blocks when stderr is a full pipe, as llama-server does; gives up quietly
 * when nobody reads it any more. */
static void write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };

                        poll(&p, 1, -1);
                        continue;
                }
                if (n <= 0)
                        return;
                buf += n;
                len -= (size_t) n;
        }
}

/* One line, common_log style: "M.SS.mmm.uuu L message". Level 0 writes the
 * message bare, as ggml_abort does. */
static void log_line(char level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(char level, const char *fmt, ...) {
        char buf[2048];
        int64_t t = mono_us() - log_start_us;
        size_t len = 0;
        va_list ap;
        int n;

        if (level) {
                n = snprintf(buf, sizeof(buf), "%d.%02d.%03d.%03d %c ", (int) (t / 60000000),
                             (int) (t / 1000000 % 60), (int) (t / 1000 % 1000), (int) (t % 1000),
                             level);
                len = n > 0 ? (size_t) n : 0;
        }
        va_start(ap, fmt);
        n = vsnprintf(buf + len, sizeof(buf) - len - 1, fmt, ap);
        va_end(ap);
        if (n > 0)
                len += (size_t) n < sizeof(buf) - len - 1 ? (size_t) n : sizeof(buf) - len - 2;
        buf[len++] = '\n';
        write_all(STDERR_FILENO, buf, len);
}

/* ---- growable strings --------------------------------------------------- */

typedef struct strbuf {
        char *s;
        size_t len, cap;
        bool failed;
} strbuf;

static bool sb_reserve(strbuf *b, size_t extra) {
        size_t cap = b->cap ? b->cap : 256;
        char *s;

        if (b->failed)
                return false;
        if (b->len + extra + 1 <= b->cap)
                return true;
        while (cap < b->len + extra + 1)
                cap *= 2;
        s = realloc(b->s, cap);
        if (!s) {
                b->failed = true;
                return false;
        }
        b->s = s;
        b->cap = cap;
        return true;
}

static void sb_append(strbuf *b, const char *s, size_t n) {
        if (!sb_reserve(b, n))
                return;
        memcpy(b->s + b->len, s, n);
        b->len += n;
        b->s[b->len] = '\0';
}

static void sb_appendf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_appendf(strbuf *b, const char *fmt, ...) {
        va_list ap, ap2;
        int n;

        va_start(ap, fmt);
        va_copy(ap2, ap);
        n = vsnprintf(NULL, 0, fmt, ap);
        if (n >= 0 && sb_reserve(b, (size_t) n)) {
                vsnprintf(b->s + b->len, (size_t) n + 1, fmt, ap2);
                b->len += (size_t) n;
        } else if (n < 0) {
                b->failed = true;
        }
        va_end(ap2);
        va_end(ap);
}

static void sb_append_json_string(strbuf *b, const char *s) {
        sb_append(b, "\"", 1);
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        sb_appendf(b, "\\%c", c);
                else if (c < 0x20)
                        sb_appendf(b, "\\u%04x", c);
                else
                        sb_append(b, s, 1);
        }
        sb_append(b, "\"", 1);
}

/* ---- HTTP requests ------------------------------------------------------ */

typedef enum route {
        ROUTE_HEALTH,
        ROUTE_SLOTS,
        ROUTE_PROPS,
        ROUTE_METRICS,
        ROUTE_COMPLETION,
        ROUTE_NOT_FOUND,
        ROUTE_MAX,
} route;

typedef struct request {
        char method[16];
        char path[256];                 /* without the query; truncated for logs */
        bool path_too_long;
        bool keep_alive;
        bool expect_continue;
        size_t header_len, body_len;
} request;

typedef enum parse_result {
        PARSE_MORE,                     /* headers or body incomplete */
        PARSE_DONE,
        PARSE_ERROR,                    /* *status says which */
} parse_result;

static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *value_len) {
        size_t n = strlen(name);

        if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
                return false;
        line += n + 1;
        len -= n + 1;
        while (len > 0 && (*line == ' ' || *line == '\t'))
                line++, len--;
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
                len--;
        *value = line;
        *value_len = len;
        return true;
}

static bool has_token(const char *v, size_t len, const char *token) {
        size_t n = strlen(token);

        for (size_t i = 0; i + n <= len; i++)
                if (strncasecmp(v + i, token, n) == 0)
                        return true;
        return false;
}

/* Parses the request at the start of buf. On PARSE_MORE with headers
 * complete, req is filled (the body is still arriving). */
static parse_result parse_request(const char *buf, size_t len, request *req, int *status) {
        const char *end = memmem(buf, len, "\r\n\r\n", 4);
        const char *line, *eol, *sp1, *sp2, *q;
        bool http10, seen_length = false;

        memset(req, 0, sizeof(*req));
        if (!end) {
                if (len >= HEADER_MAX) {
                        *status = 431;
                        return PARSE_ERROR;
                }
                return PARSE_MORE;
        }
        req->header_len = (size_t) (end - buf) + 4;
        if (req->header_len > HEADER_MAX) {
                *status = 431;
                return PARSE_ERROR;
        }

        /* request line: METHOD SP TARGET SP HTTP/1.x */
        eol = memmem(buf, req->header_len, "\r\n", 2);
        sp1 = memchr(buf, ' ', (size_t) (eol - buf));
        sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t) (eol - sp1 - 1)) : NULL;
        *status = 400;
        if (!sp1 || !sp2 || sp1 == buf || (size_t) (sp1 - buf) >= sizeof(req->method) ||
            sp2 == sp1 + 1 || sp1[1] != '/')
                return PARSE_ERROR;
        if (eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
                if (eol - sp2 - 1 >= 5 && memcmp(sp2 + 1, "HTTP/", 5) == 0)
                        *status = 505;
                return PARSE_ERROR;
        }
        if (sp2[8] != '0' && sp2[8] != '1')
                return PARSE_ERROR;
        http10 = sp2[8] == '0';
        memcpy(req->method, buf, (size_t) (sp1 - buf));
        q = memchr(sp1 + 1, '?', (size_t) (sp2 - sp1 - 1));
        if (!q)
                q = sp2;
        if ((size_t) (q - sp1 - 1) >= sizeof(req->path))
                req->path_too_long = true;
        snprintf(req->path, sizeof(req->path), "%.*s", (int) (q - sp1 - 1), sp1 + 1);
        if (memchr(sp1 + 1, '\0', (size_t) (sp2 - sp1 - 1)))
                return PARSE_ERROR;
        req->keep_alive = !http10;

        for (line = eol + 2; line < end + 2; line = eol + 2) {
                const char *v;
                size_t vlen;

                eol = memmem(line, (size_t) (end + 2 - line), "\r\n", 2);
                if (header_is(line, (size_t) (eol - line), "Content-Length", &v, &vlen)) {
                        size_t n = 0;

                        if (vlen == 0 || seen_length)
                                return PARSE_ERROR;
                        for (size_t i = 0; i < vlen; i++) {
                                if (v[i] < '0' || v[i] > '9')
                                        return PARSE_ERROR;
                                if (n > BODY_MAX) {
                                        *status = 413;
                                        return PARSE_ERROR;
                                }
                                n = n * 10 + (size_t) (v[i] - '0');
                        }
                        if (n > BODY_MAX) {
                                *status = 413;
                                return PARSE_ERROR;
                        }
                        req->body_len = n;
                        seen_length = true;
                } else if (header_is(line, (size_t) (eol - line), "Transfer-Encoding", &v, &vlen)) {
                        *status = 501;          /* no client of ours sends chunked */
                        return PARSE_ERROR;
                } else if (header_is(line, (size_t) (eol - line), "Connection", &v, &vlen)) {
                        if (has_token(v, vlen, "close"))
                                req->keep_alive = false;
                        else if (has_token(v, vlen, "keep-alive"))
                                req->keep_alive = true;
                } else if (header_is(line, (size_t) (eol - line), "Expect", &v, &vlen)) {
                        req->expect_continue = has_token(v, vlen, "100-continue");
                }
        }
        *status = 0;
        return len >= req->header_len + req->body_len ? PARSE_DONE : PARSE_MORE;
}

static route route_of(const request *req) {
        bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
        bool post = strcmp(req->method, "POST") == 0;
        const char *p = req->path;

        if (req->path_too_long)
                return ROUTE_NOT_FOUND;
        if (get && (strcmp(p, "/health") == 0 || strcmp(p, "/v1/health") == 0))
                return ROUTE_HEALTH;
        if (get && strcmp(p, "/slots") == 0)
                return ROUTE_SLOTS;
        if (get && strcmp(p, "/props") == 0)
                return ROUTE_PROPS;
        if (get && strcmp(p, "/metrics") == 0)
                return ROUTE_METRICS;
        if (post && (strcmp(p, "/completion") == 0 || strcmp(p, "/completions") == 0 ||
                     strcmp(p, "/v1/completions") == 0))
                return ROUTE_COMPLETION;
        return ROUTE_NOT_FOUND;
}

/* ---- the engine --------------------------------------------------------- */

typedef enum conn_state {
        CONN_READING,                   /* waiting for a whole request */
        CONN_DELAYED,                   /* request complete, reply due at deadline */
        CONN_WRITING,
        CONN_DRAINING,                  /* our FIN sent; reading until the peer's */
        CONN_HUNG,                      /* a hung engine: never replies */
        CONN_CLOSED,
} conn_state;

typedef struct conn {
        int fd;
        conn_state state;
        char peer[INET6_ADDRSTRLEN];
        char *in;
        size_t in_len, in_cap;
        char *out;
        size_t out_len, out_off;
        int64_t deadline_us;
        request req;
        route route;
        bool head_only;
        bool sent_continue;
        bool peer_eof;
        bool holds_completion;
} conn;

typedef enum timer {
        TIMER_LOAD,
        TIMER_PROGRESS,
        TIMER_EXIT,
        TIMER_SIGNAL,
        TIMER_CUDA_ERROR,
        TIMER_CUDA_OOM,
        TIMER_UNHEALTHY,
        TIMER_HANG,
        TIMER_MAX,
} timer;

typedef struct engine {
        options opt;
        int64_t start_us;
        int listen_fd;
        int signal_fd;
        unsigned port;                  /* the bound one */
        int64_t at[TIMER_MAX];          /* absolute CLOCK_MONOTONIC us, or NEVER */
        bool ready;
        int64_t ready_us;
        bool unhealthy;
        bool hung;
        bool stopping;
        conn **conns;
        size_t n_conns;
        unsigned completions_in_flight;
        uint64_t completions_total;
        uint64_t requests_total;
} engine;

static const char *reason_phrase(int status) {
        switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 413: return "Payload Too Large";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
        }
}

static void error_body(strbuf *b, int status, const char *message) {
        const char *type;

        switch (status) {
        case 400: case 413: case 431: case 505: type = "invalid_request_error"; break;
        case 404: type = "not_found_error"; break;
        case 501: type = "not_supported_error"; break;
        case 503: type = "unavailable_error"; break;
        default: type = "server_error"; break;
        }
        sb_appendf(b, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":%d}}", message, type,
                   status);
}

static void release_completion(engine *e, conn *c) {
        if (c->holds_completion) {
                c->holds_completion = false;
                e->completions_in_flight--;
        }
}

static void conn_close(engine *e, conn *c) {
        if (c->state == CONN_CLOSED)
                return;
        release_completion(e, c);
        close(c->fd);
        c->fd = -1;
        c->state = CONN_CLOSED;
}

/*
 * llama-server's /metrics (build b10573's families, in its order), moving
 * with time: since ready the engine "generates" METRICS_TOKENS_PER_S tokens
 * a second half of the time and reads prompts at 2,000 tokens a second, so
 * tokens_predicted_total / tokens_predicted_seconds_total is exactly
 * METRICS_TOKENS_PER_S. Each completion adds one token.
 */
static void metrics_body(const engine *e, strbuf *b) {
        unsigned processing = e->completions_in_flight;
        unsigned slots = (unsigned) e->opt.parallel;
        uint64_t up_ms = (uint64_t) (mono_us() - e->ready_us) / 1000;
        uint64_t predicted = up_ms * METRICS_TOKENS_PER_S / 2000 + e->completions_total;
        uint64_t prompt = up_ms / 10;

        sb_appendf(b,
                   "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
                   "# TYPE llamacpp:prompt_tokens_total counter\n"
                   "llamacpp:prompt_tokens_total %" PRIu64 "\n"
                   "# HELP llamacpp:prompt_seconds_total Prompt process time\n"
                   "# TYPE llamacpp:prompt_seconds_total counter\n"
                   "llamacpp:prompt_seconds_total %.3f\n"
                   "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.\n"
                   "# TYPE llamacpp:tokens_predicted_total counter\n"
                   "llamacpp:tokens_predicted_total %" PRIu64 "\n"
                   "# HELP llamacpp:tokens_predicted_seconds_total Predict process time\n"
                   "# TYPE llamacpp:tokens_predicted_seconds_total counter\n"
                   "llamacpp:tokens_predicted_seconds_total %.17g\n"
                   "# HELP llamacpp:n_decode_total Total number of llama_decode() calls\n"
                   "# TYPE llamacpp:n_decode_total counter\n"
                   "llamacpp:n_decode_total %" PRIu64 "\n"
                   "# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call\n"
                   "# TYPE llamacpp:n_busy_slots_per_decode counter\n"
                   "llamacpp:n_busy_slots_per_decode 1\n"
                   "# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s.\n"
                   "# TYPE llamacpp:prompt_tokens_seconds gauge\n"
                   "llamacpp:prompt_tokens_seconds %d\n"
                   "# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.\n"
                   "# TYPE llamacpp:predicted_tokens_seconds gauge\n"
                   "llamacpp:predicted_tokens_seconds %d\n"
                   "# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.\n"
                   "# TYPE llamacpp:kv_cache_usage_ratio gauge\n"
                   "llamacpp:kv_cache_usage_ratio %.3f\n"
                   "# HELP llamacpp:kv_cache_tokens KV-cache tokens.\n"
                   "# TYPE llamacpp:kv_cache_tokens gauge\n"
                   "llamacpp:kv_cache_tokens %" PRIu64 "\n"
                   "# HELP llamacpp:requests_processing Number of requests processing.\n"
                   "# TYPE llamacpp:requests_processing gauge\n"
                   "llamacpp:requests_processing %u\n"
                   "# HELP llamacpp:requests_deferred Number of requests deferred.\n"
                   "# TYPE llamacpp:requests_deferred gauge\n"
                   "llamacpp:requests_deferred %u\n",
                   prompt, (double) prompt / 2000.0, predicted,
                   (double) predicted / METRICS_TOKENS_PER_S, predicted, 2000,
                   up_ms ? METRICS_TOKENS_PER_S : 0, (double) (up_ms % 4096) / 4096.0,
                   up_ms % 4096, processing < slots ? processing : slots,
                   processing > slots ? processing - slots : 0);
}

/* The reply to c's request as things stand now. */
static int respond(engine *e, conn *c, strbuf *body, const char **content_type) {
        *content_type = "application/json; charset=utf-8";
        if (c->route == ROUTE_HEALTH && e->unhealthy) {
                error_body(body, 500, "fake engine unhealthy (--unhealthy-after-ms)");
                return 500;
        }
        if (!e->ready) {
                error_body(body, 503, "Loading model");
                return 503;
        }
        switch (c->route) {
        case ROUTE_HEALTH:
                sb_appendf(body, "{\"status\":\"ok\"}");
                return 200;
        case ROUTE_SLOTS: {
                unsigned busy = e->completions_in_flight;

                sb_append(body, "[", 1);
                for (long i = 0; i < e->opt.parallel; i++)
                        sb_appendf(body, "%s{\"id\":%ld,\"id_task\":-1,\"n_ctx\":4096,"
                                   "\"is_processing\":%s}", i ? "," : "", i,
                                   (unsigned long) i < busy ? "true" : "false");
                sb_append(body, "]", 1);
                return 200;
        }
        case ROUTE_PROPS:
                sb_appendf(body, "{\"total_slots\":%ld,\"model_path\":", e->opt.parallel);
                sb_append_json_string(body, e->opt.model ? e->opt.model : "");
                sb_appendf(body, ",\"build_info\":\"b0-fake-engine\"}");
                return 200;
        case ROUTE_METRICS:
                if (!e->opt.metrics) {
                        error_body(body, 501, "This server does not support metrics endpoint. "
                                   "Start it with `--metrics`");
                        return 501;
                }
                *content_type = "text/plain; version=0.0.4";
                metrics_body(e, body);
                return 200;
        case ROUTE_COMPLETION:
                sb_appendf(body, "{\"content\":\"fake\",\"stop\":true,\"tokens_predicted\":1,"
                           "\"tokens_evaluated\":1}");
                return 200;
        case ROUTE_NOT_FOUND:
        case ROUTE_MAX:
                break;
        }
        error_body(body, 404, "File Not Found");
        return 404;
}

/* Queues a whole response in c->out and moves c to CONN_WRITING. */
static void conn_set_response(engine *e, conn *c, int status, const char *content_type,
                              const strbuf *body, bool keep_alive, int64_t now) {
        strbuf out = { 0 };
        size_t body_len = body->failed ? 0 : body->len;

        sb_appendf(&out, "HTTP/1.1 %d %s\r\nServer: llama.cpp\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\nConnection: %s\r\n\r\n", status, reason_phrase(status),
                   content_type, body_len, keep_alive ? "keep-alive" : "close");
        if (!c->head_only && body_len)
                sb_append(&out, body->s, body_len);
        if (out.failed) {
                free(out.s);
                conn_close(e, c);
                return;
        }
        free(c->out);
        c->out = out.s;
        c->out_len = out.len;
        c->out_off = 0;
        if (!keep_alive)
                c->req.keep_alive = false;
        c->state = CONN_WRITING;
        c->deadline_us = now + WRITE_TIMEOUT_MS * 1000LL;
}

static void conn_reply(engine *e, conn *c, int64_t now) {
        const char *content_type;
        strbuf body = { 0 };
        int status;

        if (e->hung) {
                release_completion(e, c);
                c->state = CONN_HUNG;
                c->deadline_us = NEVER;
                return;
        }
        status = respond(e, c, &body, &content_type);
        if (c->holds_completion && status == 200)
                e->completions_total++;
        release_completion(e, c);
        e->requests_total++;
        if (c->route != ROUTE_HEALTH || e->opt.log_probes)
                log_line('I', "srv  log_server_r: request: %s %s %s %d", c->req.method,
                         c->req.path, c->peer, status);
        conn_set_response(e, c, status, content_type, &body, c->req.keep_alive && !e->stopping,
                          now);
        free(body.s);
}

static void conn_reply_error(engine *e, conn *c, int status, int64_t now) {
        strbuf body = { 0 };

        error_body(&body, status, reason_phrase(status));
        log_line('W', "srv  log_server_r: bad request from %s: %d", c->peer, status);
        conn_set_response(e, c, status, "application/json; charset=utf-8", &body, false, now);
        free(body.s);
}

/* A whole request may be in c->in: start its reply. */
static void conn_parse(engine *e, conn *c, int64_t now) {
        int status = 0;
        int64_t delay_ms = 0;

        switch (parse_request(c->in, c->in_len, &c->req, &status)) {
        case PARSE_MORE:
                if (c->req.expect_continue && !c->sent_continue) {
                        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

                        /* the socket's buffer is empty here: this does not block */
                        if (send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) !=
                            (ssize_t) sizeof(cont) - 1) {
                                conn_close(e, c);
                                return;
                        }
                        c->sent_continue = true;
                }
                return;
        case PARSE_ERROR:
                conn_reply_error(e, c, status, now);
                return;
        case PARSE_DONE:
                break;
        }
        c->route = route_of(&c->req);
        c->head_only = strcmp(c->req.method, "HEAD") == 0;
        if (c->route == ROUTE_HEALTH) {
                delay_ms = e->opt.slow_health_ms;
        } else if (c->route == ROUTE_COMPLETION && e->ready && !e->hung) {
                delay_ms = e->opt.completion_ms;
                c->holds_completion = true;
                e->completions_in_flight++;
        }
        c->state = CONN_DELAYED;
        c->deadline_us = now + delay_ms * 1000;
}

/* After a reply: the next request on a kept-alive connection, or close. */
static void conn_reply_sent(engine *e, conn *c, int64_t now) {
        size_t used = c->req.header_len + c->req.body_len;

        free(c->out);
        c->out = NULL;
        c->out_len = c->out_off = 0;
        if (c->req.keep_alive && !c->peer_eof && !e->stopping && used <= c->in_len) {
                memmove(c->in, c->in + used, c->in_len - used);
                c->in_len -= used;
                memset(&c->req, 0, sizeof(c->req));
                c->sent_continue = false;
                c->state = CONN_READING;
                c->deadline_us = now + READ_TIMEOUT_MS * 1000LL;
                return;
        }
        if (c->peer_eof) {
                conn_close(e, c);
                return;
        }
        shutdown(c->fd, SHUT_WR);
        c->state = CONN_DRAINING;
        c->deadline_us = now + DRAIN_TIMEOUT_MS * 1000LL;
}

/* Writes what the socket takes; true when the reply is all out. */
static bool conn_flush(engine *e, conn *c) {
        while (c->out_off < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return false;
                if (n <= 0) {
                        conn_close(e, c);
                        return false;
                }
                c->out_off += (size_t) n;
        }
        return true;
}

/* Moves c along as far as it goes without waiting; iterative, so that a
 * client pipelining many requests costs no stack. */
static void conn_advance(engine *e, conn *c, int64_t now) {
        for (;;) {
                conn_state before = c->state;

                switch (c->state) {
                case CONN_READING:
                        conn_parse(e, c, now);
                        break;
                case CONN_DELAYED:
                        if (now >= c->deadline_us)
                                conn_reply(e, c, now);
                        break;
                case CONN_WRITING:
                        if (conn_flush(e, c))
                                conn_reply_sent(e, c, now);
                        break;
                case CONN_DRAINING:
                case CONN_HUNG:
                case CONN_CLOSED:
                        return;
                }
                if (c->state == before)
                        return;
        }
}

static void conn_read(engine *e, conn *c) {
        char scratch[4096];
        char *dst = scratch;
        size_t room = sizeof(scratch);
        bool keep = c->state == CONN_READING || c->state == CONN_DELAYED ||
                    c->state == CONN_WRITING;
        ssize_t n;

        if (keep) {
                if (c->in_cap - c->in_len < 4096 && c->in_cap < IN_MAX) {
                        size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
                        char *in;

                        if (cap > IN_MAX)
                                cap = IN_MAX;
                        in = realloc(c->in, cap);
                        if (!in) {
                                conn_close(e, c);
                                return;
                        }
                        c->in = in;
                        c->in_cap = cap;
                }
                dst = c->in + c->in_len;
                room = c->in_cap - c->in_len;
                if (room == 0)
                        return;
        }
        do
                n = recv(c->fd, dst, room, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
        if (n < 0 || (n == 0 && c->state != CONN_DELAYED && c->state != CONN_WRITING)) {
                conn_close(e, c);
                return;
        }
        if (n == 0) {
                c->peer_eof = true;     /* finish this reply, then close */
                return;
        }
        if (keep)
                c->in_len += (size_t) n;
}

static void conn_accept(engine *e, int64_t now) {
        for (int i = 0; i < 64 && e->n_conns < MAX_CONNS; i++) {
                struct sockaddr_storage ss;
                socklen_t sl = sizeof(ss);
                int fd = accept4(e->listen_fd, (struct sockaddr *) &ss, &sl,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
                conn *c;

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                log_line('W', "srv  accept: %s", strerror(errno));
                        return;
                }
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        return;
                }
                c->fd = fd;
                c->state = CONN_READING;
                c->deadline_us = now + READ_TIMEOUT_MS * 1000LL;
                if (ss.ss_family == AF_INET)
                        inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, c->peer,
                                  sizeof(c->peer));
                else if (ss.ss_family == AF_INET6)
                        inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, c->peer,
                                  sizeof(c->peer));
                e->conns[e->n_conns++] = c;
        }
}

static void conns_sweep(engine *e) {
        size_t j = 0;

        for (size_t i = 0; i < e->n_conns; i++) {
                conn *c = e->conns[i];

                if (c->state == CONN_CLOSED) {
                        free(c->in);
                        free(c->out);
                        free(c);
                } else {
                        e->conns[j++] = c;
                }
        }
        e->n_conns = j;
}

static bool replies_pending(const engine *e) {
        for (size_t i = 0; i < e->n_conns; i++)
                if (e->conns[i]->state == CONN_DELAYED || e->conns[i]->state == CONN_WRITING)
                        return true;
        return false;
}

/* ---- what happens to the engine ----------------------------------------- */

/* Dies the way the signal's default action says (a core dump is not
 * wanted from a test helper). */
static void die_by_signal(int sig) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        struct rlimit no_core = { 0, 0 };
        sigset_t set;

        setrlimit(RLIMIT_CORE, &no_core);
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, NULL);
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
}

static const struct {
        const char *name;
        int sig;
} signal_names[] = {
        { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "ILL", SIGILL },
        { "TRAP", SIGTRAP }, { "ABRT", SIGABRT }, { "BUS", SIGBUS }, { "FPE", SIGFPE },
        { "KILL", SIGKILL }, { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },
        { "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "XCPU", SIGXCPU },
        { "XFSZ", SIGXFSZ }, { "SYS", SIGSYS },
};

static const char *signal_name(int sig) {
        for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
                if (signal_names[i].sig == sig)
                        return signal_names[i].name;
        return "?";
}

static void become_ready(engine *e) {
        char url[300];
        bool v6 = strchr(e->opt.host, ':') != NULL;

        e->ready = true;
        e->ready_us = mono_us();
        e->at[TIMER_PROGRESS] = NEVER;
        if (e->opt.print_ready_time)
                log_line('I', "srv  load_model: ready_mono_us=%" PRId64, mono_us());
        if (!e->opt.announce)
                return;
        snprintf(url, sizeof(url), "http://%s%s%s:%u", v6 ? "[" : "", e->opt.host, v6 ? "]" : "",
                 e->port);
        log_line('I', "srv  llama_server: model loaded");
        log_line('I', "srv  llama_server: listening on %s", url);
        log_line('I', "main: server is listening on %s - starting the main loop", url);
}

static void fire(engine *e, timer t, int64_t now) {
        const options *o = &e->opt;

        e->at[t] = NEVER;
        switch (t) {
        case TIMER_LOAD:
                become_ready(e);
                break;
        case TIMER_PROGRESS: {
                int64_t elapsed = (now - e->start_us) / 1000;
                int64_t step = o->log_progress_ms * 1000;

                if (o->never_ready)
                        log_line('I', "load_tensors: loading model tensors, %" PRId64 " ms so far",
                                 elapsed);
                else
                        log_line('I', "load_tensors: loading model tensors, %d%% (%" PRId64 " ms)",
                                 (int) (o->load_ms && elapsed < o->load_ms ?
                                        elapsed * 100 / o->load_ms : 99), elapsed);
                e->at[t] = now + step;
                break;
        }
        case TIMER_EXIT:
                log_line('I', "main: exiting with code %ld (--exit-after-ms)", o->exit_code);
                exit((int) o->exit_code);
        case TIMER_SIGNAL:
                log_line('I', "main: raising SIG%s (--signal-after-ms)", signal_name(o->signal_no));
                die_by_signal(o->signal_no);
                break;  /* SIGSTOP and the like: carry on */
        case TIMER_CUDA_ERROR:
                log_line('E', "ggml_cuda_compute_forward: MUL_MAT failed");
                log_line('E', "CUDA error: an illegal memory access was encountered");
                log_line('E', "  current device: 0, in function ggml_cuda_compute_forward at "
                         "ggml/src/ggml-cuda/ggml-cuda.cu:2466");
                log_line(0, "ggml/src/ggml-cuda/ggml-cuda.cu:84: CUDA error");
                break;
        case TIMER_CUDA_OOM:
                log_line('E', "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB "
                         "on device 0: cudaMalloc failed: out of memory");
                exit(1);
        case TIMER_UNHEALTHY:
                e->unhealthy = true;
                log_line('W', "srv  fake: /health answers 500 from now on (--unhealthy-after-ms)");
                break;
        case TIMER_HANG:
                e->hung = true;
                log_line('W', "srv  fake: hanging, no request gets a reply from now on "
                         "(--hang-after-ms)");
                break;
        case TIMER_MAX:
                break;
        }
}

/* Fires what is due, earliest first. */
static void run_timers(engine *e, int64_t now) {
        for (;;) {
                timer next = TIMER_MAX;

                for (int t = 0; t < TIMER_MAX; t++)
                        if (e->at[t] <= now && (next == TIMER_MAX || e->at[t] < e->at[next]))
                                next = (timer) t;
                if (next == TIMER_MAX)
                        return;
                fire(e, next, now);
        }
}

/* As llama-server: a completion still running when the signal comes gets
 * no answer (here the connection closes without one, where llama-server
 * lingers until the client gives up or SIGKILL). */
static void start_stopping(engine *e, const char *name) {
        log_line('I', "srv  operator(): received %s, shutting down", name);
        e->stopping = true;
        if (e->listen_fd >= 0) {
                close(e->listen_fd);
                e->listen_fd = -1;
        }
        for (size_t i = 0; i < e->n_conns; i++)
                if (e->conns[i]->state == CONN_READING || e->conns[i]->state == CONN_DRAINING ||
                    (e->conns[i]->state == CONN_DELAYED && e->conns[i]->holds_completion))
                        conn_close(e, e->conns[i]);
}

static void on_signal(engine *e) {
        struct signalfd_siginfo si;

        for (;;) {
                ssize_t n = read(e->signal_fd, &si, sizeof(si));
                int sig;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n != (ssize_t) sizeof(si))
                        return;
                sig = (int) si.ssi_signo;
                if (sig == SIGTERM && e->opt.ignore_sigterm) {
                        log_line('I', "srv  operator(): received SIGTERM, ignoring it "
                                 "(--ignore-sigterm)");
                        continue;
                }
                if (!e->ready)
                        die_by_signal(sig);     /* llama-server has no handler while loading */
                if (e->stopping) {
                        log_line('I', "srv  operator(): received SIG%s again, exiting at once",
                                 signal_name(sig));
                        exit(1);
                }
                start_stopping(e, sig == SIGTERM ? "SIGTERM" : "SIGINT");
        }
}

/* ---- setup -------------------------------------------------------------- */

static int listen_on(const char *host, long port, unsigned *bound) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
        struct addrinfo *res = NULL;
        char service[24];
        int fd = -1;

        snprintf(service, sizeof(service), "%ld", port);
        if (getaddrinfo(host, service, &hints, &res) != 0)
                return -1;
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
                struct sockaddr_storage ss;
                socklen_t sl = sizeof(ss);
                int one = 1;

                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            ai->ai_protocol);
                if (fd < 0)
                        continue;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0 ||
                    getsockname(fd, (struct sockaddr *) &ss, &sl) != 0) {
                        close(fd);
                        fd = -1;
                        continue;
                }
                *bound = ntohs(ss.ss_family == AF_INET6 ?
                               ((struct sockaddr_in6 *) &ss)->sin6_port :
                               ((struct sockaddr_in *) &ss)->sin_port);
        }
        freeaddrinfo(res);
        return fd;
}

static int write_pid_file(const char *path) {
        char tmp[PATH_MAX], text[32];
        int fd, n;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int) getpid()) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        n = snprintf(text, sizeof(text), "%d\n", (int) getpid());
        write_all(fd, text, (size_t) n);
        if (close(fd) != 0 || rename(tmp, path) != 0) {
                int err = -errno;

                unlink(tmp);
                return err;
        }
        return 0;
}

/* Descriptors 0-2 closed by whoever started us would be handed out to
 * sockets, and log lines would go to a client. */
static void ensure_std_fds(void) {
        for (int fd = 0; fd < 3; fd++)
                if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
                        int n = open("/dev/null", O_RDWR);

                        if (n >= 0 && n != fd) {
                                dup2(n, fd);
                                close(n);
                        }
                }
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *to) {
        fprintf(to,
                "usage: fake-engine --port P [options]\n"
                "A stand-in for llama.cpp's llama-server, for tests.\n"
                "\n"
                "  --host H                 address to bind (default 127.0.0.1)\n"
                "  --port P                 port to bind (0: any; required)\n"
                "  -m, --model PATH         model file; exit 1 at once when unreadable\n"
                "  -np, --parallel N        slots (default 1)\n"
                "  --load-ms N              \"load\" for N ms, answering 503 meanwhile\n"
                "  --never-ready            load forever\n"
                "  --fail-load              fail the load as llama-server does on a corrupt\n"
                "                           model: the cause (twice), then \"exiting due to\n"
                "                           model loading error\", exit 1\n"
                "  --exit-after-ms N        exit N ms after start ...\n"
                "  --exit-code X            ... with code X (default 0)\n"
                "  --signal-after-ms N      die by a signal N ms after start ...\n"
                "  --signal NAME            ... this one (SEGV, ABRT, KILL, ...; default SEGV)\n"
                "  --cuda-error-after-ms N  log a CUDA illegal memory access, keep serving\n"
                "  --cuda-oom-after-ms N    log a cudaMalloc out-of-memory line, exit 1\n"
                "  --unhealthy-after-ms N   /health answers 500 from then on\n"
                "  --hang-after-ms N        no request gets a reply from then on\n"
                "  --slow-health-ms N       delay every /health answer by N ms\n"
                "  --completion-ms N        time a completion takes (default 10)\n"
                "  --ignore-sigterm         SIGTERM is logged and ignored\n"
                "  --announce               log llama-server's \"listening on\" lines when ready\n"
                "  --print-ready-time       log ready_mono_us=N (CLOCK_MONOTONIC) when ready\n"
                "  --log-probes             log /health requests too\n"
                "  --pid-file PATH          write the pid there\n"
                "  --log-progress-ms N      log a loading line every N ms while loading\n"
                "  --metrics                serve llama-server's /metrics (else 501): a steady\n"
                "                           %d tokens/s of generation since ready, plus completions\n"
                "Accepted and ignored, as llama-server takes them: -c, -ngl, -ts, -t, -b, -a,\n"
                "-sm, -mg, -fa (with their long names), --slots, --no-webui,\n"
                "--cont-batching, --no-mmap, --mlock.\n", METRICS_TOKENS_PER_S);
}

static bool parse_ms(const char *s, int64_t *out) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < 0 || v > MS_MAX)
                return false;
        *out = v;
        return true;
}

static bool parse_long(const char *s, long min, long max, long *out) {
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return false;
        *out = v;
        return true;
}

static bool parse_signal(const char *s, int *out) {
        long n;

        if (parse_long(s, 1, SIGRTMAX, &n)) {
                *out = (int) n;
                return true;
        }
        if (strncasecmp(s, "SIG", 3) == 0)
                s += 3;
        for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
                if (strcasecmp(s, signal_names[i].name) == 0) {
                        *out = signal_names[i].sig;
                        return true;
                }
        return false;
}

enum {
        OPT_HOST = 256, OPT_PORT, OPT_PARALLEL, OPT_LOAD_MS, OPT_NEVER_READY, OPT_EXIT_AFTER,
        OPT_EXIT_CODE, OPT_SIGNAL_AFTER, OPT_SIGNAL, OPT_CUDA_ERROR, OPT_CUDA_OOM, OPT_UNHEALTHY,
        OPT_HANG, OPT_SLOW_HEALTH, OPT_COMPLETION_MS, OPT_IGNORE_SIGTERM, OPT_ANNOUNCE,
        OPT_PRINT_READY_TIME, OPT_LOG_PROBES, OPT_PID_FILE, OPT_LOG_PROGRESS, OPT_METRICS,
        OPT_FAIL_LOAD,
        OPT_IGNORED_ARG,
        OPT_IGNORED_FLAG,
};

/* llama-server's multi-letter short options, which getopt cannot spell. */
static const char *long_alias(const char *arg) {
        static const struct {
                const char *from, *to;
        } aliases[] = {
                { "-np", "--parallel" }, { "-ngl", "--n-gpu-layers" }, { "-ts", "--tensor-split" },
                { "-sm", "--split-mode" }, { "-mg", "--main-gpu" }, { "-fa", "--flash-attn" },
                { "-cb", "--cont-batching" },
        };
        for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
                if (strcmp(arg, aliases[i].from) == 0)
                        return aliases[i].to;
        return arg;
}

/* 0: run; otherwise the exit code (2 for bad usage, 0 after --help). */
static int parse_options(int argc, char **argv, options *o, bool *exit_now) {
        static const struct option longopts[] = {
                { "host", required_argument, NULL, OPT_HOST },
                { "port", required_argument, NULL, OPT_PORT },
                { "model", required_argument, NULL, 'm' },
                { "parallel", required_argument, NULL, OPT_PARALLEL },
                { "load-ms", required_argument, NULL, OPT_LOAD_MS },
                { "never-ready", no_argument, NULL, OPT_NEVER_READY },
                { "fail-load", no_argument, NULL, OPT_FAIL_LOAD },
                { "exit-after-ms", required_argument, NULL, OPT_EXIT_AFTER },
                { "exit-code", required_argument, NULL, OPT_EXIT_CODE },
                { "signal-after-ms", required_argument, NULL, OPT_SIGNAL_AFTER },
                { "signal", required_argument, NULL, OPT_SIGNAL },
                { "cuda-error-after-ms", required_argument, NULL, OPT_CUDA_ERROR },
                { "cuda-oom-after-ms", required_argument, NULL, OPT_CUDA_OOM },
                { "unhealthy-after-ms", required_argument, NULL, OPT_UNHEALTHY },
                { "hang-after-ms", required_argument, NULL, OPT_HANG },
                { "slow-health-ms", required_argument, NULL, OPT_SLOW_HEALTH },
                { "completion-ms", required_argument, NULL, OPT_COMPLETION_MS },
                { "ignore-sigterm", no_argument, NULL, OPT_IGNORE_SIGTERM },
                { "announce", no_argument, NULL, OPT_ANNOUNCE },
                { "print-ready-time", no_argument, NULL, OPT_PRINT_READY_TIME },
                { "log-probes", no_argument, NULL, OPT_LOG_PROBES },
                { "pid-file", required_argument, NULL, OPT_PID_FILE },
                { "log-progress-ms", required_argument, NULL, OPT_LOG_PROGRESS },
                { "help", no_argument, NULL, 'h' },
                /* llama-server's, accepted so that real argument templates run */
                { "ctx-size", required_argument, NULL, OPT_IGNORED_ARG },
                { "n-gpu-layers", required_argument, NULL, OPT_IGNORED_ARG },
                { "gpu-layers", required_argument, NULL, OPT_IGNORED_ARG },
                { "tensor-split", required_argument, NULL, OPT_IGNORED_ARG },
                { "threads", required_argument, NULL, OPT_IGNORED_ARG },
                { "batch-size", required_argument, NULL, OPT_IGNORED_ARG },
                { "alias", required_argument, NULL, OPT_IGNORED_ARG },
                { "split-mode", required_argument, NULL, OPT_IGNORED_ARG },
                { "main-gpu", required_argument, NULL, OPT_IGNORED_ARG },
                { "flash-attn", required_argument, NULL, OPT_IGNORED_ARG },
                { "metrics", no_argument, NULL, OPT_METRICS },
                { "slots", no_argument, NULL, OPT_IGNORED_FLAG },
                { "no-webui", no_argument, NULL, OPT_IGNORED_FLAG },
                { "cont-batching", no_argument, NULL, OPT_IGNORED_FLAG },
                { "no-mmap", no_argument, NULL, OPT_IGNORED_FLAG },
                { "mlock", no_argument, NULL, OPT_IGNORED_FLAG },
                { NULL, 0, NULL, 0 },
        };
        int64_t *ms_target;
        const char *what;
        int c;

        *exit_now = false;
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
                argv[i] = (char *) long_alias(argv[i]);
        while ((c = getopt_long(argc, argv, "hm:c:t:b:a:", longopts, NULL)) != -1) {
                ms_target = NULL;
                what = NULL;
                switch (c) {
                case 'h':
                        usage(stdout);
                        *exit_now = true;
                        return 0;
                case 'm':
                        o->model = optarg;
                        break;
                case OPT_HOST:
                        o->host = optarg;
                        break;
                case OPT_PORT:
                        if (!parse_long(optarg, 0, 65535, &o->port))
                                what = "--port";
                        break;
                case OPT_PARALLEL:
                        if (!parse_long(optarg, 1, 1024, &o->parallel))
                                what = "--parallel";
                        break;
                case OPT_EXIT_CODE:
                        if (!parse_long(optarg, 0, 255, &o->exit_code))
                                what = "--exit-code";
                        o->exit_code_set = true;
                        break;
                case OPT_SIGNAL:
                        if (!parse_signal(optarg, &o->signal_no))
                                what = "--signal";
                        o->signal_set = true;
                        break;
                case OPT_LOAD_MS: ms_target = &o->load_ms; break;
                case OPT_EXIT_AFTER: ms_target = &o->exit_after_ms; break;
                case OPT_SIGNAL_AFTER: ms_target = &o->signal_after_ms; break;
                case OPT_CUDA_ERROR: ms_target = &o->cuda_error_after_ms; break;
                case OPT_CUDA_OOM: ms_target = &o->cuda_oom_after_ms; break;
                case OPT_UNHEALTHY: ms_target = &o->unhealthy_after_ms; break;
                case OPT_HANG: ms_target = &o->hang_after_ms; break;
                case OPT_SLOW_HEALTH: ms_target = &o->slow_health_ms; break;
                case OPT_COMPLETION_MS: ms_target = &o->completion_ms; break;
                case OPT_LOG_PROGRESS: ms_target = &o->log_progress_ms; break;
                case OPT_NEVER_READY: o->never_ready = true; break;
                case OPT_FAIL_LOAD: o->fail_load = true; break;
                case OPT_IGNORE_SIGTERM: o->ignore_sigterm = true; break;
                case OPT_ANNOUNCE: o->announce = true; break;
                case OPT_PRINT_READY_TIME: o->print_ready_time = true; break;
                case OPT_LOG_PROBES: o->log_probes = true; break;
                case OPT_METRICS: o->metrics = true; break;
                case OPT_PID_FILE: o->pid_file = optarg; break;
                case 'c': case 't': case 'b': case 'a':
                case OPT_IGNORED_ARG: case OPT_IGNORED_FLAG:
                        break;
                default:
                        usage(stderr);
                        return 2;
                }
                if (ms_target && !parse_ms(optarg, ms_target))
                        what = "a duration";
                if (what) {
                        fprintf(stderr, "fake-engine: invalid value '%s' for %s\n", optarg, what);
                        usage(stderr);
                        return 2;
                }
        }
        what = NULL;
        if (optind < argc)
                what = "unexpected argument";
        else if (o->port < 0)
                what = "--port is required";
        else if (o->exit_code_set && o->exit_after_ms < 0)
                what = "--exit-code needs --exit-after-ms";
        else if (o->signal_set && o->signal_after_ms < 0)
                what = "--signal needs --signal-after-ms";
        if (what) {
                fprintf(stderr, "fake-engine: %s%s%s\n", what, optind < argc ? " " : "",
                        optind < argc ? argv[optind] : "");
                usage(stderr);
                return 2;
        }
        return 0;
}

/* ---- main --------------------------------------------------------------- */

/* What llama-server (build 9187) writes when a model's tensors run past the
 * end of its file: the cause, twice (it tries to load twice), generic
 * failures, and last the generic exit line. */
static void fail_load(const char *model) {
        static const char cause[] = "llama_model_load: error loading model: tensor "
                                    "'blk.3.ffn_up.weight' data is not within the file bounds, "
                                    "model is corrupted or incomplete";

        log_line('I', "llama_model_loader: loaded meta data with 31 key-value pairs and 291 "
                 "tensors from %s (version GGUF V3 (latest))", model);
        for (int i = 0; i < 2; i++) {
                log_line('E', "%s", cause);
                log_line('E', "llama_model_load_from_file_impl: failed to load model");
        }
        log_line('E', "common_init_from_params: failed to load model '%s'", model);
        log_line('E', "srv    load_model: failed to load model, '%s'", model);
        log_line('I', "srv    operator(): operator(): cleaning up before exit...");
        log_line('E', "main: exiting due to model loading error");
}

static int64_t at_ms(const engine *e, int64_t ms) {
        return ms < 0 ? NEVER : e->start_us + ms * 1000;
}

static void loop(engine *e) {
        struct pollfd *pfds = calloc(MAX_CONNS + 2, sizeof(*pfds));
        conn **polled = calloc(MAX_CONNS + 2, sizeof(*polled));

        if (!pfds || !polled) {
                log_line('E', "main: cannot allocate the poll set");
                exit(1);
        }
        for (;;) {
                int64_t now = mono_us(), next = NEVER;
                size_t n = 0;
                int timeout, rc;

                run_timers(e, now);
                for (size_t i = 0; i < e->n_conns; i++) {
                        conn *c = e->conns[i];

                        if (c->state == CONN_DELAYED)
                                conn_advance(e, c, now);
                        else if (c->state != CONN_CLOSED && now >= c->deadline_us)
                                conn_close(e, c);
                }
                conns_sweep(e);
                if (e->stopping && !replies_pending(e))
                        exit(0);

                for (int t = 0; t < TIMER_MAX; t++)
                        if (e->at[t] < next)
                                next = e->at[t];
                pfds[n++] = (struct pollfd) { .fd = e->signal_fd, .events = POLLIN };
                polled[0] = NULL;
                if (e->listen_fd >= 0 && e->n_conns < MAX_CONNS) {
                        polled[n] = NULL;
                        pfds[n++] = (struct pollfd) { .fd = e->listen_fd, .events = POLLIN };
                }
                for (size_t i = 0; i < e->n_conns; i++) {
                        conn *c = e->conns[i];
                        short ev = 0;

                        if (c->deadline_us < next)
                                next = c->deadline_us;
                        switch (c->state) {
                        case CONN_READING:
                        case CONN_DRAINING:
                        case CONN_HUNG:
                                ev = POLLIN;
                                break;
                        case CONN_DELAYED:
                        case CONN_WRITING:
                                /* room to notice the client leaving, and pipelined requests */
                                if (!c->peer_eof && c->in_len < IN_MAX)
                                        ev = POLLIN;
                                if (c->state == CONN_WRITING)
                                        ev |= POLLOUT;
                                break;
                        case CONN_CLOSED:
                                break;
                        }
                        polled[n] = c;
                        pfds[n++] = (struct pollfd) { .fd = c->fd, .events = ev };
                }
                if (next == NEVER)
                        timeout = -1;
                else if (next <= now)
                        timeout = 0;
                else
                        timeout = (next - now + 999) / 1000 > INT_MAX ? INT_MAX :
                                  (int) ((next - now + 999) / 1000);

                rc = poll(pfds, (nfds_t) n, timeout);
                if (rc < 0 && errno != EINTR) {
                        log_line('E', "main: poll: %s", strerror(errno));
                        exit(1);
                }
                if (rc <= 0)
                        continue;
                now = mono_us();
                run_timers(e, now);
                for (size_t i = 0; i < n; i++) {
                        conn *c = polled[i];

                        if (!pfds[i].revents)
                                continue;
                        if (pfds[i].fd == e->signal_fd) {
                                on_signal(e);
                        } else if (!c) {
                                if (e->listen_fd >= 0)
                                        conn_accept(e, now);
                        } else if (c->state != CONN_CLOSED) {
                                if (pfds[i].revents & POLLERR)
                                        conn_close(e, c);
                                else if (pfds[i].revents & (POLLIN | POLLHUP))
                                        conn_read(e, c);
                                if (c->state != CONN_CLOSED && (pfds[i].revents & POLLHUP) &&
                                    c->peer_eof && c->state != CONN_WRITING)
                                        conn_close(e, c);
                                if (c->state != CONN_CLOSED)
                                        conn_advance(e, c, now);
                        }
                }
        }
}

int main(int argc, char **argv) {
        engine e = { .listen_fd = -1, .signal_fd = -1 };
        options *o = &e.opt;
        const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
        const char *order = getenv("CUDA_DEVICE_ORDER");
        struct sigaction sa = { .sa_handler = SIG_IGN };
        sigset_t mask;
        bool exit_now;
        int rc;

        e.start_us = log_start_us = mono_us();
        ensure_std_fds();
        *o = (options) {
                .host = "127.0.0.1", .port = -1, .parallel = 1, .exit_after_ms = -1,
                .signal_after_ms = -1, .signal_no = SIGSEGV, .cuda_error_after_ms = -1,
                .cuda_oom_after_ms = -1, .unhealthy_after_ms = -1, .hang_after_ms = -1,
                .completion_ms = 10,
        };
        rc = parse_options(argc, argv, o, &exit_now);
        if (rc != 0 || exit_now)
                return rc;

        /* a disposition inherited as ignored would hide SIGTERM from the signalfd */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
        sa.sa_handler = SIG_DFL;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        e.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (e.signal_fd < 0) {
                log_line('E', "main: signalfd: %s", strerror(errno));
                return 1;
        }

        log_line('I', "build: 0 (fake-engine), a stand-in for llama-server");
        log_line('I', "main: pid %d, host %s, port %ld, model '%s', n_parallel %ld, "
                 "CUDA_DEVICE_ORDER%s%s, CUDA_VISIBLE_DEVICES%s%s", (int) getpid(), o->host,
                 o->port, o->model ? o->model : "", o->parallel, order ? "=" : " unset",
                 order ? order : "", cvd ? "=" : " unset", cvd ? cvd : "");

        e.listen_fd = listen_on(o->host, o->port, &e.port);
        if (e.listen_fd < 0) {
                log_line('E', "main: couldn't bind HTTP server socket, hostname: %s, port: %ld",
                         o->host, o->port);
                return 1;
        }
        if (o->port == 0)
                log_line('I', "main: bound port %u", e.port);
        if (o->pid_file && (rc = write_pid_file(o->pid_file)) < 0) {
                log_line('E', "main: cannot write pid file %s: %s", o->pid_file, strerror(-rc));
                return 1;
        }

        log_line('I', "srv    load_model: loading model '%s'", o->model ? o->model : "");
        if (o->model) {
                int fd = open(o->model, O_RDONLY | O_CLOEXEC);

                if (fd < 0) {
                        log_line('E', "gguf_init_from_file: failed to open GGUF file '%s'",
                                 o->model);
                        return 1;
                }
                close(fd);
        }

        if (o->fail_load) {
                fail_load(o->model ? o->model : "");
                return 1;
        }

        e.conns = calloc(MAX_CONNS, sizeof(*e.conns));
        if (!e.conns) {
                log_line('E', "main: out of host memory");
                return 1;
        }
        e.at[TIMER_LOAD] = o->never_ready ? NEVER : at_ms(&e, o->load_ms);
        e.at[TIMER_PROGRESS] = o->log_progress_ms > 0 ? at_ms(&e, o->log_progress_ms) : NEVER;
        e.at[TIMER_EXIT] = at_ms(&e, o->exit_after_ms);
        e.at[TIMER_SIGNAL] = at_ms(&e, o->signal_after_ms);
        e.at[TIMER_CUDA_ERROR] = at_ms(&e, o->cuda_error_after_ms);
        e.at[TIMER_CUDA_OOM] = at_ms(&e, o->cuda_oom_after_ms);
        e.at[TIMER_UNHEALTHY] = at_ms(&e, o->unhealthy_after_ms);
        e.at[TIMER_HANG] = at_ms(&e, o->hang_after_ms);
        loop(&e);
        return 0;
}
