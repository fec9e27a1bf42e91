/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool-services/spec.h"

struct event_base;

/*
 * One engine process. Spawned into its own process group with exactly the
 * spec's argv and environment (plus CUDA_VISIBLE_DEVICES), no inherited
 * descriptors, default signal dispositions, stdout and stderr appended to
 * `<runtime_dir>/engine-<pool>_<replica>.log`. The PID file
 * `<runtime_dir>/<pool>_<replica>.pid` is written before spawn returns.
 *
 * The engine does not depend on the daemon: no pipe, no parent-death
 * signal, so a daemon restart leaves it running for adoption.
 *
 * Its exit reaches the loop through a pidfd: no polling, no blocking wait.
 */
typedef struct ps_engine ps_engine;

typedef struct ps_exit_status {
        bool exited;              /* true: code valid; false: signo valid   */
        int code;
        int signo;
        bool status_unknown;      /* adopted: we saw it die, no status      */
} ps_exit_status;

/* Called once, on the loop, after the process has been reaped. The engine
 * object stays valid until ps_engine_free(); its PID file is already gone. */
typedef void (*ps_engine_exit_fn)(ps_engine *engine, const ps_exit_status *status,
                                  void *userdata);

typedef struct ps_engine_options {
        const char *runtime_dir;  /* PID and log files go here (required)  */
        const char *run_as_user;  /* NULL: as the daemon; used only by root */
        const char *log_name;     /* NULL: engine-<pool>_<replica>.log       */
        const char *pid_name;     /* NULL: <pool>_<replica>.pid              */
} ps_engine_options;

/*
 * Starts the engine. 0 and *ret set; or a negative errno with a message in
 * err naming the problem ("binary /x/llama-server: No such file or
 * directory", "binary /x: not executable", "user llama: no such user"),
 * leaving no process, PID file or log behind that it created. An exec
 * failure inside the child is reported here, not as an exit (the child
 * tells the parent through a close-on-exec pipe).
 */
int ps_engine_spawn(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen);

/*
 * Takes over an engine a previous daemon left running (--keep-engines, or
 * a daemon that died): its PID file names a live process leading its own
 * process group whose command line is exactly the spec's argv. Its exit
 * reaches the loop through a pidfd like a spawned one's, with the status
 * unknown (another process reaps it). 0 and *ret set; -ENOENT when there
 * is nothing to adopt (no PID file; the process gone or another program
 * now holding the pid: the stale file is removed); another negative errno.
 */
int ps_engine_adopt(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen);

pid_t ps_engine_pid(const ps_engine *engine);
/* Changes what the exit callback receives (its owner moved). */
void ps_engine_set_userdata(ps_engine *engine, void *userdata);
bool ps_engine_running(const ps_engine *engine);
/* Paths of its log and PID files (valid for the object's lifetime). */
const char *ps_engine_log_path(const ps_engine *engine);
const char *ps_engine_pid_path(const ps_engine *engine);
/* Byte offset of the log file when the engine started: lines after it
 * are this incarnation's. */
int64_t ps_engine_log_start(const ps_engine *engine);

/* Sends signo to the engine's process group. 0, -ESRCH when already gone. */
int ps_engine_signal(ps_engine *engine, int signo);

/* Stops watching and frees. Does not signal the process: a running engine
 * keeps running (that is how --keep-engines works). Removes nothing. */
ps_engine *ps_engine_free(ps_engine *engine);

/* The last non-empty line of the engine's log after its start offset, for
 * last_error ("failed to open GGUF file ..."): 0 and buf filled, or a
 * negative errno. Reads at most the final 64 KiB. */
int ps_engine_last_log_line(const ps_engine *engine, char *buf, size_t len);
