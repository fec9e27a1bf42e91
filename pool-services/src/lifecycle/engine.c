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
#define PS_ENGINE_PRIVATE_ALLOW
#include "lifecycle/engine-private.h"
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

static void real_set_userdata(ps_engine *engine, void *userdata) {
        engine->userdata = userdata;
}

static pid_t real_pid(const ps_engine *engine) {
        return engine->pid;
}

static bool real_running(const ps_engine *engine) {
        return engine->running;
}

static const char *real_log_path(const ps_engine *engine) {
        return engine->log_path;
}

static const char *real_pid_path(const ps_engine *engine) {
        return engine->pid_path;
}

static int64_t real_log_start(const ps_engine *engine) {
        return engine->log_start;
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

static char **strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
        return NULL;
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
                safe_close(&fd);
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
        safe_close(&rfd);

        *ret_fd = fd;
        *ret_script = script;
        return 0;
fail:
        safe_close(&fd);
        return r;
}

/* The spec's templates rendered for this start: one allocation, free()
 * frees it. A template that does not render is -EINVAL, err says why. */
static int build_argv(const ps_engine_spec *spec, char ***ret, char *err, size_t errlen) {
        int r = ps_engine_spec_argv(spec, ret, err, errlen);

        return r > 0 ? -EINVAL : r;
}

static size_t env_key_len(const char *entry) {
        const char *eq = strchr(entry, '=');

        return eq ? (size_t) (eq - entry) : strlen(entry);
}

static bool env_same_key(const char *a, const char *b) {
        size_t n = env_key_len(a);

        return n == env_key_len(b) && strncmp(a, b, n) == 0;
}

/* The engine's environment while it is built: every string owned. */
typedef struct env_list {
        char **v;
        size_t n;
        size_t cap;
} env_list;

static int env_add(env_list *l, char *entry) {
        if (!entry)
                return -ENOMEM;
        if (l->n + 2 > l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 32;
                char **v = realloc(l->v, cap * sizeof(*v));

                if (!v) {
                        free(entry);
                        return -ENOMEM;
                }
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = entry;
        l->v[l->n] = NULL;
        return 0;
}

static int env_addf(env_list *l, const char *key, const char *value) {
        char *entry;

        if (asprintf(&entry, "%s=%s", key, value) < 0)
                return -ENOMEM;
        return env_add(l, entry);
}

static bool is_locale_entry(const char *entry) {
        return strncmp(entry, "LANG=", 5) == 0 || strncmp(entry, "TZ=", 3) == 0 ||
               (strncmp(entry, "LC_", 3) == 0 && env_key_len(entry) > 3 && strchr(entry, '='));
}

/*
 * Built from nothing, not from the daemon's environment, which may hold
 * secrets (an API token) the engine has no business with. In order: PATH;
 * HOME, USER and LOGNAME of pw (the engine's user; NULL: none known); the
 * daemon's LANG, LC_* and TZ; the daemon's variables env_pass names; the
 * spec's entries; CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA numbers devices as
 * NVML and the placement do; CUDA_VISIBLE_DEVICES. A later entry replaces
 * an earlier one with the same key.
 */
static int build_envp(const ps_engine_spec *spec, const ps_engine_options *opts,
                      const struct passwd *pw, char ***ret, char *err, size_t errlen) {
        env_list l = { 0 };
        const char *path = getenv("PATH");
        size_t n = 0;
        int r = 0;

        for (size_t i = 0; i < spec->n_env; i++)
                if (!spec->env[i] || !strchr(spec->env[i], '=') || spec->env[i][0] == '=') {
                        snprintf(err, errlen, "env entry \"%s\": not KEY=VALUE",
                                 spec->env[i] ? spec->env[i] : "(null)");
                        return -EINVAL;
                }
        for (size_t i = 0; i < opts->n_env_pass; i++) {
                const char *name = opts->env_pass[i];

                if (!name || !name[0] || strchr(name, '=')) {
                        snprintf(err, errlen, "env_pass name \"%s\": not a variable name",
                                 name ? name : "(null)");
                        return -EINVAL;
                }
        }

        r = env_addf(&l, "PATH", path ? path : "/usr/local/bin:/usr/bin:/bin");
        if (r == 0 && pw) {
                r = env_addf(&l, "HOME", pw->pw_dir);
                if (r == 0)
                        r = env_addf(&l, "USER", pw->pw_name);
                if (r == 0)
                        r = env_addf(&l, "LOGNAME", pw->pw_name);
        }
        for (char **e = environ; r == 0 && e && *e; e++)
                if (is_locale_entry(*e))
                        r = env_add(&l, strdup(*e));
        for (size_t i = 0; r == 0 && i < opts->n_env_pass; i++) {
                const char *value = getenv(opts->env_pass[i]);

                if (value)
                        r = env_addf(&l, opts->env_pass[i], value);
        }
        for (size_t i = 0; r == 0 && i < spec->n_env; i++)
                r = env_add(&l, strdup(spec->env[i]));
        if (r == 0)
                r = env_add(&l, strdup("CUDA_DEVICE_ORDER=PCI_BUS_ID"));
        if (r == 0 && spec->cuda_visible_devices)
                r = env_addf(&l, "CUDA_VISIBLE_DEVICES", spec->cuda_visible_devices);
        if (r < 0) {
                strv_free(l.v);
                snprintf(err, errlen, "out of memory");
                return r;
        }

        /* Keep the last entry of each key, in place. */
        for (size_t i = 0; i < l.n; i++) {
                bool replaced = false;

                for (size_t j = i + 1; !replaced && j < l.n; j++)
                        replaced = env_same_key(l.v[i], l.v[j]);
                if (replaced)
                        free(l.v[i]);
                else
                        l.v[n++] = l.v[i];
        }
        l.v[n] = NULL;
        *ret = l.v;
        return 0;
}

/* The passwd entry of name, or of uid when name is NULL; its strings live
 * in *buf, which the caller frees (also on failure). 0, -ENOENT when there
 * is none, another negative errno. */
static int get_passwd(const char *name, uid_t uid, struct passwd *pw, char **buf) {
        struct passwd *res = NULL;
        size_t buflen = 4096;
        int r;

        for (;;) {
                char *nbuf = realloc(*buf, buflen);

                if (!nbuf)
                        return -ENOMEM;
                *buf = nbuf;
                r = name ? getpwnam_r(name, pw, *buf, buflen, &res)
                         : getpwuid_r(uid, pw, *buf, buflen, &res);
                if (r != ERANGE || buflen >= (1u << 20))
                        break;
                buflen *= 2;
        }
        if (r != 0)
                return -r;
        return res ? 0 : -ENOENT;
}

static void describe_user_error(const char *name, int r, char *err, size_t errlen) {
        if (r == -ENOENT)
                snprintf(err, errlen, "user %s: no such user", name);
        else
                snprintf(err, errlen, "user %s: %s", name, strerror(-r));
}

/* The uid an engine runs as: run_as_user's when the daemon is root and
 * one is set, else the daemon's own. */
static int engine_uid(const ps_engine_options *opts, uid_t *ret, char *err, size_t errlen) {
        struct passwd pw;
        char *buf = NULL;
        int r;

        if (!(opts->run_as_user && geteuid() == 0)) {
                *ret = geteuid();
                return 0;
        }
        r = get_passwd(opts->run_as_user, 0, &pw, &buf);
        if (r == 0)
                *ret = pw.pw_uid;
        else
                describe_user_error(opts->run_as_user, r, err, errlen);
        free(buf);
        return r;
}

/* Fills in what the child needs to become pw's user. */
static int plan_user(const struct passwd *pw, ps_engine_plan *plan, char *err, size_t errlen) {
        int n = 16;

        plan->uid = pw->pw_uid;
        plan->gid = pw->pw_gid;
        for (;;) {
                gid_t *g = realloc(plan->groups, (size_t) n * sizeof(*g));
                int want = n;

                if (!g) {
                        snprintf(err, errlen, "out of memory");
                        return -ENOMEM;
                }
                plan->groups = g;
                if (getgrouplist(pw->pw_name, pw->pw_gid, plan->groups, &want) >= 0) {
                        plan->n_groups = want;
                        break;
                }
                if (want <= n || want > 65536) {
                        snprintf(err, errlen, "user %s: cannot list its groups", pw->pw_name);
                        return -EINVAL;
                }
                n = want;
        }
        plan->drop_privileges = true;
        return 0;
}

/* Says why a runtime_dir file that open() with O_NOFOLLOW refused, or that
 * fstat() showed, is not one to use: 0 when it is fine. what: "log file",
 * "PID file". */
static int check_runtime_file(const char *what, const char *path, const struct stat *st,
                              char *err, size_t errlen) {
        if (!S_ISREG(st->st_mode)) {
                snprintf(err, errlen, "%s %s: not a regular file", what, path);
                return -EPERM;
        }
        if (st->st_uid != geteuid()) {
                snprintf(err, errlen, "%s %s is owned by uid %u, not the daemon's user (uid %u)",
                         what, path, (unsigned) st->st_uid, (unsigned) geteuid());
                return -EPERM;
        }
        return 0;
}

/* The message for open(path, O_NOFOLLOW ...) failing with -r. */
static void describe_open_error(const char *what, const char *path, int r, char *err,
                                size_t errlen) {
        struct stat st;

        if (r == -ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
                snprintf(err, errlen, "%s %s is a symbolic link; refusing to follow it", what, path);
        else if (r == -ENXIO)           /* a FIFO or socket, thanks to O_NONBLOCK */
                snprintf(err, errlen, "%s %s: not a regular file", what, path);
        else
                snprintf(err, errlen, "%s %s: %s", what, path, strerror(-r));
}

/*
 * Opens the log for appending; *created tells whether this call made it.
 * Whoever can write to runtime_dir must not get the daemon to append to
 * (or create) a file elsewhere, so a symbolic link is refused, not
 * followed, and what opened must be a regular file of the daemon's user.
 * O_NONBLOCK keeps a FIFO there from blocking us.
 */
static int open_log(const char *path, bool *created, char *err, size_t errlen) {
        const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK;
        struct stat st;
        int fd = -1, r = -EBUSY;

        for (int tries = 0; tries < 8; tries++) {
                fd = open(path, flags);
                if (fd >= 0) {
                        *created = false;
                        break;
                }
                r = -errno;
                if (r != -ENOENT)
                        break;
                fd = open(path, flags | O_CREAT | O_EXCL, 0640);
                if (fd >= 0) {
                        *created = true;
                        break;
                }
                r = -errno;
                if (r != -EEXIST)
                        break;
        }
        if (fd < 0) {
                describe_open_error("log file", path, r, err, errlen);
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "log file %s: %s", path, strerror(-r));
        } else {
                r = check_runtime_file("log file", path, &st, err, errlen);
        }
        /* Blocking again: the engine writes to it as its stdout. */
        if (r == 0 && fcntl(fd, F_SETFL, O_APPEND) < 0) {
                r = -errno;
                snprintf(err, errlen, "log file %s: %s", path, strerror(-r));
        }
        if (r < 0) {
                close(fd);
                if (*created)
                        unlink(path);
                return r;
        }
        return fd;
}

/* Written to a fresh name (O_EXCL: never through a symbolic link) and
 * renamed over the old, which replaces a link rather than following it. */
static int write_pid_file(const char *path, pid_t pid) {
        char *tmp = NULL;
        char text[32];
        int fd, n, r = 0;

        if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                r = -errno;
                free(tmp);
                return r;
        }
        n = snprintf(text, sizeof(text), "%ld\n", (long) pid);
        errno = 0;
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

/* The pid in the PID file at path. 0; -ENOENT when there is none or it
 * holds no pid; -EPERM with a message in err when it is not a regular
 * file of the daemon's user (a symbolic link is not followed: whoever
 * placed it could point us at any process); another negative errno. */
static int read_pid_file(const char *path, pid_t *ret, char *err, size_t errlen) {
        struct stat st;
        char buf[32];
        ssize_t n;
        long v;
        char *end;
        int r, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);

        if (fd < 0) {
                r = -errno;
                if (r == -ENOENT)
                        return r;
                describe_open_error("PID file", path, r, err, errlen);
                return r == -ELOOP ? -EPERM : r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "PID file %s: %s", path, strerror(-r));
                close(fd);
                return r;
        }
        r = check_runtime_file("PID file", path, &st, err, errlen);
        if (r < 0) {
                close(fd);
                return r;
        }
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

/* Removes the PID file only while it still names this process: a later
 * engine may have claimed the same name. */
static void remove_pid_file(const ps_engine *engine) {
        char err[1];
        pid_t pid = 0;

        if (read_pid_file(engine->pid_path, &pid, err, sizeof(err)) == 0 && pid == engine->pid)
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

/* Runs between fork() and fexecve(): async-signal-safe calls only. */
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

/* ---- the plan: decided before anything is touched ------------------------ */

ps_engine_plan *ps_engine_plan_free(ps_engine_plan *plan) {
        if (!plan)
                return NULL;
        free(plan->binary);
        free(plan->argv);
        strv_free(plan->envp);
        free(plan->workdir);
        free(plan->log_path);
        free(plan->pid_path);
        free(plan->user);
        free(plan->groups);
        free(plan);
        return NULL;
}

/* Who the engine runs as: run_as_user when the daemon is root, its groups
 * resolved now; else the daemon's own user, whose passwd entry (if it has
 * one: a container's arbitrary uid may not) gives HOME, USER and LOGNAME.
 * *pw is left unset when have_pw is false. */
static int plan_identity(const ps_engine_options *opts, ps_engine_plan *plan,
                         struct passwd *pw, char **pw_buf, bool *have_pw,
                         char *err, size_t errlen) {
        int r;

        *have_pw = false;
        if (opts->run_as_user && !(plan->user = strdup(opts->run_as_user)))
                return -ENOMEM;
        if (!(opts->run_as_user && geteuid() == 0)) {
                *have_pw = get_passwd(NULL, geteuid(), pw, pw_buf) == 0;
                return 0;
        }
        r = get_passwd(opts->run_as_user, 0, pw, pw_buf);
        if (r < 0) {
                describe_user_error(opts->run_as_user, r, err, errlen);
                return r;
        }
        r = plan_user(pw, plan, err, errlen);
        if (r < 0)
                return r;
        *have_pw = true;
        return 0;
}

static unsigned descriptor_bound(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur < 65536)
                return (unsigned) rl.rlim_cur;
        return 65536;
}

int ps_engine_plan_new(const ps_engine_spec *spec, const ps_engine_options *opts,
                       ps_engine_plan **ret, char *err, size_t errlen) {
        ps_engine_plan *plan;
        struct passwd pw;
        char *pw_buf = NULL;
        bool have_pw = false;
        int r;

        if (!err || errlen == 0) {
                static char dummy[1];

                err = dummy;
                errlen = sizeof(dummy);
        }
        err[0] = '\0';
        if (!spec || !opts || !opts->runtime_dir || !ret) {
                snprintf(err, errlen, "engine spawn: missing argument");
                return -EINVAL;
        }
        if ((!opts->log_name || !opts->pid_name) && (!spec->pool_id || !spec->replica_id)) {
                snprintf(err, errlen, "engine spawn: pool_id and replica_id are required");
                return -EINVAL;
        }
        if (!spec->binary_path || !spec->binary_path[0]) {
                snprintf(err, errlen, "binary: no path given");
                return -EINVAL;
        }
        plan = calloc(1, sizeof(*plan));
        if (!plan)
                return -ENOMEM;
        plan->binary = strdup(spec->binary_path);
        plan->workdir = strdup(spec->workdir ? spec->workdir : opts->runtime_dir);
        plan->log_path = runtime_path(opts->runtime_dir, opts->log_name, "engine-", spec, ".log");
        plan->pid_path = runtime_path(opts->runtime_dir, opts->pid_name, "", spec, ".pid");
        plan->max_fd = descriptor_bound();
        r = plan->binary && plan->workdir && plan->log_path && plan->pid_path ? 0 : -ENOMEM;
        if (r == 0)
                r = build_argv(spec, &plan->argv, err, errlen);
        if (r == 0)
                r = plan_identity(opts, plan, &pw, &pw_buf, &have_pw, err, errlen);
        if (r == 0)
                r = build_envp(spec, opts, have_pw ? &pw : NULL, &plan->envp, err, errlen);
        free(pw_buf);
        if (r < 0) {
                if (r == -ENOMEM && !err[0])
                        snprintf(err, errlen, "out of memory");
                ps_engine_plan_free(plan);
                return r;
        }
        *ret = plan;
        return 0;
}

/* ---- the start: descriptors, fork and exec ------------------------------- */

static void child_fds_close(child_fds *fds, const ps_engine_plan *plan, bool failed) {
        safe_close(&fds->exec_fd);
        safe_close(&fds->log_fd);
        safe_close(&fds->devnull_fd);
        safe_close(&fds->report_fd[0]);
        safe_close(&fds->report_fd[1]);
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
        r = open_log(plan->log_path, &fds->log_created, err, errlen);
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

/* Forks the child and waits until it has reached execve() or said why it
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
        pid = fork();
        if (pid == 0)
                child_exec(plan, fds);
        r = pid < 0 ? -errno : 0;
        sigprocmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                snprintf(err, errlen, "fork: %s", strerror(-r));
                return r;
        }

        safe_close(&fds->report_fd[1]);
        r = read_child_report(fds->report_fd[0], &rep);
        safe_close(&fds->report_fd[0]);
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

/* ---- the watch: the running engine on the loop ----------------------------- */

static ps_engine *real_free(ps_engine *engine);

static ps_engine *engine_new(const char *log_path, const char *pid_path,
                             ps_engine_exit_fn on_exit, void *userdata) {
        ps_engine *engine = calloc(1, sizeof(*engine));

        if (!engine)
                return NULL;
        engine->pidfd = -1;
        engine->on_exit = on_exit;
        engine->userdata = userdata;
        engine->log_path = strdup(log_path);
        engine->pid_path = strdup(pid_path);
        if (!engine->log_path || !engine->pid_path)
                return real_free(engine);
        return engine;
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
        return 0;

kill:
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);
        ps_reap_when_gone(base, pid, engine->pidfd);
        engine->pidfd = -1;             /* the reaper closes it */
        engine->running = false;
        return r;
}

static int real_spawn(struct event_base *base, const ps_engine_spec *spec,
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
        r = child_fds_open(plan, &fds, err, errlen);
        if (r == 0) {
                engine = engine_new(plan->log_path, plan->pid_path, on_exit, userdata);
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
                real_free(engine);
                return r;
        }
        *ret = engine;
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

/* The real uid of a process, from /proc/PID/status. */
static int process_uid(pid_t pid, uid_t *ret) {
        char path[64], buf[4096];
        unsigned long uid;
        const char *line;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = ps_read_full(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
                return (int) n;
        buf[n] = '\0';
        line = strstr(buf, "\nUid:");
        if (!line || sscanf(line + 5, "%lu", &uid) != 1)
                return -EIO;
        *ret = (uid_t) uid;
        return 0;
}

static int real_adopt(struct event_base *base, const ps_engine_spec *spec,
                      const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                      void *userdata, ps_engine **ret, char *err, size_t errlen) {
        ps_engine *engine;
        struct pollfd pfd;
        struct stat st;
        char **argv;
        pid_t pid = 0;
        uid_t want_uid = 0, uid = 0;
        bool same, alive;
        int r;

        if (!base || !spec || !opts || !opts->runtime_dir || !ret)
                return -EINVAL;
        r = engine_uid(opts, &want_uid, err, errlen);
        if (r < 0)
                return r;
        engine = calloc(1, sizeof(*engine));
        if (!engine)
                return -ENOMEM;
        engine->pidfd = -1;
        engine->on_exit = on_exit;
        engine->userdata = userdata;
        engine->log_path = runtime_path(opts->runtime_dir, opts->log_name, "engine-", spec, ".log");
        engine->pid_path = runtime_path(opts->runtime_dir, opts->pid_name, "", spec, ".pid");
        if (!engine->log_path || !engine->pid_path) {
                real_free(engine);
                return -ENOMEM;
        }
        r = read_pid_file(engine->pid_path, &pid, err, errlen);
        if (r < 0) {
                real_free(engine);
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
                real_free(engine);
                return r;
        }
        argv = NULL;
        (void) build_argv(spec, &argv, NULL, 0);
        same = engine->pidfd >= 0 && argv && cmdline_is(pid, argv) && getpgid(pid) == pid;
        free(argv);
        /* A look-alike run by another user is not ours to take over (nor to
         * signal later): anyone can start a process with our command line. */
        same = same && process_uid(pid, &uid) == 0;
        pfd = (struct pollfd) { .fd = engine->pidfd, .events = POLLIN };
        alive = same && poll(&pfd, 1, 0) == 0;
        if (!alive || uid != want_uid) {
                /* Gone, or another program (or user) has the pid now: the
                 * file is stale. The process itself is left alone. */
                r = alive ? -EPERM : -ENOENT;
                if (alive)
                        snprintf(err, errlen,
                                 "PID file %s: process %d runs as uid %u, not the engine "
                                 "user's uid %u; not adopting it", engine->pid_path, (int) pid,
                                 (unsigned) uid, (unsigned) want_uid);
                unlink(engine->pid_path);
                real_free(engine);
                return r;
        }
        engine->pid = pid;
        engine->running = true;
        engine->log_start = lstat(engine->log_path, &st) == 0 && S_ISREG(st.st_mode)
                                    ? (int64_t) st.st_size : 0;
        engine->exit_ev = event_new(base, engine->pidfd, EV_READ | EV_PERSIST, on_pidfd, engine);
        if (!engine->exit_ev || event_add(engine->exit_ev, NULL) < 0) {
                snprintf(err, errlen, "cannot watch the adopted engine");
                real_free(engine);
                return -ENOMEM;
        }
        *ret = engine;
        return 0;
}

static int real_signal(ps_engine *engine, int signo) {
        if (!engine->running)
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

static ps_engine *real_free(ps_engine *engine) {
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

static int real_last_log_line(const ps_engine *engine, char *buf, size_t len) {
        char *text;
        off_t from;
        struct stat st;
        ssize_t n;
        size_t got, want, end, start, i;
        int fd, r = 0;

        buf[0] = '\0';
        /* Not through a symbolic link: its target could be any file the
         * daemon may read, and this line is shown to API clients. */
        fd = open(engine->log_path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                r = -errno;
        else if (!S_ISREG(st.st_mode))
                r = -EINVAL;
        if (r < 0) {
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

/* ---- the seam ------------------------------------------------------------ */

static const ps_engine_ops real_ops = {
        .spawn = real_spawn,
        .adopt = real_adopt,
        .signal = real_signal,
        .free = real_free,
        .pid = real_pid,
        .running = real_running,
        .set_userdata = real_set_userdata,
        .log_path = real_log_path,
        .pid_path = real_pid_path,
        .log_start = real_log_start,
        .last_log_line = real_last_log_line,
};

static const ps_engine_ops *engine_ops = &real_ops;

const ps_engine_ops *ps_engine_ops_real(void) {
        return &real_ops;
}

void ps_engine_ops_set(const ps_engine_ops *ops) {
        engine_ops = ops ? ops : &real_ops;
}

/* What the members may rely on: an err they can write to. */
static char *err_buffer(char *err, size_t *errlen) {
        static char dummy[1];

        if (!err || *errlen == 0) {
                *errlen = sizeof(dummy);
                err = dummy;
        }
        err[0] = '\0';
        return err;
}

int ps_engine_spawn(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen) {
        err = err_buffer(err, &errlen);
        return engine_ops->spawn(base, spec, opts, on_exit, userdata, ret, err, errlen);
}

int ps_engine_adopt(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen) {
        err = err_buffer(err, &errlen);
        return engine_ops->adopt(base, spec, opts, on_exit, userdata, ret, err, errlen);
}

int ps_engine_signal(ps_engine *engine, int signo) {
        return engine ? engine_ops->signal(engine, signo) : -ESRCH;
}

ps_engine *ps_engine_free(ps_engine *engine) {
        return engine ? engine_ops->free(engine) : NULL;
}

pid_t ps_engine_pid(const ps_engine *engine) {
        return engine ? engine_ops->pid(engine) : 0;
}

bool ps_engine_running(const ps_engine *engine) {
        return engine && engine_ops->running(engine);
}

void ps_engine_set_userdata(ps_engine *engine, void *userdata) {
        if (engine)
                engine_ops->set_userdata(engine, userdata);
}

const char *ps_engine_log_path(const ps_engine *engine) {
        return engine ? engine_ops->log_path(engine) : NULL;
}

const char *ps_engine_pid_path(const ps_engine *engine) {
        return engine ? engine_ops->pid_path(engine) : NULL;
}

int64_t ps_engine_log_start(const ps_engine *engine) {
        return engine ? engine_ops->log_start(engine) : 0;
}

int ps_engine_last_log_line(const ps_engine *engine, char *buf, size_t len) {
        if (!engine || !buf || len == 0)
                return -EINVAL;
        return engine_ops->last_log_line(engine, buf, len);
}
