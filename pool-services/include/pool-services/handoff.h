/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool-services/spec.h"

/*
 * Handoff files: <runtime_dir>/engines/<pool>_<replica>.json, written only
 * once the engine is healthy, pretty-printed and atomically (temp file in
 * the same directory, fsync, rename, fsync of the directory), so a reader
 * sees the old file or the new one, never half of one. Files this daemon
 * writes carry "managed_by": "pool-managerd"; temp files start with '.'.
 *
 * The directory is ours alone (ps_private_dir_open(): owned by the
 * daemon's user, writable by nobody else, not a link). The temp file is
 * created afresh (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0644 before the
 * umask) relative to the checked directory, and renamed over the final
 * name: a symbolic link planted there is replaced, never followed.
 */

#define PS_HANDOFF_DIR "engines"
#define PS_HANDOFF_MANAGED_BY "pool-managerd"

typedef struct ps_handoff {
        const ps_engine_spec *spec;
        pid_t pid;
        uint32_t slots_free;
} ps_handoff;

/* The path of a replica's handoff file into buf; what snprintf returns. */
int ps_handoff_path(const char *runtime_dir, const char *pool_id,
                    const char *replica_id, char *buf, size_t len);

/* 0, or a negative errno with the failing step and path in err. The
 * runtime directory must exist; the handoff directory is created (mode
 * 0700) when missing. Either one not ours alone is refused (-EPERM,
 * -ELOOP, -ENOTDIR) with the fix in err. */
int ps_handoff_write(const char *runtime_dir, const ps_handoff *handoff,
                     char *err, size_t errlen);

/* 0 when removed or already absent; a negative errno otherwise. */
int ps_handoff_remove(const char *runtime_dir, const char *pool_id,
                      const char *replica_id);
