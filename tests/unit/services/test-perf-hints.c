/* SPDX-License-Identifier: MIT */
/*
 * Performance hints on their own: which counters feed them, when an
 * interval gives no sample, and the smoothing. Scrapes are made from small
 * texts; the clock is whatever the test says.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pool-services/observe/engine-metrics.h"

/* ---- helpers ------------------------------------------------------------ */

/* Feeds h the scrape of text (printf-style) taken at now_ms. */
__attribute__((format(printf, 3, 4)))
static void feed(ps_perf_hints *h, int64_t now_ms, const char *fmt, ...) {
        ps_engine_scrape *s = NULL;
        char text[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        assert_int_equal(ps_engine_metrics_relabel(text, strlen(text), "p", "r0", 0, &s, NULL), 0);
        ps_perf_hints_observe(h, s, now_ms);
        ps_engine_scrape_free(s);
}

#define LLAMA "# TYPE llamacpp:tokens_predicted_total counter\n"                  \
              "llamacpp:tokens_predicted_total %g\n"                              \
              "# TYPE llamacpp:tokens_predicted_seconds_total counter\n"          \
              "llamacpp:tokens_predicted_seconds_total %g\n"
#define VLLM_TOKENS "# TYPE vllm:generation_tokens_total counter\n"               \
                    "vllm:generation_tokens_total{model_name=\"m\"} %g\n"
#define VLLM_TTFT "# TYPE vllm:time_to_first_token_seconds histogram\n"           \
                  "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\"} %g\n"     \
                  "vllm:time_to_first_token_seconds_sum %g\n"                     \
                  "vllm:time_to_first_token_seconds_count %g\n"
#define GAUGE "llamacpp:predicted_tokens_seconds %g\n"

static void assert_near(double got, double want) {
        if (fabs(got - want) > 1e-6)
                fail_msg("%f, want %f", got, want);
}

static void assert_tps(const ps_perf_hints *h, double want) {
        double v = -1;

        assert_true(ps_perf_hints_tokens_per_s(h, &v));
        assert_near(v, want);
}

static void assert_ttft(const ps_perf_hints *h, double want) {
        double v = -1;

        assert_true(ps_perf_hints_first_token_ms(h, &v));
        assert_near(v, want);
}

static void assert_no_tps(const ps_perf_hints *h) {
        double v;

        assert_false(ps_perf_hints_tokens_per_s(h, &v));
}

/* ---- tests ------------------------------------------------------------------ */

static void test_alpha(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 0.5);
        assert_true(h.alpha == 0.5);
        ps_perf_hints_init(&h, 1);
        assert_true(h.alpha == 1);
        ps_perf_hints_init(&h, 0);
        assert_true(h.alpha == PS_ENGINE_METRICS_ALPHA);
        ps_perf_hints_init(&h, -0.5);
        assert_true(h.alpha == PS_ENGINE_METRICS_ALPHA);
        ps_perf_hints_init(&h, NAN);
        assert_true(h.alpha == PS_ENGINE_METRICS_ALPHA);
        assert_no_tps(&h);
        assert_false(ps_perf_hints_first_token_ms(NULL, &(double) { 0 }));
}

/* alpha 1: every sample replaces the last. */
static void test_alpha_one(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 1);
        feed(&h, 0, LLAMA, 0.0, 0.0);
        feed(&h, 5000, LLAMA, 100.0, 2.0);
        assert_tps(&h, 50);
        feed(&h, 10000, LLAMA, 400.0, 3.0);
        assert_tps(&h, 300);
}

/* llama-server: tokens over generation seconds; both must grow. */
static void test_llama_needs_both(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 0.3);
        feed(&h, 0, LLAMA, 100.0, 1.0);
        feed(&h, 5000, LLAMA, 200.0, 1.0);              /* seconds stood still */
        assert_no_tps(&h);
        feed(&h, 10000, LLAMA, 200.0, 2.0);             /* tokens stood still */
        assert_no_tps(&h);
        feed(&h, 15000, LLAMA, 300.0, 3.0);
        assert_tps(&h, 100);
}

/* The clock must move on between scrapes. */
static void test_same_time(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 0.3);
        feed(&h, 5000, VLLM_TOKENS, 1000.0);
        feed(&h, 5000, VLLM_TOKENS, 2000.0);
        assert_no_tps(&h);
        feed(&h, 4000, VLLM_TOKENS, 3000.0);
        assert_no_tps(&h);
        feed(&h, 6000, VLLM_TOKENS, 4000.0);
        assert_tps(&h, 500);
}

/* vLLM restarted: its counters went back, which is a new baseline. */
static void test_vllm_restart(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 0.5);
        feed(&h, 0, VLLM_TOKENS VLLM_TTFT, 1000.0, 10.0, 1.0, 10.0);
        feed(&h, 1000, VLLM_TOKENS VLLM_TTFT, 1200.0, 20.0, 2.0, 20.0);
        assert_tps(&h, 200);
        assert_ttft(&h, 100);
        /* only the first-token count went back: both hints skip this one */
        feed(&h, 2000, VLLM_TOKENS VLLM_TTFT, 1500.0, 1.0, 0.1, 1.0);
        assert_tps(&h, 200);
        assert_ttft(&h, 100);
        feed(&h, 3000, VLLM_TOKENS VLLM_TTFT, 1900.0, 3.0, 0.2, 3.0);
        assert_tps(&h, 0.5 * 400 + 0.5 * 200);
        assert_ttft(&h, 0.5 * 50 + 0.5 * 100);
}

/* Which source wins when an engine exposes more than one. */
static void test_sources(void **state) {
        ps_perf_hints h;

        (void) state;
        /* llama-server's counters over vLLM's and over the gauge */
        ps_perf_hints_init(&h, 1);
        feed(&h, 0, LLAMA VLLM_TOKENS GAUGE, 0.0, 0.0, 0.0, 7.0);
        feed(&h, 1000, LLAMA VLLM_TOKENS GAUGE, 100.0, 4.0, 9000.0, 7.0);
        assert_tps(&h, 25);
        /* vLLM's counter over the gauge */
        ps_perf_hints_init(&h, 1);
        feed(&h, 0, VLLM_TOKENS GAUGE, 0.0, 7.0);
        assert_no_tps(&h);
        feed(&h, 2000, VLLM_TOKENS GAUGE, 100.0, 7.0);
        assert_tps(&h, 50);
        /* the gauge alone counts from the first scrape, unless 0 */
        ps_perf_hints_init(&h, 1);
        feed(&h, 0, GAUGE, 7.0);
        assert_tps(&h, 7);
        feed(&h, 1000, GAUGE, -3.0);
        assert_tps(&h, 7);
}

/* The first token: sum over count, only when the count grew. */
static void test_first_token(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 0.3);
        feed(&h, 0, VLLM_TTFT, 5.0, 0.5, 5.0);
        feed(&h, 5000, VLLM_TTFT, 5.0, 0.5, 5.0);
        assert_false(ps_perf_hints_first_token_ms(&h, &(double) { 0 }));
        feed(&h, 10000, VLLM_TTFT, 9.0, 0.7, 9.0);
        assert_ttft(&h, 50);
        /* the histogram without its count gives nothing */
        feed(&h, 15000, "# TYPE vllm:time_to_first_token_seconds histogram\n"
                        "vllm:time_to_first_token_seconds_sum %g\n", 5.0);
        feed(&h, 20000, VLLM_TTFT, 20.0, 6.0, 20.0);
        assert_ttft(&h, 50);
        /* no tokens/s from a first-token histogram */
        assert_no_tps(&h);
}

/* NaN and infinite counters are not there at all. */
static void test_not_finite(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 1);
        feed(&h, 0, VLLM_TOKENS, 100.0);
        feed(&h, 1000, "vllm:generation_tokens_total +Inf\n");
        assert_no_tps(&h);
        /* the baseline was lost with it */
        feed(&h, 2000, VLLM_TOKENS, 300.0);
        assert_no_tps(&h);
        feed(&h, 3000, VLLM_TOKENS, 400.0);
        assert_tps(&h, 100);
}

/* A fresh init forgets everything: the scraper does this for a new engine. */
static void test_reinit(void **state) {
        ps_perf_hints h;

        (void) state;
        ps_perf_hints_init(&h, 0.3);
        feed(&h, 0, VLLM_TOKENS, 100.0);
        feed(&h, 1000, VLLM_TOKENS, 600.0);
        assert_tps(&h, 500);
        ps_perf_hints_init(&h, 0.3);
        assert_no_tps(&h);
        feed(&h, 2000, VLLM_TOKENS, 700.0);
        assert_no_tps(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_alpha),
                cmocka_unit_test(test_alpha_one),
                cmocka_unit_test(test_llama_needs_both),
                cmocka_unit_test(test_same_time),
                cmocka_unit_test(test_vllm_restart),
                cmocka_unit_test(test_sources),
                cmocka_unit_test(test_first_token),
                cmocka_unit_test(test_not_finite),
                cmocka_unit_test(test_reinit),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
