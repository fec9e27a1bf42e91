/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "pool-services/registry.h"

/*
 * The handoff watcher: handoff files an external provisioner writes into
 * <runtime_dir>/engines/ register ready replicas (trusted as written, with
 * the registry's seed semantics: ps_registry_register_ready_from_handoff),
 * and removing such a file makes its replica unready.
 *
 * inotify (IN_CLOSE_WRITE, IN_MOVED_TO, IN_DELETE, IN_MOVED_FROM) tells it
 * about changes as they happen; a rescan every rescan_ms catches anything
 * missed (a queue overflow, a directory replaced). Files starting with '.'
 * (temp files), files not ending in ".json", and files this daemon writes
 * itself ("managed_by": "pool-managerd") are not processed. A malformed or
 * partial file is reported through the context's sink ("handoff ignored",
 * level warn, with file and error) once per version of the file, and
 * otherwise ignored.
 *
 * Ids come from the file's content, never from its name.
 */
typedef struct ps_handoff_watch ps_handoff_watch;

/*
 * Creates <ctx->runtime_dir>/engines/ when missing, scans it once (files
 * already there are registered before this returns) and starts watching.
 * ctx and reg are borrowed and must outlive the watcher. 0, a negative
 * errno with the step and path in err.
 */
int ps_handoff_watch_new(const ps_context *ctx, ps_registry *reg, int64_t rescan_ms,
                         ps_handoff_watch **ret, char *err, size_t errlen);
/* Stops watching. The replicas it registered stay in the registry. */
ps_handoff_watch *ps_handoff_watch_free(ps_handoff_watch *w);

/* Looks at every file now, as the periodic rescan does. */
void ps_handoff_watch_rescan(ps_handoff_watch *w);

/* Files whose replica is registered now (for tests and status). */
size_t ps_handoff_watch_tracked(const ps_handoff_watch *w);
