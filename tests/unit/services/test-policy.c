/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pool-services/conf/policy.h"

/* Applies `text` to a fresh policy; returns the result, err filled. */
static int apply(ps_policy *p, const char *text, char *err, size_t errlen) {
        json_error_t jerr;
        json_t *doc = json_loads(text, JSON_DECODE_ANY, &jerr);
        int r;

        assert_non_null(doc);
        err[0] = '\0';
        r = ps_policy_apply_json(p, doc, "defaults", err, errlen);
        json_decref(doc);
        return r;
}

static json_int_t get_int(const ps_policy *p, const char *section, const char *key) {
        json_t *j = ps_policy_to_json(p);
        json_t *v = section ? json_object_get(json_object_get(j, section), key)
                            : json_object_get(j, key);
        json_int_t r = json_integer_value(v);

        json_decref(j);
        return r;
}

static void test_defaults_are_the_design_values(void **state) {
        ps_policy *p = ps_policy_new();
        json_t *j = ps_policy_to_json(p);

        (void) state;
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "health"), "path")),
                            "/health");
        assert_true(json_is_true(json_object_get(json_object_get(j, "health"), "verify_listener")));
        json_decref(j);
        assert_int_equal(get_int(p, "health", "interval_ms"), 1000);
        assert_int_equal(get_int(p, "health", "startup_timeout_ms"), 120000);
        assert_int_equal(get_int(p, "health", "failure_threshold"), 3);
        assert_int_equal(get_int(p, "backoff", "initial_ms"), 1000);
        assert_int_equal(get_int(p, "backoff", "max_ms"), 60000);
        assert_int_equal(get_int(p, "backoff", "stable_reset_ms"), 300000);
        assert_int_equal(get_int(p, "breaker", "threshold"), 5);
        assert_int_equal(get_int(p, "breaker", "open_ms"), 300000);
        assert_int_equal(get_int(p, "storm", "limit"), 10);
        assert_int_equal(get_int(p, "storm", "window_ms"), 60000);
        assert_int_equal(get_int(p, NULL, "stop_grace_ms"), 5000);
        assert_int_equal(get_int(p, NULL, "lease_ttl_ms"), 600000);
        ps_policy_free(p);
}

static void test_apply_changes_only_given_keys(void **state) {
        ps_policy *p = ps_policy_new();
        char err[256];

        (void) state;
        assert_int_equal(apply(p, "{\"health\": {\"interval_ms\": 50},"
                                  " \"backoff\": {\"class_multipliers\": {\"vram_oom\": 3}},"
                                  " \"stop_grace_ms\": 200}", err, sizeof(err)), 0);
        assert_int_equal(get_int(p, "health", "interval_ms"), 50);
        assert_int_equal(get_int(p, "health", "timeout_ms"), 1000);
        assert_int_equal(get_int(p, NULL, "stop_grace_ms"), 200);
        ps_policy_free(p);
}

static void test_verify_listener_can_be_turned_off(void **state) {
        ps_policy *p = ps_policy_new();
        char err[256];
        json_t *j;

        (void) state;
        assert_int_equal(apply(p, "{\"health\": {\"verify_listener\": 1}}", err, sizeof(err)),
                         -EINVAL);
        assert_string_equal(err, "defaults.health.verify_listener: must be true or false, "
                                 "got an integer");
        assert_int_equal(apply(p, "{\"health\": {\"verify_listener\": false}}", err,
                               sizeof(err)), 0);
        j = ps_policy_to_json(p);
        assert_true(json_is_false(json_object_get(json_object_get(j, "health"), "verify_listener")));
        json_decref(j);
        ps_policy_free(p);
}

static void test_errors_name_the_place_and_keep_the_policy(void **state) {
        static const struct {
                const char *json;
                const char *message;
        } cases[] = {
                { "{\"health\": {\"interval\": 5}}", "defaults.health.interval: unknown key" },
                { "{\"colour\": 1}", "defaults.colour: unknown key" },
                { "{\"health\": 5}", "defaults.health: must be an object, got an integer" },
                { "{\"stop_grace_ms\": 5000.0}", "defaults.stop_grace_ms: must be an integer, got a real number" },
                { "{\"stop_grace_ms\": -1}", "defaults.stop_grace_ms: must be >= 0, got -1" },
                { "{\"backoff\": {\"factor\": \"2\"}}", "defaults.backoff.factor: must be a number, got a string" },
                { "{\"backoff\": {\"factor\": 0.5}}", "defaults.backoff.factor" },
                { "{\"breaker\": {\"separate_gpu_circuit\": 1}}", "must be true or false" },
                { "{\"backoff\": {\"class_multipliers\": {\"cosmic_ray\": 2}}}", "cosmic_ray: unknown crash class" },
                { "{\"storm\": {\"window_ms\": 0}}", "defaults.storm.window_ms" },
                { "{\"health\": {\"path\": \"health\"}}", "must be a URL path starting with '/'" },
                { "[1]", "defaults: must be an object, got an array" },
                { "{\"restart\": \"sometimes\"}",
                  "defaults.restart: must be \"on-failure\", \"always\" or \"never\"" },
                { "{\"restart\": true}", "defaults.restart: must be" },
        };
        char err[256];

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                ps_policy *p = ps_policy_new();

                assert_int_equal(apply(p, "{\"health\": {\"interval_ms\": 77}}", err, sizeof(err)), 0);
                if (apply(p, cases[i].json, err, sizeof(err)) != -EINVAL)
                        fail_msg("accepted %s", cases[i].json);
                if (!strstr(err, cases[i].message))
                        fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].json, err, cases[i].message);
                /* nothing half-applied */
                assert_int_equal(get_int(p, "health", "interval_ms"), 77);
                ps_policy_free(p);
        }
}

static const char *restart_of(const ps_policy *p, char *buf, size_t size) {
        json_t *j = ps_policy_to_json(p);

        snprintf(buf, size, "%s", json_string_value(json_object_get(j, "restart")));
        json_decref(j);
        return buf;
}

static void test_restart_mode_is_read_and_shown(void **state) {
        ps_policy *p = ps_policy_new();
        char err[256], got[32];

        (void) state;
        assert_string_equal(restart_of(p, got, sizeof(got)), "on-failure");
        assert_int_equal(apply(p, "{\"restart\": \"always\"}", err, sizeof(err)), 0);
        assert_string_equal(restart_of(p, got, sizeof(got)), "always");
        assert_int_equal(apply(p, "{\"restart\": \"never\"}", err, sizeof(err)), 0);
        assert_string_equal(restart_of(p, got, sizeof(got)), "never");
        ps_policy_free(p);
}

static void test_copy_is_independent(void **state) {
        ps_policy *p = ps_policy_new(), *c;
        char err[256];

        (void) state;
        c = ps_policy_copy(p);
        assert_int_equal(apply(c, "{\"breaker\": {\"threshold\": 2}}", err, sizeof(err)), 0);
        assert_int_equal(get_int(p, "breaker", "threshold"), 5);
        assert_int_equal(get_int(c, "breaker", "threshold"), 2);
        ps_policy_free(p);
        ps_policy_free(c);
        assert_null(ps_policy_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults_are_the_design_values),
                cmocka_unit_test(test_apply_changes_only_given_keys),
                cmocka_unit_test(test_verify_listener_can_be_turned_off),
                cmocka_unit_test(test_errors_name_the_place_and_keep_the_policy),
                cmocka_unit_test(test_restart_mode_is_read_and_shown),
                cmocka_unit_test(test_copy_is_independent),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
