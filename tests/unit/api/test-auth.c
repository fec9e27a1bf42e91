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
#include "pool-services/base/errors.h"
#include "request-private.h"
#include "router-private.h"
#include "routes-private.h"

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
        assert_true(pa_auth_route_is_public("GET", "/ready"));
        assert_true(pa_auth_route_is_public("HEAD", "/metrics"));
        assert_false(pa_auth_route_is_public("POST", "/ready"));
        assert_false(pa_auth_route_is_public("GET", "/%68ealth"));   /* spelt otherwise */
        assert_false(pa_auth_route_is_public("POST", "/health"));
        assert_false(pa_auth_route_is_public("GET", "/v2/pools"));
        assert_false(pa_auth_route_is_public("GET", "/health/"));
        assert_false(pa_auth_route_is_public("GET", "/metrics?x=1"));
        assert_false(pa_auth_route_is_public(NULL, "/health"));
}

static void read_only_requests(void **state) {
        (void) state;
        /* Every GET and HEAD, whatever the path (the router answers 404). */
        assert_true(pa_auth_route_is_read_only("GET", "/v2/pools"));
        assert_true(pa_auth_route_is_read_only("HEAD", "/v2/pools/a/leases"));
        assert_true(pa_auth_route_is_read_only("GET", "/nope"));
        assert_true(pa_auth_route_is_read_only("GET", "/bad%zz"));
        /* POST .../status under both prefixes, with any valid segment. */
        assert_true(pa_auth_route_is_read_only("POST", "/v2/pools/a/status"));
        assert_true(pa_auth_route_is_read_only("POST", "/pools/llama-7b/status"));
        assert_true(pa_auth_route_is_read_only("POST", "/v2/pools/%61/status"));
        assert_true(pa_auth_route_is_read_only("POST", "/v2/pools/a/st%61tus"));
        /* Anything else changes something. */
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools/a/preload"));
        assert_false(pa_auth_route_is_read_only("POST", "/pools/a/preload"));
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools/a/restart"));
        assert_false(pa_auth_route_is_read_only("DELETE", "/v2/pools/a"));
        assert_false(pa_auth_route_is_read_only("DELETE", "/v2/pools/a/status"));
        assert_false(pa_auth_route_is_read_only("PUT", "/v2/pools/a/status"));
        assert_false(pa_auth_route_is_read_only("PATCH", "/v2/pools/a/status"));
        assert_false(pa_auth_route_is_read_only("OPTIONS", "/health"));
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools//status"));
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools/a/status/"));
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools/a/b/status"));
        assert_false(pa_auth_route_is_read_only("POST", "/v3/pools/a/status"));
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools/status"));
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools/a%2Fb/status"));
        assert_false(pa_auth_route_is_read_only("POST", "pools/a/status"));
        assert_false(pa_auth_route_is_read_only("POST", "/v2/pools/a/status?x"));
        assert_false(pa_auth_route_is_read_only(NULL, "/v2/pools"));
        assert_false(pa_auth_path_is_read_only("POST", NULL));
        assert_true(pa_auth_path_is_read_only("GET", NULL));
}

/* The path of a route with every {param} filled in. */
static void route_path(const char *pattern, char *buf, size_t size) {
        size_t o = 0;

        for (const char *c = pattern; *c && o + 8 < size; c++) {
                if (*c == '{') {
                        const char *end = strchr(c, '}');

                        /* 32 hex digits: a valid lease id, and a valid pool id */
                        o += (size_t) snprintf(buf + o, size - o, "%s", "0123456789abcdef0123456789abcdef");
                        c = end;
                        continue;
                }
                buf[o++] = *c;
        }
        buf[o] = '\0';
}

typedef struct access {
        bool token_needed;        /* 401 without a valid token             */
        bool refused;             /* 403 READ_ONLY after routing           */
} access;

static access decide(const pa_auth *auth, pa_listener via, const char *method, const char *raw) {
        access a = { .token_needed = pa_auth_token_required(auth, via, method, raw) };
        pa_path path;

        assert_int_equal(pa_path_parse(raw, &path, NULL), 0);
        a.refused = pa_auth_read_only_refused(auth, via, method, &path);
        pa_path_done(&path);
        return a;
}

/* The table of docs/api.md, row by row, over the real route table. */
static void access_table(void **state) {
        pa_auth none, token;
        char path[256];

        (void) state;
        assert_int_equal(pa_auth_init(&none, NULL), 0);
        assert_int_equal(pa_auth_init(&token, "s3cret"), 0);
        assert_true(pa_n_routes > 10);
        for (size_t i = 0; i < pa_n_routes; i++) {
                const char *method = pa_method_to_string(pa_routes[i].method);
                bool get = pa_routes[i].method == EVHTTP_REQ_GET;
                bool pub = get && (strcmp(pa_routes[i].pattern, "/health") == 0 ||
                                   strcmp(pa_routes[i].pattern, "/metrics") == 0 ||
                                   strcmp(pa_routes[i].pattern, "/ready") == 0);
                access a;
                pa_path parsed;

                route_path(pa_routes[i].pattern, path, sizeof(path));
                assert_int_equal(pa_path_parse(path, &parsed, NULL), 0);
                bool ro = pa_auth_path_is_read_only(method, &parsed);
                /* Engine logs: a read, but not for an open TCP listener. */
                bool priv = pa_auth_path_is_private(&parsed);
                pa_path_done(&parsed);

                assert_int_equal(priv, strstr(path, "/logs") != NULL);
                /* Only GETs (and POST .../status) are read-only. */
                assert_true(get ? ro : (ro == (strstr(path, "/status") != NULL)));

                /* Unix socket: open, with or without a token. */
                a = decide(&none, PA_LISTENER_UNIX, method, path);
                assert_false(a.token_needed);
                assert_false(a.refused);
                a = decide(&token, PA_LISTENER_UNIX, method, path);
                assert_false(a.token_needed);
                assert_false(a.refused);

                /* TCP with a token: the token for all but the public ones. */
                a = decide(&token, PA_LISTENER_TCP, method, path);
                assert_int_equal(a.token_needed, !pub);
                assert_false(a.refused);

                /* TCP without one: reads open (but private ones), changes
                 * refused. */
                a = decide(&none, PA_LISTENER_TCP, method, path);
                assert_false(a.token_needed);
                assert_int_equal(a.refused, !ro || priv);
                if (get) {
                        a = decide(&none, PA_LISTENER_TCP, "HEAD", path);
                        assert_int_equal(a.refused, priv);
                }
        }
        /* The status query, whether or not the route exists yet. */
        for (int v = 0; v < 2; v++) {
                const char *p = v ? "/v2/pools/a/status" : "/pools/a/status";
                access a = decide(&none, PA_LISTENER_TCP, "POST", p);

                assert_false(a.token_needed);
                assert_false(a.refused);
                a = decide(&token, PA_LISTENER_TCP, "POST", p);
                assert_true(a.token_needed);
        }
        /* /ready is public like /health, even before it exists. */
        assert_false(decide(&token, PA_LISTENER_TCP, "GET", "/ready").token_needed);
        pa_auth_clear(&token);
}

static void forbidden_codes(void **state) {
        (void) state;
        assert_int_equal(pa_code_from_services(PS_E_MODEL_FORBIDDEN), PA_CODE_MODEL_NOT_ALLOWED);
        assert_string_equal(pa_code_to_string(PA_CODE_MODEL_NOT_ALLOWED), "MODEL_NOT_ALLOWED");
        assert_int_equal(pa_code_to_status(PA_CODE_MODEL_NOT_ALLOWED), 403);
        assert_int_equal(pa_code_from_services(PS_E_FORBIDDEN), PA_CODE_BINARY_NOT_ALLOWED);
        assert_string_equal(pa_code_to_string(PA_CODE_READ_ONLY), "READ_ONLY");
        assert_int_equal(pa_code_to_status(PA_CODE_READ_ONLY), 403);
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
                cmocka_unit_test(read_only_requests),
                cmocka_unit_test(access_table),
                cmocka_unit_test(forbidden_codes),
        };

        return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
