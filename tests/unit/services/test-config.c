/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "pool-services/base/errors.h"

#include "pool-services/conf/config.h"
#include "pool-services/placement/inventory.h"

/* Relative paths in the documents below resolve here. */
#define BASE "/etc/pool-managerd"

#define GIB 1073741824LL

/* Two fake GPUs: 24 GiB and 12 GiB, all free. */
#define FAKE_GPU \
        "\"gpu\": {\"backend\": \"fake\", \"devices\": [" \
        "{\"index\": 0, \"vram_total_bytes\": 25769803776}," \
        "{\"index\": 1, \"vram_total_bytes\": 12884901888}]}"

/* A valid pool "a" on port 8081 without a device mask, with more keys
 * spliced in (keys must not repeat: duplicates are rejected). */
#define POOL_NOMASK(extra) \
        "{\"id\": \"a\", \"engine\": \"llamacpp\", \"engine_version\": \"b1\"," \
        " \"binary\": \"/usr/bin/engine\", \"port\": 8081" extra "}"
/* The same on device 0. */
#define POOL_A(extra) POOL_NOMASK(", \"device_mask\": \"0\"" extra)
/* Pool "b" on port 9081 with the given mask. */
#define POOL_B_ON(mask, extra) \
        "{\"id\": \"b\", \"engine\": \"llamacpp\", \"engine_version\": \"b1\"," \
        " \"binary\": \"/usr/bin/engine\", \"port\": 9081, \"device_mask\": \"" mask "\"" extra "}"
#define POOL_B(extra) POOL_B_ON("1", extra)

#define ONE_POOL(extra) "{" FAKE_GPU ", \"pools\": [" POOL_A(extra) "]}"

/* ---- helpers ---- */

static ps_config *load_ok(const char *text) {
        ps_config *cfg = NULL;
        char err[512] = "";
        int r = ps_config_load_string(text, BASE, &cfg, err, sizeof(err));

        if (r != 0)
                fail_msg("load failed (%d): %s\n%s", r, err, text);
        assert_non_null(cfg);
        return cfg;
}

/* A fake environment: NULL-terminated name, value pairs. */
static const char *fake_getenv(const char *name, void *userdata) {
        const char *const *kv = userdata;

        for (size_t i = 0; kv && kv[i]; i += 2)
                if (strcmp(kv[i], name) == 0)
                        return kv[i + 1];
        return NULL;
}

static json_int_t policy_int(const ps_policy *p, const char *section, const char *key) {
        json_t *j = ps_policy_to_json(p);
        json_t *v = section ? json_object_get(json_object_get(j, section), key)
                            : json_object_get(j, key);
        json_int_t r = json_integer_value(v);

        json_decref(j);
        return r;
}

static bool policy_equal(const ps_policy *a, const ps_policy *b) {
        json_t *ja = ps_policy_to_json(a), *jb = ps_policy_to_json(b);
        bool same = json_equal(ja, jb);

        json_decref(ja);
        json_decref(jb);
        return same;
}

static void assert_defaults(const ps_config *cfg) {
        ps_policy *fresh = ps_policy_new();

        assert_string_equal(cfg->bind, "127.0.0.1:9200");
        assert_string_equal(cfg->bind_source, "default");
        assert_string_equal(cfg->runtime_dir, ".runtime");
        assert_string_equal(cfg->runtime_dir_source, "default");
        assert_int_equal(cfg->profile, PS_PROFILE_HOME);
        assert_int_equal(cfg->shutdown, PS_SHUTDOWN_STOP);
        assert_int_equal(cfg->n_engines_allow, 0);
        assert_null(cfg->engines_user);
        assert_int_equal(cfg->gpu.backend, PS_GPU_BACKEND_AUTO);
        assert_true(cfg->gpu.require);
        assert_int_equal(cfg->gpu.headroom_bytes, 536870912);
        assert_int_equal(cfg->gpu.n_devices, 0);
        assert_non_null(cfg->inventory);
        assert_int_equal(ps_inventory_count(cfg->inventory), 0);
        assert_int_equal(ps_inventory_backend(cfg->inventory), PS_GPU_BACKEND_NONE);
        assert_true(policy_equal(cfg->defaults, fresh));
        assert_int_equal(cfg->n_pools, 0);
        assert_string_equal(cfg->cloud.node_id, "");
        assert_string_equal(cfg->cloud.machine_id, "");
        assert_string_equal(cfg->cloud.address, "");
        assert_string_equal(cfg->cloud.orchestrator_url, "");
        assert_int_equal(cfg->cloud.heartbeat_interval_ms, 10000);
        assert_string_equal(cfg->cloud.token_file, "");
        assert_int_equal(cfg->cloud.n_etcd_endpoints, 0);
        assert_string_equal(cfg->cloud.etcd_prefix, "/pool-managerd/");
        assert_int_equal(cfg->cloud.etcd_ttl_ms, 30000);
        assert_null(cfg->cloud.api_token);
        assert_true(cfg->cloud.register_on_startup);
        assert_false(cfg->advertise_pools_set);
        assert_int_equal(cfg->n_advertise_pools, 0);
        assert_int_equal(cfg->watch_interval_ms, 10000);
        ps_policy_free(fresh);
}

/* ---- defaults ---- */

static void test_no_file_is_an_empty_node_with_defaults(void **state) {
        static const char *const env[] = { NULL };
        ps_config *cfg = NULL;
        char err[256];

        (void) state;
        assert_int_equal(ps_config_load(NULL, fake_getenv, (void *) env, &cfg, err, sizeof(err)), 0);
        assert_defaults(cfg);
        assert_null(cfg->path);
        assert_null(cfg->base_dir);
        ps_config_free(cfg);

        cfg = ps_config_new();
        assert_defaults(cfg);
        ps_config_free(cfg);
}

static void test_empty_document_is_the_defaults(void **state) {
        ps_config *cfg = load_ok("{}");

        (void) state;
        assert_defaults(cfg);
        assert_string_equal(cfg->base_dir, BASE);
        ps_config_free(cfg);

        /* empty sections too */
        cfg = load_ok("{\"engines\": {}, \"gpu\": {}, \"defaults\": {}, \"pools\": [],"
                      " \"cloud\": {\"etcd\": {}}}");
        assert_defaults(cfg);
        ps_config_free(cfg);
}

static void test_pool_defaults(void **state) {
        ps_config *cfg = load_ok(ONE_POOL(""));
        const ps_pool_config *p;

        (void) state;
        assert_int_equal(cfg->n_pools, 1);
        p = &cfg->pools[0];
        assert_string_equal(p->id, "a");
        assert_string_equal(p->engine, "llamacpp");
        assert_string_equal(p->engine_version, "b1");
        assert_string_equal(p->binary, "/usr/bin/engine");
        assert_int_equal(p->n_args, 0);
        assert_null(p->model_path);
        assert_string_equal(p->host, "127.0.0.1");
        assert_int_equal(p->port, 8081);
        assert_int_equal(p->replicas, 1);
        assert_string_equal(p->device_mask, "0");
        assert_string_equal(p->cuda_visible_devices, "0");
        assert_null(p->split);
        assert_null(p->tensor_split);
        assert_int_equal(p->slots, 1);
        assert_int_equal(p->vram_required_bytes, 0);
        assert_int_equal(p->n_env, 0);
        assert_false(p->shared_devices);
        assert_false(p->engine_metrics);
        assert_string_equal(p->engine_metrics_path, "/metrics");
        assert_true(policy_equal(p->policy, cfg->defaults));
        assert_ptr_equal(ps_config_find_pool(cfg, "a"), p);
        assert_null(ps_config_find_pool(cfg, "b"));
        ps_config_free(cfg);
}

static void test_device_defaults(void **state) {
        ps_config *cfg = load_ok("{\"gpu\": {\"backend\": \"fake\", \"devices\": ["
                                 "{\"index\": 3, \"vram_total_bytes\": 1000}]}}");
        const ps_gpu_device *d = &cfg->gpu.devices[0];

        (void) state;
        assert_int_equal(cfg->gpu.n_devices, 1);
        assert_int_equal(d->index, 3);
        assert_string_equal(d->uuid, "GPU-fake-3");
        assert_string_equal(d->name, "Fake GPU 3");
        assert_string_equal(d->pci_bus_id, "");
        assert_int_equal(d->cc_major, 0);
        assert_int_equal(d->cc_minor, 0);
        assert_int_equal(d->vram_total_bytes, 1000);
        assert_int_equal(d->vram_free_bytes, 1000);
        assert_int_equal(ps_inventory_count(cfg->inventory), 1);
        assert_int_equal(ps_inventory_backend(cfg->inventory), PS_GPU_BACKEND_FAKE);
        ps_config_free(cfg);
}

/* ---- every key, set ---- */

static void test_every_key_is_read(void **state) {
        ps_config *cfg = load_ok(
                "{\"bind\": \"127.0.0.1:9300\", \"runtime_dir\": \"/var/lib/pm\","
                " \"profile\": \"cloud\", \"shutdown\": \"keep\","
                " \"engines\": {\"allow\": [\"/usr/local/bin/llama-server\", \"/opt/engines/\"],"
                "               \"user\": \"llama\"},"
                " \"gpu\": {\"backend\": \"fake\", \"require\": false, \"headroom_bytes\": 1024,"
                "          \"devices\": [{\"index\": 0, \"uuid\": \"GPU-8f2c\", \"name\": \"RTX\","
                "                         \"compute_capability\": \"8.9\","
                "                         \"vram_total_bytes\": 2000, \"vram_free_bytes\": 1500}]},"
                " \"defaults\": {\"health\": {\"interval_ms\": 50}, \"lease_ttl_ms\": 1000},"
                " \"pools\": [{\"id\": \"llama-7b\", \"engine\": \"llamacpp\","
                "              \"engine_version\": \"b6000\","
                "              \"binary\": \"/usr/local/bin/llama-server\","
                "              \"args\": [\"-m\", \"{model_path}\", \"--port\", \"{port}\"],"
                "              \"model_path\": \"/models/7b.gguf\", \"host\": \"127.0.0.2\","
                "              \"port\": 8081, \"replicas\": 2, \"device_mask\": \"GPU0\","
                "              \"split\": \"auto\", \"slots\": 4, \"vram_required_bytes\": 100,"
                "              \"env\": {\"A\": \"1\", \"B_2\": \"x=y\"},"
                "              \"policy\": {\"backoff\": {\"initial_ms\": 10}},"
                "              \"shared_devices\": true, \"engine_metrics\": true,"
                "              \"engine_metrics_path\": \"/v2/metrics?format=text\"},"
                "            {\"id\": \"cpu\", \"engine\": \"vllm\", \"engine_version\": \"0.6.1+cu124\","
                "              \"binary\": \"/opt/engines/vllm\", \"port\": 8091,"
                "              \"device_mask\": \"none\"}],"
                " \"cloud\": {\"node_id\": \"node-1\", \"machine_id\": \"abc123\","
                "            \"address\": \"http://10.0.0.5:9200\","
                "            \"orchestrator_url\": \"https://orch:8080\","
                "            \"heartbeat_interval_ms\": 2000, \"token_file\": \"/etc/pm/token\","
                "            \"etcd\": {\"endpoints\": [\"http://etcd:2379\"], \"prefix\": \"/fleet/\","
                "                     \"ttl_ms\": 5000}}}");
        const ps_pool_config *p, *q;

        (void) state;
        assert_string_equal(cfg->bind, "127.0.0.1:9300");
        assert_string_equal(cfg->bind_source, "file");
        assert_string_equal(cfg->runtime_dir, "/var/lib/pm");
        assert_string_equal(cfg->runtime_dir_source, "file");
        assert_int_equal(cfg->profile, PS_PROFILE_CLOUD);
        assert_int_equal(cfg->shutdown, PS_SHUTDOWN_KEEP);
        assert_int_equal(cfg->n_engines_allow, 2);
        assert_string_equal(cfg->engines_allow[0], "/usr/local/bin/llama-server");
        assert_string_equal(cfg->engines_allow[1], "/opt/engines/");
        assert_string_equal(cfg->engines_user, "llama");
        assert_int_equal(cfg->gpu.backend, PS_GPU_BACKEND_FAKE);
        assert_false(cfg->gpu.require);
        assert_int_equal(cfg->gpu.headroom_bytes, 1024);
        assert_string_equal(cfg->gpu.devices[0].uuid, "GPU-8f2c");
        assert_string_equal(cfg->gpu.devices[0].name, "RTX");
        assert_int_equal(cfg->gpu.devices[0].cc_major, 8);
        assert_int_equal(cfg->gpu.devices[0].cc_minor, 9);
        assert_int_equal(cfg->gpu.devices[0].vram_free_bytes, 1500);
        assert_int_equal(policy_int(cfg->defaults, "health", "interval_ms"), 50);
        assert_int_equal(policy_int(cfg->defaults, NULL, "lease_ttl_ms"), 1000);

        assert_int_equal(cfg->n_pools, 2);
        p = &cfg->pools[0];
        assert_int_equal(p->n_args, 4);
        assert_string_equal(p->args[1], "{model_path}");
        assert_string_equal(p->model_path, "/models/7b.gguf");
        assert_string_equal(p->host, "127.0.0.2");
        assert_int_equal(p->replicas, 2);
        assert_string_equal(p->device_mask, "0");
        assert_string_equal(p->split, "auto");
        assert_string_equal(p->tensor_split, "1");
        assert_int_equal(p->slots, 4);
        assert_int_equal(p->vram_required_bytes, 100);
        assert_int_equal(p->n_env, 2);
        assert_string_equal(p->env[0], "A=1");
        assert_string_equal(p->env[1], "B_2=x=y");
        assert_true(p->shared_devices);
        assert_true(p->engine_metrics);
        assert_string_equal(p->engine_metrics_path, "/v2/metrics?format=text");
        /* defaults + its own keys */
        assert_int_equal(policy_int(p->policy, "health", "interval_ms"), 50);
        assert_int_equal(policy_int(p->policy, "backoff", "initial_ms"), 10);
        q = &cfg->pools[1];
        assert_string_equal(q->engine_version, "0.6.1+cu124");
        assert_string_equal(q->device_mask, "none");
        assert_string_equal(q->cuda_visible_devices, "");
        assert_int_equal(policy_int(q->policy, "backoff", "initial_ms"), 1000);

        assert_string_equal(cfg->cloud.node_id, "node-1");
        assert_string_equal(cfg->cloud.machine_id, "abc123");
        assert_string_equal(cfg->cloud.address, "http://10.0.0.5:9200");
        assert_string_equal(cfg->cloud.orchestrator_url, "https://orch:8080");
        assert_int_equal(cfg->cloud.heartbeat_interval_ms, 2000);
        assert_string_equal(cfg->cloud.token_file, "/etc/pm/token");
        assert_int_equal(cfg->cloud.n_etcd_endpoints, 1);
        assert_string_equal(cfg->cloud.etcd_endpoints[0], "http://etcd:2379");
        assert_string_equal(cfg->cloud.etcd_prefix, "/fleet/");
        assert_int_equal(cfg->cloud.etcd_ttl_ms, 5000);
        ps_config_free(cfg);
}

static void test_relative_paths_resolve_against_the_file(void **state) {
        ps_config *cfg = load_ok("{\"runtime_dir\": \"state\", " FAKE_GPU ", \"pools\": ["
                                 "{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
                                 " \"binary\": \"../../../build/./engine\", \"port\": 8081,"
                                 " \"device_mask\": \"0\", \"model_path\": \"models//tiny.gguf\"}],"
                                 " \"cloud\": {\"token_file\": \"token\"}}");
        ps_config *none;
        char err[256];

        (void) state;
        /* ".." stops at the root */
        assert_string_equal(cfg->pools[0].binary, "/build/engine");
        assert_string_equal(cfg->pools[0].model_path, "/etc/pool-managerd/models/tiny.gguf");
        assert_string_equal(cfg->runtime_dir, "/etc/pool-managerd/state");
        assert_string_equal(cfg->cloud.token_file, "/etc/pool-managerd/token");
        ps_config_free(cfg);

        /* Without a file there is nothing to resolve against. */
        assert_int_equal(ps_config_load_string("{\"runtime_dir\": \"state\"}", NULL, &none,
                                               err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "runtime_dir: must be an absolute path (relative paths need a "
                                 "config file to resolve against), got \"state\"");
}

/* ---- errors: each names the place ---- */

typedef struct error_case {
        const char *json;
        const char *message;
} error_case;

#define DEV(extra) "{\"gpu\": {\"backend\": \"fake\", \"devices\": [{\"index\": 0, " \
                   "\"vram_total_bytes\": 1" extra "}]}}"

static const error_case error_cases[] = {
        { "[1]", "config: must be a JSON object, got an array" },
        { "{\"colour\": 1}", "colour: unknown key (did you mean \"cloud\"?)" },
        { "{\"bind\": 9200}", "bind: must be a string, got an integer" },
        { "{\"bind\": \"localhost\"}",
          "bind: expected HOST:PORT (e.g. 127.0.0.1:9200 or [::1]:9200), got \"localhost\"" },
        { "{\"bind\": \"127.0.0.1:70000\"}",
          "bind: expected HOST:PORT (e.g. 127.0.0.1:9200 or [::1]:9200), got \"127.0.0.1:70000\"" },
        { "{\"bind\": \"::1:9200\"}",
          "bind: expected HOST:PORT (e.g. 127.0.0.1:9200 or [::1]:9200), got \"::1:9200\"" },
        { "{\"runtime_dir\": \"\"}", "runtime_dir: must not be empty" },
        { "{\"runtime_dir\": null}", "runtime_dir: must be a string, got null" },
        { "{\"profile\": \"edge\"}", "profile: must be \"home\" or \"cloud\", got \"edge\"" },
        { "{\"shutdown\": true}", "shutdown: must be a string, got a boolean" },
        { "{\"shutdown\": \"kill\"}", "shutdown: must be \"stop\" or \"keep\", got \"kill\"" },
        { "{\"engines\": []}", "engines: must be an object, got an array" },
        { "{\"engines\": {\"allowed\": []}}", "engines.allowed: unknown key (did you mean \"allow\"?)" },
        { "{\"engines\": {\"allow\": \"/bin/x\"}}", "engines.allow: must be an array, got a string" },
        { "{\"engines\": {\"allow\": [\"bin/x\"]}}",
          "engines.allow[0]: must be an absolute path, got \"bin/x\"" },
        { "{\"engines\": {\"allow\": [\"/bin/x\", 2]}}",
          "engines.allow[1]: must be a string, got an integer" },
        { "{\"engines\": {\"user\": \"\"}}", "engines.user: must not be empty" },
        { "{\"gpu\": {\"colour\": 1}}", "gpu.colour: unknown key" },
        { "{\"gpu\": {\"backend\": \"rocm\"}}",
          "gpu.backend: must be \"auto\", \"cuda\", \"fake\" or \"none\", got \"rocm\"" },
        { "{\"gpu\": {\"require\": \"yes\"}}", "gpu.require: must be true or false, got a string" },
        { "{\"gpu\": {\"headroom_bytes\": -1}}", "gpu.headroom_bytes: must be >= 0, got -1" },
        { "{\"gpu\": {\"headroom_bytes\": 5000.0}}",
          "gpu.headroom_bytes: must be an integer, got a real number" },
        { "{\"gpu\": {\"devices\": [{\"index\": 0, \"vram_total_bytes\": 1}]}}",
          "gpu.devices: only the fake backend takes devices (gpu.backend is \"auto\")" },
        { "{\"gpu\": {\"backend\": \"none\", \"devices\": [{\"index\": 0}]}}",
          "gpu.devices: only the fake backend takes devices (gpu.backend is \"none\")" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": [5]}}",
          "gpu.devices[0]: must be an object, got an integer" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": [{\"vram_total_bytes\": 1}]}}",
          "gpu.devices[0].index: required" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": [{\"index\": 0}]}}",
          "gpu.devices[0].vram_total_bytes: required" },
        { DEV(", \"pci_bus_id\": \"0000:01:00.0\""), "gpu.devices[0].pci_bus_id: unknown key" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": [{\"index\": 64, \"vram_total_bytes\": 1}]}}",
          "gpu.devices[0].index: must be 0..63, got 64" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": [{\"index\": 0.0, \"vram_total_bytes\": 1}]}}",
          "gpu.devices[0].index: must be an integer, got a real number" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": [{\"index\": 0, \"vram_total_bytes\": 1},"
          " {\"index\": 0, \"vram_total_bytes\": 1}]}}",
          "gpu.devices[1].index: device 0 is also gpu.devices[0]" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": ["
          "{\"index\": 0, \"uuid\": \"GPU-x\", \"vram_total_bytes\": 1},"
          " {\"index\": 1, \"uuid\": \"gpu-X\", \"vram_total_bytes\": 1}]}}",
          "gpu.devices[1].uuid: must start with \"GPU-\" and be under 64 characters without spaces, "
          "got \"gpu-X\"" },
        { "{\"gpu\": {\"backend\": \"fake\", \"devices\": ["
          "{\"index\": 0, \"uuid\": \"GPU-x\", \"vram_total_bytes\": 1},"
          " {\"index\": 1, \"uuid\": \"GPU-X\", \"vram_total_bytes\": 1}]}}",
          "gpu.devices[1].uuid: GPU-X is also gpu.devices[0]'s" },
        { DEV(", \"vram_free_bytes\": 2"),
          "gpu.devices[0].vram_free_bytes: more than vram_total_bytes (2 > 1)" },
        { DEV(", \"compute_capability\": \"89\""),
          "gpu.devices[0].compute_capability: must look like \"8.9\", got \"89\"" },
        { DEV(", \"compute_capability\": 8.9"),
          "gpu.devices[0].compute_capability: must be a string, got a real number" },
        { "{\"defaults\": {\"health\": {\"interval\": 5}}}", "defaults.health.interval: unknown key" },
        { "{\"defaults\": {\"stop_grace_ms\": 5000.0}}",
          "defaults.stop_grace_ms: must be an integer, got a real number" },
        { "{\"defaults\": 5}", "defaults: must be an object, got an integer" },
        { "{\"pools\": {}}", "pools: must be an array, got an object" },
        { "{\"pools\": [\"a\"]}", "pools[0]: must be an object, got a string" },
        { ONE_POOL(", \"colour\": 1"), "pools[0].colour: unknown key" },
        { "{" FAKE_GPU ", \"pools\": [{\"engine\": \"x\"}]}", "pools[0].id: required" },
        { "{" FAKE_GPU ", \"pools\": [" POOL_A("") ", " POOL_B("") ", {\"id\": \"a/b\"}]}",
          "pools[2].id: pool id \"a/b\": character '/' at position 1 is not allowed "
          "(letters, digits, '.', '_', '-')" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"-a\"}]}",
          "pools[0].id: pool id \"-a\": must start with a letter or digit, not '-'" },
        { "{" FAKE_GPU ", \"pools\": [" POOL_A("") ", " POOL_A("") "]}",
          "pools[1].id: pool id \"a\" is also pools[0]'s" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\"}]}", "pools[0].engine: required" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"\"}]}",
          "pools[0].engine_version: must not be empty" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"llama cpp\"}]}",
          "pools[0].engine: must be at most 255 characters without spaces, got \"llama cpp\"" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\"}]}",
          "pools[0].binary: required" },
        { "{\"engines\": {\"allow\": [\"/usr/local/bin/llama-server\", \"/opt/engines/\"]}, "
          FAKE_GPU ", \"pools\": [" POOL_A("") "]}",
          "pools[0].binary: /usr/bin/engine is not in engines.allow" },
        { "{\"engines\": {\"allow\": [\"/usr/\"]}, " FAKE_GPU ", \"pools\": ["
          "{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/usr/../bin/sh\"}]}",
          "pools[0].binary: /bin/sh is not in engines.allow" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\"}]}",
          "pools[0].port: required" },
        { ONE_POOL(", \"host\": \"a b\""),
          "pools[0].host: must be at most 255 characters without spaces, got \"a b\"" },
        { ONE_POOL(", \"host\": \"http://x\""),
          "pools[0].host: must be an IP address of this node (or \"localhost\"), not a host "
          "name or URL, got \"http://x\"" },
        { ONE_POOL(", \"host\": \"gpu-node.example\""),
          "pools[0].host: must be an IP address of this node (or \"localhost\"), not a host "
          "name or URL, got \"gpu-node.example\"" },
        { ONE_POOL(", \"host\": \"192.0.2.77\""),
          "pools[0].host: 192.0.2.77 is not an address of this node" },
        { ONE_POOL(", \"host\": \"0.0.0.0\""),
          "pools[0].host: 0.0.0.0 is not an address an engine can be reached at; use 127.0.0.1 "
          "or one of the node's addresses" },
        { ONE_POOL(", \"env\": {\"CUDA_DEVICE_ORDER\": \"FASTEST_FIRST\"}"),
          "pools[0].env.CUDA_DEVICE_ORDER: set by the daemon (from device_mask), not here" },
        { "{\"api\": {\"socket\": \"/run/" 
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          ".sock\"}}",
          "api.socket: /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock "
          "is longer than 107 bytes, the most a Unix socket path may have" },
        { "{\"api\": {\"sock\": \"/x\"}}", "api.sock: unknown key (did you mean \"socket\"?)" },
        { "{\"engines\": {\"env_pass\": [\"NOT-A-NAME\"]}}",
          "engines.env_pass[0]: \"NOT-A-NAME\" is not a variable name" },
        { "{\"models\": {\"allow\": [\"models/\"]}}",
          "models.allow[0]: must be an absolute path, got \"models/\"" },
        { "{\"handoff\": {\"max_slots\": 0}}", "handoff.max_slots: must be 1..65535, got 0" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 0}]}",
          "pools[0].port: must be 1..65535, got 0" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 70000}]}",
          "pools[0].port: must be 1..65535, got 70000" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": \"8081\"}]}",
          "pools[0].port: must be an integer, got a string" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 8081.0}]}",
          "pools[0].port: must be an integer, got a real number" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 4294975377}]}",
          "pools[0].port: must be 1..65535, got 4294975377" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 65535}]}",
          "pools[0].port: ports 65535..65536 (replicas and their surge ports) go beyond 65535" },
        { ONE_POOL(", \"replicas\": 0"), "pools[0].replicas: must be 1..256, got 0" },
        { ONE_POOL(", \"slots\": 0"), "pools[0].slots: must be 1..65535, got 0" },
        { ONE_POOL(", \"slots\": 2.5"), "pools[0].slots: must be an integer, got a real number" },
        { ONE_POOL(", \"vram_required_bytes\": -1"),
          "pools[0].vram_required_bytes: must be >= 0, got -1" },
        { "{" FAKE_GPU ", \"pools\": [" POOL_A(", \"replicas\": 2") ", "
          "{\"id\": \"b\", \"engine\": \"x\", \"engine_version\": \"1\", \"binary\": \"/bin/x\","
          " \"port\": 8084, \"device_mask\": \"1\"}]}",
          "pools[1].port: ports 8084..8085 overlap ports 8081..8084 of pools[0] (\"a\"); "
          "replica i listens on port+i, a surge engine on port+replicas+i" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 8081}]}",
          "pools[0].device_mask: required (devices such as \"0\" or \"0,1\", or \"none\")" },
        { "{" FAKE_GPU ", \"pools\": [" POOL_A("") ", {\"id\": \"b\", \"engine\": \"x\","
          " \"engine_version\": \"1\", \"binary\": \"/bin/x\", \"port\": 9000,"
          " \"device_mask\": \"GPU7\"}]}",
          "pools[1].device_mask: GPU7 is not a known device" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 8081, \"device_mask\": \"GPU-nope\"}]}",
          "pools[0].device_mask: GPU-nope is not a known device" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 8081, \"device_mask\": \"0,0\"}]}",
          "pools[0].device_mask: device 0 is listed twice (again as 0)" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 8081, \"device_mask\": \"none\"}]}",
          "pools[0].device_mask: \"none\" (no GPU) needs gpu.require false" },
        /* auto without a device: masks are checked at each start instead
         * (LD_LIBRARY_PATH holds the fake libcuda.so.1, here with no device) */
        { "{\"pools\": [" POOL_A("") "]}", NULL },
        { "{\"pools\": [" POOL_NOMASK(", \"device_mask\": \"GPU-abc\"") "]}",
          "pools[0].device_mask: GPU-abc needs the GPU inventory to resolve "
          "(gpu.backend \"auto\": no CUDA: the driver sees no CUDA device)" },
        { "{\"gpu\": {\"backend\": \"cuda\"}}",
          "gpu: backend \"cuda\": the driver sees no CUDA device" },
        { "{\"gpu\": {\"probe_timeout_ms\": 0}}", "gpu.probe_timeout_ms: must be 1..600000, got 0" },
        { "{\"gpu\": {\"backend\": \"none\", \"require\": false}, \"pools\": [" POOL_A("") "]}",
          "pools[0].device_mask: 0 is not a known device" },
        { "{" FAKE_GPU ", \"pools\": [" POOL_A(", \"shared_devices\": true") ", "
          "{\"id\": \"b\", \"engine\": \"x\", \"engine_version\": \"1\", \"binary\": \"/bin/x\","
          " \"port\": 9000, \"device_mask\": \"1,0\"}]}",
          "pools[1].device_mask: device 0 is also used by pools[0] (\"a\"); both pools need "
          "\"shared_devices\": true to share it" },
        { ONE_POOL(", \"shared_devices\": 1"),
          "pools[0].shared_devices: must be true or false, got an integer" },
        { ONE_POOL(", \"engine_metrics\": \"yes\""),
          "pools[0].engine_metrics: must be true or false, got a string" },
        { ONE_POOL(", \"engine_metrics_path\": \"metrics\""),
          "pools[0].engine_metrics_path: must be a URL path starting with '/' (no '#'), "
          "got \"metrics\"" },
        { ONE_POOL(", \"engine_metrics_path\": \"/a b\""),
          "pools[0].engine_metrics_path: must be at most 255 characters without spaces, "
          "got \"/a b\"" },
        { ONE_POOL(", \"engine_metrics_path\": \"\""),
          "pools[0].engine_metrics_path: must not be empty" },
        { ONE_POOL(", \"split\": \"0.5,0.5\""), "pools[0].split: mask has 1 device, split gives 2" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 8081, \"device_mask\": \"0,1\","
          " \"split\": \"0.5,0.3\"}]}",
          "pools[0].split: ratios must sum to 1, got 0.8" },
        { "{" FAKE_GPU ", \"pools\": [{\"id\": \"a\", \"engine\": \"x\", \"engine_version\": \"1\","
          " \"binary\": \"/bin/x\", \"port\": 8081, \"device_mask\": \"0,1\","
          " \"split\": \"half,half\"}]}",
          "pools[0].split: split entry half is not a number" },
        { "{\"gpu\": {\"require\": false, \"backend\": \"none\"}, \"pools\": [{\"id\": \"a\","
          " \"engine\": \"x\", \"engine_version\": \"1\", \"binary\": \"/bin/x\", \"port\": 8081,"
          " \"device_mask\": \"none\", \"split\": \"auto\"}]}",
          "pools[0].split: a pool without devices cannot be split" },
        { "{\"gpu\": {\"backend\": \"fake\", \"headroom_bytes\": 2000, \"devices\": ["
          "{\"index\": 0, \"vram_total_bytes\": 1000}]}, \"pools\": [" POOL_A(", \"split\": \"auto\"") "]}",
          "pools[0].split: none of the 1 devices has usable memory" },
        { ONE_POOL(", \"env\": []"), "pools[0].env: must be an object, got an array" },
        { ONE_POOL(", \"env\": {\"1X\": \"v\"}"),
          "pools[0].env.1X: not a valid variable name (letters, digits, '_'; not starting with a digit)" },
        { ONE_POOL(", \"env\": {\"X\": 1}"), "pools[0].env.X: must be a string, got an integer" },
        { ONE_POOL(", \"env\": {\"CUDA_VISIBLE_DEVICES\": \"1\"}"),
          "pools[0].env.CUDA_VISIBLE_DEVICES: set by the daemon (from device_mask), not here" },
        { ONE_POOL(", \"policy\": {\"health\": 5}"),
          "pools[0].policy.health: must be an object, got an integer" },
        { ONE_POOL(", \"policy\": {\"stop_grace\": 5}"), "pools[0].policy.stop_grace: unknown key" },
        { ONE_POOL(", \"args\": \"-m x\""), "pools[0].args: must be an array, got a string" },
        { ONE_POOL(", \"args\": [\"--port\", 8081]"),
          "pools[0].args[1]: must be a string, got an integer" },
        { ONE_POOL(", \"args\": [\"-m\", \"{modelpath}\"]"),
          "pools[0].args[1]: unknown placeholder {modelpath} (known: {model_path}, {port}, "
          "{slots}, {host}, {tensor_split}, {replica_id}, {pool_id}, {model_id})" },
        { ONE_POOL(", \"args\": [\"-m\", \"{model_id}\"]"),
          "pools[0].args[1]: {model_id} is used but pools[0].model_path is not set" },
        { ONE_POOL(", \"args\": [\"--alias\", \"a{{{b\"]"),
          "pools[0].args[1]: unterminated placeholder in \"a{{{b\" "
          "(write {{ for a literal brace)" },
        { ONE_POOL(", \"args\": [\"--port={port\"]"),
          "pools[0].args[0]: unterminated placeholder in \"--port={port\" "
          "(write {{ for a literal brace)" },
        { ONE_POOL(", \"args\": [\"-m\", \"{model_path}\"]"),
          "pools[0].args[1]: {model_path} is used but pools[0].model_path is not set" },
        { ONE_POOL(", \"args\": [\"-ts\", \"{tensor_split}\"]"),
          "pools[0].args[1]: {tensor_split} is used but pools[0].split is not set" },
        { ONE_POOL(", \"model_path\": \"\""), "pools[0].model_path: must not be empty" },
        { "{\"cloud\": {\"colour\": 1}}", "cloud.colour: unknown key" },
        { "{\"cloud\": {\"node_id\": \"a b\"}}",
          "cloud.node_id: node id \"a b\": character ' ' at position 1 is not allowed "
          "(letters, digits, '.', '_', '-')" },
        { "{\"cloud\": {\"address\": \"10.0.0.5:9200\"}}",
          "cloud.address: must be an http:// or https:// URL, got \"10.0.0.5:9200\"" },
        { "{\"cloud\": {\"orchestrator_url\": \"ftp://x\"}}",
          "cloud.orchestrator_url: must be an http:// or https:// URL, got \"ftp://x\"" },
        { "{\"cloud\": {\"heartbeat_interval_ms\": 0}}",
          "cloud.heartbeat_interval_ms: must be >= 1, got 0" },
        { "{\"cloud\": {\"token_file\": 1}}", "cloud.token_file: must be a string, got an integer" },
        { "{\"cloud\": {\"etcd\": []}}", "cloud.etcd: must be an object, got an array" },
        { "{\"cloud\": {\"etcd\": {\"lease\": 1}}}", "cloud.etcd.lease: unknown key" },
        { "{\"cloud\": {\"etcd\": {\"endpoints\": [\"localhost:2379\"]}}}",
          "cloud.etcd.endpoints[0]: must be an http:// or https:// URL, got \"localhost:2379\"" },
        { "{\"cloud\": {\"etcd\": {\"prefix\": \"fleet\"}}}",
          "cloud.etcd.prefix: must start with '/', got \"fleet\"" },
        { "{\"cloud\": {\"etcd\": {\"ttl_ms\": 500}}}", "cloud.etcd.ttl_ms: must be >= 1000, got 500" },
        /* a section's keys are checked before its values, and the values
         * in the order of docs/configuration.md, not of the file */
        { "{\"bind\": 1, \"colour\": 1}", "colour: unknown key (did you mean \"cloud\"?)" },
        { "{\"shutdown\": \"kill\", \"bind\": 1}", "bind: must be a string, got an integer" },
        { "{\"cloud\": {\"etcd\": {\"ttl_ms\": 1}, \"node_id\": \"a b\"}}",
          "cloud.node_id: node id \"a b\": character ' ' at position 1 is not allowed (letters, "
          "digits, '.', '_', '-')" },
};

static void run_error_case(void **state) {
        const error_case *c = *state;
        ps_config *cfg = NULL;
        char err[512] = "";
        int r = ps_config_load_string(c->json, BASE, &cfg, err, sizeof(err));

        if (!c->message) {
                if (r != 0)
                        fail_msg("%s\nunexpected error: %s", c->json, err);
                ps_config_free(cfg);
                return;
        }
        if (r != PS_E_INVALID)
                fail_msg("%s\nloaded (%d), expected: %s", c->json, r, c->message);
        assert_null(cfg);
        if (strcmp(err, c->message) != 0)
                fail_msg("%s\n     got: %s\nexpected: %s", c->json, err, c->message);
}

static void test_syntax_errors_give_line_and_column(void **state) {
        ps_config *cfg = NULL;
        char err[256];

        (void) state;
        assert_int_equal(ps_config_load_string("{\"bind\": \"a:1\",\n \"bind\": \"b:2\"}", BASE, &cfg,
                                               err, sizeof(err)), PS_E_INVALID);
        assert_null(cfg);
        assert_non_null(strstr(err, "duplicate object key"));
        assert_int_equal(strncmp(err, "2:", 2), 0);
        assert_int_equal(ps_config_load_string("{\"pools\": [", BASE, &cfg, err, sizeof(err)),
                         PS_E_INVALID);
        assert_null(cfg);
}

/* ---- templates and specs ---- */

static void test_duplicate_keys_are_rejected(void **state) {
        ps_config *cfg = NULL;
        char err[256];

        (void) state;
        assert_int_equal(ps_config_load_string("{" FAKE_GPU ", " FAKE_GPU "}", BASE, &cfg, err,
                                               sizeof(err)), PS_E_INVALID);
        assert_null(cfg);
        assert_non_null(strstr(err, "duplicate object key"));
}

#define SPLIT_POOL \
        "{\"gpu\": {\"backend\": \"fake\", \"headroom_bytes\": 0, \"devices\": [" \
        "{\"index\": 0, \"uuid\": \"GPU-aaaa\", \"vram_total_bytes\": 25769803776}," \
        "{\"index\": 1, \"vram_total_bytes\": 12884901888}]}," \
        " \"pools\": [{\"id\": \"big\", \"engine\": \"llamacpp\", \"engine_version\": \"b6000\"," \
        "   \"binary\": \"bin/llama-server\"," \
        "   \"args\": [\"-m\", \"{model_path}\", \"--host\", \"{host}\", \"--port={port}\"," \
        "             \"--parallel\", \"{slots}\", \"-ts\", \"{tensor_split}\"," \
        "             \"--alias\", \"{pool_id}/{replica_id}\", \"{{literal}}\", \"a}b\"]," \
        "   \"model_path\": \"/models/Llama-3-8B.Q4_K_M.gguf\", \"host\": \"127.0.0.1\"," \
        "   \"port\": 8081, \"replicas\": 2, \"device_mask\": \"GPU1, GPU-aaaa\"," \
        "   \"split\": \"auto\", \"slots\": 4," \
        "   \"env\": {\"LLAMA_LOG\": \"1\"}," \
        "   \"policy\": {\"health\": {\"path\": \"/v1/health\"}}}]}"

/* The argv the spec's templates render to, after the binary. */
static void assert_flags(const ps_engine_spec *s, const char *const *want) {
        char **argv = NULL, err[256];
        size_t n = 0;

        while (want[n])
                n++;
        assert_int_equal(s->n_flags, n);
        if (ps_engine_spec_argv(s, &argv, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        assert_string_equal(argv[0], s->binary_path);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(argv[i + 1], want[i]);
        assert_null(argv[n + 1]);
        free(argv);
}

static void test_replica_specs(void **state) {
        static const char *const r0[] = {
                "-m", "/models/Llama-3-8B.Q4_K_M.gguf", "--host", "127.0.0.1", "--port=8081",
                "--parallel", "4", "-ts", "0.3333,0.6667", "--alias", "big/r0", "{literal}", "a}b",
                NULL,
        };
        static const char *const r1[] = {
                "-m", "/models/Llama-3-8B.Q4_K_M.gguf", "--host", "127.0.0.1", "--port=8082",
                "--parallel", "4", "-ts", "0.3333,0.6667", "--alias", "big/r1", "{literal}", "a}b",
                NULL,
        };
        ps_config *cfg = load_ok(SPLIT_POOL);
        ps_engine_spec *s = NULL;
        char err[256];

        (void) state;
        assert_string_equal(cfg->pools[0].device_mask, "1,0");
        assert_string_equal(cfg->pools[0].tensor_split, "0.3333,0.6667");

        assert_int_equal(ps_config_replica_spec(cfg, 0, 0, false, &s, err, sizeof(err)), 0);
        assert_flags(s, r0);
        assert_string_equal(s->binary_path, "/etc/pool-managerd/bin/llama-server");
        assert_string_equal(s->host, "127.0.0.1");
        assert_int_equal(s->port, 8081);
        assert_string_equal(s->model_path, "/models/Llama-3-8B.Q4_K_M.gguf");
        assert_string_equal(s->model_id, "Llama-3-8B.Q4_K_M");
        assert_null(s->model_digest);
        assert_string_equal(s->engine, "llamacpp");
        assert_string_equal(s->engine_version, "b6000");
        assert_string_equal(s->pool_id, "big");
        assert_string_equal(s->replica_id, "r0");
        assert_string_equal(s->device_mask, "1,0");
        assert_string_equal(s->cuda_visible_devices, "1,0");
        assert_int_equal(s->slots, 4);
        assert_int_equal(s->n_env, 1);
        assert_string_equal(s->env[0], "LLAMA_LOG=1");
        assert_null(s->workdir);
        assert_string_equal(s->health_path, "/v1/health");
        ps_engine_spec_free(s);

        assert_int_equal(ps_config_replica_spec(cfg, 0, 1, false, &s, err, sizeof(err)), 0);
        assert_flags(s, r1);
        assert_string_equal(s->replica_id, "r1");
        assert_int_equal(s->port, 8082);
        ps_engine_spec_free(s);

        /* surge engines: port + replicas + i, same replica id */
        assert_int_equal(ps_config_replica_spec(cfg, 0, 1, true, &s, err, sizeof(err)), 0);
        assert_int_equal(s->port, 8084);
        assert_string_equal(s->flags[4], "--port={port}");
        assert_true(ps_engine_spec_takes_port(s));
        assert_string_equal(s->replica_id, "r1");
        assert_string_equal(s->tensor_split, "0.3333,0.6667");
        ps_engine_spec_free(s);

        s = NULL;
        assert_int_equal(ps_config_replica_spec(cfg, 0, 2, false, &s, err, sizeof(err)), PS_E_INVALID);
        assert_null(s);
        assert_string_equal(err, "pools[0]: no replica 2 (2 configured)");
        assert_int_equal(ps_config_replica_spec(cfg, 1, 0, false, &s, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "pools[1]: no such pool (1 configured)");
        ps_config_free(cfg);
}

/* The spec keeps its templates: a spec moved to another port (what a
 * surge does) renders the new port where {port} stands and changes
 * nothing else, not even an argument that happens to equal the port. A
 * value is never expanded again. */
static void test_spec_keeps_its_templates(void **state) {
        static const char *const home[] = {
                "--port", "8192", "-c", "8192", "--ctx-size=8192", "--alias", "{port}",
                "{port}@127.0.0.1", NULL,
        };
        static const char *const surge[] = {
                "--port", "8193", "-c", "8192", "--ctx-size=8192", "--alias", "{port}",
                "{port}@127.0.0.1", NULL,
        };
        ps_config *cfg = load_ok(
                "{" FAKE_GPU ", \"pools\": [{\"id\": \"c\", \"engine\": \"llamacpp\","
                " \"engine_version\": \"b1\", \"binary\": \"/usr/bin/engine\", \"port\": 8192,"
                " \"device_mask\": \"0\", \"model_path\": \"/models/{port}.gguf\","
                " \"args\": [\"--port\", \"{port}\", \"-c\", \"8192\", \"--ctx-size=8192\","
                " \"--alias\", \"{{port}}\", \"{model_id}@{host}\"]}]}");
        ps_engine_spec *s = NULL, *moved;
        char err[256];

        (void) state;
        assert_int_equal(ps_config_replica_spec(cfg, 0, 0, false, &s, err, sizeof(err)), 0);
        assert_flags(s, home);
        assert_true(ps_engine_spec_takes_port(s));
        moved = ps_engine_spec_copy(s);
        assert_non_null(moved);
        moved->port = 8193;
        assert_flags(moved, surge);
        ps_engine_spec_free(moved);
        ps_engine_spec_free(s);

        assert_int_equal(ps_config_replica_spec(cfg, 0, 0, true, &s, err, sizeof(err)), 0);
        assert_int_equal(s->port, 8193);
        assert_flags(s, surge);
        ps_engine_spec_free(s);
        ps_config_free(cfg);
}

static void test_spec_of_a_cpu_pool(void **state) {
        ps_config *cfg = load_ok(
                "{\"gpu\": {\"require\": false}, \"pools\": [{\"id\": \"cpu\", \"engine\": \"llamacpp\","
                " \"engine_version\": \"b1\", \"binary\": \"/bin/engine\", \"port\": 7000,"
                " \"device_mask\": \"none\", \"model_path\": \"/models/qwen/\"}]}");
        ps_engine_spec *s = NULL;
        char err[256];

        (void) state;
        assert_int_equal(ps_config_replica_spec(cfg, 0, 0, false, &s, err, sizeof(err)), 0);
        assert_string_equal(s->device_mask, "none");
        assert_string_equal(s->cuda_visible_devices, "");
        assert_string_equal(s->model_id, "qwen");
        assert_string_equal(s->health_path, "/health");
        assert_int_equal(s->n_flags, 0);
        assert_int_equal(s->n_env, 0);
        ps_engine_spec_free(s);
        ps_config_free(cfg);
}

static void test_replica_list_for_the_registry(void **state) {
        ps_config *cfg = load_ok("{" FAKE_GPU ", \"pools\": [" POOL_A(", \"replicas\": 2") ", "
                                 POOL_B(", \"policy\": {\"stop_grace_ms\": 7}") "]}");
        ps_config_replica *list = NULL;
        size_t n = 0;
        char err[256];

        (void) state;
        assert_int_equal(ps_config_replicas(cfg, &list, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 3);
        assert_string_equal(list[0].spec->pool_id, "a");
        assert_string_equal(list[0].spec->replica_id, "r0");
        assert_int_equal(list[0].spec->port, 8081);
        assert_string_equal(list[1].spec->pool_id, "a");
        assert_string_equal(list[1].spec->replica_id, "r1");
        assert_int_equal(list[1].spec->port, 8082);
        assert_string_equal(list[2].spec->pool_id, "b");
        assert_int_equal(list[2].spec->port, 9081);
        assert_ptr_equal(list[0].policy, cfg->pools[0].policy);
        assert_ptr_equal(list[2].policy, cfg->pools[1].policy);
        assert_int_equal(policy_int(list[2].policy, NULL, "stop_grace_ms"), 7);
        assert_int_equal(policy_int(list[0].policy, NULL, "stop_grace_ms"), 5000);
        assert_null(ps_config_replicas_free(list, n));
        ps_config_free(cfg);

        /* an empty node has none */
        cfg = ps_config_new();
        assert_int_equal(ps_config_replicas(cfg, &list, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 0);
        ps_config_replicas_free(list, n);
        ps_config_free(cfg);
}

static void test_split_plans(void **state) {
        ps_config *cfg;

        (void) state;
        /* default headroom 512 MiB: (24-0.5) : (12-0.5) */
        cfg = load_ok("{" FAKE_GPU ", \"pools\": [" POOL_NOMASK(", \"device_mask\": \"0,1\","
                                                           " \"split\": \"auto\"") "]}");
        assert_string_equal(cfg->pools[0].tensor_split, "0.6714,0.3286");
        ps_config_free(cfg);

        cfg = load_ok("{" FAKE_GPU ", \"pools\": [" POOL_NOMASK(", \"device_mask\": \"0,1\","
                                                           " \"split\": \"0.75, 0.25\"") "]}");
        assert_string_equal(cfg->pools[0].split, "0.75, 0.25");
        assert_string_equal(cfg->pools[0].tensor_split, "0.75,0.25");
        ps_config_free(cfg);

        /* capped for the smaller GPU: 30 GiB on 23.5 + 11.5 usable */
        cfg = load_ok("{" FAKE_GPU ", \"pools\": [" POOL_NOMASK(", \"device_mask\": \"0,1\","
                                                           " \"split\": \"auto\","
                                                           " \"vram_required_bytes\": 32212254720") "]}");
        assert_non_null(cfg->pools[0].tensor_split);
        ps_config_free(cfg);
}

static void test_split_cap_failure_names_the_field(void **state) {
        ps_config *cfg = NULL;
        char err[512];

        (void) state;
        assert_int_equal(ps_config_load_string(
                "{" FAKE_GPU ", \"pools\": [" POOL_NOMASK(", \"device_mask\": \"0,1\", \"split\": \"auto\","
                                                     " \"vram_required_bytes\": 42949672960") "]}",
                BASE, &cfg, err, sizeof(err)), PS_E_INVALID);
        assert_null(cfg);
        assert_int_equal(strncmp(err, "pools[0].split: ", 16), 0);
}

static void test_shared_devices_when_both_agree(void **state) {
        ps_config *cfg = load_ok("{" FAKE_GPU ", \"pools\": ["
                                 POOL_A(", \"shared_devices\": true") ", "
                                 POOL_B_ON("0", ", \"shared_devices\": true") "]}");

        (void) state;
        assert_int_equal(cfg->n_pools, 2);
        assert_string_equal(cfg->pools[1].device_mask, "0");
        ps_config_free(cfg);
}

/* ---- paths an API caller names ---- */

/* A scratch tree: <dir>/engines/{engine,link-out}, <dir>/models/{m.gguf,
 * link-out}, <dir>/outside/{evil,secret}. The links point into outside/. */
typedef struct tree {
        char dir[64];
        char path[256];
} tree;

static const char *at(tree *t, const char *rel) {
        snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, rel);
        return t->path;
}

static void touch(tree *t, const char *rel, mode_t mode) {
        int fd = open(at(t, rel), O_WRONLY | O_CREAT | O_TRUNC, mode);

        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(chmod(t->path, mode), 0);
}

static void tree_make(tree *t) {
        char target[256];

        snprintf(t->dir, sizeof(t->dir), "/tmp/pm-allow-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        assert_int_equal(mkdir(at(t, "engines"), 0755), 0);
        assert_int_equal(mkdir(at(t, "models"), 0755), 0);
        assert_int_equal(mkdir(at(t, "outside"), 0755), 0);
        touch(t, "engines/engine", 0755);
        touch(t, "outside/evil", 0755);
        touch(t, "models/m.gguf", 0644);
        touch(t, "outside/secret", 0600);
        snprintf(target, sizeof(target), "%s/outside/evil", t->dir);
        assert_int_equal(symlink(target, at(t, "engines/link-out")), 0);
        snprintf(target, sizeof(target), "%s/outside/secret", t->dir);
        assert_int_equal(symlink(target, at(t, "models/link-out")), 0);
}

static void tree_remove(tree *t) {
        static const char *const files[] = {
                "engines/engine", "engines/link-out", "models/m.gguf", "models/link-out",
                "outside/evil", "outside/secret",
        };
        static const char *const dirs[] = { "engines", "models", "outside", "" };

        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
                unlink(at(t, files[i]));
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
                rmdir(at(t, dirs[i]));
}

static ps_config *load_tree_config(tree *t, const char *extra) {
        char text[1024];

        snprintf(text, sizeof(text), "{\"engines\": {\"allow\": [\"%s/engines/\"]}, "
                 "\"models\": {\"allow\": [\"%s/models/\"]}%s}", t->dir, t->dir, extra);
        return load_ok(text);
}

static void test_binary_allowed(void **state) {
        ps_config *cfg = load_ok("{" FAKE_GPU ", \"pools\": [" POOL_A("") "]}");
        char err[256];

        (void) state;
        /* empty allowlist: only configured binaries (checked lexically first:
         * /usr/bin/engine does not exist, so it then fails as missing) */
        assert_int_equal(ps_config_binary_allowed(cfg, "/usr/bin/engine", NULL, err, sizeof(err)),
                         PS_E_NOT_FOUND);
        assert_string_equal(err, "binary_path: /usr/bin/engine: No such file or directory");
        assert_int_equal(ps_config_binary_allowed(cfg, "/bin/sh", NULL, err, sizeof(err)),
                         PS_E_FORBIDDEN);
        assert_string_equal(err, "binary_path: /bin/sh is not in engines.allow (empty: only the "
                                 "binaries of configured pools)");
        assert_int_equal(ps_config_binary_allowed(cfg, "bin/sh", NULL, err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "binary_path: must be an absolute path, got \"bin/sh\"");
        assert_int_equal(ps_config_binary_allowed(cfg, "/usr/bin/../bin/engine", NULL, err,
                                                  sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "binary_path: /usr/bin/../bin/engine has \".\", \"..\" or empty "
                                 "components");
        ps_config_free(cfg);

        cfg = load_ok("{\"engines\": {\"allow\": [\"/opt/engines/\", \"/usr/local/bin/llama-server\"]}}");
        assert_int_equal(ps_config_binary_allowed(cfg, "/opt/enginesX", NULL, err, sizeof(err)),
                         PS_E_FORBIDDEN);
        assert_string_equal(err, "binary_path: /opt/enginesX is not in engines.allow");
        assert_int_equal(ps_config_binary_allowed(cfg, "/opt/engines/../../bin/sh", NULL, err,
                                                  sizeof(err)), PS_E_INVALID);
        ps_config_free(cfg);
}

static void test_binary_allowed_on_realpaths(void **state) {
        tree t;
        ps_config *cfg;
        char err[512], want[512], *real = NULL;

        (void) state;
        tree_make(&t);
        cfg = load_tree_config(&t, "");
        assert_int_equal(ps_config_binary_allowed(cfg, at(&t, "engines/engine"), &real, err,
                                                  sizeof(err)), 0);
        assert_string_equal(real, at(&t, "engines/engine"));
        free(real);
        /* a symlink inside the allowed directory that points out is refused */
        assert_int_equal(ps_config_binary_allowed(cfg, at(&t, "engines/link-out"), NULL, err,
                                                  sizeof(err)), PS_E_FORBIDDEN);
        snprintf(want, sizeof(want), "binary_path: %s/engines/link-out resolves to %s/outside/evil, "
                 "which is not in engines.allow", t.dir, t.dir);
        assert_string_equal(err, want);
        ps_config_free(cfg);
        tree_remove(&t);
}

static void test_model_outside_gets_one_answer(void **state) {
        tree t;
        ps_config *cfg;
        char err_there[512], err_missing[512], there[256], missing[256];

        (void) state;
        tree_make(&t);
        cfg = load_tree_config(&t, "");
        snprintf(there, sizeof(there), "%s", at(&t, "outside/secret"));
        snprintf(missing, sizeof(missing), "%s", at(&t, "outside/nothing"));
        assert_int_equal(ps_config_model_allowed(cfg, there, NULL, err_there, sizeof(err_there)),
                         PS_E_MODEL_FORBIDDEN);
        assert_int_equal(ps_config_model_allowed(cfg, missing, NULL, err_missing,
                                                 sizeof(err_missing)), PS_E_MODEL_FORBIDDEN);
        /* the same words, but for the path itself */
        assert_non_null(strstr(err_there, " is not in models.allow"));
        assert_string_equal(strstr(err_there, " is not"), strstr(err_missing, " is not"));
        /* inside: allowed; a link inside pointing out: refused */
        assert_int_equal(ps_config_model_allowed(cfg, at(&t, "models/m.gguf"), NULL, err_there,
                                                 sizeof(err_there)), 0);
        assert_int_equal(ps_config_model_allowed(cfg, at(&t, "models/link-out"), NULL, err_there,
                                                 sizeof(err_there)), PS_E_MODEL_FORBIDDEN);
        assert_non_null(strstr(err_there, "resolves to"));
        /* workdir: the runtime directory or models.allow */
        assert_int_equal(ps_config_workdir_allowed(cfg, at(&t, "models"), NULL, err_there,
                                                   sizeof(err_there)), 0);
        assert_int_equal(ps_config_workdir_allowed(cfg, at(&t, "outside"), NULL, err_there,
                                                   sizeof(err_there)), PS_E_MODEL_FORBIDDEN);
        ps_config_free(cfg);
        tree_remove(&t);
}

static void test_model_allowlist_defaults_to_pool_model_dirs(void **state) {
        ps_config *cfg = load_ok("{" FAKE_GPU ", \"pools\": ["
                                 POOL_A(", \"model_path\": \"/srv/models/7b.gguf\"") "]}");
        char err[256];

        (void) state;
        assert_int_equal(ps_config_model_allowed(cfg, "/etc/shadow", NULL, err, sizeof(err)),
                         PS_E_MODEL_FORBIDDEN);
        assert_string_equal(err, "model_path: /etc/shadow is not in models.allow (empty: only the "
                                 "files beside configured pools' models)");
        /* inside the pool's model directory: checked further (missing here) */
        assert_int_equal(ps_config_model_allowed(cfg, "/srv/models/13b.gguf", NULL, err,
                                                 sizeof(err)), PS_E_NOT_FOUND);
        /* beside the pool's model, not below */
        assert_int_equal(ps_config_model_allowed(cfg, "/srv/models/sub/x.gguf", NULL, err,
                                                 sizeof(err)), PS_E_MODEL_FORBIDDEN);
        ps_config_free(cfg);
        /* a model at the root allows nothing else */
        cfg = load_ok("{" FAKE_GPU ", \"pools\": [" POOL_A(", \"model_path\": \"/m.gguf\"") "]}");
        assert_int_equal(ps_config_model_allowed(cfg, "/etc/shadow", NULL, err, sizeof(err)),
                         PS_E_MODEL_FORBIDDEN);
        ps_config_free(cfg);
        /* no config: no model at all */
        cfg = load_ok("{}");
        assert_int_equal(ps_config_model_allowed(cfg, "/srv/models/13b.gguf", NULL, err,
                                                 sizeof(err)), PS_E_MODEL_FORBIDDEN);
        ps_config_free(cfg);
}

static void test_api_env_allowlist(void **state) {
        static const char *const refused[] = {
                "LD_PRELOAD", "LD_LIBRARY_PATH", "GCONV_PATH", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES",
                "PYTHONPATH", "PYTHONSTARTUP", "PERL5LIB", "NODE_OPTIONS", "BASH_ENV", "PATH",
                "HOME", "TMPDIR", "OPENSSL_CONF", "NVIDIA_VISIBLE_DEVICES",
                "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "VLLM_LOGGING_CONFIG_PATH",
                "GGML_BACKEND_PATH", "CUDA_INJECTION64_PATH", "NCCL_NET_PLUGIN", "OMP_TOOL_LIBRARIES",
                "LLAMA_ARG_MODEL", "LLAMA_ARG_MODEL_URL", "LLAMA_ARG_HF_REPO",
                "llama_arg_ctx_size", "SOMETHING_ELSE",
        };
        static const char *const allowed[] = {
                "LLAMA_ARG_CTX_SIZE", "GGML_CUDA_FORCE_MMQ", "OMP_NUM_THREADS",
                "CUDA_LAUNCH_BLOCKING", "VLLM_ATTENTION_BACKEND",
        };
        ps_config *cfg = load_ok("{}");
        char err[256];

        (void) state;
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                if (ps_config_api_env_allowed(cfg, refused[i], err, sizeof(err)) != PS_E_INVALID)
                        fail_msg("%s was allowed", refused[i]);
                if (!strstr(err, refused[i]))
                        fail_msg("the message does not name %s: %s", refused[i], err);
        }
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                if (ps_config_api_env_allowed(cfg, allowed[i], err, sizeof(err)) != 0)
                        fail_msg("%s was refused: %s", allowed[i], err);
        ps_config_free(cfg);

        /* a pattern that matches never admits a refused name */
        cfg = load_ok("{\"engines\": {\"env_allow\": [\"*\"], \"env_pass\": [\"HF_TOKEN\"]}}");
        assert_int_equal(ps_config_api_env_allowed(cfg, "LD_PRELOAD", err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "env.LD_PRELOAD: may not be set through the API (it can change "
                                 "what the engine loads or runs)");
        assert_int_equal(ps_config_api_env_allowed(cfg, "SOMETHING_ELSE", err, sizeof(err)), 0);
        assert_int_equal(cfg->n_engines_env_pass, 1);
        assert_string_equal(cfg->engines_env_pass[0], "HF_TOKEN");
        ps_config_free(cfg);
}

static void test_host_check(void **state) {
        char out[64], err[256];

        (void) state;
        assert_int_equal(ps_host_check("localhost", false, out, sizeof(out), err, sizeof(err)), 0);
        assert_string_equal(out, "127.0.0.1");
        assert_int_equal(ps_host_check("::1", false, out, sizeof(out), err, sizeof(err)), 0);
        assert_string_equal(out, "::1");
        assert_int_equal(ps_host_check("127.0.0.1:19400/health?x=", false, out, sizeof(out), err,
                                       sizeof(err)), PS_E_INVALID);
        assert_int_equal(ps_host_check("10.9.8.7", false, out, sizeof(out), err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "10.9.8.7 is not a loopback address (engines.allow_remote_hosts "
                                 "is off)");
        assert_int_equal(ps_host_check("192.0.2.1", true, out, sizeof(out), err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "192.0.2.1 is not an address of this node");
        assert_int_equal(ps_host_check("::", true, out, sizeof(out), err, sizeof(err)), PS_E_INVALID);
}

static void test_api_socket_and_handoff_dir(void **state) {
        static const char *const env[] = { "RUNTIME_DIRECTORY", "/run/pool-managerd", NULL };
        ps_config *cfg = load_ok("{\"runtime_dir\": \"/var/lib/pm\"}");
        char buf[256], err[256];
        char long_dir[200];

        (void) state;
        assert_int_equal(ps_config_api_socket(cfg, fake_getenv, (void *) env, buf, sizeof(buf),
                                              err, sizeof(err)), 0);
        assert_string_equal(buf, "/run/pool-managerd/api.sock");
        assert_int_equal(ps_config_api_socket(cfg, fake_getenv, (void *) (env + 2), buf,
                                              sizeof(buf), err, sizeof(err)), 0);
        assert_string_equal(buf, "/var/lib/pm/api.sock");
        assert_int_equal(ps_config_handoff_dir(cfg, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "/var/lib/pm/engines");
        memset(long_dir, 'd', sizeof(long_dir) - 1);
        long_dir[0] = '/';
        long_dir[sizeof(long_dir) - 1] = '\0';
        assert_int_equal(ps_config_set_runtime_dir(cfg, long_dir, "flag", err, sizeof(err)), 0);
        assert_int_equal(ps_config_api_socket(cfg, fake_getenv, (void *) env, buf, sizeof(buf),
                                              err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "longer than 107 bytes"));
        ps_config_free(cfg);

        cfg = load_ok("{\"api\": {\"socket\": \"\"}, \"handoff\": {\"dir\": \"/srv/handoffs\", "
                      "\"max_slots\": 8, \"allow_remote\": true}}");
        assert_int_equal(ps_config_api_socket(cfg, fake_getenv, (void *) env, buf, sizeof(buf),
                                              err, sizeof(err)), 0);
        assert_string_equal(buf, "");
        assert_int_equal(ps_config_handoff_dir(cfg, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "/srv/handoffs");
        assert_int_equal(cfg->handoff_max_slots, 8);
        assert_true(cfg->handoff_allow_remote);
        ps_config_free(cfg);
}

static void test_token_file_precedence(void **state) {
        char dir[] = "/tmp/pm-token-XXXXXX", api[64], cloud[64], text[256];
        ps_config *cfg;
        char err[256];
        FILE *f;

        (void) state;
        assert_non_null(mkdtemp(dir));
        snprintf(api, sizeof(api), "%s/api", dir);
        snprintf(cloud, sizeof(cloud), "%s/cloud", dir);
        assert_non_null(f = fopen(api, "w"));
        fputs("from-api-file\n", f);
        fclose(f);
        assert_non_null(f = fopen(cloud, "w"));
        fputs("from-cloud-file\n", f);
        fclose(f);
        assert_int_equal(chmod(api, 0600), 0);
        assert_int_equal(chmod(cloud, 0600), 0);
        snprintf(text, sizeof(text), "{\"api\": {\"token_file\": \"%s\"}, "
                 "\"cloud\": {\"token_file\": \"%s\"}}", api, cloud);
        cfg = load_ok(text);
        assert_int_equal(ps_config_resolve_token(cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->cloud.api_token, "from-api-file");
        ps_config_free(cfg);

        snprintf(text, sizeof(text), "{\"cloud\": {\"token_file\": \"%s\"}}", cloud);
        cfg = load_ok(text);
        assert_int_equal(ps_config_resolve_token(cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->cloud.api_token, "from-cloud-file");
        ps_config_free(cfg);
        unlink(api);
        unlink(cloud);
        rmdir(dir);
}

static void assert_token_refused(const char *path, const char *want) {
        ps_config *cfg;
        char text[256], err[512] = "";

        snprintf(text, sizeof(text), "{\"api\": {\"token_file\": \"%s\"}}", path);
        cfg = load_ok(text);
        assert_int_equal(ps_config_resolve_token(cfg, err, sizeof(err)), PS_E_INVALID);
        if (!strstr(err, want))
                fail_msg("\"%s\" does not contain \"%s\"", err, want);
        assert_null(cfg->cloud.api_token);
        ps_config_free(cfg);
}

/* A token others may read, or someone else may write, is refused with
 * the way out; 0600, and 0640 (read through the group), are taken. */
static void test_token_file_guarded(void **state) {
        char dir[] = "/tmp/pm-token-XXXXXX", path[64], want[192], text[256], err[256];
        ps_config *cfg;
        FILE *f;

        (void) state;
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/token", dir);
        assert_non_null(f = fopen(path, "w"));
        fputs("t0ken\n", f);
        fclose(f);
        assert_int_equal(chmod(path, 0644), 0);
        snprintf(want, sizeof(want), "api.token_file: %s is open to others (mode 0644): chmod 600 %s",
                 path, path);
        assert_token_refused(path, want);
        assert_int_equal(chmod(path, 0602), 0);
        assert_token_refused(path, "is open to others (mode 0602)");
        assert_int_equal(chmod(path, 0620), 0);
        assert_token_refused(path, "is open to its group's writes (mode 0620)");
        assert_token_refused(dir, "is not a regular file");
        for (unsigned i = 0; i < 2; i++) {
                assert_int_equal(chmod(path, i ? 0640 : 0600), 0);
                snprintf(text, sizeof(text), "{\"api\": {\"token_file\": \"%s\"}}", path);
                cfg = load_ok(text);
                assert_int_equal(ps_config_resolve_token(cfg, err, sizeof(err)), 0);
                assert_string_equal(cfg->cloud.api_token, "t0ken");
                ps_config_free(cfg);
        }
        /* owned by someone else: only root can make such a file here */
        if (geteuid() == 0) {
                assert_int_equal(chmod(path, 0600), 0);
                assert_int_equal(chown(path, 65534, (gid_t) -1), 0);
                assert_token_refused(path, "belongs to uid 65534, neither root nor the daemon's user");
        }
        unlink(path);
        rmdir(dir);
}

/* ---- environment ---- */

static void test_env_overrides_the_file(void **state) {
        static const char *const env[] = {
                "POOL_MANAGERD_ADDR", "127.0.0.1:9400",
                "POOL_MANAGERD_ADDRESS", "http://10.1.2.3:9400",
                "POOL_MANAGERD_CLOUD_PROFILE", "TRUE",
                "POOL_MANAGERD_POOLS", " a , qwen-0.5b",
                "POOL_MANAGERD_RUNTIME_DIR", "/srv/handoffs",
                "POOL_MANAGERD_NODE_ID", "gpu-node-7",
                "POOL_MANAGERD_MACHINE_ID", "0123abcd",
                "ORCHESTRATORD_URL", "http://orch:8080",
                "LLORCH_API_TOKEN", "s3cret-token",
                "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS", "15",
                "ORCHESTRATORD_REGISTER_ON_STARTUP", "0",
                "POOL_MANAGERD_WATCH_INTERVAL_MS", "250",
                NULL,
        };
        ps_config *cfg = load_ok("{\"bind\": \"127.0.0.1:9300\", \"runtime_dir\": \"/var/lib/pm\","
                                 " \"cloud\": {\"node_id\": \"file-node\", \"heartbeat_interval_ms\": 1}}");
        char err[256];

        (void) state;
        assert_int_equal(ps_config_apply_env(cfg, fake_getenv, (void *) env, err, sizeof(err)), 0);
        assert_string_equal(cfg->bind, "127.0.0.1:9400");
        assert_string_equal(cfg->bind_source, "POOL_MANAGERD_ADDR");
        assert_string_equal(cfg->cloud.address, "http://10.1.2.3:9400");
        assert_int_equal(cfg->profile, PS_PROFILE_CLOUD);
        assert_true(cfg->advertise_pools_set);
        assert_int_equal(cfg->n_advertise_pools, 2);
        assert_string_equal(cfg->advertise_pools[0], "a");
        assert_string_equal(cfg->advertise_pools[1], "qwen-0.5b");
        /* the seed's meaning: the handoff files' own directory; runtime_dir
         * (PID files, logs, the socket) stays where the file put it */
        assert_string_equal(cfg->runtime_dir, "/var/lib/pm");
        assert_string_equal(cfg->runtime_dir_source, "file");
        assert_string_equal(cfg->handoff_dir, "/srv/handoffs");
        assert_string_equal(cfg->handoff_dir_source, "POOL_MANAGERD_RUNTIME_DIR");
        assert_string_equal(cfg->cloud.node_id, "gpu-node-7");
        assert_string_equal(cfg->cloud.machine_id, "0123abcd");
        assert_string_equal(cfg->cloud.orchestrator_url, "http://orch:8080");
        assert_string_equal(cfg->cloud.api_token, "s3cret-token");
        assert_int_equal(cfg->cloud.heartbeat_interval_ms, 15000);
        assert_false(cfg->cloud.register_on_startup);
        assert_int_equal(cfg->watch_interval_ms, 250);

        /* flags come last */
        assert_int_equal(ps_config_set_bind(cfg, "[::1]:9500", "flag", err, sizeof(err)), 0);
        assert_string_equal(cfg->bind, "[::1]:9500");
        assert_string_equal(cfg->bind_source, "flag");
        assert_int_equal(ps_config_set_runtime_dir(cfg, "/tmp/pm", "flag", err, sizeof(err)), 0);
        assert_string_equal(cfg->runtime_dir, "/tmp/pm");
        assert_string_equal(cfg->runtime_dir_source, "flag");
        assert_int_equal(ps_config_set_bind(cfg, "nope", "flag", err, sizeof(err)), PS_E_INVALID);
        assert_string_equal(err, "bind: expected HOST:PORT (e.g. 127.0.0.1:9200 or [::1]:9200), "
                                 "got \"nope\"");
        assert_string_equal(cfg->bind, "[::1]:9500");
        ps_config_free(cfg);
}

static void test_env_profile_false_and_unset_keep_the_file(void **state) {
        static const char *const off[] = { "POOL_MANAGERD_CLOUD_PROFILE", "false", NULL };
        static const char *const empty[] = {
                "POOL_MANAGERD_ADDR", "", "POOL_MANAGERD_CLOUD_PROFILE", "",
                "POOL_MANAGERD_POOLS", "", NULL,
        };
        ps_config *cfg = load_ok("{\"profile\": \"cloud\", \"bind\": \"127.0.0.1:9300\"}");
        char err[256];

        (void) state;
        /* empty values count as unset */
        assert_int_equal(ps_config_apply_env(cfg, fake_getenv, (void *) empty, err, sizeof(err)), 0);
        assert_int_equal(cfg->profile, PS_PROFILE_CLOUD);
        assert_string_equal(cfg->bind, "127.0.0.1:9300");
        assert_string_equal(cfg->bind_source, "file");
        assert_false(cfg->advertise_pools_set);
        assert_int_equal(ps_config_apply_env(cfg, fake_getenv, (void *) off, err, sizeof(err)), 0);
        assert_int_equal(cfg->profile, PS_PROFILE_HOME);
        ps_config_free(cfg);
}

static void test_state_directory_is_the_default_runtime_dir(void **state) {
        static const char *const systemd[] = { "STATE_DIRECTORY", "/var/lib/pool-managerd:/var/lib/x", NULL };
        static const char *const both[] = {
                "STATE_DIRECTORY", "/var/lib/pool-managerd", "POOL_MANAGERD_RUNTIME_DIR", "/run/pm", NULL,
        };
        ps_config *cfg = ps_config_new();
        char err[256];

        (void) state;
        assert_int_equal(ps_config_apply_env(cfg, fake_getenv, (void *) systemd, err, sizeof(err)), 0);
        assert_string_equal(cfg->runtime_dir, "/var/lib/pool-managerd");
        ps_config_free(cfg);

        cfg = ps_config_new();
        assert_int_equal(ps_config_apply_env(cfg, fake_getenv, (void *) both, err, sizeof(err)), 0);
        assert_string_equal(cfg->runtime_dir, "/var/lib/pool-managerd");
        assert_string_equal(cfg->handoff_dir, "/run/pm");
        ps_config_free(cfg);

        {
                static const char *const relative[] = { "POOL_MANAGERD_RUNTIME_DIR", ".runtime/engines",
                                                        NULL };

                char cwd[4096], want[4200];

                /* relative: to the working directory, as the seed reads it */
                assert_non_null(getcwd(cwd, sizeof(cwd)));
                snprintf(want, sizeof(want), "%s/.runtime/engines", strcmp(cwd, "/") ? cwd : "");
                cfg = ps_config_new();
                assert_int_equal(ps_config_apply_env(cfg, fake_getenv, (void *) relative, err,
                                                     sizeof(err)), 0);
                assert_string_equal(cfg->handoff_dir, want);
                assert_string_equal(cfg->runtime_dir, ".runtime");
                ps_config_free(cfg);
        }

        /* the file's runtime_dir beats the systemd default */
        cfg = load_ok("{\"runtime_dir\": \"/srv/pm\"}");
        assert_int_equal(ps_config_apply_env(cfg, fake_getenv, (void *) systemd, err, sizeof(err)), 0);
        assert_string_equal(cfg->runtime_dir, "/srv/pm");
        ps_config_free(cfg);
}

typedef struct env_case {
        const char *name, *value;
        const char *message;
} env_case;

static const env_case env_cases[] = {
        { "POOL_MANAGERD_ADDR", "9200",
          "POOL_MANAGERD_ADDR: expected HOST:PORT (e.g. 127.0.0.1:9200 or [::1]:9200), got \"9200\"" },
        { "POOL_MANAGERD_ADDRESS", "10.0.0.1:9200",
          "POOL_MANAGERD_ADDRESS: must be an http:// or https:// URL, got \"10.0.0.1:9200\"" },
        { "POOL_MANAGERD_CLOUD_PROFILE", "yes",
          "POOL_MANAGERD_CLOUD_PROFILE: must be true, false, 1 or 0, got \"yes\"" },
        { "POOL_MANAGERD_POOLS", "a,,b", "POOL_MANAGERD_POOLS: empty entry 2 in \"a,,b\"" },
        { "POOL_MANAGERD_POOLS", "a,b/c",
          "POOL_MANAGERD_POOLS: pool id \"b/c\": character '/' at position 1 is not allowed "
          "(letters, digits, '.', '_', '-')" },
        { "POOL_MANAGERD_POOLS", "a,a", "POOL_MANAGERD_POOLS: pool id \"a\" is listed twice" },
        { "POOL_MANAGERD_NODE_ID", "node 1",
          "POOL_MANAGERD_NODE_ID: node id \"node 1\": character ' ' at position 4 is not allowed "
          "(letters, digits, '.', '_', '-')" },
        { "POOL_MANAGERD_MACHINE_ID", "a b", "POOL_MANAGERD_MACHINE_ID: must not contain spaces" },
        { "ORCHESTRATORD_URL", "orch:8080",
          "ORCHESTRATORD_URL: must be an http:// or https:// URL, got \"orch:8080\"" },
        { "LLORCH_API_TOKEN", "secret value",
          "LLORCH_API_TOKEN: must be printable ASCII without spaces" },
        { "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS", "0",
          "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS: must be a whole number of seconds > 0, got \"0\"" },
        { "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS", "1.5",
          "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS: must be a whole number of seconds > 0, got \"1.5\"" },
        { "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS", "99999999999999999999",
          "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS: must be a whole number of seconds > 0, "
          "got \"99999999999999999999\"" },
        { "ORCHESTRATORD_REGISTER_ON_STARTUP", "maybe",
          "ORCHESTRATORD_REGISTER_ON_STARTUP: must be true, false, 1 or 0, got \"maybe\"" },
        { "POOL_MANAGERD_WATCH_INTERVAL_MS", "-5",
          "POOL_MANAGERD_WATCH_INTERVAL_MS: must be a whole number of milliseconds > 0, got \"-5\"" },
};

static void test_env_errors_name_the_variable_and_change_nothing(void **state) {
        (void) state;
        for (size_t i = 0; i < sizeof(env_cases) / sizeof(env_cases[0]); i++) {
                const char *env[] = {
                        /* a valid change that must not be applied when another fails */
                        "POOL_MANAGERD_RUNTIME_DIR", "/run/changed",
                        env_cases[i].name, env_cases[i].value, NULL,
                };
                ps_config *cfg = load_ok(ONE_POOL(""));
                char err[512] = "";

                if (ps_config_apply_env(cfg, fake_getenv, (void *) env, err, sizeof(err)) != PS_E_INVALID)
                        fail_msg("%s=%s was accepted", env_cases[i].name, env_cases[i].value);
                if (strcmp(err, env_cases[i].message) != 0)
                        fail_msg("%s=%s\n     got: %s\nexpected: %s", env_cases[i].name,
                                 env_cases[i].value, err, env_cases[i].message);
                assert_null(strstr(err, "secret value"));
                assert_string_equal(cfg->runtime_dir, ".runtime");
                assert_null(cfg->handoff_dir);
                assert_int_equal(cfg->profile, PS_PROFILE_HOME);
                ps_config_free(cfg);
        }
}

static void test_load_without_file_takes_the_environment(void **state) {
        static const char *const env[] = { "POOL_MANAGERD_ADDR", "127.0.0.1:9999", NULL };
        static const char *const bad[] = { "POOL_MANAGERD_CLOUD_PROFILE", "2", NULL };
        ps_config *cfg = NULL;
        char err[256];

        (void) state;
        assert_int_equal(ps_config_load(NULL, fake_getenv, (void *) env, &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->bind, "127.0.0.1:9999");
        ps_config_free(cfg);
        cfg = NULL;
        assert_int_equal(ps_config_load(NULL, fake_getenv, (void *) bad, &cfg, err, sizeof(err)),
                         PS_E_INVALID);
        assert_null(cfg);
}

/* ---- files ---- */

static const char *fixture(char *buf, size_t len, const char *name) {
        const char *dir = getenv("CONFIG_FIXTURES");

        if (!dir)
                dir = "tests/unit/services/configs";
        snprintf(buf, len, "%s/%s", dir, name);
        return buf;
}

static void test_file_errors_start_with_the_file_name(void **state) {
        char path[1024], want[1200], err[1024];
        ps_config *cfg = NULL;

        (void) state;
        assert_int_equal(ps_config_load_file(fixture(path, sizeof(path), "missing.json"), &cfg,
                                             err, sizeof(err)), -ENOENT);
        snprintf(want, sizeof(want), "%s: No such file or directory", path);
        assert_string_equal(err, want);

        assert_int_equal(ps_config_load_file(fixture(path, sizeof(path), "unknown-device.json"), &cfg,
                                             err, sizeof(err)), PS_E_INVALID);
        snprintf(want, sizeof(want), "%s: pools[1].device_mask: GPU7 is not a known device", path);
        assert_string_equal(err, want);

        assert_int_equal(ps_config_load_file(fixture(path, sizeof(path), "duplicate-key.json"), &cfg,
                                             err, sizeof(err)), PS_E_INVALID);
        snprintf(want, sizeof(want), "%s:4:", path);
        assert_int_equal(strncmp(err, want, strlen(want)), 0);
        assert_non_null(strstr(err, "duplicate object key"));
        assert_null(cfg);
}

static void test_file_paths_resolve_against_its_directory(void **state) {
        char path[1024], dir[1024];
        ps_config *cfg = NULL;
        char err[1024];

        (void) state;
        fixture(path, sizeof(path), "relative.json");
        assert_int_equal(ps_config_load_file(path, &cfg, err, sizeof(err)), 0);
        assert_non_null(realpath(fixture(path, sizeof(path), "."), dir));
        fixture(path, sizeof(path), "relative.json");
        assert_string_equal(cfg->path, path);
        assert_string_equal(cfg->base_dir, dir);
        strncat(dir, "/bin/engine", sizeof(dir) - strlen(dir) - 1);
        assert_string_equal(cfg->pools[0].binary, dir);
        ps_config_free(cfg);
}

static void test_the_api_port_is_not_an_engine_port(void **state) {
        static const char *const moved[] = { "POOL_MANAGERD_ADDR", "127.0.0.1:9300", NULL };
        static const char *const clash[] = { "POOL_MANAGERD_ADDR", "127.0.0.1:9201", NULL };
        ps_config *cfg = NULL;
        char path[1024], err[1024];

        (void) state;
        fixture(path, sizeof(path), "ports.json");
        /* the default 127.0.0.1:9200 is pool a's port */
        assert_int_equal(ps_config_load(path, fake_getenv, NULL, &cfg, err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "bind: port 9200 is also used by pools[0] (\"a\", ports 9200..9201)");
        assert_null(cfg);
        /* its surge port too */
        assert_int_equal(ps_config_load(path, fake_getenv, (void *) clash, &cfg, err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "POOL_MANAGERD_ADDR: port 9201 is also used by pools[0] "
                                 "(\"a\", ports 9200..9201)");
        /* the environment moves the API away: only the bind in effect counts */
        assert_int_equal(ps_config_load(path, fake_getenv, (void *) moved, &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg->bind, "127.0.0.1:9300");
        /* and a flag may not move it back */
        assert_int_equal(ps_config_set_bind(cfg, "127.0.0.1:9201", "flag", err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "bind: port 9201 is also used by pools[0] (\"a\", ports 9200..9201)");
        assert_string_equal(cfg->bind, "127.0.0.1:9300");
        ps_config_free(cfg);
}

/* The cuda backend with the fake libcuda.so.1 showing two devices. */
static void test_cuda_backend_masks_and_visible_devices(void **state) {
        ps_config *cfg = NULL;
        char err[512] = "";

        (void) state;
        setenv("FAKE_CUDA_DEVICES", "2", 1);
        setenv("FAKE_CUDA_FREE_MIB", "20000,10000", 1);
        assert_int_equal(ps_config_load_string("{\"gpu\": {\"backend\": \"cuda\"}, \"pools\": ["
                                               POOL_A(", \"split\": \"auto\"") ", "
                                               POOL_B_ON("GPU-FACE0000-1234-5678-9abc-def000000001", "")
                                               "]}", BASE, &cfg, err, sizeof(err)), 0);
        assert_int_equal(ps_inventory_backend(cfg->inventory), PS_GPU_BACKEND_CUDA);
        assert_int_equal(ps_inventory_count(cfg->inventory), 2);
        assert_null(ps_inventory_problem(cfg->inventory));
        /* the engine sees its devices by UUID: immune to renumbering */
        assert_string_equal(cfg->pools[0].cuda_visible_devices, "GPU-face0000-1234-5678-9abc-def000000000");
        assert_string_equal(cfg->pools[1].device_mask, "1");
        assert_string_equal(cfg->pools[1].cuda_visible_devices, "GPU-face0000-1234-5678-9abc-def000000001");
        assert_string_equal(cfg->pools[0].tensor_split, "1");
        ps_config_free(cfg);

        /* by index when asked */
        assert_int_equal(ps_config_load_string("{\"gpu\": {\"backend\": \"auto\", \"uuid_visible_devices\": false},"
                                               " \"pools\": [" POOL_NOMASK(", \"device_mask\": \"0,1\", \"split\": \"auto\"")
                                               "]}", BASE, &cfg, err, sizeof(err)), 0);
        assert_int_equal(ps_inventory_backend(cfg->inventory), PS_GPU_BACKEND_CUDA);
        assert_string_equal(cfg->pools[0].cuda_visible_devices, "0,1");
        /* planned from free VRAM minus the default 512 MiB headroom */
        assert_string_equal(cfg->pools[0].tensor_split, "0.6726,0.3274");
        ps_config_free(cfg);

        /* a device the node does not have */
        assert_int_equal(ps_config_load_string("{\"gpu\": {\"backend\": \"cuda\"}, \"pools\": ["
                                               POOL_B_ON("2", "") "]}", BASE, &cfg, err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "pools[0].device_mask: 2 is not a known device");
        unsetenv("FAKE_CUDA_DEVICES");
        unsetenv("FAKE_CUDA_FREE_MIB");
}

static void test_demo_config_loads(void **state) {
        const char *path = getenv("DEMO_CONFIG");
        ps_config_replica *list = NULL;
        ps_config *cfg = NULL;
        char err[1024];
        size_t n = 0;
        json_t *devices;

        (void) state;
        if (!path)
                path = "docs/examples/demo.json";
        if (ps_config_load(path, fake_getenv, NULL, &cfg, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        assert_int_equal(cfg->gpu.backend, PS_GPU_BACKEND_FAKE);
        assert_true(cfg->gpu.require);
        assert_int_equal(ps_inventory_count(cfg->inventory), 2);
        assert_int_equal(cfg->n_pools, 2);
        assert_string_equal(cfg->pools[0].id, "llama-7b");
        assert_string_equal(cfg->pools[1].id, "qwen-0.5b");
        assert_int_equal(cfg->pools[0].port, 18081);
        assert_int_equal(cfg->pools[1].port, 18091);
        assert_string_equal(cfg->pools[0].device_mask, "0");
        assert_string_equal(cfg->pools[1].device_mask, "1");
        assert_int_equal(cfg->pools[0].slots, 2);
        /* the model the demo names is in the repository */
        assert_int_equal(access(cfg->pools[0].model_path, R_OK), 0);
        assert_non_null(strstr(cfg->pools[0].binary, "/build/tests/helpers/fake-engine"));
        assert_null(strstr(cfg->pools[0].binary, ".."));

        assert_int_equal(ps_config_replicas(cfg, &list, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].spec->model_id, "tiny");
        assert_string_equal(list[0].spec->cuda_visible_devices, "0");
        assert_string_equal(list[1].spec->cuda_visible_devices, "1");
        ps_config_replicas_free(list, n);

        devices = ps_inventory_to_json(cfg->inventory);
        assert_int_equal(json_array_size(json_object_get(devices, "devices")), 2);
        json_decref(devices);
        ps_config_free(cfg);
}

static void test_names(void **state) {
        (void) state;
        assert_string_equal(ps_profile_to_string(PS_PROFILE_CLOUD), "cloud");
        assert_null(ps_profile_to_string(PS_PROFILE_MAX));
        assert_string_equal(ps_shutdown_mode_to_string(PS_SHUTDOWN_KEEP), "keep");
        assert_null(ps_shutdown_mode_to_string(PS_SHUTDOWN_MODE_MAX));
        assert_string_equal(ps_gpu_backend_to_string(PS_GPU_BACKEND_FAKE), "fake");
        assert_null(ps_gpu_backend_to_string(PS_GPU_BACKEND_MAX));
        assert_null(ps_config_free(NULL));
        assert_null(ps_config_replicas_free(NULL, 0));
}

static ps_config *cloud_config(const char *address, const char *url) {
        ps_config *cfg = ps_config_new();

        assert_non_null(cfg);
        cfg->profile = PS_PROFILE_CLOUD;
        free(cfg->cloud.address);
        cfg->cloud.address = strdup(address);
        free(cfg->cloud.orchestrator_url);
        cfg->cloud.orchestrator_url = strdup(url);
        return cfg;
}

static void test_cloud_profile_names_what_is_missing(void **state) {
        ps_config *cfg;
        char err[512];

        (void) state;
        cfg = cloud_config("", "");
        assert_int_equal(ps_config_resolve_cloud(cfg, "n1", err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "POOL_MANAGERD_ADDRESS"));
        assert_non_null(strstr(err, "ORCHESTRATORD_URL"));
        ps_config_free(cfg);

        cfg = cloud_config("", "http://orch:8080");
        assert_int_equal(ps_config_resolve_cloud(cfg, "n1", err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "node address"));
        assert_null(strstr(err, "control-plane URL"));
        ps_config_free(cfg);

        cfg = cloud_config("http://10.0.0.5:9200", "");
        assert_int_equal(ps_config_resolve_cloud(cfg, "n1", err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "control-plane URL"));
        assert_null(strstr(err, "node address"));
        ps_config_free(cfg);

        /* The home profile needs neither. */
        cfg = ps_config_new();
        assert_int_equal(ps_config_resolve_cloud(cfg, "n1", err, sizeof(err)), 0);
        assert_string_equal(cfg->cloud.node_id, "");
        ps_config_free(cfg);
}

static void test_cloud_ids_default_to_the_host_name(void **state) {
        ps_config *cfg = cloud_config("http://10.0.0.5:9200", "http://orch:8080");
        char err[512];

        (void) state;
        assert_int_equal(ps_config_resolve_cloud(cfg, "gpu-node-7", err, sizeof(err)), 0);
        assert_string_equal(cfg->cloud.node_id, "gpu-node-7");
        assert_string_equal(cfg->cloud.machine_id, "gpu-node-7");
        ps_config_free(cfg);

        /* Given ids stay; the machine id follows the node id. */
        cfg = cloud_config("http://10.0.0.5:9200", "http://orch:8080");
        free(cfg->cloud.node_id);
        cfg->cloud.node_id = strdup("node-a");
        assert_int_equal(ps_config_resolve_cloud(cfg, "host", err, sizeof(err)), 0);
        assert_string_equal(cfg->cloud.node_id, "node-a");
        assert_string_equal(cfg->cloud.machine_id, "node-a");
        ps_config_free(cfg);

        cfg = cloud_config("http://10.0.0.5:9200", "http://orch:8080");
        assert_int_equal(ps_config_resolve_cloud(cfg, "bad host!", err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "POOL_MANAGERD_NODE_ID"));
        ps_config_free(cfg);
}

/* A check collects every problem; a load stops at the first. */
static void test_check_collects_every_error(void **state) {
        static const char text[] =
                "{" FAKE_GPU ", \"shutdown\": \"kil\", \"pools\": ["
                POOL_A(", \"slot\": 2, \"replicas\": 0") ","
                POOL_B_ON("GPU7", "") "]}";
        static const char *const want[] = {
                "shutdown: must be \"stop\" or \"keep\", got \"kil\"",
                "pools[0].slot: unknown key (did you mean \"slots\"?)",
                "pools[0].replicas: must be 1..",
                "pools[1].device_mask: GPU7 is not a known device",
        };
        char path[] = "/tmp/pm-check-XXXXXX", prefixed[512], err[512];
        ps_config *cfg = NULL;
        char **errors = NULL;
        size_t n = 0;
        int fd = mkstemp(path);

        (void) state;
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t) sizeof(text) - 1);
        close(fd);
        assert_int_equal(ps_config_check_load(path, NULL, NULL, &cfg, &errors, &n), PS_E_INVALID);
        assert_null(cfg);
        for (size_t i = 0; i < n; i++)
                print_message("%s\n", errors[i]);
        assert_int_equal(n, sizeof(want) / sizeof(want[0]));
        for (size_t i = 0; i < n; i++) {
                snprintf(prefixed, sizeof(prefixed), "%s: %s", path, want[i]);
                assert_true(strncmp(errors[i], prefixed, strlen(prefixed)) == 0);
                free(errors[i]);
        }
        free(errors);
        /* the same file loaded: only the first */
        assert_int_equal(ps_config_load_file(path, &cfg, err, sizeof(err)), PS_E_INVALID);
        snprintf(prefixed, sizeof(prefixed), "%s: %s", path, want[0]);
        assert_string_equal(err, prefixed);
        unlink(path);
}

static void test_cloud_token_file(void **state) {
        char path[] = "/tmp/pm-token-XXXXXX", err[512];
        ps_config *cfg = cloud_config("http://10.0.0.5:9200", "http://orch:8080");
        int fd = mkstemp(path);

        (void) state;
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "tok-123\n", 8), 8);
        close(fd);
        free(cfg->cloud.token_file);
        cfg->cloud.token_file = strdup(path);
        assert_int_equal(ps_config_resolve_cloud(cfg, "n1", err, sizeof(err)), 0);
        assert_string_equal(cfg->cloud.api_token, "tok-123");
        ps_config_free(cfg);

        /* LLORCH_API_TOKEN wins. */
        cfg = cloud_config("http://10.0.0.5:9200", "http://orch:8080");
        free(cfg->cloud.token_file);
        cfg->cloud.token_file = strdup(path);
        cfg->cloud.api_token = strdup("from-env");
        assert_int_equal(ps_config_resolve_cloud(cfg, "n1", err, sizeof(err)), 0);
        assert_string_equal(cfg->cloud.api_token, "from-env");
        ps_config_free(cfg);

        unlink(path);
        cfg = cloud_config("http://10.0.0.5:9200", "http://orch:8080");
        free(cfg->cloud.token_file);
        cfg->cloud.token_file = strdup(path);
        assert_int_equal(ps_config_resolve_cloud(cfg, "n1", err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "cloud.token_file"));
        ps_config_free(cfg);
}

static const char *watch_env(const char *name, void *userdata) {
        (void) userdata;
        return strcmp(name, "POOL_MANAGERD_WATCH_INTERVAL_MS") == 0 ? "250" : NULL;
}

static void test_watch_interval_from_the_environment(void **state) {
        ps_config *cfg = ps_config_new();
        char err[512];

        (void) state;
        assert_false(cfg->watch_interval_set);
        assert_int_equal(ps_config_apply_env(cfg, watch_env, NULL, err, sizeof(err)), 0);
        assert_true(cfg->watch_interval_set);
        assert_int_equal(cfg->watch_interval_ms, 250);
        ps_config_free(cfg);
}

/* A reload keeps the running GPUs (no probe) for auto and cuda, and reads
 * a fake backend from the file as before. */
static void test_reload_reuses_the_running_gpus(void **state) {
        static const ps_gpu_device known_dev[] = {
                { .index = 0, .uuid = "GPU-known", .name = "Known GPU", .cc_major = 9,
                  .vram_total_bytes = 80ULL << 30, .vram_free_bytes = 79ULL << 30 },
        };
        char path[] = "/tmp/pm-reload-XXXXXX", err[512];
        ps_inventory *known = NULL;
        ps_config *cfg = NULL;
        const char *text = "{\"gpu\": {\"backend\": \"cuda\"}}";
        int fd;

        (void) state;
        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_CUDA, known_dev, 1, &known, err, sizeof(err)), 0);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);

        assert_int_equal(ps_config_reload(path, known, NULL, NULL, &cfg, err, sizeof(err)), 0);
        assert_int_equal(ps_inventory_count(cfg->inventory), 1);
        assert_string_equal(ps_inventory_device(cfg->inventory, 0)->name, "Known GPU");
        assert_int_equal(ps_inventory_device(cfg->inventory, 0)->vram_free_bytes, 79ULL << 30);
        ps_config_free(cfg);
        assert_int_equal(ps_config_reload(path, NULL, NULL, NULL, &cfg, err, sizeof(err)), -EINVAL);

        unlink(path);
        ps_inventory_free(known);
}

int main(void) {
        static const struct CMUnitTest fixed[] = {
                cmocka_unit_test(test_no_file_is_an_empty_node_with_defaults),
                cmocka_unit_test(test_cloud_profile_names_what_is_missing),
                cmocka_unit_test(test_cloud_ids_default_to_the_host_name),
                cmocka_unit_test(test_cloud_token_file),
                cmocka_unit_test(test_check_collects_every_error),
                cmocka_unit_test(test_watch_interval_from_the_environment),
                cmocka_unit_test(test_empty_document_is_the_defaults),
                cmocka_unit_test(test_pool_defaults),
                cmocka_unit_test(test_device_defaults),
                cmocka_unit_test(test_every_key_is_read),
                cmocka_unit_test(test_relative_paths_resolve_against_the_file),
                cmocka_unit_test(test_syntax_errors_give_line_and_column),
                cmocka_unit_test(test_duplicate_keys_are_rejected),
                cmocka_unit_test(test_replica_specs),
                cmocka_unit_test(test_spec_keeps_its_templates),
                cmocka_unit_test(test_spec_of_a_cpu_pool),
                cmocka_unit_test(test_replica_list_for_the_registry),
                cmocka_unit_test(test_split_plans),
                cmocka_unit_test(test_split_cap_failure_names_the_field),
                cmocka_unit_test(test_shared_devices_when_both_agree),
                cmocka_unit_test(test_binary_allowed),
                cmocka_unit_test(test_binary_allowed_on_realpaths),
                cmocka_unit_test(test_model_outside_gets_one_answer),
                cmocka_unit_test(test_model_allowlist_defaults_to_pool_model_dirs),
                cmocka_unit_test(test_api_env_allowlist),
                cmocka_unit_test(test_host_check),
                cmocka_unit_test(test_api_socket_and_handoff_dir),
                cmocka_unit_test(test_token_file_precedence),
                cmocka_unit_test(test_token_file_guarded),
                cmocka_unit_test(test_env_overrides_the_file),
                cmocka_unit_test(test_env_profile_false_and_unset_keep_the_file),
                cmocka_unit_test(test_state_directory_is_the_default_runtime_dir),
                cmocka_unit_test(test_env_errors_name_the_variable_and_change_nothing),
                cmocka_unit_test(test_load_without_file_takes_the_environment),
                cmocka_unit_test(test_file_errors_start_with_the_file_name),
                cmocka_unit_test(test_file_paths_resolve_against_its_directory),
                cmocka_unit_test(test_the_api_port_is_not_an_engine_port),
                cmocka_unit_test(test_demo_config_loads),
                cmocka_unit_test(test_cuda_backend_masks_and_visible_devices),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_reload_reuses_the_running_gpus),
        };
        size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
        size_t n_errors = sizeof(error_cases) / sizeof(error_cases[0]);
        struct CMUnitTest *tests = calloc(n_fixed + n_errors, sizeof(*tests));
        int r;

        if (!tests)
                return 1;
        memcpy(tests, fixed, sizeof(fixed));
        /* One case per error, named after the message it expects. */
        for (size_t i = 0; i < n_errors; i++)
                tests[n_fixed + i] = (struct CMUnitTest) {
                        .name = error_cases[i].message ? error_cases[i].message : error_cases[i].json,
                        .test_func = run_error_case,
                        .initial_state = (void *) &error_cases[i],
                };
        r = _cmocka_run_group_tests("config", tests, n_fixed + n_errors, NULL, NULL);
        free(tests);
        return r;
}
