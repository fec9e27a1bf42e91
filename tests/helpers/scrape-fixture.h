/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A recorded scrape from tests/unit/services/scrapes (the directory in
 * $SCRAPE_FIXTURES), read whole and NUL-terminated; *len is its length.
 * Include after <cmocka.h>: a missing file fails the test.
 */

#include <stdio.h>
#include <stdlib.h>

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
