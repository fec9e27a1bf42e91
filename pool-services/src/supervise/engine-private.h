/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The engine's seam, for supervise/engine*.c and the tests only: define
 * PS_ENGINE_PRIVATE_ALLOW before including it. Everything else starts
 * engines through pool-services/supervise/engine.h.
 *
 * Every public ps_engine_*() call goes through one table of operations.
 * The real table forks, execs and watches processes; a test installs its
 * own (no process, a pid it makes up, an exit it triggers) to drive
 * supervision, leases, drain and reload deterministically.
 */
#ifndef PS_ENGINE_PRIVATE_ALLOW
#error "supervise/engine-private.h is for supervise/engine*.c and tests; use pool-services/supervise/engine.h"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool-services/supervise/engine.h"

/*
 * What an engine implementation provides; every member is required.
 * Engine objects are the implementation's own: a ps_engine pointer made
 * by one table only ever comes back to that table. The public functions
 * handle NULL engines and a NULL or empty err themselves, so members see
 * neither (spawn and adopt always get a writable err of errlen >= 1).
 * Contracts are those of the public functions in pool-services/supervise/engine.h.
 */
typedef struct ps_engine_ops {
        int (*spawn)(struct event_base *base, const ps_engine_spec *spec,
                     const ps_engine_options *opts, ps_engine_exit_fn on_exit, void *userdata,
                     ps_engine **ret, char *err, size_t errlen);
        int (*adopt)(struct event_base *base, const ps_engine_spec *spec,
                     const ps_engine_options *opts, ps_engine_exit_fn on_exit, void *userdata,
                     ps_engine **ret, char *err, size_t errlen);
        int (*signal)(ps_engine *engine, int signo);
        ps_engine *(*free)(ps_engine *engine);
        pid_t (*pid)(const ps_engine *engine);
        bool (*running)(const ps_engine *engine);
        void (*set_userdata)(ps_engine *engine, void *userdata);
        const char *(*log_path)(const ps_engine *engine);
        const char *(*pid_path)(const ps_engine *engine);
        int64_t (*log_start)(const ps_engine *engine);
        int (*last_log_line)(const ps_engine *engine, char *buf, size_t len);
        int (*serves)(const ps_engine *engine, const char *host, uint16_t port, char *err,
                      size_t errlen);
} ps_engine_ops;

/* The real processes. Static storage. */
const ps_engine_ops *ps_engine_ops_real(void);

/*
 * Makes ops (borrowed: must outlive its use) the implementation behind
 * every ps_engine_*() call of the process; NULL puts the real one back.
 * Tests only, and only while no engine object exists: one made by the
 * previous table would be handed to the new one.
 */
void ps_engine_ops_set(const ps_engine_ops *ops);

/*
 * What a start will do, decided before anything is opened, written or
 * forked: the argv rendered from the spec's templates, the environment
 * built from nothing (as engine.h lists it), the user and groups the child
 * becomes, the working directory and the runtime files. Building it reads
 * the passwd and group databases, the daemon's environment and its
 * descriptor limit, and changes nothing; the spawn hands it to the child,
 * which may not allocate after fork().
 */
typedef struct ps_engine_plan {
        char *binary;             /* the spec's binary_path                 */
        char **argv;              /* binary, rendered flags, NULL: one allocation */
        char **envp;              /* "KEY=VALUE"..., NULL; one key at most once */
        char *workdir;            /* the spec's workdir, else runtime_dir   */
        char *log_path;           /* <runtime_dir>/<log_name or engine-<pool>_<replica>.log> */
        char *pid_path;           /* <runtime_dir>/<pid_name or <pool>_<replica>.pid> */
        char *user;               /* run_as_user as given (messages); NULL  */
        bool drop_privileges;     /* the daemon is root and run_as_user set */
        uid_t uid;                /* with drop_privileges: run_as_user's    */
        gid_t gid;
        gid_t *groups;            /* its supplementary groups               */
        int n_groups;
        unsigned max_fd;          /* bound of the close() loop without close_range() */
} ps_engine_plan;

/*
 * 0 and *ret (free with ps_engine_plan_free()), or -EINVAL with err naming
 * the problem (a missing argument or binary, pool and replica ids needed
 * for the file names, a flag that does not render, an env entry that is
 * not KEY=VALUE, an env_pass entry that is not a name), -ENOENT for an
 * unknown run_as_user ("user llama: no such user"), -ENOMEM.
 */
int ps_engine_plan_new(const ps_engine_spec *spec, const ps_engine_options *opts,
                       ps_engine_plan **ret, char *err, size_t errlen);
ps_engine_plan *ps_engine_plan_free(ps_engine_plan *plan);
