/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/reap.h"
#include "pool-services/engine.h"
#include "pool-services/fs.h"

extern char **environ;

/* glibc 2.36 declares P_PIDFD inside enum idtype_t, so it cannot be tested
 * with #ifdef; the kernel's value is 3. */
#define ENGINE_P_PIDFD ((idtype_t) 3)

#define LAST_LINE_WINDOW (64 * 1024)

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

/* What the child reports through the close-on-exec pipe when it cannot
 * reach execve(). */
enum {
        CHILD_STAGE_SETSID,
        CHILD_STAGE_STDIO,
        CHILD_STAGE_CHDIR,
        CHILD_STAGE_CAPS,
        CHILD_STAGE_SETGROUPS,
        CHILD_STAGE_SETGID,
        CHILD_STAGE_SETUID,
        CHILD_STAGE_NO_NEW_PRIVS,
        CHILD_STAGE_EXEC,
};

typedef struct child_report {
        int stage;
        int error;
} child_report;

/* Everything the child needs, prepared in the parent: after fork() the
 * child may only make async-signal-safe calls, so it allocates nothing. */
typedef struct child_plan {
        const char *exec_path;
        char **argv;
        char **envp;
        const char *dir;
        int devnull_fd;
        int log_fd;
        int report_fd;
        unsigned max_fd;          /* for the close() loop without close_range */
        bool drop_privileges;
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        int n_groups;
} child_plan;

void ps_engine_set_userdata(ps_engine *engine, void *userdata) {
        engine->userdata = userdata;
}

pid_t ps_engine_pid(const ps_engine *engine) {
        return engine ? engine->pid : 0;
}

bool ps_engine_running(const ps_engine *engine) {
        return engine && engine->running;
}

const char *ps_engine_log_path(const ps_engine *engine) {
        return engine ? engine->log_path : NULL;
}

const char *ps_engine_pid_path(const ps_engine *engine) {
        return engine ? engine->pid_path : NULL;
}

int64_t ps_engine_log_start(const ps_engine *engine) {
        return engine ? engine->log_start : 0;
}

static char *path_join(const char *dir, const char *name) {
        char *p;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return NULL;
        return p;
}

/* <dir>/<given>, or <dir>/<prefix><pool>_<replica><suffix>. */
static char *runtime_path(const char *dir, const char *given, const char *prefix,
                          const ps_engine_spec *spec, const char *suffix) {
        char *p;
        int n;

        if (given)
                n = asprintf(&p, "%s/%s", dir, given);
        else
                n = asprintf(&p, "%s/%s%s_%s%s", dir, prefix, spec->pool_id, spec->replica_id,
                             suffix);
        return n < 0 ? NULL : p;
}

/* Keeps a descriptor off 0, 1 and 2, so that the child's dup2() calls onto
 * the standard descriptors cannot clobber it (the daemon may run with
 * closed standard descriptors). */
static int fd_above_stdio(int fd) {
        int nfd;

        if (fd < 0 || fd > STDERR_FILENO)
                return fd;
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        close(fd);
        return nfd < 0 ? -1 : nfd;
}

static void safe_close(int *fd) {
        if (*fd >= 0) {
                close(*fd);
                *fd = -1;
        }
}

static int check_binary(const char *path, char *err, size_t errlen) {
        struct stat st;

        if (!path || !path[0]) {
                snprintf(err, errlen, "binary: no path given");
                return -EINVAL;
        }
        if (stat(path, &st) < 0) {
                int r = -errno;

                snprintf(err, errlen, "binary %s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, errlen, "binary %s: not a regular file", path);
                return -EACCES;
        }
        if (access(path, X_OK) < 0) {
                int r = -errno;

                if (r == -EACCES)
                        snprintf(err, errlen, "binary %s: not executable", path);
                else
                        snprintf(err, errlen, "binary %s: %s", path, strerror(-r));
                return r;
        }
        return 0;
}

/* A relative binary path would resolve against the child's working
 * directory, not ours: anchor it here, where it was checked. */
static char *absolute_path(const char *path) {
        char cwd[PATH_MAX];

        if (path[0] == '/')
                return strdup(path);
        if (!getcwd(cwd, sizeof(cwd)))
                return NULL;
        return path_join(cwd, path);
}

static char **build_argv(const ps_engine_spec *spec) {
        char **argv = calloc(spec->n_flags + 2, sizeof(*argv));

        if (!argv)
                return NULL;
        argv[0] = spec->binary_path;
        for (size_t i = 0; i < spec->n_flags; i++)
                argv[i + 1] = spec->flags[i];
        return argv;
}

static size_t env_key_len(const char *entry) {
        const char *eq = strchr(entry, '=');

        return eq ? (size_t) (eq - entry) : strlen(entry);
}

static bool env_same_key(const char *a, const char *b) {
        size_t n = env_key_len(a);

        return n == env_key_len(b) && strncmp(a, b, n) == 0;
}

/* The parent's environment, then the spec's entries, then
 * CUDA_VISIBLE_DEVICES; a later entry replaces an earlier one with the same
 * key. Only *cuda is allocated; the other strings are borrowed. */
static int build_envp(const ps_engine_spec *spec, char ***ret, char **cuda,
                      char *err, size_t errlen) {
        size_t n_parent = 0, n = 0;
        char **envp;

        *cuda = NULL;
        for (size_t i = 0; i < spec->n_env; i++)
                if (!spec->env[i] || !strchr(spec->env[i], '=') || spec->env[i][0] == '=') {
                        snprintf(err, errlen, "env entry \"%s\": not KEY=VALUE",
                                 spec->env[i] ? spec->env[i] : "(null)");
                        return -EINVAL;
                }
        if (spec->cuda_visible_devices &&
            asprintf(cuda, "CUDA_VISIBLE_DEVICES=%s", spec->cuda_visible_devices) < 0) {
                *cuda = NULL;
                goto oom;
        }
        for (char **e = environ; e && *e; e++)
                n_parent++;
        envp = calloc(n_parent + spec->n_env + 2, sizeof(*envp));
        if (!envp)
                goto oom;

        for (size_t i = 0; i < n_parent; i++) {
                bool replaced = *cuda && env_same_key(environ[i], *cuda);

                for (size_t j = 0; !replaced && j < spec->n_env; j++)
                        replaced = env_same_key(environ[i], spec->env[j]);
                if (!replaced)
                        envp[n++] = environ[i];
        }
        for (size_t i = 0; i < spec->n_env; i++) {
                bool replaced = *cuda && env_same_key(spec->env[i], *cuda);

                for (size_t j = i + 1; !replaced && j < spec->n_env; j++)
                        replaced = env_same_key(spec->env[i], spec->env[j]);
                if (!replaced)
                        envp[n++] = spec->env[i];
        }
        if (*cuda)
                envp[n++] = *cuda;
        envp[n] = NULL;
        *ret = envp;
        return 0;
oom:
        free(*cuda);
        *cuda = NULL;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
}

static int lookup_user(const char *name, child_plan *plan, char *err, size_t errlen) {
        struct passwd pw, *res = NULL;
        char *buf = NULL;
        size_t buflen = 4096;
        int r, n;

        for (;;) {
                char *nbuf = realloc(buf, buflen);

                if (!nbuf) {
                        free(buf);
                        snprintf(err, errlen, "out of memory");
                        return -ENOMEM;
                }
                buf = nbuf;
                r = getpwnam_r(name, &pw, buf, buflen, &res);
                if (r != ERANGE || buflen >= (1u << 20))
                        break;
                buflen *= 2;
        }
        if (r != 0 || !res) {
                free(buf);
                if (r != 0) {
                        snprintf(err, errlen, "user %s: %s", name, strerror(r));
                        return -r;
                }
                snprintf(err, errlen, "user %s: no such user", name);
                return -ENOENT;
        }
        plan->uid = pw.pw_uid;
        plan->gid = pw.pw_gid;

        n = 16;
        for (;;) {
                gid_t *g = realloc(plan->groups, (size_t) n * sizeof(*g));
                int want = n;

                if (!g) {
                        free(buf);
                        snprintf(err, errlen, "out of memory");
                        return -ENOMEM;
                }
                plan->groups = g;
                if (getgrouplist(name, pw.pw_gid, plan->groups, &want) >= 0) {
                        plan->n_groups = want;
                        break;
                }
                if (want <= n || want > 65536) {
                        free(buf);
                        snprintf(err, errlen, "user %s: cannot list its groups", name);
                        return -EINVAL;
                }
                n = want;
        }
        free(buf);
        plan->drop_privileges = true;
        return 0;
}

/* Opens the log for appending; *created tells whether this call made it. */
static int open_log(const char *path, bool *created) {
        for (int tries = 0; tries < 8; tries++) {
                int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);

                if (fd >= 0) {
                        *created = false;
                        return fd;
                }
                if (errno != ENOENT)
                        return -errno;
                fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_CREAT | O_EXCL, 0640);
                if (fd >= 0) {
                        *created = true;
                        return fd;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EBUSY;
}

static int write_pid_file(const char *path, pid_t pid) {
        char *tmp = NULL;
        char text[32];
        int fd, n, r = 0;

        if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(tmp);
                return r;
        }
        n = snprintf(text, sizeof(text), "%ld\n", (long) pid);
        if (fchmod(fd, 0644) < 0 || write(fd, text, (size_t) n) != n)
                r = errno ? -errno : -EIO;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        free(tmp);
        return r;
}

/* Removes the PID file only while it still names this process: a later
 * engine may have claimed the same name. */
static void remove_pid_file(const ps_engine *engine) {
        char text[32];
        ssize_t n;
        int fd;

        fd = open(engine->pid_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, text, sizeof(text) - 1);
        close(fd);
        if (n <= 0)
                return;
        text[n] = '\0';
        if (strtol(text, NULL, 10) == (long) engine->pid)
                unlink(engine->pid_path);
}

_Noreturn static void child_fail(int fd, int stage) {
        child_report rep = { .stage = stage, .error = errno };
        ssize_t n;

        do
                n = write(fd, &rep, sizeof(rep));
        while (n < 0 && errno == EINTR);
        _exit(127);
}

static void child_close_fds(const child_plan *plan) {
        unsigned keep = (unsigned) plan->report_fd;

        if (keep > STDERR_FILENO + 1 && close_range(STDERR_FILENO + 1, keep - 1, 0) < 0)
                for (unsigned fd = STDERR_FILENO + 1; fd < keep; fd++)
                        close((int) fd);
        if (close_range(keep + 1, ~0U, 0) < 0)
                for (unsigned fd = keep + 1; fd < plan->max_fd; fd++)
                        close((int) fd);
}

/* Runs between fork() and execve(): async-signal-safe calls only. */
_Noreturn static void child_exec(const child_plan *plan) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigset_t none;

        /* Dispositions first: signals stay blocked (the parent blocked all
         * of them around fork) until the default actions are back. */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &dfl, NULL);

        /* Own session, hence own process group: a signal to -pid reaches the
         * engine's helpers too, and the terminal's signals do not. */
        if (setsid() < 0)
                child_fail(plan->report_fd, CHILD_STAGE_SETSID);

        if (dup2(plan->devnull_fd, STDIN_FILENO) < 0 ||
            dup2(plan->log_fd, STDOUT_FILENO) < 0 ||
            dup2(plan->log_fd, STDERR_FILENO) < 0)
                child_fail(plan->report_fd, CHILD_STAGE_STDIO);
        child_close_fds(plan);

        if (chdir(plan->dir) < 0)
                child_fail(plan->report_fd, CHILD_STAGE_CHDIR);

        if (plan->drop_privileges) {
                /* The bounding set needs CAP_SETPCAP, so it goes before the
                 * uid change; a kernel knows fewer than 64 capabilities. */
                for (int cap = 0; cap < 64; cap++)
                        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                                child_fail(plan->report_fd, CHILD_STAGE_CAPS);
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                        child_fail(plan->report_fd, CHILD_STAGE_CAPS);
                if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                        child_fail(plan->report_fd, CHILD_STAGE_CAPS);
                if (setgroups((size_t) plan->n_groups, plan->groups) < 0)
                        child_fail(plan->report_fd, CHILD_STAGE_SETGROUPS);
                if (setresgid(plan->gid, plan->gid, plan->gid) < 0)
                        child_fail(plan->report_fd, CHILD_STAGE_SETGID);
                /* From uid 0 to non-zero without keepcaps: the kernel clears
                 * the permitted, effective and ambient sets. */
                if (setresuid(plan->uid, plan->uid, plan->uid) < 0)
                        child_fail(plan->report_fd, CHILD_STAGE_SETUID);
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        child_fail(plan->report_fd, CHILD_STAGE_NO_NEW_PRIVS);
        }

        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);

        execve(plan->exec_path, plan->argv, plan->envp);
        child_fail(plan->report_fd, CHILD_STAGE_EXEC);
        _exit(127);
}

static void describe_child_failure(const child_report *rep, const ps_engine_spec *spec,
                                   const char *dir, const char *user, char *err, size_t errlen) {
        const char *why = strerror(rep->error);

        switch (rep->stage) {
        case CHILD_STAGE_SETSID:
                snprintf(err, errlen, "setsid: %s", why);
                break;
        case CHILD_STAGE_STDIO:
                snprintf(err, errlen, "redirecting output to the log: %s", why);
                break;
        case CHILD_STAGE_CHDIR:
                snprintf(err, errlen, "workdir %s: %s", dir, why);
                break;
        case CHILD_STAGE_CAPS:
                snprintf(err, errlen, "dropping capabilities: %s", why);
                break;
        case CHILD_STAGE_SETGROUPS:
        case CHILD_STAGE_SETGID:
        case CHILD_STAGE_SETUID:
                snprintf(err, errlen, "user %s: cannot switch to it: %s", user ? user : "?", why);
                break;
        case CHILD_STAGE_NO_NEW_PRIVS:
                snprintf(err, errlen, "no_new_privs: %s", why);
                break;
        case CHILD_STAGE_EXEC:
                snprintf(err, errlen, "binary %s: %s", spec->binary_path, why);
                break;
        default:
                snprintf(err, errlen, "engine child failed: %s", why);
                break;
        }
}

/* Waits for the child to reach execve() (EOF: the pipe closed on exec) or
 * to report why it could not. Microseconds, and the one blocking wait. */
static int read_child_report(int fd, child_report *rep) {
        ssize_t got = ps_read_full(fd, rep, sizeof(*rep));

        if (got < 0)
                return (int) got;
        if (got == 0)
                return 0;              /* exec succeeded */
        if ((size_t) got < sizeof(*rep)) {
                rep->stage = -1;
                rep->error = EIO;
        }
        return 1;
}

static void on_pidfd(evutil_socket_t fd, short what, void *userdata) {
        ps_engine *engine = userdata;
        ps_exit_status st = { 0 };
        siginfo_t si;

        (void) fd;
        (void) what;
        memset(&si, 0, sizeof(si));
        if (waitid(ENGINE_P_PIDFD, (id_t) engine->pidfd, &si, WEXITED | WNOHANG) < 0) {
                if (errno == EINTR)
                        return;        /* persistent: the next loop pass retries */
                /* ECHILD: someone else reaped it; it is gone all the same */
                st.status_unknown = true;
        } else if (si.si_pid == 0) {
                return;                /* not yet */
        } else if (si.si_code == CLD_EXITED) {
                st.exited = true;
                st.code = si.si_status;
        } else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
                st.signo = si.si_status;
        } else {
                return;                /* stopped or continued: not an exit */
        }

        engine->running = false;
        event_del(engine->exit_ev);
        safe_close(&engine->pidfd);
        remove_pid_file(engine);
        /* Last: the callback may free the engine. */
        if (engine->on_exit)
                engine->on_exit(engine, &st, engine->userdata);
}

int ps_engine_spawn(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen) {
        child_plan plan = { .devnull_fd = -1, .log_fd = -1, .report_fd = -1 };
        ps_engine *engine = NULL;
        char *exec_path = NULL, *cuda = NULL;
        int report_pipe[2] = { -1, -1 };
        bool log_created = false;
        sigset_t all, saved;
        child_report rep;
        struct rlimit rl;
        struct stat st;
        pid_t pid;
        int r;

        if (!err || errlen == 0) {
                static char dummy[1];

                err = dummy;
                errlen = sizeof(dummy);
        }
        err[0] = '\0';
        if (!base || !spec || !opts || !opts->runtime_dir || !ret) {
                snprintf(err, errlen, "engine spawn: missing argument");
                return -EINVAL;
        }

        if ((!opts->log_name || !opts->pid_name) && (!spec->pool_id || !spec->replica_id)) {
                snprintf(err, errlen, "engine spawn: pool_id and replica_id are required");
                return -EINVAL;
        }
        r = check_binary(spec->binary_path, err, errlen);
        if (r < 0)
                return r;

        engine = calloc(1, sizeof(*engine));
        if (!engine)
                goto oom;
        engine->pidfd = -1;
        engine->on_exit = on_exit;
        engine->userdata = userdata;

        engine->log_path = runtime_path(opts->runtime_dir, opts->log_name, "engine-", spec, ".log");
        engine->pid_path = runtime_path(opts->runtime_dir, opts->pid_name, "", spec, ".pid");
        if (!engine->log_path || !engine->pid_path)
                goto oom;

        /* Everything the child uses is built here: it must not allocate. */
        exec_path = absolute_path(spec->binary_path);
        plan.argv = build_argv(spec);
        if (!exec_path || !plan.argv)
                goto oom;
        plan.exec_path = exec_path;
        r = build_envp(spec, &plan.envp, &cuda, err, errlen);
        if (r < 0)
                goto fail;
        plan.dir = spec->workdir ? spec->workdir : opts->runtime_dir;
        if (opts->run_as_user && geteuid() == 0) {
                r = lookup_user(opts->run_as_user, &plan, err, errlen);
                if (r < 0)
                        goto fail;
        }
        plan.max_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                      rl.rlim_cur < 65536 ? (unsigned) rl.rlim_cur : 65536;

        r = open_log(engine->log_path, &log_created);
        if (r < 0) {
                snprintf(err, errlen, "log file %s: %s", engine->log_path, strerror(-r));
                goto fail;
        }
        plan.log_fd = fd_above_stdio(r);
        if (plan.log_fd < 0 || fstat(plan.log_fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "log file %s: %s", engine->log_path, strerror(-r));
                goto fail;
        }
        engine->log_start = (int64_t) st.st_size;

        plan.devnull_fd = fd_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (plan.devnull_fd < 0) {
                r = -errno;
                snprintf(err, errlen, "/dev/null: %s", strerror(-r));
                goto fail;
        }
        if (pipe2(report_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                snprintf(err, errlen, "pipe: %s", strerror(-r));
                goto fail;
        }
        report_pipe[1] = fd_above_stdio(report_pipe[1]);
        if (report_pipe[1] < 0) {
                r = -errno;
                snprintf(err, errlen, "pipe: %s", strerror(-r));
                goto fail;
        }
        plan.report_fd = report_pipe[1];

        /* No handler of ours may run in the child before it has reset the
         * dispositions (libevent's would write into our signal socket). */
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, &saved);
        pid = fork();
        if (pid == 0)
                child_exec(&plan);
        r = pid < 0 ? -errno : 0;
        sigprocmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                snprintf(err, errlen, "fork: %s", strerror(-r));
                goto fail;
        }

        safe_close(&report_pipe[1]);
        r = read_child_report(report_pipe[0], &rep);
        safe_close(&report_pipe[0]);
        if (r != 0) {
                /* It failed before exec and exits on its own; a report that
                 * could not be read leaves it unknown: make sure. */
                if (r < 0)
                        (void) kill(pid, SIGKILL);
                ps_reap_when_gone(base, pid, -1);
                if (r < 0) {
                        snprintf(err, errlen, "engine child: %s", strerror(-r));
                } else {
                        describe_child_failure(&rep, spec, plan.dir, opts->run_as_user, err, errlen);
                        r = rep.error > 0 ? -rep.error : -EIO;
                }
                goto fail;
        }
        engine->pid = pid;
        engine->running = true;

        /* From here on the engine runs: a failure must take it down again. */
        engine->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (engine->pidfd < 0) {
                r = -errno;
                snprintf(err, errlen, "pidfd_open: %s", strerror(-r));
                goto kill;
        }
        engine->exit_ev = event_new(base, engine->pidfd, EV_READ | EV_PERSIST, on_pidfd, engine);
        if (!engine->exit_ev || event_add(engine->exit_ev, NULL) < 0) {
                r = -ENOMEM;
                snprintf(err, errlen, "cannot watch the engine process");
                goto kill;
        }
        r = write_pid_file(engine->pid_path, pid);
        if (r < 0) {
                snprintf(err, errlen, "PID file %s: %s", engine->pid_path, strerror(-r));
                goto kill;
        }

        safe_close(&plan.log_fd);
        safe_close(&plan.devnull_fd);
        free(plan.groups);
        free(plan.envp);
        free(plan.argv);
        free(cuda);
        free(exec_path);
        *ret = engine;
        return 0;

kill:
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);
        ps_reap_when_gone(base, pid, engine->pidfd);
        engine->pidfd = -1;             /* the reaper closes it */
        engine->running = false;
        goto fail;
oom:
        r = -ENOMEM;
        snprintf(err, errlen, "out of memory");
fail:
        safe_close(&report_pipe[0]);
        safe_close(&report_pipe[1]);
        safe_close(&plan.log_fd);
        safe_close(&plan.devnull_fd);
        if (log_created && engine && engine->log_path)
                unlink(engine->log_path);
        free(plan.groups);
        free(plan.envp);
        free(plan.argv);
        free(cuda);
        free(exec_path);
        ps_engine_free(engine);
        return r;
}

/* The pid in a PID file; -ENOENT when there is none or it is not one. */
static int read_pid_file(const char *path, pid_t *ret) {
        char buf[32];
        ssize_t n;
        long v;
        char *end;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0)
                return errno == ENOENT ? -ENOENT : -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -ENOENT;
        buf[n] = '\0';
        errno = 0;
        v = strtol(buf, &end, 10);
        if (errno || v <= 1 || (*end && *end != '\n'))
                return -ENOENT;
        *ret = (pid_t) v;
        return 0;
}

/* Whether /proc/PID/cmdline is exactly argv, however long. */
static bool cmdline_is(pid_t pid, char *const *argv) {
        char path[64], *buf;
        size_t want = 0, len = 0, at = 0;
        bool same = true;
        ssize_t n;
        int fd;

        for (size_t i = 0; argv[i]; i++)
                want += strlen(argv[i]) + 1;
        /* One byte more than argv needs: a longer command line shows. */
        buf = malloc(want + 1);
        if (!buf)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                free(buf);
                return false;
        }
        while (len < want + 1 && (n = read(fd, buf + len, want + 1 - len)) > 0)
                len += (size_t) n;
        close(fd);
        for (size_t i = 0; same && argv[i]; i++) {
                size_t l = strlen(argv[i]) + 1;

                same = at + l <= len && memcmp(buf + at, argv[i], l) == 0;
                at += l;
        }
        free(buf);
        return same && at == len;
}

int ps_engine_adopt(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen) {
        ps_engine *engine;
        struct pollfd pfd;
        struct stat st;
        char **argv;
        pid_t pid = 0;
        bool same;
        int r;

        if (!base || !spec || !opts || !opts->runtime_dir || !ret)
                return -EINVAL;
        engine = calloc(1, sizeof(*engine));
        if (!engine)
                return -ENOMEM;
        engine->pidfd = -1;
        engine->on_exit = on_exit;
        engine->userdata = userdata;
        engine->log_path = runtime_path(opts->runtime_dir, opts->log_name, "engine-", spec, ".log");
        engine->pid_path = runtime_path(opts->runtime_dir, opts->pid_name, "", spec, ".pid");
        if (!engine->log_path || !engine->pid_path) {
                ps_engine_free(engine);
                return -ENOMEM;
        }
        r = read_pid_file(engine->pid_path, &pid);
        if (r < 0) {
                ps_engine_free(engine);
                return r;
        }
        /* The pidfd first: what is checked next is then the process it
         * holds, not one that took the pid over meanwhile. */
        engine->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (engine->pidfd < 0 && errno != ESRCH) {
                /* Out of descriptors or the like: say so, keep the file
                 * for the next try. */
                r = -errno;
                snprintf(err, errlen, "pidfd_open %d: %s", (int) pid, strerror(-r));
                ps_engine_free(engine);
                return r;
        }
        argv = build_argv(spec);
        same = engine->pidfd >= 0 && argv && cmdline_is(pid, argv) && getpgid(pid) == pid;
        free(argv);
        pfd = (struct pollfd) { .fd = engine->pidfd, .events = POLLIN };
        if (!same || poll(&pfd, 1, 0) != 0) {
                /* Gone, or another program has the pid now: the file is stale. */
                unlink(engine->pid_path);
                ps_engine_free(engine);
                return -ENOENT;
        }
        engine->pid = pid;
        engine->running = true;
        engine->log_start = stat(engine->log_path, &st) == 0 ? (int64_t) st.st_size : 0;
        engine->exit_ev = event_new(base, engine->pidfd, EV_READ | EV_PERSIST, on_pidfd, engine);
        if (!engine->exit_ev || event_add(engine->exit_ev, NULL) < 0) {
                snprintf(err, errlen, "cannot watch the adopted engine");
                ps_engine_free(engine);
                return -ENOMEM;
        }
        *ret = engine;
        return 0;
}

int ps_engine_signal(ps_engine *engine, int signo) {
        if (!engine || !engine->running)
                return -ESRCH;
        /* Unreaped, so the pid cannot have been reused. */
        if (kill(-engine->pid, signo) == 0)
                return 0;
        if (errno != ESRCH)
                return -errno;
        /* The group is gone (the engine left it) but the process is not. */
        if (kill(engine->pid, signo) == 0)
                return 0;
        return -errno;
}

ps_engine *ps_engine_free(ps_engine *engine) {
        if (!engine)
                return NULL;
        if (engine->exit_ev)
                event_free(engine->exit_ev);
        safe_close(&engine->pidfd);
        free(engine->log_path);
        free(engine->pid_path);
        free(engine);
        return NULL;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int ps_engine_last_log_line(const ps_engine *engine, char *buf, size_t len) {
        char *text;
        off_t from;
        struct stat st;
        ssize_t n;
        size_t got, want, end, start, i;
        int fd, r = 0;

        if (!engine || !buf || len == 0)
                return -EINVAL;
        buf[0] = '\0';
        fd = open(engine->log_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        /* A log smaller than our start was truncated (copytruncate): all of
         * it is this incarnation's. */
        from = st.st_size < engine->log_start ? 0 : (off_t) engine->log_start;
        if (st.st_size - from > LAST_LINE_WINDOW)
                from = st.st_size - LAST_LINE_WINDOW;
        want = (size_t) (st.st_size - from);
        text = malloc(want + 1);
        if (!text) {
                close(fd);
                return -ENOMEM;
        }
        n = lseek(fd, from, SEEK_SET) < 0 ? -errno : ps_read_full(fd, text, want);
        close(fd);
        if (n < 0) {
                free(text);
                return (int) n;
        }
        got = (size_t) n;

        /* Trailing blanks include newlines, so blank lines are skipped. */
        end = got;
        while (end > 0 && is_blank(text[end - 1]))
                end--;
        if (end == 0) {
                free(text);
                return -ENODATA;
        }
        start = end;
        while (start > 0 && text[start - 1] != '\n')
                start--;
        while (start < end && is_blank(text[start]))
                start++;
        i = end - start;
        if (i >= len)
                i = len - 1;
        memcpy(buf, text + start, i);
        buf[i] = '\0';
        free(text);
        return 0;
}
