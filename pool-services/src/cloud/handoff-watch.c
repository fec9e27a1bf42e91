/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "base/errfmt.h"
#include "base/inotify.h"
#include "pool-services/base/fs.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/cloud/handoff-doc.h"
#include "pool-services/cloud/handoff-watch.h"

/* A handoff is a small JSON document; anything bigger is not one. */
#define HANDOFF_FILE_MAX (1024 * 1024)
/* IN_ATTRIB: a chmod or chown changes what a file may do. */
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB | \
                    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
/* A host name as a URL may carry it (RFC 1035's longest). */
#define HOST_MAX 253

/* One file of the directory, as last looked at. */
typedef struct entry {
        char *name;
        dev_t dev;                /* the version seen: a rescan skips a    */
        ino_t ino;                /* file whose identity, size and mtime   */
        off_t size;               /* are unchanged (ctime: chmod, chown)   */
        struct timespec mtime;
        struct timespec ctime;
        char *pool_id;            /* set while its replica is registered   */
        char *replica_id;
        bool seen;                /* during a rescan                       */
} entry;

struct ps_handoff_watch {
        const ps_context *ctx;
        ps_registry *reg;
        char *dir;
        unsigned max_slots;
        bool allow_remote;
        char *address_host;       /* the advertised address's host; NULL   */
        bool dir_refused;         /* reported; cleared when it is fine     */
        ps_inotify *inotify;
        int wd;
        bool batch_rescan;        /* this batch of events needs a rescan   */
        int batch_dfd;            /* the directory, opened for this batch  */
        struct event *rescan;
        entry *entries;
        size_t n_entries, cap_entries;
};

static const char *const refusal_names[PS_HANDOFF_REFUSAL_MAX] = {
        [PS_HANDOFF_REFUSED_INVALID] = "invalid",
        [PS_HANDOFF_REFUSED_SYMLINK] = "symlink",
        [PS_HANDOFF_REFUSED_OWNER] = "owner",
        [PS_HANDOFF_REFUSED_MODE] = "mode",
        [PS_HANDOFF_REFUSED_MANAGED_POOL] = "managed_pool",
        [PS_HANDOFF_REFUSED_URL] = "url",
        [PS_HANDOFF_REFUSED_SLOTS] = "slots",
};

const char *ps_handoff_refusal_to_string(ps_handoff_refusal reason) {
        return (unsigned) reason < PS_HANDOFF_REFUSAL_MAX ? refusal_names[reason] : NULL;
}

/* Why a file is refused, as the event reports it. */
typedef struct refusal {
        ps_handoff_refusal reason;
        char msg[512];
} refusal;

static int refuse_as(refusal *why, ps_handoff_refusal reason, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int refuse_as(refusal *why, ps_handoff_refusal reason, const char *fmt, ...) {
        va_list ap;

        why->reason = reason;
        va_start(ap, fmt);
        vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
        va_end(ap);
        return 1;
}

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

/* PS_HANDOFF_IGNORED: counted by reason (pool_managerd_handoff_refusals_total). */
static void emit_refusal(ps_handoff_watch *w, const char *name, const refusal *why) {
        ps_field fields[] = {
                PS_FIELD_STR("file", name),
                PS_FIELD_STR("reason", ps_handoff_refusal_to_string(why->reason)),
                PS_FIELD_STR("error", why->msg),
        };
        ps_event ev = {
                .type = PS_EVENT_GENERIC,
                .level = PS_LOG_WARN,
                .message = PS_HANDOFF_IGNORED,
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
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

/* ---- the file ------------------------------------------------------------- */

/*
 * Opens name in the checked directory without following a link, and reads
 * it if it is a regular file owned by root or us that nobody else may
 * write. 0 with the text; -ENOENT when it is gone; 1 when refused (why
 * says why); *st_ok says whether st describes the file (or the link).
 */
static int read_file(int dfd, const char *name, struct stat *st, bool *st_ok,
                     char **ret, size_t *len, refusal *why) {
        uid_t euid = geteuid();
        char *buf;
        ssize_t n;
        int fd, r;

        *st_ok = false;
        fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                if (r == -ENOENT)
                        return r;
                *st_ok = fstatat(dfd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
                if (*st_ok && S_ISLNK(st->st_mode))
                        return refuse_as(why, PS_HANDOFF_REFUSED_SYMLINK,
                                         "a symbolic link: handoff files are never followed");
                return refuse_as(why, PS_HANDOFF_REFUSED_INVALID, "cannot open: %s", strerror(-r));
        }
        if (fstat(fd, st) < 0) {
                r = -errno;
                close(fd);
                return refuse_as(why, PS_HANDOFF_REFUSED_INVALID, "cannot stat: %s", strerror(-r));
        }
        *st_ok = true;
        r = 0;
        if (!S_ISREG(st->st_mode))
                r = refuse_as(why, PS_HANDOFF_REFUSED_INVALID, "not a regular file");
        else if (st->st_uid != 0 && st->st_uid != euid)
                r = refuse_as(why, PS_HANDOFF_REFUSED_OWNER,
                              "owned by uid %u: only files of root or uid %u are accepted",
                              (unsigned) st->st_uid, (unsigned) euid);
        else if (st->st_mode & (S_IWGRP | S_IWOTH))
                r = refuse_as(why, PS_HANDOFF_REFUSED_MODE,
                              "writable by group or others (mode %04o): chmod go-w it",
                              (unsigned) (st->st_mode & 07777));
        else if (st->st_size > HANDOFF_FILE_MAX)
                r = refuse_as(why, PS_HANDOFF_REFUSED_INVALID, "larger than %d bytes",
                              HANDOFF_FILE_MAX);
        if (r) {
                close(fd);
                return r;
        }
        buf = malloc((size_t) st->st_size + 1);
        if (!buf) {
                close(fd);
                return refuse_as(why, PS_HANDOFF_REFUSED_INVALID, "cannot read: out of memory");
        }
        /* Truncated meanwhile: parse what is there. */
        n = ps_read_full(fd, buf, (size_t) st->st_size);
        close(fd);
        if (n < 0) {
                free(buf);
                return refuse_as(why, PS_HANDOFF_REFUSED_INVALID, "cannot read: %s",
                                 strerror((int) -n));
        }
        buf[n] = '\0';
        *ret = buf;
        *len = (size_t) n;
        return 0;
}

static bool same_version(const entry *e, const struct stat *st) {
        return e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
               e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec &&
               e->ctime.tv_sec == st->st_ctim.tv_sec && e->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static void remember_version(entry *e, const struct stat *st) {
        e->dev = st->st_dev;
        e->ino = st->st_ino;
        e->size = st->st_size;
        e->mtime = st->st_mtim;
        e->ctime = st->st_ctim;
}

/* ---- the claim ------------------------------------------------------------ */

/*
 * The host of scheme://host[:port][/...] (brackets of an IPv6 literal
 * taken off) into host; false when there is none or it does not fit.
 * rest (may be NULL) is set to what follows the host and port.
 */
static bool url_host(const char *url, char *host, size_t hostlen, const char **rest) {
        const char *p = strstr(url, "://"), *end;
        size_t n;

        if (!p)
                return false;
        p += 3;
        if (*p == '[') {
                end = strchr(++p, ']');
                if (!end)
                        return false;
                n = (size_t) (end - p);
                end++;
        } else {
                n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
                end = p + n;
        }
        if (n == 0 || n >= hostlen || n > HOST_MAX)
                return false;
        memcpy(host, p, n);
        host[n] = '\0';
        if (rest)
                *rest = end;
        return true;
}

/* An IP literal of either family into a (16 bytes); its family or 0. */
static int ip_literal(const char *host, unsigned char a[16]) {
        if (inet_pton(AF_INET, host, a) == 1)
                return AF_INET;
        if (inet_pton(AF_INET6, host, a) == 1)
                return AF_INET6;
        return 0;
}

/* The advertised address's host, whatever form it takes. */
static bool is_advertised_host(const ps_handoff_watch *w, const char *host) {
        unsigned char a[16], b[16];
        int fa, fb;

        if (!w->address_host)
                return false;
        if (strcasecmp(host, w->address_host) == 0)
                return true;
        fa = ip_literal(host, a);
        fb = ip_literal(w->address_host, b);
        return fa && fa == fb && memcmp(a, b, fa == AF_INET ? 4 : 16) == 0;
}

/*
 * url must be http:// or https://, a host, an optional port of 1..65535
 * and an optional "/", nothing else (no user, path, query or fragment).
 * The host must be this node's unless allow_remote.
 */
static int check_url(const ps_handoff_watch *w, const char *url, refusal *why) {
        char host[HOST_MAX + 1], literal[64], reason[256];
        const char *rest;
        unsigned long port;
        char *end;
        bool bracketed;

        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
                return refuse_as(why, PS_HANDOFF_REFUSED_URL,
                                 "url must start with http:// or https://");
        bracketed = strstr(url, "://")[3] == '[';
        if (!url_host(url, host, sizeof(host), &rest))
                return refuse_as(why, PS_HANDOFF_REFUSED_URL, "url has no valid host");
        if (bracketed ? ip_literal(host, (unsigned char[16]) { 0 }) != AF_INET6
                      : (host[0] == '-' || host[0] == '.'))
                return refuse_as(why, PS_HANDOFF_REFUSED_URL, "url has no valid host");
        if (*rest == ':') {
                if (!isdigit((unsigned char) rest[1]))
                        return refuse_as(why, PS_HANDOFF_REFUSED_URL, "url port must be 1..65535");
                errno = 0;
                port = strtoul(rest + 1, &end, 10);
                if (errno || port == 0 || port > 65535 || end - (rest + 1) > 5)
                        return refuse_as(why, PS_HANDOFF_REFUSED_URL, "url port must be 1..65535");
                rest = end;
        }
        if (*rest == '/')
                rest++;
        if (*rest)
                return refuse_as(why, PS_HANDOFF_REFUSED_URL,
                                 "url must be scheme://host[:port][/], with no path, query or "
                                 "user: \"%.40s\" follows the host", rest);
        if (w->allow_remote || is_advertised_host(w, host) ||
            ps_host_check(host, true, literal, sizeof(literal), reason, sizeof(reason)) == 0)
                return 0;
        return refuse_as(why, PS_HANDOFF_REFUSED_URL,
                         "url host %s is not this node (loopback, its addresses, or "
                         "cloud.address's host); handoff.allow_remote is off", host);
}

/* slots_total, slots (the llama-orch reader's name for the count) and
 * slots_free, when given as integers: at most max_slots, and slots_free at
 * most the count (the registry checks the rest: types, 0, agreement). */
static int check_slots(const ps_handoff_watch *w, const json_t *doc, refusal *why) {
        static const char *const keys[] = { "slots_total", "slots", "slots_free" };
        const json_t *total = json_object_get(doc, "slots_total");
        const json_t *free_ = json_object_get(doc, "slots_free");

        if (!json_is_integer(total))
                total = json_object_get(doc, "slots");
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                const json_t *v = json_object_get(doc, keys[i]);

                if (json_is_integer(v) && json_integer_value(v) > (json_int_t) w->max_slots)
                        return refuse_as(why, PS_HANDOFF_REFUSED_SLOTS,
                                         "%s %" JSON_INTEGER_FORMAT " is above handoff.max_slots %u",
                                         keys[i], json_integer_value(v), w->max_slots);
        }
        if (json_is_integer(total) && json_is_integer(free_) &&
            json_integer_value(free_) > json_integer_value(total))
                return refuse_as(why, PS_HANDOFF_REFUSED_SLOTS,
                                 "slots_free %" JSON_INTEGER_FORMAT " is above %s %"
                                 JSON_INTEGER_FORMAT, json_integer_value(free_),
                                 json_is_integer(json_object_get(doc, "slots_total")) ?
                                 "slots_total" : "slots", json_integer_value(total));
        return 0;
}

/* A pool with a replica this daemon supervises (configured, or preloaded
 * through the API) is not open to handoffs. */
static bool pool_is_managed(ps_registry *reg, const char *pool_id) {
        ps_replica *r;

        for (size_t i = 0; (r = ps_registry_replica_at(reg, pool_id, i)); i++)
                if (!ps_replica_external(r))
                        return true;
        return false;
}

/* 0 when the claim may be registered; 1 with why otherwise. */
static int check_claim(ps_handoff_watch *w, const json_t *doc, refusal *why) {
        const char *pool_id = json_string_value(json_object_get(doc, "pool_id"));
        const json_t *url = json_object_get(doc, "url");
        int r;

        if (pool_id && pool_is_managed(w->reg, pool_id))
                return refuse_as(why, PS_HANDOFF_REFUSED_MANAGED_POOL,
                                 "pool %s is supervised by this daemon: handoffs may only "
                                 "register replicas of other pools", pool_id);
        if (url && !json_is_string(url))
                return refuse_as(why, PS_HANDOFF_REFUSED_URL, "url must be a string");
        if (url && (r = check_url(w, json_string_value(url), why)) != 0)
                return r;
        return check_slots(w, doc, why);
}

static void register_doc(ps_handoff_watch *w, entry *e, const json_t *doc) {
        const char *pool_id = json_string_value(json_object_get(doc, "pool_id"));
        const char *replica_id = json_string_value(json_object_get(doc, "replica_id"));
        refusal why;
        char err[512];
        int r;

        /* The file now names another replica: the old one loses its file. */
        if (e->pool_id && (!pool_id || !replica_id || strcmp(e->pool_id, pool_id) != 0 ||
                           strcmp(e->replica_id, replica_id) != 0))
                entry_unregister(w, e);
        if (check_claim(w, doc, &why) != 0) {
                /* What the file backed before is not backed any more. */
                entry_unregister(w, e);
                emit_refusal(w, e->name, &why);
                return;
        }
        r = ps_registry_register_ready_from_handoff(w->reg, doc, err, sizeof(err));
        if (r != 0) {
                if (r < 0)
                        snprintf(err, sizeof(err), "%s", strerror(-r));
                refuse_as(&why, r == PS_E_CONFLICT ? PS_HANDOFF_REFUSED_MANAGED_POOL
                                                   : PS_HANDOFF_REFUSED_INVALID, "%s", err);
                emit_refusal(w, e->name, &why);
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

/* A file appeared or changed (or a rescan found it); dfd is the checked
 * directory. */
static void file_changed(ps_handoff_watch *w, int dfd, const char *name) {
        struct stat st;
        json_error_t jerr;
        json_t *doc;
        refusal why;
        char *text = NULL;
        size_t len = 0;
        bool st_ok;
        entry *e;
        int r;

        e = entry_find(w, name);
        /* A cheap look first: the rescan sees every file every time. */
        if (e && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && same_version(e, &st))
                return;
        r = read_file(dfd, name, &st, &st_ok, &text, &len, &why);
        if (r == -ENOENT) {
                file_gone(w, name);
                return;
        }
        if (!e && !(e = entry_add(w, name)))
                goto out;
        /* Reported once per version: a rescan will not repeat it. */
        if (st_ok)
                remember_version(e, &st);
        if (r != 0) {
                /* A file that may not speak for a replica backs none. */
                if (why.reason != PS_HANDOFF_REFUSED_INVALID)
                        entry_unregister(w, e);
                emit_refusal(w, name, &why);
                goto out;
        }
        doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
                refuse_as(&why, PS_HANDOFF_REFUSED_INVALID,
                          "malformed JSON at line %d, column %d: %s",
                          jerr.line, jerr.column, jerr.text);
                emit_refusal(w, name, &why);
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

/* ---- the directory -------------------------------------------------------- */

static int watch_dir(ps_handoff_watch *w) {
        if (w->wd >= 0)
                return 0;
        w->wd = ps_inotify_add(w->inotify, w->dir, WATCH_MASK);
        return w->wd < 0 ? -errno : 0;
}

/*
 * The directory, checked (and made again when it went away): its
 * descriptor, or -1 after reporting once that it is refused, until it is
 * fine again.
 */
static int open_dir(ps_handoff_watch *w, bool create) {
        char err[PATH_MAX + 256];
        int dfd = ps_private_dir_open(w->dir, create, err, sizeof(err));

        if (dfd < 0) {
                if (!w->dir_refused)
                        emit(w, PS_LOG_WARN, "handoff directory refused: its files are ignored",
                             NULL, NULL, w->dir, err);
                w->dir_refused = true;
                return -1;
        }
        if (w->dir_refused)
                emit(w, PS_LOG_INFO, "handoff directory accepted again", NULL, NULL, w->dir, NULL);
        w->dir_refused = false;
        return dfd;
}

void ps_handoff_watch_rescan(ps_handoff_watch *w) {
        struct dirent *de;
        DIR *d = NULL;
        int dfd, r;

        if (!w)
                return;
        for (size_t i = 0; i < w->n_entries; i++)
                w->entries[i].seen = false;
        /* The directory may have been removed and made again: watch the
         * one that is there now. */
        dfd = open_dir(w, w->wd < 0);
        if (dfd >= 0 && w->wd < 0 && (r = watch_dir(w)) < 0)
                emit(w, PS_LOG_WARN, "handoff directory not watched; rescans go on", NULL, NULL,
                     w->dir, strerror(-r));
        if (dfd >= 0) {
                r = dup(dfd);
                d = r >= 0 ? fdopendir(r) : NULL;
                if (!d && r >= 0)
                        close(r);
        }
        while (d && (de = readdir(d))) {
                entry *e;

                if (!name_wanted(de->d_name))
                        continue;
                file_changed(w, dfd, de->d_name);
                e = entry_find(w, de->d_name);
                if (e)
                        e->seen = true;
        }
        if (d)
                closedir(d);
        if (dfd >= 0)
                close(dfd);
        /* Gone, or in a directory that is refused: none backs a replica. */
        for (size_t i = 0; i < w->n_entries;) {
                if (!w->entries[i].seen)
                        entry_remove(w, &w->entries[i]);
                else
                        i++;
        }
}

/* One event; what it needs is done now, or at the end of its batch. */
static void on_event(const struct inotify_event *ev, void *userdata) {
        ps_handoff_watch *w = userdata;

        if (ev->mask & IN_Q_OVERFLOW) {
                w->batch_rescan = true;
                return;
        }
        if (ev->mask & IN_IGNORED) {
                if (ev->wd == w->wd) {
                        w->wd = -1;
                        w->batch_rescan = true;
                }
                return;
        }
        if (ev->wd != w->wd)
                return;
        /* The directory's own mode or owner changed. */
        if (ev->len == 0 && (ev->mask & IN_ATTRIB)) {
                w->batch_rescan = true;
                return;
        }
        if (ev->len == 0 || !name_wanted(ev->name))
                return;
        if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
                file_gone(w, ev->name);
                return;
        }
        if (w->batch_rescan)
                return;         /* the rescan looks at it */
        if (w->batch_dfd < 0 && (w->batch_dfd = open_dir(w, false)) < 0) {
                w->batch_rescan = true;
                return;
        }
        file_changed(w, w->batch_dfd, ev->name);
}

static void on_batch(void *userdata) {
        ps_handoff_watch *w = userdata;
        bool rescan = w->batch_rescan;

        if (w->batch_dfd >= 0)
                close(w->batch_dfd);
        w->batch_dfd = -1;
        w->batch_rescan = false;
        if (rescan)
                ps_handoff_watch_rescan(w);
}

static void on_rescan(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        ps_handoff_watch_rescan(userdata);
}

/* ---- the watcher ----------------------------------------------------------- */

int ps_handoff_watch_start(const ps_context *ctx, ps_registry *reg,
                           const ps_handoff_watch_options *o, ps_handoff_watch **ret,
                           char *err, size_t errlen) {
        char path[PATH_MAX], derr[PATH_MAX + 256], host[HOST_MAX + 1];
        struct timeval tv;
        ps_handoff_watch *w;
        int r;

        if (!ctx || !ctx->base || !reg || !ret || !o || o->rescan_ms <= 0 ||
            (!o->dir && !ctx->handoff_dir && !ctx->runtime_dir))
                return -EINVAL;
        /* Without a directory of its own: the one this daemon's own
         * handoff files go to (ctx->handoff_dir, else runtime_dir/engines). */
        if (o->dir ? snprintf(path, sizeof(path), "%s", o->dir) >= (int) sizeof(path)
                   : !ps_handoff_dir(ctx, path, sizeof(path)))
                return ps_errf(err, errlen, -ENAMETOOLONG, "handoff directory: path too long");
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->ctx = ctx;
        w->reg = reg;
        w->wd = w->batch_dfd = -1;
        w->max_slots = o->max_slots ? o->max_slots : PS_HANDOFF_MAX_SLOTS_DEFAULT;
        w->allow_remote = o->allow_remote;
        w->dir = strdup(path);
        if (!w->dir || (o->address && url_host(o->address, host, sizeof(host), NULL) &&
                        !(w->address_host = strdup(host)))) {
                ps_handoff_watch_free(w);
                return -ENOMEM;
        }
        r = ps_private_dir(w->dir, true, derr, sizeof(derr));
        if (r < 0) {
                ps_handoff_watch_free(w);
                return ps_errf(err, errlen, r, "handoff %s", derr);
        }
        w->inotify = ps_inotify_new(ctx->base, on_event, on_batch, w);
        if (!w->inotify || watch_dir(w) < 0) {
                r = -errno;
                ps_handoff_watch_free(w);
                return ps_errf(err, errlen, r, "cannot watch %s: %s", path, strerror(-r));
        }
        w->rescan = event_new(ctx->base, -1, EV_PERSIST, on_rescan, w);
        tv.tv_sec = o->rescan_ms / 1000;
        tv.tv_usec = (o->rescan_ms % 1000) * 1000;
        if (!w->rescan || event_add(w->rescan, &tv) < 0) {
                ps_handoff_watch_free(w);
                return ps_errf(err, errlen, -ENOMEM, "cannot watch %s: out of memory", path);
        }
        ps_handoff_watch_rescan(w);
        *ret = w;
        return 0;
}

int ps_handoff_watch_new_config(const ps_context *ctx, ps_registry *reg,
                                const ps_config *config, ps_handoff_watch **ret,
                                char *err, size_t errlen) {
        char dir[PATH_MAX];
        int r;

        if (!config)
                return -EINVAL;
        r = ps_config_handoff_dir(config, dir, sizeof(dir));
        if (r < 0)
                return ps_errf(err, errlen, r, "handoff directory: %s", strerror(-r));
        return ps_handoff_watch_start(ctx, reg, &(ps_handoff_watch_options) {
                        .dir = dir,
                        .rescan_ms = config->watch_interval_ms,
                        .max_slots = config->handoff_max_slots,
                        .allow_remote = config->handoff_allow_remote,
                        .address = config->cloud.address,
                }, ret, err, errlen);
}

int ps_handoff_watch_new(const ps_context *ctx, ps_registry *reg, int64_t rescan_ms,
                         ps_handoff_watch **ret, char *err, size_t errlen) {
        return ps_handoff_watch_start(ctx, reg, &(ps_handoff_watch_options) {
                        .rescan_ms = rescan_ms,
                }, ret, err, errlen);
}

ps_handoff_watch *ps_handoff_watch_free(ps_handoff_watch *w) {
        if (!w)
                return NULL;
        ps_inotify_free(w->inotify);
        if (w->rescan)
                event_free(w->rescan);
        for (size_t i = 0; i < w->n_entries; i++) {
                free(w->entries[i].name);
                entry_forget_ids(&w->entries[i]);
        }
        free(w->entries);
        free(w->address_host);
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
