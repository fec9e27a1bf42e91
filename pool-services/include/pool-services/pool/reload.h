/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/pool/registry.h"
#include "pool-services/conf/spec.h"

/*
 * Reloading a pool onto another model (or engine version, or flags)
 * without losing a request, one replica after another:
 *
 *   stage    the model file is a readable regular file and, when a digest
 *            is given, hashes to it (on a worker thread) -- before anything
 *            running is touched;
 *   drain-first (default): the replica drains (no new leases; waits for
 *            its leases up to drain_deadline_ms), its engine stops, the new
 *            one starts and must pass its health check; then the replica is
 *            ready with the new model, engine_version and handoff file;
 *   surge:   the new engine starts beside the old one on a spare port
 *            (port + replicas for replica i's port + i; back to the home
 *            port on the next surge) with the same device mask; once it is
 *            healthy it takes readiness and new leases, and the old engine
 *            drains its leases and stops. The pool never stops being ready.
 *
 * Atomic: a new engine that fails its health check is killed and the old
 * engine restarted (drain-first) or simply left serving (surge); a drain
 * that times out aborts before anything is stopped. Replicas already
 * reloaded are brought back to their previous spec, so a failed reload
 * leaves the whole pool on the old model. pool_id, replica ids and
 * device_mask never change. Reloading to what already runs is a no-op.
 */

typedef enum ps_reload_strategy {
        PS_RELOAD_DRAIN_FIRST,
        PS_RELOAD_SURGE,
        PS_RELOAD_STRATEGY_MAX,
} ps_reload_strategy;

/* "drain-first", "surge"; NULL out of range. */
const char *ps_reload_strategy_to_string(ps_reload_strategy s);
/* 0, or PS_E_INVALID for another name. */
int ps_reload_strategy_from_string(const char *name, ps_reload_strategy *ret);

#define PS_RELOAD_DRAIN_DEADLINE_DEFAULT_MS 60000

typedef struct ps_reload_request {
        const char *model_path;        /* absolute file; or ...           */
        const char *model_ref;         /* ... a reference the engine
                                          resolves itself (no file staged) */
        const char *engine_version;    /* NULL: unchanged                 */
        const char *const *flags;      /* NULL: the current flags, with the
                                          model path (and for surge the
                                          port) replaced. Given: used as
                                          the argv, with {model_path},
                                          {model_id}, {port}, {host} and
                                          {slots} expanded per replica     */
        size_t n_flags;
        int64_t drain_deadline_ms;     /* < 0: 60000                      */
        ps_reload_strategy strategy;
        const char *sha256;            /* NULL, or 64 hex digits (an
                                          optional "sha256:" prefix)        */
} ps_reload_request;

/*
 * Called once, on the loop, never from inside the call that started the
 * reload. rc: 0 (reloaded, or nothing to do), or
 *   PS_E_STAGE_FAILED   the model is missing/unreadable or its sha256
 *                       differs; nothing was touched
 *   PS_E_DRAIN_TIMEOUT  leases were still held at the drain deadline; the
 *                       engine kept running untouched ("drain timeout")
 *   PS_E_RELOAD_FAILED  the new engine failed (message names the cause);
 *                       the pool is back on the old engine
 *   PS_E_NOT_READY      a replica stopped being ready before its turn
 *   PS_E_CONFLICT       the pool was stopped meanwhile
 * message is one line; result is
 *   {pool_id, ok, noop, strategy, model_id, engine_version,
 *    previous: {model_id, engine_version}, duration_ms,
 *    replicas: [{replica_id, ok, message}], error, reason}
 * with reason one of staging, checksum, drain_timeout, health,
 * rollback_failed, engine_failed, not_ready, stopped (null on success).
 * Both are borrowed for the call. A reload still running when the
 * registry is freed is answered PS_E_CONFLICT with result NULL.
 */
typedef void (*ps_reload_done_fn)(int rc, const char *message, const json_t *result,
                                  void *userdata);

/*
 * Starts a reload. Returns at once:
 *   0                 started; done will be called
 *   PS_E_NOT_FOUND    unknown pool
 *   PS_E_INVALID      bad request (message names the field)
 *   PS_E_DRAINING     the pool is draining ("pool x is draining")
 *   PS_E_CONFLICT     a reload already runs, or the pool has replicas
 *                     registered from external handoffs
 *   PS_E_NOT_READY    a replica is not ready ("pool x is not ready: ...")
 */
int ps_pool_reload(ps_registry *reg, const char *pool_id, const ps_reload_request *req,
                   ps_reload_done_fn done, void *userdata, char *err, size_t errlen);

/*
 * The same with complete PreparedEngines, one per replica in the pool's
 * order (what a changed configuration resolves to): pool_id, replica_id
 * and device_mask must match the running ones (PS_E_INVALID otherwise).
 * The model file, when set, is staged (checked readable).
 */
int ps_pool_reload_specs(ps_registry *reg, const char *pool_id,
                         const ps_engine_spec *const *specs, size_t n,
                         ps_reload_strategy strategy, int64_t drain_deadline_ms,
                         ps_reload_done_fn done, void *userdata, char *err, size_t errlen);

/* Whether a reload is running on the pool. */
bool ps_pool_reloading(ps_registry *reg, const char *pool_id);
