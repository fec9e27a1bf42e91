/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

/* The router is private to pool-api; this test is the one outside user. */
#include "router-private.h"

static void assert_segments(const char *raw, size_t n, const char *const *want) {
        pa_error err = { .msg = "" };
        pa_path p;

        if (pa_path_parse(raw, &p, &err) != 0)
                fail_msg("'%s' refused: %s", raw, err.msg);
        assert_int_equal(p.n_segments, n);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(p.segments[i], want[i]);
        pa_path_done(&p);
        pa_path_done(&p);   /* twice is harmless */
}

static void assert_path_refused(const char *raw, const char *needle) {
        pa_error err = { .msg = "" };
        pa_path p = { .buf = NULL };

        assert_int_equal(pa_path_parse(raw, &p, &err), -EINVAL);
        if (!strstr(err.msg, needle))
                fail_msg("'%s': message \"%s\" does not contain \"%s\"", raw, err.msg, needle);
        assert_null(p.buf);
}

static void test_path_split_and_decode(void **state) {
        (void) state;
        assert_segments("/", 1, (const char *[]) { "" });
        assert_segments("/health", 1, (const char *[]) { "health" });
        assert_segments("/health/", 2, (const char *[]) { "health", "" });
        assert_segments("//x", 2, (const char *[]) { "", "x" });
        assert_segments("/v2/pools/llama-7b", 3, (const char *[]) { "v2", "pools", "llama-7b" });
        assert_segments("/v2/pools/a%2Eb%5fc", 3, (const char *[]) { "v2", "pools", "a.b_c" });
        assert_segments("/%68ealth", 1, (const char *[]) { "health" });
        /* '+' is not a space in a path. */
        assert_segments("/a+b%20c", 1, (const char *[]) { "a+b c" });
}

static void test_path_refusals(void **state) {
        (void) state;
        assert_path_refused("", "start with '/'");
        assert_path_refused("health", "start with '/'");
        assert_path_refused(NULL, "start with '/'");
        assert_path_refused("/v2/pools/a%2Fb", "encoded '/'");
        assert_path_refused("/v2/pools/a%2fb", "encoded '/'");
        assert_path_refused("/v2/pools/a%00", "NUL");
        assert_path_refused("/a%zz", "invalid percent-escape at byte 2");
        assert_path_refused("/a%2", "invalid percent-escape");
        assert_path_refused("/a%", "invalid percent-escape");
        assert_path_refused("/a%g0", "invalid percent-escape");
        assert_path_refused("/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", "more than 16 segments");
        /* Sixteen is still fine. */
        assert_segments("/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", 16,
                        (const char *[]) { "1", "2", "3", "4", "5", "6", "7", "8",
                                           "9", "10", "11", "12", "13", "14", "15", "16" });
}

static void handler_a(struct pa_request *r) { (void) r; }
static void handler_b(struct pa_request *r) { (void) r; }
static void handler_c(struct pa_request *r) { (void) r; }
static void handler_d(struct pa_request *r) { (void) r; }

static const pa_route routes[] = {
        { EVHTTP_REQ_GET, "/health", handler_a },
        { EVHTTP_REQ_GET, "/v2/pools/{id}", handler_b },
        { EVHTTP_REQ_DELETE, "/v2/pools/{id}", handler_c },
        { EVHTTP_REQ_POST, "/v2/pools/{id}/leases/{lease_id}/renew", handler_d },
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static pa_match match(enum evhttp_cmd_type method, const char *raw, const pa_route **route,
                      pa_params *params, unsigned *allowed) {
        pa_error err = { .msg = "" };
        pa_path p;
        pa_match m;

        assert_int_equal(pa_path_parse(raw, &p, &err), 0);
        m = pa_router_match(routes, N_ROUTES, method, &p, route, params, allowed);
        /* Param values point into the path: callers here look at names only. */
        pa_path_done(&p);
        return m;
}

static void test_route_found(void **state) {
        const pa_route *route = NULL;
        pa_params params;
        pa_error err = { .msg = "" };
        pa_path p;

        (void) state;
        assert_int_equal(match(EVHTTP_REQ_GET, "/health", &route, &params, NULL), PA_MATCH_FOUND);
        assert_ptr_equal(route->handler, handler_a);
        assert_int_equal(params.n, 0);

        assert_int_equal(pa_path_parse("/v2/pools/llama%2D7b/leases/L1/renew", &p, &err), 0);
        assert_int_equal(pa_router_match(routes, N_ROUTES, EVHTTP_REQ_POST, &p, &route, &params, NULL),
                         PA_MATCH_FOUND);
        assert_ptr_equal(route->handler, handler_d);
        assert_int_equal(params.n, 2);
        assert_string_equal(pa_params_get(&params, "id"), "llama-7b");
        assert_string_equal(pa_params_get(&params, "lease_id"), "L1");
        assert_null(pa_params_get(&params, "lease"));
        assert_null(pa_params_get(&params, "i"));
        pa_path_done(&p);

        assert_int_equal(match(EVHTTP_REQ_DELETE, "/v2/pools/x", &route, &params, NULL), PA_MATCH_FOUND);
        assert_ptr_equal(route->handler, handler_c);
}

static void test_route_not_found(void **state) {
        unsigned allowed = 12345;

        (void) state;
        assert_int_equal(match(EVHTTP_REQ_GET, "/nope", NULL, NULL, &allowed), PA_MATCH_NO_ROUTE);
        assert_int_equal(allowed, 0);
        assert_int_equal(match(EVHTTP_REQ_GET, "/health/", NULL, NULL, NULL), PA_MATCH_NO_ROUTE);
        assert_int_equal(match(EVHTTP_REQ_GET, "/", NULL, NULL, NULL), PA_MATCH_NO_ROUTE);
        assert_int_equal(match(EVHTTP_REQ_GET, "/v2/pools", NULL, NULL, NULL), PA_MATCH_NO_ROUTE);
        /* A capture takes one non-empty segment, never none or two. */
        assert_int_equal(match(EVHTTP_REQ_GET, "/v2/pools/", NULL, NULL, NULL), PA_MATCH_NO_ROUTE);
        assert_int_equal(match(EVHTTP_REQ_GET, "/v2/pools/a/b", NULL, NULL, NULL), PA_MATCH_NO_ROUTE);
        assert_int_equal(match(EVHTTP_REQ_GET, "/HEALTH", NULL, NULL, NULL), PA_MATCH_NO_ROUTE);
        assert_int_equal(match(EVHTTP_REQ_GET, "/healthz", NULL, NULL, NULL), PA_MATCH_NO_ROUTE);
}

static void test_route_wrong_method(void **state) {
        char allow[64];
        unsigned allowed = 0;

        (void) state;
        assert_int_equal(match(EVHTTP_REQ_POST, "/health", NULL, NULL, &allowed), PA_MATCH_NO_METHOD);
        assert_int_equal(allowed, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
        pa_methods_format(allowed, allow, sizeof(allow));
        assert_string_equal(allow, "GET, HEAD");
        /* HEAD reaches the GET route */
        assert_int_equal(match(EVHTTP_REQ_HEAD, "/health", NULL, NULL, NULL), PA_MATCH_FOUND);

        assert_int_equal(match(EVHTTP_REQ_PATCH, "/v2/pools/x", NULL, NULL, &allowed), PA_MATCH_NO_METHOD);
        assert_int_equal(allowed, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE);
        pa_methods_format(allowed, allow, sizeof(allow));
        assert_string_equal(allow, "GET, HEAD, DELETE");

        /* A short buffer is cut at a whole name, and terminated. */
        pa_methods_format(allowed, allow, 6);
        assert_string_equal(allow, "GET");
        pa_methods_format(PA_METHODS_ALL, allow, sizeof(allow));
        assert_string_equal(allow, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT");
}

static void test_method_names(void **state) {
        (void) state;
        assert_string_equal(pa_method_to_string(EVHTTP_REQ_GET), "GET");
        assert_string_equal(pa_method_to_string(EVHTTP_REQ_PATCH), "PATCH");
        assert_string_equal(pa_method_to_string((enum evhttp_cmd_type) 0), "UNKNOWN");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_path_split_and_decode),
                cmocka_unit_test(test_path_refusals),
                cmocka_unit_test(test_route_found),
                cmocka_unit_test(test_route_not_found),
                cmocka_unit_test(test_route_wrong_method),
                cmocka_unit_test(test_method_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
