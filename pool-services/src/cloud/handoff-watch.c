/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/errfmt.h"
#include "pool-services/fs.h"
#include "pool-services/handoff.h"
#include "pool-services/handoff-watch.h"

/* A handoff is a small JSON document; anything bigger is not one. */
#define HANDOFF_FILE_MAX (1024 * 1024)
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | \
                    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* One file of the directory, as last looked at. */
typedef struct entry {
        char *name;
        dev_t dev;                /* the version seen: a rescan skips a    */
        ino_t ino;                /* file whose identity, size and mtime   */
        off_t size;               /* are unchanged                         */
        struct timespec mtime;
        char *pool_id;            /* set while its replica is registered   */
        char *replica_id;
        bool seen;                /* during a rescan                       */
} entry;

struct ps_handoff_watch {
        const ps_context *ctx;
        ps_registry *reg;
        char *dir;
        int fd;
        int wd;
        struct event *ev;
        struct event *rescan;
        entry *entries;
        size_t n_entries, cap_entries;
};

static void emit(ps_handoff_watch *w, ps_log_level level, const char *message,
                 const char *pool_id, const char *replica_id, const char *name,
                 const char *error) {
        ps_field fields[] = {
                PS_FIELD_STR("file", name),
                PS_FIELD_STR("error", error),
        };
        ps_event ev = {
                .type = PS_EVENT_GENERIC,
                .level = level,
                .pool_id = pool_id,
                .replica_id = replica_id,
                .message = message,
                .fields = fields,
                .n_fields = error ? 2 : 1,
        };

        ps_event_emit(&w->ctx->sink, &ev);
}

static bool name_wanted(const char *name) {
        size_t len = strlen(name);

        return name[0] != '.' && len > strlen(".json") &&
               strcmp(name + len - strlen(".json"), ".json") == 0;
}

static entry *entry_find(ps_handoff_watch *w, const char *name) {
        for (size_t i = 0; i < w->n_entries; i++)
                if (strcmp(w->entries[i].name, name) == 0)
                        return &w->entries[i];
        return NULL;
}

static entry *entry_add(ps_handoff_watch *w, const char *name) {
        entry *e;

        if (w->n_entries == w->cap_entries) {
                size_t cap = w->cap_entries ? w->cap_entries * 2 : 8;
                entry *n = realloc(w->entries, cap * sizeof(*n));

                if (!n)
                        return NULL;
                w->entries = n;
                w->cap_entries = cap;
        }
        e = &w->entries[w->n_entries];
        *e = (entry) { .name = strdup(name) };
        if (!e->name)
                return NULL;
        w->n_entries++;
        return e;
}

static void entry_forget_ids(entry *e) {
        free(e->pool_id);
        free(e->replica_id);
        e->pool_id = e->replica_id = NULL;
}

/* Another file still registers the same replica. */
static bool ids_held_elsewhere(ps_handoff_watch *w, const entry *e) {
        for (size_t i = 0; i < w->n_entries; i++) {
                const entry *o = &w->entries[i];

                if (o != e && o->pool_id && strcmp(o->pool_id, e->pool_id) == 0 &&
                    strcmp(o->replica_id, e->replica_id) == 0)
                        return true;
        }
        return false;
}

/* The replica an entry registered is no longer backed by it. */
static void entry_unregister(ps_handoff_watch *w, entry *e) {
        if (!e->pool_id)
                return;
        if (!ids_held_elsewhere(w, e) &&
            ps_registry_unregister_handoff(w->reg, e->pool_id, e->replica_id) == 0)
                emit(w, PS_LOG_INFO, "handoff removed: replica unready", e->pool_id,
                     e->replica_id, e->name, NULL);
        entry_forget_ids(e);
}

static void entry_remove(ps_handoff_watch *w, entry *e) {
        entry_unregister(w, e);
        free(e->name);
        *e = w->entries[--w->n_entries];
}

static void file_gone(ps_handoff_watch *w, const char *name) {
        entry *e = entry_find(w, name);

        if (e)
                entry_remove(w, e);
}

/* Reads the whole file; 0, a negative errno, or PS_E_INVALID (too big,
 * not a regular file). */
static int read_file(const char *path, struct stat *st, char **ret, size_t *len) {
        char *buf;
        ssize_t n;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st->st_mode) || st->st_size > HANDOFF_FILE_MAX) {
                close(fd);
                return PS_E_INVALID;
        }
        buf = malloc((size_t) st->st_size + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        /* Truncated meanwhile: parse what is there. */
        n = ps_read_full(fd, buf, (size_t) st->st_size);
        close(fd);
        if (n < 0) {
                free(buf);
                return (int) n;
        }
        buf[n] = '\0';
        *ret = buf;
        *len = (size_t) n;
        return 0;
}

static bool same_version(const entry *e, const struct stat *st) {
        return e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
               e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void remember_version(entry *e, const struct stat *st) {
        e->dev = st->st_dev;
        e->ino = st->st_ino;
        e->size = st->st_size;
        e->mtime = st->st_mtim;
}

static void register_doc(ps_handoff_watch *w, entry *e, const json_t *doc) {
        const char *pool_id = json_string_value(json_object_get(doc, "pool_id"));
        const char *replica_id = json_string_value(json_object_get(doc, "replica_id"));
        char err[512];
        int r;

        /* The file now names another replica: the old one loses its file. */
        if (e->pool_id && (!pool_id || !replica_id || strcmp(e->pool_id, pool_id) != 0 ||
                           strcmp(e->replica_id, replica_id) != 0))
                entry_unregister(w, e);
        r = ps_registry_register_ready_from_handoff(w->reg, doc, err, sizeof(err));
        if (r != 0) {
                if (r < 0)
                        snprintf(err, sizeof(err), "%s", strerror(-r));
                emit(w, PS_LOG_WARN, "handoff ignored", NULL, NULL, e->name, err);
                return;
        }
        if (!e->pool_id) {
                e->pool_id = strdup(pool_id);
                e->replica_id = strdup(replica_id);
                if (!e->pool_id || !e->replica_id)
                        entry_forget_ids(e);
        }
        emit(w, PS_LOG_INFO, "handoff registered: replica ready", pool_id, replica_id,
             e->name, NULL);
}

/* A file appeared or changed (or a rescan found it). */
static void file_changed(ps_handoff_watch *w, const char *name) {
        char path[PATH_MAX], msg[512];
        struct stat st;
        json_error_t jerr;
        json_t *doc;
        char *text = NULL;
        size_t len = 0;
        entry *e;
        int r;

        if (snprintf(path, sizeof(path), "%s/%s", w->dir, name) >= (int) sizeof(path))
                return;
        e = entry_find(w, name);
        /* A cheap look first: the rescan sees every file every time. */
        if (e && lstat(path, &st) == 0 && same_version(e, &st))
                return;
        r = read_file(path, &st, &text, &len);
        if (r == -ENOENT) {
                file_gone(w, name);
                return;
        }
        if (!e && !(e = entry_add(w, name)))
                goto out;
        if (r == 0)
                remember_version(e, &st);
        if (r != 0) {
                if (r == PS_E_INVALID)
                        snprintf(msg, sizeof(msg), "not a regular file of at most %d bytes",
                                 HANDOFF_FILE_MAX);
                else
                        snprintf(msg, sizeof(msg), "cannot read: %s", strerror(-r));
                /* Logged once per version: a rescan will not repeat it. */
                if (lstat(path, &st) == 0)
                        remember_version(e, &st);
                emit(w, PS_LOG_WARN, "handoff ignored", NULL, NULL, name, msg);
                goto out;
        }
        doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
                snprintf(msg, sizeof(msg), "malformed JSON at line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);
                emit(w, PS_LOG_WARN, "handoff ignored", NULL, NULL, name, msg);
                goto out;
        }
        if (json_is_object(doc) &&
            json_is_string(json_object_get(doc, "managed_by")) &&
            strcmp(json_string_value(json_object_get(doc, "managed_by")),
                   PS_HANDOFF_MANAGED_BY) == 0) {
                /* Ours: the replica is registered already. */
                json_decref(doc);
                goto out;
        }
        register_doc(w, e, doc);
        json_decref(doc);
out:
        free(text);
}

static int watch_dir(ps_handoff_watch *w) {
        if (w->wd >= 0)
                return 0;
        w->wd = inotify_add_watch(w->fd, w->dir, WATCH_MASK);
        return w->wd < 0 ? -errno : 0;
}

void ps_handoff_watch_rescan(ps_handoff_watch *w) {
        struct dirent *de;
        DIR *d;
        int r;

        if (!w)
                return;
        /* The directory may have been removed and made again: watch the
         * one that is there now. */
        if (w->wd < 0 && ((r = ps_mkdir_p(w->dir)) < 0 || (r = watch_dir(w)) < 0))
                emit(w, PS_LOG_WARN, "handoff directory not watched; rescans go on", NULL, NULL,
                     w->dir, strerror(-r));
        for (size_t i = 0; i < w->n_entries; i++)
                w->entries[i].seen = false;
        d = opendir(w->dir);
        while (d && (de = readdir(d))) {
                entry *e;

                if (!name_wanted(de->d_name))
                        continue;
                file_changed(w, de->d_name);
                e = entry_find(w, de->d_name);
                if (e)
                        e->seen = true;
        }
        if (d)
                closedir(d);
        for (size_t i = 0; i < w->n_entries;) {
                if (!w->entries[i].seen)
                        entry_remove(w, &w->entries[i]);
                else
                        i++;
        }
}

static void on_inotify(evutil_socket_t fd, short what, void *userdata) {
        ps_handoff_watch *w = userdata;
        _Alignas(struct inotify_event) char buf[8192];
        bool rescan = false;

        (void) what;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *) (void *) p;

                        p += sizeof(*ev) + ev->len;
                        if (ev->mask & IN_Q_OVERFLOW) {
                                rescan = true;
                                continue;
                        }
                        if (ev->mask & IN_IGNORED) {
                                if (ev->wd == w->wd) {
                                        w->wd = -1;
                                        rescan = true;
                                }
                                continue;
                        }
                        if (ev->wd != w->wd || ev->len == 0 || !name_wanted(ev->name))
                                continue;
                        if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
                                file_gone(w, ev->name);
                        else
                                file_changed(w, ev->name);
                }
        }
        if (rescan)
                ps_handoff_watch_rescan(w);
}

static void on_rescan(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        ps_handoff_watch_rescan(userdata);
}

int ps_handoff_watch_new(const ps_context *ctx, ps_registry *reg, int64_t rescan_ms,
                         ps_handoff_watch **ret, char *err, size_t errlen) {
        struct timeval tv;
        ps_handoff_watch *w;
        char path[PATH_MAX];
        int r;

        if (!ctx || !ctx->base || !ctx->runtime_dir || !reg || !ret || rescan_ms <= 0)
                return -EINVAL;
        if (snprintf(path, sizeof(path), "%s/%s", ctx->runtime_dir, PS_HANDOFF_DIR) >=
            (int) sizeof(path))
                return ps_errf(err, errlen, -ENAMETOOLONG, "handoff directory: path too long");
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->ctx = ctx;
        w->reg = reg;
        w->fd = w->wd = -1;
        w->dir = strdup(path);
        if (!w->dir) {
                ps_handoff_watch_free(w);
                return -ENOMEM;
        }
        r = ps_mkdir_p(w->dir);
        if (r < 0) {
                ps_handoff_watch_free(w);
                return ps_errf(err, errlen, r, "cannot create %s: %s", path, strerror(-r));
        }
        w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w->fd < 0 || watch_dir(w) < 0) {
                r = -errno;
                ps_handoff_watch_free(w);
                return ps_errf(err, errlen, r, "cannot watch %s: %s", path, strerror(-r));
        }
        w->ev = event_new(ctx->base, w->fd, EV_READ | EV_PERSIST, on_inotify, w);
        w->rescan = event_new(ctx->base, -1, EV_PERSIST, on_rescan, w);
        tv.tv_sec = rescan_ms / 1000;
        tv.tv_usec = (rescan_ms % 1000) * 1000;
        if (!w->ev || !w->rescan || event_add(w->ev, NULL) < 0 || event_add(w->rescan, &tv) < 0) {
                ps_handoff_watch_free(w);
                return ps_errf(err, errlen, -ENOMEM, "cannot watch %s: out of memory", path);
        }
        ps_handoff_watch_rescan(w);
        *ret = w;
        return 0;
}

ps_handoff_watch *ps_handoff_watch_free(ps_handoff_watch *w) {
        if (!w)
                return NULL;
        if (w->ev)
                event_free(w->ev);
        if (w->rescan)
                event_free(w->rescan);
        if (w->fd >= 0)
                close(w->fd);
        for (size_t i = 0; i < w->n_entries; i++) {
                free(w->entries[i].name);
                entry_forget_ids(&w->entries[i]);
        }
        free(w->entries);
        free(w->dir);
        free(w);
        return NULL;
}

size_t ps_handoff_watch_tracked(const ps_handoff_watch *w) {
        size_t n = 0;

        for (size_t i = 0; w && i < w->n_entries; i++)
                n += w->entries[i].pool_id != NULL;
        return n;
}
