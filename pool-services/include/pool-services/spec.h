/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A PreparedEngine: everything needed to start one engine process, fully
 * resolved (argument templates expanded, device mask validated). The
 * replica record keeps the spec it was started from, so a restart or a
 * reload rollback starts exactly the same thing again.
 */
typedef struct ps_engine_spec {
        char *binary_path;        /* absolute path                         */
        char **flags;             /* argv[1..n_flags], exact               */
        size_t n_flags;
        char *host;               /* "127.0.0.1"                           */
        uint16_t port;
        char *model_path;         /* may be NULL                           */
        char *model_id;           /* may be NULL: basename of model_path   */
        char *model_digest;       /* "sha256:..." or NULL                  */
        char *engine;             /* "llamacpp", "vllm", ...               */
        char *engine_version;
        char *pool_id;
        char *replica_id;
        char *device_mask;        /* canonical text: "0,1" or "none"      */
        char *cuda_visible_devices; /* value to export; NULL: leave unset */
        uint32_t slots;
        char **env;               /* "KEY=VALUE", added to the engine's env */
        size_t n_env;
        char *workdir;            /* NULL: the daemon's runtime_dir         */
        char *health_path;        /* "/health"                             */
} ps_engine_spec;

ps_engine_spec *ps_engine_spec_new(void);
/* Deep copy; NULL on OOM. */
ps_engine_spec *ps_engine_spec_copy(const ps_engine_spec *spec);
ps_engine_spec *ps_engine_spec_free(ps_engine_spec *spec);

/* "http://127.0.0.1:8081" into buf; returns what snprintf returns. */
int ps_engine_spec_url(const ps_engine_spec *spec, char *buf, size_t len);
