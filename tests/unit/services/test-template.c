/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/strv.h"
#include "base/template.h"
#include "pool-services/base/errors.h"

#define KNOWN "(known: {model_path}, {port}, {slots}, {host}, {tensor_split}, {replica_id}, " \
              "{pool_id}, {model_id})"

static const ps_template_vars every = {
        .model_path = "/models/a.gguf",
        .model_id = "a",
        .host = "127.0.0.1",
        .tensor_split = "0.75,0.25",
        .replica_id = "r1",
        .pool_id = "big",
        .port = 8082,
        .slots = 4,
};

static void assert_renders(const char *tmpl, const ps_template_vars *v, const char *want) {
        char *out = NULL, why[512] = "";

        if (ps_template_render(tmpl, v, &out, why, sizeof(why)) != 0)
                fail_msg("%s: %s", tmpl, why);
        assert_string_equal(out, want);
        free(out);
}

static void assert_refused(const char *tmpl, const ps_template_vars *v, const char *want) {
        char *out = NULL, why[512] = "";

        assert_int_equal(ps_template_render(tmpl, v, &out, why, sizeof(why)), PS_E_INVALID);
        assert_null(out);
        assert_string_equal(why, want);
}

static void test_placeholders(void **state) {
        (void) state;
        assert_renders("{model_path}", &every, "/models/a.gguf");
        assert_renders("--port={port}", &every, "--port=8082");
        assert_renders("{slots}", &every, "4");
        assert_renders("http://{host}:{port}/", &every, "http://127.0.0.1:8082/");
        assert_renders("-ts={tensor_split}", &every, "-ts=0.75,0.25");
        assert_renders("{pool_id}/{replica_id}", &every, "big/r1");
        assert_renders("{model_id}", &every, "a");
        assert_renders("plain", &every, "plain");
        assert_renders("", &every, "");
}

static void test_escapes(void **state) {
        (void) state;
        assert_renders("{{port}}", &every, "{port}");
        assert_renders("{{{port}}}", &every, "{8082}");
        assert_renders("{{", &every, "{");
        assert_renders("}}", &every, "}");
        /* a lone '}' is literal, so is one after a placeholder */
        assert_renders("a}b", &every, "a}b");
        assert_renders("}", &every, "}");
        assert_renders("{port}}", &every, "8082}");
        assert_renders("}}}", &every, "}}");
}

static void test_unknown_placeholder(void **state) {
        char *tmpls[] = { (char *) "--port", (char *) "{modelpath}" }, **out = NULL, why[512] = "";

        (void) state;
        assert_refused("-m {modelpath}", &every, "unknown placeholder {modelpath} " KNOWN);
        assert_refused("{}", &every, "unknown placeholder {} " KNOWN);
        assert_refused("{a{port}", &every, "unknown placeholder {a{port} " KNOWN);
        /* a long name is cut in the message */
        assert_refused("{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}", &every,
                       "unknown placeholder {aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa} " KNOWN);
        /* the message names the argument */
        assert_int_equal(ps_template_render_all(tmpls, 2, &every, "flags", &out, why, sizeof(why)),
                         PS_E_INVALID);
        assert_null(out);
        assert_string_equal(why, "flags[1]: unknown placeholder {modelpath} " KNOWN);
}

static void test_unterminated(void **state) {
        (void) state;
        assert_refused("--port={port", &every,
                       "unterminated placeholder in \"--port={port\" (write {{ for a literal brace)");
        assert_refused("{", &every, "unterminated placeholder in \"{\" (write {{ for a literal brace)");
        assert_refused("{{{", &every,
                       "unterminated placeholder in \"{{{\" (write {{ for a literal brace)");
}

static void test_missing_values(void **state) {
        ps_template_vars v = every;

        (void) state;
        v.model_path = NULL;
        v.tensor_split = NULL;
        /* with a pool to name, the message names its field */
        v.where = "pools[0]";
        assert_refused("-m={model_path}", &v, "{model_path} is used but pools[0].model_path is not set");
        assert_refused("{tensor_split}", &v, "{tensor_split} is used but pools[0].split is not set");
        v.where = NULL;
        assert_refused("{tensor_split}", &v, "{tensor_split} is used but has no value");
        /* unused, a missing value is no error */
        assert_renders("--port {{model_path}} {port}", &v, "--port {model_path} 8082");
}

static void test_render_all(void **state) {
        char *tmpls[] = { (char *) "--port", (char *) "{port}", (char *) "--alias",
                          (char *) "{pool_id}/{replica_id}" };
        char **out = NULL, *dummy, why[512] = "";

        (void) state;
        assert_int_equal(ps_template_render_all(tmpls, 4, &every, "args", &out, why, sizeof(why)), 0);
        assert_string_equal(out[1], "8082");
        assert_string_equal(out[3], "big/r1");
        ps_strv_free(out, 4);
        out = &dummy;
        assert_int_equal(ps_template_render_all(NULL, 0, &every, "args", &out, why, sizeof(why)), 0);
        assert_null(out);
}

static void test_uses(void **state) {
        (void) state;
        assert_true(ps_template_uses("{port}", "port"));
        assert_true(ps_template_uses("--port={port}", "port"));
        assert_true(ps_template_uses("{{{port}}}", "port"));
        assert_false(ps_template_uses("{{port}}", "port"));
        assert_false(ps_template_uses("{ports}", "port"));
        assert_false(ps_template_uses("8082", "port"));
        assert_false(ps_template_uses("--port={port", "port"));
        assert_true(ps_template_uses("{model_path}", "model_path"));
}

static void test_escape_renders_back(void **state) {
        static const char *const texts[] = { "{port}", "{{", "}}", "a}b", "}{", "{", "plain", "" };

        (void) state;
        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                char *t = ps_template_escape(texts[i]);

                assert_non_null(t);
                assert_false(ps_template_uses(t, "port"));
                assert_renders(t, &every, texts[i]);
                free(t);
        }
}

static void assert_templates(char **got, const char *const *want, size_t n) {
        for (size_t i = 0; i < n; i++)
                assert_string_equal(got[i], want[i]);
}

/* Only the values of known flags that equal their variable become one. */
static void test_from_argv(void **state) {
        static const char *const argv[] = {
                "--port", "8082", "--ctx-size", "8082", "-m", "/models/a.gguf", "--host",
                "127.0.0.1", "-np", "4", "--alias", "{port}", "--port=8082", "{{", "8082",
                "--parallel=4", "--model=/models/a.gguf",
        };
        static const char *const want[] = {
                "--port", "{port}", "--ctx-size", "8082", "-m", "{model_path}", "--host",
                "{host}", "-np", "{slots}", "--alias", "{{port}}", "--port={port}", "{{{{", "8082",
                "--parallel={slots}", "--model={model_path}",
        };
        static const char *const moved[] = {
                "--port", "9000", "--ctx-size", "8082", "-m", "/models/b.gguf", "--host",
                "127.0.0.1", "-np", "4", "--alias", "{port}", "--port=9000", "{{", "8082",
                "--parallel=4", "--model=/models/b.gguf",
        };
        const size_t n = sizeof(argv) / sizeof(argv[0]);
        ps_template_vars v = every;
        char **out = NULL, **rendered = NULL, why[512];

        (void) state;
        assert_int_equal(ps_template_from_argv(argv, n, &v, &out), 0);
        assert_templates(out, want, n);
        /* as they were, and with the variables changed nothing else moves */
        assert_int_equal(ps_template_render_all(out, n, &v, "flags", &rendered, why, sizeof(why)), 0);
        assert_templates(rendered, argv, n);
        ps_strv_free(rendered, n);
        v.port = 9000;
        v.model_path = "/models/b.gguf";
        assert_int_equal(ps_template_render_all(out, n, &v, "flags", &rendered, why, sizeof(why)), 0);
        assert_templates(rendered, moved, n);
        ps_strv_free(rendered, n);
        ps_strv_free(out, n);
}

static void test_from_argv_keeps_what_differs(void **state) {
        static const char *const argv[] = {
                "--port", "08082", "-m", "/models/other.gguf", "--parallel", "2", "-c", "8082",
                "--host=localhost", "8082",
        };
        static const char *const want[] = {
                "--port", "08082", "-m", "/models/other.gguf", "--parallel", "2", "-c", "8082",
                "--host=localhost", "8082",
        };
        const size_t n = sizeof(argv) / sizeof(argv[0]);
        ps_template_vars v = every;
        char **out = NULL, *dummy;

        (void) state;
        assert_int_equal(ps_template_from_argv(argv, n, &v, &out), 0);
        assert_templates(out, want, n);
        for (size_t i = 0; i < n; i++)
                assert_false(ps_template_uses(out[i], "port"));
        ps_strv_free(out, n);
        /* no model_path: "-m" keeps its value */
        v.model_path = NULL;
        assert_int_equal(ps_template_from_argv((const char *const[]) { "-m", "x" }, 2, &v, &out), 0);
        assert_string_equal(out[1], "x");
        ps_strv_free(out, 2);
        out = &dummy;
        assert_int_equal(ps_template_from_argv(NULL, 0, &v, &out), 0);
        assert_null(out);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_placeholders),
                cmocka_unit_test(test_escapes),
                cmocka_unit_test(test_unknown_placeholder),
                cmocka_unit_test(test_unterminated),
                cmocka_unit_test(test_missing_values),
                cmocka_unit_test(test_render_all),
                cmocka_unit_test(test_uses),
                cmocka_unit_test(test_escape_renders_back),
                cmocka_unit_test(test_from_argv),
                cmocka_unit_test(test_from_argv_keeps_what_differs),
        };

        return cmocka_run_group_tests_name("services/template", tests, NULL, NULL);
}
