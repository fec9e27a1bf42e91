/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/errors.h"
#include "pool-services/policy.h"
#include "pool-services/spec.h"

/*
 * The node configuration: the JSON file of DESIGN.md section 6, then the
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

typedef enum ps_gpu_backend {
        PS_GPU_BACKEND_AUTO,      /* CUDA when found, else no devices      */
        PS_GPU_BACKEND_CUDA,
        PS_GPU_BACKEND_FAKE,      /* devices described in the config       */
        PS_GPU_BACKEND_NONE,
        PS_GPU_BACKEND_MAX,
} ps_gpu_backend;

/* "home", "cloud" / "stop", "keep" / "auto", "cuda", "fake", "none";
 * NULL when out of range. */
const char *ps_profile_to_string(ps_profile p);
const char *ps_shutdown_mode_to_string(ps_shutdown_mode m);
const char *ps_gpu_backend_to_string(ps_gpu_backend b);

#define PS_GPU_UUID_MAX 64
#define PS_GPU_NAME_MAX 96
#define PS_GPU_PCI_BUS_ID_MAX 32

/* One GPU: an entry of gpu.devices (fake backend) or a discovered one. */
typedef struct ps_gpu_device {
        int index;                               /* CUDA ordinal            */
        char uuid[PS_GPU_UUID_MAX];              /* "GPU-..."               */
        char name[PS_GPU_NAME_MAX];
        char pci_bus_id[PS_GPU_PCI_BUS_ID_MAX];  /* "" when unknown         */
        int cc_major, cc_minor;                  /* compute capability      */
        uint64_t vram_total_bytes;
        uint64_t vram_free_bytes;
} ps_gpu_device;

typedef struct ps_gpu_config {
        ps_gpu_backend backend;
        bool require;             /* false: pools may use device_mask "none" */
        uint64_t headroom_bytes;  /* kept free on every device              */
        int64_t probe_timeout_ms; /* a CUDA probe that takes longer is killed */
        int64_t sample_interval_ms; /* free VRAM re-sampled (auto, cuda); 0: never */
        bool uuid_visible_devices; /* CUDA_VISIBLE_DEVICES by UUID (needs one per device) */
        ps_gpu_device *devices;   /* fake backend only                      */
        size_t n_devices;
} ps_gpu_config;

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

        char **engines_allow;     /* absolute paths; "dir/" allows a tree   */
        size_t n_engines_allow;
        char *engines_user;       /* NULL: run engines as the daemon        */

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
 * engines.allow (an entry ending in "/" allows the files below it). With
 * an empty allowlist, only the binaries of configured pools are allowed.
 * 0 or PS_E_INVALID with the reason.
 */
int ps_config_binary_allowed(const ps_config *config, const char *path,
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
