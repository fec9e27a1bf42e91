/* SPDX-License-Identifier: MIT */
/*
 * The environment over the file (docs/configuration.md, "Environment"):
 * one row per variable. Every variable is checked and copied before any
 * setting changes, so an error or OOM leaves the configuration as it was.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/config-schema.h"
#include "base/strv.h"
#include "pool-domain/ids.h"

/* A variable's value between its check and its setting. */
typedef struct env_value {
        const char *raw;        /* NULL: unset (or empty)                  */
        char *text;             /* owned until applied; NULL: change nothing */
        int64_t number;
        bool flag;
        char **ids;
        size_t n_ids;
} env_value;

typedef struct env_var env_var;

struct env_var {
        const char *name;
        /* checks val->raw and prepares the setting; changes nothing */
        int (*read)(ps_conf_ctx *c, const env_var *var, const ps_config *cfg, env_value *val);
        void (*apply)(const env_var *var, ps_config *cfg, env_value *val);
        size_t offset;          /* text: the char * in ps_config            */
        size_t source_offset;   /* text: its *_source, set to the name; 0: none */
        int64_t max;            /* whole numbers                            */
        const char *what;       /* whole numbers, for the message           */
};

static const char *process_getenv(const char *name, void *userdata) {
        (void) userdata;
        return getenv(name);
}

static int text_copy(env_value *val, const char *s) {
        val->text = strdup(s);
        return val->text ? 0 : -ENOMEM;
}

/* ---- checks ---- */

static int read_bind(ps_conf_ctx *c, const env_var *var, const ps_config *cfg, env_value *val) {
        int r = ps_conf_check_bind(c, val->raw, var->name);

        (void) cfg;
        return r ? r : text_copy(val, val->raw);
}

static int read_url(ps_conf_ctx *c, const env_var *var, const ps_config *cfg, env_value *val) {
        (void) cfg;
        if (!ps_conf_is_url(val->raw))
                return ps_conf_fail(c, "%s: must be an http:// or https:// URL, got \""
                                    PS_CONF_SHOWN "\"", var->name, val->raw);
        return text_copy(val, val->raw);
}

static int read_node_id(ps_conf_ctx *c, const env_var *var, const ps_config *cfg,
                        env_value *val) {
        pd_error perr;

        (void) cfg;
        if (pd_id_validate(val->raw, "node id", &perr) != 0)
                return ps_conf_fail(c, "%s: %s", var->name, perr.msg);
        return text_copy(val, val->raw);
}

static int read_machine_id(ps_conf_ctx *c, const env_var *var, const ps_config *cfg,
                           env_value *val) {
        (void) cfg;
        if (ps_conf_has_space(val->raw))
                return ps_conf_fail(c, "%s: must not contain spaces", var->name);
        return text_copy(val, val->raw);
}

/* Never shown: it is a secret. */
static int read_token(ps_conf_ctx *c, const env_var *var, const ps_config *cfg, env_value *val) {
        (void) cfg;
        if (!ps_conf_token_ok(val->raw))
                return ps_conf_fail(c, "%s: must be printable ASCII without spaces", var->name);
        return text_copy(val, val->raw);
}

static int read_bool(ps_conf_ctx *c, const env_var *var, const ps_config *cfg, env_value *val) {
        const char *v = val->raw;

        (void) cfg;
        if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
                val->flag = true;
        else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
                val->flag = false;
        else
                return ps_conf_fail(c, "%s: must be true, false, 1 or 0, got \"" PS_CONF_SHOWN "\"",
                                    var->name, v);
        return 0;
}

/* Decimal digits only, 1..max. */
static int read_whole(ps_conf_ctx *c, const env_var *var, const ps_config *cfg, env_value *val) {
        int64_t n = 0;

        (void) cfg;
        for (const char *d = val->raw; *d; d++) {
                if (*d < '0' || *d > '9' || n > (var->max - (*d - '0')) / 10)
                        return ps_conf_fail(c, "%s: must be %s, got \"" PS_CONF_SHOWN "\"",
                                            var->name, var->what, val->raw);
                n = n * 10 + (*d - '0');
        }
        if (n < 1)
                return ps_conf_fail(c, "%s: must be %s, got \"" PS_CONF_SHOWN "\"", var->name,
                                    var->what, val->raw);
        val->number = n;
        return 0;
}

/* One entry of a pool list, trimmed, validated and new; ids[count] takes it. */
static int pool_list_entry(ps_conf_ctx *c, const env_var *var, const char *list, char *tok,
                           char **ids, size_t count) {
        pd_error perr;
        char *end;

        while (*tok == ' ' || *tok == '\t')
                tok++;
        end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
                *--end = '\0';
        if (!*tok)
                return ps_conf_fail(c, "%s: empty entry %zu in \"" PS_CONF_SHOWN "\"", var->name,
                                    count + 1, list);
        if (pd_id_validate(tok, "pool id", &perr) != 0)
                return ps_conf_fail(c, "%s: %s", var->name, perr.msg);
        for (size_t j = 0; j < count; j++)
                if (strcmp(ids[j], tok) == 0)
                        return ps_conf_fail(c, "%s: pool id \"%s\" is listed twice", var->name,
                                            tok);
        ids[count] = strdup(tok);
        return ids[count] ? 0 : -ENOMEM;
}

/* "a, b,c" into a vector of validated, distinct ids. */
static int read_pool_list(ps_conf_ctx *c, const env_var *var, const ps_config *cfg,
                          env_value *val) {
        size_t cap = 1, count = 0;
        char *copy, *p, *tok, **ids;
        int r = 0;

        (void) cfg;
        for (const char *s = val->raw; *s; s++)
                cap += *s == ',';
        copy = strdup(val->raw);
        ids = calloc(cap, sizeof(*ids));
        if (!copy || !ids) {
                free(copy);
                free(ids);
                return -ENOMEM;
        }
        for (p = copy; !r && (tok = strsep(&p, ","));)
                if (!(r = pool_list_entry(c, var, val->raw, tok, ids, count)))
                        count++;
        free(copy);
        if (r) {
                ps_strv_free(ids, count);
                return r;
        }
        val->ids = ids;
        val->n_ids = count;
        return 0;
}

/* Relative to the working directory, as the llama-orch pool manager reads it. */
static int read_cwd_path(ps_conf_ctx *c, const env_var *var, const ps_config *cfg,
                         env_value *val) {
        char cwd[PATH_MAX];

        (void) c, (void) var, (void) cfg;
        if (val->raw[0] != '/' && !getcwd(cwd, sizeof(cwd)))
                snprintf(cwd, sizeof(cwd), "/");
        val->text = ps_conf_path_resolve(val->raw[0] == '/' ? NULL : cwd, val->raw);
        return val->text ? 0 : -ENOMEM;
}

/* systemd's StateDirectory=: the first directory, unless the file set one. */
static int read_state_dir(ps_conf_ctx *c, const env_var *var, const ps_config *cfg,
                          env_value *val) {
        size_t len = strcspn(val->raw, ":");

        (void) c, (void) var;
        if (strcmp(cfg->runtime_dir_source, "default") != 0 || len == 0)
                return 0;
        val->text = strndup(val->raw, len);
        return val->text ? 0 : -ENOMEM;
}

/* ---- settings ---- */

static void *member_at(ps_config *cfg, size_t offset) {
        return (char *) cfg + offset;
}

static void apply_text(const env_var *var, ps_config *cfg, env_value *val) {
        char **field = member_at(cfg, var->offset);

        if (!val->text)
                return;
        if (var->source_offset) {
                const char **source = member_at(cfg, var->source_offset);

                *source = var->name;
        }
        free(*field);
        *field = val->text;
        val->text = NULL;
}

static void apply_profile(const env_var *var, ps_config *cfg, env_value *val) {
        (void) var;
        cfg->profile = val->flag ? PS_PROFILE_CLOUD : PS_PROFILE_HOME;
}

static void apply_register(const env_var *var, ps_config *cfg, env_value *val) {
        (void) var;
        cfg->cloud.register_on_startup = val->flag;
}

static void apply_heartbeat(const env_var *var, ps_config *cfg, env_value *val) {
        (void) var;
        cfg->cloud.heartbeat_interval_ms = val->number * 1000;
}

static void apply_watch(const env_var *var, ps_config *cfg, env_value *val) {
        (void) var;
        cfg->watch_interval_ms = val->number;
        cfg->watch_interval_set = true;
}

static void apply_pools(const env_var *var, ps_config *cfg, env_value *val) {
        (void) var;
        ps_strv_free(cfg->advertise_pools, cfg->n_advertise_pools);
        cfg->advertise_pools = val->ids;
        cfg->n_advertise_pools = val->n_ids;
        cfg->advertise_pools_set = true;
        val->ids = NULL;
        val->n_ids = 0;
}

static const env_var env_vars[] = {
        { .name = "POOL_MANAGERD_ADDR", .read = read_bind, .apply = apply_text,
          .offset = offsetof(ps_config, bind), .source_offset = offsetof(ps_config, bind_source) },
        { .name = "POOL_MANAGERD_ADDRESS", .read = read_url, .apply = apply_text,
          .offset = offsetof(ps_config, cloud.address) },
        { .name = "POOL_MANAGERD_CLOUD_PROFILE", .read = read_bool, .apply = apply_profile },
        { .name = "POOL_MANAGERD_NODE_ID", .read = read_node_id, .apply = apply_text,
          .offset = offsetof(ps_config, cloud.node_id) },
        { .name = "POOL_MANAGERD_MACHINE_ID", .read = read_machine_id, .apply = apply_text,
          .offset = offsetof(ps_config, cloud.machine_id) },
        { .name = "ORCHESTRATORD_URL", .read = read_url, .apply = apply_text,
          .offset = offsetof(ps_config, cloud.orchestrator_url) },
        { .name = "LLORCH_API_TOKEN", .read = read_token, .apply = apply_text,
          .offset = offsetof(ps_config, cloud.api_token) },
        { .name = "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS", .read = read_whole,
          .apply = apply_heartbeat, .max = INT64_MAX / 1000,
          .what = "a whole number of seconds > 0" },
        { .name = "ORCHESTRATORD_REGISTER_ON_STARTUP", .read = read_bool, .apply = apply_register },
        { .name = "POOL_MANAGERD_WATCH_INTERVAL_MS", .read = read_whole, .apply = apply_watch,
          .max = INT64_MAX, .what = "a whole number of milliseconds > 0" },
        { .name = "POOL_MANAGERD_POOLS", .read = read_pool_list, .apply = apply_pools },
        /* llama-orch's meaning: the directory holding the handoff files
         * themselves. It never moves runtime_dir (PID files, logs, the
         * socket), which must not land in a shared directory. */
        { .name = "POOL_MANAGERD_RUNTIME_DIR", .read = read_cwd_path, .apply = apply_text,
          .offset = offsetof(ps_config, handoff_dir),
          .source_offset = offsetof(ps_config, handoff_dir_source) },
        { .name = "STATE_DIRECTORY", .read = read_state_dir, .apply = apply_text,
          .offset = offsetof(ps_config, runtime_dir),
          .source_offset = offsetof(ps_config, runtime_dir_source) },
};

#define N_ENV_VARS (sizeof(env_vars) / sizeof(env_vars[0]))

const char *ps_conf_env_name(size_t i) {
        return i < N_ENV_VARS ? env_vars[i].name : NULL;
}

int ps_config_apply_env(ps_config *config, ps_getenv_fn getenv_fn, void *userdata,
                        char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        env_value vals[N_ENV_VARS] = { { 0 } };
        int r = 0;

        if (!config)
                return -EINVAL;
        if (!getenv_fn)
                getenv_fn = process_getenv;
        for (size_t i = 0; !r && i < N_ENV_VARS; i++) {
                const char *v = getenv_fn(env_vars[i].name, userdata);

                vals[i].raw = v && v[0] ? v : NULL;
                if (vals[i].raw)
                        r = env_vars[i].read(&c, &env_vars[i], config, &vals[i]);
        }
        for (size_t i = 0; !r && i < N_ENV_VARS; i++)
                if (vals[i].raw)
                        env_vars[i].apply(&env_vars[i], config, &vals[i]);
        for (size_t i = 0; i < N_ENV_VARS; i++) {
                free(vals[i].text);
                ps_strv_free(vals[i].ids, vals[i].n_ids);
        }
        return r;
}
