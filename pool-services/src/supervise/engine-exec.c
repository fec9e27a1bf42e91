/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/reap.h"
#include "base/sockdiag.h"
#define PS_ENGINE_PRIVATE_ALLOW
#include "supervise/engine-internal.h"
#include "pool-services/base/fs.h"

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

/* The descriptors a start opens before fork(), all above stderr so that
 * the child's dup2() onto 0, 1 and 2 cannot clobber them. With the plan,
 * everything the child uses: after fork() it may only make
 * async-signal-safe calls, so it allocates nothing. */
typedef struct child_fds {
        int exec_fd;              /* O_PATH: the file that was checked      */
        bool exec_is_script;      /* "#!": its interpreter reopens exec_fd  */
        int log_fd;
        bool log_created;         /* removed again when the start fails     */
        int64_t log_start;        /* the log's size before this engine      */
        int devnull_fd;
        int report_fd[2];         /* close-on-exec: EOF means exec happened */
} child_fds;

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

static const char *writable_by(mode_t mode) {
        if ((mode & S_IWGRP) && (mode & S_IWOTH))
                return "group- and world-writable";
        return mode & S_IWGRP ? "group-writable" : "world-writable";
}

/*
 * Opens the binary once, checks the file behind that descriptor and hands
 * the descriptor on, so that the file executed is the file checked (a
 * path alone could be swapped in between). The path may pass through
 * symbolic links (a pool's config may name one): the file they lead to is
 * what counts. Whoever can write to it, or owns it, controls what the
 * engine (and its GPUs, and the user it runs as) does: only the daemon's
 * user or root may.
 */
static int open_binary(const char *path, int *ret_fd, bool *ret_script, char *err,
                       size_t errlen) {
        char proc[64], head[2];
        struct stat st;
        bool script;
        int fd, rfd, r;

        if (!path || !path[0]) {
                snprintf(err, errlen, "binary: no path given");
                return -EINVAL;
        }
        fd = fd_above_stdio(open(path, O_PATH | O_CLOEXEC));
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                ps_engine_close_fd(&fd);
                snprintf(err, errlen, "binary %s: %s", path, strerror(-r));
                return r;
        }
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, errlen, "binary %s: not a regular file", path);
                r = -EACCES;
                goto fail;
        }
        /* A kernel before faccessat2 (5.8) refuses AT_EMPTY_PATH. */
        if (faccessat(fd, "", X_OK, AT_EMPTY_PATH) < 0 &&
            ((errno != EINVAL && errno != ENOSYS) || access(proc, X_OK) < 0)) {
                r = -errno;
                if (r == -EACCES)
                        snprintf(err, errlen, "binary %s: not executable", path);
                else
                        snprintf(err, errlen, "binary %s: %s", path, strerror(-r));
                goto fail;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                snprintf(err, errlen, "binary %s is %s (mode %04o): chmod g-w,o-w %s", path,
                         writable_by(st.st_mode), (unsigned) (st.st_mode & 07777), path);
                r = -EPERM;
                goto fail;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                snprintf(err, errlen,
                         "binary %s is owned by uid %u, neither root nor the daemon's user "
                         "(uid %u): chown root %s", path, (unsigned) st.st_uid,
                         (unsigned) geteuid(), path);
                r = -EPERM;
                goto fail;
        }

        /* The kernel runs a script through /dev/fd/N, which its interpreter
         * can open only while N survives the exec. A file we may not read
         * (execute-only) cannot be a script that runs anyway. */
        rfd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        script = rfd >= 0 && pread(rfd, head, sizeof(head), 0) == (ssize_t) sizeof(head) &&
                 head[0] == '#' && head[1] == '!';
        ps_engine_close_fd(&rfd);

        *ret_fd = fd;
        *ret_script = script;
        return 0;
fail:
        ps_engine_close_fd(&fd);
        return r;
}


_Noreturn static void child_fail(int fd, int stage) {
        child_report rep = { .stage = stage, .error = errno };
        ssize_t n;

        do
                n = write(fd, &rep, sizeof(rep));
        while (n < 0 && errno == EINTR);
        _exit(127);
}

/* Closes from..to (inclusive), without close_range() below max. */
static void child_close_between(unsigned from, unsigned to, unsigned max) {
        if (from > to)
                return;
        if (close_range(from, to, 0) < 0)
                for (unsigned fd = from; fd <= to && fd < max; fd++)
                        close((int) fd);
}

/* Everything above stderr but the report pipe and the binary. */
static void child_close_fds(const ps_engine_plan *plan, const child_fds *fds) {
        unsigned lo = (unsigned) fds->report_fd[1], hi = (unsigned) fds->exec_fd;

        if (lo > hi) {
                unsigned t = lo;

                lo = hi;
                hi = t;
        }
        child_close_between(STDERR_FILENO + 1, lo - 1, plan->max_fd);
        child_close_between(lo + 1, hi - 1, plan->max_fd);
        child_close_between(hi + 1, ~0U, plan->max_fd);
}

/* Runs between clone() and fexecve(), in the daemon's memory (CLONE_VM)
 * on its own stack: async-signal-safe calls only, no allocation, no
 * write to anything the daemon reads but errno and the report pipe. */
_Noreturn static void child_exec(const ps_engine_plan *plan, const child_fds *fds) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        int report = fds->report_fd[1];
        sigset_t none;

        /* Dispositions first: signals stay blocked (the parent blocked all
         * of them around fork) until the default actions are back. */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &dfl, NULL);

        /* Own session, hence own process group: a signal to -pid reaches the
         * engine's helpers too, and the terminal's signals do not. */
        if (setsid() < 0)
                child_fail(report, CHILD_STAGE_SETSID);

        if (dup2(fds->devnull_fd, STDIN_FILENO) < 0 ||
            dup2(fds->log_fd, STDOUT_FILENO) < 0 ||
            dup2(fds->log_fd, STDERR_FILENO) < 0)
                child_fail(report, CHILD_STAGE_STDIO);
        child_close_fds(plan, fds);

        if (chdir(plan->workdir) < 0)
                child_fail(report, CHILD_STAGE_CHDIR);

        if (plan->drop_privileges) {
                /* The bounding set needs CAP_SETPCAP, so it goes before the
                 * uid change; a kernel knows fewer than 64 capabilities. */
                for (int cap = 0; cap < 64; cap++)
                        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                                child_fail(report, CHILD_STAGE_CAPS);
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                        child_fail(report, CHILD_STAGE_CAPS);
                if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                        child_fail(report, CHILD_STAGE_CAPS);
                if (setgroups((size_t) plan->n_groups, plan->groups) < 0)
                        child_fail(report, CHILD_STAGE_SETGROUPS);
                if (setresgid(plan->gid, plan->gid, plan->gid) < 0)
                        child_fail(report, CHILD_STAGE_SETGID);
                /* From uid 0 to non-zero without keepcaps: the kernel clears
                 * the permitted, effective and ambient sets. */
                if (setresuid(plan->uid, plan->uid, plan->uid) < 0)
                        child_fail(report, CHILD_STAGE_SETUID);
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                        child_fail(report, CHILD_STAGE_NO_NEW_PRIVS);
        }

        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);

        /* The file checked in the parent, not whatever the path names now.
         * A script's interpreter opens /dev/fd/N after the exec. */
        if (fds->exec_is_script && fcntl(fds->exec_fd, F_SETFD, 0) < 0)
                child_fail(report, CHILD_STAGE_EXEC);
        fexecve(fds->exec_fd, plan->argv, plan->envp);
        child_fail(report, CHILD_STAGE_EXEC);
        _exit(127);
}

static void describe_child_failure(const child_report *rep, const ps_engine_plan *plan,
                                   char *err, size_t errlen) {
        const char *why = strerror(rep->error);

        switch (rep->stage) {
        case CHILD_STAGE_SETSID:
                snprintf(err, errlen, "setsid: %s", why);
                break;
        case CHILD_STAGE_STDIO:
                snprintf(err, errlen, "redirecting output to the log: %s", why);
                break;
        case CHILD_STAGE_CHDIR:
                snprintf(err, errlen, "workdir %s: %s", plan->workdir, why);
                break;
        case CHILD_STAGE_CAPS:
                snprintf(err, errlen, "dropping capabilities: %s", why);
                break;
        case CHILD_STAGE_SETGROUPS:
        case CHILD_STAGE_SETGID:
        case CHILD_STAGE_SETUID:
                snprintf(err, errlen, "user %s: cannot switch to it: %s",
                         plan->user ? plan->user : "?", why);
                break;
        case CHILD_STAGE_NO_NEW_PRIVS:
                snprintf(err, errlen, "no_new_privs: %s", why);
                break;
        case CHILD_STAGE_EXEC:
                snprintf(err, errlen, "binary %s: %s", plan->binary, why);
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

/* ---- the start: descriptors, fork and exec ------------------------------- */

static void child_fds_close(child_fds *fds, const ps_engine_plan *plan, bool failed) {
        ps_engine_close_fd(&fds->exec_fd);
        ps_engine_close_fd(&fds->log_fd);
        ps_engine_close_fd(&fds->devnull_fd);
        ps_engine_close_fd(&fds->report_fd[0]);
        ps_engine_close_fd(&fds->report_fd[1]);
        /* A start that failed leaves no log behind that it created. */
        if (failed && fds->log_created)
                unlink(plan->log_path);
        fds->log_created = false;
}

/* Opens the checked binary, the log, /dev/null and the report pipe. On
 * failure what opened is left in fds for child_fds_close(). */
static int child_fds_open(const ps_engine_plan *plan, child_fds *fds, char *err, size_t errlen) {
        struct stat st;
        int r;

        r = open_binary(plan->binary, &fds->exec_fd, &fds->exec_is_script, err, errlen);
        if (r < 0)
                return r;
        r = ps_engine_open_log(plan->log_path, &fds->log_created, err, errlen);
        if (r < 0)
                return r;
        fds->log_fd = fd_above_stdio(r);
        if (fds->log_fd < 0 || fstat(fds->log_fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "log file %s: %s", plan->log_path, strerror(-r));
                return r;
        }
        fds->log_start = (int64_t) st.st_size;

        fds->devnull_fd = fd_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (fds->devnull_fd < 0) {
                r = -errno;
                snprintf(err, errlen, "/dev/null: %s", strerror(-r));
                return r;
        }
        if (pipe2(fds->report_fd, O_CLOEXEC) < 0) {
                r = -errno;
                snprintf(err, errlen, "pipe: %s", strerror(-r));
                return r;
        }
        fds->report_fd[1] = fd_above_stdio(fds->report_fd[1]);
        if (fds->report_fd[1] < 0) {
                r = -errno;
                snprintf(err, errlen, "pipe: %s", strerror(-r));
                return r;
        }
        return 0;
}

#if defined(__SANITIZE_ADDRESS__)
/* AddressSanitizer cannot follow a child on a stack of its own: fork(). */
static pid_t child_clone(const ps_engine_plan *plan, const child_fds *fds) {
        pid_t pid = fork();

        if (pid == 0)
                child_exec(plan, fds);
        return pid;
}
#else
typedef struct child_args {
        const ps_engine_plan *plan;
        const child_fds *fds;
} child_args;

static int child_main(void *arg) {
        const child_args *a = arg;

        child_exec(a->plan, a->fds);
}

/* The child's stack: it runs only until execve(). */
#define CHILD_STACK (64 * 1024)

/*
 * Starts the child the way posix_spawn() does: clone(CLONE_VM |
 * CLONE_VFORK) shares the daemon's memory instead of copying its page
 * tables (fork() of a daemon with a large heap costs milliseconds in page
 * tables and copy-on-write faults), and the daemon resumes once the child
 * has exec'd or exited.
 */
static pid_t child_clone(const ps_engine_plan *plan, const child_fds *fds) {
        child_args a = { .plan = plan, .fds = fds };
        void *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        pid_t pid;
        int r;

        if (stack == MAP_FAILED)
                return -1;
        pid = clone(child_main, (char *) stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
        r = errno;
        munmap(stack, CHILD_STACK);
        errno = r;
        return pid;
}
#endif

/* Starts the child and waits until it has reached execve() or said why it
 * could not. 0 and *ret, or a negative errno with err set; a child that
 * failed is reaped from the loop. */
static int child_start(struct event_base *base, const ps_engine_plan *plan, child_fds *fds,
                       pid_t *ret, char *err, size_t errlen) {
        sigset_t all, saved;
        child_report rep;
        pid_t pid;
        int r;

        /* No handler of ours may run in the child before it has reset the
         * dispositions (libevent's would write into our signal socket). */
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, &saved);
        pid = child_clone(plan, fds);
        r = pid < 0 ? -errno : 0;
        sigprocmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                snprintf(err, errlen, "clone: %s", strerror(-r));
                return r;
        }

        ps_engine_close_fd(&fds->report_fd[1]);
        r = read_child_report(fds->report_fd[0], &rep);
        ps_engine_close_fd(&fds->report_fd[0]);
        if (r == 0) {
                *ret = pid;
                return 0;
        }
        /* It failed before exec and exits on its own; a report that could
         * not be read leaves it unknown: make sure. */
        if (r < 0)
                (void) kill(pid, SIGKILL);
        ps_reap_when_gone(base, pid, -1);
        if (r < 0) {
                snprintf(err, errlen, "engine child: %s", strerror(-r));
                return r;
        }
        describe_child_failure(&rep, plan, err, errlen);
        return rep.error > 0 ? -rep.error : -EIO;
}

/* From here on the engine runs: its exit reaches the loop through a
 * pidfd, and its PID file names it. A failure takes it down again. */
static int engine_watch(struct event_base *base, ps_engine *engine, pid_t pid,
                        char *err, size_t errlen) {
        int r;

        engine->pid = pid;
        engine->running = true;
        engine->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (engine->pidfd < 0) {
                r = -errno;
                snprintf(err, errlen, "pidfd_open: %s", strerror(-r));
                goto kill;
        }
        if (ps_engine_watch_exit(base, engine) < 0) {
                r = -ENOMEM;
                snprintf(err, errlen, "cannot watch the engine process");
                goto kill;
        }
        r = ps_engine_write_pid_file(engine->pid_path, pid);
        if (r < 0) {
                snprintf(err, errlen, "PID file %s: %s", engine->pid_path, strerror(-r));
                goto kill;
        }
        return 0;

kill:
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);
        ps_reap_when_gone(base, pid, engine->pidfd);
        engine->pidfd = -1;             /* the reaper closes it */
        engine->running = false;
        return r;
}

/*
 * An engine cannot serve on a port another process holds: llama-server
 * exits "couldn't bind" within milliseconds, but the holder may answer the
 * health probe before it does. Only a port known to be taken stops the
 * start; any other failure of the test bind (a privileged port the
 * engine's file capabilities allow, ...) is the engine's to meet.
 */
static int port_check(const ps_engine_spec *spec, char *err, size_t errlen) {
        int r;

        if (spec->port == 0)
                return 0;
        r = ps_sockdiag_port_free(spec->host ? spec->host : "127.0.0.1", spec->port, err, errlen);
        if (r == -EADDRINUSE)
                return r;
        err[0] = '\0';
        return 0;
}

int ps_engine_real_spawn(struct event_base *base, const ps_engine_spec *spec,
                         const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                         void *userdata, ps_engine **ret, char *err, size_t errlen) {
        child_fds fds = { .exec_fd = -1, .log_fd = -1, .devnull_fd = -1, .report_fd = { -1, -1 } };
        ps_engine_plan *plan = NULL;
        ps_engine *engine = NULL;
        pid_t pid = 0;
        int r;

        if (!base || !ret) {
                snprintf(err, errlen, "engine spawn: missing argument");
                return -EINVAL;
        }
        r = ps_engine_plan_new(spec, opts, &plan, err, errlen);
        if (r < 0)
                return r;
        r = port_check(spec, err, errlen);
        if (r == 0)
                r = child_fds_open(plan, &fds, err, errlen);
        if (r == 0) {
                engine = ps_engine_alloc(plan->log_path, plan->pid_path, on_exit, userdata);
                if (!engine) {
                        r = -ENOMEM;
                        snprintf(err, errlen, "out of memory");
                }
        }
        if (r == 0) {
                engine->log_start = fds.log_start;
                r = child_start(base, plan, &fds, &pid, err, errlen);
        }
        if (r == 0)
                r = engine_watch(base, engine, pid, err, errlen);
        child_fds_close(&fds, plan, r < 0);
        ps_engine_plan_free(plan);
        if (r < 0) {
                ps_engine_real_free(engine);
                return r;
        }
        *ret = engine;
        return 0;
}
