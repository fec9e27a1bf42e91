/* SPDX-License-Identifier: MIT */
/*
 * The route table as the daemon serves it, and the body checks of the
 * routes that need no backend: the preload envelope and the reload's
 * model fields; and how a failed preload answers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "pool-services/base/errors.h"

#include "router-private.h"
#include "routes-private.h"

static pa_match match(enum evhttp_cmd_type method, const char *raw, const pa_route **route,
                      unsigned *allowed) {
        pa_error err = { .msg = "" };
        pa_params params;
        pa_path p;
        pa_match m;

        if (pa_path_parse(raw, &p, &err) != 0)
                fail_msg("'%s' refused: %s", raw, err.msg);
        m = pa_router_match(pa_routes, pa_n_routes, method, &p, route, &params, allowed);
        if (m == PA_MATCH_FOUND)
                assert_string_equal(pa_params_get(&params, "id"), "p1");
        pa_path_done(&p);
        return m;
}

static void test_status_routes(void **state) {
        static const char *const paths[] = { "/pools/p1/status", "/v2/pools/p1/status" };
        const pa_route *get = NULL, *post = NULL, *head = NULL, *snapshot = NULL;
        unsigned allowed = 0;
        char allow[64];

        (void) state;
        assert_int_equal(match(EVHTTP_REQ_GET, "/v2/pools/p1", &snapshot, NULL), PA_MATCH_FOUND);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(match(EVHTTP_REQ_GET, paths[i], &get, NULL), PA_MATCH_FOUND);
                assert_int_equal(match(EVHTTP_REQ_HEAD, paths[i], &head, NULL), PA_MATCH_FOUND);
                assert_int_equal(match(EVHTTP_REQ_POST, paths[i], &post, NULL), PA_MATCH_FOUND);
                /* GET and HEAD are the snapshot's; POST has its own
                 * handler (it reads the body), answering the same. */
                assert_ptr_equal(get->handler, snapshot->handler);
                assert_ptr_equal(head, get);
                assert_int_equal(post->method, EVHTTP_REQ_POST);
                assert_ptr_not_equal(post->handler, snapshot->handler);
                assert_int_equal(match(EVHTTP_REQ_PUT, paths[i], NULL, &allowed), PA_MATCH_NO_METHOD);
                assert_int_equal(allowed, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
                pa_methods_format(allowed, allow, sizeof(allow));
                assert_string_equal(allow, "GET, HEAD, POST");
                assert_int_equal(match(EVHTTP_REQ_DELETE, paths[i], NULL, NULL), PA_MATCH_NO_METHOD);
        }
        /* both POST paths share the handler */
        assert_int_equal(match(EVHTTP_REQ_POST, paths[0], &get, NULL), PA_MATCH_FOUND);
        assert_ptr_equal(get->handler, post->handler);
        assert_int_equal(match(EVHTTP_REQ_POST, "/pools/p1/status/x", NULL, NULL), PA_MATCH_NO_ROUTE);
}

static void test_preload_routes(void **state) {
        const pa_route *a = NULL, *b = NULL;
        unsigned allowed = 0;

        (void) state;
        assert_int_equal(match(EVHTTP_REQ_POST, "/pools/p1/preload", &a, NULL), PA_MATCH_FOUND);
        assert_int_equal(match(EVHTTP_REQ_POST, "/v2/pools/p1/preload", &b, NULL), PA_MATCH_FOUND);
        assert_ptr_equal(a->handler, b->handler);
        assert_int_equal(match(EVHTTP_REQ_GET, "/pools/p1/preload", NULL, &allowed), PA_MATCH_NO_METHOD);
        assert_int_equal(allowed, EVHTTP_REQ_POST);
}

/* Every pattern appears once per method: a second entry would never be
 * reached. */
static void test_no_duplicate_routes(void **state) {
        (void) state;
        for (size_t i = 0; i < pa_n_routes; i++)
                for (size_t j = i + 1; j < pa_n_routes; j++)
                        if (pa_routes[i].method == pa_routes[j].method &&
                            strcmp(pa_routes[i].pattern, pa_routes[j].pattern) == 0)
                                fail_msg("%s %s twice", pa_method_to_string(pa_routes[i].method),
                                         pa_routes[i].pattern);
}

static json_t *parse(const char *text) {
        json_error_t jerr;
        json_t *v = json_loads(text, JSON_ALLOW_NUL, &jerr);

        if (!v)
                fail_msg("bad test JSON %s: %s", text, jerr.text);
        return v;
}

static void assert_unwrap_refused(const char *text, const char *needle) {
        json_t *body = parse(text);
        char err[256] = "";

        assert_null(pa_preload_unwrap(body, err, sizeof(err)));
        if (!strstr(err, needle))
                fail_msg("%s: message \"%s\" does not contain \"%s\"", text, err, needle);
        json_decref(body);
}

static void test_preload_unwrap(void **state) {
        json_t *body;
        char err[256] = "";

        (void) state;
        /* flat: the body itself, whatever it holds (checked later) */
        body = parse("{\"binary_path\": \"/x\", \"port\": 1}");
        assert_ptr_equal(pa_preload_unwrap(body, err, sizeof(err)), body);
        json_decref(body);
        body = parse("{}");
        assert_ptr_equal(pa_preload_unwrap(body, err, sizeof(err)), body);
        json_decref(body);

        /* the envelope: its object */
        body = parse("{\"prepared\": {\"binary_path\": \"/x\", \"port\": 1}}");
        assert_ptr_equal(pa_preload_unwrap(body, err, sizeof(err)), json_object_get(body, "prepared"));
        json_decref(body);
        body = parse("{\"prepared\": {}}");
        assert_ptr_equal(pa_preload_unwrap(body, err, sizeof(err)), json_object_get(body, "prepared"));
        json_decref(body);
        /* one level only: an envelope inside is the parser's unknown field */
        body = parse("{\"prepared\": {\"prepared\": {}}}");
        assert_ptr_equal(pa_preload_unwrap(body, err, sizeof(err)), json_object_get(body, "prepared"));
        json_decref(body);

        assert_unwrap_refused("{\"prepared\": {}, \"port\": 1}", "unknown field \"port\"");
        assert_unwrap_refused("{\"binary_path\": \"/x\", \"prepared\": {}}", "\"binary_path\"");
        assert_unwrap_refused("{\"prepared\": null}", "prepared: must be an object");
        assert_unwrap_refused("{\"prepared\": \"x\"}", "prepared: must be an object");
        assert_unwrap_refused("{\"prepared\": [{}]}", "prepared: must be an object");
        assert_unwrap_refused("{\"prepared\": 1}", "prepared: must be an object");
}

static void assert_model(const char *text, const char *path, const char *ref) {
        json_t *body = parse(text);
        const char *got_path = "unset", *got_ref = "unset";
        char err[256] = "";

        if (pa_reload_model(body, &got_path, &got_ref, err, sizeof(err)) != 0)
                fail_msg("%s refused: %s", text, err);
        if (path)
                assert_string_equal(got_path, path);
        else
                assert_null(got_path);
        if (ref)
                assert_string_equal(got_ref, ref);
        else
                assert_null(got_ref);
        json_decref(body);
}

static void assert_model_refused(const char *text, const char *needle) {
        json_t *body = parse(text);
        const char *path = "unset", *ref = "unset";
        char err[256] = "";

        assert_int_equal(pa_reload_model(body, &path, &ref, err, sizeof(err)), -1);
        if (!strstr(err, needle))
                fail_msg("%s: message \"%s\" does not contain \"%s\"", text, err, needle);
        json_decref(body);
}

static void test_reload_model(void **state) {
        static const char three[] = "exactly one of model_path, model_ref and new_model_ref";

        (void) state;
        assert_model("{\"model_path\": \"/m/a.gguf\"}", "/m/a.gguf", NULL);
        assert_model("{\"model_ref\": \"org/a\"}", NULL, "org/a");
        assert_model("{\"new_model_ref\": \"org/b\"}", NULL, "org/b");
        /* null is absent */
        assert_model("{\"new_model_ref\": \"org/b\", \"model_ref\": null, \"model_path\": null}",
                     NULL, "org/b");
        /* other fields are not this function's */
        assert_model("{\"new_model_ref\": \"org/b\", \"engine_version\": 3}", NULL, "org/b");

        assert_model_refused("{}", three);
        assert_model_refused("{\"new_model_ref\": null}", three);
        assert_model_refused("{\"model_ref\": \"a\", \"new_model_ref\": \"b\"}", ", got 2");
        assert_model_refused("{\"model_path\": \"/a\", \"new_model_ref\": \"b\"}", three);
        assert_model_refused("{\"model_path\": \"/a\", \"model_ref\": \"b\"}", three);
        assert_model_refused("{\"model_path\": \"/a\", \"model_ref\": \"b\", \"new_model_ref\": \"c\"}",
                             ", got 3");
        assert_model_refused("{\"new_model_ref\": 1}", "new_model_ref: must be a non-empty string");
        assert_model_refused("{\"new_model_ref\": \"\"}", "new_model_ref: must be a non-empty string");
        assert_model_refused("{\"new_model_ref\": \"a\\u0000b\"}", "new_model_ref: must be a non-empty string");
        assert_model_refused("{\"new_model_ref\": \"a b\"}", "new_model_ref: must be a reference without spaces");
        assert_model_refused("{\"model_ref\": \"a\\tb\"}", "model_ref: must be a reference without spaces");
        assert_model_refused("{\"model_path\": []}", "model_path: must be a non-empty string");
}

static void assert_preload_failure(int rc, const char *message, pa_code code, int status,
                                   const char *shown) {
        char buf[512];

        assert_int_equal(pa_preload_failure(rc, message, buf, sizeof(buf)), code);
        assert_int_equal(pa_code_to_status(code), status);
        assert_string_equal(buf, shown);
}

/* The code of a failed preload is the services' code; the words that come
 * with it are shown, never read. Each message below says something its
 * code does not. */
static void test_preload_failure_code_ignores_the_words(void **state) {
        static const char gpu_only[] = "preflight failed: GPU-only enforcement: pool p needs GPU0";
        static const char health[] = "health check failed: not ready within the startup timeout";

        (void) state;
        assert_preload_failure(PS_E_START_FAILED, health, PA_CODE_PRELOAD_FAILED, 500,
                               "preload failed: health check failed: not ready within the "
                               "startup timeout");
        assert_preload_failure(PS_E_START_FAILED, gpu_only, PA_CODE_PRELOAD_FAILED, 500,
                               "preload failed: preflight failed: GPU-only enforcement: pool p "
                               "needs GPU0");
        assert_preload_failure(PS_E_HEALTH_CHECK, "exited with code 3", PA_CODE_HEALTH_CHECK_FAILED,
                               500, "exited with code 3");
        assert_preload_failure(PS_E_PREFLIGHT, gpu_only, PA_CODE_PREFLIGHT_FAILED, 503, gpu_only);
        assert_preload_failure(PS_E_GPU_ONLY, "preflight failed: insufficient VRAM",
                               PA_CODE_GPU_ONLY, 503, "preflight failed: insufficient VRAM");
        assert_preload_failure(PS_E_START_FAILED, "stopped", PA_CODE_PRELOAD_FAILED, 500,
                               "preload failed: stopped");
        /* the same words under every code: only the code moves the status */
        for (int rc = PS_E_INVALID; rc <= PS_E_ENGINE_FAILED; rc++) {
                char a[512], b[512];

                assert_int_equal(pa_preload_failure(rc, health, a, sizeof(a)),
                                 pa_preload_failure(rc, gpu_only, b, sizeof(b)));
                assert_int_equal(pa_preload_failure(rc, health, a, sizeof(a)),
                                 pa_code_from_services(rc));
        }
        assert_preload_failure(-ENOMEM, "out of memory", PA_CODE_INTERNAL, 500, "out of memory");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_routes),
                cmocka_unit_test(test_preload_routes),
                cmocka_unit_test(test_no_duplicate_routes),
                cmocka_unit_test(test_preload_unwrap),
                cmocka_unit_test(test_reload_model),
                cmocka_unit_test(test_preload_failure_code_ignores_the_words),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
