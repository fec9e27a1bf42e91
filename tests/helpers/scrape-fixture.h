/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Engine-metrics test helpers. Include after <cmocka.h>: a failure fails
 * the test.
 */

#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>

#include "pool-services/observe/engine-metrics.h"

/* A recorded scrape from tests/unit/services/scrapes (the directory in
 * $SCRAPE_FIXTURES), read whole and NUL-terminated; *len is its length. */
static inline char *scrape_fixture(const char *name, size_t *len) {
        const char *dir = getenv("SCRAPE_FIXTURES");
        char path[4096];
        char *text;
        FILE *f;
        long n;

        assert_non_null(dir);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "rb");
        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n > 0);
        rewind(f);
        text = malloc((size_t) n + 1);
        assert_non_null(text);
        assert_int_equal(fread(text, 1, (size_t) n, f), (size_t) n);
        text[n] = '\0';
        fclose(f);
        *len = (size_t) n;
        return text;
}

/* The exposition of some relabelled scrapes, NUL-terminated; the caller
 * frees it. */
static inline char *scrapes_render(const ps_engine_scrape *const *v, size_t n) {
        struct evbuffer *b = evbuffer_new();
        size_t len;
        char *text;

        assert_non_null(b);
        assert_int_equal(ps_engine_scrapes_render(v, n, b), 0);
        len = evbuffer_get_length(b);
        text = malloc(len + 1);
        assert_non_null(text);
        evbuffer_remove(b, text, len);
        text[len] = '\0';
        evbuffer_free(b);
        return text;
}
