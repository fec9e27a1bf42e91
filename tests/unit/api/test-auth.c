/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth-private.h"

static void off_lets_everything_through(void **state) {
        pa_auth a;

        (void) state;
        assert_int_equal(pa_auth_init(&a, NULL), 0);
        assert_true(pa_auth_check(&a, NULL));
        assert_true(pa_auth_check(&a, "Bearer anything"));
        assert_int_equal(pa_auth_init(&a, ""), 0);
        assert_true(pa_auth_check(&a, NULL));
}

static void the_token_passes(void **state) {
        pa_auth a;

        (void) state;
        assert_int_equal(pa_auth_init(&a, "s3cr3t-T0ken"), 0);
        assert_true(pa_auth_check(&a, "Bearer s3cr3t-T0ken"));
        assert_true(pa_auth_check(&a, "bearer s3cr3t-T0ken"));
        assert_true(pa_auth_check(&a, "BEARER   s3cr3t-T0ken  "));
        pa_auth_clear(&a);
}

static void anything_else_is_refused(void **state) {
        pa_auth a;

        (void) state;
        assert_int_equal(pa_auth_init(&a, "s3cr3t-T0ken"), 0);
        assert_false(pa_auth_check(&a, NULL));
        assert_false(pa_auth_check(&a, ""));
        assert_false(pa_auth_check(&a, "Bearer"));
        assert_false(pa_auth_check(&a, "Bearer "));
        assert_false(pa_auth_check(&a, "s3cr3t-T0ken"));
        assert_false(pa_auth_check(&a, "Basic s3cr3t-T0ken"));
        assert_false(pa_auth_check(&a, "Bearer s3cr3t-T0ke"));      /* a prefix   */
        assert_false(pa_auth_check(&a, "Bearer s3cr3t-T0kenX"));    /* longer     */
        assert_false(pa_auth_check(&a, "Bearer s3cr3t-t0ken"));     /* case       */
        assert_false(pa_auth_check(&a, "Bearer x3cr3t-T0ken"));     /* first byte */
        pa_auth_clear(&a);
        /* Cleared: off again, and the copy is gone. */
        assert_true(pa_auth_check(&a, NULL));
        for (size_t i = 0; i < sizeof(a.token); i++)
                assert_int_equal(a.token[i], 0);
}

static void padding_does_not_make_a_match(void **state) {
        char header[PA_AUTH_TOKEN_MAX + 64];
        pa_auth a;

        (void) state;
        /* The buffers are zero-padded: a presented value that ends in NULs
         * cannot exist in C strings, but a shorter one must not match a
         * token whose tail is padding either way. */
        assert_int_equal(pa_auth_init(&a, "ab"), 0);
        assert_false(pa_auth_check(&a, "Bearer a"));
        assert_false(pa_auth_check(&a, "Bearer abc"));
        /* A value far longer than any token. */
        memset(header, 'a', sizeof(header) - 1);
        header[sizeof(header) - 1] = '\0';
        memcpy(header, "Bearer ", 7);
        assert_false(pa_auth_check(&a, header));
        pa_auth_clear(&a);
}

static void longest_token_works(void **state) {
        char token[PA_AUTH_TOKEN_MAX + 2], header[PA_AUTH_TOKEN_MAX + 16];
        pa_auth a;

        (void) state;
        memset(token, 'k', PA_AUTH_TOKEN_MAX);
        token[PA_AUTH_TOKEN_MAX] = '\0';
        assert_int_equal(pa_auth_init(&a, token), 0);
        snprintf(header, sizeof(header), "Bearer %s", token);
        assert_true(pa_auth_check(&a, header));
        /* One more byte than the token: refused, though the first
         * PA_AUTH_TOKEN_MAX bytes match. */
        strcat(header, "k");
        assert_false(pa_auth_check(&a, header));
        token[PA_AUTH_TOKEN_MAX] = 'k';
        token[PA_AUTH_TOKEN_MAX + 1] = '\0';
        assert_int_equal(pa_auth_init(&a, token), -EINVAL);
        pa_auth_clear(&a);
}

static void bad_tokens_are_refused_at_init(void **state) {
        pa_auth a;

        (void) state;
        assert_int_equal(pa_auth_init(&a, "has space"), -EINVAL);
        assert_int_equal(pa_auth_init(&a, "tab\there"), -EINVAL);
        assert_int_equal(pa_auth_init(&a, "caf\xc3\xa9"), -EINVAL);
}

static void public_routes(void **state) {
        (void) state;
        assert_true(pa_auth_route_is_public("GET", "/health"));
        assert_true(pa_auth_route_is_public("GET", "/metrics"));
        assert_true(pa_auth_route_is_public("HEAD", "/health"));
        assert_false(pa_auth_route_is_public("POST", "/health"));
        assert_false(pa_auth_route_is_public("GET", "/v2/pools"));
        assert_false(pa_auth_route_is_public("GET", "/health/"));
        assert_false(pa_auth_route_is_public("GET", "/metrics?x=1"));
        assert_false(pa_auth_route_is_public(NULL, "/health"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(off_lets_everything_through),
                cmocka_unit_test(the_token_passes),
                cmocka_unit_test(anything_else_is_refused),
                cmocka_unit_test(padding_does_not_make_a_match),
                cmocka_unit_test(longest_token_works),
                cmocka_unit_test(bad_tokens_are_refused_at_init),
                cmocka_unit_test(public_routes),
        };

        return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
