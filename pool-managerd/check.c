/* SPDX-License-Identifier: MIT */
/*
 * --check-config: what a start would refuse, all of it, nothing started.
 * The file's problems (every one the walker finds), then, for a file that
 * loads, what a start checks next (token, bind, runtime paths) and what
 * an engine's start would trip on (binary, model, GPUs, VRAM).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "pool-api/bind-addr.h"
#include "pool-services/conf/config.h"
#include "pool-services/placement/preflight.h"

#define EXIT_USAGE 2

typedef struct report {
        const char *path;
        unsigned errors, warnings;
} report;

static void say(report *r, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "FILE: pools[1].port: ..." for an error, "FILE: warning: ..." else. */
static void say(report *r, bool error, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s: %s", r->path, error ? "" : "warning: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (error)
                r->errors++;
        else
                r->warnings++;
}

/* What the start checks once the file has loaded (main.c, configure()). */
static void check_start(report *rep, ps_config *config) {
        char err[512], path[PATH_MAX];
        pa_bind_addr bind;
        pa_error perr;

        if (ps_config_resolve_cloud(config, NULL, err, sizeof(err)) != 0)
                say(rep, true, "%s", err);
        if (ps_config_resolve_token(config, err, sizeof(err)) != 0)
                say(rep, true, "%s", err);
        if (pa_bind_addr_parse(config->bind, &bind, &perr) < 0)
                say(rep, true, "bind: %s", perr.msg);
        else if (!pa_bind_addr_is_loopback(&bind) &&
                 !(config->cloud.api_token && config->cloud.api_token[0]))
                say(rep, true, "bind: %s is not a loopback address, and there is no API token "
                    "(api.token_file or LLORCH_API_TOKEN): a start refuses to listen there",
                    config->bind);
        if (ps_config_api_socket(config, NULL, NULL, path, sizeof(path), err, sizeof(err)) != 0)
                say(rep, true, "%s", err);
        if (ps_config_handoff_dir(config, path, sizeof(path)) != 0)
                say(rep, true, "runtime_dir: the handoff directory's path is too long");
}

/* The trust checks name their own setting ("binary_path: ..."); here the
 * place in the file says it. */
static const char *without_label(const char *err, const char *label) {
        size_t n = strlen(label);

        return strncmp(err, label, n) == 0 && strncmp(err + n, ": ", 2) == 0 ? err + n + 2 : err;
}

static void check_binary(report *rep, const ps_config *config, size_t i) {
        const ps_pool_config *p = &config->pools[i];
        char err[512], *resolved = NULL;
        struct stat st;

        if (ps_config_binary_allowed(config, p->binary, &resolved, err, sizeof(err)) != 0) {
                say(rep, true, "pools[%zu].binary: %s", i, without_label(err, "binary_path"));
                return;
        }
        if (stat(resolved, &st) != 0)
                say(rep, true, "pools[%zu].binary: %s: %s", i, p->binary, strerror(errno));
        else if (!S_ISREG(st.st_mode))
                say(rep, true, "pools[%zu].binary: %s is not a regular file", i, p->binary);
        else if (access(resolved, X_OK) != 0)
                say(rep, true, "pools[%zu].binary: %s is not executable: %s", i, p->binary,
                    strerror(errno));
        free(resolved);
}

static void check_model(report *rep, const ps_config *config, size_t i) {
        const ps_pool_config *p = &config->pools[i];
        char err[512], *resolved = NULL;
        int fd;

        if (!p->model_path)
                return;
        if (ps_config_model_allowed(config, p->model_path, &resolved, err, sizeof(err)) != 0) {
                say(rep, true, "pools[%zu].model_path: %s", i, without_label(err, "model_path"));
                return;
        }
        fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                say(rep, true, "pools[%zu].model_path: %s cannot be read: %s", i, p->model_path,
                    strerror(errno));
        else
                close(fd);
        free(resolved);
}

/* The inventory as if every device were empty: a pool that does not fit
 * that never fits. NULL on OOM. */
static ps_inventory *empty_inventory(const ps_inventory *inv) {
        size_t n = ps_inventory_count(inv);
        ps_gpu_device *devs = calloc(n ? n : 1, sizeof(*devs));
        ps_inventory *ret = NULL;

        if (!devs)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                devs[i] = *ps_inventory_device(inv, i);
                devs[i].vram_free_bytes = devs[i].vram_total_bytes;
        }
        if (ps_inventory_new(ps_inventory_backend(inv), devs, n, &ret, NULL, 0) != 0)
                ret = NULL;
        free(devs);
        return ret;
}

/* VRAM: more than the devices hold is an error, more than is free now a
 * warning (what frees up by the start is not known here). */
static void check_vram(report *rep, const ps_config *config, const ps_inventory *empty,
                       size_t i) {
        const ps_pool_config *p = &config->pools[i];
        ps_preflight_node node = {
                .inventory = empty,
                .require_gpu = config->gpu.require,
                .headroom_bytes = config->gpu.headroom_bytes,
        };
        ps_preflight_request req = {
                .pool_id = p->id,
                .device_mask = p->device_mask,
                .tensor_split = p->tensor_split,
                .model_path = p->model_path,
                .vram_required_bytes = p->vram_required_bytes,
        };
        char err[512];

        if (!p->device_mask || strcmp(p->device_mask, "none") == 0)
                return;
        if (req.vram_required_bytes == 0 &&
            (!p->model_path || ps_preflight_estimate_vram(p->model_path, &req.vram_required_bytes) != 0))
                return;
        if (ps_preflight_check(&node, &req, err, sizeof(err)) != 0) {
                say(rep, true, "pools[%zu]: %s (more than the devices hold with nothing on them)",
                    i, err);
                return;
        }
        node.inventory = config->inventory;
        if (ps_preflight_check(&node, &req, err, sizeof(err)) != 0)
                say(rep, false, "pools[%zu]: %s (free now)", i, err);
}

static void check_pools(report *rep, const ps_config *config) {
        const ps_inventory *inv = config->inventory;
        ps_inventory *empty = NULL;
        bool gpus_known = ps_inventory_backend(inv) != PS_GPU_BACKEND_NONE || !ps_inventory_problem(inv);

        if (ps_inventory_problem(inv))
                say(rep, false, "gpu: %s: device masks and VRAM are checked against no devices",
                    ps_inventory_problem(inv));
        if (gpus_known)
                empty = empty_inventory(inv);
        for (size_t i = 0; i < config->n_pools; i++) {
                check_binary(rep, config, i);
                check_model(rep, config, i);
                if (empty)
                        check_vram(rep, config, empty, i);
        }
        ps_inventory_free(empty);
}

int pm_check_config(const char *path) {
        report rep = { .path = path };
        ps_config *config = NULL;
        ps_config_replica *list = NULL;
        char **errors = NULL, err[512];
        size_t n_errors = 0, n = 0;
        int r;

        r = ps_config_check_load(path, NULL, NULL, &config, &errors, &n_errors);
        for (size_t i = 0; i < n_errors; i++) {
                fprintf(stderr, "%s\n", errors[i]);
                free(errors[i]);
        }
        free(errors);
        rep.errors = (unsigned) n_errors;
        if (r == -ENOMEM)
                fprintf(stderr, "%s: out of memory\n", path);
        if (r != 0) {
                fprintf(stderr, "%s: %u error%s\n", path, rep.errors ? rep.errors : 1,
                        rep.errors == 1 ? "" : "s");
                return EXIT_USAGE;
        }
        check_start(&rep, config);
        if (ps_config_replicas(config, &list, &n, err, sizeof(err)) != 0)
                say(&rep, true, "%s", err);
        ps_config_replicas_free(list, n);
        check_pools(&rep, config);
        if (rep.errors == 0)
                printf("%s: ok (%zu pools, %zu replicas%s)\n", path, config->n_pools, n,
                       rep.warnings ? ", with warnings" : "");
        else
                fprintf(stderr, "%s: %u error%s\n", path, rep.errors, rep.errors == 1 ? "" : "s");
        ps_config_free(config);
        return rep.errors == 0 ? EXIT_SUCCESS : EXIT_USAGE;
}
