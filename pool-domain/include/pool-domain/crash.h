/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-domain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Why an engine stopped serving. The string forms are also metric label
 * values and appear in logs and snapshots, so they never change.
 */
typedef enum pd_crash_class {
        PD_CRASH_GRACEFUL,          /* exit 0: not restarted                  */
        PD_CRASH_EXIT_CODE,         /* non-zero exit                          */
        PD_CRASH_SIGNAL,            /* killed by a signal (named in reason)   */
        PD_CRASH_CUDA_ERROR,        /* CUDA runtime/driver API error in log   */
        PD_CRASH_DRIVER_ERROR,      /* driver mismatch, device lost, Xid      */
        PD_CRASH_VRAM_OOM,          /* CUDA out-of-memory                     */
        PD_CRASH_HOST_OOM,          /* kernel OOM killer                      */
        PD_CRASH_HEALTH_TIMEOUT,    /* ready engine stopped answering probes  */
        PD_CRASH_STARTUP_TIMEOUT,   /* never became ready in time             */
        PD_CRASH_STALL_TIMEOUT,     /* stopped making progress                */
        PD_CRASH_PREFLIGHT,         /* refused before spawn (VRAM, binary...) */
        PD_CRASH_NODE_ERROR,        /* the node failed the start (no file
                                       descriptors, disk full, runtime
                                       directory unusable): not the engine's
                                       failure, never counted as a crash    */
        PD_CRASH_CLASS_MAX,
} pd_crash_class;

/* Failure families: each may keep a circuit breaker of its own. */
typedef enum pd_crash_family {
        PD_CRASH_FAMILY_GENERAL,
        PD_CRASH_FAMILY_GPU,        /* cuda_error, driver_error, vram_oom */
        PD_CRASH_FAMILY_MAX,
} pd_crash_family;

const char *pd_crash_class_to_string(pd_crash_class cls);
/* 0 and *out set, or PD_E_INVALID for an unknown name. */
int pd_crash_class_from_string(const char *name, pd_crash_class *out);
pd_crash_family pd_crash_class_family(pd_crash_class cls);
const char *pd_crash_family_to_string(pd_crash_family family);

/* What the node lacked when it could not start an engine. The string
 * forms are metric label values. */
typedef enum pd_node_error_kind {
        PD_NODE_ERROR_FD_LIMIT,       /* EMFILE, ENFILE                      */
        PD_NODE_ERROR_PROCESS_LIMIT,  /* EAGAIN (fork: RLIMIT_NPROC)         */
        PD_NODE_ERROR_DISK_FULL,      /* ENOSPC, EDQUOT                      */
        PD_NODE_ERROR_MEMORY,         /* ENOMEM                              */
        PD_NODE_ERROR_RUNTIME_DIR,    /* the runtime directory: missing and
                                         not made again, not writable, read-
                                         only (EROFS), not ours              */
        PD_NODE_ERROR_KIND_MAX,
} pd_node_error_kind;

/* "fd_limit", "process_limit", "disk_full", "memory", "runtime_dir"; NULL
 * out of range. */
const char *pd_node_error_kind_to_string(pd_node_error_kind kind);

/*
 * Whether a failure to start an engine is the node's rather than the
 * engine's: err is the positive errno, in_runtime_dir says the failure came
 * from checking, making or writing in the runtime directory (any errno
 * then counts). true and *out set for EMFILE, ENFILE, EAGAIN, ENOSPC,
 * EDQUOT, ENOMEM, EROFS, or anything in the runtime directory; false for
 * the rest (a missing binary is the engine's configuration, not the node).
 */
bool pd_node_error_classify(int err, bool in_runtime_dir, pd_node_error_kind *out);

/* "SIGSEGV" for 11, ...; NULL for a number without a standard name. */
const char *pd_signal_name(int signo);

/* How a process ended, as the supervisor observed it. */
typedef struct pd_exit {
        bool exited;          /* true: `code` is valid; false: `signo` is    */
        int code;
        int signo;
        bool status_unknown;  /* adopted process: we saw it die, no status  */
        bool requested;       /* the daemon asked it to stop (stop, drain,
                                 reload): never a crash                     */
} pd_exit;

#define PD_CRASH_REASON_MAX 160

typedef struct pd_crash {
        pd_crash_class cls;
        bool is_crash;        /* false: graceful or requested; no restart   */
        char reason[PD_CRASH_REASON_MAX];  /* "killed by SIGSEGV", ...      */
} pd_crash;

/*
 * Classifies an exit. `log_evidence` is the most severe class found in the
 * engine's log since it started (PD_CRASH_CLASS_MAX when none), and
 * `host_oom_killed` says whether the kernel OOM killer took the process.
 * Precedence: requested > exit 0 > host OOM > log evidence (vram_oom,
 * driver_error, cuda_error) > signal > exit code.
 *
 * Reasons, for operators and last_error:
 *   requested (any status)  graceful      "stopped on request"
 *   exit 0                  graceful      "exited with code 0"
 *   host OOM                host_oom      "host out of memory: kernel OOM killer
 *                                          (killed by SIGKILL)"
 *   vram_oom evidence       vram_oom      "CUDA out of memory (exited with code 1)"
 *   driver_error evidence   driver_error  "GPU driver error (killed by SIGABRT)"
 *   cuda_error evidence     cuda_error    "CUDA error (killed by SIGSEGV)"
 *   signal                  signal        "killed by SIGSEGV", "killed by signal 77"
 *   non-zero exit           exit_code     "exited with code 1"
 *   status unknown          exit_code     "exited (status unknown: not our child)"
 * With status_unknown the part in parentheses is "status unknown: not our
 * child" and the exit code is not trusted (not even 0). A NULL exit counts
 * as status unknown. Evidence other than the three GPU classes is ignored.
 * is_crash is false only for the two graceful rows. Timeouts and preflight
 * failures are classified by the caller, not here.
 */
void pd_crash_classify(const pd_exit *exit, pd_crash_class log_evidence,
                       bool host_oom_killed, pd_crash *out);

/*
 * Scans one engine log line (not NUL-terminated; len bytes) for CUDA errors,
 * driver errors and CUDA out-of-memory. Returns true and sets *out when the
 * line names one of them. Matching is case-insensitive.
 *
 * "out of memory" counts as VRAM only with CUDA/GPU context on the same
 * line (std::bad_alloc and malloc failures are host memory); ggml's
 * pinned-memory warning (page-locked host memory, not fatal) and vLLM's
 * "if you are running out of memory" advice are not evidence. A line that
 * matches several classes yields the most severe one.
 */
bool pd_crash_scan_line(const char *line, size_t len, pd_crash_class *out);

/* Severity used to keep the most telling log evidence: vram_oom >
 * driver_error > cuda_error > anything else. Returns the more severe one;
 * PD_CRASH_CLASS_MAX means "no evidence". */
pd_crash_class pd_crash_evidence_merge(pd_crash_class have, pd_crash_class seen);

/*
 * Reads the `oom_kill` counter from the text of a cgroup v2 memory.events
 * file ("low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n..."). 0 and *out set, or
 * PD_E_INVALID with a message when the key is missing or malformed.
 * Only the oom_kill line is checked; other lines may hold anything.
 */
int pd_memory_events_oom_kill(const char *text, size_t len, uint64_t *out,
                              pd_error *err);

/* True when the counter rose while the engine ran and it died of SIGKILL:
 * the OOM killer, not an operator, ended it. False for an adopted engine
 * (status_unknown) and for an exit code such as 137: only a signal we saw
 * counts. */
bool pd_crash_is_host_oom(const pd_exit *exit, uint64_t oom_kill_before,
                          uint64_t oom_kill_after);

#ifdef __cplusplus
}
#endif
