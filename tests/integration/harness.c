/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

/* ---- the loop ------------------------------------------------------------- */

int64_t th_now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_deadline(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        *(bool *) userdata = true;
}

bool th_loop_until(struct event_base *base, th_cond *cond, void *fixture, const void *arg,
                   int64_t wait_ms) {
        struct timeval tv = { wait_ms / 1000, (wait_ms % 1000) * 1000 };
        bool expired = false;
        struct event *deadline = evtimer_new(base, on_deadline, &expired);

        assert_non_null(deadline);
        evtimer_add(deadline, &tv);
        while ((!cond || !cond(fixture, arg)) && !expired)
                event_base_loop(base, EVLOOP_ONCE);
        event_free(deadline);
        return cond ? cond(fixture, arg) : true;
}

void th_loop_for(struct event_base *base, int64_t wait_ms) {
        th_loop_until(base, NULL, NULL, NULL, wait_ms);
}

bool th_flag_set(void *fixture, const void *arg) {
        (void) fixture;
        return *(const bool *) arg;
}

/* ---- files ----------------------------------------------------------------- */

void th_tmpdir(char *dir, size_t len, const char *name) {
        snprintf(dir, len, "/tmp/pm-%s-XXXXXX", name);
        assert_non_null(mkdtemp(dir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

void th_rmtree(const char *dir) {
        if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
}

char *th_slurp(const char *path, size_t *len) {
        FILE *fp = fopen(path, "re");
        char *buf = NULL;
        size_t n = 0, cap = 0;
        int c;

        if (!fp)
                return NULL;
        while ((c = fgetc(fp)) != EOF) {
                if (n + 2 > cap) {
                        cap = cap ? cap * 2 : 256;
                        buf = realloc(buf, cap);
                        assert_non_null(buf);
                }
                buf[n++] = (char) c;
        }
        fclose(fp);
        if (!buf)
                buf = malloc(1);
        assert_non_null(buf);
        buf[n] = '\0';
        if (len)
                *len = n;
        return buf;
}

void th_write_file(const char *path, const char *text) {
        FILE *fp = fopen(path, "w");

        assert_non_null(fp);
        fputs(text, fp);
        assert_int_equal(fclose(fp), 0);
}

bool th_file_exists(const char *path) {
        struct stat st;

        return stat(path, &st) == 0;
}

/* ---- events ---------------------------------------------------------------- */

static const char *string_field(const ps_event *ev, const char *key) {
        for (size_t i = 0; i < ev->n_fields; i++)
                if (ev->fields[i].type == PS_FIELD_TYPE_STRING && strcmp(ev->fields[i].key, key) == 0)
                        return ev->fields[i].str;
        return NULL;
}

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void events_keep(th_events *e, const ps_event *ev) {
        th_event *kept;

        if (e->n == e->cap) {
                e->cap = e->cap ? e->cap * 2 : 64;
                e->list = realloc(e->list, e->cap * sizeof(*e->list));
                assert_non_null(e->list);
        }
        kept = &e->list[e->n++];
        kept->message = strdup(ev->message);
        kept->file = dup_or_null(string_field(ev, "file"));
        kept->error = dup_or_null(string_field(ev, "error"));
        if (getenv("TEST_VERBOSE")) {
                fprintf(stderr, "event: %s", ev->message);
                for (size_t i = 0; i < ev->n_fields; i++)
                        if (ev->fields[i].type == PS_FIELD_TYPE_STRING && ev->fields[i].str)
                                fprintf(stderr, " %s=%s", ev->fields[i].key, ev->fields[i].str);
                fprintf(stderr, "\n");
        }
}

static void events_clear(th_events *e) {
        for (size_t i = 0; i < e->n; i++) {
                free(e->list[i].message);
                free(e->list[i].file);
                free(e->list[i].error);
        }
        free(e->list);
        *e = (th_events) { 0 };
}

size_t th_events_seen(const th_events *e, const char *prefix) {
        size_t n = 0;

        for (size_t i = 0; i < e->n; i++)
                if (strncmp(e->list[i].message, prefix, strlen(prefix)) == 0)
                        n++;
        return n;
}

const th_event *th_events_find(const th_events *e, const char *message) {
        for (size_t i = 0; i < e->n; i++)
                if (strcmp(e->list[i].message, message) == 0)
                        return &e->list[i];
        return NULL;
}

/* ---- a registry on its own loop ------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        ((th_node *) userdata)->ticks++;
}

static void on_event(const ps_event *ev, void *userdata) {
        th_node *n = userdata;

        events_keep(&n->events, ev);
        if (n->also.fn)
                n->also.fn(ev, n->also.userdata);
}

void th_node_init(th_node *n, const th_node_options *o) {
        struct timeval tv = { 0, 10000 };

        *n = (th_node) { 0 };
        th_tmpdir(n->dir, sizeof(n->dir), o->name);
        n->base = event_base_new();
        assert_non_null(n->base);
        n->tick = event_new(n->base, -1, EV_PERSIST, on_tick, n);
        assert_non_null(n->tick);
        event_add(n->tick, &tv);
        n->prober = ps_prober_new(n->base);
        assert_non_null(n->prober);
        n->ctx = (ps_context) {
                .base = n->base,
                .sink = { .fn = on_event, .userdata = n },
                .prober = n->prober,
                .runtime_dir = n->dir,
                .seed = o->seed,
                .preflight = o->preflight,
                .preflight_userdata = o->preflight_userdata,
        };
        n->reg = ps_registry_new(&n->ctx);
        assert_non_null(n->reg);
}

static void on_all_stopped(int rc, const char *text, void *userdata) {
        (void) rc;
        (void) text;
        *(bool *) userdata = true;
}

void th_node_stop_all(th_node *n) {
        n->all_stopped = false;
        ps_registry_stop_all(n->reg, on_all_stopped, &n->all_stopped);
        th_node_until(n, th_flag_set, &n->all_stopped, TH_WAIT_MS);
}

void th_node_clear(th_node *n) {
        ps_registry_free(n->reg);
        ps_prober_free(n->prober);
        event_free(n->tick);
        event_base_free(n->base);
        th_rmtree(n->dir);
        events_clear(&n->events);
}

int th_node_setup(void **state) {
        th_node *n = calloc(1, sizeof(*n));

        assert_non_null(n);
        th_node_init(n, &(th_node_options) { .name = program_invocation_short_name, .seed = 7 });
        *state = n;
        return 0;
}

int th_node_teardown(void **state) {
        th_node *n = *state;

        th_node_stop_all(n);
        th_node_clear(n);
        free(n);
        return 0;
}

bool th_node_until(th_node *n, th_cond *cond, const void *arg, int64_t wait_ms) {
        return th_loop_until(n->base, cond, n, arg, wait_ms);
}

size_t th_node_seen(const th_node *n, const char *prefix) {
        return th_events_seen(&n->events, prefix);
}

ps_replica *th_add(th_node *n, ps_engine_spec *spec, ps_policy *pol) {
        ps_replica *r = NULL;
        char err[256];

        if (ps_registry_add(n->reg, spec, pol, &r, err, sizeof(err)) != 0)
                fail_msg("add: %s", err);
        ps_engine_spec_free(spec);
        ps_policy_free(pol);
        return r;
}

static void on_done(int rc, const char *text, void *userdata) {
        th_node *n = userdata;

        n->done = true;
        n->done_ok = rc == 0;
        n->done_rc = rc;
        snprintf(n->done_text, sizeof(n->done_text), "%s", text);
}

int th_preload_start(th_node *n, ps_replica *r, char *err, size_t errlen) {
        n->done = false;
        return ps_replica_preload(r, on_done, n, err, errlen);
}

ps_replica *th_preload(th_node *n, ps_replica *r) {
        char err[256];

        if (th_preload_start(n, r, err, sizeof(err)) != 0)
                fail_msg("preload: %s", err);
        th_node_until(n, th_flag_set, &n->done, TH_WAIT_MS);
        assert_true(n->done);
        return r;
}

typedef struct replica_state {
        const char *pool_id, *replica_id, *state;
} replica_state;

static bool in_state(void *fixture, const void *arg) {
        th_node *n = fixture;
        const replica_state *want = arg;
        ps_replica *r = ps_registry_find(n->reg, want->pool_id, want->replica_id);

        return r && strcmp(ps_replica_state(r), want->state) == 0;
}

void th_wait_state(th_node *n, const char *pool_id, const char *replica_id, const char *state) {
        replica_state want = { pool_id, replica_id, state };
        ps_replica *r;

        th_node_until(n, in_state, &want, TH_WAIT_MS);
        r = ps_registry_find(n->reg, pool_id, replica_id);
        assert_non_null(r);
        if (strcmp(ps_replica_state(r), state) != 0)
                fail_msg("pool %s: state %s, expected %s", pool_id, ps_replica_state(r), state);
}

/* ---- the fake engine -------------------------------------------------------- */

const char *th_fake_engine(void) {
        const char *p = getenv("FAKE_ENGINE");

        return p ? p : "tests/helpers/fake-engine";
}

uint16_t th_free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        close(fd);
        return ntohs(a.sin_port);
}

ps_engine_spec *th_fake_spec_va(const char *pool_id, const char *replica_id, uint16_t port,
                                uint32_t slots, const char *first, va_list ap) {
        ps_engine_spec *s = ps_engine_spec_new();
        const char *args[32];
        size_t n = 0;
        char port_text[16];

        assert_non_null(s);
        s->port = port ? port : th_free_port();
        snprintf(port_text, sizeof(port_text), "%u", (unsigned) s->port);
        args[n++] = "--port";
        args[n++] = port_text;
        for (const char *a = first; a && n < 30; a = va_arg(ap, const char *))
                args[n++] = a;
        s->binary_path = realpath(th_fake_engine(), NULL);
        assert_non_null(s->binary_path);
        s->flags = calloc(n, sizeof(char *));
        assert_non_null(s->flags);
        for (size_t i = 0; i < n; i++)
                s->flags[i] = strdup(args[i]);
        s->n_flags = n;
        s->host = strdup("127.0.0.1");
        s->pool_id = strdup(pool_id);
        s->replica_id = strdup(replica_id);
        s->engine = strdup("llamacpp");
        s->engine_version = strdup("b6000");
        s->model_id = strdup("tiny");
        s->device_mask = strdup("0");
        s->cuda_visible_devices = strdup("0");
        s->slots = slots;
        return s;
}

ps_engine_spec *th_fake_spec(const char *pool_id, const char *replica_id, uint16_t port,
                             uint32_t slots, const char *first, ...) {
        ps_engine_spec *s;
        va_list ap;

        va_start(ap, first);
        s = th_fake_spec_va(pool_id, replica_id, port, slots, first, ap);
        va_end(ap);
        return s;
}

void th_policy_apply(ps_policy *p, const char *json) {
        json_error_t jerr;
        json_t *doc;
        char err[256];

        if (!json)
                return;
        doc = json_loads(json, 0, &jerr);
        if (!doc)
                fail_msg("policy %s: %s", json, jerr.text);
        if (ps_policy_apply_json(p, doc, "test", err, sizeof(err)) != 0)
                fail_msg("policy: %s", err);
        json_decref(doc);
}

ps_policy *th_policy(const char *json) {
        ps_policy *p = ps_policy_new();

        assert_non_null(p);
        th_policy_apply(p, "{\"health\": {\"interval_ms\": 50, \"timeout_ms\": 200,"
                           " \"startup_timeout_ms\": 5000},"
                           " \"backoff\": {\"initial_ms\": 50, \"max_ms\": 400, \"jitter\": 0},"
                           " \"reload\": {\"retire_grace_ms\": 50},"
                           " \"stop_grace_ms\": 500}");
        th_policy_apply(p, json);
        return p;
}
