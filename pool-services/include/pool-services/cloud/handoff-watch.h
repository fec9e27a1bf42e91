/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-services/conf/config.h"
#include "pool-services/pool/registry.h"

/*
 * The handoff watcher: handoff files an external provisioner writes into
 * the handoff directory (handoff.dir, by default <runtime_dir>/engines/)
 * register ready replicas (with the registry's seed semantics:
 * ps_registry_register_ready_from_handoff), and removing such a file makes
 * its replica unready.
 *
 * A handoff from others is a claim, not a command. The directory must be
 * ours alone (ps_private_dir_open()); each file is opened without
 * following a link and must be a regular file owned by root or the
 * daemon's user, writable by nobody else. It may only register replicas of
 * pools this daemon does not supervise itself (no managed replica in the
 * registry, configured or preloaded through the API); its "url", when
 * given, must be exactly http[s]://host[:port][/] with a host that is
 * loopback ("localhost", 127.0.0.0/8, ::1), an address of this node, or
 * the host of the node's advertised address -- any host with allow_remote;
 * its slots_total and slots_free may not exceed max_slots (nor slots_free
 * slots_total). A file that breaks a rule is refused whole, never clamped,
 * and a replica it registered before is unregistered.
 *
 * inotify (IN_CLOSE_WRITE, IN_MOVED_TO, IN_DELETE, IN_MOVED_FROM,
 * IN_ATTRIB) tells it about changes as they happen; a rescan every
 * rescan_ms catches anything missed (a queue overflow, a directory
 * replaced). Files starting with '.' (temp files), files not ending in
 * ".json", and files this daemon writes itself ("managed_by":
 * "pool-managerd") are not processed. A refused or malformed file is
 * reported through the context's sink (PS_HANDOFF_IGNORED, level warn,
 * with fields file, reason and error) once per version of the file
 * (identity, size, mtime, ctime: a chmod is a new version), and otherwise
 * ignored.
 *
 * Ids come from the file's content, never from its name.
 */
typedef struct ps_handoff_watch ps_handoff_watch;

/* The message of the event that reports a refused file. */
#define PS_HANDOFF_IGNORED "handoff ignored"

/* handoff.max_slots when not configured. */
#define PS_HANDOFF_MAX_SLOTS_DEFAULT 256u

/* Why a file was refused: the event's "reason" field and the label of
 * pool_managerd_handoff_refusals_total. */
typedef enum ps_handoff_refusal {
        PS_HANDOFF_REFUSED_INVALID,      /* malformed, unreadable, not a regular
                                            file, too big, a bad field     */
        PS_HANDOFF_REFUSED_SYMLINK,      /* a symbolic link                */
        PS_HANDOFF_REFUSED_OWNER,        /* owned by neither root nor us   */
        PS_HANDOFF_REFUSED_MODE,         /* writable by group or others    */
        PS_HANDOFF_REFUSED_MANAGED_POOL, /* a pool this daemon supervises  */
        PS_HANDOFF_REFUSED_URL,          /* not http[s]://local-host[:port] */
        PS_HANDOFF_REFUSED_SLOTS,        /* more slots than max_slots      */
        PS_HANDOFF_REFUSAL_MAX,
} ps_handoff_refusal;

/* "invalid", "symlink", "owner", "mode", "managed_pool", "url", "slots";
 * NULL out of range. */
const char *ps_handoff_refusal_to_string(ps_handoff_refusal reason);

typedef struct ps_handoff_watch_options {
        const char *dir;          /* NULL: ps_handoff_dir(ctx)              */
        int64_t rescan_ms;        /* > 0                                    */
        unsigned max_slots;       /* 0: PS_HANDOFF_MAX_SLOTS_DEFAULT        */
        bool allow_remote;        /* urls may name any host                 */
        const char *address;      /* the node's advertised URL (cloud.address):
                                     its host counts as this node; NULL    */
} ps_handoff_watch_options;

/*
 * Creates the directory when missing (mode 0700), checks that it is ours
 * alone, scans it once (files already there are registered before this
 * returns) and starts watching. ctx, reg and the strings of o are
 * borrowed (copied where kept) and ctx and reg must outlive the watcher.
 * 0, a negative errno with the step, the path and the fix in err.
 */
int ps_handoff_watch_start(const ps_context *ctx, ps_registry *reg,
                           const ps_handoff_watch_options *o, ps_handoff_watch **ret,
                           char *err, size_t errlen);

/* The same with the configuration's handoff.dir (ps_config_handoff_dir()),
 * handoff.max_slots, handoff.allow_remote, cloud.address and the watch
 * interval. */
int ps_handoff_watch_new_config(const ps_context *ctx, ps_registry *reg,
                                const ps_config *config, ps_handoff_watch **ret,
                                char *err, size_t errlen);

/* The same with the defaults: ps_handoff_dir(ctx), at most
 * PS_HANDOFF_MAX_SLOTS_DEFAULT slots, local hosts only. */
int ps_handoff_watch_new(const ps_context *ctx, ps_registry *reg, int64_t rescan_ms,
                         ps_handoff_watch **ret, char *err, size_t errlen);
/* Stops watching. The replicas it registered stay in the registry. */
ps_handoff_watch *ps_handoff_watch_free(ps_handoff_watch *w);

/* Looks at every file now, as the periodic rescan does. */
void ps_handoff_watch_rescan(ps_handoff_watch *w);

/* Files whose replica is registered now (for tests and status). */
size_t ps_handoff_watch_tracked(const ps_handoff_watch *w);
