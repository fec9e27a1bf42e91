/* SPDX-License-Identifier: MIT */
/*
 * The node configuration: parse the JSON file, check it as a whole
 * against the GPU inventory, apply the environment, and turn pools into
 * PreparedEngines. docs/configuration.md is the user's side of this file;
 * keep the two in step.
 */
#include <ctype.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/errfmt.h"
#include "core/policy-private.h"
#include "core/strv.h"
#include "core/template.h"
#include "pool-domain/ids.h"
#include "pool-services/config.h"
#include "pool-services/inventory.h"

#define DEFAULT_BIND "127.0.0.1:9200"
#define DEFAULT_RUNTIME_DIR ".runtime"
#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_HEADROOM_BYTES 536870912
#define DEFAULT_PROBE_TIMEOUT_MS 30000
#define DEFAULT_SAMPLE_INTERVAL_MS 10000
#define DEFAULT_HEARTBEAT_INTERVAL_MS 10000
#define DEFAULT_ETCD_PREFIX "/pool-managerd/"
#define DEFAULT_ETCD_TTL_MS 30000
#define DEFAULT_WATCH_INTERVAL_MS 10000
#define DEFAULT_HANDOFF_MAX_SLOTS 256
#define HANDOFF_SLOTS_MAX 65535

/* sockaddr_un.sun_path holds 108 bytes with the NUL. */
#define SOCKET_PATH_MAX 107

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
        "VLLM_LOGGING_LEVEL", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
};

/*
 * Refused from the API whatever engines.env_allow says: the dynamic
 * loader, glibc's unsafe-for-setuid set, interpreters' start-up hooks,
 * and what the daemon sets itself. Defence in depth: engine flags are the
 * caller's business anyway.
 */
static const char *const refused_env[] = {
        "LD_*", "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
        "MALLOC_*", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR",
        "TZDIR", "GLIBC_TUNABLES", "OPENSSL_CONF", "OPENSSL_MODULES", "OPENSSL_ENGINES",
        "PYTHON*", "PERL5*", "RUBY*", "NODE_OPTIONS", "BASH_ENV", "ENV", "IFS", "PATH",
        "HOME", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES",
        /* libraries the engines' own runtimes dlopen() by name */
        "GGML_BACKEND_PATH", "CUDA_INJECTION*", "NCCL_*PLUGIN*", "OMP_TOOL*",
        "TRITON_LIBCUDA_PATH", "CUDA_HOME", "CUDA_PATH",
        /* a model or a download the daemon has not checked */
        "LLAMA_ARG_MODEL*", "LLAMA_ARG_HF_*", "HF_ENDPOINT",
};

#define POOL_REPLICAS_MAX 256
#define POOL_SLOTS_MAX 65535
#define POOL_ARGS_MAX 256
#define TEXT_MAX 255            /* engine, engine_version, host, ...    */

/* No upper bound for get_int(). */
#define JINT_MAX LLONG_MAX

/* Enough of a value for a message. */
#define SHOWN "%.80s"

/* Where a message points: "pools[12].policy", "gpu.devices[3]". */
#define WHERE_MAX 96

typedef struct ctx {
        char *err;
        size_t errlen;
        const char *base_dir;   /* relative paths resolve here; NULL: none */
        const ps_inventory *known; /* auto/cuda: use these GPUs, do not probe */
} ctx;

static int fail(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(ctx *c, const char *fmt, ...) {
        va_list ap;

        if (c->err && c->errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(c->err, c->errlen, fmt, ap);
                va_end(ap);
        }
        return PS_E_INVALID;
}

/* ---- names ---- */

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

static int name_lookup(const char *const *names, int n, const char *s) {
        for (int i = 0; i < n; i++)
                if (strcmp(names[i], s) == 0)
                        return i;
        return -1;
}

/* ---- small helpers ---- */

/* Replaces *dst with a copy of s. -ENOMEM leaves *dst as it was. */
static int str_set(char **dst, const char *s) {
        char *d = strdup(s);

        if (!d)
                return -ENOMEM;
        free(*dst);
        *dst = d;
        return 0;
}

/* "where.key", or "key" at the top level. */
static const char *path_of(char *buf, size_t len, const char *where, const char *key) {
        if (where && where[0])
                snprintf(buf, len, "%s.%s", where, key);
        else
                snprintf(buf, len, "%s", key);
        return buf;
}

static bool has_space_or_control(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || *s == 0x7f)
                        return true;
        return false;
}

static bool is_url(const char *s) {
        return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/*
 * Joins a path to base (when relative) and removes ".", ".." and empty
 * components lexically. NULL on OOM. The result is absolute when base is
 * (or path is); ".." at the root stays at the root.
 */
static char *path_resolve(const char *base, const char *path) {
        size_t blen = (path[0] == '/' || !base) ? 0 : strlen(base);
        size_t cap = blen + strlen(path) + 3;
        char *joined = malloc(cap), *out = malloc(cap);
        size_t o = 0;
        char *p, *tok;

        if (!joined || !out) {
                free(joined);
                free(out);
                return NULL;
        }
        if (blen)
                snprintf(joined, cap, "%s/%s", base, path);
        else
                snprintf(joined, cap, "%s", path);

        if (joined[0] == '/')
                out[o++] = '/';
        for (p = joined; (tok = strsep(&p, "/"));) {
                if (tok[0] == '\0' || strcmp(tok, ".") == 0)
                        continue;
                if (strcmp(tok, "..") == 0) {
                        /* drop the last component, if any */
                        size_t floor = out[0] == '/' ? 1 : 0;

                        if (o > floor) {
                                while (o > floor && out[o - 1] != '/')
                                        o--;
                                if (o > floor)
                                        o--;
                                continue;
                        }
                        if (floor == 1)
                                continue;
                }
                if (o > 0 && out[o - 1] != '/')
                        out[o++] = '/';
                memcpy(out + o, tok, strlen(tok));
                o += strlen(tok);
        }
        if (o == 0)
                out[o++] = '.';
        out[o] = '\0';
        free(joined);
        return out;
}

/* HOST:PORT or [V6]:PORT, port 0..65535. The daemon parses the address
 * itself; this catches typos in the file and the environment. */
static bool bind_split(const char *s, char *host, size_t hostlen, unsigned *port) {
        const char *colon, *h = s;
        size_t hlen;
        unsigned long v = 0;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close || close[1] != ':')
                        return false;
                h = s + 1;
                hlen = (size_t) (close - h);
                colon = close + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return false;
                hlen = (size_t) (colon - s);
        }
        if (hlen == 0 || hlen >= hostlen || !colon[1] || strlen(colon + 1) > 5)
                return false;
        for (const char *d = colon + 1; *d; d++) {
                if (*d < '0' || *d > '9')
                        return false;
                v = v * 10 + (unsigned long) (*d - '0');
        }
        if (v > 65535)
                return false;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        if (has_space_or_control(host))
                return false;
        *port = (unsigned) v;
        return true;
}

/* ---- typed access to JSON ---- */

static int check_keys(ctx *c, const json_t *obj, const char *where,
                      const char *const *allowed) {
        const char *key;
        json_t *v;
        char at[WHERE_MAX + 64];

        json_object_foreach((json_t *) obj, key, v) {
                bool known = false;

                for (size_t i = 0; allowed[i] && !known; i++)
                        known = strcmp(key, allowed[i]) == 0;
                if (!known)
                        return fail(c, "%s: unknown key", path_of(at, sizeof(at), where, key));
        }
        return 0;
}

/* The value at key: NULL when absent. */
static const json_t *member(const json_t *obj, const char *key) {
        return obj ? json_object_get(obj, key) : NULL;
}

static int want_type(ctx *c, const json_t *v, const char *where, const char *key,
                     json_type type, const char *what) {
        char at[WHERE_MAX + 64];

        if (json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v)))
                return 0;
        return fail(c, "%s: must be %s, got %s", path_of(at, sizeof(at), where, key),
                    what, ps_json_type_name(v));
}

static int required(ctx *c, const char *where, const char *key) {
        char at[WHERE_MAX + 64];

        return fail(c, "%s: required", path_of(at, sizeof(at), where, key));
}

/* *ret untouched when the key is absent. */
static int get_string(ctx *c, const json_t *obj, const char *where, const char *key,
                      bool need, const char **ret) {
        const json_t *v = member(obj, key);
        int r;

        if (!v)
                return need ? required(c, where, key) : 0;
        r = want_type(c, v, where, key, JSON_STRING, "a string");
        if (r)
                return r;
        *ret = json_string_value(v);
        return 0;
}

/* A string without spaces or control characters, 1..TEXT_MAX bytes. */
static int get_word(ctx *c, const json_t *obj, const char *where, const char *key,
                    bool need, const char **ret) {
        const char *s = NULL;
        char at[WHERE_MAX + 64];
        int r = get_string(c, obj, where, key, need, &s);

        if (r || !s)
                return r;
        if (!s[0])
                return fail(c, "%s: must not be empty", path_of(at, sizeof(at), where, key));
        if (strlen(s) > TEXT_MAX || has_space_or_control(s))
                return fail(c, "%s: must be at most %d characters without spaces, got \"" SHOWN "\"",
                            path_of(at, sizeof(at), where, key), TEXT_MAX, s);
        *ret = s;
        return 0;
}

static int get_int(ctx *c, const json_t *obj, const char *where, const char *key,
                   bool need, json_int_t min, json_int_t max, json_int_t *ret) {
        const json_t *v = member(obj, key);
        char at[WHERE_MAX + 64];
        json_int_t i;
        int r;

        if (!v)
                return need ? required(c, where, key) : 0;
        r = want_type(c, v, where, key, JSON_INTEGER, "an integer");
        if (r)
                return r;
        i = json_integer_value(v);
        if (i < min || i > max) {
                path_of(at, sizeof(at), where, key);
                if (max == JINT_MAX)
                        return fail(c, "%s: must be >= %" JSON_INTEGER_FORMAT ", got %" JSON_INTEGER_FORMAT,
                                    at, min, i);
                return fail(c, "%s: must be %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT
                            ", got %" JSON_INTEGER_FORMAT, at, min, max, i);
        }
        *ret = i;
        return 0;
}

static int get_bool(ctx *c, const json_t *obj, const char *where, const char *key,
                    bool *ret) {
        const json_t *v = member(obj, key);
        int r;

        if (!v)
                return 0;
        r = want_type(c, v, where, key, JSON_TRUE, "true or false");
        if (r)
                return r;
        *ret = json_is_true(v);
        return 0;
}

/* A member of the given type; *ret stays NULL when absent. */
static int get_typed(ctx *c, const json_t *obj, const char *where, const char *key,
                     json_type type, const char *expected, const json_t **ret) {
        const json_t *v = member(obj, key);
        int r;

        if (!v)
                return 0;
        r = want_type(c, v, where, key, type, expected);
        if (r)
                return r;
        *ret = v;
        return 0;
}

static int get_object(ctx *c, const json_t *obj, const char *where, const char *key,
                      const json_t **ret) {
        return get_typed(c, obj, where, key, JSON_OBJECT, "an object", ret);
}

static int get_array(ctx *c, const json_t *obj, const char *where, const char *key,
                     const json_t **ret) {
        return get_typed(c, obj, where, key, JSON_ARRAY, "an array", ret);
}

static int get_enum(ctx *c, const json_t *obj, const char *where, const char *key,
                    const char *const *names, int n, const char *expected, int *ret) {
        const char *s = NULL;
        char at[WHERE_MAX + 64];
        int r = get_string(c, obj, where, key, false, &s), i;

        if (r || !s)
                return r;
        i = name_lookup(names, n, s);
        if (i < 0)
                return fail(c, "%s: must be %s, got \"" SHOWN "\"",
                            path_of(at, sizeof(at), where, key), expected, s);
        *ret = i;
        return 0;
}

/* A path; relative ones resolve against the config file's directory. */
static int get_path(ctx *c, const json_t *obj, const char *where, const char *key,
                    bool need, char **ret) {
        const char *s = NULL;
        char at[WHERE_MAX + 64];
        char *resolved;
        int r = get_string(c, obj, where, key, need, &s);

        if (r || !s)
                return r;
        path_of(at, sizeof(at), where, key);
        if (!s[0])
                return fail(c, "%s: must not be empty", at);
        if (s[0] != '/' && !c->base_dir)
                return fail(c, "%s: must be an absolute path (relative paths need a config file "
                            "to resolve against), got \"" SHOWN "\"", at, s);
        resolved = path_resolve(c->base_dir, s);
        if (!resolved)
                return -ENOMEM;
        free(*ret);
        *ret = resolved;
        return 0;
}

/* An array of strings into a fresh vector. */
static int get_strings(ctx *c, const json_t *arr, const char *where, size_t max,
                       char ***ret, size_t *n) {
        size_t count = json_array_size(arr);
        char **v;

        if (count > max)
                return fail(c, "%s: at most %zu entries, got %zu", where, max, count);
        v = calloc(count ? count : 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++) {
                const json_t *s = json_array_get(arr, i);

                if (!json_is_string(s)) {
                        ps_strv_free(v, count);
                        return fail(c, "%s[%zu]: must be a string, got %s", where, i, ps_json_type_name(s));
                }
                v[i] = strdup(json_string_value(s));
                if (!v[i]) {
                        ps_strv_free(v, count);
                        return -ENOMEM;
                }
        }
        ps_strv_free(*ret, *n);
        *ret = v;
        *n = count;
        return 0;
}

/* ---- the config object ---- */

static void pool_clear(ps_pool_config *p) {
        free(p->id);
        free(p->engine);
        free(p->engine_version);
        free(p->binary);
        ps_strv_free(p->args, p->n_args);
        free(p->model_path);
        free(p->host);
        free(p->device_mask);
        free(p->cuda_visible_devices);
        free(p->split);
        free(p->tensor_split);
        free(p->engine_metrics_path);
        ps_strv_free(p->env, p->n_env);
        ps_policy_free(p->policy);
}

ps_config *ps_config_free(ps_config *config) {
        if (!config)
                return NULL;
        free(config->path);
        free(config->base_dir);
        free(config->bind);
        free(config->runtime_dir);
        free(config->api_socket);
        free(config->api_socket_group);
        free(config->api_token_file);
        ps_strv_free(config->engines_allow, config->n_engines_allow);
        ps_strv_free(config->engines_allow_real, config->n_engines_allow);
        free(config->engines_user);
        ps_strv_free(config->engines_env_pass, config->n_engines_env_pass);
        ps_strv_free(config->engines_env_allow, config->n_engines_env_allow);
        ps_strv_free(config->models_allow, config->n_models_allow);
        ps_strv_free(config->models_allow_real, config->n_models_allow);
        free(config->handoff_dir);
        free(config->gpu.devices);
        ps_inventory_free(config->inventory);
        ps_policy_free(config->defaults);
        for (size_t i = 0; i < config->n_pools; i++)
                pool_clear(&config->pools[i]);
        free(config->pools);
        free(config->cloud.node_id);
        free(config->cloud.machine_id);
        free(config->cloud.address);
        free(config->cloud.orchestrator_url);
        free(config->cloud.token_file);
        ps_strv_free(config->cloud.etcd_endpoints, config->cloud.n_etcd_endpoints);
        free(config->cloud.etcd_prefix);
        if (config->cloud.api_token) {
                /* a secret: do not leave it in freed memory */
                explicit_bzero(config->cloud.api_token, strlen(config->cloud.api_token));
                free(config->cloud.api_token);
        }
        ps_strv_free(config->advertise_pools, config->n_advertise_pools);
        free(config);
        return NULL;
}

ps_config *ps_config_new(void) {
        ps_config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->bind = strdup(DEFAULT_BIND);
        c->bind_source = "default";
        c->runtime_dir = strdup(DEFAULT_RUNTIME_DIR);
        c->runtime_dir_source = "default";
        c->profile = PS_PROFILE_HOME;
        c->shutdown = PS_SHUTDOWN_STOP;
        c->gpu.backend = PS_GPU_BACKEND_AUTO;
        c->gpu.require = true;
        c->gpu.headroom_bytes = DEFAULT_HEADROOM_BYTES;
        c->gpu.probe_timeout_ms = DEFAULT_PROBE_TIMEOUT_MS;
        c->gpu.sample_interval_ms = DEFAULT_SAMPLE_INTERVAL_MS;
        c->gpu.uuid_visible_devices = true;
        c->defaults = ps_policy_new();
        c->cloud.node_id = strdup("");
        c->cloud.machine_id = strdup("");
        c->cloud.address = strdup("");
        c->cloud.orchestrator_url = strdup("");
        c->cloud.heartbeat_interval_ms = DEFAULT_HEARTBEAT_INTERVAL_MS;
        c->cloud.token_file = strdup("");
        c->cloud.etcd_prefix = strdup(DEFAULT_ETCD_PREFIX);
        c->cloud.etcd_ttl_ms = DEFAULT_ETCD_TTL_MS;
        c->cloud.register_on_startup = true;
        c->watch_interval_ms = DEFAULT_WATCH_INTERVAL_MS;
        c->handoff_max_slots = DEFAULT_HANDOFF_MAX_SLOTS;
        c->handoff_dir_source = "default";
        c->n_engines_env_allow = sizeof(default_env_allow) / sizeof(default_env_allow[0]);
        c->engines_env_allow = calloc(c->n_engines_env_allow, sizeof(char *));
        for (size_t i = 0; c->engines_env_allow && i < c->n_engines_env_allow; i++)
                if (!(c->engines_env_allow[i] = strdup(default_env_allow[i]))) {
                        ps_strv_free(c->engines_env_allow, c->n_engines_env_allow);
                        c->engines_env_allow = NULL;
                }
        if (!c->engines_env_allow)
                c->n_engines_env_allow = 0;
        if (!c->engines_env_allow || !c->bind || !c->runtime_dir || !c->defaults || !c->cloud.node_id ||
            !c->cloud.machine_id || !c->cloud.address || !c->cloud.orchestrator_url ||
            !c->cloud.token_file || !c->cloud.etcd_prefix ||
            ps_inventory_new(PS_GPU_BACKEND_NONE, NULL, 0, &c->inventory, NULL, 0) != 0)
                return ps_config_free(c);
        return c;
}

/* ---- sections ---- */

/* The realpath of an allowlist entry, keeping the "/" that marks a tree;
 * NULL (errno set) when it cannot be resolved. */
static char *entry_realpath(const char *entry) {
        size_t len = strlen(entry);
        char *real = realpath(entry, NULL), *dir;

        if (!real || len < 2 || entry[len - 1] != '/' || strcmp(real, "/") == 0)
                return real;
        dir = malloc(strlen(real) + 2);
        if (dir)
                snprintf(dir, strlen(real) + 2, "%s/", real);
        free(real);
        return dir;
}

/*
 * engines.allow, models.allow: absolute paths, normalised, "dir/" for a
 * tree; each also resolved once now (its realpath, NULL where it does not
 * exist yet) so a request is compared with what the entry really names.
 */
static int parse_allowlist(ctx *c, const json_t *obj, const char *where, const char *key,
                           char ***list, char ***real, size_t *n) {
        const json_t *allow = NULL;
        char at[WHERE_MAX];
        int r;

        path_of(at, sizeof(at), where, key);
        r = get_array(c, obj, where, key, &allow);
        if (r || !allow)
                return r;
        ps_strv_free(*real, *n);
        *real = NULL;
        r = get_strings(c, allow, at, SIZE_MAX, list, n);
        if (r)
                return r;
        *real = calloc(*n ? *n : 1, sizeof(char *));
        if (!*real)
                return -ENOMEM;
        for (size_t i = 0; i < *n; i++) {
                char *entry = (*list)[i], *norm;
                size_t len = strlen(entry);

                if (entry[0] != '/')
                        return fail(c, "%s[%zu]: must be an absolute path, got \"" SHOWN "\"", at, i,
                                    entry);
                norm = path_resolve(NULL, entry);
                if (!norm)
                        return -ENOMEM;
                /* keep the trailing slash that marks a directory */
                if (len > 1 && entry[len - 1] == '/' && strcmp(norm, "/") != 0) {
                        char *dir = malloc(strlen(norm) + 2);

                        if (!dir) {
                                free(norm);
                                return -ENOMEM;
                        }
                        snprintf(dir, strlen(norm) + 2, "%s/", norm);
                        free(norm);
                        norm = dir;
                }
                free((*list)[i]);
                (*list)[i] = norm;
                (*real)[i] = entry_realpath(norm);
                if (!(*real)[i] && errno == ENOMEM)
                        return -ENOMEM;
        }
        return 0;
}

/* A variable name: letters, digits, '_', not starting with a digit. */
static int check_env_name(const char *s) {
        if (!(isalpha((unsigned char) s[0]) || s[0] == '_'))
                return -1;
        for (; *s; s++)
                if (!(isalnum((unsigned char) *s) || *s == '_'))
                        return -1;
        return 0;
}

static int parse_engines(ctx *c, ps_config *cfg, const json_t *obj) {
        static const char *const keys[] = {
                "allow", "user", "env_pass", "env_allow", "allow_remote_hosts", NULL,
        };
        const json_t *pass = NULL, *allow_env = NULL;
        const char *user = NULL;
        int r;

        r = check_keys(c, obj, "engines", keys);
        if (!r)
                r = parse_allowlist(c, obj, "engines", "allow", &cfg->engines_allow,
                                    &cfg->engines_allow_real, &cfg->n_engines_allow);
        if (!r)
                r = get_word(c, obj, "engines", "user", false, &user);
        if (!r && user)
                r = str_set(&cfg->engines_user, user);
        if (!r)
                r = get_array(c, obj, "engines", "env_pass", &pass);
        if (!r && pass)
                r = get_strings(c, pass, "engines.env_pass", SIZE_MAX, &cfg->engines_env_pass,
                                &cfg->n_engines_env_pass);
        for (size_t i = 0; !r && pass && i < cfg->n_engines_env_pass; i++)
                if (check_env_name(cfg->engines_env_pass[i]) != 0)
                        r = fail(c, "engines.env_pass[%zu]: \"" SHOWN "\" is not a variable name",
                                 i, cfg->engines_env_pass[i]);
        if (!r)
                r = get_array(c, obj, "engines", "env_allow", &allow_env);
        if (!r && allow_env)
                r = get_strings(c, allow_env, "engines.env_allow", SIZE_MAX,
                                &cfg->engines_env_allow, &cfg->n_engines_env_allow);
        for (size_t i = 0; !r && allow_env && i < cfg->n_engines_env_allow; i++)
                if (!cfg->engines_env_allow[i][0] || strchr(cfg->engines_env_allow[i], '='))
                        r = fail(c, "engines.env_allow[%zu]: \"" SHOWN "\" is not a name pattern",
                                 i, cfg->engines_env_allow[i]);
        if (!r)
                r = get_bool(c, obj, "engines", "allow_remote_hosts",
                             &cfg->engines_allow_remote_hosts);
        return r;
}

static int parse_models(ctx *c, ps_config *cfg, const json_t *obj) {
        static const char *const keys[] = { "allow", NULL };
        int r = check_keys(c, obj, "models", keys);

        if (!r)
                r = parse_allowlist(c, obj, "models", "allow", &cfg->models_allow,
                                    &cfg->models_allow_real, &cfg->n_models_allow);
        return r;
}

static int parse_api(ctx *c, ps_config *cfg, const json_t *obj) {
        static const char *const keys[] = { "socket", "socket_group", "token_file", NULL };
        const char *sock = NULL, *group = NULL, *token_file = NULL;
        int r = check_keys(c, obj, "api", keys);

        if (!r)
                r = get_string(c, obj, "api", "socket", false, &sock);
        if (!r && sock && !sock[0])
                r = str_set(&cfg->api_socket, "");
        else if (!r && sock)
                r = get_path(c, obj, "api", "socket", false, &cfg->api_socket);
        if (!r && cfg->api_socket && strlen(cfg->api_socket) > SOCKET_PATH_MAX)
                r = fail(c, "api.socket: %s is longer than %d bytes, the most a Unix socket "
                         "path may have", cfg->api_socket, SOCKET_PATH_MAX);
        if (!r)
                r = get_word(c, obj, "api", "socket_group", false, &group);
        if (!r && group)
                r = str_set(&cfg->api_socket_group, group);
        if (!r)
                r = get_string(c, obj, "api", "token_file", false, &token_file);
        if (!r && token_file)
                r = get_path(c, obj, "api", "token_file", false, &cfg->api_token_file);
        return r;
}

static int parse_handoff(ctx *c, ps_config *cfg, const json_t *obj) {
        static const char *const keys[] = { "dir", "max_slots", "allow_remote", NULL };
        json_int_t max_slots = cfg->handoff_max_slots;
        const char *dir = NULL;
        int r = check_keys(c, obj, "handoff", keys);

        if (!r)
                r = get_string(c, obj, "handoff", "dir", false, &dir);
        if (!r && dir) {
                r = get_path(c, obj, "handoff", "dir", false, &cfg->handoff_dir);
                cfg->handoff_dir_source = "file";
        }
        if (!r)
                r = get_int(c, obj, "handoff", "max_slots", false, 1, HANDOFF_SLOTS_MAX, &max_slots);
        if (!r)
                cfg->handoff_max_slots = (unsigned) max_slots;
        if (!r)
                r = get_bool(c, obj, "handoff", "allow_remote", &cfg->handoff_allow_remote);
        return r;
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

static int parse_device(ctx *c, const ps_config *cfg, const json_t *obj, size_t i,
                        ps_gpu_device *d) {
        static const char *const keys[] = {
                "index", "uuid", "name", "compute_capability", "vram_total_bytes",
                "vram_free_bytes", NULL,
        };
        const char *uuid = NULL, *name = NULL, *cc = NULL;
        json_int_t index = 0, total = 0, free_bytes = -1;
        char where[WHERE_MAX];
        int r;

        snprintf(where, sizeof(where), "gpu.devices[%zu]", i);
        if (!json_is_object(obj))
                return fail(c, "%s: must be an object, got %s", where, ps_json_type_name(obj));
        r = check_keys(c, obj, where, keys);
        if (!r)
                r = get_int(c, obj, where, "index", true, 0, PS_DEVICES_MAX - 1, &index);
        if (!r)
                r = get_string(c, obj, where, "uuid", false, &uuid);
        if (!r && uuid && (strncmp(uuid, "GPU-", 4) != 0 || strlen(uuid) >= PS_GPU_UUID_MAX ||
                           has_space_or_control(uuid)))
                r = fail(c, "%s.uuid: must start with \"GPU-\" and be under %d characters "
                         "without spaces, got \"" SHOWN "\"", where, PS_GPU_UUID_MAX, uuid);
        if (!r)
                r = get_string(c, obj, where, "name", false, &name);
        if (!r && name && strlen(name) >= PS_GPU_NAME_MAX)
                r = fail(c, "%s.name: must be under %d characters", where, PS_GPU_NAME_MAX);
        if (!r)
                r = get_string(c, obj, where, "compute_capability", false, &cc);
        *d = (ps_gpu_device) { .index = (int) index };
        if (!r && cc && parse_cc(cc, &d->cc_major, &d->cc_minor) != 0)
                r = fail(c, "%s.compute_capability: must look like \"8.9\", got \"" SHOWN "\"",
                         where, cc);
        if (!r)
                r = get_int(c, obj, where, "vram_total_bytes", true, 0, JINT_MAX, &total);
        if (!r)
                r = get_int(c, obj, where, "vram_free_bytes", false, 0, JINT_MAX, &free_bytes);
        if (r)
                return r;
        if (free_bytes > total)
                return fail(c, "%s.vram_free_bytes: more than vram_total_bytes (%" JSON_INTEGER_FORMAT
                            " > %" JSON_INTEGER_FORMAT ")", where, free_bytes, total);
        d->vram_total_bytes = (uint64_t) total;
        d->vram_free_bytes = free_bytes < 0 ? (uint64_t) total : (uint64_t) free_bytes;
        if (uuid)
                snprintf(d->uuid, sizeof(d->uuid), "%s", uuid);
        else
                snprintf(d->uuid, sizeof(d->uuid), "GPU-fake-%d", d->index);
        if (name)
                snprintf(d->name, sizeof(d->name), "%s", name);
        else
                snprintf(d->name, sizeof(d->name), "Fake GPU %d", d->index);

        for (size_t j = 0; j < i; j++) {
                const ps_gpu_device *o = &cfg->gpu.devices[j];

                if (o->index == d->index)
                        return fail(c, "%s.index: device %d is also gpu.devices[%zu]",
                                    where, d->index, j);
                if (strcasecmp(o->uuid, d->uuid) == 0)
                        return fail(c, "%s.uuid: " SHOWN " is also gpu.devices[%zu]'s",
                                    where, d->uuid, j);
        }
        return 0;
}

static int parse_gpu(ctx *c, ps_config *cfg, const json_t *obj) {
        static const char *const keys[] = {
                "backend", "require", "headroom_bytes", "probe_timeout_ms", "sample_interval_ms",
                "uuid_visible_devices", "devices", NULL,
        };
        const json_t *devices = NULL;
        json_int_t headroom = (json_int_t) cfg->gpu.headroom_bytes;
        json_int_t probe_timeout = cfg->gpu.probe_timeout_ms;
        json_int_t sample_interval = cfg->gpu.sample_interval_ms;
        int backend = (int) cfg->gpu.backend;
        size_t n;
        int r;

        r = check_keys(c, obj, "gpu", keys);
        if (!r)
                r = get_enum(c, obj, "gpu", "backend", ps_gpu_backend_names, PS_GPU_BACKEND_MAX,
                             "\"auto\", \"cuda\", \"fake\" or \"none\"", &backend);
        if (!r)
                r = get_bool(c, obj, "gpu", "require", &cfg->gpu.require);
        if (!r)
                r = get_int(c, obj, "gpu", "headroom_bytes", false, 0, JINT_MAX, &headroom);
        if (!r)
                r = get_int(c, obj, "gpu", "probe_timeout_ms", false, 1, 600000, &probe_timeout);
        if (!r)
                r = get_int(c, obj, "gpu", "sample_interval_ms", false, 0, 86400000,
                            &sample_interval);
        if (!r)
                r = get_bool(c, obj, "gpu", "uuid_visible_devices", &cfg->gpu.uuid_visible_devices);
        if (!r)
                r = get_array(c, obj, "gpu", "devices", &devices);
        if (r)
                return r;
        cfg->gpu.backend = (ps_gpu_backend) backend;
        cfg->gpu.headroom_bytes = (uint64_t) headroom;
        cfg->gpu.probe_timeout_ms = probe_timeout;
        cfg->gpu.sample_interval_ms = sample_interval;
        if (!devices)
                return 0;

        n = json_array_size(devices);
        if (backend != PS_GPU_BACKEND_FAKE && n > 0)
                return fail(c, "gpu.devices: only the fake backend takes devices "
                            "(gpu.backend is \"%s\")", ps_gpu_backend_names[backend]);
        if (n > PS_DEVICES_MAX)
                return fail(c, "gpu.devices: at most %d devices, got %zu", PS_DEVICES_MAX, n);
        cfg->gpu.devices = calloc(n ? n : 1, sizeof(*cfg->gpu.devices));
        if (!cfg->gpu.devices)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = parse_device(c, cfg, json_array_get(devices, i), i, &cfg->gpu.devices[i]);
                if (r)
                        return r;
                cfg->gpu.n_devices = i + 1;
        }
        return 0;
}

static int parse_cloud(ctx *c, ps_config *cfg, const json_t *obj) {
        static const char *const keys[] = {
                "node_id", "machine_id", "address", "orchestrator_url",
                "heartbeat_interval_ms", "token_file", "etcd", NULL,
        };
        static const char *const etcd_keys[] = { "endpoints", "prefix", "ttl_ms", NULL };
        ps_cloud_config *cl = &cfg->cloud;
        const char *node_id = NULL, *machine_id = NULL, *address = NULL, *url = NULL;
        const char *prefix = NULL, *token_file = NULL;
        const json_t *etcd = NULL, *endpoints = NULL;
        json_int_t heartbeat = cl->heartbeat_interval_ms, ttl = cl->etcd_ttl_ms;
        pd_error perr;
        int r;

        r = check_keys(c, obj, "cloud", keys);
        if (!r)
                r = get_string(c, obj, "cloud", "node_id", false, &node_id);
        if (!r && node_id && node_id[0] && pd_id_validate(node_id, "node id", &perr) != 0)
                r = fail(c, "cloud.node_id: %s", perr.msg);
        if (!r && node_id)
                r = str_set(&cl->node_id, node_id);
        if (!r)
                r = get_string(c, obj, "cloud", "machine_id", false, &machine_id);
        if (!r && machine_id && has_space_or_control(machine_id))
                r = fail(c, "cloud.machine_id: must not contain spaces");
        if (!r && machine_id)
                r = str_set(&cl->machine_id, machine_id);
        if (!r)
                r = get_string(c, obj, "cloud", "address", false, &address);
        if (!r && address && address[0] && !is_url(address))
                r = fail(c, "cloud.address: must be an http:// or https:// URL, got \"" SHOWN "\"",
                         address);
        if (!r && address)
                r = str_set(&cl->address, address);
        if (!r)
                r = get_string(c, obj, "cloud", "orchestrator_url", false, &url);
        if (!r && url && url[0] && !is_url(url))
                r = fail(c, "cloud.orchestrator_url: must be an http:// or https:// URL, "
                         "got \"" SHOWN "\"", url);
        if (!r && url)
                r = str_set(&cl->orchestrator_url, url);
        if (!r)
                r = get_int(c, obj, "cloud", "heartbeat_interval_ms", false, 1, JINT_MAX,
                            &heartbeat);
        if (!r)
                cl->heartbeat_interval_ms = (int64_t) heartbeat;
        if (!r)
                r = get_string(c, obj, "cloud", "token_file", false, &token_file);
        /* "" means none; a path resolves like binary */
        if (!r && token_file && token_file[0])
                r = get_path(c, obj, "cloud", "token_file", false, &cl->token_file);
        if (!r)
                r = get_object(c, obj, "cloud", "etcd", &etcd);
        if (r || !etcd)
                return r;

        r = check_keys(c, etcd, "cloud.etcd", etcd_keys);
        if (!r)
                r = get_array(c, etcd, "cloud.etcd", "endpoints", &endpoints);
        if (!r && endpoints)
                r = get_strings(c, endpoints, "cloud.etcd.endpoints", SIZE_MAX,
                                &cl->etcd_endpoints, &cl->n_etcd_endpoints);
        for (size_t i = 0; !r && i < cl->n_etcd_endpoints; i++)
                if (!is_url(cl->etcd_endpoints[i]))
                        r = fail(c, "cloud.etcd.endpoints[%zu]: must be an http:// or https:// URL, "
                                 "got \"" SHOWN "\"", i, cl->etcd_endpoints[i]);
        if (!r)
                r = get_string(c, etcd, "cloud.etcd", "prefix", false, &prefix);
        if (!r && prefix && prefix[0] != '/')
                r = fail(c, "cloud.etcd.prefix: must start with '/', got \"" SHOWN "\"", prefix);
        if (!r && prefix)
                r = str_set(&cl->etcd_prefix, prefix);
        if (!r)
                r = get_int(c, etcd, "cloud.etcd", "ttl_ms", false, 1000, JINT_MAX, &ttl);
        if (!r)
                cl->etcd_ttl_ms = (int64_t) ttl;
        return r;
}

/* ---- argument templates ---- */

static char *model_id_of(const char *model_path);

/* A pool's template variables for one replica; messages name pools[i]. */
static void template_vars_init(ps_template_vars *v, const ps_pool_config *p, size_t pool_index,
                               char *where, size_t wherelen, unsigned port, const char *replica_id,
                               const char *model_id) {
        snprintf(where, wherelen, "pools[%zu]", pool_index);
        *v = (ps_template_vars) {
                .where = where,
                .model_path = p->model_path,
                .model_id = model_id,
                .host = p->host,
                .tensor_split = p->tensor_split,
                .replica_id = replica_id,
                .pool_id = p->id,
                .port = port,
                .slots = p->slots,
        };
}

/* Whether the pool's args render for one replica; fails naming the arg. */
static int check_args(ctx *c, const ps_pool_config *p, size_t pool_index, unsigned port,
                      const char *replica_id) {
        char where[WHERE_MAX], what[WHERE_MAX + 8], why[512], **argv = NULL;
        char *model_id = p->model_path ? model_id_of(p->model_path) : NULL;
        ps_template_vars v;
        int r;

        /* no model_id: a path of slashes only (no name), or out of memory */
        if (p->model_path && !model_id && p->model_path[strspn(p->model_path, "/")])
                return -ENOMEM;
        template_vars_init(&v, p, pool_index, where, sizeof(where), port, replica_id, model_id);
        snprintf(what, sizeof(what), "%s.args", where);
        r = ps_template_render_all(p->args, p->n_args, &v, what, &argv, why, sizeof(why));
        free(model_id);
        if (r > 0)
                return fail(c, "%s", why);
        if (r == 0)
                ps_strv_free(argv, p->n_args);
        return r;
}

/* ---- pools ---- */

static unsigned port_last(const ps_pool_config *p) {
        /* replicas, then as many surge ports */
        return (unsigned) p->port + 2 * p->replicas - 1;
}

static int parse_pool_env(ctx *c, ps_pool_config *p, const json_t *env, const char *where) {
        const char *key;
        json_t *v;
        size_t n = 0, count = json_object_size(env);

        p->env = calloc(count ? count : 1, sizeof(*p->env));
        if (!p->env)
                return -ENOMEM;
        json_object_foreach((json_t *) env, key, v) {
                if (check_env_name(key) != 0)
                        return fail(c, "%s.env." SHOWN ": not a valid variable name "
                                    "(letters, digits, '_'; not starting with a digit)", where, key);
                if (ps_env_name_reserved(key))
                        return fail(c, "%s.env.%s: set by the daemon (from device_mask), "
                                    "not here", where, key);
                if (!json_is_string(v))
                        return fail(c, "%s.env.%s: must be a string, got %s", where, key,
                                    ps_json_type_name(v));
                if (asprintf(&p->env[n], "%s=%s", key, json_string_value(v)) < 0) {
                        p->env[n] = NULL;
                        return -ENOMEM;
                }
                p->n_env = ++n;
        }
        return 0;
}

static int parse_pool(ctx *c, ps_config *cfg, const json_t *obj, size_t i) {
        static const char *const keys[] = {
                "id", "engine", "engine_version", "binary", "args", "model_path", "host",
                "port", "replicas", "device_mask", "split", "slots", "vram_required_bytes",
                "ram_required_bytes", "env", "policy", "shared_devices", "engine_metrics",
                "engine_metrics_path", NULL,
        };
        ps_pool_config *p = &cfg->pools[i];
        const char *id = NULL, *engine = NULL, *version = NULL, *host = DEFAULT_HOST;
        const char *mask_text = NULL, *split = NULL, *metrics_path = "/metrics";
        const json_t *args = NULL, *env = NULL, *policy = NULL;
        json_int_t port = 0, replicas = 1, slots = 1, vram = 0, ram = 0;
        char where[WHERE_MAX], at[WHERE_MAX + 32], text[PS_DEVICES_MAX * PS_GPU_UUID_MAX];
        char why[512];
        ps_device_mask mask;
        pd_error perr;
        bool no_gpu_yet;
        int r;

        snprintf(where, sizeof(where), "pools[%zu]", i);
        if (!json_is_object(obj))
                return fail(c, "%s: must be an object, got %s", where, ps_json_type_name(obj));
        r = check_keys(c, obj, where, keys);
        if (r)
                return r;

        r = get_string(c, obj, where, "id", true, &id);
        if (r)
                return r;
        if (pd_id_validate(id, "pool id", &perr) != 0)
                return fail(c, "%s.id: %s", where, perr.msg);
        for (size_t j = 0; j < i; j++)
                if (strcmp(cfg->pools[j].id, id) == 0)
                        return fail(c, "%s.id: pool id \"%s\" is also pools[%zu]'s", where, id, j);
        if ((r = str_set(&p->id, id)))
                return r;

        r = get_word(c, obj, where, "engine", true, &engine);
        if (!r)
                r = str_set(&p->engine, engine);
        if (!r)
                r = get_word(c, obj, where, "engine_version", true, &version);
        if (!r)
                r = str_set(&p->engine_version, version);
        if (!r)
                r = get_path(c, obj, where, "binary", true, &p->binary);
        if (!r && cfg->n_engines_allow > 0) {
                bool ok = false;

                for (size_t j = 0; j < cfg->n_engines_allow && !ok; j++) {
                        const char *e = cfg->engines_allow[j];
                        size_t len = strlen(e);

                        ok = e[len - 1] == '/' ? strncmp(p->binary, e, len) == 0
                                               : strcmp(p->binary, e) == 0;
                }
                if (!ok)
                        r = fail(c, "%s.binary: " SHOWN " is not in engines.allow", where, p->binary);
        }
        if (!r)
                r = get_path(c, obj, where, "model_path", false, &p->model_path);
        if (!r)
                r = get_word(c, obj, where, "host", false, &host);
        if (!r) {
                char literal[INET6_ADDRSTRLEN], reason[160];

                if (ps_host_check(host, true, literal, sizeof(literal), reason, sizeof(reason)) != 0)
                        r = fail(c, "%s.host: %s", where, reason);
                else
                        r = str_set(&p->host, literal);
        }
        if (!r)
                r = get_int(c, obj, where, "port", true, 1, 65535, &port);
        if (!r)
                r = get_int(c, obj, where, "replicas", false, 1, POOL_REPLICAS_MAX, &replicas);
        if (!r)
                r = get_int(c, obj, where, "slots", false, 1, POOL_SLOTS_MAX, &slots);
        if (!r)
                r = get_int(c, obj, where, "vram_required_bytes", false, 0, JINT_MAX, &vram);
        if (!r)
                r = get_int(c, obj, where, "ram_required_bytes", false, 0, JINT_MAX, &ram);
        if (r)
                return r;
        p->port = (uint16_t) port;
        p->replicas = (unsigned) replicas;
        p->slots = (unsigned) slots;
        p->vram_required_bytes = (uint64_t) vram;
        p->ram_required_bytes = (uint64_t) ram;

        if (port_last(p) > 65535)
                return fail(c, "%s.port: ports %u..%u (replicas and their surge ports) "
                            "go beyond 65535", where, (unsigned) p->port, port_last(p));
        for (size_t j = 0; j < i; j++) {
                const ps_pool_config *o = &cfg->pools[j];

                if (p->port <= port_last(o) && o->port <= port_last(p))
                        return fail(c, "%s.port: ports %u..%u overlap ports %u..%u of pools[%zu] "
                                    "(\"%s\"); replica i listens on port+i, a surge engine on "
                                    "port+replicas+i", where, (unsigned) p->port, port_last(p),
                                    (unsigned) o->port, port_last(o), j, o->id);
        }

        r = get_bool(c, obj, where, "engine_metrics", &p->engine_metrics);
        if (!r)
                r = get_word(c, obj, where, "engine_metrics_path", false, &metrics_path);
        if (!r && (metrics_path[0] != '/' || strchr(metrics_path, '#')))
                r = fail(c, "%s.engine_metrics_path: must be a URL path starting with '/' "
                         "(no '#'), got \"" SHOWN "\"", where, metrics_path);
        if (!r)
                r = str_set(&p->engine_metrics_path, metrics_path);
        if (!r)
                r = get_bool(c, obj, where, "shared_devices", &p->shared_devices);
        if (!r)
                r = get_string(c, obj, where, "device_mask", false, &mask_text);
        if (r)
                return r;
        if (!mask_text)
                return fail(c, "%s.device_mask: required (devices such as \"0\" or \"0,1\", "
                            "or \"none\")", where);
        /* auto found no device: the syntax is checked now, the devices at
         * each start (preflight), so a driver that comes up later helps */
        no_gpu_yet = cfg->gpu.backend == PS_GPU_BACKEND_AUTO &&
                     ps_inventory_count(cfg->inventory) == 0;
        r = ps_inventory_parse_mask(no_gpu_yet ? NULL : cfg->inventory, mask_text, &mask,
                                    why, sizeof(why));
        if (r < 0)
                return r;
        if (r > 0) {
                if (no_gpu_yet)
                        return fail(c, "%s.device_mask: %s (gpu.backend \"auto\": %s)", where, why,
                                    ps_inventory_problem(cfg->inventory));
                return fail(c, "%s.device_mask: %s", where, why);
        }
        if (mask.none && cfg->gpu.require)
                return fail(c, "%s.device_mask: \"none\" (no GPU) needs gpu.require false", where);
        for (size_t j = 0; j < i && !mask.none; j++) {
                const ps_pool_config *o = &cfg->pools[j];
                ps_device_mask om;
                int shared;

                if (ps_inventory_parse_mask(NULL, o->device_mask, &om, NULL, 0) != 0)
                        continue;
                if (ps_device_mask_overlaps(&mask, &om, &shared) &&
                    !(p->shared_devices && o->shared_devices))
                        return fail(c, "%s.device_mask: device %d is also used by pools[%zu] "
                                    "(\"%s\"); both pools need \"shared_devices\": true to share it",
                                    where, shared, j, o->id);
        }
        if (ps_device_mask_format(&mask, text, sizeof(text)) < 0)
                return -ENOSPC;
        if ((r = str_set(&p->device_mask, text)))
                return r;
        if (ps_inventory_format_visible(cfg->inventory, &mask, cfg->gpu.uuid_visible_devices,
                                        text, sizeof(text)) < 0)
                return -ENOSPC;
        if ((r = str_set(&p->cuda_visible_devices, text)))
                return r;

        r = get_string(c, obj, where, "split", false, &split);
        if (r)
                return r;
        if (split) {
                char planned[PS_DEVICES_MAX * 8];

                r = str_set(&p->split, split);
                if (r)
                        return r;
                r = ps_inventory_plan_split(no_gpu_yet ? NULL : cfg->inventory, &mask, split,
                                            cfg->gpu.headroom_bytes,
                                            p->vram_required_bytes, planned, sizeof(planned),
                                            why, sizeof(why));
                if (r < 0)
                        return r;
                if (r > 0)
                        return fail(c, "%s.split: %s", where, why);
                if ((r = str_set(&p->tensor_split, planned)))
                        return r;
        }

        r = get_object(c, obj, where, "env", &env);
        if (!r && env)
                r = parse_pool_env(c, p, env, where);
        if (r)
                return r;

        p->policy = ps_policy_copy(cfg->defaults);
        if (!p->policy)
                return -ENOMEM;
        r = get_object(c, obj, where, "policy", &policy);
        if (r)
                return r;
        if (policy) {
                snprintf(at, sizeof(at), "%s.policy", where);
                if (ps_policy_apply_json(p->policy, policy, at, c->err, c->errlen) != 0)
                        return PS_E_INVALID;
        }

        r = get_array(c, obj, where, "args", &args);
        if (!r && args) {
                snprintf(at, sizeof(at), "%s.args", where);
                r = get_strings(c, args, at, POOL_ARGS_MAX, &p->args, &p->n_args);
        }
        if (r)
                return r;
        /* Render once for r0, so a bad template fails the load, not a preload. */
        return check_args(c, p, i, p->port, "r0");
}

static int parse_pools(ctx *c, ps_config *cfg, const json_t *arr) {
        size_t n = json_array_size(arr);

        if (n == 0)
                return 0;
        cfg->pools = calloc(n, sizeof(*cfg->pools));
        if (!cfg->pools)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r;

                /* count it first, so a half-parsed pool is freed */
                cfg->n_pools = i + 1;
                r = parse_pool(c, cfg, json_array_get(arr, i), i);
                if (r)
                        return r;
        }
        return 0;
}

/* The API port must not be one an engine listens on. */
static int check_bind_ports(ctx *c, const ps_config *cfg, const char *bind, const char *label) {
        char host[256];
        unsigned port;

        if (!bind_split(bind, host, sizeof(host), &port) || port == 0)
                return 0;
        for (size_t i = 0; i < cfg->n_pools; i++) {
                const ps_pool_config *p = &cfg->pools[i];

                if (port >= p->port && port <= port_last(p))
                        return fail(c, "%s: port %u is also used by pools[%zu] (\"%s\", ports %u..%u)",
                                    label, port, i, p->id, (unsigned) p->port, port_last(p));
        }
        return 0;
}

static int check_bind(ctx *c, const char *bind, const char *label) {
        char host[256];
        unsigned port;

        if (!bind_split(bind, host, sizeof(host), &port))
                return fail(c, "%s: expected HOST:PORT (e.g. 127.0.0.1:9200 or [::1]:9200), "
                            "got \"" SHOWN "\"", label, bind);
        return 0;
}

static int config_parse(ctx *c, ps_config *cfg, const json_t *doc) {
        static const char *const keys[] = {
                "bind", "runtime_dir", "profile", "shutdown", "api", "engines", "models",
                "handoff", "gpu", "defaults", "pools", "cloud", NULL,
        };
        const json_t *api = NULL, *models = NULL, *handoff = NULL;
        const json_t *engines = NULL, *gpu = NULL, *defaults = NULL, *pools = NULL, *cloud = NULL;
        const char *bind = NULL, *runtime_dir = NULL;
        int profile = (int) cfg->profile, shutdown = (int) cfg->shutdown;
        char why[256];
        int r;

        if (!json_is_object(doc))
                return fail(c, "config: must be a JSON object, got %s", ps_json_type_name(doc));
        r = check_keys(c, doc, "", keys);
        if (!r)
                r = get_string(c, doc, "", "bind", false, &bind);
        if (!r && bind)
                r = check_bind(c, bind, "bind");
        if (!r && bind) {
                r = str_set(&cfg->bind, bind);
                cfg->bind_source = "file";
        }
        if (!r)
                r = get_string(c, doc, "", "runtime_dir", false, &runtime_dir);
        if (!r && runtime_dir) {
                r = get_path(c, doc, "", "runtime_dir", false, &cfg->runtime_dir);
                cfg->runtime_dir_source = "file";
        }
        if (!r)
                r = get_enum(c, doc, "", "profile", profile_names, PS_PROFILE_MAX,
                             "\"home\" or \"cloud\"", &profile);
        if (!r)
                r = get_enum(c, doc, "", "shutdown", shutdown_names, PS_SHUTDOWN_MODE_MAX,
                             "\"stop\" or \"keep\"", &shutdown);
        if (r)
                return r;
        cfg->profile = (ps_profile) profile;
        cfg->shutdown = (ps_shutdown_mode) shutdown;

        r = get_object(c, doc, "", "api", &api);
        if (!r && api)
                r = parse_api(c, cfg, api);
        if (!r)
                r = get_object(c, doc, "", "engines", &engines);
        if (!r && engines)
                r = parse_engines(c, cfg, engines);
        if (!r)
                r = get_object(c, doc, "", "models", &models);
        if (!r && models)
                r = parse_models(c, cfg, models);
        if (!r)
                r = get_object(c, doc, "", "handoff", &handoff);
        if (!r && handoff)
                r = parse_handoff(c, cfg, handoff);
        if (!r)
                r = get_object(c, doc, "", "gpu", &gpu);
        if (!r && gpu)
                r = parse_gpu(c, cfg, gpu);
        if (r)
                return r;
        cfg->inventory = ps_inventory_free(cfg->inventory);
        if (c->known && (cfg->gpu.backend == PS_GPU_BACKEND_AUTO ||
                         cfg->gpu.backend == PS_GPU_BACKEND_CUDA) &&
            ps_inventory_backend(c->known) != PS_GPU_BACKEND_FAKE)
                r = ps_inventory_copy(c->known, &cfg->inventory);
        else
                r = ps_inventory_from_config(&cfg->gpu, &cfg->inventory, why, sizeof(why));
        if (r > 0)
                return fail(c, "gpu: %s", why);
        if (r < 0)
                return r;

        r = get_object(c, doc, "", "defaults", &defaults);
        if (r)
                return r;
        if (defaults && ps_policy_apply_json(cfg->defaults, defaults, "defaults",
                                             c->err, c->errlen) != 0)
                return PS_E_INVALID;

        r = get_array(c, doc, "", "pools", &pools);
        if (!r && pools)
                r = parse_pools(c, cfg, pools);
        if (!r)
                r = get_object(c, doc, "", "cloud", &cloud);
        if (!r && cloud)
                r = parse_cloud(c, cfg, cloud);
        return r;
}

static int load_json(const json_t *doc, const char *base_dir, const ps_inventory *known,
                     ps_config **ret, char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen, .base_dir = base_dir, .known = known };
        ps_config *cfg;
        int r;

        if (!doc || !ret)
                return -EINVAL;
        cfg = ps_config_new();
        if (!cfg)
                return -ENOMEM;
        if (base_dir) {
                cfg->base_dir = strdup(base_dir);
                if (!cfg->base_dir) {
                        ps_config_free(cfg);
                        return -ENOMEM;
                }
        }
        r = config_parse(&c, cfg, doc);
        if (r == -ENOMEM)
                fail(&c, "out of memory");
        else if (r < 0)
                fail(&c, "%s", strerror(-r));
        if (r) {
                ps_config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

int ps_config_load_json(const json_t *doc, const char *base_dir, ps_config **ret,
                        char *err, size_t errlen) {
        return load_json(doc, base_dir, NULL, ret, err, errlen);
}

int ps_config_load_string(const char *text, const char *base_dir, ps_config **ret,
                          char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        json_error_t jerr;
        json_t *doc;
        int r;

        if (!text || !ret)
                return -EINVAL;
        doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
                return fail(&c, "%d:%d: %s", jerr.line, jerr.column, jerr.text);
        r = ps_config_load_json(doc, base_dir, ret, err, errlen);
        json_decref(doc);
        return r;
}

static int load_file(const char *path, const ps_inventory *known, ps_config **ret,
                     char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        char why[1024], *full = NULL, *slash;
        ps_config *cfg = NULL;
        json_error_t jerr;
        json_t *doc;
        FILE *f;
        int r;

        if (!path || !ret)
                return -EINVAL;
        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                fail(&c, "%s: %s", path, strerror(errno));
                return r;
        }
        doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
        fclose(f);
        if (!doc)
                return fail(&c, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);

        full = realpath(path, NULL);
        if (!full) {
                r = -errno;
                json_decref(doc);
                fail(&c, "%s: %s", path, strerror(-r));
                return r;
        }
        slash = strrchr(full, '/');
        if (slash == full)
                slash[1] = '\0';
        else if (slash)
                *slash = '\0';

        why[0] = '\0';
        r = load_json(doc, full, known, &cfg, why, sizeof(why));
        json_decref(doc);
        free(full);
        if (r) {
                fail(&c, "%s: %s", path, why);
                return r;
        }
        cfg->path = strdup(path);
        if (!cfg->path) {
                ps_config_free(cfg);
                return -ENOMEM;
        }
        *ret = cfg;
        return 0;
}

int ps_config_load_file(const char *path, ps_config **ret, char *err, size_t errlen) {
        return load_file(path, NULL, ret, err, errlen);
}

/* ---- environment ---- */

typedef struct env_reader {
        ps_getenv_fn fn;
        void *userdata;
} env_reader;

static const char *process_getenv(const char *name, void *userdata) {
        (void) userdata;
        return getenv(name);
}

/* NULL for unset and for empty. */
static const char *env_get(const env_reader *e, const char *name) {
        const char *v = e->fn(name, e->userdata);

        return v && v[0] ? v : NULL;
}

static int env_bool(ctx *c, const char *name, const char *v, bool *ret) {
        if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
                *ret = true;
        else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
                *ret = false;
        else
                return fail(c, "%s: must be true, false, 1 or 0, got \"" SHOWN "\"", name, v);
        return 0;
}

/* Decimal digits only, 1..max. */
static int env_uint(ctx *c, const char *name, const char *v, int64_t max, const char *what,
                    int64_t *ret) {
        int64_t n = 0;

        for (const char *d = v; *d; d++) {
                if (*d < '0' || *d > '9' || n > (max - (*d - '0')) / 10)
                        return fail(c, "%s: must be %s, got \"" SHOWN "\"", name, what, v);
                n = n * 10 + (*d - '0');
        }
        if (n < 1)
                return fail(c, "%s: must be %s, got \"" SHOWN "\"", name, what, v);
        *ret = n;
        return 0;
}

/* "a, b,c" into a vector of validated, distinct ids. */
static int env_pool_list(ctx *c, const char *name, const char *v, char ***ret, size_t *n) {
        size_t cap = 1, count = 0;
        char *copy, *p, *tok, **ids;
        pd_error perr;
        int r = 0;

        for (const char *s = v; *s; s++)
                cap += *s == ',';
        copy = strdup(v);
        ids = calloc(cap, sizeof(*ids));
        if (!copy || !ids) {
                free(copy);
                free(ids);
                return -ENOMEM;
        }
        for (p = copy; !r && (tok = strsep(&p, ","));) {
                char *end;

                while (*tok == ' ' || *tok == '\t')
                        tok++;
                end = tok + strlen(tok);
                while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
                        *--end = '\0';
                if (!*tok) {
                        r = fail(c, "%s: empty entry %zu in \"" SHOWN "\"", name, count + 1, v);
                        break;
                }
                if (pd_id_validate(tok, "pool id", &perr) != 0) {
                        r = fail(c, "%s: %s", name, perr.msg);
                        break;
                }
                for (size_t j = 0; j < count; j++)
                        if (strcmp(ids[j], tok) == 0)
                                r = fail(c, "%s: pool id \"%s\" is listed twice", name, tok);
                if (r)
                        break;
                ids[count] = strdup(tok);
                if (!ids[count]) {
                        r = -ENOMEM;
                        break;
                }
                count++;
        }
        free(copy);
        if (r) {
                ps_strv_free(ids, count);
                return r;
        }
        *ret = ids;
        *n = count;
        return 0;
}

static bool token_ok(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

int ps_config_apply_env(ps_config *config, ps_getenv_fn getenv_fn, void *userdata,
                        char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        env_reader e = { .fn = getenv_fn ? getenv_fn : process_getenv, .userdata = userdata };
        const char *addr, *address, *cloud_profile, *pools, *handoff_dir, *node_id;
        const char *runtime_dir = NULL;
        const char *machine_id, *orch_url, *token, *heartbeat, *reg, *watch, *state_dir;
        bool cloud = config ? config->profile == PS_PROFILE_CLOUD : false;
        bool register_on_startup = config ? config->cloud.register_on_startup : false;
        int64_t heartbeat_s = 0, watch_ms = 0;
        char **ids = NULL, *state_first = NULL;
        size_t n_ids = 0;
        pd_error perr;
        int r = 0;

        if (!config)
                return -EINVAL;
        addr = env_get(&e, "POOL_MANAGERD_ADDR");
        address = env_get(&e, "POOL_MANAGERD_ADDRESS");
        cloud_profile = env_get(&e, "POOL_MANAGERD_CLOUD_PROFILE");
        pools = env_get(&e, "POOL_MANAGERD_POOLS");
        /* The seed's meaning: the directory holding the handoff files
         * themselves. It never moves runtime_dir (PID files, logs, the
         * socket), which must not land in a shared directory. */
        handoff_dir = env_get(&e, "POOL_MANAGERD_RUNTIME_DIR");
        node_id = env_get(&e, "POOL_MANAGERD_NODE_ID");
        machine_id = env_get(&e, "POOL_MANAGERD_MACHINE_ID");
        orch_url = env_get(&e, "ORCHESTRATORD_URL");
        token = env_get(&e, "LLORCH_API_TOKEN");
        heartbeat = env_get(&e, "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS");
        reg = env_get(&e, "ORCHESTRATORD_REGISTER_ON_STARTUP");
        watch = env_get(&e, "POOL_MANAGERD_WATCH_INTERVAL_MS");
        state_dir = env_get(&e, "STATE_DIRECTORY");

        /* Check everything before changing anything. */
        if (addr)
                r = check_bind(&c, addr, "POOL_MANAGERD_ADDR");
        if (!r && address && !is_url(address))
                r = fail(&c, "POOL_MANAGERD_ADDRESS: must be an http:// or https:// URL, "
                         "got \"" SHOWN "\"", address);
        if (!r && cloud_profile)
                r = env_bool(&c, "POOL_MANAGERD_CLOUD_PROFILE", cloud_profile, &cloud);
        if (!r && node_id && pd_id_validate(node_id, "node id", &perr) != 0)
                r = fail(&c, "POOL_MANAGERD_NODE_ID: %s", perr.msg);
        if (!r && machine_id && has_space_or_control(machine_id))
                r = fail(&c, "POOL_MANAGERD_MACHINE_ID: must not contain spaces");
        if (!r && orch_url && !is_url(orch_url))
                r = fail(&c, "ORCHESTRATORD_URL: must be an http:// or https:// URL, got \"" SHOWN "\"",
                         orch_url);
        if (!r && token && !token_ok(token))
                r = fail(&c, "LLORCH_API_TOKEN: must be printable ASCII without spaces");
        if (!r && heartbeat)
                r = env_uint(&c, "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS", heartbeat,
                             INT64_MAX / 1000, "a whole number of seconds > 0", &heartbeat_s);
        if (!r && reg)
                r = env_bool(&c, "ORCHESTRATORD_REGISTER_ON_STARTUP", reg, &register_on_startup);
        if (!r && watch)
                r = env_uint(&c, "POOL_MANAGERD_WATCH_INTERVAL_MS", watch, INT64_MAX,
                             "a whole number of milliseconds > 0", &watch_ms);
        if (!r && pools)
                r = env_pool_list(&c, "POOL_MANAGERD_POOLS", pools, &ids, &n_ids);
        if (r)
                return r;

        /* systemd's StateDirectory= is the default runtime_dir. */
        if (state_dir && strcmp(config->runtime_dir_source, "default") == 0) {
                state_first = strndup(state_dir, strcspn(state_dir, ":"));
                if (!state_first) {
                        ps_strv_free(ids, n_ids);
                        return -ENOMEM;
                }
                if (state_first[0])
                        runtime_dir = state_first;
        }

        /* Copy first, then swap, so OOM leaves the config as it was. */
        {
                char *n_bind = NULL, *n_address = NULL, *n_runtime = NULL, *n_node = NULL;
                char *n_machine = NULL, *n_url = NULL, *n_token = NULL, *n_handoff = NULL;
                bool oom = false;

#define DUP(dst, src) do { if (src && !(dst = strdup(src))) oom = true; } while (0)
                DUP(n_bind, addr);
                DUP(n_address, address);
                DUP(n_runtime, runtime_dir);
                DUP(n_node, node_id);
                DUP(n_machine, machine_id);
                DUP(n_url, orch_url);
                DUP(n_token, token);
#undef DUP
                /* relative to the working directory, as the seed reads it */
                if (handoff_dir && !oom) {
                        char cwd[PATH_MAX];

                        if (handoff_dir[0] != '/' && !getcwd(cwd, sizeof(cwd)))
                                snprintf(cwd, sizeof(cwd), "/");
                        n_handoff = path_resolve(handoff_dir[0] == '/' ? NULL : cwd, handoff_dir);
                        oom = !n_handoff;
                }
                free(state_first);
                if (oom) {
                        free(n_bind);
                        free(n_address);
                        free(n_runtime);
                        free(n_node);
                        free(n_machine);
                        free(n_url);
                        free(n_token);
                        free(n_handoff);
                        ps_strv_free(ids, n_ids);
                        return -ENOMEM;
                }
#define SWAP(field, value) do { if (value) { free(field); field = value; } } while (0)
                if (n_bind)
                        config->bind_source = "POOL_MANAGERD_ADDR";
                SWAP(config->bind, n_bind);
                SWAP(config->cloud.address, n_address);
                if (n_runtime)
                        config->runtime_dir_source = "STATE_DIRECTORY";
                SWAP(config->runtime_dir, n_runtime);
                if (n_handoff)
                        config->handoff_dir_source = "POOL_MANAGERD_RUNTIME_DIR";
                SWAP(config->handoff_dir, n_handoff);
                SWAP(config->cloud.node_id, n_node);
                SWAP(config->cloud.machine_id, n_machine);
                SWAP(config->cloud.orchestrator_url, n_url);
                SWAP(config->cloud.api_token, n_token);
#undef SWAP
        }
        config->profile = cloud ? PS_PROFILE_CLOUD : PS_PROFILE_HOME;
        config->cloud.register_on_startup = register_on_startup;
        if (heartbeat_s > 0)
                config->cloud.heartbeat_interval_ms = heartbeat_s * 1000;
        if (watch_ms > 0) {
                config->watch_interval_ms = watch_ms;
                config->watch_interval_set = true;
        }
        if (pools) {
                ps_strv_free(config->advertise_pools, config->n_advertise_pools);
                config->advertise_pools = ids;
                config->n_advertise_pools = n_ids;
                config->advertise_pools_set = true;
        }
        return 0;
}

static int load(const char *path, const ps_inventory *known, ps_getenv_fn getenv_fn,
                void *userdata, ps_config **ret, char *err, size_t errlen) {
        ps_config *cfg = NULL;
        int r;

        if (!ret)
                return -EINVAL;
        if (path) {
                r = load_file(path, known, &cfg, err, errlen);
                if (r)
                        return r;
        } else {
                cfg = ps_config_new();
                if (!cfg)
                        return -ENOMEM;
                /* the defaults' backend is auto: look for CUDA devices */
                cfg->inventory = ps_inventory_free(cfg->inventory);
                r = ps_inventory_from_config(&cfg->gpu, &cfg->inventory, err, errlen);
                if (r) {
                        ps_config_free(cfg);
                        return r;
                }
        }
        r = ps_config_apply_env(cfg, getenv_fn, userdata, err, errlen);
        /* Only the bind in effect must stay clear of the pools' ports. */
        if (!r) {
                ctx c = { .err = err, .errlen = errlen };

                r = check_bind_ports(&c, cfg, cfg->bind, strcmp(cfg->bind_source, "POOL_MANAGERD_ADDR") == 0
                                                         ? "POOL_MANAGERD_ADDR" : "bind");
        }
        if (r) {
                ps_config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

int ps_config_load(const char *path, ps_getenv_fn getenv_fn, void *userdata,
                   ps_config **ret, char *err, size_t errlen) {
        return load(path, NULL, getenv_fn, userdata, ret, err, errlen);
}

int ps_config_reload(const char *path, const ps_inventory *known, ps_getenv_fn getenv_fn,
                     void *userdata, ps_config **ret, char *err, size_t errlen) {
        if (!path || !known)
                return -EINVAL;
        return load(path, known, getenv_fn, userdata, ret, err, errlen);
}

int ps_config_set_bind(ps_config *config, const char *bind, const char *source,
                       char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        int r;

        if (!config || !bind)
                return -EINVAL;
        r = check_bind(&c, bind, "bind");
        if (!r)
                r = check_bind_ports(&c, config, bind, "bind");
        if (!r)
                r = str_set(&config->bind, bind);
        if (!r)
                config->bind_source = source ? source : "flag";
        return r;
}

int ps_config_set_runtime_dir(ps_config *config, const char *dir, const char *source,
                              char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        int r;

        if (!config || !dir)
                return -EINVAL;
        if (!dir[0])
                return fail(&c, "runtime_dir: must not be empty");
        r = str_set(&config->runtime_dir, dir);
        if (!r)
                config->runtime_dir_source = source ? source : "flag";
        return r;
}

const ps_pool_config *ps_config_find_pool(const ps_config *config, const char *id) {
        for (size_t i = 0; config && id && i < config->n_pools; i++)
                if (strcmp(config->pools[i].id, id) == 0)
                        return &config->pools[i];
        return NULL;
}

/* ---- paths an API caller names (docs/security.md) ---- */

/* One place a path may lie: as written (normalised, "dir/" for a tree)
 * and resolved. */
typedef struct allowed {
        char *lexical;
        char *real;               /* NULL: does not resolve               */
        bool children_only;       /* a "dir/" covering only its own files */
} allowed;

typedef struct allowset {
        allowed *v;
        size_t n;
} allowset;

static void allowset_clear(allowset *set) {
        for (size_t i = 0; i < set->n; i++) {
                free(set->v[i].lexical);
                free(set->v[i].real);
        }
        free(set->v);
        set->v = NULL;
        set->n = 0;
}

/* Adds an entry; lexical is taken. real NULL: realpath() of lexical. */
static int allowset_add(allowset *set, char *lexical, const char *real) {
        allowed *v;

        if (!lexical)
                return -ENOMEM;
        v = realloc(set->v, (set->n + 1) * sizeof(*v));
        if (!v) {
                free(lexical);
                return -ENOMEM;
        }
        set->v = v;
        v[set->n].lexical = lexical;
        v[set->n].children_only = false;
        v[set->n].real = real ? strdup(real) : entry_realpath(lexical);
        if (!v[set->n].real && (real || errno == ENOMEM)) {
                free(lexical);
                return -ENOMEM;
        }
        set->n++;
        return 0;
}

static int allowset_from_list(allowset *set, char *const *list, char *const *real, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char *lex = strdup(list[i]);
                int r;

                if (!lex)
                        return -ENOMEM;
                if (real && real[i])
                        r = allowset_add(set, lex, real[i]);
                else if (real) {
                        /* did not exist at load: nothing real lies under it */
                        allowed *v = realloc(set->v, (set->n + 1) * sizeof(*v));

                        if (!v) {
                                free(lex);
                                return -ENOMEM;
                        }
                        set->v = v;
                        v[set->n++] = (allowed) { .lexical = lex, .real = NULL };
                        r = 0;
                } else
                        r = allowset_add(set, lex, NULL);
                if (r)
                        return r;
        }
        return 0;
}

/* "/a/b/c" -> "/a/b/" (malloc'd); NULL on OOM. */
static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');

        return strndup(path, slash ? (size_t) (slash - path) + 1 : 0);
}

/* A tree entry "dir/" covers dir itself and everything below (with
 * children_only: dir's own files, no deeper); a file entry only itself. */
static bool covered(const char *path, const char *entry, bool children_only) {
        size_t len = strlen(entry);

        if (len && entry[len - 1] == '/') {
                if (strlen(path) == len - 1 && strncmp(path, entry, len - 1) == 0)
                        return true;
                return strncmp(path, entry, len) == 0 &&
                       (!children_only || !strchr(path + len, '/'));
        }
        return strcmp(path, entry) == 0;
}

/*
 * The check shared by binaries, models and working directories: lexical
 * first, so a path outside gets the same answer whether it exists or not
 * and nothing touches it; then the realpath against the entries' realpaths.
 */
static int path_check(ctx *c, const char *what, const char *list_name, int forbidden,
                      const allowset *set, const char *path, char **resolved) {
        char *norm, *real;
        bool inside = false;

        if (path[0] != '/')
                return fail(c, "%s: must be an absolute path, got \"" SHOWN "\"", what, path);
        norm = path_resolve(NULL, path);
        if (!norm)
                return -ENOMEM;
        inside = strcmp(norm, path) == 0;
        free(norm);
        if (!inside)
                return fail(c, "%s: " SHOWN " has \".\", \"..\" or empty components", what, path);
        inside = false;
        for (size_t i = 0; !inside && i < set->n; i++)
                inside = covered(path, set->v[i].lexical, set->v[i].children_only);
        if (!inside) {
                fail(c, "%s: " SHOWN " is not in %s", what, path, list_name);
                return forbidden;
        }
        real = realpath(path, NULL);
        if (!real) {
                int e = errno;

                if (e == ENOMEM)
                        return -ENOMEM;
                fail(c, "%s: " SHOWN ": %s", what, path, strerror(e));
                return e == ENOENT || e == ENOTDIR ? PS_E_NOT_FOUND : PS_E_INVALID;
        }
        inside = false;
        for (size_t i = 0; !inside && i < set->n; i++)
                inside = set->v[i].real &&
                         covered(real, set->v[i].real, set->v[i].children_only);
        if (!inside) {
                fail(c, "%s: " SHOWN " resolves to " SHOWN ", which is not in %s", what, path,
                     real, list_name);
                free(real);
                return forbidden;
        }
        if (resolved)
                *resolved = real;
        else
                free(real);
        return 0;
}

int ps_config_binary_allowed(const ps_config *config, const char *path, char **resolved,
                             char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        allowset set = { 0 };
        const char *list = "engines.allow";
        int r = 0;

        if (!config || !path)
                return -EINVAL;
        if (config->n_engines_allow == 0) {
                list = "engines.allow (empty: only the binaries of configured pools)";
                for (size_t i = 0; !r && i < config->n_pools; i++)
                        r = allowset_add(&set, strdup(config->pools[i].binary), NULL);
        } else
                r = allowset_from_list(&set, config->engines_allow, config->engines_allow_real,
                                       config->n_engines_allow);
        if (!r)
                r = path_check(&c, "binary_path", list, PS_E_FORBIDDEN, &set, path, resolved);
        allowset_clear(&set);
        return r;
}

/* models.allow, or the directories of configured pools' models. */
static int model_set(const ps_config *config, allowset *set, const char **list) {
        int r = 0;

        if (config->n_models_allow > 0) {
                *list = "models.allow";
                return allowset_from_list(set, config->models_allow, config->models_allow_real,
                                          config->n_models_allow);
        }
        *list = "models.allow (empty: only the files beside configured pools' models)";
        for (size_t i = 0; !r && i < config->n_pools; i++) {
                char *dir;

                if (!config->pools[i].model_path)
                        continue;
                dir = dir_of(config->pools[i].model_path);
                if (!dir)
                        return -ENOMEM;
                /* a model at the root would otherwise allow every file */
                if (strcmp(dir, "/") == 0) {
                        free(dir);
                        continue;
                }
                r = allowset_add(set, dir, NULL);
                if (!r)
                        set->v[set->n - 1].children_only = true;
        }
        return r;
}

int ps_config_model_allowed(const ps_config *config, const char *path, char **resolved,
                            char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        allowset set = { 0 };
        const char *list;
        int r;

        if (!config || !path)
                return -EINVAL;
        r = model_set(config, &set, &list);
        if (!r)
                r = path_check(&c, "model_path", list, PS_E_MODEL_FORBIDDEN, &set, path, resolved);
        allowset_clear(&set);
        return r;
}

int ps_config_workdir_allowed(const ps_config *config, const char *path, char **resolved,
                              char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        allowset set = { 0 };
        const char *list;
        char *run = NULL, *run_dir = NULL, cwd[PATH_MAX];
        int r;

        if (!config || !path)
                return -EINVAL;
        r = model_set(config, &set, &list);
        /* the runtime directory, made absolute without touching it */
        if (!r && config->runtime_dir[0] != '/' && !getcwd(cwd, sizeof(cwd)))
                r = fail(&c, "workdir: the daemon's working directory: %s", strerror(errno));
        if (!r) {
                run = path_resolve(config->runtime_dir[0] == '/' ? NULL : cwd, config->runtime_dir);
                if (run && asprintf(&run_dir, "%s/", strcmp(run, "/") ? run : "") < 0)
                        run_dir = NULL;
                r = run_dir ? allowset_add(&set, run_dir, NULL) : -ENOMEM;
        }
        free(run);
        if (!r)
                r = path_check(&c, "workdir", "the runtime directory or models.allow",
                               PS_E_MODEL_FORBIDDEN, &set, path, resolved);
        allowset_clear(&set);
        return r;
}

/* ---- environment ---- */

static bool name_matches(const char *const *patterns, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (fnmatch(patterns[i], name, 0) == 0)
                        return true;
        return false;
}

bool ps_env_name_reserved(const char *name) {
        return name && (strcmp(name, "CUDA_VISIBLE_DEVICES") == 0 ||
                        strcmp(name, "CUDA_DEVICE_ORDER") == 0);
}

int ps_config_api_env_allowed(const ps_config *config, const char *name,
                              char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };

        if (!config || !name)
                return -EINVAL;
        if (check_env_name(name) != 0)
                return fail(&c, "env: \"" SHOWN "\" is not a variable name", name);
        if (ps_env_name_reserved(name))
                return fail(&c, "env.%s: is set by the daemon (from device_mask)", name);
        if (name_matches(refused_env, sizeof(refused_env) / sizeof(refused_env[0]), name))
                return fail(&c, "env.%s: may not be set through the API (it can change what "
                            "the engine loads or runs)", name);
        if (!name_matches((const char *const *) config->engines_env_allow,
                          config->n_engines_env_allow, name))
                return fail(&c, "env.%s: is not allowed by engines.env_allow", name);
        return 0;
}

/* ---- hosts ---- */

typedef union ip_addr {
        struct in_addr v4;
        struct in6_addr v6;
} ip_addr;

static bool is_local_address(int family, const ip_addr *a) {
        struct ifaddrs *list, *i;
        bool found = false;

        if (getifaddrs(&list) < 0)
                return false;
        for (i = list; i && !found; i = i->ifa_next) {
                if (!i->ifa_addr || i->ifa_addr->sa_family != family)
                        continue;
                if (family == AF_INET)
                        found = ((const struct sockaddr_in *) (const void *) i->ifa_addr)
                                        ->sin_addr.s_addr == a->v4.s_addr;
                else
                        found = memcmp(&((const struct sockaddr_in6 *) (const void *) i->ifa_addr)
                                                ->sin6_addr,
                                       &a->v6, sizeof(a->v6)) == 0;
        }
        freeifaddrs(list);
        return found;
}

int ps_host_check(const char *host, bool allow_remote, char *out, size_t outlen,
                  char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        char text[INET6_ADDRSTRLEN];
        ip_addr a;
        int family;
        bool loopback;

        if (!host || !out)
                return -EINVAL;
        if (strcmp(host, "localhost") == 0)
                host = "127.0.0.1";
        if (inet_pton(AF_INET, host, &a.v4) == 1)
                family = AF_INET;
        else if (inet_pton(AF_INET6, host, &a.v6) == 1)
                family = AF_INET6;
        else
                return fail(&c, "must be an IP address of this node (or \"localhost\"), "
                            "not a host name or URL, got \"" SHOWN "\"", host);
        if (!inet_ntop(family, &a, text, sizeof(text)))
                return fail(&c, "cannot format \"" SHOWN "\"", host);
        if (family == AF_INET ? a.v4.s_addr == htonl(INADDR_ANY)
                              : IN6_IS_ADDR_UNSPECIFIED(&a.v6))
                return fail(&c, "%s is not an address an engine can be reached at; "
                            "use 127.0.0.1 or one of the node's addresses", text);
        loopback = family == AF_INET ? (ntohl(a.v4.s_addr) >> 24) == 127
                                     : IN6_IS_ADDR_LOOPBACK(&a.v6);
        if (!loopback && !allow_remote)
                return fail(&c, "%s is not a loopback address (engines.allow_remote_hosts is off)",
                            text);
        if (!loopback && !is_local_address(family, &a))
                return fail(&c, "%s is not an address of this node", text);
        if (strlen(text) >= outlen)
                return fail(&c, "%s does not fit", text);
        memcpy(out, text, strlen(text) + 1);
        return 0;
}

/* ---- where things live ---- */

int ps_config_api_socket(const ps_config *config, ps_getenv_fn getenv_fn, void *userdata,
                         char *buf, size_t len, char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        const char *dir = NULL;
        size_t dir_len;
        int n;

        if (!config || !buf || !len)
                return -EINVAL;
        buf[0] = '\0';
        if (config->api_socket) {
                if (!config->api_socket[0])
                        return 0;
                n = snprintf(buf, len, "%s", config->api_socket);
        } else {
                /* systemd's RuntimeDirectory=, unless a flag named the runtime dir */
                if (strcmp(config->runtime_dir_source, "flag") != 0)
                        dir = getenv_fn ? getenv_fn("RUNTIME_DIRECTORY", userdata)
                                        : getenv("RUNTIME_DIRECTORY");
                if (!dir || !dir[0])
                        dir = config->runtime_dir;
                dir_len = strcspn(dir, ":");
                n = snprintf(buf, len, "%.*s/api.sock", (int) dir_len, dir);
        }
        if (n < 0 || (size_t) n >= len || n > SOCKET_PATH_MAX) {
                buf[0] = '\0';
                return fail(&c, "api.socket: the socket path is longer than %d bytes, the most a "
                            "Unix socket path may have; set api.socket to a shorter path, or \"\" "
                            "to listen on TCP only", SOCKET_PATH_MAX);
        }
        return 0;
}

int ps_config_handoff_dir(const ps_config *config, char *buf, size_t len) {
        int n;

        if (!config || !buf || !len)
                return -EINVAL;
        if (config->handoff_dir)
                n = snprintf(buf, len, "%s", config->handoff_dir);
        else
                n = snprintf(buf, len, "%s/engines", config->runtime_dir);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

/* ---- PreparedEngines ---- */

/* "/models/Qwen2-0.5B.Q4.gguf" -> "Qwen2-0.5B.Q4"; NULL for no name. */
static char *model_id_of(const char *model_path) {
        const char *end = model_path + strlen(model_path), *start;

        while (end > model_path && end[-1] == '/')
                end--;
        start = end;
        while (start > model_path && start[-1] != '/')
                start--;
        if (end - start > 5 && strncasecmp(end - 5, ".gguf", 5) == 0)
                end -= 5;
        if (end == start)
                return NULL;
        return strndup(start, (size_t) (end - start));
}

int ps_config_replica_spec(const ps_config *config, size_t pool_index, unsigned replica,
                           bool surge, ps_engine_spec **ret, char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        const ps_pool_config *p;
        ps_engine_spec *s;
        char rid[16];
        unsigned port;
        bool ok = true;
        int r;

        if (!config || !ret)
                return -EINVAL;
        if (pool_index >= config->n_pools)
                return fail(&c, "pools[%zu]: no such pool (%zu configured)", pool_index,
                            config->n_pools);
        p = &config->pools[pool_index];
        if (replica >= p->replicas)
                return fail(&c, "pools[%zu]: no replica %u (%u configured)", pool_index, replica,
                            p->replicas);
        port = p->port + replica + (surge ? p->replicas : 0);
        snprintf(rid, sizeof(rid), "r%u", replica);
        r = check_args(&c, p, pool_index, port, rid);
        if (r != 0)
                return r;

        s = ps_engine_spec_new();
        if (!s)
                return -ENOMEM;
#define DUP(field, value) do { if ((value) && !(s->field = strdup(value))) ok = false; } while (0)
        DUP(binary_path, p->binary);
        DUP(host, p->host);
        DUP(model_path, p->model_path);
        DUP(engine, p->engine);
        DUP(engine_version, p->engine_version);
        DUP(pool_id, p->id);
        if (!(s->replica_id = strdup(rid)))
                ok = false;
        DUP(device_mask, p->device_mask);
        DUP(cuda_visible_devices, p->cuda_visible_devices);
        DUP(health_path, ps_policy_health_path(p->policy));
        DUP(tensor_split, p->tensor_split);
#undef DUP
        if (p->model_path) {
                s->model_id = model_id_of(p->model_path);
                /* a path of slashes only has no name: leave model_id unset */
        }
        s->port = (uint16_t) port;
        s->slots = p->slots;
        if (ok && p->n_env > 0) {
                s->env = calloc(p->n_env, sizeof(*s->env));
                ok = s->env != NULL;
                for (size_t i = 0; ok && i < p->n_env; i++) {
                        s->env[i] = strdup(p->env[i]);
                        ok = s->env[i] != NULL;
                        s->n_env = i + 1;
                }
        }
        /* the templates themselves: rendered at each start */
        if (ok && p->n_args > 0) {
                s->flags = calloc(p->n_args, sizeof(*s->flags));
                ok = s->flags != NULL;
                for (size_t i = 0; ok && i < p->n_args; i++) {
                        s->flags[i] = strdup(p->args[i]);
                        ok = s->flags[i] != NULL;
                        s->n_flags = i + 1;
                }
        }
        if (!ok) {
                ps_engine_spec_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

int ps_config_replicas(const ps_config *config, ps_config_replica **ret, size_t *n,
                       char *err, size_t errlen) {
        ps_config_replica *list;
        size_t total = 0, k = 0;

        if (!config || !ret || !n)
                return -EINVAL;
        for (size_t i = 0; i < config->n_pools; i++)
                total += config->pools[i].replicas;
        list = calloc(total ? total : 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < config->n_pools; i++) {
                for (unsigned j = 0; j < config->pools[i].replicas; j++) {
                        int r = ps_config_replica_spec(config, i, j, false, &list[k].spec,
                                                       err, errlen);

                        if (r) {
                                ps_config_replicas_free(list, k);
                                return r;
                        }
                        list[k++].policy = config->pools[i].policy;
                }
        }
        *ret = list;
        *n = total;
        return 0;
}

ps_config_replica *ps_config_replicas_free(ps_config_replica *list, size_t n) {
        if (!list)
                return NULL;
        for (size_t i = 0; i < n; i++)
                ps_engine_spec_free(list[i].spec);
        free(list);
        return NULL;
}

/* ---- the cloud profile, resolved ---- */

#define TOKEN_FILE_MAX 4096

/* The token file's first line, without its line end; key names the
 * setting in messages ("api.token_file"). */
static int read_token_file(ctx *c, const char *key, const char *path, char **ret) {
        char buf[TOKEN_FILE_MAX + 2];
        size_t n;
        FILE *f = fopen(path, "re");
        int r = 0;

        if (!f)
                return fail(c, "%s: cannot read %s: %s", key, path, strerror(errno));
        n = fread(buf, 1, sizeof(buf) - 1, f);
        if (ferror(f))
                r = fail(c, "%s: cannot read %s: %s", key, path, strerror(errno));
        fclose(f);
        if (r)
                return r;
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        if (strlen(buf) > TOKEN_FILE_MAX)
                r = fail(c, "%s: %s: the token is longer than %d bytes", key, path, TOKEN_FILE_MAX);
        else if (!buf[0])
                r = fail(c, "%s: %s is empty", key, path);
        else if (!token_ok(buf))
                r = fail(c, "%s: %s: the token must be printable ASCII without spaces", key, path);
        if (!r && !(*ret = strdup(buf)))
                r = -ENOMEM;
        explicit_bzero(buf, sizeof(buf));
        return r;
}

int ps_config_resolve_token(ps_config *config, char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        ps_cloud_config *cl;

        if (!config)
                return -EINVAL;
        cl = &config->cloud;
        if (cl->api_token)              /* LLORCH_API_TOKEN wins */
                return 0;
        if (config->api_token_file)
                return read_token_file(&c, "api.token_file", config->api_token_file, &cl->api_token);
        if (cl->token_file[0])
                return read_token_file(&c, "cloud.token_file", cl->token_file, &cl->api_token);
        return 0;
}

int ps_config_resolve_cloud(ps_config *config, const char *hostname, char *err, size_t errlen) {
        ctx c = { .err = err, .errlen = errlen };
        ps_cloud_config *cl;
        char host[256];
        bool no_address, no_url;
        pd_error perr;
        int r;

        if (!config)
                return -EINVAL;
        cl = &config->cloud;
        if (config->profile != PS_PROFILE_CLOUD)
                return 0;
        no_address = !cl->address[0];
        no_url = !cl->orchestrator_url[0];
        if (no_address && no_url)
                return fail(&c, "cloud profile: the node address (cloud.address or "
                                "POOL_MANAGERD_ADDRESS) and the control-plane URL "
                                "(cloud.orchestrator_url or ORCHESTRATORD_URL) are missing");
        if (no_address)
                return fail(&c, "cloud profile: the node address (cloud.address or "
                                "POOL_MANAGERD_ADDRESS) is missing");
        if (no_url)
                return fail(&c, "cloud profile: the control-plane URL (cloud.orchestrator_url or "
                                "ORCHESTRATORD_URL) is missing");
        if (!cl->node_id[0]) {
                if (!hostname) {
                        if (gethostname(host, sizeof(host)) < 0)
                                return fail(&c, "cloud profile: no node id (cloud.node_id or "
                                                "POOL_MANAGERD_NODE_ID) and no host name: %s",
                                            strerror(errno));
                        host[sizeof(host) - 1] = '\0';
                        hostname = host;
                }
                if (pd_id_validate(hostname, "node id", &perr) != 0)
                        return fail(&c, "cloud profile: the host name \"" SHOWN "\" is not a valid "
                                        "node id (%s); set cloud.node_id or POOL_MANAGERD_NODE_ID",
                                    hostname, perr.msg);
                r = str_set(&cl->node_id, hostname);
                if (r)
                        return r;
        }
        if (!cl->machine_id[0] && (r = str_set(&cl->machine_id, cl->node_id)))
                return r;
        return ps_config_resolve_token(config, err, errlen);
}
