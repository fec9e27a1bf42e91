/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-services/base/clock.h"
#include "pool-services/base/errors.h"
#include "pool-services/base/event.h"
#include "pool-services/conf/policy.h"
#include "pool-services/conf/spec.h"
#include "pool-services/supervise/engine.h"
#include "pool-services/supervise/status.h"

struct event_base;
typedef struct ps_prober ps_prober;

/*
 * One replica: a supervised engine (or a tracked external one registered
 * from a handoff file). The registry (pool-services/pool/registry.h) creates
 * and owns replicas; these calls act on one of them.
 *
 * Everything runs on the caller's event loop. Calls return 0, a negative
 * errno, or a positive PS_E_* outcome with a message in err.
 */

/* Asked just before an engine is spawned: 0 lets it start; a positive
 * PS_E_* refuses the start with the message in err (it then fails like a
 * spawn failure: last_error, unready, retry with backoff). */
typedef int (*ps_preflight_fn)(const ps_engine_spec *spec, void *userdata,
                               char *err, size_t errlen);

/* What the services share; borrowed, must outlive the registry. */
struct ps_replica;
struct ps_engine;

typedef enum ps_engine_change {
        PS_ENGINE_STARTING,           /* about to spawn (no engine yet)      */
        PS_ENGINE_UP,
        PS_ENGINE_GONE,
        PS_ENGINE_SWAPPED,
} ps_engine_change;

typedef struct ps_context {
        struct event_base *base;
        const ps_clock *clock;         /* NULL: the system clock           */
        ps_event_sink sink;            /* where supervision reports        */
        ps_prober *prober;             /* health probes                    */
        const char *runtime_dir;       /* PID and log files                */
        const char *handoff_dir;       /* our handoff files; NULL: <runtime_dir>/engines */
        const char *engine_user;       /* run engines as (daemon is root)  */
        char *const *engine_env_pass;  /* engines.env_pass: copied from our env */
        size_t n_engine_env_pass;
        int64_t engine_log_max_bytes;  /* engines.log_max_bytes; 0: no cap */
        uint64_t seed;                 /* RNG seed for backoff jitter      */
        ps_preflight_fn preflight;     /* NULL: no checks before a spawn   */
        void *preflight_userdata;      /* e.g. a ps_preflight_source       */
        /* The runtime directory was gone (deleted while we ran) and was
         * made again before a spawn: what lived there (the API socket)
         * can be set up again. NULL: nothing to do. */
        void (*runtime_dir_recreated)(void *userdata);
        void *runtime_dir_userdata;
        /* The engines the daemon owns, for its state store (NULL: nothing
         * recorded, adoption by PID file): engine_changed is told just before an
         * instance's engine is spawned (spec set), when it comes up (spawned or adopted, engine and the
         * spec it runs set), when it is gone, and when a surge engine
         * becomes the primary (the two instances swap). engine_recorded,
         * asked at a replica's first start, gives the engine recorded for
         * its primary to take over (0), or nothing (nonzero). */
        void (*engine_changed)(struct ps_replica *r, ps_engine_change what, unsigned instance,
                               const struct ps_engine *engine, const ps_engine_spec *spec,
                               void *userdata);
        int (*engine_recorded)(struct ps_replica *r, ps_engine_identity *ret, void *userdata);
        void *engine_userdata;
} ps_context;

typedef struct ps_replica ps_replica;

/*
 * Called once when a preload, drain or reload finishes (and when a stop
 * that takes one is over). rc is 0, a negative errno, or a PS_E_* that
 * says why it failed; message says what happened, for people, without
 * naming the request ("ready", "exited with code 1: ...", "stopped").
 * Decide on rc, never on message: its words may change.
 *
 * A preload fails with the code its preflight refused with (PS_E_PREFLIGHT,
 * PS_E_GPU_ONLY; a negative one counts as PS_E_PREFLIGHT), PS_E_HEALTH_CHECK
 * or PS_E_START_FAILED. A replica's reload fails with PS_E_STAGE_FAILED,
 * PS_E_DRAIN_TIMEOUT, PS_E_RELOAD_FAILED (rolled back), PS_E_ROLLBACK_FAILED,
 * PS_E_ENGINE_FAILED, or PS_E_CONFLICT when a stop came first; a drain
 * with PS_E_CONFLICT. The replica may be freed by the callback.
 */
typedef void (*ps_done_fn)(int rc, const char *message, void *userdata);

/* Starts the engine; done runs when it is ready or has failed (then a
 * retry is already scheduled by the restart policy). PS_E_CONFLICT when it
 * already runs, PS_E_BREAKER_OPEN. */
int ps_replica_preload(ps_replica *r, ps_done_fn done, void *userdata,
                       char *err, size_t errlen);
/* The same, first replacing what the replica runs with spec (copied) --
 * only when the start is accepted: a refusal leaves the old spec. spec
 * NULL: ps_replica_preload(). */
int ps_replica_preload_spec(ps_replica *r, const ps_engine_spec *spec, ps_done_fn done,
                            void *userdata, char *err, size_t errlen);
/* Replaces what a replica at rest (no engine, not restarting) will run
 * next; its counters and breaker stay. PS_E_CONFLICT otherwise. */
int ps_replica_set_spec(ps_replica *r, const ps_engine_spec *spec,
                        char *err, size_t errlen);
/* The X-Correlation-Id of the request now acting on the replica (copied;
 * NULL clears): its log lines carry it until the replica next settles
 * (ready, failed or stopped). 0 or -ENOMEM. */
int ps_replica_set_correlation_id(ps_replica *r, const char *id);
/* Stops the engine gracefully. PS_E_NOT_RUNNING when there is none. */
int ps_replica_stop(ps_replica *r, char *err, size_t errlen);
/* One restart now, even with the breaker open (the breaker and the storm
 * window are kept). PS_E_CONFLICT while draining, reloading, stopping.
 * An accepted one is reported first as a generic event with the message
 * PS_REPLICA_RESTART_REQUESTED (metrics count it apart from restarts after
 * a failure). */
int ps_replica_restart(ps_replica *r, char *err, size_t errlen);
#define PS_REPLICA_RESTART_REQUESTED "restart requested"
/* Closes the breaker and zeroes its count; a failed replica restarts. */
int ps_replica_breaker_reset(ps_replica *r);
/* The GPU under the replica failed (the CUDA probe broke, the device is
 * gone): the engine is stopped as a driver_error failure and restarted
 * with backoff; a drain in progress is cut short. Counted in the
 * snapshot's driver_resets. why is kept in last_error. */
int ps_replica_driver_reset(ps_replica *r, const char *why);
/* The mask the replica runs on ("0,1", "none"); NULL when unknown. */
const char *ps_replica_device_mask(const ps_replica *r);

const char *ps_replica_pool_id(const ps_replica *r);
const char *ps_replica_id(const ps_replica *r);
/*
 * The log file its engine writes (the API's logs route reads it): the
 * running (or last exited) primary engine's, else
 * <runtime_dir>/engine-<pool>_<replica>.log. 0, or -ENAMETOOLONG.
 */
int ps_replica_log_path(const ps_replica *r, char *buf, size_t len);
const char *ps_replica_state(const ps_replica *r);
bool ps_replica_live(const ps_replica *r);
bool ps_replica_ready(const ps_replica *r);
bool ps_replica_draining(const ps_replica *r);
bool ps_replica_external(const ps_replica *r);
/* The primary engine's pid, 0 when none runs. */
int ps_replica_pid(const ps_replica *r);
/* The engine's base URL ("http://127.0.0.1:8081", no trailing slash) as
 * snprintf(3) writes it: the length it needed. */
int ps_replica_url(const ps_replica *r, char *buf, size_t len);
unsigned ps_replica_crash_count(const ps_replica *r);
unsigned ps_replica_restart_count(const ps_replica *r);
/* Fills out with what the replica is doing now (its strings are borrowed,
 * see pool-services/supervise/status.h). */
void ps_replica_status_get(const ps_replica *r, ps_replica_status *out);

/* Tells ctx->engine_changed (when set) about an instance's engine: what
 * replica.c calls on a spawn, an adoption, an exit and a promotion. */
void ps_replica_note_engine(ps_replica *r, ps_engine_change what, unsigned instance,
                            const struct ps_engine *engine, const ps_engine_spec *spec);
