/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/base/errors.h"
#include "pool-services/placement/gpu.h"
#include "pool-services/conf/policy.h"
#include "pool-services/conf/spec.h"

/*
 * The node configuration: the JSON file of docs/configuration.md, then the
 * environment over it (docs/configuration.md has every key). The daemon
 * applies its flags last: flags > environment > file > defaults.
 *
 * A loaded configuration is valid as a whole: device masks were checked
 * against the GPU inventory, ports of different pools do not overlap,
 * argument templates expand, split ratios were planned. It is a plain
 * struct; read the fields directly and treat them as read-only, except
 * where a setter exists (flags).
 *
 * Loaders return 0, a negative errno (-ENOMEM, or the errno of reading
 * the file), or PS_E_INVALID with a message that names the place:
 *
 *   pools[1].device_mask: GPU7 is not a known device
 *
 * Success out-parameters are written only on success.
 */

typedef struct ps_inventory ps_inventory;

typedef enum ps_profile {
        PS_PROFILE_HOME,
        PS_PROFILE_CLOUD,
        PS_PROFILE_MAX,
} ps_profile;

typedef enum ps_shutdown_mode {
        PS_SHUTDOWN_STOP,         /* stop engines, then exit               */
        PS_SHUTDOWN_KEEP,         /* exit leaving engines running           */
        PS_SHUTDOWN_MODE_MAX,
} ps_shutdown_mode;

/* "home", "cloud" / "stop", "keep"; NULL when out of range. */
const char *ps_profile_to_string(ps_profile p);
const char *ps_shutdown_mode_to_string(ps_shutdown_mode m);

/* One entry of "pools", resolved. */
typedef struct ps_pool_config {
        char *id;
        char *engine;
        char *engine_version;
        char *binary;             /* absolute, normalised                   */
        char **args;              /* templates, as written                  */
        size_t n_args;
        char *model_path;         /* absolute when given; NULL when not     */
        char *host;
        uint16_t port;            /* replica i: port + i; surge: + replicas */
        unsigned replicas;
        char *device_mask;        /* canonical: "0,1" or "none"             */
        char *cuda_visible_devices; /* "0,1" by index; "" for none         */
        char *split;              /* as written: "auto", "0.75,0.25"; NULL  */
        char *tensor_split;       /* planned ratios "0.6667,0.3333"; NULL   */
        unsigned slots;
        uint64_t vram_required_bytes; /* 0: estimated from the model file  */
        uint64_t ram_required_bytes;  /* host RAM; 0: not checked          */
        char **env;               /* "KEY=VALUE"                            */
        size_t n_env;
        bool shared_devices;      /* may share devices with pools that also say so */
        bool engine_metrics;      /* scrape the engine's own metrics        */
        char *engine_metrics_path; /* "/metrics"                            */
        ps_policy *policy;        /* defaults + the pool's "policy"         */
} ps_pool_config;

typedef struct ps_cloud_config {
        char *node_id;            /* strings are "" when unset, never NULL  */
        char *machine_id;
        char *address;            /* advertised URL of this node            */
        char *orchestrator_url;
        int64_t heartbeat_interval_ms;
        char *token_file;
        char **etcd_endpoints;
        size_t n_etcd_endpoints;
        char *etcd_prefix;
        int64_t etcd_ttl_ms;
        /* environment only */
        char *api_token;          /* LLORCH_API_TOKEN; NULL. Never log it.  */
        bool register_on_startup; /* ORCHESTRATORD_REGISTER_ON_STARTUP      */
} ps_cloud_config;

typedef struct ps_config {
        char *path;               /* the file loaded; NULL without one      */
        char *base_dir;           /* its directory (absolute); NULL         */

        char *bind;               /* "127.0.0.1:9200"                       */
        const char *bind_source;  /* "default", "file", the variable's name, "flag" or a
                                     caller's static string                 */
        char *runtime_dir;
        const char *runtime_dir_source;
        ps_profile profile;
        ps_shutdown_mode shutdown;

        /* api */
        char *api_socket;         /* NULL: the default (ps_config_api_socket());
                                     "": no socket                         */
        char *api_socket_group;   /* NULL: the daemon's primary group       */
        char *api_token_file;     /* NULL: none                             */

        char **engines_allow;     /* absolute paths; "dir/" allows a tree   */
        size_t n_engines_allow;
        char **engines_allow_real; /* the same, each realpath()ed at load;
                                     NULL where the entry does not exist   */
        char *engines_user;       /* NULL: run engines as the daemon        */
        char **engines_env_pass;  /* names copied from the daemon's env     */
        size_t n_engines_env_pass;
        char **engines_env_allow; /* fnmatch(3) patterns for the API's env  */
        size_t n_engines_env_allow;
        bool engines_allow_remote_hosts; /* API preloads may probe non-loopback hosts */
        int64_t engines_log_max_bytes; /* rotate engine logs above it; 0: never */

        char **models_allow;      /* like engines_allow                     */
        size_t n_models_allow;
        char **models_allow_real; /* n_models_allow entries, like engines_allow_real */

        /* handoff */
        char *handoff_dir;        /* NULL: <runtime_dir>/engines            */
        const char *handoff_dir_source;
        unsigned handoff_max_slots; /* a file claiming more is refused (256) */
        bool handoff_allow_remote; /* urls may name hosts that are not ours */

        ps_gpu_config gpu;
        ps_inventory *inventory;  /* built from gpu; owned                  */

        ps_policy *defaults;
        ps_pool_config *pools;
        size_t n_pools;

        ps_cloud_config cloud;

        /* environment only */
        bool advertise_pools_set; /* POOL_MANAGERD_POOLS was given          */
        char **advertise_pools;   /* its ids                                */
        size_t n_advertise_pools;
        int64_t watch_interval_ms; /* handoff directory rescan period       */
        bool watch_interval_set;  /* POOL_MANAGERD_WATCH_INTERVAL_MS was given:
                                     the home profile watches handoffs too  */
} ps_config;

/* How the environment is read: like getenv(3). */
typedef const char *(*ps_getenv_fn)(const char *name, void *userdata);

/* The defaults: an empty node on 127.0.0.1:9200. NULL on OOM. */
ps_config *ps_config_new(void);
ps_config *ps_config_free(ps_config *config);

/*
 * Parses and validates a configuration document. Relative paths in it
 * (binary, model_path, runtime_dir, cloud.token_file) resolve against
 * base_dir; with base_dir NULL they are errors.
 */
int ps_config_load_json(const json_t *doc, const char *base_dir, ps_config **ret,
                        char *err, size_t errlen);
/* The same from text (JSON_REJECT_DUPLICATES). */
int ps_config_load_string(const char *text, const char *base_dir, ps_config **ret,
                          char *err, size_t errlen);
/* The same from a file; base_dir is the file's directory. Messages start
 * with the file's name: "demo.json: pools[0].port: ...". */
int ps_config_load_file(const char *path, ps_config **ret, char *err, size_t errlen);

/*
 * Applies the environment (docs/configuration.md lists the variables).
 * getenv_fn NULL: the process environment. An empty value counts as
 * unset. On error the configuration is left unchanged; the message names
 * the variable and never shows LLORCH_API_TOKEN's value.
 */
int ps_config_apply_env(ps_config *config, ps_getenv_fn getenv_fn, void *userdata,
                        char *err, size_t errlen);

/*
 * For --check-config: loads like ps_config_load() but goes on past a
 * problem, so *errors (n_errors messages, "path: pools[1].port: ...",
 * each and the array malloc'd, the caller frees them) holds every one
 * found. 0 with *ret when there is none; PS_E_INVALID
 * (no *ret) when there is; -ENOMEM.
 */
int ps_config_check_load(const char *path, ps_getenv_fn getenv_fn, void *userdata,
                         ps_config **ret, char ***errors, size_t *n_errors);

/* The file (path NULL: none, the defaults), then the environment. */
int ps_config_load(const char *path, ps_getenv_fn getenv_fn, void *userdata,
                   ps_config **ret, char *err, size_t errlen);

/*
 * For the cloud profile, after flags: checks that the node address and the
 * control-plane URL are set (PS_E_INVALID naming whichever is missing),
 * defaults the node id to the host name (hostname NULL: gethostname()) and
 * the machine id to the node id, and reads cloud.token_file into
 * cloud.api_token unless LLORCH_API_TOKEN set it. The home profile: 0,
 * nothing changes.
 */
int ps_config_resolve_cloud(ps_config *config, const char *hostname, char *err, size_t errlen);

/*
 * The file again, for a running daemon (SIGHUP): like ps_config_load(),
 * but with the auto or cuda backend the GPUs are those of known (the
 * running inventory, which the daemon keeps sampling) instead of a new
 * probe, so the event loop never waits on the driver. A fake or none
 * backend is read from the file as usual.
 */
int ps_config_reload(const char *path, const ps_inventory *known, ps_getenv_fn getenv_fn,
                     void *userdata, ps_config **ret, char *err, size_t errlen);

/* For flags. Each validates like the file does; source is a static string
 * kept in *_source ("flag"). On error nothing changes. */
int ps_config_set_bind(ps_config *config, const char *bind, const char *source,
                       char *err, size_t errlen);
int ps_config_set_runtime_dir(ps_config *config, const char *dir, const char *source,
                              char *err, size_t errlen);

/* The pool with that id; NULL when none. */
const ps_pool_config *ps_config_find_pool(const ps_config *config, const char *id);

/*
 * Whether an engine binary may be started (the API's preload uses it):
 * an absolute path without "." or ".." components, listed in
 * engines.allow (an entry ending in "/" allows the files below it); with
 * an empty allowlist, only the binaries of configured pools. Checked like
 * ps_config_model_allowed(): lexically first, then on realpaths.
 * 0 with *resolved (may be NULL) the realpath, malloc'd; PS_E_FORBIDDEN
 * outside the list; PS_E_INVALID for a malformed path; PS_E_NOT_FOUND
 * for one inside that does not exist.
 */
int ps_config_binary_allowed(const ps_config *config, const char *path, char **resolved,
                             char *err, size_t errlen);

/*
 * The PreparedEngine of one replica: the pool's argument templates
 * expanded for it, port + replica (surge: port + replicas + replica),
 * replica_id "r<replica>", CUDA_VISIBLE_DEVICES from the mask, model_id
 * from model_path, health_path from the pool's policy.
 * PS_E_INVALID for a replica out of range.
 */
int ps_config_replica_spec(const ps_config *config, size_t pool_index, unsigned replica,
                           bool surge, ps_engine_spec **ret, char *err, size_t errlen);

/* One replica to register: ps_registry_add(reg, r.spec, r.policy, ...). */
typedef struct ps_config_replica {
        ps_engine_spec *spec;     /* owned by the list                      */
        const ps_policy *policy;  /* borrowed from the configuration        */
} ps_config_replica;

/* Every replica of every pool, pools in file order, replicas r0, r1, ... */
int ps_config_replicas(const ps_config *config, ps_config_replica **ret, size_t *n,
                       char *err, size_t errlen);
ps_config_replica *ps_config_replicas_free(ps_config_replica *list, size_t n);

/* ---- trust (docs/security.md) ---- */

/*
 * The API's Unix-domain socket path: api.socket when set ("" disables:
 * returns NULL), else $RUNTIME_DIRECTORY/api.sock under systemd (getenv_fn
 * NULL: the process environment), else <runtime_dir>/api.sock. Fills buf;
 * PS_E_INVALID when the path does not fit a sockaddr_un (107 bytes).
 */
int ps_config_api_socket(const ps_config *config, ps_getenv_fn getenv_fn, void *userdata,
                         char *buf, size_t len, char *err, size_t errlen);

/* The handoff directory: handoff.dir, else <runtime_dir>/engines. */
int ps_config_handoff_dir(const ps_config *config, char *buf, size_t len);

/*
 * At start: the runtime directory and the handoff directory
 * (ps_config_handoff_dir()) are made when missing and must be ours alone,
 * as ps_private_dir() checks. 0, or a negative errno with "runtime
 * directory ..." or "handoff directory ..." and the fix in err.
 */
int ps_runtime_dirs_check(const ps_config *config, char *err, size_t errlen);

/*
 * The API bearer token: LLORCH_API_TOKEN (already in cloud.api_token) >
 * api.token_file > cloud.token_file. Reads the file into cloud.api_token
 * when the variable did not set it. PS_E_INVALID naming the file on error.
 */
int ps_config_resolve_token(ps_config *config, char *err, size_t errlen);

/*
 * Whether an API caller may set this engine environment variable: it must
 * match one of engines.env_allow (fnmatch, case-sensitive) and not be one
 * of the names refused whatever the patterns say (LD_*, glibc's unsafe
 * set, PYTHON*, PATH, CUDA_VISIBLE_DEVICES, ...). 0 or PS_E_INVALID
 * naming the variable.
 */
int ps_config_api_env_allowed(const ps_config *config, const char *name,
                              char *err, size_t errlen);

/* Names nobody may set, the config file's pool env included:
 * CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER (the daemon sets them). */
bool ps_env_name_reserved(const char *name);

/*
 * Whether an API preload may use this model file / working directory.
 * Checked lexically against models.allow first (with an empty list: the
 * directories of configured pools' models), so a path outside is refused
 * before any system call touches it; then its realpath must lie inside the
 * realpath of an entry (a symlink pointing out is refused). On success
 * *resolved (may be NULL) is the realpath, malloc'd. PS_E_FORBIDDEN for a
 * path outside, PS_E_INVALID for a malformed one, PS_E_NOT_FOUND when an
 * allowed path does not exist (or a component is not a directory).
 */
int ps_config_model_allowed(const ps_config *config, const char *path, char **resolved,
                            char *err, size_t errlen);
int ps_config_workdir_allowed(const ps_config *config, const char *path, char **resolved,
                              char *err, size_t errlen);

/*
 * A host for an engine: an IP literal ("localhost" becomes "127.0.0.1")
 * that is an address of this node; loopback only unless allow_remote.
 * Writes the canonical literal into out. PS_E_INVALID with the reason.
 */
int ps_host_check(const char *host, bool allow_remote, char *out, size_t outlen,
                  char *err, size_t errlen);
