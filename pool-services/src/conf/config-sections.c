/* SPDX-License-Identifier: MIT */
/*
 * The tables of the file's sections other than pools (config-pools.c):
 * the top level, api, engines, models, handoff, gpu and its devices,
 * cloud and etcd. docs/configuration.md is the user's side of them; keep
 * the two in step (test-config-doc checks the keys, types and defaults).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config-schema.h"
#include "base/errfmt.h"
#include "conf/policy-private.h"
#include "base/strv.h"
#include "pool-domain/ids.h"
#include "pool-services/placement/inventory.h"

static const char *const profile_names[PS_PROFILE_MAX] = {
        [PS_PROFILE_HOME] = "home",
        [PS_PROFILE_CLOUD] = "cloud",
};

static const char *const shutdown_names[PS_SHUTDOWN_MODE_MAX] = {
        [PS_SHUTDOWN_STOP] = "stop",
        [PS_SHUTDOWN_KEEP] = "keep",
};

const char *ps_profile_to_string(ps_profile p) {
        return (unsigned) p < PS_PROFILE_MAX ? profile_names[p] : NULL;
}

const char *ps_shutdown_mode_to_string(ps_shutdown_mode m) {
        return (unsigned) m < PS_SHUTDOWN_MODE_MAX ? shutdown_names[m] : NULL;
}

/*
 * Engine variables an API caller may set by default: the engines' own
 * tuning knobs, never a prefix that reaches a loader or an interpreter
 * (VLLM_* would admit VLLM_LOGGING_CONFIG_PATH, which names a Python
 * callable). engines.env_allow replaces the list.
 */
static const char *const default_env_allow[] = {
        "LLAMA_ARG_*", "GGML_*", "OMP_NUM_THREADS", "CUDA_LAUNCH_BLOCKING",
        "VLLM_ATTENTION_BACKEND", "VLLM_USE_V1", "VLLM_WORKER_MULTIPROC_METHOD",
        "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_FLASH_ATTN_VERSION",
        "VLLM_USE_TRITON_FLASH_ATTN", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND",
        "VLLM_LOGGING_LEVEL", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", NULL,
};

/* ---- top level ---- */

static int bind_from_file(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;
        int r = ps_conf_check_bind(c, cfg->bind, at);

        (void) v;
        if (!r)
                cfg->bind_source = "file";
        return r;
}

static int runtime_dir_from_file(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        (void) c, (void) v, (void) at;
        cfg->runtime_dir_source = "file";
        return 0;
}

/* The inventory the pools' masks are checked against. */
static int inventory_build(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;
        char why[256];
        int r;

        (void) v, (void) at;
        cfg->inventory = ps_inventory_free(cfg->inventory);
        if (c->known && (cfg->gpu.backend == PS_GPU_BACKEND_AUTO ||
                         cfg->gpu.backend == PS_GPU_BACKEND_CUDA) &&
            ps_inventory_backend(c->known) != PS_GPU_BACKEND_FAKE)
                r = ps_inventory_copy(c->known, &cfg->inventory);
        else
                r = ps_inventory_from_config(&cfg->gpu, &cfg->inventory, why, sizeof(why));
        if (r > 0)
                return ps_conf_fail(c, "gpu: %s", why);
        return r;
}

/* policy.c has its own table and walker. */
static int defaults_apply(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        if (ps_policy_apply_json(cfg->defaults, v, at, c->err, c->errlen) != 0)
                return PS_E_INVALID;
        return 0;
}

/* ---- api ---- */

static int api_socket_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        (void) v;
        if (strlen(cfg->api_socket) > PS_CONF_SOCKET_PATH_MAX)
                return ps_conf_fail(c, "%s: %s is longer than %d bytes, the most a Unix socket "
                                    "path may have", at, cfg->api_socket, PS_CONF_SOCKET_PATH_MAX);
        return 0;
}

static const ps_field api_fields[] = {
        { .key = "socket", .type = PS_FIELD_PATH, PS_MEMBER(ps_config, api_socket),
          .empty_ok = true, .hook = api_socket_check },
        { .key = "socket_group", .type = PS_FIELD_WORD, PS_MEMBER(ps_config, api_socket_group) },
        { .key = "token_file", .type = PS_FIELD_PATH, PS_MEMBER(ps_config, api_token_file) },
};

static const ps_schema api_schema = {
        "api", api_fields, sizeof(api_fields) / sizeof(api_fields[0]),
};

/* ---- engines, models ---- */

/* An absolute path, normalised, keeping the "/" that marks a tree. */
static int allow_entry_normalise(ps_conf_ctx *c, const char *at, size_t i, char **entry) {
        size_t len = strlen(*entry);
        char *norm;

        if ((*entry)[0] != '/')
                return ps_conf_fail(c, "%s[%zu]: must be an absolute path, got \"" PS_CONF_SHOWN
                                    "\"", at, i, *entry);
        norm = ps_conf_path_resolve(NULL, *entry);
        if (!norm)
                return -ENOMEM;
        if (len > 1 && (*entry)[len - 1] == '/' && strcmp(norm, "/") != 0) {
                char *dir = malloc(strlen(norm) + 2);

                if (!dir) {
                        free(norm);
                        return -ENOMEM;
                }
                snprintf(dir, strlen(norm) + 2, "%s/", norm);
                free(norm);
                norm = dir;
        }
        free(*entry);
        *entry = norm;
        return 0;
}

/*
 * engines.allow, models.allow: each entry normalised and also resolved
 * once now (its realpath, NULL where it does not exist yet), so a request
 * is compared with what the entry really names. *real is NULL before: a
 * configuration is loaded once.
 */
static int allowlist_resolve(ps_conf_ctx *c, const char *at, char **list, size_t n,
                             char ***real) {
        *real = calloc(n ? n : 1, sizeof(char *));
        if (!*real)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = allow_entry_normalise(c, at, i, &list[i]);

                if (r)
                        return r;
                (*real)[i] = ps_conf_entry_realpath(list[i]);
                if (!(*real)[i] && errno == ENOMEM)
                        return -ENOMEM;
        }
        return 0;
}

static int engines_allow_resolve(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        (void) v;
        return allowlist_resolve(c, at, cfg->engines_allow, cfg->n_engines_allow,
                                 &cfg->engines_allow_real);
}

static int models_allow_resolve(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        (void) v;
        return allowlist_resolve(c, at, cfg->models_allow, cfg->n_models_allow,
                                 &cfg->models_allow_real);
}

static int env_pass_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        (void) v;
        for (size_t i = 0; i < cfg->n_engines_env_pass; i++)
                if (ps_conf_check_env_name(cfg->engines_env_pass[i]) != 0)
                        return ps_conf_fail(c, "%s[%zu]: \"" PS_CONF_SHOWN "\" is not a variable "
                                            "name", at, i, cfg->engines_env_pass[i]);
        return 0;
}

static int env_allow_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        (void) v;
        for (size_t i = 0; i < cfg->n_engines_env_allow; i++)
                if (!cfg->engines_env_allow[i][0] || strchr(cfg->engines_env_allow[i], '='))
                        return ps_conf_fail(c, "%s[%zu]: \"" PS_CONF_SHOWN "\" is not a name "
                                            "pattern", at, i, cfg->engines_env_allow[i]);
        return 0;
}

static const ps_field engines_fields[] = {
        { .key = "allow", .type = PS_FIELD_STRINGS, PS_MEMBER(ps_config, engines_allow),
          .count_offset = offsetof(ps_config, n_engines_allow), .hook = engines_allow_resolve },
        { .key = "user", .type = PS_FIELD_WORD, PS_MEMBER(ps_config, engines_user) },
        { .key = "env_pass", .type = PS_FIELD_STRINGS, PS_MEMBER(ps_config, engines_env_pass),
          .count_offset = offsetof(ps_config, n_engines_env_pass), .hook = env_pass_check },
        { .key = "env_allow", .type = PS_FIELD_STRINGS, PS_MEMBER(ps_config, engines_env_allow),
          .count_offset = offsetof(ps_config, n_engines_env_allow), .hook = env_allow_check,
          .def_strv = default_env_allow },
        { .key = "allow_remote_hosts", .type = PS_FIELD_BOOL,
          PS_MEMBER(ps_config, engines_allow_remote_hosts), .has_default = true },
        { .key = "log_max_bytes", .type = PS_FIELD_INT, PS_MEMBER(ps_config, engines_log_max_bytes),
          .max = PS_FIELD_NO_MAX, .has_default = true, .def_int = 67108864 },
};

static const ps_schema engines_schema = {
        "engines", engines_fields, sizeof(engines_fields) / sizeof(engines_fields[0]),
};

static const ps_field models_fields[] = {
        { .key = "allow", .type = PS_FIELD_STRINGS, PS_MEMBER(ps_config, models_allow),
          .count_offset = offsetof(ps_config, n_models_allow), .hook = models_allow_resolve },
};

static const ps_schema models_schema = {
        "models", models_fields, sizeof(models_fields) / sizeof(models_fields[0]),
};

/* ---- handoff ---- */

static int handoff_dir_from_file(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_config *cfg = base;

        (void) c, (void) v, (void) at;
        cfg->handoff_dir_source = "file";
        return 0;
}

static const ps_field handoff_fields[] = {
        { .key = "dir", .type = PS_FIELD_PATH, PS_MEMBER(ps_config, handoff_dir),
          .hook = handoff_dir_from_file },
        { .key = "max_slots", .type = PS_FIELD_INT, PS_MEMBER(ps_config, handoff_max_slots),
          .min = 1, .max = 65535, .has_default = true, .def_int = 256 },
        { .key = "allow_remote", .type = PS_FIELD_BOOL, PS_MEMBER(ps_config, handoff_allow_remote),
          .has_default = true },
};

static const ps_schema handoff_schema = {
        "handoff", handoff_fields, sizeof(handoff_fields) / sizeof(handoff_fields[0]),
};

/* ---- gpu.devices[] ---- */

/* The defaults that name the device. */
static int device_index_set(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_gpu_device *d = base;

        (void) c, (void) v, (void) at;
        snprintf(d->uuid, sizeof(d->uuid), "GPU-fake-%d", d->index);
        snprintf(d->name, sizeof(d->name), "Fake GPU %d", d->index);
        return 0;
}

static int device_uuid_set(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_gpu_device *d = base;
        const char *uuid = json_string_value(v);

        if (strncmp(uuid, "GPU-", 4) != 0 || strlen(uuid) >= PS_GPU_UUID_MAX ||
            ps_conf_has_space(uuid))
                return ps_conf_fail(c, "%s: must start with \"GPU-\" and be under %d characters "
                                    "without spaces, got \"" PS_CONF_SHOWN "\"", at,
                                    PS_GPU_UUID_MAX, uuid);
        snprintf(d->uuid, sizeof(d->uuid), "%s", uuid);
        return 0;
}

static int device_name_set(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_gpu_device *d = base;
        const char *name = json_string_value(v);

        if (strlen(name) >= PS_GPU_NAME_MAX)
                return ps_conf_fail(c, "%s: must be under %d characters", at, PS_GPU_NAME_MAX);
        snprintf(d->name, sizeof(d->name), "%s", name);
        return 0;
}

static int parse_cc(const char *s, int *major, int *minor) {
        char *end;
        long a, b;

        if (!isdigit((unsigned char) s[0]))
                return -1;
        a = strtol(s, &end, 10);
        if (*end != '.' || !isdigit((unsigned char) end[1]))
                return -1;
        b = strtol(end + 1, &end, 10);
        if (*end || a > 99 || b > 99)
                return -1;
        *major = (int) a;
        *minor = (int) b;
        return 0;
}

static int device_cc_set(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_gpu_device *d = base;

        if (parse_cc(json_string_value(v), &d->cc_major, &d->cc_minor) != 0)
                return ps_conf_fail(c, "%s: must look like \"8.9\", got \"" PS_CONF_SHOWN "\"", at,
                                    json_string_value(v));
        return 0;
}

/* Free VRAM within the total, and no device twice. */
static int device_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_gpu_device *d = base;
        const ps_gpu_config *gpu = &c->cfg->gpu;
        size_t i = (size_t) (d - gpu->devices);

        (void) v;
        if (d->vram_free_bytes == UINT64_MAX)
                d->vram_free_bytes = d->vram_total_bytes;
        else if (d->vram_free_bytes > d->vram_total_bytes)
                return ps_conf_fail(c, "%s.vram_free_bytes: more than vram_total_bytes (%"
                                    JSON_INTEGER_FORMAT " > %" JSON_INTEGER_FORMAT ")", at,
                                    (json_int_t) d->vram_free_bytes,
                                    (json_int_t) d->vram_total_bytes);
        for (size_t j = 0; j < i; j++) {
                const ps_gpu_device *o = &gpu->devices[j];

                if (o->index == d->index)
                        return ps_conf_fail(c, "%s.index: device %d is also gpu.devices[%zu]",
                                            at, d->index, j);
                if (strcasecmp(o->uuid, d->uuid) == 0)
                        return ps_conf_fail(c, "%s.uuid: " PS_CONF_SHOWN " is also "
                                            "gpu.devices[%zu]'s", at, d->uuid, j);
        }
        return 0;
}

static const ps_field device_fields[] = {
        { .key = "index", .type = PS_FIELD_INT, PS_MEMBER(ps_gpu_device, index), .required = true,
          .min = 0, .max = PS_DEVICES_MAX - 1, .hook = device_index_set },
        { .key = "uuid", .type = PS_FIELD_STRING, .hook = device_uuid_set },
        { .key = "name", .type = PS_FIELD_STRING, .hook = device_name_set },
        { .key = "compute_capability", .type = PS_FIELD_STRING, .hook = device_cc_set },
        { .key = "vram_total_bytes", .type = PS_FIELD_INT,
          PS_MEMBER(ps_gpu_device, vram_total_bytes), .required = true, .max = PS_FIELD_NO_MAX },
        { .key = "vram_free_bytes", .type = PS_FIELD_INT, PS_MEMBER(ps_gpu_device, vram_free_bytes),
          .max = PS_FIELD_NO_MAX },
        { .type = PS_FIELD_CHECK, .hook = device_check },
};

static const ps_schema device_schema = {
        "gpu.devices[]", device_fields, sizeof(device_fields) / sizeof(device_fields[0]),
};

/* ---- gpu ---- */

static int gpu_devices_parse(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_gpu_config *gpu = base;
        size_t n = json_array_size(v);

        if (gpu->backend != PS_GPU_BACKEND_FAKE && n > 0)
                return ps_conf_fail(c, "%s: only the fake backend takes devices (gpu.backend "
                                    "is \"%s\")", at, ps_gpu_backend_names[gpu->backend]);
        if (n > PS_DEVICES_MAX)
                return ps_conf_fail(c, "%s: at most %d devices, got %zu", at, PS_DEVICES_MAX, n);
        gpu->devices = calloc(n ? n : 1, sizeof(*gpu->devices));
        if (!gpu->devices)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char where[PS_CONF_AT_MAX];
                int r;

                snprintf(where, sizeof(where), "%s[%zu]", at, i);
                /* absent vram_free_bytes: the total, set by device_check() */
                gpu->devices[i].vram_free_bytes = UINT64_MAX;
                r = ps_schema_walk(c, &device_schema, json_array_get(v, i), where,
                                   &gpu->devices[i]);
                if (r)
                        return r;
                gpu->n_devices = i + 1;
        }
        return 0;
}

static const ps_field gpu_fields[] = {
        { .key = "backend", .type = PS_FIELD_ENUM, PS_MEMBER(ps_gpu_config, backend),
          .names = ps_gpu_backend_names, .n_names = PS_GPU_BACKEND_MAX,
          .has_default = true, .def_int = PS_GPU_BACKEND_AUTO },
        { .key = "require", .type = PS_FIELD_BOOL, PS_MEMBER(ps_gpu_config, require),
          .has_default = true, .def_int = true },
        { .key = "headroom_bytes", .type = PS_FIELD_INT, PS_MEMBER(ps_gpu_config, headroom_bytes),
          .max = PS_FIELD_NO_MAX, .has_default = true, .def_int = 536870912 },
        { .key = "probe_timeout_ms", .type = PS_FIELD_INT,
          PS_MEMBER(ps_gpu_config, probe_timeout_ms), .min = 1, .max = 600000,
          .has_default = true, .def_int = 30000 },
        { .key = "sample_interval_ms", .type = PS_FIELD_INT,
          PS_MEMBER(ps_gpu_config, sample_interval_ms), .max = 86400000,
          .has_default = true, .def_int = 10000 },
        { .key = "uuid_visible_devices", .type = PS_FIELD_BOOL,
          PS_MEMBER(ps_gpu_config, uuid_visible_devices), .has_default = true, .def_int = true },
        { .key = "devices", .type = PS_FIELD_ARRAY, .hook = gpu_devices_parse },
};

static const ps_schema gpu_schema = {
        "gpu", gpu_fields, sizeof(gpu_fields) / sizeof(gpu_fields[0]),
};

/* ---- cloud, cloud.etcd ---- */

static int url_check(ps_conf_ctx *c, const char *at, const char *url) {
        if (url[0] && !ps_conf_is_url(url))
                return ps_conf_fail(c, "%s: must be an http:// or https:// URL, got \""
                                    PS_CONF_SHOWN "\"", at, url);
        return 0;
}

static int node_id_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_cloud_config *cl = base;
        pd_error perr;

        (void) v;
        if (cl->node_id[0] && pd_id_validate(cl->node_id, "node id", &perr) != 0)
                return ps_conf_fail(c, "%s: %s", at, perr.msg);
        return 0;
}

static int machine_id_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_cloud_config *cl = base;

        (void) v;
        if (ps_conf_has_space(cl->machine_id))
                return ps_conf_fail(c, "%s: must not contain spaces", at);
        return 0;
}

static int address_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        (void) base;
        return url_check(c, at, json_string_value(v));
}

static int endpoints_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_cloud_config *cl = base;

        (void) v;
        for (size_t i = 0; i < cl->n_etcd_endpoints; i++)
                if (!ps_conf_is_url(cl->etcd_endpoints[i]))
                        return ps_conf_fail(c, "%s[%zu]: must be an http:// or https:// URL, got \""
                                            PS_CONF_SHOWN "\"", at, i, cl->etcd_endpoints[i]);
        return 0;
}

static int prefix_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_cloud_config *cl = base;

        (void) v;
        if (cl->etcd_prefix[0] != '/')
                return ps_conf_fail(c, "%s: must start with '/', got \"" PS_CONF_SHOWN "\"", at,
                                    cl->etcd_prefix);
        return 0;
}

static const ps_field etcd_fields[] = {
        { .key = "endpoints", .type = PS_FIELD_STRINGS, PS_MEMBER(ps_cloud_config, etcd_endpoints),
          .count_offset = offsetof(ps_cloud_config, n_etcd_endpoints), .hook = endpoints_check },
        { .key = "prefix", .type = PS_FIELD_STRING, PS_MEMBER(ps_cloud_config, etcd_prefix),
          .hook = prefix_check, .def_str = "/pool-managerd/" },
        { .key = "ttl_ms", .type = PS_FIELD_INT, PS_MEMBER(ps_cloud_config, etcd_ttl_ms),
          .min = 1000, .max = PS_FIELD_NO_MAX, .has_default = true, .def_int = 30000 },
};

static const ps_schema etcd_schema = {
        "cloud.etcd", etcd_fields, sizeof(etcd_fields) / sizeof(etcd_fields[0]),
};

static const ps_field cloud_fields[] = {
        { .key = "node_id", .type = PS_FIELD_STRING, PS_MEMBER(ps_cloud_config, node_id),
          .hook = node_id_check, .def_str = "" },
        { .key = "machine_id", .type = PS_FIELD_STRING, PS_MEMBER(ps_cloud_config, machine_id),
          .hook = machine_id_check, .def_str = "" },
        { .key = "address", .type = PS_FIELD_STRING, PS_MEMBER(ps_cloud_config, address),
          .hook = address_check, .def_str = "" },
        { .key = "orchestrator_url", .type = PS_FIELD_STRING,
          PS_MEMBER(ps_cloud_config, orchestrator_url), .hook = address_check, .def_str = "" },
        { .key = "heartbeat_interval_ms", .type = PS_FIELD_INT,
          PS_MEMBER(ps_cloud_config, heartbeat_interval_ms), .min = 1, .max = PS_FIELD_NO_MAX,
          .has_default = true, .def_int = 10000 },
        /* "" means none; a path resolves like binary */
        { .key = "token_file", .type = PS_FIELD_PATH, PS_MEMBER(ps_cloud_config, token_file),
          .empty_ok = true, .def_str = "" },
        { .key = "etcd", .type = PS_FIELD_OBJECT, .sub = &etcd_schema },
};

static const ps_schema cloud_schema = {
        "cloud", cloud_fields, sizeof(cloud_fields) / sizeof(cloud_fields[0]),
};

/* ---- the file ---- */

static const ps_field top_fields[] = {
        { .key = "bind", .type = PS_FIELD_STRING, PS_MEMBER(ps_config, bind),
          .hook = bind_from_file, .def_str = "127.0.0.1:9200" },
        { .key = "runtime_dir", .type = PS_FIELD_PATH, PS_MEMBER(ps_config, runtime_dir),
          .hook = runtime_dir_from_file, .def_str = ".runtime" },
        { .key = "profile", .type = PS_FIELD_ENUM, PS_MEMBER(ps_config, profile),
          .names = profile_names, .n_names = PS_PROFILE_MAX,
          .has_default = true, .def_int = PS_PROFILE_HOME },
        { .key = "shutdown", .type = PS_FIELD_ENUM, PS_MEMBER(ps_config, shutdown),
          .names = shutdown_names, .n_names = PS_SHUTDOWN_MODE_MAX,
          .has_default = true, .def_int = PS_SHUTDOWN_STOP },
        { .key = "api", .type = PS_FIELD_OBJECT, .sub = &api_schema },
        { .key = "engines", .type = PS_FIELD_OBJECT, .sub = &engines_schema },
        { .key = "models", .type = PS_FIELD_OBJECT, .sub = &models_schema },
        { .key = "handoff", .type = PS_FIELD_OBJECT, .sub = &handoff_schema },
        { .key = "gpu", .type = PS_FIELD_OBJECT, .offset = offsetof(ps_config, gpu),
          .sub = &gpu_schema },
        { .type = PS_FIELD_CHECK, .hook = inventory_build },
        { .key = "defaults", .type = PS_FIELD_OBJECT, .hook = defaults_apply },
        { .key = "pools", .type = PS_FIELD_ARRAY, .hook = ps_conf_pools_parse },
        { .key = "cloud", .type = PS_FIELD_OBJECT, .offset = offsetof(ps_config, cloud),
          .sub = &cloud_schema },
};

static const ps_schema top_schema = {
        "", top_fields, sizeof(top_fields) / sizeof(top_fields[0]),
};

const ps_schema *const ps_conf_schemas[] = {
        &top_schema, &api_schema, &engines_schema, &models_schema, &handoff_schema,
        &gpu_schema, &device_schema, &ps_conf_schema_pool, &cloud_schema, &etcd_schema, NULL,
};

int ps_conf_set_defaults(ps_config *cfg) {
        return ps_schema_defaults(&top_schema, cfg);
}

int ps_conf_parse(ps_conf_ctx *c, ps_config *cfg, const json_t *doc) {
        if (!json_is_object(doc))
                return ps_conf_fail(c, "config: must be a JSON object, got %s",
                                    ps_json_type_name(doc));
        c->cfg = cfg;
        return ps_schema_walk(c, &top_schema, doc, "", cfg);
}
