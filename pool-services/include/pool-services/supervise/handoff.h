/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool-services/conf/spec.h"

/*
 * Handoff files: <handoff_dir>/<pool>_<replica>.json, written only once the
 * engine is healthy, pretty-printed and atomically (temp file in the same
 * directory, fsync, rename, fsync of the directory), so a reader sees the
 * old file or the new one, never half of one. The handoff directory is
 * ps_context.handoff_dir (the daemon: ps_config_handoff_dir(), handoff.dir
 * or POOL_MANAGERD_RUNTIME_DIR), else <runtime_dir>/engines. Files this
 * daemon writes carry "managed_by": "pool-managerd"; temp files start
 * with '.'.
 *
 * What a reader of the llama-orch handoff format needs is always there:
 * pool_id, replica_id, engine, engine_version and url as strings (engine
 * is never null: the spec's, else inferred from the binary's name, else
 * "unknown"; engine_version the spec's, else "unknown"), and "slots" (the
 * slot count) beside this daemon's slots_total and slots_free.
 *
 * The directory is ours alone (ps_private_dir_open(): owned by the
 * daemon's user, writable by nobody else, not a link). The temp file is
 * created afresh (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0644 before the
 * umask) relative to the checked directory, and renamed over the final
 * name: a symbolic link planted there is replaced, never followed.
 */

struct ps_context;

#define PS_HANDOFF_DIR "engines"          /* below runtime_dir, by default */
#define PS_HANDOFF_MANAGED_BY "pool-managerd"
#define PS_HANDOFF_UNKNOWN "unknown"

typedef struct ps_handoff {
        const ps_engine_spec *spec;
        pid_t pid;
        uint32_t slots_free;
} ps_handoff;

/* The handoff directory of a context: ctx->handoff_dir, else
 * <ctx->runtime_dir>/engines, formatted into buf. buf, or NULL when the
 * context names neither or the path does not fit. */
const char *ps_handoff_dir(const struct ps_context *ctx, char *buf, size_t len);

/* The engine name a handoff file carries: spec->engine when set, else one
 * inferred from the binary's file name, else "unknown". Never NULL:
 *   llama-server, llama-cpp-server, llama.cpp-server  -> "llamacpp"
 *   vllm                                              -> "vllm"
 *   text-generation-launcher, text-generation-server  -> "tgi"
 *   tritonserver                                      -> "triton"
 */
const char *ps_handoff_engine(const ps_engine_spec *spec);

/* The path of a replica's handoff file in handoff_dir into buf; what
 * snprintf returns. */
int ps_handoff_path(const char *handoff_dir, const char *pool_id,
                    const char *replica_id, char *buf, size_t len);

/* 0, or a negative errno with the failing step and path in err. The
 * handoff directory is made (mode 0700) when missing, but its parent must
 * exist (-ENOENT otherwise); one that is not ours alone is refused
 * (-EPERM, -ELOOP, -ENOTDIR) with the fix in err. NULL handoff_dir:
 * -EINVAL. */
int ps_handoff_write(const char *handoff_dir, const ps_handoff *handoff,
                     char *err, size_t errlen);

/* 0 when removed or already absent; a negative errno otherwise. */
int ps_handoff_remove(const char *handoff_dir, const char *pool_id,
                      const char *replica_id);

/*
 * A handoff file that could not be written (ENOSPC, EACCES, ...) is
 * written again later: try() is called after 1 s, then 2, 4, ... up to
 * 30 s between tries, until it returns 0 or the retry is cancelled (a
 * later write succeeded, or the file is to be removed). try() writes the
 * state of the moment, never a stale one. On the caller's loop.
 */
struct event_base;
typedef struct ps_handoff_retry ps_handoff_retry;
typedef int (*ps_handoff_try_fn)(void *userdata);

#define PS_HANDOFF_RETRY_FIRST_MS 1000
#define PS_HANDOFF_RETRY_MAX_MS 30000

ps_handoff_retry *ps_handoff_retry_new(struct event_base *base, ps_handoff_try_fn try_write,
                                       void *userdata);
/* A write failed: the next try after the current delay, which then
 * doubles. true when this failure starts an episode (the first since the
 * last success or cancel): the one to log. */
bool ps_handoff_retry_failed(ps_handoff_retry *rt);
/* Written or superseded: no more tries, the delay back to 1 s. true when
 * an episode of failures ended. NULL-safe. */
bool ps_handoff_retry_cancel(ps_handoff_retry *rt);
ps_handoff_retry *ps_handoff_retry_free(ps_handoff_retry *rt);
