/* SPDX-License-Identifier: MIT */
/*
 * Engine metrics: relabelling recorded llama-server and vLLM scrapes,
 * merging replicas into one exposition, and the performance hints over
 * recorded sequences. The recorded scrapes live in scrapes/ (SCRAPE_FIXTURES).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "scrape-fixture.h"
#include "pool-services/observe/engine-metrics.h"

/* ---- helpers ------------------------------------------------------------ */

static char *fixture(const char *name, size_t *len) {
        return scrape_fixture(name, len);
}

static ps_engine_scrape *relabel(const char *text, const char *pool, const char *replica,
                                 size_t cap, ps_relabel_stats *stats) {
        ps_engine_scrape *s = NULL;

        assert_int_equal(ps_engine_metrics_relabel(text, strlen(text), pool, replica, cap, &s,
                                                   stats), 0);
        assert_non_null(s);
        return s;
}

static ps_engine_scrape *relabel_fixture(const char *name, const char *pool,
                                         const char *replica, ps_relabel_stats *stats) {
        size_t len;
        char *text = fixture(name, &len);
        ps_engine_scrape *s = NULL;

        assert_int_equal(ps_engine_metrics_relabel(text, len, pool, replica, 0, &s, stats), 0);
        free(text);
        return s;
}


static char *render_one(const ps_engine_scrape *s) {
        return scrapes_render(&s, 1);
}

static void assert_has_line(const char *text, const char *line) {
        const char *p = text;
        size_t n = strlen(line);

        while ((p = strstr(p, line))) {
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return;
                p++;
        }
        fail_msg("line not found: %s\nin:\n%s", line, text);
}

static void assert_no_text(const char *text, const char *part) {
        const char *at = strstr(text, part);

        if (at) {
                fprintf(stderr, "unexpected \"%s\" at byte %td of:\n%s\n", part, at - text, text);
                fail();
        }
}

static size_t count_of(const char *text, const char *part) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, part)); p++)
                n++;
        return n;
}

/* ---- relabelling recorded scrapes ------------------------------------------ */

static void test_llama_server_scrape(void **state) {
        ps_relabel_stats st;
        ps_engine_scrape *s = relabel_fixture("llama-server.prom", "llama-7b", "r0", &st);
        char *text = render_one(s);
        double v;

        (void) state;
        assert_int_equal(st.families, 12);
        assert_int_equal(st.samples, 12);
        assert_int_equal(st.dropped_lines, 0);
        assert_int_equal(st.dropped_families, 0);

        assert_has_line(text, "# HELP llamacpp_prompt_tokens_total Number of prompt tokens processed.");
        assert_has_line(text, "# TYPE llamacpp_prompt_tokens_total counter");
        assert_has_line(text, "llamacpp_prompt_tokens_total{pool_id=\"llama-7b\",replica_id=\"r0\"} 1536");
        assert_has_line(text, "# TYPE llamacpp_predicted_tokens_seconds gauge");
        assert_has_line(text, "llamacpp_predicted_tokens_seconds{pool_id=\"llama-7b\",replica_id=\"r0\"} 80");
        /* a counter without _total gets it: promtool insists */
        assert_has_line(text, "# TYPE llamacpp_n_busy_slots_per_decode_total counter");
        assert_has_line(text, "llamacpp_n_busy_slots_per_decode_total{pool_id=\"llama-7b\",replica_id=\"r0\"} 1.4");
        assert_no_text(text, "llamacpp:");
        assert_int_equal(count_of(text, "# HELP "), 12);
        assert_int_equal(count_of(text, "# TYPE "), 12);
        assert_int_equal(ps_engine_scrape_bytes(s), strlen(text));

        assert_true(ps_engine_scrape_value(s, "llamacpp_tokens_predicted_total", &v));
        assert_true(v == 4096);
        assert_false(ps_engine_scrape_value(s, "llamacpp:tokens_predicted_total", &v));
        assert_false(ps_engine_scrape_value(s, "vllm_generation_tokens_total", &v));
        free(text);
        ps_engine_scrape_free(s);
}

static void test_vllm_scrape(void **state) {
        ps_relabel_stats st;
        ps_engine_scrape *s = relabel_fixture("vllm.prom", "vllm-8b", "r1", &st);
        char *text = render_one(s);
        double v;

        (void) state;
        assert_int_equal(st.families, 13);
        assert_int_equal(st.samples, 25);
        assert_int_equal(st.dropped_lines, 0);
        /* buckets keep le where the engine put it, ours go last */
        assert_has_line(text, "vllm_time_to_first_token_seconds_bucket{le=\"0.02\","
                        "model_name=\"meta-llama/Llama-3.1-8B-Instruct\",pool_id=\"vllm-8b\","
                        "replica_id=\"r1\"} 12.0");
        assert_has_line(text, "vllm_e2e_request_latency_seconds_bucket{"
                        "model_name=\"meta-llama/Llama-3.1-8B-Instruct\",le=\"+Inf\","
                        "pool_id=\"vllm-8b\",replica_id=\"r1\"} 240.0");
        assert_has_line(text, "vllm_time_to_first_token_seconds_sum{"
                        "model_name=\"meta-llama/Llama-3.1-8B-Instruct\",pool_id=\"vllm-8b\","
                        "replica_id=\"r1\"} 14.4");
        assert_has_line(text, "# TYPE vllm_time_to_first_token_seconds histogram");
        /* escaped label values pass through exactly */
        assert_has_line(text, "vllm_lora_requests_info{max_lora=\"1\",running_lora_adapters=\"\","
                        "waiting_lora_adapters=\"sql \\\"v2\\\"\\\\adapter\\nnext\","
                        "pool_id=\"vllm-8b\",replica_id=\"r1\"} 1.7637e+09");
        /* the blank line and the process families survive as they should */
        assert_has_line(text, "engine_process_resident_memory_bytes{pool_id=\"vllm-8b\",replica_id=\"r1\"} 5.337067520e+09");
        assert_has_line(text, "python_gc_objects_collected_total{generation=\"2\",pool_id=\"vllm-8b\",replica_id=\"r1\"} 311.0");
        assert_no_text(text, "\n\n");
        assert_no_text(text, "vllm:");

        assert_true(ps_engine_scrape_value(s, "vllm_generation_tokens_total", &v));
        assert_true(v == 121000);
        assert_true(ps_engine_scrape_value(s, "vllm_time_to_first_token_seconds_count", &v));
        assert_true(v == 240);
        assert_true(ps_engine_scrape_value(s, "vllm_time_to_first_token_seconds_sum", &v));
        assert_true(fabs(v - 14.4) < 1e-9);
        assert_true(ps_engine_scrape_value(s, "vllm_request_success_total", &v));
        assert_true(v == 240);  /* summed over finished_reason */
        assert_false(ps_engine_scrape_value(s, "vllm_time_to_first_token_seconds_bucket", &v));
        free(text);
        ps_engine_scrape_free(s);
}

/* Every rule of awkward.prom, line by line (see the fixture). */
static void test_awkward_scrape(void **state) {
        ps_relabel_stats st;
        ps_engine_scrape *s = relabel_fixture("awkward.prom", "p", "r0", &st);
        char *text = render_one(s);

        (void) state;
        /* kept: an engine label named like ours is renamed */
        assert_has_line(text, "engine_requests_total{exported_pool_id=\"theirs\",code=\"200\","
                        "pool_id=\"p\",replica_id=\"r0\"} 7");
        assert_has_line(text, "engine_requests_total{exported_pool_id=\"theirs\",code=\"500\","
                        "pool_id=\"p\",replica_id=\"r0\"} 1");
        /* the second sample of a series is dropped, the timestamp too */
        assert_int_equal(count_of(text, "code=\"200\""), 1);
        assert_has_line(text, "# TYPE engine_slots_busy_total counter");
        assert_has_line(text, "engine_pool_managerd_up{pool_id=\"p\",replica_id=\"r0\"} 1");
        assert_no_text(text, "\npool_managerd_");
        /* odd but valid values */
        assert_has_line(text, "engine_load{kind=\"nan\",pool_id=\"p\",replica_id=\"r0\"} NaN");
        assert_has_line(text, "engine_load{kind=\"inf\",pool_id=\"p\",replica_id=\"r0\"} +Inf");
        assert_has_line(text, "engine_load{kind=\"neg\",pool_id=\"p\",replica_id=\"r0\"} -1.5e-3");
        assert_has_line(text, "engine_load{kind=\"spaced\",pool_id=\"p\",replica_id=\"r0\"} 2");
        assert_has_line(text, "engine_load{kind=\"le\",pool_id=\"p\",replica_id=\"r0\"} 1");
        assert_int_equal(count_of(text, "engine_load{"), 5);
        /* the histogram without its broken bucket */
        assert_has_line(text, "engine_wait_seconds_bucket{le=\"+Inf\",pool_id=\"p\",replica_id=\"r0\"} 3");
        assert_has_line(text, "engine_wait_seconds_count{pool_id=\"p\",replica_id=\"r0\"} 3");
        assert_no_text(text, "path=");
        /* a help text is made up when missing or broken */
        assert_has_line(text, "# HELP bad_help Reported by the engine as bad_help (without help text).");
        assert_has_line(text, "# TYPE queue_length untyped");
        assert_has_line(text, "queue_length{a=\"b\",pool_id=\"p\",replica_id=\"r0\"} 4");
        /* "a:b" and "a_b" meet: the first one written stands */
        assert_has_line(text, "engine_mode{pool_id=\"p\",replica_id=\"r0\"} 1");
        assert_int_equal(count_of(text, "engine_mode{"), 1);
        /* refused: what promtool rejects, and families without samples */
        assert_no_text(text, "milliseconds");
        assert_no_text(text, "queueDepth");
        assert_no_text(text, "engine_done_total");
        assert_no_text(text, "iteration_tokens");
        assert_no_text(text, "untyped_thing");
        assert_no_text(text, "empty_family");
        assert_no_text(text, "\n\n");

        assert_int_equal(st.families, 8);
        assert_int_equal(st.samples, 16);
        /* latency_milliseconds, queueDepth, done_total, iteration_tokens_total,
         * untyped_thing, the second engine_mode */
        assert_int_equal(st.dropped_families, 6);
        assert_int_equal(count_of(text, "# HELP "), 8);
        free(text);
        ps_engine_scrape_free(s);
}

static void test_malformed_input(void **state) {
        static const char bad_utf8[] = "# HELP x_total ok\n# TYPE x_total counter\n"
                                       "x_total{a=\"\xff\xfe\"} 1\nx_total{a=\"\xc3\xa9\"} 2\n";
        static const char with_nul[] = "y 1\n\0z 2\nw 3";
        ps_relabel_stats st;
        ps_engine_scrape *s;
        char *text;

        (void) state;
        /* invalid UTF-8 in a label value: that line goes, valid UTF-8 stays */
        s = relabel(bad_utf8, "p", "r0", 0, &st);
        text = render_one(s);
        assert_int_equal(st.dropped_lines, 1);
        assert_has_line(text, "x_total{a=\"\xc3\xa9\",pool_id=\"p\",replica_id=\"r0\"} 2");
        free(text);
        ps_engine_scrape_free(s);

        /* a NUL byte inside the text; the last line has no newline */
        assert_int_equal(ps_engine_metrics_relabel(with_nul, sizeof(with_nul) - 1, "p", "r0", 0,
                                                   &s, &st), 0);
        text = render_one(s);
        assert_int_equal(st.dropped_lines, 1);
        assert_has_line(text, "y{pool_id=\"p\",replica_id=\"r0\"} 1");
        assert_has_line(text, "w{pool_id=\"p\",replica_id=\"r0\"} 3");
        free(text);
        ps_engine_scrape_free(s);

        /* nothing at all, and HTML where metrics should be */
        s = relabel("", "p", "r0", 0, &st);
        assert_int_equal(st.families, 0);
        text = render_one(s);
        assert_string_equal(text, "");
        free(text);
        ps_engine_scrape_free(s);
        s = relabel("<html><body>501 Not Implemented</body></html>\n", "p", "r0", 0, &st);
        assert_int_equal(st.families, 0);
        assert_int_equal(st.dropped_lines, 1);
        ps_engine_scrape_free(s);

        /* ids with characters that need escaping in a label value */
        s = relabel("hits 1\n", "p", "we\"ird\\", 0, NULL);
        text = render_one(s);
        assert_has_line(text, "hits{pool_id=\"p\",replica_id=\"we\\\"ird\\\\\"} 1");
        free(text);
        ps_engine_scrape_free(s);

        assert_int_equal(ps_engine_metrics_relabel(NULL, 1, "p", "r0", 0, &s, NULL), -EINVAL);
        assert_int_equal(ps_engine_metrics_relabel("a 1", 3, NULL, "r0", 0, &s, NULL), -EINVAL);
}

static void test_size_cap(void **state) {
        ps_relabel_stats all, capped;
        ps_engine_scrape *s = relabel_fixture("llama-server.prom", "p", "r0", &all), *c;
        size_t len;
        char *text = fixture("llama-server.prom", &len), *out;

        (void) state;
        assert_int_equal(ps_engine_metrics_relabel(text, len, "p", "r0",
                                                   ps_engine_scrape_bytes(s) / 2, &c, &capped), 0);
        /* whole families, in name order, up to the cap */
        assert_true(capped.families > 0 && capped.families < all.families);
        assert_int_equal(capped.families + capped.dropped_families, all.families);
        assert_true(ps_engine_scrape_bytes(c) <= ps_engine_scrape_bytes(s) / 2);
        out = render_one(c);
        assert_int_equal(strlen(out), ps_engine_scrape_bytes(c));
        assert_int_equal(count_of(out, "# HELP "), capped.families);
        assert_int_equal(count_of(out, "# TYPE "), capped.families);
        assert_int_equal(count_of(out, "{pool_id="), capped.families);
        free(out);
        free(text);
        ps_engine_scrape_free(c);
        ps_engine_scrape_free(s);
}

/* ---- merging replicas --------------------------------------------------------- */

static void test_merge_replicas(void **state) {
        ps_engine_scrape *v[4];
        char *text;
        const char *a, *b, *c;

        (void) state;
        v[0] = relabel_fixture("llama-server.prom", "llama-7b", "r0", NULL);
        v[1] = relabel_fixture("llama-server.prom", "llama-7b", "r1", NULL);
        v[2] = NULL;
        v[3] = relabel_fixture("vllm.prom", "vllm-8b", "r0", NULL);
        text = scrapes_render((const ps_engine_scrape *const *) v, 4);

        /* one HELP and TYPE per family, samples of both replicas under it */
        assert_int_equal(count_of(text, "# HELP llamacpp_prompt_tokens_total "), 1);
        assert_int_equal(count_of(text, "# TYPE llamacpp_prompt_tokens_total "), 1);
        assert_int_equal(count_of(text, "# HELP "), 12 + 13);
        a = strstr(text, "# TYPE llamacpp_prompt_tokens_total counter\n");
        b = strstr(text, "llamacpp_prompt_tokens_total{pool_id=\"llama-7b\",replica_id=\"r0\"} 1536\n");
        c = strstr(text, "llamacpp_prompt_tokens_total{pool_id=\"llama-7b\",replica_id=\"r1\"} 1536\n");
        assert_true(a && b && c && a < b && b < c);
        assert_true(strstr(b, "# ") == strstr(c, "# "));      /* no family in between */
        /* families in name order across engines */
        assert_true(strstr(text, "# HELP engine_process_") < strstr(text, "# HELP llamacpp_"));
        assert_true(strstr(text, "# HELP llamacpp_") < strstr(text, "# HELP vllm_"));
        free(text);
        for (size_t i = 0; i < 4; i++)
                ps_engine_scrape_free(v[i]);
}

static void test_merge_type_conflict(void **state) {
        ps_engine_scrape *v[2];
        char *text;

        (void) state;
        v[0] = relabel("# HELP q Queue.\n# TYPE q gauge\nq 1\n", "p", "r0", 0, NULL);
        v[1] = relabel("# HELP q Queue?\n# TYPE q untyped\nq 2\n", "p", "r1", 0, NULL);
        text = scrapes_render((const ps_engine_scrape *const *) v, 2);
        assert_string_equal(text, "# HELP q Queue.\n# TYPE q gauge\n"
                                  "q{pool_id=\"p\",replica_id=\"r0\"} 1\n");
        free(text);
        ps_engine_scrape_free(v[0]);
        ps_engine_scrape_free(v[1]);

        text = scrapes_render(NULL, 0);
        assert_string_equal(text, "");
        free(text);
}

/* ---- performance hints ---------------------------------------------------------- */

static ps_engine_scrape *llama_at(double tokens, double seconds, double gauge) {
        char text[512];

        snprintf(text, sizeof(text),
                 "# TYPE llamacpp:tokens_predicted_total counter\nllamacpp:tokens_predicted_total %g\n"
                 "# TYPE llamacpp:tokens_predicted_seconds_total counter\n"
                 "llamacpp:tokens_predicted_seconds_total %g\n"
                 "# TYPE llamacpp:predicted_tokens_seconds gauge\nllamacpp:predicted_tokens_seconds %g\n",
                 tokens, seconds, gauge);
        return relabel(text, "p", "r0", 0, NULL);
}

static void observe(ps_perf_hints *h, ps_engine_scrape *s, int64_t now_ms) {
        ps_perf_hints_observe(h, s, now_ms);
        ps_engine_scrape_free(s);
}

static void assert_tps(const ps_perf_hints *h, double want) {
        double v = -1;

        assert_true(ps_perf_hints_tokens_per_s(h, &v));
        if (fabs(v - want) > 1e-6)
                fail_msg("tokens/s %f, want %f", v, want);
}

static void test_perf_llama_server(void **state) {
        ps_perf_hints h;
        double v;

        (void) state;
        ps_perf_hints_init(&h, 0.3);
        /* the first scrape is a baseline: nothing yet */
        observe(&h, llama_at(1000, 12.5, 0), 0);
        assert_false(ps_perf_hints_tokens_per_s(&h, &v));
        /* 400 tokens in 5 s of generation: 80/s */
        observe(&h, llama_at(1400, 17.5, 80), 5000);
        assert_tps(&h, 80);
        /* idle: no new tokens, the hint stays */
        observe(&h, llama_at(1400, 17.5, 0), 10000);
        assert_tps(&h, 80);
        /* 300 tokens in 3 s: 100/s, smoothed 0.3 * 100 + 0.7 * 80 */
        observe(&h, llama_at(1700, 20.5, 100), 15000);
        assert_tps(&h, 86);
        /* restarted engine: counters went back, a new baseline, no sample */
        observe(&h, llama_at(50, 1, 50), 20000);
        assert_tps(&h, 86);
        observe(&h, llama_at(170, 2, 120), 25000);
        assert_tps(&h, 0.3 * 120 + 0.7 * 86);
        /* llama-server tells nothing about the first token */
        assert_false(ps_perf_hints_first_token_ms(&h, &v));
}

static void test_perf_llama_gauge_only(void **state) {
        ps_perf_hints h;
        double v;

        (void) state;
        ps_perf_hints_init(&h, 0.5);
        observe(&h, relabel("llamacpp:predicted_tokens_seconds 0\n", "p", "r0", 0, NULL), 0);
        assert_false(ps_perf_hints_tokens_per_s(&h, &v));
        observe(&h, relabel("llamacpp:predicted_tokens_seconds 60\n", "p", "r0", 0, NULL), 5000);
        assert_tps(&h, 60);
        observe(&h, relabel("llamacpp:predicted_tokens_seconds 0\n", "p", "r0", 0, NULL), 10000);
        assert_tps(&h, 60);
        observe(&h, relabel("llamacpp:predicted_tokens_seconds 40\n", "p", "r0", 0, NULL), 15000);
        assert_tps(&h, 50);
}

static ps_engine_scrape *vllm_at(double gen, double ttft_sum, double ttft_count) {
        char text[1024];

        snprintf(text, sizeof(text),
                 "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
                 "# TYPE vllm:generation_tokens_total counter\n"
                 "vllm:generation_tokens_total{model_name=\"m\"} %g\n"
                 "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
                 "# TYPE vllm:time_to_first_token_seconds histogram\n"
                 "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} %g\n"
                 "vllm:time_to_first_token_seconds_count{model_name=\"m\"} %g\n"
                 "vllm:time_to_first_token_seconds_sum{model_name=\"m\"} %g\n",
                 gen, ttft_count, ttft_count, ttft_sum);
        return relabel(text, "p", "r0", 0, NULL);
}

static void test_perf_vllm(void **state) {
        ps_perf_hints h;
        double v;

        (void) state;
        ps_perf_hints_init(&h, 0.3);
        observe(&h, vllm_at(121000, 14.4, 240), 100000);
        assert_false(ps_perf_hints_tokens_per_s(&h, &v));
        assert_false(ps_perf_hints_first_token_ms(&h, &v));
        /* 2500 tokens over 5 s of wall time; 10 first tokens in 0.8 s */
        observe(&h, vllm_at(123500, 15.2, 250), 105000);
        assert_tps(&h, 500);
        assert_true(ps_perf_hints_first_token_ms(&h, &v));
        assert_true(fabs(v - 80) < 1e-6);
        /* idle interval */
        observe(&h, vllm_at(123500, 15.2, 250), 110000);
        assert_tps(&h, 500);
        /* 4000 tokens in 5 s: 800; 20 first tokens in 1.2 s: 60 ms */
        observe(&h, vllm_at(127500, 16.4, 270), 115000);
        assert_tps(&h, 0.3 * 800 + 0.7 * 500);
        assert_true(ps_perf_hints_first_token_ms(&h, &v));
        assert_true(fabs(v - (0.3 * 60 + 0.7 * 80)) < 1e-6);
}

static void test_perf_absent(void **state) {
        ps_perf_hints h;
        ps_engine_scrape *s;
        double v;

        (void) state;
        ps_perf_hints_init(&h, 7);      /* out of range: the default */
        assert_true(h.alpha == PS_ENGINE_METRICS_ALPHA);
        for (int i = 0; i < 3; i++) {
                s = relabel_fixture("awkward.prom", "p", "r0", NULL);
                observe(&h, s, i * 5000);
        }
        assert_false(ps_perf_hints_tokens_per_s(&h, &v));
        assert_false(ps_perf_hints_first_token_ms(&h, &v));
        assert_false(ps_perf_hints_tokens_per_s(NULL, &v));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_llama_server_scrape),
                cmocka_unit_test(test_vllm_scrape),
                cmocka_unit_test(test_awkward_scrape),
                cmocka_unit_test(test_malformed_input),
                cmocka_unit_test(test_size_cap),
                cmocka_unit_test(test_merge_replicas),
                cmocka_unit_test(test_merge_type_conflict),
                cmocka_unit_test(test_perf_llama_server),
                cmocka_unit_test(test_perf_llama_gauge_only),
                cmocka_unit_test(test_perf_vllm),
                cmocka_unit_test(test_perf_absent),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
