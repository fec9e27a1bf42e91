/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pool-services/base/clock.h"
#include "pool-services/pool/registry.h"
#include "pool-services/supervise/engine.h"

struct event_base;

/*
 * The node's durable state: one SQLite file, <runtime_dir>/state.db (mode
 * 0600, ours alone), in WAL mode with synchronous=NORMAL. What it keeps
 * and what a crash or a power loss can cost: docs/reliability.md.
 *
 * Writes are grouped by loop turn. The first change of a turn opens a
 * transaction and makes a commit event active at the loop's lowest
 * priority: libevent runs it once no more important callback is active,
 * so every change of the turn goes into one COMMIT. A fallback timer
 * bounds the wait when the loop never runs dry. Whoever acknowledges a
 * change (a lease granted, a drain accepted) waits for the commit with
 * ps_store_after_commit().
 *
 * The loop's connection never waits on a lock (no busy_timeout) and never
 * checkpoints (wal_autocheckpoint=0); a worker thread with a connection of
 * its own checkpoints the WAL once it has grown.
 *
 * Wall-clock times (CLOCK_REALTIME, ms since the epoch) throughout.
 */

typedef struct ps_store ps_store;

/* The schema this build writes; PRAGMA user_version of the file. */
#define PS_STORE_SCHEMA_VERSION 1

typedef struct ps_store_options {
        const char *path;             /* the database file                   */
        bool reset_corrupt;           /* move a corrupt file aside, start empty */
        const ps_clock *clock;        /* NULL: the system clock              */
        uint32_t checkpoint_pages;    /* WAL pages that wake the checkpointer;
                                         0: 1000                             */
        int64_t commit_wait_max_ms;   /* the fallback commit timer; 0: 50    */
} ps_store_options;

/*
 * Opens (creating it when missing, mode 0600, O_EXCL|O_NOFOLLOW) and
 * migrates the file forward to PS_STORE_SCHEMA_VERSION. 0, or a negative
 * errno with the path and the reason in err:
 *   -EPERM    not a regular file of ours, or readable by others
 *   -EPROTO   written by a newer pool-managerd (schema N > ours)
 *   -EBADMSG  corrupt (moved aside instead with reset_corrupt)
 *   -EIO      SQLite failed otherwise (its message)
 * *moved_aside (may be NULL) receives the corrupt file's new name, or "".
 */
int ps_store_open(struct event_base *base, const ps_store_options *options, ps_store **ret,
                  char *moved_aside, size_t moved_len, char *err, size_t errlen);

/* Commits what is pending (callbacks run), stops the checkpointer, closes.
 * NULL-safe; returns NULL. */
ps_store *ps_store_free(ps_store *s);

/* After this, changes are dropped: a registry being torn down at exit
 * forgets its leases in memory, not on disk. Pending changes commit now. */
void ps_store_freeze(ps_store *s);

/* ---- records ------------------------------------------------------------- */

typedef struct ps_store_lease {
        char id[33];
        char pool_id[65];
        char replica_id[65];
        int instance;                 /* pd_instance_id                      */
        int64_t granted_ms;           /* when the running TTL began          */
        int64_t expiry_ms;
} ps_store_lease;

typedef struct ps_store_drain {
        char pool_id[65];
        int64_t deadline_ms;
} ps_store_drain;

/* A replica's restart policy state; the breaker and storm details are
 * JSON text the replica reads back (NULL: none). */
typedef struct ps_store_policy {
        char pool_id[65];
        char replica_id[65];
        uint32_t crash_count;
        uint32_t restart_count;
        int64_t backoff_ms;
        const char *breaker;          /* JSON                                */
        const char *storm;            /* JSON                                */
} ps_store_policy;

/*
 * Changes: each joins the turn's transaction (opened on demand). 0, or a
 * negative errno when SQLite refused (the message: ps_store_error()).
 * NULL store: 0, nothing kept.
 */
int ps_store_put_lease(ps_store *s, const ps_store_lease *lease);
int ps_store_del_lease(ps_store *s, const char *lease_id);
int ps_store_put_drain(ps_store *s, const char *pool_id, int64_t deadline_ms);
int ps_store_del_drain(ps_store *s, const char *pool_id);
int ps_store_put_policy(ps_store *s, const ps_store_policy *policy);

/*
 * fn(rc, userdata) runs from the loop after the next commit: rc 0 when it
 * is on disk (as synchronous=NORMAL has it), a negative errno when the
 * commit failed. Never called from inside this call, even with nothing
 * pending; with a NULL store the caller answers at once itself. 0 or
 * -ENOMEM.
 */
typedef void (*ps_store_commit_fn)(int rc, void *userdata);
int ps_store_after_commit(ps_store *s, ps_store_commit_fn fn, void *userdata);

/* Commits now (tests; the daemon's exit). 0 or a negative errno. */
int ps_store_commit(ps_store *s);

/* True while this turn's changes wait for their commit: whatever is said
 * about them now waits for it too (ps_store_after_commit()). */
bool ps_store_pending(const ps_store *s);

/* ---- reading back (at start) ------------------------------------------- */

/* Each stored record, in no promised order; fn's nonzero return stops
 * the walk and is returned. */
int ps_store_each_lease(ps_store *s, int (*fn)(const ps_store_lease *l, void *ud), void *ud);
int ps_store_each_drain(ps_store *s, int (*fn)(const ps_store_drain *d, void *ud), void *ud);
/* The stored policy of one replica: 0, PS_E_NOT_FOUND, or a negative
 * errno. Its strings live until the next call on s. */
int ps_store_get_policy(ps_store *s, const char *pool_id, const char *replica_id,
                        ps_store_policy *ret);

/*
 * A stored drain waiting to be resumed (its pool not up yet): leases on
 * the pool are refused as draining meanwhile. hold: 0 or -ENOMEM; held:
 * whether one waits; release: it was resumed or dropped.
 */
int ps_store_drain_hold(ps_store *s, const char *pool_id);
bool ps_store_drain_held(const ps_store *s, const char *pool_id);
void ps_store_drain_release(ps_store *s, const char *pool_id);

/* ---- engines and reloads (pool/store-engines.c) ------------------------ */

/* One engine instance the daemon owns; role "home" (the replica's
 * primary) or "surge" (the second engine of a surge reload). */
typedef struct ps_store_engine {
        char pool_id[65];
        char replica_id[65];
        char role[8];
        ps_engine_identity id;        /* pid, start time, uid, argv hash     */
        uint16_t port;
        const char *spec;             /* the spec it was started from, JSON  */
} ps_store_engine;

/* A reload in flight: strategy "drain-first" or "surge"; phase where it
 * is ("staging", "replicas"); specs as JSON (previous: NULL when none). */
typedef struct ps_store_reload {
        char pool_id[65];
        const char *target_spec;
        char strategy[16];
        char phase[24];
        const char *previous_spec;
} ps_store_reload;

int ps_store_put_engine(ps_store *s, const ps_store_engine *engine);
int ps_store_del_engine(ps_store *s, const char *pool_id, const char *replica_id, const char *role);
/* That record only when it still names pid. */
int ps_store_del_engine_pid(ps_store *s, const char *pool_id, const char *replica_id, const char *role,
                            pid_t pid);
/* A surge engine promoted: the replica's home and surge records swap. */
int ps_store_swap_engines(ps_store *s, const char *pool_id, const char *replica_id);
int ps_store_put_reload(ps_store *s, const ps_store_reload *reload);
int ps_store_del_reload(ps_store *s, const char *pool_id);
/* Strings of a record live for the call of fn only. */
int ps_store_each_engine(ps_store *s, int (*fn)(const ps_store_engine *e, void *ud), void *ud);
int ps_store_each_reload(ps_store *s, int (*fn)(const ps_store_reload *r, void *ud), void *ud);

/* A reload of the pool in flight, recorded in the registry's store (no
 * store: nothing); strategy NULL: it ended, the record goes. */
void ps_store_note_reload(ps_registry *reg, const char *pool_id, const char *strategy,
                          const char *phase, const ps_engine_spec *target,
                          const ps_engine_spec *previous);

/* A spec as the engines and reloads tables keep it: JSON (free()), NULL
 * on OOM; and back, NULL when it does not parse. */
char *ps_store_spec_json(const ps_engine_spec *spec);
ps_engine_spec *ps_store_spec_parse(const char *json);

/* ---- a replica's restart policy (pool/policy-state.c) ------------------- */

/*
 * Failure and restart counts, backoff, breaker circuits and the storm
 * window of one replica, so that a crash loop stays bounded across daemon
 * restarts. save: into the turn's transaction. restore: onto a replica
 * not started yet; 0, PS_E_NOT_FOUND (nothing kept), -EBADMSG (a record
 * that does not parse; the replica is left as it was).
 */
int ps_store_save_policy(ps_store *s, const ps_replica *r);
int ps_store_restore_policy(ps_store *s, ps_replica *r);
/* The replica named, when the registry has a store and the replica. */
int ps_store_save_replica_policy(ps_registry *reg, const char *pool_id, const char *replica_id);

/* ---- the registry's store ---------------------------------------------- */

/* The pool floor finds the store through the registry. 0 or -ENOMEM. */
int ps_store_attach(ps_store *s, ps_registry *reg);
ps_store *ps_store_of(const ps_registry *reg);

/* ---- status ------------------------------------------------------------ */

/* The last error SQLite gave ("" when none). */
const char *ps_store_error(const ps_store *s);
int ps_store_schema_version(const ps_store *s);
/* {path, schema_version, last_commit_at (epoch ms, null before the first),
 * commits, size_bytes (file + WAL), wal_bytes, last_error}; NULL on OOM. */
json_t *ps_store_status(const ps_store *s);
