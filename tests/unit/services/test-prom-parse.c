/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus text-format parser on its own: families, samples and the
 * lines it refuses, on small texts and the recorded scrapes in scrapes/
 * (SCRAPE_FIXTURES).
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

#include "scrape-fixture.h"
#include "observe/prom-parse.h"

/* ---- helpers ------------------------------------------------------------ */

static char *fixture(const char *name, size_t *len) {
        return scrape_fixture(name, len);
}

static ps_prom_text *parse(const char *text) {
        ps_prom_text *t = NULL;

        assert_int_equal(ps_prom_parse(text, strlen(text), &t), 0);
        assert_non_null(t);
        return t;
}

static const ps_prom_family *family(const ps_prom_text *t, const char *name) {
        for (size_t i = 0; i < t->n_families; i++)
                if (strcmp(t->families[i].name, name) == 0)
                        return &t->families[i];
        fail_msg("no family %s", name);
        return NULL;
}

static bool has_family(const ps_prom_text *t, const char *name) {
        for (size_t i = 0; i < t->n_families; i++)
                if (strcmp(t->families[i].name, name) == 0)
                        return true;
        return false;
}

static size_t family_index(const ps_prom_text *t, const char *name) {
        return (size_t) (family(t, name) - t->families);
}

static void assert_slice(const char *s, size_t n, const char *want) {
        if (n != strlen(want) || memcmp(s, want, n) != 0)
                fail_msg("\"%.*s\", want \"%s\"", (int) n, s, want);
}

static void assert_label(const ps_prom_sample *s, size_t k, const char *name, const char *value) {
        assert_true(k < s->n_labels);
        assert_slice(s->labels[k].name, s->labels[k].name_len, name);
        assert_slice(s->labels[k].value, s->labels[k].value_len, value);
}

/* Parses text and expects it to keep no sample and drop `dropped` lines. */
static void assert_refused(const char *text, size_t dropped) {
        ps_prom_text *t = parse(text);

        if (t->n_samples != 0 || t->dropped_lines != dropped)
                fail_msg("%zu samples, %zu dropped lines, want 0 and %zu: %s", t->n_samples,
                         t->dropped_lines, dropped, text);
        ps_prom_text_free(t);
}

/* ---- families --------------------------------------------------------------- */

static void test_help_and_type(void **state) {
        ps_prom_text *t = parse("# HELP x_total Requests \\\\ served\\n, all.\n"
                                "# TYPE x_total counter\n"
                                "x_total 3\n");
        const ps_prom_family *f;

        (void) state;
        assert_int_equal(t->n_families, 1);
        f = family(t, "x_total");
        assert_string_equal(f->help, "Requests \\\\ served\\n, all.");
        assert_int_equal(f->type, PS_PROM_COUNTER);
        assert_true(f->type_set);
        assert_int_equal(f->n_samples, 1);
        assert_int_equal(t->n_samples, 1);
        assert_int_equal(t->samples[0].family, 0);
        assert_int_equal(t->samples[0].suffix, PS_PROM_SUFFIX_NONE);
        assert_int_equal(t->samples[0].n_labels, 0);
        assert_null(t->samples[0].labels);
        assert_slice(t->samples[0].value_text, t->samples[0].value_len, "3");
        assert_true(t->samples[0].value == 3);
        assert_int_equal(t->dropped_lines, 0);
        ps_prom_text_free(t);
}

static void test_missing_type(void **state) {
        ps_prom_text *t = parse("queue_length{a=\"b\"} 4\n# HELP only_help Help, no type.\n"
                                "only_help 1\n");
        const ps_prom_family *f;

        (void) state;
        f = family(t, "queue_length");
        assert_int_equal(f->type, PS_PROM_UNTYPED);
        assert_false(f->type_set);
        assert_null(f->help);
        f = family(t, "only_help");
        assert_int_equal(f->type, PS_PROM_UNTYPED);
        assert_string_equal(f->help, "Help, no type.");
        assert_int_equal(t->dropped_lines, 0);
        ps_prom_text_free(t);
}

/* HELP and TYPE without samples still make a family, in the order seen. */
static void test_family_order(void **state) {
        ps_prom_text *t = parse("# TYPE b gauge\n# HELP a Announced.\nc 1\nb 2\n");

        (void) state;
        assert_int_equal(t->n_families, 3);
        assert_string_equal(t->families[0].name, "b");
        assert_string_equal(t->families[1].name, "a");
        assert_string_equal(t->families[2].name, "c");
        assert_int_equal(t->families[1].n_samples, 0);
        assert_int_equal(t->samples[0].family, 2);
        assert_int_equal(t->samples[1].family, 0);
        ps_prom_text_free(t);
}

static void test_duplicate_help_and_type(void **state) {
        ps_prom_text *t = parse("# HELP q First.\n# HELP q Second.\n"
                                "# TYPE q gauge\n# TYPE q counter\n"
                                "q 1\n# TYPE q summary\n"
                                "# TYPE r wibble\nr 1\n");

        (void) state;
        assert_string_equal(family(t, "q")->help, "First.");
        assert_int_equal(family(t, "q")->type, PS_PROM_GAUGE);
        /* an unknown type leaves the family untyped */
        assert_int_equal(family(t, "r")->type, PS_PROM_UNTYPED);
        assert_false(family(t, "r")->type_set);
        /* HELP, TYPE, TYPE after samples, unknown TYPE */
        assert_int_equal(t->dropped_lines, 4);
        assert_int_equal(t->n_samples, 2);
        ps_prom_text_free(t);
}

/* A family written in two places is one family. */
static void test_family_split(void **state) {
        ps_prom_text *t = parse("# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 2\n"
                                "a{x=\"2\"} 3\n");

        (void) state;
        assert_int_equal(t->n_families, 2);
        assert_int_equal(family(t, "a")->n_samples, 2);
        assert_int_equal(t->samples[2].family, family_index(t, "a"));
        ps_prom_text_free(t);
}

static void test_comments(void **state) {
        ps_prom_text *t = parse("# just a comment\n#\n# HELPFUL not a help line\n"
                                "#HELP k Written without a blank.\n# TYPE\n# HELP\n"
                                "# HELP 9x Starts with a digit.\n# HELP a:b\n"
                                "# HELP c{ Bad name.\n# TYPE k gauge\nk 1\n");

        (void) state;
        /* "# TYPE", "# HELP", "9x" and "c{" are refused; "a:b" has an empty help */
        assert_int_equal(t->dropped_lines, 4);
        assert_string_equal(family(t, "k")->help, "Written without a blank.");
        assert_int_equal(family(t, "k")->type, PS_PROM_GAUGE);
        assert_string_equal(family(t, "a:b")->help, "");
        assert_false(has_family(t, "9x"));
        assert_int_equal(t->n_samples, 1);
        ps_prom_text_free(t);
}

static void test_help_escapes(void **state) {
        ps_prom_text *t = parse("# HELP a Tab \\t here.\n# HELP b Quote \\\" here.\n"
                                "# HELP c Trailing \\\n# HELP d Fine \\\\ and \\n.\n"
                                "# HELP e Bad UTF-8 \xc0\xaf.\n");

        (void) state;
        assert_int_equal(t->dropped_lines, 4);
        assert_null(family(t, "a")->help);
        assert_null(family(t, "b")->help);
        assert_null(family(t, "c")->help);
        assert_string_equal(family(t, "d")->help, "Fine \\\\ and \\n.");
        assert_null(family(t, "e")->help);
        ps_prom_text_free(t);
}

/* ---- samples ------------------------------------------------------------------ */

static void test_labels(void **state) {
        ps_prom_text *t = parse("x{a=\"q\\\"uote\",b=\"back\\\\slash\",c=\"new\\nline\","
                                "d=\"\",e=\"caf\xc3\xa9\"} 1\n"
                                "y { a = \"1\" , } 2\n"
                                "z{} 3\n");
        const ps_prom_sample *s;

        (void) state;
        assert_int_equal(t->n_samples, 3);
        s = &t->samples[0];
        assert_int_equal(s->n_labels, 5);
        assert_label(s, 0, "a", "q\\\"uote");
        assert_label(s, 1, "b", "back\\\\slash");
        assert_label(s, 2, "c", "new\\nline");
        assert_label(s, 3, "d", "");
        assert_label(s, 4, "e", "caf\xc3\xa9");
        s = &t->samples[1];
        assert_int_equal(s->n_labels, 1);
        assert_label(s, 0, "a", "1");
        assert_int_equal(t->samples[2].n_labels, 0);
        assert_int_equal(t->dropped_lines, 0);
        ps_prom_text_free(t);
}

static void test_bad_labels(void **state) {
        (void) state;
        assert_refused("x{a=\"\\t\"} 1\n", 1);                 /* unknown escape */
        assert_refused("x{a=\"\\\"} 1\n", 1);                  /* unterminated */
        assert_refused("x{a=\"b} 1\n", 1);
        assert_refused("x{a=\"\xff\xfe\"} 1\n", 1);            /* not UTF-8 */
        assert_refused("x{a=\"\xed\xa0\x80\"} 1\n", 1);        /* a surrogate */
        assert_refused("x{a=\"\xe0\x80\xaf\"} 1\n", 1);        /* overlong */
        assert_refused("x{a=\"\xf4\x90\x80\x80\"} 1\n", 1);    /* past U+10FFFF */
        assert_refused("x{a=\"1\",a=\"2\"} 1\n", 1);           /* repeated */
        assert_refused("x{1a=\"x\"} 1\n", 1);
        assert_refused("x{a:b=\"x\"} 1\n", 1);
        assert_refused("x{myLabel=\"x\"} 1\n", 1);             /* camelCase */
        assert_refused("x{a=1} 1\n", 1);
        assert_refused("x{a} 1\n", 1);
        assert_refused("x{a=\"1\" b=\"2\"} 1\n", 1);
        assert_refused("x{a=\"1\"}1\n", 1);
        assert_refused("x{a=\"1\"\n", 1);
        assert_refused("x{a=\"1\"}\n", 1);
}

static void test_label_limit(void **state) {
        char text[2048];
        size_t n = 0;
        ps_prom_text *t;

        (void) state;
        n += (size_t) snprintf(text + n, sizeof(text) - n, "x{");
        for (int i = 0; i < 64; i++)
                n += (size_t) snprintf(text + n, sizeof(text) - n, "l%d=\"v\",", i);
        snprintf(text + n, sizeof(text) - n, "} 1\n");
        t = parse(text);
        assert_int_equal(t->n_samples, 1);
        assert_int_equal(t->samples[0].n_labels, 64);
        ps_prom_text_free(t);

        snprintf(text + n, sizeof(text) - n, "l64=\"v\"} 1\n");
        assert_refused(text, 1);
}

static void test_values(void **state) {
        ps_prom_text *t = parse("v{k=\"a\"} NaN\nv{k=\"b\"} +Inf\nv{k=\"c\"} -Inf\n"
                                "v{k=\"d\"} Inf\nv{k=\"e\"} nan\nv{k=\"f\"} -1.5e-3\n"
                                "v{k=\"g\"} 1e400\nv{k=\"h\"} .5\nv{k=\"i\"} 5.337067520e+09\n");
        const ps_prom_sample *s = t->samples;

        (void) state;
        assert_int_equal(t->n_samples, 9);
        assert_true(isnan(s[0].value));
        assert_true(isinf(s[1].value) && s[1].value > 0);
        assert_true(isinf(s[2].value) && s[2].value < 0);
        assert_true(isinf(s[3].value) && s[3].value > 0);
        assert_true(isnan(s[4].value));
        assert_true(s[5].value == -1.5e-3);
        assert_true(isinf(s[6].value));
        assert_true(s[7].value == 0.5);
        /* the text is kept as written */
        assert_slice(s[1].value_text, s[1].value_len, "+Inf");
        assert_slice(s[5].value_text, s[5].value_len, "-1.5e-3");
        assert_slice(s[8].value_text, s[8].value_len, "5.337067520e+09");
        ps_prom_text_free(t);
}

static void test_bad_values(void **state) {
        char longer[128];

        (void) state;
        assert_refused("x twelve\n", 1);
        assert_refused("x 0x10\n", 1);
        assert_refused("x 1,5\n", 1);
        assert_refused("x --1\n", 1);
        assert_refused("x infinity\n", 1);
        assert_refused("x\n", 1);
        assert_refused("x1\n", 1);                              /* "x1" is not "x 1" */
        snprintf(longer, sizeof(longer), "x 1%063d\n", 0);      /* 64 digits */
        assert_refused(longer, 1);
}

static void test_timestamps(void **state) {
        ps_prom_text *t = parse("a 1 1763990400000\nb 2 -5\nc 3   7   \n");

        (void) state;
        assert_int_equal(t->n_samples, 3);
        assert_slice(t->samples[0].value_text, t->samples[0].value_len, "1");
        assert_int_equal(t->dropped_lines, 0);
        ps_prom_text_free(t);
        assert_refused("x 1 12x\n", 1);
        assert_refused("x 1 -\n", 1);
        assert_refused("x 1 2 3\n", 1);
        assert_refused("x 1 1.5\n", 1);
}

static void test_bad_lines(void **state) {
        static const char with_nul[] = "y 1\n\0z 2\nw 3";
        ps_prom_text *t;

        (void) state;
        assert_refused("{a=\"b\"} 1\n", 1);
        assert_refused("= 1\n", 1);
        assert_refused("1x 1\n", 1);
        assert_refused("<html><body>501 Not Implemented</body></html>\n", 1);
        assert_refused("", 0);
        assert_refused("\n\n   \n\t\n", 0);

        /* a NUL byte fails its line; the last line needs no newline */
        assert_int_equal(ps_prom_parse(with_nul, sizeof(with_nul) - 1, &t), 0);
        assert_int_equal(t->n_samples, 2);
        assert_int_equal(t->dropped_lines, 1);
        assert_string_equal(t->families[1].name, "w");
        ps_prom_text_free(t);

        /* CRLF, blanks around */
        t = parse("  # TYPE k gauge  \r\n\tk{a=\"b\"} 3 \r\n");
        assert_int_equal(t->n_samples, 1);
        assert_int_equal(family(t, "k")->type, PS_PROM_GAUGE);
        assert_slice(t->samples[0].value_text, t->samples[0].value_len, "3");
        ps_prom_text_free(t);
}

static void test_duplicate_series(void **state) {
        ps_prom_text *t = parse("r{code=\"200\"} 7\nr{code=\"500\"} 1\nr{code=\"200\"} 8\n"
                                "s{a=\"1\",b=\"2\"} 1\ns{b=\"2\",a=\"1\"} 2\nt 1\nt 2\n");

        (void) state;
        /* the first one stands; the same labels in another order are another series */
        assert_int_equal(t->n_samples, 5);
        assert_int_equal(t->dropped_lines, 2);
        assert_slice(t->samples[0].value_text, t->samples[0].value_len, "7");
        assert_int_equal(family(t, "s")->n_samples, 2);
        assert_int_equal(family(t, "t")->n_samples, 1);
        ps_prom_text_free(t);
}

/* ---- histograms and summaries -------------------------------------------------- */

static void test_histogram(void **state) {
        ps_prom_text *t = parse("# TYPE w histogram\n"
                                "w_bucket{le=\"0.5\"} 1\n"
                                "w_bucket{path=\"/\"} 2\n"             /* no le */
                                "w_bucket{le=\"soon\"} 2\n"            /* le not a number */
                                "w_bucket{le=\"+Inf\"} 3\n"
                                "w_sum{le=\"1\"} 0.9\n"                /* le off a bucket */
                                "w_sum 0.9\n"
                                "w_count 3\n"
                                "w 4\n");
        const ps_prom_sample *s = t->samples;
        size_t w = family_index(t, "w");

        (void) state;
        assert_int_equal(t->n_families, 1);
        assert_int_equal(t->n_samples, 5);
        assert_int_equal(t->dropped_lines, 3);
        for (size_t i = 0; i < t->n_samples; i++)
                assert_int_equal(s[i].family, w);
        assert_int_equal(s[0].suffix, PS_PROM_SUFFIX_BUCKET);
        assert_int_equal(s[1].suffix, PS_PROM_SUFFIX_BUCKET);
        assert_int_equal(s[2].suffix, PS_PROM_SUFFIX_SUM);
        assert_int_equal(s[3].suffix, PS_PROM_SUFFIX_COUNT);
        assert_int_equal(s[4].suffix, PS_PROM_SUFFIX_NONE);
        ps_prom_text_free(t);
}

static void test_summary(void **state) {
        ps_prom_text *t = parse("# TYPE a summary\n"
                                "a{quantile=\"0.5\"} 1\n"
                                "a 2\n"                                /* no quantile */
                                "a_sum 2\na_count 3\n"
                                "a_bucket{le=\"1\"} 1\n");
        const ps_prom_sample *s = t->samples;

        (void) state;
        assert_int_equal(t->n_samples, 3);
        assert_int_equal(s[0].suffix, PS_PROM_SUFFIX_NONE);
        assert_label(&s[0], 0, "quantile", "0.5");
        assert_int_equal(s[1].suffix, PS_PROM_SUFFIX_SUM);
        assert_int_equal(s[2].suffix, PS_PROM_SUFFIX_COUNT);
        /* a summary has no buckets: a_bucket is a family of its own, with a
         * label it may not carry */
        assert_int_equal(t->dropped_lines, 2);
        assert_int_equal(family(t, "a_bucket")->n_samples, 0);
        ps_prom_text_free(t);
}

/* A suffix joins the family being read first, else any family of the base
 * name, else it is part of a name of its own. */
static void test_suffix_lookup(void **state) {
        ps_prom_text *t = parse("# TYPE a summary\n# HELP b Between.\nb 1\n"
                                "a_sum 2\n"
                                "c_count 1\n"
                                "# TYPE g gauge\ng_sum 5\n");

        (void) state;
        assert_int_equal(t->samples[1].family, family_index(t, "a"));
        assert_int_equal(t->samples[1].suffix, PS_PROM_SUFFIX_SUM);
        assert_int_equal(t->samples[2].family, family_index(t, "c_count"));
        assert_int_equal(t->samples[2].suffix, PS_PROM_SUFFIX_NONE);
        /* a gauge takes no suffix */
        assert_int_equal(t->samples[3].family, family_index(t, "g_sum"));
        assert_int_equal(family(t, "g")->n_samples, 0);
        ps_prom_text_free(t);

        /* the family being read wins over one named like the whole sample */
        t = parse("# HELP a_sum Its own family.\n# TYPE a summary\na_sum 1\n");
        assert_int_equal(t->samples[0].family, family_index(t, "a"));
        assert_int_equal(family(t, "a_sum")->n_samples, 0);
        ps_prom_text_free(t);
        t = parse("# TYPE a summary\n# HELP a_sum Its own family.\na_sum 1\n");
        assert_int_equal(t->samples[0].family, family_index(t, "a_sum"));
        ps_prom_text_free(t);
}

/* TYPE after samples of the family is refused, also for a split family. */
static void test_type_after_samples(void **state) {
        ps_prom_text *t = parse("x_sum 1\n# TYPE x summary\nx_sum{q=\"1\"} 2\n");

        (void) state;
        assert_int_equal(family(t, "x")->type, PS_PROM_SUMMARY);
        assert_int_equal(t->samples[0].family, family_index(t, "x_sum"));
        assert_int_equal(t->samples[1].family, family_index(t, "x"));
        assert_int_equal(t->dropped_lines, 0);
        ps_prom_text_free(t);

        t = parse("# HELP x_sum h\nx_sum 1\n# TYPE x_sum gauge\n");
        assert_int_equal(family(t, "x_sum")->type, PS_PROM_UNTYPED);
        assert_int_equal(t->dropped_lines, 1);
        ps_prom_text_free(t);
}

/* ---- recorded scrapes -------------------------------------------------------------- */

static void test_llama_server_fixture(void **state) {
        size_t len;
        char *text = fixture("llama-server.prom", &len);
        ps_prom_text *t;
        const ps_prom_family *f;

        (void) state;
        assert_int_equal(ps_prom_parse(text, len, &t), 0);
        assert_int_equal(t->n_families, 12);
        assert_int_equal(t->n_samples, 12);
        assert_int_equal(t->dropped_lines, 0);
        /* names keep their colons here: renaming is not the parser's job */
        f = family(t, "llamacpp:prompt_tokens_total");
        assert_int_equal(f->type, PS_PROM_COUNTER);
        assert_string_equal(f->help, "Number of prompt tokens processed.");
        assert_int_equal(family(t, "llamacpp:n_busy_slots_per_decode")->type, PS_PROM_COUNTER);
        assert_int_equal(family(t, "llamacpp:predicted_tokens_seconds")->type, PS_PROM_GAUGE);
        for (size_t i = 0; i < t->n_families; i++)
                assert_int_equal(t->families[i].n_samples, 1);
        ps_prom_text_free(t);
        free(text);
}

static void test_vllm_fixture(void **state) {
        size_t len;
        char *text = fixture("vllm.prom", &len);
        ps_prom_text *t;
        const ps_prom_family *f;
        const ps_prom_sample *s, *at[7];
        size_t ttft, n = 0;

        (void) state;
        assert_int_equal(ps_prom_parse(text, len, &t), 0);
        assert_int_equal(t->n_families, 13);
        assert_int_equal(t->n_samples, 25);
        assert_int_equal(t->dropped_lines, 0);
        f = family(t, "vllm:time_to_first_token_seconds");
        assert_int_equal(f->type, PS_PROM_HISTOGRAM);
        assert_int_equal(f->n_samples, 7);
        /* _created is a gauge family of its own, not a suffix */
        assert_int_equal(family(t, "vllm:time_to_first_token_seconds_created")->type,
                         PS_PROM_GAUGE);
        ttft = family_index(t, "vllm:time_to_first_token_seconds");
        for (size_t i = 0; i < t->n_samples; i++)
                if (t->samples[i].family == ttft && n < 7)
                        at[n++] = &t->samples[i];
        assert_int_equal(n, 7);
        assert_int_equal(at[0]->suffix, PS_PROM_SUFFIX_BUCKET);
        assert_label(at[0], 0, "le", "0.001");
        assert_label(at[0], 1, "model_name", "meta-llama/Llama-3.1-8B-Instruct");
        assert_label(at[4], 0, "le", "+Inf");
        assert_true(at[4]->value == 240);
        assert_int_equal(at[5]->suffix, PS_PROM_SUFFIX_COUNT);
        assert_int_equal(at[6]->suffix, PS_PROM_SUFFIX_SUM);
        assert_true(at[6]->value == 14.4);
        /* le where the engine put it, not first */
        f = family(t, "vllm:e2e_request_latency_seconds");
        assert_int_equal(f->n_samples, 4);
        for (size_t i = 0; i < t->n_samples; i++)
                if (t->samples[i].family == family_index(t, "vllm:e2e_request_latency_seconds")) {
                        assert_label(&t->samples[i], 1, "le", "1.0");
                        break;
                }
        /* the escaped label value, exactly as written */
        s = &t->samples[t->n_samples - 1];
        assert_label(s, 2, "waiting_lora_adapters", "sql \\\"v2\\\"\\\\adapter\\nnext");
        assert_true(s->value == 1.7637e+09);
        ps_prom_text_free(t);
        free(text);
}

static void test_awkward_fixture(void **state) {
        size_t len;
        char *text = fixture("awkward.prom", &len);
        ps_prom_text *t;

        (void) state;
        assert_int_equal(ps_prom_parse(text, len, &t), 0);
        /* the second code="200"; bad value, escape, quote, repeated label,
         * label name, missing value, timestamp, le on a gauge, camelCase
         * label, trailing junk; the repeated TYPE; the bucket without le;
         * "wibble"; the bad HELP escape; the two nameless lines */
        assert_int_equal(t->dropped_lines, 17);
        assert_int_equal(family(t, "engine:load")->n_samples, 5);
        assert_int_equal(family(t, "engine:load")->type, PS_PROM_GAUGE);
        assert_int_equal(family(t, "engine:wait_seconds")->n_samples, 4);
        assert_int_equal(family(t, "engine:mode")->type, PS_PROM_UNTYPED);
        assert_int_equal(family(t, "empty_family")->n_samples, 0);
        assert_null(family(t, "bad_help")->help);
        assert_int_equal(family(t, "engine:requests_total")->n_samples, 2);
        ps_prom_text_free(t);
        free(text);
}

/* ---- the rest ------------------------------------------------------------------------ */

static void test_arguments(void **state) {
        ps_prom_text *t = NULL;

        (void) state;
        assert_int_equal(ps_prom_parse(NULL, 1, &t), -EINVAL);
        assert_int_equal(ps_prom_parse("a 1", 3, NULL), -EINVAL);
        assert_int_equal(ps_prom_parse(NULL, 0, &t), 0);
        assert_int_equal(t->n_families, 0);
        ps_prom_text_free(t);
        assert_null(ps_prom_text_free(NULL));
}

static void test_names(void **state) {
        (void) state;
        assert_string_equal(ps_prom_type_to_string(PS_PROM_UNTYPED), "untyped");
        assert_string_equal(ps_prom_type_to_string(PS_PROM_HISTOGRAM), "histogram");
        assert_null(ps_prom_type_to_string(PS_PROM_TYPE_MAX));
        assert_string_equal(ps_prom_suffix_to_string(PS_PROM_SUFFIX_NONE), "");
        assert_string_equal(ps_prom_suffix_to_string(PS_PROM_SUFFIX_COUNT), "_count");
        assert_null(ps_prom_suffix_to_string(PS_PROM_SUFFIX_MAX));
        assert_true(ps_prom_camel_case("queueDepth", 10));
        assert_false(ps_prom_camel_case("Queue_depth", 11));
        assert_false(ps_prom_camel_case("KV_cache", 8));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_help_and_type),
                cmocka_unit_test(test_missing_type),
                cmocka_unit_test(test_family_order),
                cmocka_unit_test(test_duplicate_help_and_type),
                cmocka_unit_test(test_family_split),
                cmocka_unit_test(test_comments),
                cmocka_unit_test(test_help_escapes),
                cmocka_unit_test(test_labels),
                cmocka_unit_test(test_bad_labels),
                cmocka_unit_test(test_label_limit),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_bad_values),
                cmocka_unit_test(test_timestamps),
                cmocka_unit_test(test_bad_lines),
                cmocka_unit_test(test_duplicate_series),
                cmocka_unit_test(test_histogram),
                cmocka_unit_test(test_summary),
                cmocka_unit_test(test_suffix_lookup),
                cmocka_unit_test(test_type_after_samples),
                cmocka_unit_test(test_llama_server_fixture),
                cmocka_unit_test(test_vllm_fixture),
                cmocka_unit_test(test_awkward_fixture),
                cmocka_unit_test(test_arguments),
                cmocka_unit_test(test_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
