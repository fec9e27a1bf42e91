/* SPDX-License-Identifier: MIT */
/*
 * Relabelling and merging engine scrapes: the naming rule, our labels on
 * every sample, each family once across replicas, the byte cap, and the
 * values read back. The recorded scrapes live in scrapes/ (SCRAPE_FIXTURES).
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

#include "scrape-fixture.h"
#include "observe/prom-relabel.h"
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


/* The exposition of one text relabelled as pool p, replica r0. */
static char *relabelled(const char *text, ps_relabel_stats *stats) {
        ps_engine_scrape *s = relabel(text, "p", "r0", 0, stats);
        char *out = scrapes_render((const ps_engine_scrape *const *) &s, 1);

        ps_engine_scrape_free(s);
        return out;
}

static void assert_text(char *got, const char *want) {
        assert_string_equal(got, want);
        free(got);
}

static size_t count_of(const char *text, const char *part) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, part)); p++)
                n++;
        return n;
}

/* ---- the naming rule ------------------------------------------------------------ */

static void assert_published(const char *name, ps_prom_type type, const char *want) {
        char *got = (char *) "unset";

        assert_int_equal(ps_prom_name_publish(name, type, &got), 0);
        if (!want) {
                if (got)
                        fail_msg("%s published as %s, want it refused", name, got);
                return;
        }
        if (!got)
                fail_msg("%s refused, want %s", name, want);
        assert_string_equal(got, want);
        free(got);
}

static void test_name_engines(void **state) {
        (void) state;
        assert_published("llamacpp:prompt_tokens_total", PS_PROM_COUNTER,
                         "llamacpp_prompt_tokens_total");
        assert_published("llamacpp:n_busy_slots_per_decode", PS_PROM_COUNTER,
                         "llamacpp_n_busy_slots_per_decode_total");
        assert_published("llamacpp:kv_cache_usage_ratio", PS_PROM_GAUGE,
                         "llamacpp_kv_cache_usage_ratio");
        assert_published("vllm:time_to_first_token_seconds", PS_PROM_HISTOGRAM,
                         "vllm_time_to_first_token_seconds");
        assert_published("vllm:gpu_cache_usage_perc", PS_PROM_GAUGE, "vllm_gpu_cache_usage_perc");
        /* the daemon's own process_* families are ours */
        assert_published("process_resident_memory_bytes", PS_PROM_GAUGE,
                         "engine_process_resident_memory_bytes");
        assert_published("x::y:", PS_PROM_UNTYPED, "x__y_");
        /* a name like ours is the engine's, visibly */
        assert_published("pool_managerd_up", PS_PROM_GAUGE, "engine_pool_managerd_up");
        assert_published("pool_managerdx", PS_PROM_GAUGE, "pool_managerdx");
        /* ':' becomes '_' before the check: never inside our namespace */
        assert_published("pool_managerd:up", PS_PROM_GAUGE, "engine_pool_managerd_up");
        assert_published("pool:managerd_up", PS_PROM_GAUGE, "engine_pool_managerd_up");
}

static void test_name_refused(void **state) {
        (void) state;
        assert_published("engine:queueDepth", PS_PROM_GAUGE, NULL);
        assert_published("latency_milliseconds", PS_PROM_GAUGE, NULL);
        assert_published("size_kilobytes", PS_PROM_GAUGE, NULL);
        assert_published("wait_ms", PS_PROM_GAUGE, NULL);
        assert_published("uptime_minutes", PS_PROM_GAUGE, NULL);
        assert_published("request_counter", PS_PROM_GAUGE, NULL);
        assert_published("done_total", PS_PROM_GAUGE, NULL);
        assert_published("iteration_tokens_total", PS_PROM_HISTOGRAM, NULL);
        assert_published("x_bucket", PS_PROM_GAUGE, NULL);
        assert_published("x_sum", PS_PROM_UNTYPED, NULL);
        assert_published("x_count", PS_PROM_GAUGE, NULL);
        /* fine as they are */
        assert_published("done_total", PS_PROM_UNTYPED, "done_total");
        assert_published("x_count", PS_PROM_SUMMARY, "x_count");
        assert_published("x_count", PS_PROM_COUNTER, "x_count_total");
        assert_published("millis_tokens", PS_PROM_GAUGE, "millis_tokens");
        assert_published("kilo_seconds", PS_PROM_GAUGE, "kilo_seconds");
}

/* ---- our labels --------------------------------------------------------------------- */

static void test_labels(void **state) {
        (void) state;
        assert_text(relabelled("# HELP up Up.\n# TYPE up gauge\nup 1\n", NULL),
                    "# HELP up Up.\n# TYPE up gauge\nup{pool_id=\"p\",replica_id=\"r0\"} 1\n");
        /* the engine's labels first, as written, an engine pool_id renamed */
        assert_text(relabelled("# TYPE r counter\n"
                               "r{replica_id=\"x\",code=\"200\",pool_id=\"y\"} 7\n", NULL),
                    "# HELP r_total Reported by the engine as r (without help text).\n"
                    "# TYPE r_total counter\n"
                    "r_total{exported_replica_id=\"x\",code=\"200\",exported_pool_id=\"y\","
                    "pool_id=\"p\",replica_id=\"r0\"} 7\n");
        /* escapes and values pass through as written */
        assert_text(relabelled("v{a=\"q\\\"\\\\\\n\"} -1.5e-3\nv{a=\"n\"} NaN\n", NULL),
                    "# HELP v Reported by the engine as v (without help text).\n"
                    "# TYPE v untyped\n"
                    "v{a=\"q\\\"\\\\\\n\",pool_id=\"p\",replica_id=\"r0\"} -1.5e-3\n"
                    "v{a=\"n\",pool_id=\"p\",replica_id=\"r0\"} NaN\n");
}

static void test_ids_escaped(void **state) {
        ps_engine_scrape *s = relabel("hits 1\n", "po\nol", "we\"ird\\", 0, NULL);
        char *text = scrapes_render((const ps_engine_scrape *const *) &s, 1);

        (void) state;
        assert_non_null(strstr(text, "hits{pool_id=\"po\\nol\",replica_id=\"we\\\"ird\\\\\"} 1\n"));
        free(text);
        ps_engine_scrape_free(s);
}

/* An engine label pool_id and one named exported_pool_id meet: one series. */
static void test_exported_collision(void **state) {
        ps_relabel_stats st;
        char *text = relabelled("x{pool_id=\"a\"} 1\nx{exported_pool_id=\"a\"} 2\n", &st);

        (void) state;
        assert_int_equal(count_of(text, "\nx{"), 1);
        assert_non_null(strstr(text, "x{exported_pool_id=\"a\",pool_id=\"p\",replica_id=\"r0\"} 1\n"));
        assert_int_equal(st.samples, 1);
        assert_int_equal(st.dropped_lines, 1);
        free(text);
}

/* "x:y" and "x_y" meet once renamed: the first written stands, whole. */
static void test_rename_collision(void **state) {
        ps_relabel_stats st;
        char *text = relabelled("x_y{k=\"1\"} 1\nx:y{k=\"2\"} 2\nx:y{k=\"3\"} 3\n", &st);

        (void) state;
        assert_int_equal(count_of(text, "# HELP x_y "), 1);
        assert_non_null(strstr(text, "Reported by the engine as x_y "));
        assert_int_equal(count_of(text, "x_y{"), 1);
        assert_int_equal(st.families, 1);
        assert_int_equal(st.dropped_families, 1);
        assert_int_equal(st.dropped_lines, 2);
        free(text);
}

static void test_refused_families(void **state) {
        ps_relabel_stats st;
        char *text = relabelled("# TYPE wait_milliseconds gauge\nwait_milliseconds 1\n"
                                "wait_milliseconds{a=\"1\"} 2\n"
                                "# HELP announced Never sampled.\n# TYPE announced gauge\n"
                                "kept 1\n", &st);

        (void) state;
        assert_int_equal(st.families, 1);
        assert_int_equal(st.samples, 1);
        /* a family without samples is not counted as refused */
        assert_int_equal(st.dropped_families, 1);
        assert_int_equal(st.dropped_lines, 2);
        assert_null(strstr(text, "announced"));
        assert_null(strstr(text, "milliseconds"));
        free(text);
}

/* The same order every time: families by published name. */
static void test_sorted(void **state) {
        char *text = relabelled("c 1\nvllm:q 1\na 1\nZ 1\n", NULL);
        const char *a = strstr(text, "# HELP a "), *q = strstr(text, "# HELP vllm_q ");
        const char *c = strstr(text, "# HELP c "), *upper = strstr(text, "# HELP Z ");

        (void) state;
        assert_true(upper && a && c && q);
        assert_true(upper < a && a < c && c < q);
        free(text);
}

static void test_histogram(void **state) {
        ps_relabel_stats st;
        char *text = relabelled("# HELP vllm:ttft_seconds TTFT.\n"
                                "# TYPE vllm:ttft_seconds histogram\n"
                                "vllm:ttft_seconds_bucket{le=\"0.1\",m=\"x\"} 1\n"
                                "vllm:ttft_seconds_bucket{le=\"+Inf\",m=\"x\"} 2\n"
                                "vllm:ttft_seconds_sum{m=\"x\"} 0.3\n"
                                "vllm:ttft_seconds_count{m=\"x\"} 2\n", &st);

        (void) state;
        assert_string_equal(text,
                "# HELP vllm_ttft_seconds TTFT.\n"
                "# TYPE vllm_ttft_seconds histogram\n"
                "vllm_ttft_seconds_bucket{le=\"0.1\",m=\"x\",pool_id=\"p\",replica_id=\"r0\"} 1\n"
                "vllm_ttft_seconds_bucket{le=\"+Inf\",m=\"x\",pool_id=\"p\",replica_id=\"r0\"} 2\n"
                "vllm_ttft_seconds_sum{m=\"x\",pool_id=\"p\",replica_id=\"r0\"} 0.3\n"
                "vllm_ttft_seconds_count{m=\"x\",pool_id=\"p\",replica_id=\"r0\"} 2\n");
        assert_int_equal(st.families, 1);
        assert_int_equal(st.samples, 4);
        free(text);
}

/* ---- values read back ------------------------------------------------------------------ */

static void test_values(void **state) {
        ps_engine_scrape *s = relabel("# TYPE g gauge\ng{a=\"1\"} 2\ng{a=\"2\"} 3\ng{a=\"3\"} NaN\n"
                                      "# TYPE hist histogram\nhist_bucket{le=\"+Inf\"} 4\n"
                                      "hist_sum 1.5\nhist_count 4\n"
                                      "# TYPE q summary\nq{quantile=\"0.5\"} 9\nq_sum 8\nq_count 7\n"
                                      "# TYPE n gauge\nn NaN\n",
                                      "p", "r0", 0, NULL);
        double v;

        (void) state;
        /* summed over label sets, NaN left out */
        assert_true(ps_engine_scrape_value(s, "g", &v));
        assert_true(v == 5);
        assert_true(ps_engine_scrape_value(s, "hist_sum", &v));
        assert_true(v == 1.5);
        assert_true(ps_engine_scrape_value(s, "hist_count", &v));
        assert_true(v == 4);
        assert_false(ps_engine_scrape_value(s, "hist_bucket", &v));
        assert_false(ps_engine_scrape_value(s, "hist", &v));
        assert_true(ps_engine_scrape_value(s, "q", &v));
        assert_true(v == 9);
        assert_true(ps_engine_scrape_value(s, "q_sum", &v));
        assert_true(v == 8);
        assert_false(ps_engine_scrape_value(s, "n", &v));
        assert_false(ps_engine_scrape_value(s, "g_sum", &v));
        assert_false(ps_engine_scrape_value(s, "missing", &v));
        assert_false(ps_engine_scrape_value(s, NULL, &v));
        assert_false(ps_engine_scrape_value(NULL, "g", &v));
        ps_engine_scrape_free(s);
}

/* ---- the byte cap ------------------------------------------------------------------------- */

static void test_cap(void **state) {
        static const char text[] = "# HELP a A family with a long help text, long enough.\n"
                                   "a{x=\"1\"} 1\na{x=\"2\"} 2\na{x=\"3\"} 3\n"
                                   "c 1\n";
        ps_relabel_stats st;
        ps_engine_scrape *all = relabel(text, "p", "r0", 0, &st), *s;
        size_t total = ps_engine_scrape_bytes(all), c_bytes;
        char *out;

        (void) state;
        assert_int_equal(st.families, 2);
        s = relabel("c 1\n", "p", "r0", 0, NULL);
        c_bytes = ps_engine_scrape_bytes(s);
        ps_engine_scrape_free(s);
        /* exactly enough */
        s = relabel(text, "p", "r0", total, &st);
        assert_int_equal(st.families, 2);
        assert_int_equal(ps_engine_scrape_bytes(s), total);
        ps_engine_scrape_free(s);
        /* one byte short: whole families in name order, "c" goes */
        s = relabel(text, "p", "r0", total - 1, &st);
        assert_int_equal(st.families, 1);
        assert_int_equal(st.dropped_families, 1);
        assert_int_equal(st.dropped_lines, 1);
        assert_int_equal(ps_engine_scrape_bytes(s), total - c_bytes);
        ps_engine_scrape_free(s);
        /* too small for "a": the smaller "c" after it still fits */
        s = relabel(text, "p", "r0", total - c_bytes - 1, &st);
        assert_int_equal(st.families, 1);
        assert_int_equal(st.dropped_lines, 3);
        out = scrapes_render((const ps_engine_scrape *const *) &s, 1);
        assert_non_null(strstr(out, "# HELP c "));
        assert_null(strstr(out, "# HELP a "));
        assert_int_equal(strlen(out), c_bytes);
        free(out);
        ps_engine_scrape_free(s);
        /* nothing fits */
        s = relabel(text, "p", "r0", 1, &st);
        assert_int_equal(st.families, 0);
        assert_int_equal(st.dropped_families, 2);
        assert_int_equal(ps_engine_scrape_bytes(s), 0);
        ps_engine_scrape_free(s);
        ps_engine_scrape_free(all);
}

/* ---- merging ---------------------------------------------------------------------------------- */

static void test_merge(void **state) {
        ps_engine_scrape *v[3];
        char *text;

        (void) state;
        v[0] = relabel("# HELP q First.\n# TYPE q gauge\nq 1\nonly_a 1\n", "p", "r0", 0, NULL);
        v[1] = relabel("# HELP q Second.\n# TYPE q gauge\nq 2\n", "p", "r1", 0, NULL);
        v[2] = relabel("# HELP q Third.\n# TYPE q gauge\nq 3\nc 1\n", "o", "r0", 0, NULL);
        text = scrapes_render((const ps_engine_scrape *const *) v, 3);
        assert_string_equal(text,
                "# HELP c Reported by the engine as c (without help text).\n"
                "# TYPE c untyped\n"
                "c{pool_id=\"o\",replica_id=\"r0\"} 1\n"
                "# HELP only_a Reported by the engine as only_a (without help text).\n"
                "# TYPE only_a untyped\n"
                "only_a{pool_id=\"p\",replica_id=\"r0\"} 1\n"
                "# HELP q First.\n# TYPE q gauge\n"
                "q{pool_id=\"p\",replica_id=\"r0\"} 1\n"
                "q{pool_id=\"p\",replica_id=\"r1\"} 2\n"
                "q{pool_id=\"o\",replica_id=\"r0\"} 3\n");
        free(text);
        for (size_t i = 0; i < 3; i++)
                ps_engine_scrape_free(v[i]);
}

static void test_merge_fixtures(void **state) {
        const char *names[] = { "llama-server.prom", "vllm.prom", "awkward.prom" };
        ps_engine_scrape *v[6];
        char *text;

        (void) state;
        for (size_t i = 0; i < 6; i++) {
                size_t len;
                char *in = fixture(names[i % 3], &len);

                assert_int_equal(ps_engine_metrics_relabel(in, len, "p", i < 3 ? "r0" : "r1", 0,
                                                           &v[i], NULL), 0);
                free(in);
        }
        text = scrapes_render((const ps_engine_scrape *const *) v, 6);
        /* every family once: 12 + 13 + 8, each sample twice */
        assert_int_equal(count_of(text, "# HELP "), 33);
        assert_int_equal(count_of(text, "# TYPE "), 33);
        assert_int_equal(count_of(text, "replica_id=\"r0\"}"), 12 + 25 + 16);
        assert_int_equal(count_of(text, "replica_id=\"r1\"}"), 12 + 25 + 16);
        assert_null(strstr(text, "\n\n"));
        assert_null(strstr(text, "\nllamacpp:"));
        assert_null(strstr(text, "\nvllm:"));
        assert_null(strstr(text, "\nengine:"));
        assert_null(strstr(text, "# TYPE engine:"));
        free(text);
        for (size_t i = 0; i < 6; i++)
                ps_engine_scrape_free(v[i]);
}

static void test_merge_empty(void **state) {
        const ps_engine_scrape *none[2] = { NULL, NULL };
        ps_engine_scrape *empty = relabel("# just a comment\n", "p", "r0", 0, NULL);
        struct evbuffer *b = evbuffer_new();

        (void) state;
        assert_text(scrapes_render(NULL, 0), "");
        assert_text(scrapes_render(none, 2), "");
        assert_text(scrapes_render((const ps_engine_scrape *const *) &empty, 1), "");
        assert_int_equal(ps_engine_scrapes_render(NULL, 1, b), -EINVAL);
        assert_int_equal(ps_engine_scrapes_render(none, 2, NULL), -EINVAL);
        assert_int_equal(ps_engine_scrape_bytes(NULL), 0);
        assert_null(ps_engine_scrape_free(NULL));
        evbuffer_free(b);
        ps_engine_scrape_free(empty);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_engines),
                cmocka_unit_test(test_name_refused),
                cmocka_unit_test(test_labels),
                cmocka_unit_test(test_ids_escaped),
                cmocka_unit_test(test_exported_collision),
                cmocka_unit_test(test_rename_collision),
                cmocka_unit_test(test_refused_families),
                cmocka_unit_test(test_sorted),
                cmocka_unit_test(test_histogram),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_cap),
                cmocka_unit_test(test_merge),
                cmocka_unit_test(test_merge_fixtures),
                cmocka_unit_test(test_merge_empty),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
