/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool-services/conf/prepared.h"

/* A node allowing /bin/sh, with two fake GPUs; require as given. */
static ps_config *node(bool require, int n_devices) {
        char text[1024], err[256];
        ps_config *config = NULL;

        snprintf(text, sizeof(text),
                 "{\"engines\": {\"allow\": [\"/bin/sh\"]},"
                 " \"models\": {\"allow\": [\"/tmp/\", \"/nonexistent/\"]},"
                 " \"gpu\": {\"backend\": \"fake\", \"require\": %s, \"devices\": [%s]},"
                 " \"defaults\": {\"health\": {\"path\": \"/ready\"}}}",
                 require ? "true" : "false",
                 n_devices == 0 ? ""
                 : "{\"index\": 0, \"uuid\": \"GPU-a\", \"name\": \"A\","
                   " \"compute_capability\": \"8.9\", \"vram_total_bytes\": 1000,"
                   " \"vram_free_bytes\": 1000},"
                   "{\"index\": 1, \"uuid\": \"GPU-b\", \"name\": \"B\","
                   " \"compute_capability\": \"8.6\", \"vram_total_bytes\": 500,"
                   " \"vram_free_bytes\": 500}");
        assert_int_equal(ps_config_load_string(text, "/", &config, err, sizeof(err)), 0);
        return config;
}

/* Parses text for pool "p"; returns the code, *ret the spec on 0. */
static int parse(const ps_config *config, const char *text, ps_engine_spec **ret,
                 char *err, size_t errlen) {
        json_error_t jerr;
        json_t *body = json_loads(text, 0, &jerr);
        int rc;

        assert_non_null(body);
        *ret = NULL;
        rc = ps_prepared_engine_parse(body, "p", config, ret, err, errlen);
        json_decref(body);
        return rc;
}

static void test_defaults(void **state) {
        ps_config *config = node(true, 2);
        ps_engine_spec *spec;
        char err[256];

        (void) state;
        assert_int_equal(parse(config, "{\"binary_path\": \"/bin/sh\", \"port\": 8081}",
                               &spec, err, sizeof(err)), 0);
        assert_string_equal(spec->pool_id, "p");
        assert_string_equal(spec->replica_id, "r0");
        assert_string_equal(spec->host, "127.0.0.1");
        assert_int_equal(spec->port, 8081);
        assert_int_equal(spec->slots, 1);
        assert_int_equal(spec->n_flags, 0);
        /* every device of the inventory, and the policy's health path */
        assert_string_equal(spec->device_mask, "0,1");
        assert_string_equal(spec->cuda_visible_devices, "0,1");
        assert_string_equal(spec->health_path, "/ready");
        assert_null(spec->model_path);
        ps_engine_spec_free(spec);
        ps_config_free(config);
}

static void test_every_field(void **state) {
        ps_config *config = node(false, 2);
        char model[] = "/tmp/prepared-model-XXXXXX", text[1024], err[256];
        ps_engine_spec *spec;
        int fd = mkstemp(model);

        (void) state;
        assert_true(fd >= 0);
        close(fd);
        snprintf(text, sizeof(text),
                 "{\"binary_path\": \"/bin/sh\", \"port\": 9000, \"pool_id\": \"p\","
                 " \"replica_id\": \"r3\", \"host\": \"127.0.0.2\", \"flags\": [\"-c\", \"x\"],"
                 " \"model_path\": \"%s\", \"engine\": \"vllm\", \"engine_version\": \"0.6\","
                 " \"model_digest\": \"sha256:ab\", \"device_mask\": \"GPU1\", \"slots\": 8,"
                 " \"env\": {\"LLAMA_ARG_A\": \"1\", \"GGML_B\": \"\"}, \"workdir\": \"/tmp\"}", model);
        assert_int_equal(parse(config, text, &spec, err, sizeof(err)), 0);
        assert_string_equal(spec->replica_id, "r3");
        assert_string_equal(spec->host, "127.0.0.2");
        assert_int_equal(spec->n_flags, 2);
        assert_string_equal(spec->flags[1], "x");
        assert_string_equal(spec->model_path, model);
        assert_string_equal(spec->model_id, strrchr(model, '/') + 1);
        assert_string_equal(spec->engine, "vllm");
        assert_string_equal(spec->model_digest, "sha256:ab");
        assert_string_equal(spec->device_mask, "1");
        assert_string_equal(spec->cuda_visible_devices, "1");
        assert_int_equal(spec->slots, 8);
        assert_int_equal(spec->n_env, 2);
        assert_string_equal(spec->env[0], "LLAMA_ARG_A=1");
        assert_string_equal(spec->env[1], "GGML_B=");
        /* the binary is kept as the file checked: its real path */
        {
                char *real = realpath("/bin/sh", NULL);

                assert_non_null(real);
                assert_string_equal(spec->binary_path, real);
                free(real);
        }
        assert_string_equal(spec->workdir, "/tmp");
        ps_engine_spec_free(spec);
        unlink(model);
        ps_config_free(config);
}

/* The argv the spec renders to, after the binary, NULL-terminated. */
static void assert_argv(const ps_engine_spec *spec, const char *const *want) {
        char **argv = NULL, err[256];
        size_t i;

        if (ps_engine_spec_argv(spec, &argv, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        for (i = 0; want[i]; i++) {
                assert_non_null(argv[i + 1]);
                assert_string_equal(argv[i + 1], want[i]);
        }
        assert_null(argv[i + 1]);
        free(argv);
}

/* An API PreparedEngine's flags are a literal argv: only the values of
 * --port, -m, --parallel and --host that are the spec's own become
 * variables; braces stay braces. */
static void test_flags_are_literal(void **state) {
        ps_config *config = node(false, 2);
        char model[] = "/tmp/prepared-model-XXXXXX", text[1024], err[256];
        ps_engine_spec *spec;
        int fd = mkstemp(model);

        (void) state;
        assert_true(fd >= 0);
        close(fd);
        snprintf(text, sizeof(text),
                 "{\"binary_path\": \"/bin/sh\", \"port\": 8081, \"slots\": 2, \"model_path\": \"%s\","
                 " \"flags\": [\"--port\", \"8081\", \"--ctx-size\", \"8081\", \"-m\", \"%s\","
                 " \"--alias\", \"{port}\", \"--parallel\", \"2\", \"{{\", \"x}y{\","
                 " \"--host\", \"127.0.0.1\"]}", model, model);
        assert_int_equal(parse(config, text, &spec, err, sizeof(err)), 0);
        assert_int_equal(spec->n_flags, 14);
        assert_string_equal(spec->flags[1], "{port}");
        assert_string_equal(spec->flags[3], "8081");
        assert_string_equal(spec->flags[5], "{model_path}");
        assert_string_equal(spec->flags[7], "{{port}}");
        assert_string_equal(spec->flags[9], "{slots}");
        assert_string_equal(spec->flags[10], "{{{{");
        assert_string_equal(spec->flags[13], "{host}");
        assert_true(ps_engine_spec_takes_port(spec));
        assert_argv(spec, (const char *const[]) {
                "--port", "8081", "--ctx-size", "8081", "-m", model, "--alias", "{port}",
                "--parallel", "2", "{{", "x}y{", "--host", "127.0.0.1", NULL });
        /* moved to the spare port, as a surge does: only --port follows */
        spec->port = 8082;
        assert_argv(spec, (const char *const[]) {
                "--port", "8082", "--ctx-size", "8081", "-m", model, "--alias", "{port}",
                "--parallel", "2", "{{", "x}y{", "--host", "127.0.0.1", NULL });
        ps_engine_spec_free(spec);

        /* a --port that is not the spec's port is no port variable */
        assert_int_equal(parse(config, "{\"binary_path\": \"/bin/sh\", \"port\": 8081,"
                               " \"flags\": [\"--port\", \"08081\", \"-c\", \"8081\"]}",
                               &spec, err, sizeof(err)), 0);
        assert_false(ps_engine_spec_takes_port(spec));
        assert_argv(spec, (const char *const[]) { "--port", "08081", "-c", "8081", NULL });
        ps_engine_spec_free(spec);
        assert_int_equal(parse(config, "{\"binary_path\": \"/bin/sh\", \"port\": 8081,"
                               " \"flags\": [\"--port=8081\"]}", &spec, err, sizeof(err)), 0);
        assert_true(ps_engine_spec_takes_port(spec));
        ps_engine_spec_free(spec);
        unlink(model);
        ps_config_free(config);
}

static void test_refusals(void **state) {
        static const struct {
                const char *body;
                int code;
                const char *words;
        } cases[] = {
                { "{\"port\": 1}", PS_E_INVALID, "binary_path: is required" },
                { "{\"binary_path\": \"/bin/sh\"}", PS_E_INVALID, "port: is required" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 0}", PS_E_INVALID, "port: must be between 1 and 65535, got 0" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1.5}", PS_E_INVALID, "port: must be an integer" },
                { "{\"binary_path\": 7, \"port\": 1}", PS_E_INVALID, "binary_path: must be a string" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"x\": 1}", PS_E_INVALID, "unknown field \"x\"" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"pool_id\": \"q\"}", PS_E_INVALID, "differs" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"replica_id\": \"a/b\"}", PS_E_INVALID, "replica_id" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"slots\": 4097}", PS_E_INVALID, "slots" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"flags\": [\"a\", null]}", PS_E_INVALID, "flags[1]" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"env\": {\"A=B\": \"1\"}}", PS_E_INVALID, "variable name" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"env\": {\"CUDA_VISIBLE_DEVICES\": \"1\"}}", PS_E_INVALID, "device_mask" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"model_path\": \"/nonexistent/m.gguf\"}", PS_E_INVALID, "No such file" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"device_mask\": \"5\"}", PS_E_INVALID, "5" },
                { "{\"binary_path\": \"/bin/bash\", \"port\": 1}", PS_E_FORBIDDEN, "/bin/bash" },
                { "{\"binary_path\": \"/bin/../bin/sh\", \"port\": 1}", PS_E_INVALID, ".." },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"env\": {\"LD_PRELOAD\": \"/tmp/evil.so\"}}", PS_E_INVALID, "env.LD_PRELOAD" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"env\": {\"PYTHONPATH\": \"/tmp\"}}", PS_E_INVALID, "env.PYTHONPATH" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"env\": {\"A\": \"1\"}}", PS_E_INVALID, "engines.env_allow" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"host\": \"10.1.2.3\"}", PS_E_INVALID, "loopback" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"host\": \"127.0.0.1:19400/health?x=\"}", PS_E_INVALID, "host: must be an IP address" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"host\": \"example.com\"}", PS_E_INVALID, "not a host name" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"model_path\": \"/etc/shadow\"}", PS_E_MODEL_FORBIDDEN, "models.allow" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"workdir\": \"/etc\"}", PS_E_MODEL_FORBIDDEN, "workdir" },
                { "{\"binary_path\": \"/bin/sh\", \"port\": 1, \"device_mask\": \"none\"}", PS_E_GPU_ONLY, "GPU-only enforcement:" },
        };
        ps_config *config = node(true, 2);

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                ps_engine_spec *spec;
                char err[256] = "";
                int rc = parse(config, cases[i].body, &spec, err, sizeof(err));

                if (rc != cases[i].code || !strstr(err, cases[i].words))
                        fail_msg("%s: got %d \"%s\", expected %d mentioning \"%s\"", cases[i].body,
                                 rc, err, cases[i].code, cases[i].words);
                assert_null(spec);
        }
        ps_config_free(config);
}

static void test_gpu_only(void **state) {
        ps_config *none_required = node(true, 0), *none_optional = node(false, 0);
        ps_engine_spec *spec;
        char err[256];

        (void) state;
        assert_int_equal(parse(none_required, "{\"binary_path\": \"/bin/sh\", \"port\": 1}",
                               &spec, err, sizeof(err)), PS_E_GPU_ONLY);
        assert_non_null(strstr(err, "GPU-only enforcement: the node has no GPU"));
        /* Without gpu.require, no device means mask none and an empty
         * CUDA_VISIBLE_DEVICES. */
        assert_int_equal(parse(none_optional, "{\"binary_path\": \"/bin/sh\", \"port\": 1}",
                               &spec, err, sizeof(err)), 0);
        assert_string_equal(spec->device_mask, "none");
        assert_string_equal(spec->cuda_visible_devices, "");
        ps_engine_spec_free(spec);
        ps_config_free(none_required);
        ps_config_free(none_optional);
}

static void test_ids_and_policy(void **state) {
        char err[256];
        ps_config *config = node(false, 0);

        (void) state;
        assert_int_equal(ps_id_check("llama-7b.q4_K", "pool id", err, sizeof(err)), 0);
        assert_int_equal(ps_id_check("-x", "pool id", err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "pool id"));
        assert_int_equal(ps_id_check("", "pool id", err, sizeof(err)), PS_E_INVALID);
        /* a pool not in the config runs under the defaults */
        assert_ptr_equal(ps_prepared_engine_policy(config, "unknown"), config->defaults);
        ps_config_free(config);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_every_field),
                cmocka_unit_test(test_flags_are_literal),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_gpu_only),
                cmocka_unit_test(test_ids_and_policy),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
