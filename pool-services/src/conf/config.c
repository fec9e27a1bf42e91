/* SPDX-License-Identifier: MIT */
/*
 * The node configuration: the struct and its loaders. The small checks
 * its parts share are in config-util.c; the sections' tables in
 * config-sections.c and config-pools.c, read by the walker of
 * config-schema.c; the environment is config-env.c; what the API may do,
 * config-trust.c.
 * docs/configuration.md is the user's side; keep the two in step.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config-private.h"
#include "conf/policy-private.h"
#include "base/strv.h"
#include "pool-services/placement/inventory.h"

#define DEFAULT_WATCH_INTERVAL_MS 10000

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

/* The file's defaults come from the section tables; these are the rest. */
ps_config *ps_config_new(void) {
        ps_config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->bind_source = "default";
        c->runtime_dir_source = "default";
        c->handoff_dir_source = "default";
        c->cloud.register_on_startup = true;
        c->watch_interval_ms = DEFAULT_WATCH_INTERVAL_MS;
        c->defaults = ps_policy_new();
        if (!c->defaults || ps_conf_set_defaults(c) != 0 ||
            ps_inventory_new(PS_GPU_BACKEND_NONE, NULL, 0, &c->inventory, NULL, 0) != 0)
                return ps_config_free(c);
        return c;
}

/* ---- loading ---- */

static int load_json(const json_t *doc, const char *base_dir, const ps_inventory *known,
                     ps_conf_report *report, ps_config **ret, char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen, .base_dir = base_dir, .known = known,
                          .report = report };
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
        r = ps_conf_parse(&c, cfg, doc);
        if (r == 0 && report && report->n > 0)
                r = PS_E_INVALID;
        if (r == -ENOMEM)
                ps_conf_fail(&c, "out of memory");
        else if (r < 0)
                ps_conf_fail(&c, "%s", strerror(-r));
        if (r) {
                ps_config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

int ps_config_load_json(const json_t *doc, const char *base_dir, ps_config **ret,
                        char *err, size_t errlen) {
        return load_json(doc, base_dir, NULL, NULL, ret, err, errlen);
}

int ps_config_load_string(const char *text, const char *base_dir, ps_config **ret,
                          char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        json_error_t jerr;
        json_t *doc;
        int r;

        if (!text || !ret)
                return -EINVAL;
        doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
                return ps_conf_fail(&c, "%d:%d: %s", jerr.line, jerr.column, jerr.text);
        r = ps_config_load_json(doc, base_dir, ret, err, errlen);
        json_decref(doc);
        return r;
}

/* The directory of a file's realpath; NULL (errno set) on failure. */
static char *dir_of_file(const char *path) {
        char *full = realpath(path, NULL), *slash;

        if (!full)
                return NULL;
        slash = strrchr(full, '/');
        if (slash == full)
                slash[1] = '\0';
        else if (slash)
                *slash = '\0';
        return full;
}

/* The report's messages from first on, each as "path: message". */
static void report_prefix(ps_conf_report *report, size_t first, const char *path) {
        for (size_t i = first; report && i < report->n; i++) {
                char *m = NULL;

                if (asprintf(&m, "%s: %s", path, report->msgs[i]) < 0) {
                        report->oom = true;
                        return;
                }
                free(report->msgs[i]);
                report->msgs[i] = m;
        }
}

static int load_file(const char *path, const ps_inventory *known, ps_conf_report *report,
                     ps_config **ret, char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen, .report = report };
        size_t first = report ? report->n : 0;
        char why[1024], *dir;
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
                ps_conf_fail(&c, "%s: %s", path, strerror(errno));
                return r;
        }
        doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
        fclose(f);
        if (!doc)
                return ps_conf_fail(&c, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        dir = dir_of_file(path);
        if (!dir) {
                r = -errno;
                json_decref(doc);
                ps_conf_fail(&c, "%s: %s", path, strerror(-r));
                return r;
        }
        why[0] = '\0';
        r = load_json(doc, dir, known, report, &cfg, why, sizeof(why));
        json_decref(doc);
        free(dir);
        if (r && report && report->n > first) {
                report_prefix(report, first, path);
                snprintf(err, errlen, "%s: %s", path, why);
                return r;
        }
        if (r) {
                ps_conf_fail(&c, "%s: %s", path, why);
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
        return load_file(path, NULL, NULL, ret, err, errlen);
}

static int load(const char *path, const ps_inventory *known, ps_conf_report *report,
                ps_getenv_fn getenv_fn, void *userdata, ps_config **ret, char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen, .report = report };
        ps_config *cfg = NULL;
        int r;

        if (!ret)
                return -EINVAL;
        if (path) {
                r = load_file(path, known, report, &cfg, err, errlen);
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
        if (r == PS_E_INVALID && report)
                (void) ps_conf_report_add(report, err);
        /* Only the bind in effect must stay clear of the pools' ports. */
        if (!r)
                r = ps_conf_check_bind_ports(&c, cfg, cfg->bind,
                                             strcmp(cfg->bind_source, "POOL_MANAGERD_ADDR") == 0
                                                     ? "POOL_MANAGERD_ADDR" : "bind");
        if (r) {
                ps_config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

int ps_config_load(const char *path, ps_getenv_fn getenv_fn, void *userdata,
                   ps_config **ret, char *err, size_t errlen) {
        return load(path, NULL, NULL, getenv_fn, userdata, ret, err, errlen);
}

int ps_config_reload(const char *path, const ps_inventory *known, ps_getenv_fn getenv_fn,
                     void *userdata, ps_config **ret, char *err, size_t errlen) {
        if (!path || !known)
                return -EINVAL;
        return load(path, known, NULL, getenv_fn, userdata, ret, err, errlen);
}

int ps_config_check_load(const char *path, ps_getenv_fn getenv_fn, void *userdata,
                         ps_config **ret, char ***errors, size_t *n_errors) {
        ps_conf_report report = { .msgs = NULL };
        char err[1024] = "";
        int r;

        if (!path || !ret || !errors || !n_errors)
                return -EINVAL;
        r = load(path, NULL, &report, getenv_fn, userdata, ret, err, sizeof(err));
        /* A problem said only in err (the file cannot be opened, ...). */
        if (r != 0 && report.n == 0 && !report.oom && err[0])
                (void) ps_conf_report_add(&report, err);
        if (report.oom)
                r = -ENOMEM;
        *errors = report.msgs;
        *n_errors = report.n;
        return r;
}

/* ---- flags ---- */

int ps_config_set_bind(ps_config *config, const char *bind, const char *source,
                       char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        int r;

        if (!config || !bind)
                return -EINVAL;
        r = ps_conf_check_bind(&c, bind, "bind");
        if (!r)
                r = ps_conf_check_bind_ports(&c, config, bind, "bind");
        if (!r)
                r = ps_conf_str_set(&config->bind, bind);
        if (!r)
                config->bind_source = source ? source : "flag";
        return r;
}

int ps_config_set_runtime_dir(ps_config *config, const char *dir, const char *source,
                              char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        int r;

        if (!config || !dir)
                return -EINVAL;
        if (!dir[0])
                return ps_conf_fail(&c, "runtime_dir: must not be empty");
        r = ps_conf_str_set(&config->runtime_dir, dir);
        if (!r)
                config->runtime_dir_source = source ? source : "flag";
        return r;
}
