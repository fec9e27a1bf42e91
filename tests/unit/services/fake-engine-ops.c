/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "fake-engine-ops.h"

/* What a caller of the engine ops holds: freed by ps_engine_free(), while
 * the record it points to stays for the test to inspect. */
typedef struct fake_handle {
        fake_engine *e;
} fake_handle;

struct fake_engine {
        ps_engine_spec *spec;
        ps_engine_plan *plan;
        pid_t pid;
        int64_t log_start;
        bool running;
        bool exiting;                  /* exit scheduled, not yet delivered */
        ps_exit_status status;
        int health;
        int in_flight;                 /* on /metrics; < 0: 501 as llama-server
                                          without --metrics */
        unsigned metrics_reads;
        bool ignore_term;
        unsigned signals[NSIG];
        unsigned requests;
        char last_line[512];
        struct evhttp *http;
        struct event *exit_ev;
        ps_engine_exit_fn on_exit;
        void *userdata;
        fake_handle *handle;           /* NULL once the caller freed it */
};

static struct {
        struct event_base *base;
        fake_engine **list;
        size_t n, cap;
        size_t failed;
        size_t adopt_tries;
        fake_spawn_fn hook;
        void *hook_userdata;
} world;

/* ---- the records -------------------------------------------------------------- */

static void http_close(fake_engine *e) {
        if (e->http)
                evhttp_free(e->http);
        e->http = NULL;
}

static void record_free(fake_engine *e) {
        if (!e)
                return;
        http_close(e);
        if (e->exit_ev)
                event_free(e->exit_ev);
        free(e->handle);
        ps_engine_spec_free(e->spec);
        ps_engine_plan_free(e->plan);
        free(e);
}

static void record_keep(fake_engine *e) {
        if (world.n == world.cap) {
                world.cap = world.cap ? world.cap * 2 : 16;
                world.list = realloc(world.list, world.cap * sizeof(*world.list));
                assert_non_null(world.list);
        }
        world.list[world.n++] = e;
}

static fake_engine *of(const ps_engine *engine) {
        return ((const fake_handle *) (const void *) engine)->e;
}

/* ---- health answers ------------------------------------------------------------- */

static void on_request(struct evhttp_request *req, void *userdata) {
        fake_engine *e = userdata;
        struct evbuffer *body = evbuffer_new();

        assert_non_null(body);
        e->requests++;
        if (e->health == 200 && strcmp(evhttp_request_get_uri(req), "/metrics") == 0) {
                e->metrics_reads++;
                if (e->in_flight < 0) {
                        evbuffer_add_printf(body, "{\"error\":{\"code\":501}}");
                        evhttp_send_reply(req, 501, "Not Implemented", body);
                } else {
                        evbuffer_add_printf(body, "# TYPE llamacpp:requests_processing gauge\n"
                                            "llamacpp:requests_processing %d\n"
                                            "# TYPE llamacpp:requests_deferred gauge\n"
                                            "llamacpp:requests_deferred 0\n", e->in_flight);
                        evhttp_send_reply(req, 200, "OK", body);
                }
                evbuffer_free(body);
                return;
        }
        evbuffer_add_printf(body, "{\"status\":\"%s\"}", e->health == 200 ? "ok" : "loading model");
        evhttp_send_reply(req, e->health, e->health == 200 ? "OK" : "Service Unavailable", body);
        evbuffer_free(body);
}

static int http_open(fake_engine *e, char *err, size_t errlen) {
        const char *host = e->spec->host ? e->spec->host : "127.0.0.1";

        e->http = evhttp_new(world.base);
        assert_non_null(e->http);
        evhttp_set_gencb(e->http, on_request, e);
        if (!evhttp_bind_socket_with_handle(e->http, host, e->spec->port)) {
                snprintf(err, errlen, "listen %s:%u: address in use", host,
                         (unsigned) e->spec->port);
                http_close(e);
                return -EADDRINUSE;
        }
        return 0;
}

/* The log as the real spawn leaves it: created if missing, appended to. */
static int log_open(fake_engine *e, char *err, size_t errlen) {
        struct stat st;
        int fd = open(e->plan->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

        if (fd < 0 || fstat(fd, &st) < 0) {
                int r = -errno;

                snprintf(err, errlen, "log file %s: %s", e->plan->log_path, strerror(-r));
                if (fd >= 0)
                        close(fd);
                return r;
        }
        e->log_start = (int64_t) st.st_size;
        close(fd);
        return 0;
}

/* ---- exits ------------------------------------------------------------------------ */

static void on_exit_due(evutil_socket_t fd, short what, void *userdata) {
        fake_engine *e = userdata;
        ps_exit_status st = e->status;

        (void) fd;
        (void) what;
        e->running = false;
        e->exiting = false;
        /* Last: the callback may free the handle. */
        if (e->handle && e->on_exit)
                e->on_exit((ps_engine *) (void *) e->handle, &st, e->userdata);
}

static void exit_schedule(fake_engine *e, const ps_exit_status *st) {
        struct timeval now = { 0, 0 };

        if (!e->running || e->exiting)
                return;
        e->exiting = true;
        e->status = *st;
        http_close(e);                 /* a dead process holds no port */
        evtimer_add(e->exit_ev, &now);
}

void fake_engine_exit(fake_engine *e, int code) {
        exit_schedule(e, &(ps_exit_status) { .exited = true, .code = code });
}

void fake_engine_die(fake_engine *e, int signo) {
        exit_schedule(e, &(ps_exit_status) { .signo = signo });
}

/* ---- the operations ---------------------------------------------------------------- */

static int fake_spawn(struct event_base *base, const ps_engine_spec *spec,
                      const ps_engine_options *opts, ps_engine_exit_fn on_exit, void *userdata,
                      ps_engine **ret, char *err, size_t errlen) {
        fake_engine *e = calloc(1, sizeof(*e));
        int r;

        assert_non_null(e);
        assert_ptr_equal(base, world.base);
        e->health = 200;
        e->on_exit = on_exit;
        e->userdata = userdata;
        e->exit_ev = evtimer_new(world.base, on_exit_due, e);
        e->handle = calloc(1, sizeof(*e->handle));
        assert_non_null(e->exit_ev);
        assert_non_null(e->handle);
        e->handle->e = e;
        r = ps_engine_plan_new(spec, opts, &e->plan, err, errlen);
        if (r == 0) {
                e->spec = ps_engine_spec_copy(spec);
                assert_non_null(e->spec);
                r = log_open(e, err, errlen);
        }
        if (r == 0)
                r = http_open(e, err, errlen);
        if (r == 0) {
                e->pid = FAKE_ENGINE_PID_BASE + (pid_t) world.n;
                e->running = true;
                /* last: the hook sees a running engine it may stop */
                r = world.hook ? world.hook(e, world.hook_userdata, err, errlen) : 0;
        }
        if (r != 0) {
                world.failed++;
                record_free(e);
                return r < 0 ? r : -EIO;
        }
        record_keep(e);
        *ret = (ps_engine *) (void *) e->handle;
        return 0;
}

/* Nothing is ever left running by a previous daemon here. */
static int fake_adopt(struct event_base *base, const ps_engine_spec *spec,
                      const ps_engine_options *opts, ps_engine_exit_fn on_exit, void *userdata,
                      ps_engine **ret, char *err, size_t errlen) {
        (void) base;
        (void) spec;
        (void) opts;
        (void) on_exit;
        (void) userdata;
        (void) ret;
        (void) err;
        (void) errlen;
        world.adopt_tries++;
        return -ENOENT;
}

static int fake_signal(ps_engine *engine, int signo) {
        fake_engine *e = of(engine);

        if (!e->running)
                return -ESRCH;
        if (signo > 0 && signo < NSIG)
                e->signals[signo]++;
        if (signo == SIGKILL || (signo == SIGTERM && !e->ignore_term)) {
                /* a SIGKILL overtakes an exit already on its way */
                if (signo == SIGKILL && e->exiting)
                        e->status = (ps_exit_status) { .signo = SIGKILL };
                fake_engine_die(e, signo);
        }
        return 0;
}

/* As the real one: the engine keeps running, only the handle goes. */
static ps_engine *fake_free(ps_engine *engine) {
        fake_engine *e = of(engine);

        evtimer_del(e->exit_ev);
        if (e->exiting) {
                e->exiting = false;
                e->running = false;
        }
        free(e->handle);
        e->handle = NULL;
        return NULL;
}

static pid_t fake_pid(const ps_engine *engine) {
        return of(engine)->pid;
}

static bool fake_running(const ps_engine *engine) {
        return of(engine)->running;
}

static void fake_set_userdata(ps_engine *engine, void *userdata) {
        of(engine)->userdata = userdata;
}

static const char *fake_log_path(const ps_engine *engine) {
        return of(engine)->plan->log_path;
}

static const char *fake_pid_path(const ps_engine *engine) {
        return of(engine)->plan->pid_path;
}

static int64_t fake_log_start(const ps_engine *engine) {
        return of(engine)->log_start;
}

static int fake_last_log_line(const ps_engine *engine, char *buf, size_t len) {
        const fake_engine *e = of(engine);

        if (!e->last_line[0])
                return -ENODATA;
        snprintf(buf, len, "%s", e->last_line);
        return 0;
}

/* Its listener is the test's own evhttp socket: it serves. */
static int fake_serves(const ps_engine *engine, const char *host, uint16_t port, char *err,
                       size_t errlen) {
        (void) host;
        (void) port;
        (void) err;
        (void) errlen;
        return of(engine)->running ? 0 : -ESRCH;
}

static const ps_engine_ops fake_ops = {
        .spawn = fake_spawn,
        .adopt = fake_adopt,
        .signal = fake_signal,
        .free = fake_free,
        .pid = fake_pid,
        .running = fake_running,
        .set_userdata = fake_set_userdata,
        .log_path = fake_log_path,
        .pid_path = fake_pid_path,
        .log_start = fake_log_start,
        .last_log_line = fake_last_log_line,
        .serves = fake_serves,
};

/* ---- the test's side ---------------------------------------------------------------- */

void fake_engines_install(struct event_base *base) {
        assert_null(world.base);
        world.base = base;
        ps_engine_ops_set(&fake_ops);
}

void fake_engines_uninstall(void) {
        ps_engine_ops_set(NULL);
        for (size_t i = 0; i < world.n; i++)
                record_free(world.list[i]);
        free(world.list);
        memset(&world, 0, sizeof(world));
}

void fake_engines_on_spawn(fake_spawn_fn fn, void *userdata) {
        world.hook = fn;
        world.hook_userdata = userdata;
}

size_t fake_engines_spawned(void) {
        return world.n;
}

size_t fake_engines_failed(void) {
        return world.failed;
}

size_t fake_engines_adopt_tries(void) {
        return world.adopt_tries;
}

fake_engine *fake_engines_at(size_t i) {
        return i < world.n ? world.list[i] : NULL;
}

fake_engine *fake_engines_last(void) {
        return world.n ? world.list[world.n - 1] : NULL;
}

size_t fake_engines_running(const char *pool_id, const char *replica_id) {
        size_t n = 0;

        for (size_t i = 0; i < world.n; i++)
                if (world.list[i]->running && strcmp(world.list[i]->spec->pool_id, pool_id) == 0 &&
                    strcmp(world.list[i]->spec->replica_id, replica_id) == 0)
                        n++;
        return n;
}

pid_t fake_engine_pid(const fake_engine *e) {
        return e->pid;
}

const ps_engine_spec *fake_engine_spec(const fake_engine *e) {
        return e->spec;
}

const ps_engine_plan *fake_engine_plan(const fake_engine *e) {
        return e->plan;
}

bool fake_engine_has_arg(const fake_engine *e, const char *arg, const char *value) {
        char **argv = e->plan->argv;

        for (size_t i = 1; argv[i]; i++)
                if (strcmp(argv[i], arg) == 0 &&
                    (!value || (argv[i + 1] && strcmp(argv[i + 1], value) == 0)))
                        return true;
        return false;
}

const char *fake_engine_env(const fake_engine *e, const char *name) {
        size_t n = strlen(name);

        for (char **v = e->plan->envp; *v; v++)
                if (strncmp(*v, name, n) == 0 && (*v)[n] == '=')
                        return *v + n + 1;
        return NULL;
}

bool fake_engine_running(const fake_engine *e) {
        return e->running;
}

unsigned fake_engine_signals(const fake_engine *e, int signo) {
        return signo > 0 && signo < NSIG ? e->signals[signo] : 0;
}

unsigned fake_engine_requests(const fake_engine *e) {
        return e->requests;
}

void fake_engine_set_health(fake_engine *e, int http_status) {
        e->health = http_status;
}

void fake_engine_set_in_flight(fake_engine *e, int n) {
        e->in_flight = n;
}

unsigned fake_engine_metrics_reads(const fake_engine *e) {
        return e->metrics_reads;
}

void fake_engine_ignore_term(fake_engine *e, bool ignore) {
        e->ignore_term = ignore;
}

void fake_engine_log(fake_engine *e, const char *line) {
        FILE *f = fopen(e->plan->log_path, "ae");

        assert_non_null(f);
        fprintf(f, "%s\n", line);
        assert_int_equal(fclose(f), 0);
        snprintf(e->last_line, sizeof(e->last_line), "%s", line);
}
