/* SPDX-License-Identifier: MIT */
/*
 * pools[]: the table of one pool, the checks across pools (ports, shared
 * devices, splits, argument templates), and the PreparedEngines of their
 * replicas.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/config-schema.h"
#include "base/errfmt.h"
#include "conf/policy-private.h"
#include "base/strv.h"
#include "base/template.h"
#include "pool-domain/ids.h"
#include "pool-services/placement/inventory.h"

#define POOL_REPLICAS_MAX 256
#define POOL_SLOTS_MAX 65535
#define POOL_ARGS_MAX 256

/* What one pool's later rows need from its device_mask. */
typedef struct pool_state {
        ps_device_mask mask;
        bool no_gpu_yet;        /* backend auto found no device (yet) */
} pool_state;

static size_t pool_index(const ps_conf_ctx *c, const ps_pool_config *p) {
        return (size_t) (p - c->cfg->pools);
}

static unsigned port_last(const ps_pool_config *p) {
        /* replicas, then as many surge ports */
        return (unsigned) p->port + 2 * p->replicas - 1;
}

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

/* Whether the pool's args render for one replica; fails naming the arg. */
static int check_args(ps_conf_ctx *c, const ps_pool_config *p, size_t pool_index, unsigned port,
                      const char *replica_id) {
        char where[PS_CONF_AT_MAX], what[PS_CONF_AT_MAX + 8], why[512], **argv = NULL;
        char *model_id = p->model_path ? model_id_of(p->model_path) : NULL;
        ps_template_vars v;
        int r;

        /* no model_id: a path of slashes only (no name), or out of memory */
        if (p->model_path && !model_id && p->model_path[strspn(p->model_path, "/")])
                return -ENOMEM;
        snprintf(where, sizeof(where), "pools[%zu]", pool_index);
        v = (ps_template_vars) {
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
        snprintf(what, sizeof(what), "%s.args", where);
        r = ps_template_render_all(p->args, p->n_args, &v, what, &argv, why, sizeof(why));
        free(model_id);
        if (r > 0)
                return ps_conf_fail(c, "%s", why);
        if (r == 0)
                ps_strv_free(argv, p->n_args);
        return r;
}

/* ---- the rows' hooks ---- */

static int id_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_pool_config *p = base;
        size_t i = pool_index(c, p);
        pd_error perr;

        (void) v;
        if (pd_id_validate(p->id, "pool id", &perr) != 0)
                return ps_conf_fail(c, "%s: %s", at, perr.msg);
        for (size_t j = 0; j < i; j++)
                if (strcmp(c->cfg->pools[j].id, p->id) == 0)
                        return ps_conf_fail(c, "%s: pool id \"%s\" is also pools[%zu]'s", at,
                                            p->id, j);
        return 0;
}

static int binary_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        const ps_pool_config *p = base;
        const ps_config *cfg = c->cfg;
        bool ok = cfg->n_engines_allow == 0;

        (void) v;
        for (size_t j = 0; j < cfg->n_engines_allow && !ok; j++) {
                const char *e = cfg->engines_allow[j];
                size_t len = strlen(e);

                ok = e[len - 1] == '/' ? strncmp(p->binary, e, len) == 0
                                       : strcmp(p->binary, e) == 0;
        }
        if (!ok)
                return ps_conf_fail(c, "%s: " PS_CONF_SHOWN " is not in engines.allow", at,
                                    p->binary);
        return 0;
}

/* An address of this node, as its canonical literal. */
static int host_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_pool_config *p = base;
        char literal[INET6_ADDRSTRLEN], reason[160];

        (void) v;
        if (ps_host_check(p->host, true, literal, sizeof(literal), reason, sizeof(reason)) != 0)
                return ps_conf_fail(c, "%s: %s", at, reason);
        return ps_conf_str_set(&p->host, literal);
}

/* Replicas and surge engines fit below 65536 and meet no other pool's. */
static int ports_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        const ps_pool_config *p = base;
        size_t i = pool_index(c, p);

        (void) v;
        if (port_last(p) > 65535)
                return ps_conf_fail(c, "%s.port: ports %u..%u (replicas and their surge ports) "
                                    "go beyond 65535", at, (unsigned) p->port, port_last(p));
        for (size_t j = 0; j < i; j++) {
                const ps_pool_config *o = &c->cfg->pools[j];

                if (p->port <= port_last(o) && o->port <= port_last(p))
                        return ps_conf_fail(c, "%s.port: ports %u..%u overlap ports %u..%u of "
                                            "pools[%zu] (\"%s\"); replica i listens on port+i, a "
                                            "surge engine on port+replicas+i", at,
                                            (unsigned) p->port, port_last(p), (unsigned) o->port,
                                            port_last(o), j, o->id);
        }
        return 0;
}

static int metrics_path_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        const ps_pool_config *p = base;

        (void) v;
        if (p->engine_metrics_path[0] != '/' || strchr(p->engine_metrics_path, '#'))
                return ps_conf_fail(c, "%s: must be a URL path starting with '/' (no '#'), got \""
                                    PS_CONF_SHOWN "\"", at, p->engine_metrics_path);
        return 0;
}

/* Devices of earlier pools are shared only when both pools say so. */
static int mask_overlap_check(ps_conf_ctx *c, const ps_pool_config *p, const ps_device_mask *mask,
                              const char *at) {
        size_t i = pool_index(c, p);

        for (size_t j = 0; j < i && !mask->none; j++) {
                const ps_pool_config *o = &c->cfg->pools[j];
                ps_device_mask om;
                int shared;

                if (ps_inventory_parse_mask(NULL, o->device_mask, &om, NULL, 0) != 0)
                        continue;
                if (ps_device_mask_overlaps(mask, &om, &shared) &&
                    !(p->shared_devices && o->shared_devices))
                        return ps_conf_fail(c, "%s: device %d is also used by pools[%zu] (\"%s\"); "
                                            "both pools need \"shared_devices\": true to share it",
                                            at, shared, j, o->id);
        }
        return 0;
}

/*
 * The mask against the inventory, stored canonically with the
 * CUDA_VISIBLE_DEVICES it gives. With auto and no device found, only its
 * syntax now; the devices at each start (preflight), so a driver that
 * comes up later helps.
 */
static int mask_resolve(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_pool_config *p = base;
        const ps_config *cfg = c->cfg;
        pool_state *st = c->state;
        char why[512], text[PS_DEVICES_MAX * PS_GPU_UUID_MAX];
        int r;

        (void) v;
        st->no_gpu_yet = cfg->gpu.backend == PS_GPU_BACKEND_AUTO &&
                         ps_inventory_count(cfg->inventory) == 0;
        r = ps_inventory_parse_mask(st->no_gpu_yet ? NULL : cfg->inventory, p->device_mask,
                                    &st->mask, why, sizeof(why));
        if (r < 0)
                return r;
        if (r > 0 && st->no_gpu_yet)
                return ps_conf_fail(c, "%s: %s (gpu.backend \"auto\": %s)", at, why,
                                    ps_inventory_problem(cfg->inventory));
        if (r > 0)
                return ps_conf_fail(c, "%s: %s", at, why);
        if (st->mask.none && cfg->gpu.require)
                return ps_conf_fail(c, "%s: \"none\" (no GPU) needs gpu.require false", at);
        r = mask_overlap_check(c, p, &st->mask, at);
        if (r)
                return r;
        if (ps_device_mask_format(&st->mask, text, sizeof(text)) < 0)
                return -ENOSPC;
        if ((r = ps_conf_str_set(&p->device_mask, text)))
                return r;
        if (ps_inventory_format_visible(cfg->inventory, &st->mask, cfg->gpu.uuid_visible_devices,
                                        text, sizeof(text)) < 0)
                return -ENOSPC;
        return ps_conf_str_set(&p->cuda_visible_devices, text);
}

static int split_plan(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_pool_config *p = base;
        const ps_config *cfg = c->cfg;
        const pool_state *st = c->state;
        char planned[PS_DEVICES_MAX * 8], why[512];
        int r;

        (void) v;
        r = ps_inventory_plan_split(st->no_gpu_yet ? NULL : cfg->inventory, &st->mask, p->split,
                                    cfg->gpu.headroom_bytes, p->vram_required_bytes,
                                    planned, sizeof(planned), why, sizeof(why));
        if (r < 0)
                return r;
        if (r > 0)
                return ps_conf_fail(c, "%s: %s", at, why);
        return ps_conf_str_set(&p->tensor_split, planned);
}

static int env_parse(ps_conf_ctx *c, void *base, const json_t *env, const char *at) {
        ps_pool_config *p = base;
        size_t n = 0, count = json_object_size(env);
        const char *key;
        json_t *v;

        p->env = calloc(count ? count : 1, sizeof(*p->env));
        if (!p->env)
                return -ENOMEM;
        json_object_foreach((json_t *) env, key, v) {
                if (ps_conf_check_env_name(key) != 0)
                        return ps_conf_fail(c, "%s." PS_CONF_SHOWN ": not a valid variable name "
                                            "(letters, digits, '_'; not starting with a digit)",
                                            at, key);
                if (ps_env_name_reserved(key))
                        return ps_conf_fail(c, "%s.%s: set by the daemon (from device_mask), "
                                            "not here", at, key);
                if (!json_is_string(v))
                        return ps_conf_fail(c, "%s.%s: must be a string, got %s", at, key,
                                            ps_json_type_name(v));
                if (asprintf(&p->env[n], "%s=%s", key, json_string_value(v)) < 0) {
                        p->env[n] = NULL;
                        return -ENOMEM;
                }
                p->n_env = ++n;
        }
        return 0;
}

/* Changes to the copy of defaults the pool starts with. */
static int policy_apply(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        ps_pool_config *p = base;

        if (ps_policy_apply_json(p->policy, v, at, c->err, c->errlen) != 0)
                return PS_E_INVALID;
        return 0;
}

/* Render once for r0, so a bad template fails the load, not a preload. */
static int args_check(ps_conf_ctx *c, void *base, const json_t *v, const char *at) {
        const ps_pool_config *p = base;

        (void) v, (void) at;
        return check_args(c, p, pool_index(c, p), p->port, "r0");
}

static const ps_field pool_fields[] = {
        { .key = "id", .type = PS_FIELD_STRING, PS_MEMBER(ps_pool_config, id), .required = true,
          .hook = id_check },
        { .key = "engine", .type = PS_FIELD_WORD, PS_MEMBER(ps_pool_config, engine),
          .required = true },
        { .key = "engine_version", .type = PS_FIELD_WORD, PS_MEMBER(ps_pool_config, engine_version),
          .required = true },
        { .key = "binary", .type = PS_FIELD_PATH, PS_MEMBER(ps_pool_config, binary),
          .required = true, .hook = binary_check },
        { .key = "model_path", .type = PS_FIELD_PATH, PS_MEMBER(ps_pool_config, model_path) },
        { .key = "host", .type = PS_FIELD_WORD, PS_MEMBER(ps_pool_config, host),
          .hook = host_check, .def_str = "127.0.0.1" },
        { .key = "port", .type = PS_FIELD_INT, PS_MEMBER(ps_pool_config, port), .required = true,
          .min = 1, .max = 65535 },
        { .key = "replicas", .type = PS_FIELD_INT, PS_MEMBER(ps_pool_config, replicas),
          .min = 1, .max = POOL_REPLICAS_MAX, .has_default = true, .def_int = 1 },
        { .key = "slots", .type = PS_FIELD_INT, PS_MEMBER(ps_pool_config, slots),
          .min = 1, .max = POOL_SLOTS_MAX, .has_default = true, .def_int = 1 },
        { .key = "vram_required_bytes", .type = PS_FIELD_INT,
          PS_MEMBER(ps_pool_config, vram_required_bytes), .max = PS_FIELD_NO_MAX,
          .has_default = true },
        { .key = "ram_required_bytes", .type = PS_FIELD_INT,
          PS_MEMBER(ps_pool_config, ram_required_bytes), .max = PS_FIELD_NO_MAX,
          .has_default = true },
        { .type = PS_FIELD_CHECK, .hook = ports_check },
        { .key = "engine_metrics", .type = PS_FIELD_BOOL, PS_MEMBER(ps_pool_config, engine_metrics),
          .has_default = true },
        { .key = "engine_metrics_path", .type = PS_FIELD_WORD,
          PS_MEMBER(ps_pool_config, engine_metrics_path), .hook = metrics_path_check,
          .def_str = "/metrics" },
        { .key = "shared_devices", .type = PS_FIELD_BOOL, PS_MEMBER(ps_pool_config, shared_devices),
          .has_default = true },
        { .key = "device_mask", .type = PS_FIELD_STRING, PS_MEMBER(ps_pool_config, device_mask),
          .required = true, .hint = "devices such as \"0\" or \"0,1\", or \"none\"",
          .hook = mask_resolve },
        { .key = "split", .type = PS_FIELD_STRING, PS_MEMBER(ps_pool_config, split),
          .hook = split_plan },
        { .key = "env", .type = PS_FIELD_OBJECT, .hook = env_parse },
        { .key = "policy", .type = PS_FIELD_OBJECT, .hook = policy_apply },
        { .key = "args", .type = PS_FIELD_STRINGS, PS_MEMBER(ps_pool_config, args),
          .count_offset = offsetof(ps_pool_config, n_args), .max = POOL_ARGS_MAX },
        { .type = PS_FIELD_CHECK, .hook = args_check },
};

const ps_schema ps_conf_schema_pool = {
        "pools[]", pool_fields, sizeof(pool_fields) / sizeof(pool_fields[0]),
};

int ps_conf_pools_parse(ps_conf_ctx *c, void *base, const json_t *pools, const char *at) {
        ps_config *cfg = base;
        size_t n = json_array_size(pools);
        pool_state st;
        int r = 0, failed = 0;

        if (n == 0)
                return 0;
        cfg->pools = calloc(n, sizeof(*cfg->pools));
        if (!cfg->pools)
                return -ENOMEM;
        c->state = &st;
        for (size_t i = 0; !r && i < n; i++) {
                ps_pool_config *p = &cfg->pools[i];
                char where[PS_CONF_AT_MAX];

                /* count it first, so a half-parsed pool is freed */
                cfg->n_pools = i + 1;
                snprintf(where, sizeof(where), "%s[%zu]", at, i);
                st = (pool_state) { .no_gpu_yet = false };
                r = ps_schema_defaults(&ps_conf_schema_pool, p);
                if (!r && !(p->policy = ps_policy_copy(cfg->defaults)))
                        r = -ENOMEM;
                if (!r)
                        r = ps_schema_walk(c, &ps_conf_schema_pool, json_array_get(pools, i),
                                           where, p);
                /* collecting: the next pool is checked too */
                if (ps_conf_keep_going(c, r)) {
                        failed = r;
                        r = 0;
                }
        }
        c->state = NULL;
        return r ? r : failed;
}

int ps_conf_check_bind_ports(ps_conf_ctx *c, const ps_config *cfg, const char *bind,
                             const char *label) {
        char host[256];
        unsigned port;

        if (!ps_conf_bind_split(bind, host, sizeof(host), &port) || port == 0)
                return 0;
        for (size_t i = 0; i < cfg->n_pools; i++) {
                const ps_pool_config *p = &cfg->pools[i];

                if (port >= p->port && port <= port_last(p))
                        return ps_conf_fail(c, "%s: port %u is also used by pools[%zu] (\"%s\", "
                                            "ports %u..%u)", label, port, i, p->id,
                                            (unsigned) p->port, port_last(p));
        }
        return 0;
}

const ps_pool_config *ps_config_find_pool(const ps_config *config, const char *id) {
        for (size_t i = 0; config && id && i < config->n_pools; i++)
                if (strcmp(config->pools[i].id, id) == 0)
                        return &config->pools[i];
        return NULL;
}

/* ---- PreparedEngines ---- */

/* A copy of n strings into *dst; false on OOM (*n_dst counts what to free). */
static bool strv_copy(char *const *src, size_t n, char ***dst, size_t *n_dst) {
        if (n == 0)
                return true;
        *dst = calloc(n, sizeof(**dst));
        if (!*dst)
                return false;
        for (size_t i = 0; i < n; i++) {
                (*dst)[i] = strdup(src[i]);
                *n_dst = i + 1;
                if (!(*dst)[i])
                        return false;
        }
        return true;
}

/* The pool's own fields, copied; false on OOM. */
static bool spec_fill(ps_engine_spec *s, const ps_pool_config *p, const char *rid) {
        const struct { char **dst; const char *src; } strings[] = {
                { &s->binary_path, p->binary },
                { &s->host, p->host },
                { &s->model_path, p->model_path },
                { &s->engine, p->engine },
                { &s->engine_version, p->engine_version },
                { &s->pool_id, p->id },
                { &s->replica_id, rid },
                { &s->device_mask, p->device_mask },
                { &s->cuda_visible_devices, p->cuda_visible_devices },
                { &s->health_path, ps_policy_health_path(p->policy) },
                { &s->tensor_split, p->tensor_split },
        };

        for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
                if (strings[i].src && !(*strings[i].dst = strdup(strings[i].src)))
                        return false;
        /* a path of slashes only has no name: leave model_id unset */
        if (p->model_path)
                s->model_id = model_id_of(p->model_path);
        s->slots = p->slots;
        /* the templates themselves: rendered at each start */
        return strv_copy(p->env, p->n_env, &s->env, &s->n_env) &&
               strv_copy(p->args, p->n_args, &s->flags, &s->n_flags);
}

int ps_config_replica_spec(const ps_config *config, size_t pool_index, unsigned replica,
                           bool surge, ps_engine_spec **ret, char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        const ps_pool_config *p;
        ps_engine_spec *s;
        char rid[16];
        unsigned port;
        int r;

        if (!config || !ret)
                return -EINVAL;
        if (pool_index >= config->n_pools)
                return ps_conf_fail(&c, "pools[%zu]: no such pool (%zu configured)", pool_index,
                                    config->n_pools);
        p = &config->pools[pool_index];
        if (replica >= p->replicas)
                return ps_conf_fail(&c, "pools[%zu]: no replica %u (%u configured)", pool_index,
                                    replica, p->replicas);
        port = p->port + replica + (surge ? p->replicas : 0);
        snprintf(rid, sizeof(rid), "r%u", replica);
        r = check_args(&c, p, pool_index, port, rid);
        if (r != 0)
                return r;

        s = ps_engine_spec_new();
        if (!s)
                return -ENOMEM;
        s->port = (uint16_t) port;
        if (!spec_fill(s, p, rid)) {
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
