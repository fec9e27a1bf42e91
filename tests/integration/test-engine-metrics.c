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
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "pool-services/observe/status-json.h"
#include "pool-services/observe/engine-metrics.h"
#include "harness.h"

typedef th_node fx;      /* made by th_node_setup() */

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

static bool cached_is(void *fixture, const void *arg) {
        const want_cached *w = arg;

        (void) fixture;
        return ps_engine_metrics_cached(w->em) == w->n;
}

static void wait_cached(fx *f, ps_engine_metrics *em, size_t n) {
        want_cached w = { em, n };

        th_node_until(f, cached_is, &w, TH_WAIT_MS);
        if (ps_engine_metrics_cached(em) != n)
                fail_msg("%zu replicas with cached metrics, expected %zu",
                         ps_engine_metrics_cached(em), n);
}

typedef struct want_perf {
        ps_engine_metrics *em;
        const char *pool_id, *replica_id;
} want_perf;

static bool has_perf(void *fixture, const void *arg) {
        const want_perf *w = arg;
        double tps = -1;

        (void) fixture;
        return ps_engine_metrics_perf(w->em, w->pool_id, w->replica_id, &tps, NULL) && tps >= 0;
}

typedef struct want_growth {
        ps_engine_metrics *em;
        const char *series;
        double from;
} want_growth;

static bool grew(void *fixture, const void *arg) {
        const want_growth *w = arg;
        char *text = render(w->em);
        double v = -1;
        bool ok = value_of(text, w->series, &v) && v > w->from;

        (void) fixture;
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

        th_preload(f, th_add(f, th_fake_spec("llama", "r0", 0, 2, "--metrics", NULL), th_policy(slow)));
        assert_true(f->done_ok);
        th_preload(f, th_add(f, th_fake_spec("llama", "r1", 0, 2, "--metrics", NULL), th_policy(slow)));
        assert_true(f->done_ok);
        th_preload(f, th_add(f, th_fake_spec("plain", "r0", 0, 2, "--metrics", NULL), th_policy(slow)));
        assert_true(f->done_ok);
        th_preload(f, th_add(f, th_fake_spec("nometrics", "r0", 0, 2, NULL), th_policy(slow)));
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
        th_node_until(f, grew, &wg, TH_WAIT_MS);
        assert_true(grew(f, &wg));

        /* hints: the fake engine generates at 80 tokens/s; no first-token data */
        th_node_until(f, has_perf, &wp, TH_WAIT_MS);
        assert_true(ps_engine_metrics_perf(em, "llama", "r0", &tps, NULL));
        if (fabs(tps - 80) > 0.01)
                fail_msg("perf_tokens_per_s %f, expected 80", tps);
        assert_false(ps_engine_metrics_perf(em, "llama", "r0", NULL, &ttft));
        assert_false(ps_engine_metrics_perf(em, "plain", "r0", &tps, &ttft));
        wp.replica_id = "r1";
        th_node_until(f, has_perf, &wp, TH_WAIT_MS);

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
                cmocka_unit_test_setup_teardown(test_scrape_cache_render, th_node_setup, th_node_teardown),
                cmocka_unit_test_setup_teardown(test_dead_engine_goes_stale, th_node_setup, th_node_teardown),
        };

        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
