/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PS_ENGINE_PRIVATE_ALLOW
#include "supervise/engine-internal.h"

extern char **environ;

/* <dir>/<given>, or <dir>/<prefix><pool>_<replica><suffix>. */
char *ps_engine_runtime_path(const char *dir, const char *given, const char *prefix,
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

static char **strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
        return NULL;
}

/* The spec's templates rendered for this start: one allocation, free()
 * frees it. A template that does not render is -EINVAL, err says why. */
int ps_engine_build_argv(const ps_engine_spec *spec, char ***ret, char *err, size_t errlen) {
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
int ps_engine_run_uid(const ps_engine_options *opts, uid_t *ret, char *err, size_t errlen) {
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
        plan->log_path = ps_engine_runtime_path(opts->runtime_dir, opts->log_name, "engine-",
                                                spec, ".log");
        plan->pid_path = ps_engine_runtime_path(opts->runtime_dir, opts->pid_name, "",
                                                spec, ".pid");
        plan->max_fd = descriptor_bound();
        r = plan->binary && plan->workdir && plan->log_path && plan->pid_path ? 0 : -ENOMEM;
        if (r == 0)
                r = ps_engine_build_argv(spec, &plan->argv, err, errlen);
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
