/* SPDX-License-Identifier: MIT */
/*
 * The API's PreparedEngine, checked field by field. What a request may
 * start is bounded by the config: the binary must be allowed, the mask
 * must name devices the inventory has, and gpu.require holds here too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/errfmt.h"
#include "conf/policy-private.h"
#include "pool-domain/ids.h"
#include "pool-services/placement/inventory.h"
#include "pool-services/conf/prepared.h"

#define SLOTS_MAX 4096
/* What a message shows of a client's string. */
#define SHOWN "%.80s"

int ps_id_check(const char *id, const char *what, char *err, size_t errlen) {
        pd_error e;

        if (pd_id_validate(id, what, &e) != 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s", e.msg);
        return 0;
}

const ps_policy *ps_prepared_engine_policy(const ps_config *config, const char *pool_id) {
        const ps_pool_config *p = ps_config_find_pool(config, pool_id);

        return p ? p->policy : config ? config->defaults : NULL;
}

static const char *const known_keys[] = {
        "binary_path", "flags", "host", "port", "model_path", "model_id", "model_digest",
        "engine", "engine_version", "pool_id", "replica_id", "device_mask", "slots",
        "env", "workdir", NULL,
};

static int check_keys(const json_t *body, char *err, size_t errlen) {
        const char *key;
        json_t *value;

        json_object_foreach((json_t *) body, key, value) {
                bool known = false;

                for (size_t i = 0; known_keys[i] && !known; i++)
                        known = strcmp(key, known_keys[i]) == 0;
                if (!known)
                        return ps_errf(err, errlen, PS_E_INVALID, "unknown field \"" SHOWN "\"", key);
        }
        return 0;
}

/* *ret: the string, or NULL when absent or null. */
static int get_string(const json_t *body, const char *key, bool required,
                      const char **ret, char *err, size_t errlen) {
        const json_t *v = json_object_get(body, key);

        *ret = NULL;
        if (!v || json_is_null(v)) {
                if (required)
                        return ps_errf(err, errlen, PS_E_INVALID, "%s: is required", key);
                return 0;
        }
        if (!json_is_string(v))
                return ps_errf(err, errlen, PS_E_INVALID, "%s: must be a string", key);
        if (json_string_length(v) != strlen(json_string_value(v)))
                return ps_errf(err, errlen, PS_E_INVALID, "%s: must not contain NUL", key);
        if (json_string_length(v) == 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s: must not be empty", key);
        *ret = json_string_value(v);
        return 0;
}

static int get_integer(const json_t *body, const char *key, bool required, json_int_t min,
                       json_int_t max, json_int_t def, json_int_t *ret, char *err, size_t errlen) {
        const json_t *v = json_object_get(body, key);

        *ret = def;
        if (!v || json_is_null(v)) {
                if (required)
                        return ps_errf(err, errlen, PS_E_INVALID, "%s: is required", key);
                return 0;
        }
        if (!json_is_integer(v))
                return ps_errf(err, errlen, PS_E_INVALID, "%s: must be an integer", key);
        *ret = json_integer_value(v);
        if (*ret < min || *ret > max)
                return ps_errf(err, errlen, PS_E_INVALID,
                               "%s: must be between %lld and %lld, got %lld", key,
                               (long long) min, (long long) max, (long long) *ret);
        return 0;
}

static int dup_to(char **dst, const char *s) {
        if (!s)
                return 0;
        *dst = strdup(s);
        return *dst ? 0 : -ENOMEM;
}

static int set_strings(const json_t *body, ps_engine_spec *spec, char *err, size_t errlen) {
        static const struct {
                const char *key;
                size_t offset;
        } fields[] = {
                { "host", offsetof(ps_engine_spec, host) },
                { "model_id", offsetof(ps_engine_spec, model_id) },
                { "model_digest", offsetof(ps_engine_spec, model_digest) },
                { "engine", offsetof(ps_engine_spec, engine) },
                { "engine_version", offsetof(ps_engine_spec, engine_version) },
        };

        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                const char *s;
                int r = get_string(body, fields[i].key, false, &s, err, errlen);

                if (r == 0)
                        r = dup_to((char **) ((char *) spec + fields[i].offset), s);
                if (r != 0)
                        return r;
        }
        if (!spec->host && dup_to(&spec->host, "127.0.0.1") < 0)
                return -ENOMEM;
        return 0;
}

/* host: an IP literal of this node; loopback unless engines.allow_remote_hosts. */
static int set_host(const ps_config *config, ps_engine_spec *spec, char *err, size_t errlen) {
        char literal[64], why[160];

        if (ps_host_check(spec->host, config->engines_allow_remote_hosts, literal,
                          sizeof(literal), why, sizeof(why)) != 0)
                return ps_errf(err, errlen, PS_E_INVALID, "host: %s", why);
        free(spec->host);
        spec->host = strdup(literal);
        return spec->host ? 0 : -ENOMEM;
}

static int check_access(const char *key, const char *path, int mode, char *err, size_t errlen) {
        if (access(path, mode) != 0)
                return ps_errf(err, errlen, PS_E_INVALID, "%s: " SHOWN ": %s", key, path,
                               strerror(errno));
        return 0;
}

/*
 * Binary, model and working directory are paths an API caller names: each
 * must lie inside its allowlist, checked before anything touches it (the
 * answer for a path outside says nothing about that path). The binary is
 * kept as its realpath, so the file started is the file checked.
 */
static int set_paths(const json_t *body, const ps_config *config, ps_engine_spec *spec,
                     char *err, size_t errlen) {
        const char *binary, *model, *workdir;
        char *real_binary = NULL, *real_workdir = NULL;
        int r;

        r = get_string(body, "binary_path", true, &binary, err, errlen);
        if (r == 0)
                r = ps_config_binary_allowed(config, binary, &real_binary, err, errlen);
        if (r == PS_E_NOT_FOUND)
                r = PS_E_INVALID;       /* a missing file is a bad field here */
        if (r == 0)
                r = check_access("binary_path", real_binary, X_OK, err, errlen);
        if (r == 0)
                r = get_string(body, "model_path", false, &model, err, errlen);
        if (r == 0 && model)
                r = ps_config_model_allowed(config, model, NULL, err, errlen);
        if (r == PS_E_NOT_FOUND)
                r = PS_E_INVALID;
        if (r == 0 && model)
                r = check_access("model_path", model, R_OK, err, errlen);
        if (r == 0)
                r = get_string(body, "workdir", false, &workdir, err, errlen);
        if (r == 0 && workdir)
                r = ps_config_workdir_allowed(config, workdir, &real_workdir, err, errlen);
        if (r == PS_E_NOT_FOUND)
                r = PS_E_INVALID;
        if (r == 0 && workdir)
                r = check_access("workdir", real_workdir, X_OK, err, errlen);
        if (r == 0) {
                spec->binary_path = real_binary;
                real_binary = NULL;
                spec->workdir = real_workdir;
                real_workdir = NULL;
                r = dup_to(&spec->model_path, model);
        }
        if (r == 0 && model && !spec->model_id) {
                const char *base = strrchr(model, '/');

                r = dup_to(&spec->model_id, base ? base + 1 : model);
        }
        free(real_binary);
        free(real_workdir);
        return r;
}

static int set_ids(const json_t *body, const char *url_pool_id, ps_engine_spec *spec,
                   char *err, size_t errlen) {
        const char *pool_id, *replica_id;
        int r;

        r = ps_id_check(url_pool_id, "pool id", err, errlen);
        if (r == 0)
                r = get_string(body, "pool_id", false, &pool_id, err, errlen);
        if (r == 0 && pool_id && strcmp(pool_id, url_pool_id) != 0)
                return ps_errf(err, errlen, PS_E_INVALID,
                               "pool_id: \"" SHOWN "\" differs from the pool in the path (%s)",
                               pool_id, url_pool_id);
        if (r == 0)
                r = get_string(body, "replica_id", false, &replica_id, err, errlen);
        if (r == 0 && replica_id)
                r = ps_id_check(replica_id, "replica_id", err, errlen);
        if (r == 0)
                r = dup_to(&spec->pool_id, url_pool_id);
        if (r == 0)
                r = dup_to(&spec->replica_id, replica_id ? replica_id : "r0");
        return r;
}

static int set_flags(const json_t *body, ps_engine_spec *spec, char *err, size_t errlen) {
        const json_t *flags = json_object_get(body, "flags");
        size_t i;
        json_t *v;

        if (!flags || json_is_null(flags))
                return 0;
        if (!json_is_array(flags))
                return ps_errf(err, errlen, PS_E_INVALID, "flags: must be an array of strings");
        spec->flags = calloc(json_array_size(flags) + 1, sizeof(char *));
        if (!spec->flags)
                return -ENOMEM;
        json_array_foreach(flags, i, v) {
                if (!json_is_string(v) || json_string_length(v) != strlen(json_string_value(v)))
                        return ps_errf(err, errlen, PS_E_INVALID, "flags[%zu]: must be a string", i);
                if (dup_to(&spec->flags[i], json_string_value(v)) < 0)
                        return -ENOMEM;
                spec->n_flags = i + 1;
        }
        return 0;
}

static int set_env(const json_t *body, const ps_config *config, ps_engine_spec *spec,
                   char *err, size_t errlen) {
        const json_t *env = json_object_get(body, "env");
        const char *key;
        json_t *v;

        if (!env || json_is_null(env))
                return 0;
        if (!json_is_object(env))
                return ps_errf(err, errlen, PS_E_INVALID, "env: must be an object of strings");
        spec->env = calloc(json_object_size(env) + 1, sizeof(char *));
        if (!spec->env)
                return -ENOMEM;
        json_object_foreach((json_t *) env, key, v) {
                int r = ps_config_api_env_allowed(config, key, err, errlen);

                if (r != 0)
                        return r;
                if (!json_is_string(v) || json_string_length(v) != strlen(json_string_value(v)))
                        return ps_errf(err, errlen, PS_E_INVALID,
                                       "env." SHOWN ": must be a string", key);
                if (asprintf(&spec->env[spec->n_env], "%s=%s", key, json_string_value(v)) < 0) {
                        spec->env[spec->n_env] = NULL;
                        return -ENOMEM;
                }
                spec->n_env++;
        }
        return 0;
}

static int set_mask(const json_t *body, const ps_config *config, ps_engine_spec *spec,
                    char *err, size_t errlen) {
        const ps_inventory *inv = config->inventory;
        size_t n_devices = ps_inventory_count(inv);
        char text[PS_DEVICES_MAX * 4], visible[PS_DEVICES_MAX * 4];
        ps_device_mask mask = { .none = true };
        const char *s;
        int r;

        r = get_string(body, "device_mask", false, &s, err, errlen);
        if (r != 0)
                return r;
        if (s) {
                r = ps_inventory_parse_mask(inv, s, &mask, err, errlen);
                if (r != 0)
                        return r > 0 ? PS_E_INVALID : r;
        } else if (n_devices > 0) {
                mask.none = false;
                for (size_t i = 0; i < n_devices && i < PS_DEVICES_MAX; i++)
                        mask.index[mask.count++] = ps_inventory_device(inv, i)->index;
        }
        if (mask.none && config->gpu.require)
                return ps_errf(err, errlen, PS_E_GPU_ONLY,
                               n_devices == 0
                                       ? "GPU-only enforcement: the node has no GPU (gpu backend %s) "
                                         "and gpu.require is on"
                                       : "GPU-only enforcement: device_mask \"none\" needs "
                                         "gpu.require off (backend %s)",
                               ps_gpu_backend_to_string(ps_inventory_backend(inv)));
        if (ps_device_mask_format(&mask, text, sizeof(text)) < 0 ||
            ps_device_mask_format_visible(&mask, visible, sizeof(visible)) < 0)
                return ps_errf(err, errlen, PS_E_INVALID, "device_mask: too many devices");
        if (dup_to(&spec->device_mask, text) < 0 || dup_to(&spec->cuda_visible_devices, visible) < 0)
                return -ENOMEM;
        return 0;
}

int ps_prepared_engine_parse(const json_t *body, const char *url_pool_id,
                             const ps_config *config, ps_engine_spec **ret,
                             char *err, size_t errlen) {
        const ps_policy *policy;
        ps_engine_spec *spec;
        json_int_t port, slots;
        int r;

        if (!body || !url_pool_id || !config || !ret)
                return -EINVAL;
        if (!json_is_object(body))
                return ps_errf(err, errlen, PS_E_INVALID, "the body must be a JSON object");
        spec = ps_engine_spec_new();
        if (!spec)
                return -ENOMEM;

        r = check_keys(body, err, errlen);
        if (r == 0)
                r = set_ids(body, url_pool_id, spec, err, errlen);
        if (r == 0)
                r = set_strings(body, spec, err, errlen);
        if (r == 0)
                r = set_host(config, spec, err, errlen);
        if (r == 0)
                r = get_integer(body, "port", true, 1, 65535, 0, &port, err, errlen);
        if (r == 0)
                r = get_integer(body, "slots", false, 1, SLOTS_MAX, 1, &slots, err, errlen);
        if (r == 0)
                r = set_flags(body, spec, err, errlen);
        if (r == 0)
                r = set_env(body, config, spec, err, errlen);
        if (r == 0)
                r = set_paths(body, config, spec, err, errlen);
        if (r == 0)
                r = set_mask(body, config, spec, err, errlen);
        policy = ps_prepared_engine_policy(config, url_pool_id);
        if (r == 0 && policy)
                r = dup_to(&spec->health_path, ps_policy_health_path(policy));
        if (r == -ENOMEM)
                ps_errf(err, errlen, r, "out of memory");
        if (r != 0) {
                ps_engine_spec_free(spec);
                return r;
        }
        spec->port = (uint16_t) port;
        spec->slots = (uint32_t) slots;
        /* flags are a literal argv: only the values of --port, -m, --host
         * and --parallel that are this spec's own become variables, so a
         * surge moves the port and nothing else is ever rewritten */
        r = ps_engine_spec_set_argv(spec, (const char *const *) spec->flags, spec->n_flags);
        if (r != 0) {
                ps_errf(err, errlen, r, "out of memory");
                ps_engine_spec_free(spec);
                return r;
        }
        *ret = spec;
        return 0;
}
