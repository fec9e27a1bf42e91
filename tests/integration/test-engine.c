/* SPDX-License-Identifier: MIT */
/*
 * Engine processes for real: /bin/sh scripts and coreutils stand in for
 * llama-server. Exits are waited for on the event loop (the pidfd), bounded
 * by a generous deadline; nothing sleeps for a fixed time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "pool-services/supervise/engine.h"
#include "harness.h"


typedef struct fx {
        struct event_base *base;
        char dir[64];
        ps_engine_options opts;
        /* the exit callback's record */
        int exits;
        ps_exit_status st;
        bool pid_file_gone_in_callback;
        bool free_in_callback;
        /* processes a test left running on purpose: killed by teardown
         * should an assertion end the test first */
        pid_t strays[4];
        size_t n_strays;
} fx;

/* ---- helpers -------------------------------------------------------------- */

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        th_tmpdir(f->dir, sizeof(f->dir), "engine");
        f->base = event_base_new();
        assert_non_null(f->base);
        f->opts.runtime_dir = f->dir;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        for (size_t i = 0; i < f->n_strays; i++) {
                (void) kill(-f->strays[i], SIGKILL);
                (void) kill(f->strays[i], SIGKILL);
                (void) waitpid(f->strays[i], NULL, 0);
        }
        event_base_free(f->base);
        th_rmtree(f->dir);
        free(f);
        return 0;
}

static ps_engine_spec *spec_new(const char *binary, ...) {
        ps_engine_spec *s = ps_engine_spec_new();
        const char *a;
        va_list ap;

        assert_non_null(s);
        s->binary_path = strdup(binary);
        s->pool_id = strdup("llama_7b");          /* '_' is legal in ids */
        s->replica_id = strdup("r0");
        va_start(ap, binary);
        while ((a = va_arg(ap, const char *))) {
                s->flags = realloc(s->flags, (s->n_flags + 1) * sizeof(char *));
                s->flags[s->n_flags++] = strdup(a);
        }
        va_end(ap);
        return s;
}

static void spec_add_env(ps_engine_spec *s, const char *entry) {
        s->env = realloc(s->env, (s->n_env + 1) * sizeof(char *));
        s->env[s->n_env++] = strdup(entry);
}

static void path_in(const fx *f, const char *name, char *buf, size_t len) {
        snprintf(buf, len, "%s/%s", f->dir, name);
}

static void spit(const char *path, const char *text, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        assert_int_equal(chmod(path, mode), 0);
}

static bool has_line(const char *text, const char *line) {
        size_t n = strlen(line);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

static size_t count_prefix(const char *text, const char *prefix) {
        size_t n = 0, len = strlen(prefix);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, prefix, len) == 0)
                        n++;
        return n;
}

static void on_exit_cb(ps_engine *engine, const ps_exit_status *st, void *userdata) {
        fx *f = userdata;

        f->exits++;
        f->st = *st;
        f->pid_file_gone_in_callback = access(ps_engine_pid_path(engine), F_OK) < 0;
        assert_false(ps_engine_running(engine));
        if (f->free_in_callback)
                ps_engine_free(engine);
}

static bool exits_at_least(void *fixture, const void *arg) {
        const fx *f = fixture;

        return f->exits >= *(const int *) arg;
}

/* Runs the loop until the engine has exited (the callback ran), within the
 * deadline. */
static void wait_exit(fx *f, int want_exits) {
        th_loop_until(f->base, exits_at_least, f, &want_exits, TH_WAIT_MS);
        assert_int_equal(f->exits, want_exits);
}

/* For what no event tells us (another process's state): look again every
 * few milliseconds until it holds or the deadline passes. */
static bool poll_until(bool (*cond)(const void *), const void *arg) {
        int64_t end = th_now_ms() + TH_WAIT_MS;
        struct timespec pause = { 0, 5 * 1000 * 1000 };

        while (!cond(arg)) {
                if (th_now_ms() > end)
                        return false;
                nanosleep(&pause, NULL);
        }
        return true;
}

static bool log_has_newline(const void *arg) {
        char *text = th_slurp(arg, NULL);
        bool ok = text && strchr(text, '\n');

        free(text);
        return ok;
}

static ps_engine *spawn_ok(fx *f, const ps_engine_spec *s) {
        ps_engine *e = NULL;
        char err[512] = "";
        int r;

        r = ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err));
        if (r != 0)
                fail_msg("spawn: %d %s", r, err);
        assert_non_null(e);
        return e;
}

static ps_engine *run_to_exit(fx *f, const ps_engine_spec *s) {
        int before = f->exits;
        ps_engine *e = spawn_ok(f, s);

        wait_exit(f, before + 1);
        return e;
}

static void assert_nothing_left(const fx *f) {
        char path[PATH_MAX];

        path_in(f, "llama_7b_r0.pid", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
        path_in(f, "engine-llama_7b_r0.log", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
}

/* ---- argv, environment, working directory --------------------------------- */

static void test_argv_is_exact(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c",
                                     "for a in \"$@\"; do printf '[%s]\\n' \"$a\"; done > args",
                                     "sh", "a", "b c", "", "d$e", "--flag=*", NULL);
        char path[PATH_MAX];
        ps_engine *e;
        char *text;

        e = run_to_exit(f, s);
        assert_true(f->st.exited);
        assert_int_equal(f->st.code, 0);
        /* written relative to the working directory: the runtime_dir */
        path_in(f, "args", path, sizeof(path));
        text = th_slurp(path, NULL);
        assert_non_null(text);
        assert_string_equal(text, "[a]\n[b c]\n[]\n[d$e]\n[--flag=*]\n");
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_argv0_is_the_binary(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/cat", "/proc/self/cmdline", NULL);
        static const char want[] = "/bin/cat\0/proc/self/cmdline";
        ps_engine *e;
        size_t len;
        char *text;

        e = run_to_exit(f, s);
        text = th_slurp(ps_engine_log_path(e), &len);
        assert_int_equal(len, sizeof(want));
        assert_memory_equal(text, want, sizeof(want));
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_workdir(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "pwd", NULL);
        char *text, want[PATH_MAX + 1];
        ps_engine *e;

        s->workdir = strdup("/");
        e = run_to_exit(f, s);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_string_equal(text, "/\n");
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);

        /* without one: the runtime_dir */
        s = spec_new("/bin/sh", "-c", "pwd -P", NULL);
        free(s->replica_id);
        s->replica_id = strdup("r1");              /* a log of its own */
        e = run_to_exit(f, s);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_non_null(realpath(f->dir, want));
        strcat(want, "\n");
        assert_string_equal(text, want);
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

/* Is every line of env(1)'s output one of the names the engine may get? */
static bool only_allowed_names(const char *text) {
        static const char *const allowed[] = {
                "PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "PS_TEST_PASSED",
                "PS_TEST_PASS_OVERRIDDEN", "FOO", "EMPTY", "CUDA_DEVICE_ORDER",
                "CUDA_VISIBLE_DEVICES",
        };

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                size_t n = strcspn(p, "=\n");
                bool ok = strncmp(p, "LC_", 3) == 0;

                for (size_t i = 0; !ok && i < sizeof(allowed) / sizeof(allowed[0]); i++)
                        ok = strlen(allowed[i]) == n && strncmp(p, allowed[i], n) == 0;
                if (!ok) {
                        print_error("unexpected variable: %.*s\n", (int) n, p);
                        return false;
                }
        }
        return true;
}

/* Built from nothing: the daemon's secrets stay out. */
static void test_environment(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/usr/bin/env", NULL);
        const char *const pass[] = { "PS_TEST_PASSED", "PS_TEST_PASSED_UNSET",
                                     "PS_TEST_PASS_OVERRIDDEN" };
        struct passwd *pw = getpwuid(geteuid());
        char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
        char want[PATH_MAX + 64];
        ps_engine *e;
        char *text;

        assert_non_null(pw);
        setenv("LLORCH_API_TOKEN", "secret", 1);
        setenv("PS_TEST_PARENT", "from-parent", 1);
        setenv("PS_TEST_PASSED", "passed", 1);
        unsetenv("PS_TEST_PASSED_UNSET");
        setenv("PS_TEST_PASS_OVERRIDDEN", "parent", 1);
        setenv("CUDA_VISIBLE_DEVICES", "7", 1);
        setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST", 1);
        setenv("HOME", "/the/daemons/home", 1);
        setenv("TZ", "Europe/Amsterdam", 1);
        setenv("LC_TIME", "C.UTF-8", 1);
        f->opts.env_pass = (char *const *) pass;
        f->opts.n_env_pass = sizeof(pass) / sizeof(pass[0]);
        spec_add_env(s, "FOO=bar baz");
        spec_add_env(s, "PS_TEST_PASS_OVERRIDDEN=spec");
        spec_add_env(s, "EMPTY=");
        spec_add_env(s, "CUDA_DEVICE_ORDER=FASTEST_FIRST");
        s->cuda_visible_devices = strdup("1,0");
        e = run_to_exit(f, s);

        if (old_home)
                setenv("HOME", old_home, 1);
        else
                unsetenv("HOME");
        free(old_home);
        unsetenv("LLORCH_API_TOKEN");
        unsetenv("PS_TEST_PARENT");
        unsetenv("PS_TEST_PASSED");
        unsetenv("PS_TEST_PASS_OVERRIDDEN");
        unsetenv("CUDA_VISIBLE_DEVICES");
        unsetenv("CUDA_DEVICE_ORDER");
        unsetenv("TZ");
        unsetenv("LC_TIME");

        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_non_null(text);
        assert_int_equal(count_prefix(text, "LLORCH_API_TOKEN="), 0);
        assert_int_equal(count_prefix(text, "PS_TEST_PARENT="), 0);
        assert_true(only_allowed_names(text));
        snprintf(want, sizeof(want), "PATH=%s", getenv("PATH"));
        assert_true(has_line(text, want));
        /* the engine user's, not the daemon's HOME */
        snprintf(want, sizeof(want), "HOME=%s", pw->pw_dir);
        assert_true(has_line(text, want));
        assert_int_equal(count_prefix(text, "HOME="), 1);
        snprintf(want, sizeof(want), "USER=%s", pw->pw_name);
        assert_true(has_line(text, want));
        snprintf(want, sizeof(want), "LOGNAME=%s", pw->pw_name);
        assert_true(has_line(text, want));
        assert_true(has_line(text, "TZ=Europe/Amsterdam"));
        assert_true(has_line(text, "LC_TIME=C.UTF-8"));
        /* env_pass: copied when the daemon has it, the spec overriding */
        assert_true(has_line(text, "PS_TEST_PASSED=passed"));
        assert_int_equal(count_prefix(text, "PS_TEST_PASSED_UNSET="), 0);
        assert_true(has_line(text, "PS_TEST_PASS_OVERRIDDEN=spec"));
        assert_int_equal(count_prefix(text, "PS_TEST_PASS_OVERRIDDEN="), 1);
        assert_true(has_line(text, "FOO=bar baz"));
        assert_true(has_line(text, "EMPTY="));
        /* CUDA numbers devices as NVML does, whatever the spec says */
        assert_true(has_line(text, "CUDA_DEVICE_ORDER=PCI_BUS_ID"));
        assert_int_equal(count_prefix(text, "CUDA_DEVICE_ORDER="), 1);
        assert_true(has_line(text, "CUDA_VISIBLE_DEVICES=1,0"));
        assert_int_equal(count_prefix(text, "CUDA_VISIBLE_DEVICES="), 1);
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

/* The engine's exec has set up its command line: a spawn returns once
 * the child has left our memory (vfork semantics), which the kernel
 * signals a little before /proc/PID/cmdline shows the new program. */
static bool cmdline_set(const void *arg) {
        char path[64], *text;
        size_t len = 0;

        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) *(const pid_t *) arg);
        text = th_slurp(path, &len);
        free(text);
        return len > 0;
}

/* What a running engine's /proc/<pid>/environ shows, as "A=1\nB=2\n". */
static char *proc_environ(pid_t pid) {
        char path[64], *text;
        size_t len;

        snprintf(path, sizeof(path), "/proc/%d/environ", (int) pid);
        text = th_slurp(path, &len);
        assert_non_null(text);
        for (size_t i = 0; i < len; i++)
                if (text[i] == '\0')
                        text[i] = '\n';
        return text;
}

static void test_secret_not_in_proc_environ(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sleep", "1000", NULL);
        ps_engine *e;
        char *text;

        setenv("LLORCH_API_TOKEN", "secret", 1);
        e = spawn_ok(f, s);
        unsetenv("LLORCH_API_TOKEN");
        f->strays[f->n_strays++] = ps_engine_pid(e);
        assert_true(poll_until(cmdline_set, &f->strays[f->n_strays - 1]));
        text = proc_environ(ps_engine_pid(e));
        assert_int_equal(count_prefix(text, "LLORCH_API_TOKEN="), 0);
        assert_int_equal(count_prefix(text, "PATH="), 1);
        assert_int_equal(count_prefix(text, "HOME="), 1);
        assert_true(has_line(text, "CUDA_DEVICE_ORDER=PCI_BUS_ID"));
        free(text);
        assert_int_equal(ps_engine_signal(e, SIGKILL), 0);
        wait_exit(f, 1);
        f->n_strays = 0;                   /* reaped */
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_bad_env_pass_name_refused(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/true", NULL);
        const char *const pass[] = { "HF_HOME", "A=B" };
        ps_engine *e = NULL;
        char err[256] = "";

        f->opts.env_pass = (char *const *) pass;
        f->opts.n_env_pass = 2;
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -EINVAL);
        assert_null(e);
        assert_string_equal(err, "env_pass name \"A=B\": not a variable name");
        assert_nothing_left(f);
        ps_engine_spec_free(s);
}

static void test_cuda_empty_means_no_gpus(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/usr/bin/env", NULL);
        ps_engine *e;
        char *text;

        setenv("CUDA_VISIBLE_DEVICES", "0", 1);
        s->cuda_visible_devices = strdup("");
        e = run_to_exit(f, s);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_true(has_line(text, "CUDA_VISIBLE_DEVICES="));
        assert_int_equal(count_prefix(text, "CUDA_VISIBLE_DEVICES="), 1);
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
        unsetenv("CUDA_VISIBLE_DEVICES");
}

static void test_cuda_null_leaves_it_unset(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/usr/bin/env", NULL);
        ps_engine *e;
        char *text;

        unsetenv("CUDA_VISIBLE_DEVICES");
        e = run_to_exit(f, s);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_int_equal(count_prefix(text, "CUDA_VISIBLE_DEVICES="), 0);
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_bad_env_entry_refused(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/true", NULL);
        ps_engine *e = NULL;
        char err[256] = "", path[PATH_MAX];

        spec_add_env(s, "NO_EQUALS_SIGN");
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -EINVAL);
        assert_null(e);
        assert_non_null(strstr(err, "NO_EQUALS_SIGN"));
        path_in(f, "engine-llama_7b_r0.log", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
        ps_engine_spec_free(s);
}

/* ---- files ---------------------------------------------------------------- */

static void test_log_appends(void **state) {
        fx *f = *state;
        ps_engine_spec *s1 = spec_new("/bin/sh", "-c", "echo out-one; echo err-one >&2", NULL);
        ps_engine_spec *s2 = spec_new("/bin/sh", "-c", "echo out-two; echo err-two >&2", NULL);
        char path[PATH_MAX];
        struct stat st;
        ps_engine *e;
        char *text;
        size_t len;

        path_in(f, "engine-llama_7b_r0.log", path, sizeof(path));
        e = run_to_exit(f, s1);
        assert_string_equal(ps_engine_log_path(e), path);
        assert_int_equal(ps_engine_log_start(e), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777 & ~0640, 0);
        ps_engine_free(e);
        text = th_slurp(path, &len);
        assert_string_equal(text, "out-one\nerr-one\n");
        free(text);

        e = run_to_exit(f, s2);
        assert_int_equal(ps_engine_log_start(e), (int64_t) len);
        text = th_slurp(path, NULL);
        assert_string_equal(text, "out-one\nerr-one\nout-two\nerr-two\n");
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s1);
        ps_engine_spec_free(s2);
}

static void test_custom_file_names(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "echo surge", NULL);
        char path[PATH_MAX];
        ps_engine *e;
        char *text;

        f->opts.log_name = "engine-x.surge.log";
        f->opts.pid_name = "x.surge.pid";
        e = spawn_ok(f, s);
        path_in(f, "x.surge.pid", path, sizeof(path));
        assert_string_equal(ps_engine_pid_path(e), path);
        path_in(f, "engine-x.surge.log", path, sizeof(path));
        assert_string_equal(ps_engine_log_path(e), path);
        wait_exit(f, 1);
        text = th_slurp(path, NULL);
        assert_string_equal(text, "surge\n");
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_pid_file_lifecycle(void **state) {
        fx *f = *state;
        /* waits for its stdin (/dev/null): exits at once, after spawn returns */
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "read x; exit 0", NULL);
        char path[PATH_MAX], want[32];
        ps_engine *e;
        char *text;

        e = spawn_ok(f, s);
        path_in(f, "llama_7b_r0.pid", path, sizeof(path));
        assert_string_equal(ps_engine_pid_path(e), path);
        assert_true(ps_engine_pid(e) > 0);
        assert_true(ps_engine_running(e));
        /* written before spawn returned, whatever the engine does next */
        text = th_slurp(path, NULL);
        assert_non_null(text);
        snprintf(want, sizeof(want), "%d\n", (int) ps_engine_pid(e));
        assert_string_equal(text, want);
        free(text);

        wait_exit(f, 1);
        assert_true(f->pid_file_gone_in_callback);
        assert_int_equal(access(path, F_OK), -1);
        assert_false(ps_engine_running(e));
        assert_true(ps_engine_pid(e) > 0);            /* still known, for logs */
        assert_int_equal(ps_engine_signal(e, SIGTERM), -ESRCH);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static bool is_symlink(const char *path) {
        struct stat st;

        return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* Whoever can write to runtime_dir must not get the daemon to append to,
 * or create, a file elsewhere. */
static void test_log_symlink_refused(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "echo written", NULL);
        char log[PATH_MAX], target[PATH_MAX], pid[PATH_MAX], err[PATH_MAX + 128],
             want[PATH_MAX + 128];
        ps_engine *e = NULL;
        char *text;

        path_in(f, "engine-llama_7b_r0.log", log, sizeof(log));
        path_in(f, "llama_7b_r0.pid", pid, sizeof(pid));
        path_in(f, "precious", target, sizeof(target));
        spit(target, "keep me\n", 0640);
        assert_int_equal(symlink(target, log), 0);
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -ELOOP);
        assert_null(e);
        snprintf(want, sizeof(want), "log file %s is a symbolic link; refusing to follow it", log);
        assert_string_equal(err, want);
        text = th_slurp(target, NULL);
        assert_string_equal(text, "keep me\n");
        free(text);
        assert_true(is_symlink(log));
        assert_int_equal(access(pid, F_OK), -1);

        /* a dangling one creates nothing either */
        assert_int_equal(unlink(log), 0);
        path_in(f, "made-through-link", target, sizeof(target));
        assert_int_equal(symlink(target, log), 0);
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -ELOOP);
        assert_string_equal(err, want);
        assert_int_equal(access(target, F_OK), -1);
        assert_int_equal(f->exits, 0);
        ps_engine_spec_free(s);
}

static void test_log_hard_link_refused(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "echo written", NULL);
        char log[PATH_MAX], target[PATH_MAX], err[PATH_MAX + 128], want[PATH_MAX + 128];
        ps_engine *e = NULL;
        char *text;

        path_in(f, "engine-llama_7b_r0.log", log, sizeof(log));
        path_in(f, "precious", target, sizeof(target));
        spit(target, "keep me\n", 0600);
        assert_int_equal(link(target, log), 0);
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -EPERM);
        assert_null(e);
        snprintf(want, sizeof(want), "log file %s has 2 hard links; refusing to write through one",
                 log);
        assert_string_equal(err, want);
        text = th_slurp(target, NULL);
        assert_string_equal(text, "keep me\n");
        free(text);
        assert_int_equal(f->exits, 0);
        ps_engine_spec_free(s);
}

static void test_log_of_another_user_refused(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "echo written", NULL);
        char log[PATH_MAX], err[PATH_MAX + 128], want[PATH_MAX + 128];
        ps_engine *e = NULL;
        char *text;

        if (geteuid() != 0) {
                print_message("skipped: giving a file to another uid needs root\n");
                skip();
        }
        path_in(f, "engine-llama_7b_r0.log", log, sizeof(log));
        spit(log, "theirs\n", 0666);
        assert_int_equal(chown(log, 65534, 65534), 0);
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -EPERM);
        assert_null(e);
        snprintf(want, sizeof(want), "log file %s is owned by uid 65534, not the daemon's user (uid 0)",
                 log);
        assert_string_equal(err, want);
        text = th_slurp(log, NULL);
        assert_string_equal(text, "theirs\n");
        free(text);
        ps_engine_spec_free(s);
}

/* The PID file replaces a link at its name instead of writing through it. */
static void test_pid_symlink_not_followed(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "read x; exit 0", NULL);
        char pid[PATH_MAX], target[PATH_MAX], want[32];
        ps_engine *e;
        char *text;

        path_in(f, "llama_7b_r0.pid", pid, sizeof(pid));
        path_in(f, "precious", target, sizeof(target));
        spit(target, "keep me\n", 0644);
        assert_int_equal(symlink(target, pid), 0);
        e = spawn_ok(f, s);
        assert_false(is_symlink(pid));
        text = th_slurp(pid, NULL);
        snprintf(want, sizeof(want), "%d\n", (int) ps_engine_pid(e));
        assert_string_equal(text, want);
        free(text);
        text = th_slurp(target, NULL);
        assert_string_equal(text, "keep me\n");
        free(text);
        wait_exit(f, 1);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

/* ---- refusals --------------------------------------------------------------- */

static void test_missing_binary(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/nonexistent/llama-server", "--port", "1", NULL);
        ps_engine *e = NULL;
        char err[256] = "";

        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -ENOENT);
        assert_null(e);
        assert_string_equal(err, "binary /nonexistent/llama-server: No such file or directory");
        assert_nothing_left(f);
        ps_engine_spec_free(s);
}

static void test_not_executable(void **state) {
        fx *f = *state;
        char bin[PATH_MAX], err[512] = "", want[PATH_MAX + 64];
        ps_engine_spec *s;
        ps_engine *e = NULL;

        path_in(f, "not-exec", bin, sizeof(bin));
        spit(bin, "#!/bin/sh\nexit 0\n", 0644);
        s = spec_new(bin, NULL);
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -EACCES);
        assert_null(e);
        snprintf(want, sizeof(want), "binary %s: not executable", bin);
        assert_string_equal(err, want);
        assert_nothing_left(f);
        ps_engine_spec_free(s);
}

static void test_directory_refused(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/tmp", NULL);
        ps_engine *e = NULL;
        char err[256] = "";

        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -EACCES);
        assert_null(e);
        assert_string_equal(err, "binary /tmp: not a regular file");
        assert_nothing_left(f);
        ps_engine_spec_free(s);
}

/* A copy of the program at from, at dir/name with mode. */
static void copy_program(const fx *f, const char *from, const char *name, mode_t mode,
                         char *path, size_t len) {
        size_t n;
        char *bytes = th_slurp(from, &n);
        int fd;

        assert_non_null(bytes);
        path_in(f, name, path, len);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, bytes, n), (ssize_t) n);
        close(fd);
        free(bytes);
        assert_int_equal(chmod(path, mode), 0);
}

static int spawn_err(fx *f, const char *binary, char *err, size_t len) {
        ps_engine_spec *s = spec_new(binary, NULL);
        ps_engine *e = NULL;
        int r;

        r = ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, len);
        assert_null(e);
        ps_engine_spec_free(s);
        return r;
}

/* Whoever may write the binary decides what the engine does. */
static void test_writable_binary_refused(void **state) {
        fx *f = *state;
        char bin[PATH_MAX], err[PATH_MAX * 2 + 128], want[PATH_MAX * 2 + 128];
        ps_engine_spec *s;
        ps_engine *e;

        copy_program(f, "/bin/true", "true-copy", 0775, bin, sizeof(bin));
        assert_int_equal(spawn_err(f, bin, err, sizeof(err)), -EPERM);
        snprintf(want, sizeof(want), "binary %s is group-writable (mode 0775): chmod g-w,o-w %s",
                 bin, bin);
        assert_string_equal(err, want);
        assert_nothing_left(f);

        assert_int_equal(chmod(bin, 0757), 0);
        assert_int_equal(spawn_err(f, bin, err, sizeof(err)), -EPERM);
        snprintf(want, sizeof(want), "binary %s is world-writable (mode 0757): chmod g-w,o-w %s",
                 bin, bin);
        assert_string_equal(err, want);

        assert_int_equal(chmod(bin, 0777), 0);
        assert_int_equal(spawn_err(f, bin, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "is group- and world-writable (mode 0777)"));
        assert_nothing_left(f);

        /* the same file, writable by its owner only, runs */
        assert_int_equal(chmod(bin, 0755), 0);
        s = spec_new(bin, NULL);
        e = run_to_exit(f, s);
        assert_true(f->st.exited);
        assert_int_equal(f->st.code, 0);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_foreign_binary_refused(void **state) {
        fx *f = *state;
        char bin[PATH_MAX], err[PATH_MAX * 2 + 128], want[PATH_MAX * 2 + 128];

        if (geteuid() != 0) {
                print_message("skipped: giving a file to another uid needs root\n");
                skip();
        }
        copy_program(f, "/bin/true", "true-foreign", 0755, bin, sizeof(bin));
        assert_int_equal(chown(bin, 65534, 65534), 0);
        assert_int_equal(spawn_err(f, bin, err, sizeof(err)), -EPERM);
        snprintf(want, sizeof(want),
                 "binary %s is owned by uid 65534, neither root nor the daemon's user (uid 0): "
                 "chown root %s", bin, bin);
        assert_string_equal(err, want);
        assert_nothing_left(f);
}

/* A config may name a link (/opt/llama/current/llama-server): the file it
 * leads to is what is checked. */
static void test_binary_through_symlink(void **state) {
        fx *f = *state;
        char link[PATH_MAX], bin[PATH_MAX], err[PATH_MAX * 2 + 128], want[PATH_MAX * 2 + 128];
        ps_engine_spec *s;
        ps_engine *e;
        char *text;

        path_in(f, "sh-link", link, sizeof(link));
        assert_int_equal(symlink("/bin/sh", link), 0);
        s = spec_new(link, "-c", "echo via-link", NULL);
        e = run_to_exit(f, s);
        assert_int_equal(f->st.code, 0);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_string_equal(text, "via-link\n");
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);

        copy_program(f, "/bin/true", "true-gw", 0775, bin, sizeof(bin));
        path_in(f, "true-link", link, sizeof(link));
        assert_int_equal(symlink(bin, link), 0);
        assert_int_equal(spawn_err(f, link, err, sizeof(err)), -EPERM);
        snprintf(want, sizeof(want), "binary %s is group-writable (mode 0775): chmod g-w,o-w %s",
                 link, link);
        assert_string_equal(err, want);
}

/* Executed through a descriptor, a script's interpreter must still be able
 * to open it. */
static void test_script_engine(void **state) {
        fx *f = *state;
        char bin[PATH_MAX];
        ps_engine_spec *s;
        ps_engine *e;
        char *text;

        path_in(f, "engine.sh", bin, sizeof(bin));
        spit(bin, "#!/bin/sh\necho \"script: $*\"\nexit 4\n", 0755);
        s = spec_new(bin, "a", "b c", NULL);
        e = run_to_exit(f, s);
        assert_true(f->st.exited);
        assert_int_equal(f->st.code, 4);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_string_equal(text, "script: a b c\n");
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_exec_failure_reported_by_spawn(void **state) {
        fx *f = *state;
        char bin[PATH_MAX], err[512] = "", want[PATH_MAX + 64], log[PATH_MAX];
        ps_engine_spec *s;
        ps_engine *e = NULL;
        char *text;

        /* executable, but neither ELF nor #!: execve says ENOEXEC */
        path_in(f, "garbage", bin, sizeof(bin));
        spit(bin, "\x01\x02 this is not a program\n", 0755);
        s = spec_new(bin, NULL);
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -ENOEXEC);
        assert_null(e);
        snprintf(want, sizeof(want), "binary %s: %s", bin, strerror(ENOEXEC));
        assert_string_equal(err, want);
        /* the log it created is gone again */
        assert_nothing_left(f);

        /* a log that was there before stays, untouched */
        path_in(f, "engine-llama_7b_r0.log", log, sizeof(log));
        spit(log, "earlier\n", 0640);
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -ENOEXEC);
        text = th_slurp(log, NULL);
        assert_string_equal(text, "earlier\n");
        free(text);
        assert_int_equal(f->exits, 0);     /* reported by spawn, not as an exit */
        ps_engine_spec_free(s);
}

static void test_missing_workdir_reported(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/true", NULL);
        ps_engine *e = NULL;
        char err[256] = "";

        s->workdir = strdup("/nonexistent/work");
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -ENOENT);
        assert_null(e);
        assert_non_null(strstr(err, "/nonexistent/work"));
        assert_nothing_left(f);
        ps_engine_spec_free(s);
}

static void test_missing_runtime_dir(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/true", NULL);
        ps_engine *e = NULL;
        char err[256] = "";

        f->opts.runtime_dir = "/nonexistent/runtime";
        assert_int_equal(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)),
                         -ENOENT);
        assert_null(e);
        assert_non_null(strstr(err, "/nonexistent/runtime/engine-llama_7b_r0.log"));
        ps_engine_spec_free(s);
}

/* ---- exits and signals ------------------------------------------------------ */

static void test_exit_code(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "exit 3", NULL);
        ps_engine *e;

        e = run_to_exit(f, s);
        assert_true(f->st.exited);
        assert_int_equal(f->st.code, 3);
        assert_false(f->st.status_unknown);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_killed_by_signal(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "kill -SEGV $$", NULL);
        struct rlimit no_core = { 0, 0 };
        ps_engine *e;

        setrlimit(RLIMIT_CORE, &no_core);  /* inherited: no core file */
        e = run_to_exit(f, s);
        assert_false(f->st.exited);
        assert_int_equal(f->st.signo, SIGSEGV);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_free_inside_exit_callback(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/true", NULL);

        f->free_in_callback = true;
        (void) spawn_ok(f, s);
        wait_exit(f, 1);
        /* one more pass: nothing may touch the freed engine */
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        ps_engine_spec_free(s);
}

typedef struct reaped {
        pid_t pid;
        int status;
} reaped;

static bool reap_now(const void *arg) {
        reaped *r = (reaped *) (uintptr_t) arg;

        return waitpid(r->pid, &r->status, WNOHANG) == r->pid;
}

static void test_signal_reaches_the_group(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "/bin/sleep 1000 & echo $!; wait", NULL);
        reaped grandchild = { 0 };
        ps_engine *e;
        char *text;

        /* the orphaned grandchild comes to us, so its death can be read */
        assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
        e = spawn_ok(f, s);
        assert_true(poll_until(log_has_newline, ps_engine_log_path(e)));
        text = th_slurp(ps_engine_log_path(e), NULL);
        grandchild.pid = (pid_t) atoi(text);
        free(text);
        assert_true(grandchild.pid > 0);
        assert_int_equal(getpgid(grandchild.pid), ps_engine_pid(e));

        assert_int_equal(ps_engine_signal(e, SIGTERM), 0);
        wait_exit(f, 1);
        assert_false(f->st.exited);
        assert_int_equal(f->st.signo, SIGTERM);
        assert_true(poll_until(reap_now, &grandchild));
        assert_true(WIFSIGNALED(grandchild.status));
        assert_int_equal(WTERMSIG(grandchild.status), SIGTERM);
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_own_session(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sleep", "1000", NULL);
        ps_engine *e;

        e = spawn_ok(f, s);
        assert_int_equal(getpgid(ps_engine_pid(e)), ps_engine_pid(e));
        assert_int_equal(getsid(ps_engine_pid(e)), ps_engine_pid(e));
        assert_int_equal(ps_engine_signal(e, SIGKILL), 0);
        wait_exit(f, 1);
        assert_int_equal(f->st.signo, SIGKILL);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

/* ---- what the child inherits ------------------------------------------------ */

static void test_no_descriptor_leaks(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c",
                                     "echo /proc/self/fd/*; "
                                     "readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2", NULL);
        char log[PATH_MAX], want[PATH_MAX * 2 + 32];
        int leak, fds[4] = { 0 }, n = 0;
        ps_engine *e;
        char *text, *p;

        /* descriptors without close-on-exec, low and high */
        leak = open("/dev/null", O_RDONLY);
        assert_true(leak >= 0);
        assert_int_equal(dup2(leak, 50), 50);

        e = run_to_exit(f, s);
        text = th_slurp(ps_engine_log_path(e), NULL);
        p = text;
        /* "/proc/self/fd/0 /proc/self/fd/1 ...": the shell's glob holds one
         * descriptor of its own (the lowest free one, 3) while it reads */
        while ((p = strstr(p, "/proc/self/fd/"))) {
                p += strlen("/proc/self/fd/");
                assert_true(n < 4);
                fds[n++] = atoi(p);
        }
        assert_true(n == 3 || n == 4);
        for (int i = 0; i < n; i++)
                assert_int_equal(fds[i], i);
        assert_non_null(realpath(ps_engine_log_path(e), log));
        snprintf(want, sizeof(want), "/dev/null\n%s\n%s\n", log, log);
        assert_non_null(strstr(text, want));
        free(text);
        close(50);
        close(leak);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void on_usr2(int sig) {
        (void) sig;
}

/* Does /proc/<pid>/status text have "<key>\t<value>\n"? */
static bool status_is(const char *text, const char *key, const char *value) {
        char want[128];

        snprintf(want, sizeof(want), "\n%s:\t%s\n", key, value);
        return strstr(text, want) != NULL;
}

static void test_default_signal_state(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/cat", "/proc/self/status", NULL);
        struct sigaction ign = { .sa_handler = SIG_IGN }, handler = { .sa_handler = on_usr2 };
        struct sigaction old_pipe, old_usr2, old_hup;
        sigset_t block, old_mask;
        ps_engine *e;
        char *text;

        sigaction(SIGPIPE, &ign, &old_pipe);
        sigaction(SIGHUP, &ign, &old_hup);
        sigaction(SIGUSR2, &handler, &old_usr2);
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, &old_mask);

        e = run_to_exit(f, s);

        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        sigaction(SIGPIPE, &old_pipe, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
        sigaction(SIGUSR2, &old_usr2, NULL);

        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_true(status_is(text, "SigBlk", "0000000000000000"));
        assert_true(status_is(text, "SigIgn", "0000000000000000"));
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_engine_survives_free(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sleep", "1000", NULL);
        char stat_path[64], pid_path[PATH_MAX], *text;
        ps_engine *e;
        pid_t pid;
        int status;

        e = spawn_ok(f, s);
        pid = ps_engine_pid(e);
        ps_engine_free(e);
        event_base_loop(f->base, EVLOOP_NONBLOCK);

        assert_int_equal(kill(pid, 0), 0);
        snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", (int) pid);
        text = th_slurp(stat_path, NULL);
        assert_non_null(text);
        assert_null(strstr(text, ") Z "));         /* alive, not a zombie */
        free(text);
        assert_int_equal(f->exits, 0);
        /* its PID file stays for the next daemon to adopt */
        path_in(f, "llama_7b_r0.pid", pid_path, sizeof(pid_path));
        assert_int_equal(access(pid_path, F_OK), 0);

        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        ps_engine_spec_free(s);
}

/* An engine a daemon left running is adopted by the next, however long
 * its command line (llama-server's flags can run past a page). */
static void adopt_after_free(fx *f, size_t arg_len) {
        char *arg = malloc(arg_len + 1), err[256] = "";
        ps_engine_spec *s;
        ps_engine *e, *adopted = NULL;
        pid_t pid;
        int status;

        assert_non_null(arg);
        memset(arg, 'x', arg_len);
        arg[arg_len] = '\0';
        s = spec_new("/bin/sh", "-c", "sleep 1000; :", "sh", arg, NULL);
        e = spawn_ok(f, s);
        pid = ps_engine_pid(e);
        ps_engine_free(e);
        assert_true(poll_until(cmdline_set, &pid));

        assert_int_equal(ps_engine_adopt(f->base, s, &f->opts, on_exit_cb, f, &adopted,
                                         err, sizeof(err)), 0);
        assert_non_null(adopted);
        assert_int_equal(ps_engine_pid(adopted), pid);
        ps_engine_free(adopted);

        assert_int_equal(kill(-pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        ps_engine_spec_free(s);
        free(arg);
}

static void test_adopt(void **state) {
        adopt_after_free(*state, 10);
}

static void test_adopt_long_command_line(void **state) {
        adopt_after_free(*state, 20000);
}

/* Spawns the adoptable `sleep 1000` engine, frees it and returns its pid:
 * its PID file stays for ps_engine_adopt(). */
static pid_t leave_engine_running(fx *f, const ps_engine_spec *s) {
        ps_engine *e = spawn_ok(f, s);
        pid_t pid = ps_engine_pid(e);

        ps_engine_free(e);
        assert_true(poll_until(cmdline_set, &pid));
        assert_true(f->n_strays < sizeof(f->strays) / sizeof(f->strays[0]));
        f->strays[f->n_strays++] = pid;
        return pid;
}

static void kill_and_reap(fx *f, pid_t pid) {
        int status;

        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        for (size_t i = 0; i < f->n_strays; i++)
                if (f->strays[i] == pid)
                        f->strays[i] = f->strays[--f->n_strays];
}

/* A link planted at the PID file's name could point us at any process. */
static void test_adopt_refuses_symlinked_pid_file(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sleep", "1000", NULL);
        char pid_path[PATH_MAX], real[PATH_MAX], err[PATH_MAX + 128], want[PATH_MAX + 128];
        ps_engine *adopted = NULL;
        pid_t pid;

        pid = leave_engine_running(f, s);
        path_in(f, "llama_7b_r0.pid", pid_path, sizeof(pid_path));
        path_in(f, "elsewhere.pid", real, sizeof(real));
        assert_int_equal(rename(pid_path, real), 0);
        assert_int_equal(symlink(real, pid_path), 0);
        assert_int_equal(ps_engine_adopt(f->base, s, &f->opts, on_exit_cb, f, &adopted,
                                         err, sizeof(err)), -EPERM);
        assert_null(adopted);
        snprintf(want, sizeof(want), "PID file %s is a symbolic link; refusing to follow it",
                 pid_path);
        assert_string_equal(err, want);
        assert_int_equal(kill(pid, 0), 0);       /* left alone */
        kill_and_reap(f, pid);
        ps_engine_spec_free(s);
}

static void test_adopt_refuses_pid_file_of_another_user(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sleep", "1000", NULL);
        char pid_path[PATH_MAX], err[PATH_MAX + 128], want[PATH_MAX + 128];
        ps_engine *adopted = NULL;
        pid_t pid;

        if (geteuid() != 0) {
                print_message("skipped: giving a file to another uid needs root\n");
                skip();
        }
        pid = leave_engine_running(f, s);
        path_in(f, "llama_7b_r0.pid", pid_path, sizeof(pid_path));
        assert_int_equal(chown(pid_path, 65534, 65534), 0);
        assert_int_equal(ps_engine_adopt(f->base, s, &f->opts, on_exit_cb, f, &adopted,
                                         err, sizeof(err)), -EPERM);
        assert_null(adopted);
        snprintf(want, sizeof(want), "PID file %s is owned by uid 65534, not the daemon's user (uid 0)",
                 pid_path);
        assert_string_equal(err, want);
        assert_int_equal(kill(pid, 0), 0);
        kill_and_reap(f, pid);
        ps_engine_spec_free(s);
}

/* Starts argv in a session of its own (as an engine runs), not waiting;
 * its output goes nowhere (it must not hold the test's). */
static pid_t start_in_own_session(fx *f, const char *const argv[]) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        pid_t pid;

        assert_true(null >= 0);
        assert_true(f->n_strays < sizeof(f->strays) / sizeof(f->strays[0]));
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (setsid() < 0 || dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0)
                        _exit(126);
                execv(argv[0], (char *const *) argv);
                _exit(127);
        }
        close(null);
        f->strays[f->n_strays++] = pid;
        return pid;
}

typedef struct cmdline_want {
        pid_t pid;
        const char *text;
        size_t len;
} cmdline_want;

static bool cmdline_equals(const void *arg) {
        const cmdline_want *w = arg;
        char path[64], *text;
        size_t len;
        bool same;

        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) w->pid);
        text = th_slurp(path, &len);
        same = text && len == w->len && memcmp(text, w->text, len) == 0;
        free(text);
        return same;
}

static void write_pid_file_for(const fx *f, pid_t pid) {
        char path[PATH_MAX], text[32];

        path_in(f, "llama_7b_r0.pid", path, sizeof(path));
        snprintf(text, sizeof(text), "%d\n", (int) pid);
        th_write_file(path, text);
}

/* Anyone can start a process with an engine's command line: one run by
 * another user is not taken over (nor signalled). */
static void test_adopt_refuses_process_of_another_user(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sleep", "1000", NULL);
        static const char cmdline[] = "/bin/sleep\0" "1000";
        const char *const own[] = { "/bin/sleep", "1000", NULL };
        const char *const foreign[] = { "/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                        "--clear-groups", "/bin/sleep", "1000", NULL };
        cmdline_want w = { .text = cmdline, .len = sizeof(cmdline) };
        char err[PATH_MAX + 128], pid_path[PATH_MAX];
        ps_engine *adopted = NULL;
        int status;

        if (geteuid() != 0) {
                print_message("skipped: running a process as another uid needs root\n");
                skip();
        }
        if (access(foreign[0], X_OK) < 0) {
                print_message("skipped: %s (util-linux) is missing\n", foreign[0]);
                skip();
        }
        path_in(f, "llama_7b_r0.pid", pid_path, sizeof(pid_path));

        /* The same process as our own user is adopted: only the uid differs. */
        w.pid = start_in_own_session(f, own);
        assert_true(poll_until(cmdline_equals, &w));
        write_pid_file_for(f, w.pid);
        assert_int_equal(ps_engine_adopt(f->base, s, &f->opts, on_exit_cb, f, &adopted,
                                         err, sizeof(err)), 0);
        assert_int_equal(ps_engine_pid(adopted), w.pid);
        ps_engine_free(adopted);
        adopted = NULL;
        kill_and_reap(f, w.pid);

        w.pid = start_in_own_session(f, foreign);
        assert_true(poll_until(cmdline_equals, &w));
        write_pid_file_for(f, w.pid);
        assert_int_equal(ps_engine_adopt(f->base, s, &f->opts, on_exit_cb, f, &adopted,
                                         err, sizeof(err)), -EPERM);
        assert_null(adopted);
        assert_non_null(strstr(err, "runs as uid 65534, not the engine user's uid 0"));
        /* stale for us, but the process is not ours to kill */
        assert_int_equal(access(pid_path, F_OK), -1);
        assert_int_equal(waitpid(w.pid, &status, WNOHANG), 0);
        kill_and_reap(f, w.pid);
        ps_engine_spec_free(s);
}

/* ---- the last log line -------------------------------------------------------- */

static void test_last_log_line(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c",
                                     "echo first; echo '  failed to open GGUF file x  ' >&2; "
                                     "echo; echo '   '; exit 1", NULL);
        char log[PATH_MAX], line[256];
        ps_engine *e;

        path_in(f, "engine-llama_7b_r0.log", log, sizeof(log));
        spit(log, "an older incarnation's error\n", 0640);
        e = run_to_exit(f, s);
        assert_int_equal(ps_engine_last_log_line(e, line, sizeof(line)), 0);
        assert_string_equal(line, "failed to open GGUF file x");
        /* a small buffer gets the start of it */
        assert_int_equal(ps_engine_last_log_line(e, line, 7), 0);
        assert_string_equal(line, "failed");
        ps_engine_free(e);
        ps_engine_spec_free(s);

        /* nothing of its own: the older incarnation's line is not reported */
        s = spec_new("/bin/true", NULL);
        e = run_to_exit(f, s);
        assert_true(ps_engine_log_start(e) > 0);
        assert_int_equal(ps_engine_last_log_line(e, line, sizeof(line)), -ENODATA);
        assert_string_equal(line, "");
        ps_engine_free(e);
        ps_engine_spec_free(s);

        /* no final newline */
        s = spec_new("/bin/sh", "-c", "printf 'one\\ntwo'", NULL);
        e = run_to_exit(f, s);
        assert_int_equal(ps_engine_last_log_line(e, line, sizeof(line)), 0);
        assert_string_equal(line, "two");
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

/* The last line is shown to API clients: a link swapped in for the log
 * must not make it show another file's content. */
static void test_last_log_line_not_through_symlink(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/sh", "-c", "echo mine", NULL);
        char secret[PATH_MAX], line[256];
        ps_engine *e;

        e = run_to_exit(f, s);
        assert_int_equal(ps_engine_last_log_line(e, line, sizeof(line)), 0);
        assert_string_equal(line, "mine");
        path_in(f, "secret", secret, sizeof(secret));
        spit(secret, "padding padding\nthe secret\n", 0600);
        assert_int_equal(unlink(ps_engine_log_path(e)), 0);
        assert_int_equal(symlink(secret, ps_engine_log_path(e)), 0);
        assert_int_equal(ps_engine_last_log_line(e, line, sizeof(line)), -ELOOP);
        assert_string_equal(line, "");
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

/* ---- another user (root only) ------------------------------------------------- */

static void test_run_as_user(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/cat", "/proc/self/status", NULL);
        ps_engine *e;
        char *text;

        if (geteuid() != 0 || !getpwnam("nobody"))
                skip();
        f->opts.run_as_user = "nobody";
        e = run_to_exit(f, s);
        assert_true(f->st.exited);
        assert_int_equal(f->st.code, 0);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_true(status_is(text, "Uid", "65534\t65534\t65534\t65534"));
        assert_true(status_is(text, "Gid", "65534\t65534\t65534\t65534"));
        assert_true(status_is(text, "CapPrm", "0000000000000000"));
        assert_true(status_is(text, "CapEff", "0000000000000000"));
        assert_true(status_is(text, "CapBnd", "0000000000000000"));
        assert_true(status_is(text, "CapAmb", "0000000000000000"));
        assert_true(status_is(text, "NoNewPrivs", "1"));
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

/* HOME, USER and LOGNAME are the engine user's, not root's. */
static void test_run_as_user_environment(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/usr/bin/env", NULL);
        struct passwd *pw;
        char want[PATH_MAX + 16];
        ps_engine *e;
        char *text;

        if (geteuid() != 0 || !getpwnam("nobody")) {
                print_message("skipped: needs root and a user nobody\n");
                skip();
        }
        f->opts.run_as_user = "nobody";
        e = run_to_exit(f, s);
        text = th_slurp(ps_engine_log_path(e), NULL);
        pw = getpwnam("nobody");
        snprintf(want, sizeof(want), "HOME=%s", pw->pw_dir);
        assert_true(has_line(text, want));
        assert_true(has_line(text, "USER=nobody"));
        assert_true(has_line(text, "LOGNAME=nobody"));
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);

        /* a script's interpreter, as that user, still opens the script */
        path_in(f, "engine.sh", want, sizeof(want));
        spit(want, "#!/bin/sh\nid -u\n", 0755);
        s = spec_new(want, NULL);
        free(s->replica_id);
        s->replica_id = strdup("r1");              /* a log of its own */
        e = run_to_exit(f, s);
        assert_true(f->st.exited);
        assert_int_equal(f->st.code, 0);
        text = th_slurp(ps_engine_log_path(e), NULL);
        assert_string_equal(text, "65534\n");
        free(text);
        ps_engine_free(e);
        ps_engine_spec_free(s);
}

static void test_unknown_user(void **state) {
        fx *f = *state;
        ps_engine_spec *s = spec_new("/bin/true", NULL);
        ps_engine *e = NULL;
        char err[256] = "";

        if (geteuid() != 0)
                skip();
        f->opts.run_as_user = "no-such-user-pm";
        assert_true(ps_engine_spawn(f->base, s, &f->opts, on_exit_cb, f, &e, err, sizeof(err)) < 0);
        assert_null(e);
        assert_string_equal(err, "user no-such-user-pm: no such user");
        assert_nothing_left(f);
        ps_engine_spec_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(test_argv_is_exact),
                T(test_argv0_is_the_binary),
                T(test_workdir),
                T(test_environment),
                T(test_secret_not_in_proc_environ),
                T(test_bad_env_pass_name_refused),
                T(test_cuda_empty_means_no_gpus),
                T(test_cuda_null_leaves_it_unset),
                T(test_bad_env_entry_refused),
                T(test_log_appends),
                T(test_custom_file_names),
                T(test_pid_file_lifecycle),
                T(test_log_symlink_refused),
                T(test_log_hard_link_refused),
                T(test_log_of_another_user_refused),
                T(test_pid_symlink_not_followed),
                T(test_missing_binary),
                T(test_not_executable),
                T(test_directory_refused),
                T(test_writable_binary_refused),
                T(test_foreign_binary_refused),
                T(test_binary_through_symlink),
                T(test_script_engine),
                T(test_exec_failure_reported_by_spawn),
                T(test_missing_workdir_reported),
                T(test_missing_runtime_dir),
                T(test_exit_code),
                T(test_killed_by_signal),
                T(test_free_inside_exit_callback),
                T(test_signal_reaches_the_group),
                T(test_own_session),
                T(test_no_descriptor_leaks),
                T(test_default_signal_state),
                T(test_engine_survives_free),
                T(test_adopt),
                T(test_adopt_long_command_line),
                T(test_adopt_refuses_symlinked_pid_file),
                T(test_adopt_refuses_pid_file_of_another_user),
                T(test_adopt_refuses_process_of_another_user),
                T(test_last_log_line),
                T(test_last_log_line_not_through_symlink),
                T(test_run_as_user),
                T(test_run_as_user_environment),
                T(test_unknown_user),
#undef T
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
