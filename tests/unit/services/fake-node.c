/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "pool-services/observe/status-json.h"
#include "fake-node.h"

/* ---- the clock ---------------------------------------------------------------- */

static int64_t fake_wall(void *userdata) {
        return ((const fake_clock *) userdata)->wall_ms;
}

static int64_t fake_mono(void *userdata) {
        return ((const fake_clock *) userdata)->mono_ms;
}

void fake_clock_init(fake_clock *c) {
        *c = (fake_clock) {
                .clock = { .wall_ms = fake_wall, .mono_ms = fake_mono, .userdata = c },
                .wall_ms = FAKE_WALL_START_MS,
                .mono_ms = FAKE_MONO_START_MS,
        };
}

void fake_clock_advance(fake_clock *c, int64_t ms) {
        c->wall_ms += ms;
        c->mono_ms += ms;
}

/* ---- the node ------------------------------------------------------------------ */

static void on_event(const ps_event *ev, void *userdata) {
        fake_node *n = userdata;

        if (n->n_messages == n->cap_messages) {
                n->cap_messages = n->cap_messages ? n->cap_messages * 2 : 64;
                n->messages = realloc(n->messages, n->cap_messages * sizeof(*n->messages));
                assert_non_null(n->messages);
        }
        n->messages[n->n_messages] = strdup(ev->message);
        assert_non_null(n->messages[n->n_messages]);
        n->n_messages++;
        if (getenv("TEST_VERBOSE"))
                fprintf(stderr, "event: %s/%s %s\n", ev->pool_id ? ev->pool_id : "-",
                        ev->replica_id ? ev->replica_id : "-", ev->message);
}

void fake_node_init(fake_node *n, const char *name) {
        *n = (fake_node) { 0 };
        snprintf(n->dir, sizeof(n->dir), "/tmp/pm-%s-XXXXXX", name);
        assert_non_null(mkdtemp(n->dir));
        n->base = event_base_new();
        assert_non_null(n->base);
        fake_clock_init(&n->clock);
        n->prober = ps_prober_new(n->base);
        assert_non_null(n->prober);
        n->ctx = (ps_context) {
                .base = n->base,
                .clock = &n->clock.clock,
                .sink = { .fn = on_event, .userdata = n },
                .prober = n->prober,
                .runtime_dir = n->dir,
                .seed = 7,
        };
        fake_engines_install(n->base);
        n->reg = ps_registry_new(&n->ctx);
        assert_non_null(n->reg);
}

static void on_all_stopped(int rc, const char *text, void *userdata) {
        (void) rc;
        (void) text;
        *(bool *) userdata = true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

void fake_node_clear(fake_node *n) {
        bool stopped = false;

        ps_registry_stop_all(n->reg, on_all_stopped, &stopped);
        assert_true(fake_node_until(n, fake_flag_set, &stopped));
        n->reg = ps_registry_free(n->reg);
        n->prober = ps_prober_free(n->prober);
        fake_engines_uninstall();
        event_base_free(n->base);
        if (nftw(n->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
                fprintf(stderr, "could not remove %s\n", n->dir);
        for (size_t i = 0; i < n->n_messages; i++)
                free(n->messages[i]);
        free(n->messages);
}

int fake_node_setup(void **state) {
        fake_node *n = calloc(1, sizeof(*n));

        assert_non_null(n);
        fake_node_init(n, program_invocation_short_name);
        *state = n;
        return 0;
}

int fake_node_teardown(void **state) {
        fake_node *n = *state;

        fake_node_clear(n);
        free(n);
        return 0;
}

/* ---- the loop ------------------------------------------------------------------- */

static void on_deadline(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        *(bool *) userdata = true;
}

static bool loop(fake_node *n, fake_cond *cond, const void *arg, int64_t ms) {
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        bool expired = false;
        struct event *deadline = evtimer_new(n->base, on_deadline, &expired);

        assert_non_null(deadline);
        evtimer_add(deadline, &tv);
        while ((!cond || !cond(n, arg)) && !expired)
                event_base_loop(n->base, EVLOOP_ONCE);
        event_free(deadline);
        return cond ? cond(n, arg) : true;
}

bool fake_node_until(fake_node *n, fake_cond *cond, const void *arg) {
        return loop(n, cond, arg, FAKE_WAIT_MS);
}

void fake_node_run_for(fake_node *n, int64_t ms) {
        loop(n, NULL, NULL, ms);
}

bool fake_flag_set(fake_node *n, const void *arg) {
        (void) n;
        return *(const bool *) arg;
}

bool fake_spawned_at_least(fake_node *n, const void *arg) {
        (void) n;
        return fake_engines_spawned() >= *(const size_t *) arg;
}

bool fake_in_state(fake_node *n, const void *arg) {
        const fake_want_state *want = arg;

        (void) n;
        return strcmp(ps_replica_state(want->replica), want->state) == 0;
}

void fake_node_wait_state(fake_node *n, ps_replica *r, const char *state) {
        fake_want_state want = { r, state };

        if (!fake_node_until(n, fake_in_state, &want))
                fail_msg("replica %s: state %s, expected %s", ps_replica_id(r),
                         ps_replica_state(r), state);
}

fake_engine *fake_node_wait_spawns(fake_node *n, size_t count) {
        if (!fake_node_until(n, fake_spawned_at_least, &count))
                fail_msg("%zu engines spawned, expected %zu", fake_engines_spawned(), count);
        return fake_engines_at(count - 1);
}

size_t fake_node_seen(const fake_node *n, const char *message) {
        size_t k = 0;

        for (size_t i = 0; i < n->n_messages; i++)
                if (strcmp(n->messages[i], message) == 0)
                        k++;
        return k;
}

/* ---- specs, policies, replicas ------------------------------------------------- */

static bool port_free(uint16_t port, uint16_t *ret) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons(port) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        assert_true(fd >= 0);
        ok = bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 &&
             getsockname(fd, (struct sockaddr *) &a, &len) == 0;
        close(fd);
        if (ok && ret)
                *ret = ntohs(a.sin_port);
        return ok;
}

uint16_t fake_free_port(bool spare) {
        uint16_t port = 0;

        for (int tries = 0; tries < 64; tries++) {
                assert_true(port_free(0, &port));
                if (!spare || (port < 65535 && port_free((uint16_t) (port + 1), NULL)))
                        return port;
        }
        fail_msg("no free pair of loopback ports");
        return 0;
}

static char *dup_str(const char *s) {
        char *d = strdup(s);

        assert_non_null(d);
        return d;
}

ps_engine_spec *fake_spec(const char *pool_id, const char *replica_id, uint16_t port,
                          uint32_t slots) {
        static const char *const flags[] = {
                "--port", "{port}", "-m", "{model_path}", "--parallel", "{slots}",
        };
        const size_t n = sizeof(flags) / sizeof(flags[0]);
        ps_engine_spec *s = ps_engine_spec_new();

        assert_non_null(s);
        s->binary_path = dup_str("/opt/engines/llama-server");
        s->flags = calloc(n, sizeof(*s->flags));
        assert_non_null(s->flags);
        for (size_t i = 0; i < n; i++)
                s->flags[i] = dup_str(flags[i]);
        s->n_flags = n;
        s->host = dup_str("127.0.0.1");
        s->port = port ? port : fake_free_port(false);
        s->model_path = dup_str("/models/tiny.gguf");
        s->model_id = dup_str("tiny.gguf");
        s->engine = dup_str("llamacpp");
        s->engine_version = dup_str("b6000");
        s->pool_id = dup_str(pool_id);
        s->replica_id = dup_str(replica_id);
        s->device_mask = dup_str("0");
        s->cuda_visible_devices = dup_str("0");
        s->slots = slots;
        return s;
}

static void policy_apply(ps_policy *p, const char *text) {
        json_error_t jerr;
        json_t *doc = json_loads(text, 0, &jerr);
        char err[256];

        if (!doc)
                fail_msg("policy %s: %s", text, jerr.text);
        if (ps_policy_apply_json(p, doc, "test", err, sizeof(err)) != 0)
                fail_msg("policy: %s", err);
        json_decref(doc);
}

ps_policy *fake_policy(const char *json) {
        ps_policy *p = ps_policy_new();

        assert_non_null(p);
        policy_apply(p, "{\"health\": {\"interval_ms\": 20, \"timeout_ms\": 500,"
                        " \"startup_timeout_ms\": 5000},"
                        " \"backoff\": {\"initial_ms\": 20, \"max_ms\": 400, \"jitter\": 0},"
                        " \"stop_grace_ms\": 200}");
        if (json)
                policy_apply(p, json);
        return p;
}

ps_replica *fake_node_add(fake_node *n, ps_engine_spec *spec, ps_policy *pol) {
        ps_replica *r = NULL;
        char err[256];

        if (ps_registry_add(n->reg, spec, pol, &r, err, sizeof(err)) != 0)
                fail_msg("add: %s", err);
        ps_engine_spec_free(spec);
        ps_policy_free(pol);
        return r;
}

static void on_done(int rc, const char *text, void *userdata) {
        fake_node *n = userdata;

        n->done = true;
        n->done_rc = rc;
        snprintf(n->done_text, sizeof(n->done_text), "%s", text ? text : "");
}

int fake_node_preload_start(fake_node *n, ps_replica *r) {
        n->done = false;
        return ps_replica_preload(r, on_done, n, NULL, 0);
}

int fake_node_preload(fake_node *n, ps_replica *r) {
        assert_int_equal(fake_node_preload_start(n, r), 0);
        assert_true(fake_node_until(n, fake_flag_set, &n->done));
        return n->done_rc;
}

/* ---- snapshots ------------------------------------------------------------------ */

int64_t fake_snap_int(const ps_replica *r, const char *key) {
        json_t *s = ps_replica_snapshot(r);
        int64_t v;

        assert_non_null(s);
        v = (int64_t) json_integer_value(json_object_get(s, key));
        json_decref(s);
        return v;
}

const char *fake_snap_str(const ps_replica *r, const char *key) {
        static char buf[512];
        json_t *s = ps_replica_snapshot(r);
        const char *v;

        assert_non_null(s);
        v = json_string_value(json_object_get(s, key));
        if (v)
                snprintf(buf, sizeof(buf), "%s", v);
        json_decref(s);
        return v ? buf : NULL;
}
