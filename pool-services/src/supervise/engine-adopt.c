/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PS_ENGINE_PRIVATE_ALLOW
#include "supervise/engine-internal.h"
#include "pool-services/base/digest.h"
#include "pool-services/base/fs.h"

/* "/dev/fd/" and digits: how the kernel names a script run by fexecve()
 * to its interpreter. */
static bool is_dev_fd(const char *arg) {
        if (strncmp(arg, "/dev/fd/", 8) != 0 || !arg[8])
                return false;
        for (const char *c = arg + 8; *c; c++)
                if (*c < '0' || *c > '9')
                        return false;
        return true;
}

/* Whether the NUL-separated args of buf (len bytes) from the k-th on are
 * argv[first...], nothing more. */
static bool args_are(const char *buf, size_t len, size_t at, char *const *argv, size_t first) {
        for (size_t i = first; argv[i]; i++) {
                size_t l = strlen(argv[i]) + 1;

                if (at + l > len || memcmp(buf + at, argv[i], l) != 0)
                        return false;
                at += l;
        }
        return at == len;
}

/* /proc/PID/cmdline, whole (each argument with its NUL), up to 1 MiB:
 * 0 with *ret (free it; NULL when empty) and *len, or a negative errno. */
static int read_cmdline(pid_t pid, char **ret, size_t *len) {
        char path[64], *buf = NULL;
        size_t cap = 0;
        ssize_t n;
        int fd;

        *ret = NULL;
        *len = 0;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        do {
                if (*len == cap) {
                        char *grown = cap < (1u << 20) ? realloc(buf, cap ? cap * 2 : 4096) : NULL;

                        if (!grown) {
                                free(buf);
                                close(fd);
                                return -ENOMEM;
                        }
                        buf = grown;
                        cap = cap ? cap * 2 : 4096;
                }
                n = read(fd, buf + *len, cap - *len);
                if (n > 0)
                        *len += (size_t) n;
        } while (n > 0);
        close(fd);
        if (n < 0) {
                free(buf);
                return -EIO;
        }
        *ret = buf;
        return 0;
}

/*
 * Whether /proc/PID/cmdline is argv, however long: exactly, or as the
 * kernel runs a script (a "#!" engine, e.g. vLLM's console script)
 * started through its descriptor -- "INTERPRETER [ARG] /dev/fd/N" and
 * then argv[1...].
 */
bool ps_engine_cmdline_is(pid_t pid, char *const *argv) {
        size_t len = 0, at = 0;
        char *buf = NULL;
        bool same;

        if (!argv || !argv[0] || read_cmdline(pid, &buf, &len) < 0 || !len ||
            buf[len - 1] != '\0') {
                free(buf);
                return false;
        }
        same = args_are(buf, len, 0, argv, 0);
        /* The interpreter, at most one argument of its "#!" line, then
         * the script's descriptor: the first three args at most. */
        for (unsigned k = 0; !same && k < 3 && at < len; k++) {
                const char *arg = buf + at;

                at += strlen(arg) + 1;
                if (k > 0 && is_dev_fd(arg))
                        same = args_are(buf, len, at, argv, 1);
        }
        free(buf);
        return same;
}

/* The real uid of a process, from /proc/PID/status. */
static int process_uid(pid_t pid, uid_t *ret) {
        char buf[4096];
        unsigned long uid;
        const char *line;
        ssize_t n = ps_read_proc(pid, "status", buf, sizeof(buf));

        if (n < 0)
                return (int) n;
        line = strstr(buf, "\nUid:");
        if (!line || sscanf(line + 5, "%lu", &uid) != 1)
                return -EIO;
        *ret = (uid_t) uid;
        return 0;
}

/* The record an adoption fills: its log and PID file paths, no process
 * yet. NULL when out of memory. */
static ps_engine *adoption_new(const ps_engine_spec *spec, const ps_engine_options *opts,
                               ps_engine_exit_fn on_exit, void *userdata) {
        char *log_path = ps_engine_runtime_path(opts->runtime_dir, opts->log_name, "engine-",
                                                spec, ".log");
        char *pid_path = ps_engine_runtime_path(opts->runtime_dir, opts->pid_name, "", spec,
                                                ".pid");
        ps_engine *engine = log_path && pid_path
                            ? ps_engine_alloc(log_path, pid_path, on_exit, userdata) : NULL;

        free(log_path);
        free(pid_path);
        return engine;
}

int ps_engine_real_adopt(struct event_base *base, const ps_engine_spec *spec,
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
        r = ps_engine_run_uid(opts, &want_uid, err, errlen);
        if (r < 0)
                return r;
        engine = adoption_new(spec, opts, on_exit, userdata);
        if (!engine)
                return -ENOMEM;
        r = ps_engine_read_pid_file(engine->pid_path, &pid, err, errlen);
        if (r < 0) {
                ps_engine_real_free(engine);
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
                ps_engine_real_free(engine);
                return r;
        }
        argv = NULL;
        (void) ps_engine_build_argv(spec, &argv, NULL, 0);
        same = engine->pidfd >= 0 && argv && ps_engine_cmdline_is(pid, argv) && getpgid(pid) == pid;
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
                ps_engine_real_free(engine);
                return r;
        }
        engine->pid = pid;
        engine->running = true;
        engine->log_start = lstat(engine->log_path, &st) == 0 && S_ISREG(st.st_mode)
                                    ? (int64_t) st.st_size : 0;
        if (ps_engine_watch_exit(base, engine) < 0) {
                snprintf(err, errlen, "cannot watch the adopted engine");
                ps_engine_real_free(engine);
                return -ENOMEM;
        }
        *ret = engine;
        return 0;
}

/* ---- identity by record --------------------------------------------------- */


static void hash_hex(const void *data, size_t len, char hex[65]) {
        ps_sha256 c;

        ps_sha256_init(&c);
        ps_sha256_update(&c, data, len);
        ps_sha256_final_hex(&c, hex);
}

int ps_engine_argv_hash(const ps_engine_spec *spec, char hex[65], char *err, size_t errlen) {
        ps_sha256 c;
        char **argv = NULL;
        int r;

        if (!spec || !hex)
                return -EINVAL;
        r = ps_engine_build_argv(spec, &argv, err, errlen);
        if (r < 0 || !argv)
                return r < 0 ? r : -ENOMEM;
        ps_sha256_init(&c);
        for (size_t i = 0; argv[i]; i++)
                ps_sha256_update(&c, argv[i], strlen(argv[i]) + 1);
        ps_sha256_final_hex(&c, hex);
        free(argv);
        return 0;
}

/* /proc/PID/stat field 22 (starttime, clock ticks after boot). */
static int start_time_of(pid_t pid, uint64_t *ret) {
        char buf[1024];
        const char *p;
        unsigned long long v;
        ssize_t n = ps_read_proc(pid, "stat", buf, sizeof(buf));

        if (n < 0)
                return (int) n;
        /* The name (field 2) may hold anything: fields resume after its
         * last ')'; field 3 is the first of them. */
        p = strrchr(buf, ')');
        if (!p)
                return -EIO;
        p++;
        /* A zombie is gone: only its entry waits for a reaper. */
        if (p[0] == ' ' && (p[1] == 'Z' || p[1] == 'X'))
                return -ESRCH;
        for (int field = 3; field < 22; field++) {
                p = strchr(p + 1, ' ');
                if (!p)
                        return -EIO;
        }
        if (sscanf(p, " %llu", &v) != 1)
                return -EIO;
        *ret = (uint64_t) v;
        return 0;
}

/* SHA-256 of /proc/PID/cmdline (each argument with its NUL), read up to
 * 1 MiB. */
static int cmdline_hash(pid_t pid, char hex[65]) {
        size_t len;
        char *buf;
        int r = read_cmdline(pid, &buf, &len);

        if (r < 0)
                return r;
        hash_hex(buf ? buf : "", len, hex);
        free(buf);
        return 0;
}

int ps_engine_proc_identity(pid_t pid, ps_engine_identity *ret) {
        int r;

        if (pid <= 0 || !ret)
                return -EINVAL;
        *ret = (ps_engine_identity) { .pid = pid };
        if ((r = start_time_of(pid, &ret->start_time)) < 0 || (r = process_uid(pid, &ret->uid)) < 0 ||
            (r = cmdline_hash(pid, ret->cmdline_hash)) < 0)
                return r == -ENOENT ? -ESRCH : r;
        return 0;
}

int ps_engine_adopt_recorded(struct event_base *base, const ps_engine_spec *spec,
                             const ps_engine_options *opts, const ps_engine_identity *want,
                             ps_engine_exit_fn on_exit, void *userdata, ps_engine **ret,
                             char *err, size_t errlen) {
        ps_engine_identity now;
        ps_engine *engine;
        struct pollfd pfd;
        struct stat st;
        char **argv = NULL, argv_hex[65];
        bool runs_spec;
        int r;

        if (!base || !spec || !opts || !opts->runtime_dir || !want || !ret)
                return -EINVAL;
        engine = adoption_new(spec, opts, on_exit, userdata);
        if (!engine)
                return -ENOMEM;
        /* The pidfd first: what is checked next is the process it holds. */
        engine->pidfd = (int) syscall(SYS_pidfd_open, want->pid, 0);
        if (engine->pidfd < 0) {
                r = errno == ESRCH ? -ESRCH : -errno;
                snprintf(err, errlen, "pid %d: %s", (int) want->pid, strerror(-r));
                ps_engine_real_free(engine);
                return r;
        }
        r = ps_engine_proc_identity(want->pid, &now);
        pfd = (struct pollfd) { .fd = engine->pidfd, .events = POLLIN };
        if (r < 0 || poll(&pfd, 1, 0) != 0) {
                snprintf(err, errlen, "pid %d is gone", (int) want->pid);
                ps_engine_real_free(engine);
                return -ESRCH;
        }
        /* Another process took the pid over: never ours to signal. The
         * recorded hash is the spec's argv; the process must run exactly
         * that, or run it as a "#!" script through its interpreter. */
        runs_spec = ps_engine_argv_hash(spec, argv_hex, NULL, 0) == 0 &&
                    strcmp(argv_hex, want->cmdline_hash) == 0 &&
                    ps_engine_build_argv(spec, &argv, NULL, 0) == 0 &&
                    ps_engine_cmdline_is(want->pid, argv);
        free(argv);
        if (now.start_time != want->start_time || now.uid != want->uid ||
            getpgid(want->pid) != want->pid || !runs_spec) {
                snprintf(err, errlen, "pid %d is another process now (start time, user or command "
                         "line differ from the engine recorded)", (int) want->pid);
                ps_engine_real_free(engine);
                return -ESTALE;
        }
        engine->pid = want->pid;
        engine->running = true;
        engine->log_start = lstat(engine->log_path, &st) == 0 && S_ISREG(st.st_mode)
                                    ? (int64_t) st.st_size : 0;
        /* The PID file stays for people and tools (the store decides):
         * written again when it is gone, never over another engine's. */
        if (lstat(engine->pid_path, &st) < 0 && errno == ENOENT)
                (void) ps_engine_write_pid_file(engine->pid_path, engine->pid);
        if (ps_engine_watch_exit(base, engine) < 0) {
                snprintf(err, errlen, "cannot watch the adopted engine");
                ps_engine_real_free(engine);
                return -ENOMEM;
        }
        *ret = engine;
        return 0;
}
