/* SPDX-License-Identifier: MIT */
/*
 * The plan of an engine start, built without opening, writing or forking
 * anything: the argv rendered from the spec's templates, an environment
 * built from nothing (no daemon secret leaks into an engine), the runtime
 * file names, and every refusal named before a process could exist.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake-node.h"

static ps_engine_options opts(void) {
        return (ps_engine_options) { .runtime_dir = "/run/pool-managerd" };
}

static const char *env_of(const ps_engine_plan *plan, const char *name) {
        size_t n = strlen(name);

        for (char **v = plan->envp; *v; v++)
                if (strncmp(*v, name, n) == 0 && (*v)[n] == '=')
                        return *v + n + 1;
        return NULL;
}

static size_t env_count(const ps_engine_plan *plan, const char *name) {
        size_t n = strlen(name), k = 0;

        for (char **v = plan->envp; *v; v++)
                k += strncmp(*v, name, n) == 0 && (*v)[n] == '=';
        return k;
}

static void test_argv_and_files_from_the_spec(void **state) {
        ps_engine_spec *spec = fake_spec("chat", "r0", 8081, 4);
        ps_engine_options o = opts();
        ps_engine_plan *plan = NULL;
        const char *const want[] = {
                "/opt/engines/llama-server", "--port", "8081", "-m", "/models/tiny.gguf",
                "--parallel", "4", NULL,
        };

        (void) state;
        assert_int_equal(ps_engine_plan_new(spec, &o, &plan, NULL, 0), 0);
        for (size_t i = 0; want[i]; i++)
                assert_string_equal(plan->argv[i], want[i]);
        assert_null(plan->argv[7]);
        assert_string_equal(plan->binary, "/opt/engines/llama-server");
        assert_string_equal(plan->log_path, "/run/pool-managerd/engine-chat_r0.log");
        assert_string_equal(plan->pid_path, "/run/pool-managerd/chat_r0.pid");
        assert_string_equal(plan->workdir, "/run/pool-managerd");
        assert_null(plan->user);
        if (geteuid() != 0)
                assert_false(plan->drop_privileges);
        assert_true(plan->max_fd > 2);
        ps_engine_plan_free(plan);

        /* given names and a workdir win; a surge's files stay apart */
        o.log_name = "engine-chat_r0.surge.log";
        o.pid_name = "chat_r0.surge.pid";
        spec->workdir = strdup("/srv/models");
        assert_non_null(spec->workdir);
        spec->port = 8082;
        assert_int_equal(ps_engine_plan_new(spec, &o, &plan, NULL, 0), 0);
        assert_string_equal(plan->argv[2], "8082");
        assert_string_equal(plan->log_path, "/run/pool-managerd/engine-chat_r0.surge.log");
        assert_string_equal(plan->pid_path, "/run/pool-managerd/chat_r0.surge.pid");
        assert_string_equal(plan->workdir, "/srv/models");
        ps_engine_plan_free(plan);
        ps_engine_spec_free(spec);
}

static void test_environment_is_built_from_nothing(void **state) {
        ps_engine_spec *spec = fake_spec("chat", "r0", 8081, 1);
        char hf[] = "HF_HOME", unset[] = "NOT_SET_ANYWHERE";
        char *pass[] = { hf, unset };
        ps_engine_options o = opts();
        ps_engine_plan *plan = NULL;

        (void) state;
        o.env_pass = pass;
        o.n_env_pass = 2;
        assert_int_equal(setenv("POOL_MANAGERD_API_TOKEN", "secret", 1), 0);
        assert_int_equal(setenv("HF_HOME", "/var/cache/hf", 1), 0);
        assert_int_equal(setenv("LANG", "C.UTF-8", 1), 0);
        assert_int_equal(unsetenv("NOT_SET_ANYWHERE"), 0);
        spec->env = calloc(2, sizeof(*spec->env));
        assert_non_null(spec->env);
        spec->env[0] = strdup("HF_HOME=/srv/hf");        /* the spec's own wins */
        spec->env[1] = strdup("LLAMA_ARG_FLASH_ATTN=1");
        spec->n_env = 2;

        assert_int_equal(ps_engine_plan_new(spec, &o, &plan, NULL, 0), 0);
        assert_null(env_of(plan, "POOL_MANAGERD_API_TOKEN"));
        assert_null(env_of(plan, "NOT_SET_ANYWHERE"));
        assert_string_equal(env_of(plan, "LANG"), "C.UTF-8");
        assert_string_equal(env_of(plan, "HF_HOME"), "/srv/hf");
        assert_int_equal(env_count(plan, "HF_HOME"), 1);
        assert_string_equal(env_of(plan, "LLAMA_ARG_FLASH_ATTN"), "1");
        assert_string_equal(env_of(plan, "CUDA_DEVICE_ORDER"), "PCI_BUS_ID");
        assert_string_equal(env_of(plan, "CUDA_VISIBLE_DEVICES"), "0");
        assert_non_null(env_of(plan, "PATH"));
        ps_engine_plan_free(plan);
        ps_engine_spec_free(spec);
        unsetenv("POOL_MANAGERD_API_TOKEN");
}

static void expect_refusal(ps_engine_spec *spec, const ps_engine_options *o, int rc,
                           const char *words) {
        ps_engine_plan *plan = NULL;
        char err[256] = "";

        assert_int_equal(ps_engine_plan_new(spec, o, &plan, err, sizeof(err)), rc);
        assert_null(plan);
        if (!strstr(err, words))
                fail_msg("\"%s\" does not say \"%s\"", err, words);
}

static void test_refusals_name_the_problem(void **state) {
        ps_engine_spec *spec = fake_spec("chat", "r0", 8081, 1);
        char with_eq[] = "A=B";
        char *bad_pass[] = { with_eq };
        ps_engine_options o = opts();

        (void) state;
        free(spec->flags[3]);
        spec->flags[3] = strdup("{model}");
        expect_refusal(spec, &o, -EINVAL, "{model}");
        free(spec->flags[3]);
        spec->flags[3] = strdup("{model_path}");

        spec->env = calloc(1, sizeof(*spec->env));
        assert_non_null(spec->env);
        spec->env[0] = strdup("NO_EQUALS_SIGN");
        spec->n_env = 1;
        expect_refusal(spec, &o, -EINVAL, "env entry \"NO_EQUALS_SIGN\": not KEY=VALUE");
        free(spec->env[0]);
        spec->env[0] = strdup("OK=1");

        o.env_pass = bad_pass;
        o.n_env_pass = 1;
        expect_refusal(spec, &o, -EINVAL, "env_pass name \"A=B\"");
        o = opts();

        free(spec->replica_id);
        spec->replica_id = NULL;
        expect_refusal(spec, &o, -EINVAL, "pool_id and replica_id are required");
        spec->replica_id = strdup("r0");

        free(spec->binary_path);
        spec->binary_path = NULL;
        expect_refusal(spec, &o, -EINVAL, "binary: no path given");
        expect_refusal(spec, &(ps_engine_options) { 0 }, -EINVAL, "missing argument");
        ps_engine_spec_free(spec);
}

static void test_nothing_is_touched(void **state) {
        ps_engine_spec *spec = fake_spec("chat", "r0", 8081, 1);
        char dir[] = "/tmp/pm-engine-plan-XXXXXX", log[128];
        ps_engine_options o = { .runtime_dir = dir };
        ps_engine_plan *plan = NULL;

        (void) state;
        assert_non_null(mkdtemp(dir));
        assert_int_equal(ps_engine_plan_new(spec, &o, &plan, NULL, 0), 0);
        snprintf(log, sizeof(log), "%s/engine-chat_r0.log", dir);
        assert_string_equal(plan->log_path, log);
        assert_int_equal(access(plan->log_path, F_OK), -1);
        assert_int_equal(access(plan->pid_path, F_OK), -1);
        assert_int_equal(rmdir(dir), 0);       /* still empty */
        assert_null(ps_engine_plan_free(plan));
        assert_null(ps_engine_plan_free(NULL));
        ps_engine_spec_free(spec);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_argv_and_files_from_the_spec),
                cmocka_unit_test(test_environment_is_built_from_nothing),
                cmocka_unit_test(test_refusals_name_the_problem),
                cmocka_unit_test(test_nothing_is_touched),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
