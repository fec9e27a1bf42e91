/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errfmt.h"
#include "base/strv.h"
#include "base/template.h"
#include "pool-services/base/errors.h"
#include "pool-services/conf/spec.h"

ps_engine_spec *ps_engine_spec_new(void) {
        ps_engine_spec *spec = calloc(1, sizeof(*spec));

        if (spec)
                spec->slots = 1;
        return spec;
}

ps_engine_spec *ps_engine_spec_free(ps_engine_spec *spec) {
        if (!spec)
                return NULL;
        free(spec->binary_path);
        ps_strv_free(spec->flags, spec->n_flags);
        free(spec->host);
        free(spec->model_path);
        free(spec->model_id);
        free(spec->model_digest);
        free(spec->engine);
        free(spec->engine_version);
        free(spec->pool_id);
        free(spec->replica_id);
        free(spec->device_mask);
        free(spec->cuda_visible_devices);
        ps_strv_free(spec->env, spec->n_env);
        free(spec->workdir);
        free(spec->health_path);
        free(spec->tensor_split);
        free(spec);
        return NULL;
}

/* strdup that keeps NULL as NULL; *ok turns false on OOM. */
static char *dup_or_null(const char *s, bool *ok) {
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *ok = false;
        return d;
}

static char **strv_copy(char *const *v, size_t n, bool *ok) {
        char **d;

        if (n == 0)
                return NULL;
        d = calloc(n, sizeof(*d));
        if (!d) {
                *ok = false;
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                d[i] = dup_or_null(v[i], ok);
        return d;
}

ps_engine_spec *ps_engine_spec_copy(const ps_engine_spec *spec) {
        ps_engine_spec *d;
        bool ok = true;

        if (!spec)
                return NULL;
        d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->binary_path = dup_or_null(spec->binary_path, &ok);
        d->flags = strv_copy(spec->flags, spec->n_flags, &ok);
        d->n_flags = d->flags ? spec->n_flags : 0;
        d->host = dup_or_null(spec->host, &ok);
        d->port = spec->port;
        d->model_path = dup_or_null(spec->model_path, &ok);
        d->model_id = dup_or_null(spec->model_id, &ok);
        d->model_digest = dup_or_null(spec->model_digest, &ok);
        d->engine = dup_or_null(spec->engine, &ok);
        d->engine_version = dup_or_null(spec->engine_version, &ok);
        d->pool_id = dup_or_null(spec->pool_id, &ok);
        d->replica_id = dup_or_null(spec->replica_id, &ok);
        d->device_mask = dup_or_null(spec->device_mask, &ok);
        d->cuda_visible_devices = dup_or_null(spec->cuda_visible_devices, &ok);
        d->slots = spec->slots;
        d->env = strv_copy(spec->env, spec->n_env, &ok);
        d->n_env = d->env ? spec->n_env : 0;
        d->workdir = dup_or_null(spec->workdir, &ok);
        d->health_path = dup_or_null(spec->health_path, &ok);
        d->tensor_split = dup_or_null(spec->tensor_split, &ok);
        if (!ok)
                return ps_engine_spec_free(d);
        return d;
}

int ps_engine_spec_url(const ps_engine_spec *spec, char *buf, size_t len) {
        const char *host = spec->host ? spec->host : "127.0.0.1";

        /* An IPv6 literal needs brackets in a URL. */
        if (strchr(host, ':'))
                return snprintf(buf, len, "http://[%s]:%u", host, (unsigned) spec->port);
        return snprintf(buf, len, "http://%s:%u", host, (unsigned) spec->port);
}

static void spec_vars(const ps_engine_spec *spec, ps_template_vars *v) {
        *v = (ps_template_vars) {
                .model_path = spec->model_path ? spec->model_path : spec->model_id,
                .model_id = spec->model_id,
                .host = spec->host ? spec->host : "127.0.0.1",
                .tensor_split = spec->tensor_split,
                .replica_id = spec->replica_id,
                .pool_id = spec->pool_id,
                .port = spec->port,
                .slots = spec->slots,
        };
}

int ps_engine_spec_argv(const ps_engine_spec *spec, char ***ret, char *err, size_t errlen) {
        const char *binary = spec->binary_path ? spec->binary_path : "";
        ps_template_vars v;
        char **flags = NULL, **argv, *at, why[512];
        size_t size;
        int r;

        spec_vars(spec, &v);
        r = ps_template_render_all(spec->flags, spec->n_flags, &v, "flags", &flags,
                                   why, sizeof(why));
        if (r > 0)
                return ps_errf(err, errlen, r, "%s", why);
        if (r < 0)
                return ps_errf(err, errlen, r, "out of memory");
        size = (spec->n_flags + 2) * sizeof(*argv) + strlen(binary) + 1;
        for (size_t i = 0; i < spec->n_flags; i++)
                size += strlen(flags[i]) + 1;
        argv = malloc(size);
        if (!argv) {
                ps_strv_free(flags, spec->n_flags);
                return ps_errf(err, errlen, -ENOMEM, "out of memory");
        }
        at = (char *) (argv + spec->n_flags + 2);
        argv[0] = strcpy(at, binary);
        at += strlen(binary) + 1;
        for (size_t i = 0; i < spec->n_flags; i++) {
                argv[i + 1] = strcpy(at, flags[i]);
                at += strlen(flags[i]) + 1;
        }
        argv[spec->n_flags + 1] = NULL;
        ps_strv_free(flags, spec->n_flags);
        *ret = argv;
        return 0;
}

int ps_engine_spec_set_argv(ps_engine_spec *spec, const char *const *argv, size_t n) {
        ps_template_vars v;
        char **flags;
        int r;

        spec_vars(spec, &v);
        /* only what the spec itself names: no defaults, no reference */
        v.model_path = spec->model_path;
        v.host = spec->host;
        r = ps_template_from_argv(argv, n, &v, &flags);
        if (r < 0)
                return r;
        ps_strv_free(spec->flags, spec->n_flags);
        spec->flags = flags;
        spec->n_flags = n;
        return 0;
}

bool ps_engine_spec_takes_port(const ps_engine_spec *spec) {
        for (size_t i = 0; i < spec->n_flags; i++)
                if (ps_template_uses(spec->flags[i], "port"))
                        return true;
        return false;
}
