/* SPDX-License-Identifier: MIT */
/*
 * Engine metrics end to end: fake engines serving llama-server's /metrics
 * (--metrics) are scraped on the loop, cached, relabelled and merged; the
 * performance hints reach a pool snapshot; an engine that dies has its
 * metrics go stale and vanish. Waits are on the event loop with generous
 * bounds; nothing sleeps for a fixed time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "pool-services/engine-metrics.h"
#include "pool-services/policy.h"
#include "pool-services/probe.h"
#include "pool-services/registry.h"

#define WAIT_MS 15000

typedef struct fx {
        struct event_base *base;
        struct event *tick;
        ps_prober *prober;
        ps_registry *reg;
        ps_context ctx;
        char dir[64];
        /* what the sink saw */
        char messages[512][64];
        size_t n_messages;
        /* preload answer */
        bool done;
        bool done_ok;
        char done_text[512];
} fx;

static const char *fake_engine(void) {
        const char *p = getenv("FAKE_ENGINE");

        return p ? p : "tests/helpers/fake-engine";
}

static void on_event(const ps_event *ev, void *userdata) {
        fx *f = userdata;

        if (f->n_messages < sizeof(f->messages) / sizeof(f->messages[0]))
                snprintf(f->messages[f->n_messages++], sizeof(f->messages[0]), "%s", ev->message);
        if (getenv("TEST_VERBOSE")) {
                fprintf(stderr, "event: %s", ev->message);
                for (size_t i = 0; i < ev->n_fields; i++)
                        if (ev->fields[i].type == PS_FIELD_TYPE_STRING && ev->fields[i].str)
                                fprintf(stderr, " %s=%s", ev->fields[i].key, ev->fields[i].str);
                fprintf(stderr, "\n");
        }
}

static __attribute__((unused)) size_t seen(const fx *f, const char *prefix) {
        size_t n = 0;

        for (size_t i = 0; i < f->n_messages; i++)
                if (strncmp(f->messages[i], prefix, strlen(prefix)) == 0)
                        n++;
        return n;
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        (void) userdata;
}

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));
        struct timeval tv = { 0, 10000 };

        snprintf(f->dir, sizeof(f->dir), "/tmp/pm-engine-metrics-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->base = event_base_new();
        f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
        event_add(f->tick, &tv);
        f->prober = ps_prober_new(f->base);
        f->ctx = (ps_context) {
                .base = f->base,
                .sink = { .fn = on_event, .userdata = f },
                .prober = f->prober,
                .runtime_dir = f->dir,
                .seed = 7,
        };
        f->reg = ps_registry_new(&f->ctx);
        assert_non_null(f->reg);
        *state = f;
        return 0;
}

static bool all_stopped;

static void on_all_stopped(bool ok, const char *text, void *userdata) {
        (void) ok;
        (void) text;
        (void) userdata;
        all_stopped = true;
}

static void run_until(fx *f, bool (*cond)(fx *f, void *arg), void *arg, int64_t ms);

static bool flag_set(fx *f, void *arg) {
        (void) f;
        return *(bool *) arg;
}

static int teardown(void **state) {
        fx *f = *state;
        char cmd[PATH_MAX + 16];

        all_stopped = false;
        ps_registry_stop_all(f->reg, on_all_stopped, NULL);
        run_until(f, flag_set, &all_stopped, WAIT_MS);
        ps_registry_free(f->reg);
        ps_prober_free(f->prober);
        event_free(f->tick);
        event_base_free(f->base);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", f->dir);
        free(f);
        return 0;
}

static int64_t mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_until(fx *f, bool (*cond)(fx *f, void *arg), void *arg, int64_t ms) {
        int64_t deadline = mono_ms() + ms;

        while (!cond(f, arg) && mono_ms() < deadline)
                event_base_loop(f->base, EVLOOP_ONCE);
}

static uint16_t free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        close(fd);
        return ntohs(a.sin_port);
}

/* A spec running the fake engine with extra arguments (NULL-terminated). */
static ps_engine_spec *fake_spec(const char *pool_id, const char *replica_id, const char *first, ...) {
        ps_engine_spec *s = ps_engine_spec_new();
        const char *args[32];
        size_t n = 0;
        char port[16];
        va_list ap;

        s->port = free_port();
        snprintf(port, sizeof(port), "%u", (unsigned) s->port);
        args[n++] = "--port";
        args[n++] = port;
        va_start(ap, first);
        for (const char *a = first; a && n < 30; a = va_arg(ap, const char *))
                args[n++] = a;
        va_end(ap);
        s->binary_path = realpath(fake_engine(), NULL);
        assert_non_null(s->binary_path);
        s->flags = calloc(n, sizeof(char *));
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
        s->slots = 2;
        return s;
}

/* A policy with short timings, changed further by `json`. */
static ps_policy *fast_policy(const char *json) {
        ps_policy *p = ps_policy_new();
        json_error_t jerr;
        json_t *base = json_loads("{\"health\": {\"interval_ms\": 50, \"timeout_ms\": 200,"
                                  " \"startup_timeout_ms\": 5000},"
                                  " \"backoff\": {\"initial_ms\": 50, \"max_ms\": 400, \"jitter\": 0},"
                                  " \"stop_grace_ms\": 500}", 0, &jerr);
        char err[256];

        assert_int_equal(ps_policy_apply_json(p, base, "test", err, sizeof(err)), 0);
        json_decref(base);
        if (json) {
                json_t *extra = json_loads(json, 0, &jerr);

                assert_non_null(extra);
                if (ps_policy_apply_json(p, extra, "test", err, sizeof(err)) != 0)
                        fail_msg("policy: %s", err);
                json_decref(extra);
        }
        return p;
}

static void on_done(bool ok, const char *text, void *userdata) {
        fx *f = userdata;

        f->done = true;
        f->done_ok = ok;
        snprintf(f->done_text, sizeof(f->done_text), "%s", text);
}

static bool preload_answered(fx *f, void *arg) {
        (void) arg;
        return f->done;
}



static ps_replica *add(fx *f, ps_engine_spec *spec, ps_policy *pol) {
        ps_replica *r = NULL;
        char err[256];

        if (ps_registry_add(f->reg, spec, pol, &r, err, sizeof(err)) != 0)
                fail_msg("add: %s", err);
        ps_engine_spec_free(spec);
        ps_policy_free(pol);
        return r;
}

static ps_replica *preload(fx *f, ps_replica *r) {
        char err[256];

        f->done = false;
        if (ps_replica_preload(r, on_done, f, err, sizeof(err)) != 0)
                fail_msg("preload: %s", err);
        run_until(f, preload_answered, NULL, WAIT_MS);
        assert_true(f->done);
        return r;
}


/* ---- engine metrics ------------------------------------------------------ */

#define INTERVAL_MS 200
#define STALE_AFTER 3

static ps_engine_metrics *metrics_new(fx *f) {
        ps_engine_metrics_options o = {
                .interval_ms = INTERVAL_MS,
                .timeout_ms = 150,
                .stale_after = STALE_AFTER,
        };
        ps_engine_metrics *em = ps_engine_metrics_new(&f->ctx, f->reg, &o);

        assert_non_null(em);
        return em;
}

static char *render(const ps_engine_metrics *em) {
        struct evbuffer *b = evbuffer_new();
        size_t len;
        char *text;

        assert_non_null(b);
        assert_int_equal(ps_engine_metrics_render(em, b), 0);
        len = evbuffer_get_length(b);
        text = malloc(len + 1);
        assert_non_null(text);
        evbuffer_remove(b, text, len);
        text[len] = '\0';
        evbuffer_free(b);
        return text;
}

static size_t count_of(const char *text, const char *part) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, part)); p++)
                n++;
        return n;
}

/* The value of one sample line starting with `series ` in a render. */
static bool value_of(const char *text, const char *series, double *v) {
        size_t n = strlen(series);

        for (const char *p = text; (p = strstr(p, series)); p++)
                if ((p == text || p[-1] == '\n') && p[n] == ' ') {
                        *v = strtod(p + n + 1, NULL);
                        return true;
                }
        return false;
}

typedef struct want_cached {
        ps_engine_metrics *em;
        size_t n;
} want_cached;

static bool cached_is(fx *f, void *arg) {
        want_cached *w = arg;

        (void) f;
        return ps_engine_metrics_cached(w->em) == w->n;
}

static void wait_cached(fx *f, ps_engine_metrics *em, size_t n) {
        want_cached w = { em, n };

        run_until(f, cached_is, &w, WAIT_MS);
        if (ps_engine_metrics_cached(em) != n)
                fail_msg("%zu replicas with cached metrics, expected %zu",
                         ps_engine_metrics_cached(em), n);
}

typedef struct want_perf {
        ps_engine_metrics *em;
        const char *pool_id, *replica_id;
} want_perf;

static bool has_perf(fx *f, void *arg) {
        want_perf *w = arg;
        double tps = -1;

        (void) f;
        return ps_engine_metrics_perf(w->em, w->pool_id, w->replica_id, &tps, NULL) && tps >= 0;
}

typedef struct want_growth {
        ps_engine_metrics *em;
        const char *series;
        double from;
} want_growth;

static bool grew(fx *f, void *arg) {
        want_growth *w = arg;
        char *text = render(w->em);
        double v = -1;
        bool ok = value_of(text, w->series, &v) && v > w->from;

        (void) f;
        free(text);
        return ok;
}

/* pool "llama": two replicas with --metrics, scraped; pool "plain": an
 * engine with --metrics whose pool does not enable scraping; pool
 * "nometrics": scraping enabled, but its engine answers 501 like a
 * llama-server started without --metrics. */
static void start_pools(fx *f) {
        /* no restart within the test: a dead engine stays dead */
        const char *slow = "{\"backoff\": {\"initial_ms\": 60000, \"max_ms\": 60000}}";

        preload(f, add(f, fake_spec("llama", "r0", "--metrics", NULL), fast_policy(slow)));
        assert_true(f->done_ok);
        preload(f, add(f, fake_spec("llama", "r1", "--metrics", NULL), fast_policy(slow)));
        assert_true(f->done_ok);
        preload(f, add(f, fake_spec("plain", "r0", "--metrics", NULL), fast_policy(slow)));
        assert_true(f->done_ok);
        preload(f, add(f, fake_spec("nometrics", "r0", NULL), fast_policy(slow)));
        assert_true(f->done_ok);
}

static void test_scrape_cache_render(void **state) {
        fx *f = *state;
        ps_engine_metrics *em = metrics_new(f);
        want_perf wp = { em, "llama", "r0" };
        want_growth wg = { em, "llamacpp_tokens_predicted_total{pool_id=\"llama\",replica_id=\"r1\"}", 0 };
        json_t *pool, *rep;
        double tps = 0, ttft = 0;
        char *text;

        start_pools(f);
        assert_int_equal(ps_engine_metrics_set_pool(em, "llama", true, NULL), 0);
        assert_int_equal(ps_engine_metrics_set_pool(em, "nometrics", true, "/metrics"), 0);
        assert_int_equal(ps_engine_metrics_set_pool(em, "plain", false, NULL), 0);
        assert_int_equal(ps_engine_metrics_set_pool(em, "x", true, "metrics"), -EINVAL);
        /* nothing is fetched before start, and a render is empty */
        text = render(em);
        assert_string_equal(text, "");
        free(text);
        assert_int_equal(ps_engine_metrics_start(em), 0);
        wait_cached(f, em, 2);

        text = render(em);
        /* both replicas of "llama", relabelled, under one HELP and TYPE */
        assert_true(value_of(text, "llamacpp_prompt_tokens_total{pool_id=\"llama\",replica_id=\"r0\"}", &tps));
        assert_true(value_of(text, "llamacpp_prompt_tokens_total{pool_id=\"llama\",replica_id=\"r1\"}", &tps));
        assert_int_equal(count_of(text, "# TYPE llamacpp_prompt_tokens_total counter\n"), 1);
        assert_int_equal(count_of(text, "# HELP "), 12);
        assert_int_equal(count_of(text, "# TYPE "), 12);
        assert_int_equal(count_of(text, "llamacpp:"), 0);
        assert_int_equal(count_of(text, "llamacpp_n_busy_slots_per_decode_total{"), 2);
        /* not enabled, and 501: nothing from them */
        assert_int_equal(count_of(text, "pool_id=\"plain\""), 0);
        assert_int_equal(count_of(text, "pool_id=\"nometrics\""), 0);
        assert_true(value_of(text, wg.series, &wg.from));
        free(text);

        /* the cache follows the engine: its counters grow between scrapes */
        run_until(f, grew, &wg, WAIT_MS);
        assert_true(grew(f, &wg));

        /* hints: the fake engine generates at 80 tokens/s; no first-token data */
        run_until(f, has_perf, &wp, WAIT_MS);
        assert_true(ps_engine_metrics_perf(em, "llama", "r0", &tps, NULL));
        if (fabs(tps - 80) > 0.01)
                fail_msg("perf_tokens_per_s %f, expected 80", tps);
        assert_false(ps_engine_metrics_perf(em, "llama", "r0", NULL, &ttft));
        assert_false(ps_engine_metrics_perf(em, "plain", "r0", &tps, &ttft));
        wp.replica_id = "r1";
        run_until(f, has_perf, &wp, WAIT_MS);

        pool = ps_registry_pool_snapshot(f->reg, "llama");
        assert_non_null(pool);
        assert_int_equal(ps_engine_metrics_annotate(em, pool), 0);
        rep = json_array_get(json_object_get(pool, "replicas"), 0);
        assert_true(fabs(json_real_value(json_object_get(rep, "perf_tokens_per_s")) - 80) < 0.01);
        assert_null(json_object_get(rep, "first_token_ms"));
        assert_true(fabs(json_real_value(json_object_get(pool, "perf_tokens_per_s")) - 160) < 0.01);
        json_decref(pool);
        pool = ps_registry_pool_snapshot(f->reg, "plain");
        assert_int_equal(ps_engine_metrics_annotate(em, pool), 0);
        assert_null(json_object_get(pool, "perf_tokens_per_s"));
        assert_null(json_object_get(json_array_get(json_object_get(pool, "replicas"), 0),
                                    "perf_tokens_per_s"));
        json_decref(pool);
        pool = ps_registry_snapshot(f->reg);
        assert_int_equal(ps_engine_metrics_annotate(em, pool), 0);
        json_decref(pool);

        /* disabling a pool drops its metrics at once */
        assert_int_equal(ps_engine_metrics_set_pool(em, "llama", false, NULL), 0);
        assert_int_equal(ps_engine_metrics_cached(em), 0);
        text = render(em);
        assert_string_equal(text, "");
        free(text);
        ps_engine_metrics_free(em);
}

static void test_dead_engine_goes_stale(void **state) {
        fx *f = *state;
        ps_engine_metrics *em = metrics_new(f);
        ps_replica *r0;
        double tps;
        char *text;
        int pid;

        start_pools(f);
        assert_int_equal(ps_engine_metrics_set_pool(em, "llama", true, "/metrics"), 0);
        assert_int_equal(ps_engine_metrics_start(em), 0);
        wait_cached(f, em, 2);

        r0 = ps_registry_find(f->reg, "llama", "r0");
        pid = ps_replica_pid(r0);
        assert_true(pid > 0);
        assert_int_equal(kill(pid, SIGKILL), 0);

        /* its last good metrics stay for a few intervals, then vanish */
        wait_cached(f, em, 1);
        assert_false(ps_replica_ready(r0));
        text = render(em);
        assert_int_equal(count_of(text, "replica_id=\"r0\""), 0);
        assert_int_equal(count_of(text, "llamacpp_prompt_tokens_total{pool_id=\"llama\",replica_id=\"r1\"}"), 1);
        assert_int_equal(count_of(text, "# TYPE llamacpp_prompt_tokens_total counter\n"), 1);
        free(text);
        assert_false(ps_engine_metrics_perf(em, "llama", "r0", &tps, NULL));

        /* the other engine stopped by the operator: gone as well */
        assert_int_equal(ps_replica_stop(ps_registry_find(f->reg, "llama", "r1"), NULL, 0), 0);
        wait_cached(f, em, 0);
        text = render(em);
        assert_string_equal(text, "");
        free(text);
        ps_engine_metrics_free(em);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_scrape_cache_render, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dead_engine_goes_stale, setup, teardown),
        };

        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
