/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One engine instance of a replica (its primary or its surge engine): the
 * engine process, its log tail, its health watch and where it listens.
 * For supervise/replica.c only. The instance decides nothing: the replica
 * tells it to spawn, probe, stop probing and signal, and it reports what
 * happens through the table it was created with, which the replica turns
 * into the machine's events. Its fields are instance.c's alone.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-domain/lifecycle.h"
#include "pool-services/base/event.h"
#include "pool-services/supervise/engine.h"
#include "pool-services/supervise/replica.h"

#define PS_INSTANCE_LINE_MAX 256

typedef struct ps_instance ps_instance;

/* How an engine ended, for ps_instance_ops.exited. */
typedef struct ps_instance_exit {
        const ps_exit_status *status;
        int pid;
        int64_t uptime_ms;
        const char *cause;          /* its own words; NULL: none          */
        bool host_oom;              /* the kernel's OOM killer took it     */
} ps_instance_exit;

/*
 * What an instance tells its replica, and asks of it. Every entry is
 * required. An entry that runs the replica's machine may be where the
 * instance is told to stop probing; none may free it.
 */
typedef struct ps_instance_ops {
        /* Says something in the replica's name. */
        void (*emit)(ps_instance *in, ps_event_type type, ps_log_level level, const char *message,
                     const ps_field *fields, size_t n_fields, void *userdata);
        /* Whether the machine has seen this instance ready: loading
         * probes until then, the steady cadence after. */
        bool (*ready)(const ps_instance *in, void *userdata);
        /* The host the engine is checked to listen on (verify_listener). */
        const char *(*probe_host)(const ps_instance *in, void *userdata);
        /* The engine runs (spawned or adopted). */
        void (*spawned)(ps_instance *in, void *userdata);
        /* Right before the fork and exec of a new engine. */
        void (*starting)(ps_instance *in, void *userdata);
        /* Preflight refused the start (refusal: its PS_E_* code). */
        void (*preflight_failed)(ps_instance *in, int refusal, const char *err, void *userdata);
        /* The start failed; node_error: the node's fault, not the engine's. */
        void (*spawn_failed)(ps_instance *in, bool node_error, const char *err, void *userdata);
        /* A health answer, a stall (PD_EV_PROBE_OK, _TIMEOUT, _FAILED,
         * PD_EV_STALL) with its detail. */
        void (*probe_result)(ps_instance *in, pd_event_type kind, const char *detail, void *userdata);
        /* A 200 from a port the engine is not seen holding. */
        void (*probe_not_counted)(ps_instance *in, const char *why, void *userdata);
        /* A line of the engine's log (ps_instance_last_line() has it).
         * true: it was acted on, and the instance touches nothing more. */
        bool (*log_line)(ps_instance *in, const char *line, size_t len, void *userdata);
        /* The engine ended; the instance touches nothing after. */
        void (*exited)(ps_instance *in, const ps_instance_exit *how, void *userdata);
        /* The engine leaving service has no request in flight, or shows
         * no count and its retire grace is over (a line has said which). */
        void (*idle)(ps_instance *in, void *userdata);
} ps_instance_ops;

/* ops is copied; ctx, policy and userdata are borrowed. NULL on OOM. */
ps_instance *ps_instance_new(const ps_context *ctx, pd_instance_id id, const ps_policy *policy,
                             const ps_instance_ops *ops, void *userdata);
/* Never kills the engine (a later daemon adopts it). Accepts NULL. */
ps_instance *ps_instance_free(ps_instance *in);

/* The slot it fills now (a surge that promotes becomes the primary). */
pd_instance_id ps_instance_id(const ps_instance *in);
void ps_instance_set_id(ps_instance *in, pd_instance_id id);
/* The replica's policy was replaced. */
void ps_instance_set_policy(ps_instance *in, const ps_policy *policy);

/* How to start an engine, once the replica has decided to. */
typedef struct ps_instance_start {
        const ps_engine_spec *spec;       /* borrowed for the call only    */
        const char *pid_name;             /* NULL: the spec's defaults     */
        const char *log_name;
        bool adopt;                       /* first try to take over one a
                                             previous daemon left running */
        const ps_engine_identity *recorded; /* ... the one the state store
                                             recorded (pid, start time) */
        bool recorded_only;               /* with a store: never by PID file */
        unsigned restart_count;           /* for the "engine spawned" line */
} ps_instance_start;

/* Adopts or preflights and spawns; the outcome goes through the table
 * (spawned, preflight_failed or spawn_failed) before this returns. */
void ps_instance_spawn(ps_instance *in, const ps_instance_start *how);
/* Nothing when no engine runs. */
void ps_instance_signal(ps_instance *in, int signo);

void ps_instance_probe_start(ps_instance *in);
void ps_instance_probe_stop(ps_instance *in);
/* A probe in flight is dropped and one is sent an interval from now
 * (while probing): the instance changed slots. */
void ps_instance_probe_restart(ps_instance *in);

/*
 * An engine that takes no new work and holds no lease may still run
 * requests sent without one (supervise/idle.h): whether those are done.
 * The first call starts watching; ops.idle says when they are. Without a
 * watch, at once. Forget drops the watch and its answer.
 */
bool ps_instance_idle_reached(ps_instance *in);
void ps_instance_idle_forget(ps_instance *in);

bool ps_instance_running(const ps_instance *in);
/* The running engine's pid; 0 when none. */
int ps_instance_pid(const ps_instance *in);
/* When the engine last started (wall ms). */
int64_t ps_instance_started_wall_ms(const ps_instance *in);
/* Where the engine listens: the spec it was started from. */
const char *ps_instance_url(const ps_instance *in);
/* The engine's last log line ("" when none). */
const char *ps_instance_last_line(const ps_instance *in);
/* The log file of the engine that runs, else of the last one; NULL when
 * none ever ran. */
const char *ps_instance_log_path(const ps_instance *in);
/* The engine that runs; NULL when none. */
const ps_engine *ps_instance_engine(const ps_instance *in);
