/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "pool-services/base/fs.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/supervise/replica.h"

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int r, const char *fmt, ...) {
        va_list ap;
        int n;

        if (err && errlen > 0) {
                va_start(ap, fmt);
                n = vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
                if (n >= 0 && (size_t) n < errlen)
                        snprintf(err + n, errlen - (size_t) n, ": %s", strerror(-r));
        }
        return r;
}

const char *ps_handoff_dir(const ps_context *ctx, char *buf, size_t len) {
        int n;

        if (!ctx || !buf || len == 0)
                return NULL;
        if (ctx->handoff_dir && ctx->handoff_dir[0])
                n = snprintf(buf, len, "%s", ctx->handoff_dir);
        else if (ctx->runtime_dir && ctx->runtime_dir[0])
                n = snprintf(buf, len, "%s/%s", ctx->runtime_dir, PS_HANDOFF_DIR);
        else
                return NULL;
        return n >= 0 && (size_t) n < len ? buf : NULL;
}

/* name, or name followed by '-', '_' or '.' and more ("llama-server-cuda"). */
static bool names(const char *base, const char *name) {
        size_t n = strlen(name);

        return strncmp(base, name, n) == 0 &&
               (base[n] == '\0' || base[n] == '-' || base[n] == '_' || base[n] == '.');
}

const char *ps_handoff_engine(const ps_engine_spec *spec) {
        static const struct {
                const char *binary;
                const char *engine;
        } known[] = {
                { "llama-server", "llamacpp" },
                { "llama-cpp-server", "llamacpp" },
                { "llama.cpp-server", "llamacpp" },
                { "vllm", "vllm" },
                { "text-generation-launcher", "tgi" },
                { "text-generation-server", "tgi" },
                { "tritonserver", "triton" },
        };
        const char *base;

        if (!spec)
                return PS_HANDOFF_UNKNOWN;
        if (spec->engine && spec->engine[0])
                return spec->engine;
        if (!spec->binary_path)
                return PS_HANDOFF_UNKNOWN;
        base = strrchr(spec->binary_path, '/');
        base = base ? base + 1 : spec->binary_path;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                if (names(base, known[i].binary))
                        return known[i].engine;
        return PS_HANDOFF_UNKNOWN;
}

int ps_handoff_path(const char *handoff_dir, const char *pool_id,
                    const char *replica_id, char *buf, size_t len) {
        return snprintf(buf, len, "%s/%s_%s.json", handoff_dir, pool_id, replica_id);
}

static json_t *strv_to_json(char *const *v, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

/*
 * The llama-orch reader's fields first (strings never null; "slots" the
 * slot count), then this daemon's. device_mask is left out when unset.
 */
static json_t *handoff_json(const ps_handoff *h) {
        const ps_engine_spec *s = h->spec;
        char url[300], **argv;
        json_t *doc;

        /* the flags as the engine got them, not their templates */
        if (ps_engine_spec_argv(s, &argv, NULL, 0) != 0)
                return NULL;
        ps_engine_spec_url(s, url, sizeof(url));
        doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s?, s:s?, s:s?}, s:o, s:s*,"
                         " s:I, s:I, s:I, s:I, s:s}",
                         "engine", ps_handoff_engine(s),
                         "engine_version", s->engine_version && s->engine_version[0] ?
                                           s->engine_version : PS_HANDOFF_UNKNOWN,
                         "url", url,
                         "pool_id", s->pool_id,
                         "replica_id", s->replica_id,
                         "model", "path", s->model_path, "id", s->model_id,
                                  "digest", s->model_digest,
                         "flags", strv_to_json(argv + 1, s->n_flags),
                         "device_mask", s->device_mask,
                         "slots", (json_int_t) s->slots,
                         "slots_total", (json_int_t) s->slots,
                         "slots_free", (json_int_t) h->slots_free,
                         "pid", (json_int_t) h->pid,
                         "managed_by", PS_HANDOFF_MANAGED_BY);
        free(argv);
        return doc;
}

/* Writes all of text, retrying after signals. */
static int write_all(int fd, const char *text, size_t len) {
        for (size_t off = 0; off < len;) {
                ssize_t n = write(fd, text + off, len - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                off += (size_t) n;
        }
        return 0;
}

/*
 * The temp file is made afresh (O_EXCL) and never through a link
 * (O_NOFOLLOW); names are resolved against the checked directory's
 * descriptor, so a path changed meanwhile cannot lead elsewhere. A temp
 * file left by a crash (or anything else at that name) is removed first:
 * unlinking a link removes the link, never its target.
 */
static int open_temp(int dfd, const char *tmp) {
        int fd = -1;

        for (int attempt = 0; attempt < 2; attempt++) {
                fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd >= 0 || errno != EEXIST)
                        break;
                if (unlinkat(dfd, tmp, 0) < 0 && errno != ENOENT)
                        return -errno;
        }
        return fd < 0 ? -errno : fd;
}

/* The directory holding dir must exist: a missing one says the path is
 * wrong, and nothing is made above the handoff directory itself. */
static int parent_exists(const char *dir, char *err, size_t errlen) {
        char parent[PATH_MAX];
        size_t len = strlen(dir);
        struct stat st;
        char *slash;

        if (len >= sizeof(parent))
                return fail(err, errlen, -ENAMETOOLONG, "handoff: %s", dir);
        memcpy(parent, dir, len + 1);
        while (len > 1 && parent[len - 1] == '/')
                parent[--len] = '\0';
        slash = strrchr(parent, '/');
        if (!slash)
                return 0;                      /* relative to the cwd */
        if (slash == parent)
                slash[1] = '\0';               /* "/" */
        else
                *slash = '\0';
        if (stat(parent, &st) < 0)
                return fail(err, errlen, -errno, "handoff: cannot open directory %s", parent);
        if (!S_ISDIR(st.st_mode))
                return fail(err, errlen, -ENOTDIR, "handoff: cannot open directory %s", parent);
        return 0;
}

int ps_handoff_write(const char *handoff_dir, const ps_handoff *h,
                     char *err, size_t errlen) {
        char name[NAME_MAX + 1], tmp[NAME_MAX + 1], derr[PATH_MAX + 128];
        const char *dir = handoff_dir;
        json_t *doc;
        char *text = NULL;
        int dfd, fd, r = 0;

        if (!dir || !dir[0] || !h || !h->spec || !h->spec->pool_id || !h->spec->replica_id)
                return fail(err, errlen, -EINVAL, "handoff: no handoff directory or no ids");
        if (snprintf(name, sizeof(name), "%s_%s.json", h->spec->pool_id,
                     h->spec->replica_id) >= (int) sizeof(name) ||
            snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= (int) sizeof(tmp))
                return fail(err, errlen, -ENAMETOOLONG, "handoff: file name for %s/%s",
                            h->spec->pool_id, h->spec->replica_id);

        /* The handoff directory is made when missing (its parent must be
         * there already), and must be ours alone. */
        if ((r = parent_exists(dir, err, errlen)) < 0)
                return r;
        dfd = ps_private_dir_open(dir, true, derr, sizeof(derr));
        if (dfd < 0) {
                if (err && errlen > 0)
                        snprintf(err, errlen, "handoff: %s", derr);
                return dfd;
        }

        doc = handoff_json(h);
        if (!doc) {
                r = fail(err, errlen, -ENOMEM, "handoff: building JSON");
                goto out;
        }
        text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (!text) {
                r = fail(err, errlen, -ENOMEM, "handoff: encoding JSON");
                goto out;
        }

        fd = open_temp(dfd, tmp);
        if (fd < 0) {
                r = fail(err, errlen, fd, "handoff: open %s/%s", dir, tmp);
                goto out;
        }
        /* 0644 whatever the umask: the watcher refuses group-writable files. */
        if (fchmod(fd, 0644) < 0)
                r = fail(err, errlen, -errno, "handoff: chmod %s/%s", dir, tmp);
        if (r == 0 && ((r = write_all(fd, text, strlen(text))) < 0 || (r = write_all(fd, "\n", 1)) < 0))
                r = fail(err, errlen, r, "handoff: write %s/%s", dir, tmp);
        if (r == 0 && fsync(fd) < 0)
                r = fail(err, errlen, -errno, "handoff: fsync %s/%s", dir, tmp);
        close(fd);
        /* A link planted at the final name is replaced, not followed. */
        if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
                r = fail(err, errlen, -errno, "handoff: rename to %s/%s", dir, name);
        if (r < 0)
                (void) unlinkat(dfd, tmp, 0);
        else
                (void) fsync(dfd);   /* durability only: the rename is done */
out:
        close(dfd);
        free(text);
        return r;
}

int ps_handoff_remove(const char *handoff_dir, const char *pool_id,
                      const char *replica_id) {
        char path[PATH_MAX];
        int n;

        if (!handoff_dir || !pool_id || !replica_id)
                return -EINVAL;
        n = ps_handoff_path(handoff_dir, pool_id, replica_id, path, sizeof(path));
        if (n < 0 || (size_t) n >= sizeof(path))
                return -ENAMETOOLONG;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* ---- retries -------------------------------------------------------------- */

struct ps_handoff_retry {
        struct event *timer;
        ps_handoff_try_fn try_write;
        void *userdata;
        int64_t delay_ms;         /* the next wait                      */
        bool failing;             /* in an episode of failures           */
};

static void on_retry(evutil_socket_t fd, short what, void *userdata) {
        ps_handoff_retry *rt = userdata;

        (void) fd;
        (void) what;
        /* try() reports back: _failed() arms the next try, _cancel() ends */
        (void) rt->try_write(rt->userdata);
}

ps_handoff_retry *ps_handoff_retry_new(struct event_base *base, ps_handoff_try_fn try_write,
                                       void *userdata) {
        ps_handoff_retry *rt = calloc(1, sizeof(*rt));

        if (!rt)
                return NULL;
        rt->try_write = try_write;
        rt->userdata = userdata;
        rt->delay_ms = PS_HANDOFF_RETRY_FIRST_MS;
        rt->timer = evtimer_new(base, on_retry, rt);
        if (!rt->timer) {
                free(rt);
                return NULL;
        }
        return rt;
}

bool ps_handoff_retry_failed(ps_handoff_retry *rt) {
        struct timeval tv = { rt->delay_ms / 1000, (rt->delay_ms % 1000) * 1000 };
        bool first = !rt->failing;

        rt->failing = true;
        evtimer_add(rt->timer, &tv);
        rt->delay_ms *= 2;
        if (rt->delay_ms > PS_HANDOFF_RETRY_MAX_MS)
                rt->delay_ms = PS_HANDOFF_RETRY_MAX_MS;
        return first;
}

bool ps_handoff_retry_cancel(ps_handoff_retry *rt) {
        bool ended;

        if (!rt)
                return false;
        ended = rt->failing;
        evtimer_del(rt->timer);
        rt->failing = false;
        rt->delay_ms = PS_HANDOFF_RETRY_FIRST_MS;
        return ended;
}

ps_handoff_retry *ps_handoff_retry_free(ps_handoff_retry *rt) {
        if (rt) {
                event_free(rt->timer);
                free(rt);
        }
        return NULL;
}
