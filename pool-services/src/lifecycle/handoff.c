/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "pool-services/handoff.h"

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

int ps_handoff_path(const char *runtime_dir, const char *pool_id,
                    const char *replica_id, char *buf, size_t len) {
        return snprintf(buf, len, "%s/%s/%s_%s.json", runtime_dir, PS_HANDOFF_DIR,
                        pool_id, replica_id);
}

static json_t *strv_to_json(char *const *v, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static json_t *handoff_json(const ps_handoff *h) {
        const ps_engine_spec *s = h->spec;
        char url[300];

        ps_engine_spec_url(s, url, sizeof(url));
        return json_pack("{s:s?, s:s?, s:s, s:s, s:s, s:{s:s?, s:s?, s:s?}, s:o, s:s?,"
                         " s:I, s:I, s:I, s:s}",
                         "engine", s->engine,
                         "engine_version", s->engine_version,
                         "url", url,
                         "pool_id", s->pool_id,
                         "replica_id", s->replica_id,
                         "model", "path", s->model_path, "id", s->model_id,
                                  "digest", s->model_digest,
                         "flags", strv_to_json(s->flags, s->n_flags),
                         "device_mask", s->device_mask,
                         "slots_total", (json_int_t) s->slots,
                         "slots_free", (json_int_t) h->slots_free,
                         "pid", (json_int_t) h->pid,
                         "managed_by", PS_HANDOFF_MANAGED_BY);
}

static int fsync_dir(const char *dir) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = 0;

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                r = -errno;
        close(fd);
        return r;
}

int ps_handoff_write(const char *runtime_dir, const ps_handoff *h,
                     char *err, size_t errlen) {
        char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
        json_t *doc;
        char *text;
        size_t len;
        ssize_t n;
        int fd, r = 0;

        if (!runtime_dir || !h || !h->spec || !h->spec->pool_id || !h->spec->replica_id)
                return -EINVAL;
        snprintf(dir, sizeof(dir), "%s/%s", runtime_dir, PS_HANDOFF_DIR);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return fail(err, errlen, -errno, "handoff: mkdir %s", dir);
        ps_handoff_path(runtime_dir, h->spec->pool_id, h->spec->replica_id, path, sizeof(path));
        if (snprintf(tmp, sizeof(tmp), "%s/.%s_%s.json.tmp", dir, h->spec->pool_id,
                     h->spec->replica_id) >= (int) sizeof(tmp))
                return fail(err, errlen, -ENAMETOOLONG, "handoff: %s", dir);

        doc = handoff_json(h);
        if (!doc)
                return fail(err, errlen, -ENOMEM, "handoff: building JSON");
        text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (!text)
                return fail(err, errlen, -ENOMEM, "handoff: encoding JSON");

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                r = fail(err, errlen, -errno, "handoff: open %s", tmp);
                goto out;
        }
        len = strlen(text);
        for (size_t off = 0; off < len; off += (size_t) n) {
                n = write(fd, text + off, len - off);
                if (n < 0 && errno == EINTR) {
                        n = 0;
                        continue;
                }
                if (n < 0) {
                        r = fail(err, errlen, -errno, "handoff: write %s", tmp);
                        break;
                }
        }
        if (r == 0 && write(fd, "\n", 1) != 1)
                r = fail(err, errlen, -EIO, "handoff: write %s", tmp);
        if (r == 0 && fsync(fd) < 0)
                r = fail(err, errlen, -errno, "handoff: fsync %s", tmp);
        close(fd);
        if (r == 0 && rename(tmp, path) < 0)
                r = fail(err, errlen, -errno, "handoff: rename to %s", path);
        if (r < 0)
                unlink(tmp);
        else
                (void) fsync_dir(dir);   /* durability only: the rename is done */
out:
        free(text);
        return r;
}

int ps_handoff_remove(const char *runtime_dir, const char *pool_id,
                      const char *replica_id) {
        char path[PATH_MAX];

        ps_handoff_path(runtime_dir, pool_id, replica_id, path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}
