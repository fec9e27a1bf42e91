/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A PreparedEngine: everything needed to start one engine process (device
 * mask validated). The replica record keeps the spec it was started from,
 * so a restart or a reload rollback starts exactly the same thing again.
 *
 * flags are argument templates, rendered into the argv at each start
 * (ps_engine_spec_argv()): {model_path}, {port}, {slots}, {host},
 * {tensor_split}, {replica_id}, {pool_id} and {model_id} are the fields
 * below, "{{" and "}}" literal braces. A reload or a surge changes fields,
 * never strings: an argument that only happens to equal the port stays.
 * {model_path} is model_id where model_path is NULL (a model reference the
 * engine resolves itself).
 */
typedef struct ps_engine_spec {
        char *binary_path;        /* absolute path                         */
        char **flags;             /* argv[1..n_flags], as templates        */
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
        char *tensor_split;       /* {tensor_split}: "0.75,0.25"; NULL: none */
} ps_engine_spec;

ps_engine_spec *ps_engine_spec_new(void);
/* Deep copy; NULL on OOM. */
ps_engine_spec *ps_engine_spec_copy(const ps_engine_spec *spec);
ps_engine_spec *ps_engine_spec_free(ps_engine_spec *spec);

/* "http://127.0.0.1:8081" into buf; returns what snprintf returns. */
int ps_engine_spec_url(const ps_engine_spec *spec, char *buf, size_t len);

/*
 * The argv an engine gets: the binary, the rendered flags, NULL. One
 * allocation: free(*ret) frees it all. Returns 0, -ENOMEM, or
 * PS_E_INVALID with err naming the flag ("flags[1]: unknown placeholder
 * {x} (known: ...)").
 */
int ps_engine_spec_argv(const ps_engine_spec *spec, char ***ret, char *err, size_t errlen);

/*
 * Sets flags from a literal argv (an API PreparedEngine's): it renders
 * back to exactly argv. Only the value after "--port" equal to port,
 * "-m"/"--model" equal to model_path, "--host" equal to host and
 * "--parallel"/"-np" equal to slots (or "--flag=value") become variables,
 * so set those fields first. argv may be spec->flags. 0 or -ENOMEM.
 */
int ps_engine_spec_set_argv(ps_engine_spec *spec, const char *const *argv, size_t n);

/* Whether a flag takes {port}: without it an engine cannot be moved to
 * another port (a surge). */
bool ps_engine_spec_takes_port(const ps_engine_spec *spec);
