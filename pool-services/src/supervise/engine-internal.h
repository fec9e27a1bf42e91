/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the real engine's files share: engine.c (the object, its exit watch
 * and the seam), engine-plan.c (the start plan), engine-exec.c (fork and
 * exec), engine-files.c (log and PID files) and engine-adopt.c. Nothing
 * else includes it; tests go through supervise/engine-private.h.
 */
#ifndef PS_ENGINE_PRIVATE_ALLOW
#error "supervise/engine-internal.h is for supervise/engine*.c only"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include "supervise/engine-private.h"
#include "pool-services/supervise/engine.h"

struct event;
struct event_base;

struct ps_engine {
        pid_t pid;
        int pidfd;
        bool running;
        struct event *exit_ev;
        char *log_path;
        char *pid_path;
        int64_t log_start;
        ps_engine_exit_fn on_exit;
        void *userdata;
};

static inline void ps_engine_close_fd(int *fd) {
        if (*fd >= 0) {
                close(*fd);
                *fd = -1;
        }
}

/* ---- engine.c: the object ------------------------------------------------ */

/* An engine that is not running yet, pidfd -1; NULL on OOM. */
ps_engine *ps_engine_alloc(const char *log_path, const char *pid_path,
                           ps_engine_exit_fn on_exit, void *userdata);
ps_engine *ps_engine_real_free(ps_engine *engine);

/* Watches engine->pidfd on base: its exit is reaped, the PID file removed
 * and on_exit called. 0 or -ENOMEM. */
int ps_engine_watch_exit(struct event_base *base, ps_engine *engine);

/* ---- engine-plan.c -------------------------------------------------------- */

/* <dir>/<given>, or <dir>/<prefix><pool>_<replica><suffix>; NULL on OOM. */
char *ps_engine_runtime_path(const char *dir, const char *given, const char *prefix,
                             const ps_engine_spec *spec, const char *suffix);

/* The spec's templates rendered for this start: one allocation, free()
 * frees it. A template that does not render is -EINVAL, err says why. */
int ps_engine_build_argv(const ps_engine_spec *spec, char ***ret, char *err, size_t errlen);

/* The uid an engine runs as: run_as_user's when the daemon is root and
 * one is set, else the daemon's own. */
int ps_engine_run_uid(const ps_engine_options *opts, uid_t *ret, char *err, size_t errlen);

/* ---- engine-files.c ------------------------------------------------------- */

/* The log opened for appending, or a negative errno with err set;
 * *created tells whether this call made it. */
int ps_engine_open_log(const char *path, bool *created, char *err, size_t errlen);
int ps_engine_write_pid_file(const char *path, pid_t pid);
int ps_engine_read_pid_file(const char *path, pid_t *ret, char *err, size_t errlen);
void ps_engine_remove_pid_file(const ps_engine *engine);
int ps_engine_real_last_log_line(const ps_engine *engine, char *buf, size_t len);

/* ---- engine-exec.c and engine-adopt.c ------------------------------------- */

int ps_engine_real_spawn(struct event_base *base, const ps_engine_spec *spec,
                         const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                         void *userdata, ps_engine **ret, char *err, size_t errlen);
int ps_engine_real_adopt(struct event_base *base, const ps_engine_spec *spec,
                         const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                         void *userdata, ps_engine **ret, char *err, size_t errlen);
