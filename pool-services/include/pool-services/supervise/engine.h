/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool-services/conf/spec.h"

struct event_base;

/*
 * One engine process. Spawned into its own process group with exactly the
 * spec's argv, no inherited descriptors, default signal dispositions,
 * stdout and stderr appended to `<runtime_dir>/engine-<pool>_<replica>.log`.
 * The PID file `<runtime_dir>/<pool>_<replica>.pid` is written before spawn
 * returns. A spawn first binds the spec's host and port itself and closes
 * the socket again: a port another process holds fails the start.
 *
 * Its environment is built from nothing, so the daemon's secrets stay
 * out of it; in order, a later entry replacing an earlier one of the same
 * name: the daemon's PATH (none: /usr/local/bin:/usr/bin:/bin); HOME,
 * USER and LOGNAME of the engine's user (none where it has no passwd entry);
 * LANG, LC_* and TZ where the daemon has them; the names in env_pass the
 * daemon has; the spec's env; CUDA_DEVICE_ORDER=PCI_BUS_ID; and
 * CUDA_VISIBLE_DEVICES when the spec sets it.
 *
 * The binary is opened once and checked through that descriptor: a
 * regular file, executable, writable by its owner only, owned by root or
 * the daemon's user. The child executes that very descriptor (fexecve),
 * so a file swapped in after the check is never run. A path through a
 * symbolic link is fine: the file it leads to is what is checked.
 *
 * Files in runtime_dir are never reached through a symbolic link: the log,
 * and a PID file read for adoption, must be regular files owned by the
 * daemon's user; the PID file is written to a temporary name and renamed.
 *
 * The engine does not depend on the daemon: no pipe, no parent-death
 * signal, so a daemon restart leaves it running for adoption.
 *
 * Its exit reaches the loop through a pidfd: no polling, no blocking wait.
 *
 * The functions below dispatch to one implementation for the whole
 * process: these real processes, or what a test installed in their place
 * (supervise/engine-private.h); callers cannot tell them apart.
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
        /* Names of the daemon's variables the engine gets too (a proxy,
         * HF_HOME, ...); one the daemon lacks is left out. Borrowed. */
        char *const *env_pass;
        size_t n_env_pass;
} ps_engine_options;

/*
 * Starts the engine. 0 and *ret set; or a negative errno with a message in
 * err naming the problem ("binary /x/llama-server: No such file or
 * directory", "binary /x: not executable", "binary /x is group-writable
 * (mode 0775): chmod g-w,o-w /x", "log file /r/engine-a_r0.log is a
 * symbolic link; refusing to follow it", "user llama: no such user"),
 * leaving no process, PID file or log behind that it created. A port
 * already taken is -EADDRINUSE, "port 8081 on 127.0.0.1 is in use by pid
 * 4242 (python3 -m http.server 8081)" ("by a socket of uid 0" when that
 * user's processes cannot be looked into). An exec
 * failure inside the child is reported here, not as an exit (the child
 * tells the parent through a close-on-exec pipe).
 *
 * A `#!` script runs too, but the kernel hands its interpreter the path
 * /dev/fd/N of the checked file (that is the script's $0), and the
 * interpreter keeps descriptor N open.
 */
int ps_engine_spawn(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen);

/*
 * Takes over an engine a previous daemon left running (--keep-engines, or
 * a daemon that died): its PID file names a live process leading its own
 * process group, run by the engine's user (run_as_user when the daemon is
 * root, else the daemon's user), whose command line is exactly the spec's
 * argv. Its exit reaches the loop through a pidfd like a spawned one's,
 * with the status unknown (another process reaps it). 0 and *ret set;
 * -ENOENT when there is nothing to adopt (no PID file; the process gone or
 * another program now holding the pid: the stale file is removed); -EPERM
 * with a message in err when the PID file is not a regular file owned by
 * the daemon's user (a symbolic link is not followed) or the process runs
 * as another user (it is left alone, not signalled); another negative
 * errno.
 */
int ps_engine_adopt(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen);

/*
 * What identifies an engine process beyond its pid, as the state store
 * records it: its start time (/proc/<pid>/stat field 22), its real uid,
 * and the SHA-256 of its command line (each argument with its NUL).
 */
typedef struct ps_engine_identity {
        pid_t pid;
        uint64_t start_time;
        uid_t uid;
        char cmdline_hash[65];
} ps_engine_identity;

/* The identity of a live process now. 0, -ESRCH when it is gone, another
 * negative errno. */
int ps_engine_proc_identity(pid_t pid, ps_engine_identity *ret);
/* The hash of the argv a spec renders to (as ps_engine_proc_identity()
 * hashes a command line). 0 or a negative errno (err set). */
int ps_engine_argv_hash(const ps_engine_spec *spec, char hex[65], char *err, size_t errlen);

/* Whether the process runs argv: /proc/<pid>/cmdline is argv exactly, or
 * the form the kernel gives a script started through its descriptor
 * ("INTERPRETER [ARG] /dev/fd/N" then argv[1...]). */
bool ps_engine_cmdline_is(pid_t pid, char *const *argv);

/*
 * Takes over the engine the state store recorded: the process with that
 * pid must still have the recorded start time, uid and command line (the
 * hash of what /proc showed at the spawn), run the spec's argv (directly
 * or as a script), and lead its process group.
 * Nothing is signalled or removed on a mismatch. A missing PID file is
 * written again, for people and tools. 0 and *ret set; -ESRCH when it is gone;
 * -ESTALE when another process holds the pid now; another negative errno.
 * Always the real process (no test seam).
 */
int ps_engine_adopt_recorded(struct event_base *base, const ps_engine_spec *spec,
                             const ps_engine_options *opts, const ps_engine_identity *want,
                             ps_engine_exit_fn on_exit, void *userdata, ps_engine **ret,
                             char *err, size_t errlen);

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

/*
 * Whether the socket listening where a client of host:port connects
 * belongs to the engine: to its process or another process of its session
 * (an engine's API workers). A 200 from the port proves nothing until
 * then: another program may hold it. 0 when it does; -EADDRNOTAVAIL with
 * err naming who listens instead ("port 8081 answers but no process of
 * the engine listens on it (pid 4242 of uid 1000 does: python3 -m
 * http.server 8081)") or that nobody does; -ESRCH when the engine is gone;
 * another negative errno with err set when it cannot be told (the kernel
 * lacks sock_diag, ...).
 */
int ps_engine_serves(const ps_engine *engine, const char *host, uint16_t port, char *err,
                     size_t errlen);

/* Sends signo to the engine's process group. 0, -ESRCH when already gone.
 * SIGTERM is followed by SIGCONT: a stopped engine (SIGSTOP, a debugger's
 * SIGTSTP) would keep the SIGTERM pending until the grace ran out. */
int ps_engine_signal(ps_engine *engine, int signo);

/* Stops watching and frees. Does not signal the process: a running engine
 * keeps running (that is how --keep-engines works). Removes nothing. */
ps_engine *ps_engine_free(ps_engine *engine);

/* The last non-empty line of the engine's log after its start offset, for
 * last_error ("failed to open GGUF file ..."): 0 and buf filled, or a
 * negative errno (-ELOOP when the log is now a symbolic link: it is not
 * followed). Reads at most the final 64 KiB. */
int ps_engine_last_log_line(const ps_engine *engine, char *buf, size_t len);
