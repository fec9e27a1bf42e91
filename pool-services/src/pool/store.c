/* SPDX-License-Identifier: MIT */
/*
 * The state store: the file, its schema and migrations, grouped commits on
 * the loop, and the checkpointer thread. The tables: store-records.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/errfmt.h"
#include "pool/registry-private.h"
#include "pool/store-private.h"

/*
 * Forward migrations: migrations[i] takes a file from user_version i to
 * i + 1, inside one transaction. Never edit a released entry; append.
 */
static const char *const migrations[] = {
        /* 0 -> 1 */
        "CREATE TABLE engines ("
        " pool TEXT NOT NULL, replica TEXT NOT NULL,"
        " role TEXT NOT NULL CHECK (role IN ('home', 'surge')),"
        " pid INTEGER NOT NULL,"
        " start_time INTEGER NOT NULL,"      /* /proc/<pid>/stat field 22 */
        " uid INTEGER NOT NULL, port INTEGER NOT NULL,"
        " argv_hash TEXT NOT NULL, spec TEXT NOT NULL,"
        " PRIMARY KEY (pool, replica, role));"
        "CREATE TABLE leases ("
        " id TEXT PRIMARY KEY, pool TEXT NOT NULL, replica TEXT NOT NULL,"
        " instance INTEGER NOT NULL,"
        " granted_ms INTEGER NOT NULL, expiry_ms INTEGER NOT NULL);"
        "CREATE TABLE drains (pool TEXT PRIMARY KEY, deadline_ms INTEGER NOT NULL);"
        "CREATE TABLE reloads ("
        " pool TEXT PRIMARY KEY, target_spec TEXT NOT NULL, strategy TEXT NOT NULL,"
        " phase TEXT NOT NULL, previous_spec TEXT);"
        "CREATE TABLE policy ("
        " pool TEXT NOT NULL, replica TEXT NOT NULL,"
        " crash_count INTEGER NOT NULL, restart_count INTEGER NOT NULL,"
        " backoff_ms INTEGER NOT NULL,"
        " breaker TEXT,"                     /* state and timers, JSON    */
        " storm TEXT,"                       /* the window's starts, JSON */
        " PRIMARY KEY (pool, replica));",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == PS_STORE_SCHEMA_VERSION,
               "one migration per schema version");

#define CHECKPOINT_PAGES_DEFAULT 1000
#define COMMIT_WAIT_MAX_DEFAULT_MS 50
#define COMMIT_RETRY_MS 5

int ps_store_fail(ps_store *s, const char *what) {
        snprintf(s->error, sizeof(s->error), "%s: %s", what, sqlite3_errmsg(s->db));
        return -EIO;
}

static int exec(ps_store *s, const char *sql) {
        return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

/* ---- the file ------------------------------------------------------------ */

/* Made ours alone (0600, O_EXCL), or found as a regular file of ours that
 * nobody else may read. */
static int file_check(const char *path, char *err, size_t errlen) {
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        struct stat st;

        if (fd < 0 && errno == EEXIST)
                fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
                int e = errno;

                if (e == ELOOP)
                        return ps_errf(err, errlen, -ELOOP,
                                       "state store %s is a symbolic link: remove it", path);
                return ps_errf(err, errlen, -e, "cannot open the state store %s: %s", path, strerror(e));
        }
        if (fstat(fd, &st) < 0) {
                int e = errno;

                close(fd);
                return ps_errf(err, errlen, -e, "cannot stat the state store %s: %s", path, strerror(e));
        }
        close(fd);
        if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
                return ps_errf(err, errlen, -EPERM,
                               "state store %s is not a regular file with one link: remove it", path);
        if (st.st_uid != geteuid())
                return ps_errf(err, errlen, -EPERM, "state store %s is owned by uid %u, not %u: chown %u %s",
                               path, (unsigned) st.st_uid, (unsigned) geteuid(), (unsigned) geteuid(), path);
        if (st.st_mode & 077)
                return ps_errf(err, errlen, -EPERM,
                               "state store %s is open to group or others (mode %04o): chmod 600 %s",
                               path, (unsigned) (st.st_mode & 07777), path);
        return 0;
}

/* state.db -> state.db.corrupt-<UTC time>, its WAL along. */
static int move_aside(const ps_store *s, char *moved, size_t moved_len, char *err, size_t errlen) {
        char stamp[32], to[4096], from_wal[4096], to_wal[4096 + 8];
        time_t now = (time_t) (ps_clock_wall_ms(s->clock) / 1000);
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
        snprintf(to, sizeof(to), "%s.corrupt-%s", s->path, stamp);
        if (rename(s->path, to) < 0)
                return ps_errf(err, errlen, -errno, "cannot move the corrupt state store %s aside: %s",
                               s->path, strerror(errno));
        snprintf(from_wal, sizeof(from_wal), "%s-wal", s->path);
        snprintf(to_wal, sizeof(to_wal), "%s-wal", to);
        (void) rename(from_wal, to_wal);
        snprintf(from_wal, sizeof(from_wal), "%s-shm", s->path);
        (void) unlink(from_wal);
        if (moved)
                snprintf(moved, moved_len, "%s", to);
        return 0;
}

/* ---- schema -------------------------------------------------------------- */

static int read_int(ps_store *s, const char *sql, int *ret) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                *ret = sqlite3_column_int(st, 0);
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        return rc;
}

static bool corrupt_code(int rc) {
        return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
}

/* WAL, synchronous=NORMAL, no autocheckpoint, and an intact file. An
 * SQLite result code; a damaged file answers SQLITE_CORRUPT. */
static int configure(ps_store *s) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);

        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *mode = (const char *) sqlite3_column_text(st, 0);

                rc = mode && strcmp(mode, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK)
                return rc;
        if ((rc = exec(s, "PRAGMA synchronous=NORMAL")) != SQLITE_OK ||
            (rc = exec(s, "PRAGMA wal_autocheckpoint=0")) != SQLITE_OK)
                return rc;
        st = NULL;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *ok = (const char *) sqlite3_column_text(st, 0);

                rc = ok && strcmp(ok, "ok") == 0 ? SQLITE_OK : SQLITE_CORRUPT;
        }
        sqlite3_finalize(st);
        return rc;
}

static int migrate(ps_store *s, char *err, size_t errlen) {
        int version = 0, rc;
        char sql[64];

        if ((rc = read_int(s, "PRAGMA user_version", &version)) != SQLITE_OK)
                return corrupt_code(rc) ? -EBADMSG
                                        : ps_errf(err, errlen, -EIO, "state store %s: %s", s->path,
                                                  sqlite3_errmsg(s->db));
        if (version > PS_STORE_SCHEMA_VERSION)
                return ps_errf(err, errlen, -EPROTO,
                               "state store %s has schema version %d, newer than this pool-managerd's %d: "
                               "run the newer pool-managerd, or move the file aside",
                               s->path, version, PS_STORE_SCHEMA_VERSION);
        if (version < 0)
                return -EBADMSG;
        for (; version < PS_STORE_SCHEMA_VERSION; version++) {
                snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", version + 1);
                if ((rc = exec(s, "BEGIN")) != SQLITE_OK ||
                    (rc = exec(s, migrations[version])) != SQLITE_OK ||
                    (rc = exec(s, sql)) != SQLITE_OK || (rc = exec(s, "COMMIT")) != SQLITE_OK) {
                        int r = ps_errf(err, errlen, corrupt_code(rc) ? -EBADMSG : -EIO,
                                        "state store %s: migration to schema %d failed: %s", s->path,
                                        version + 1, sqlite3_errmsg(s->db));

                        (void) exec(s, "ROLLBACK");
                        return r;
                }
        }
        s->schema_version = version;
        return 0;
}

/* ---- the checkpointer ---------------------------------------------------- */

static void *checkpointer(void *arg) {
        ps_store *s = arg;

        pthread_mutex_lock(&s->ckpt_lock);
        for (;;) {
                while (!s->ckpt_want && !s->ckpt_quit)
                        pthread_cond_wait(&s->ckpt_cond, &s->ckpt_lock);
                if (s->ckpt_quit)
                        break;
                s->ckpt_want = false;
                pthread_mutex_unlock(&s->ckpt_lock);
                /* PASSIVE: never waits for, nor blocks, the loop's writes;
                 * the next write after a complete one reuses the WAL. */
                (void) sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
                pthread_mutex_lock(&s->ckpt_lock);
        }
        pthread_mutex_unlock(&s->ckpt_lock);
        return NULL;
}

/* After each commit on the loop's connection: wake the checkpointer once
 * the WAL has grown. */
static int on_wal(void *userdata, sqlite3 *db, const char *name, int pages) {
        ps_store *s = userdata;

        (void) db;
        (void) name;
        if (s->ckpt_started && (uint32_t) pages >= s->ckpt_pages) {
                pthread_mutex_lock(&s->ckpt_lock);
                s->ckpt_want = true;
                pthread_cond_signal(&s->ckpt_cond);
                pthread_mutex_unlock(&s->ckpt_lock);
        }
        return SQLITE_OK;
}

static int checkpointer_start(ps_store *s, char *err, size_t errlen) {
        if (sqlite3_open_v2(s->path, &s->ckpt_db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
                return ps_errf(err, errlen, -EIO, "state store %s: the checkpointer cannot open it: %s",
                               s->path, s->ckpt_db ? sqlite3_errmsg(s->ckpt_db) : "out of memory");
        /* Its waits are on its own thread. */
        sqlite3_busy_timeout(s->ckpt_db, 1000);
        if (pthread_create(&s->ckpt_thread, NULL, checkpointer, s) != 0)
                return ps_errf(err, errlen, -EAGAIN, "state store %s: cannot start the checkpointer",
                               s->path);
        s->ckpt_started = true;
        sqlite3_wal_hook(s->db, on_wal, s);
        return 0;
}

static void checkpointer_stop(ps_store *s) {
        if (s->ckpt_started) {
                pthread_mutex_lock(&s->ckpt_lock);
                s->ckpt_quit = true;
                pthread_cond_signal(&s->ckpt_cond);
                pthread_mutex_unlock(&s->ckpt_lock);
                pthread_join(s->ckpt_thread, NULL);
                s->ckpt_started = false;
        }
        if (s->ckpt_db)
                sqlite3_close(s->ckpt_db);
        s->ckpt_db = NULL;
}

/* ---- grouped commits ----------------------------------------------------- */

static void run_after(ps_store *s, int rc) {
        after_commit *list = s->after;
        size_t n = s->n_after;

        /* Detached first: a callback may queue for the next commit. */
        s->after = NULL;
        s->n_after = s->cap_after = 0;
        for (size_t i = 0; i < n; i++)
                list[i].fn(rc, list[i].userdata);
        free(list);
}

/* 0 when committed (or nothing was open), 1 when busy (try again), or
 * -EIO with the transaction rolled back. */
static int commit_now(ps_store *s) {
        int rc;

        if (!s->in_tx)
                return 0;
        rc = exec(s, "COMMIT");
        if ((rc & 0xff) == SQLITE_BUSY)
                return 1;
        s->in_tx = false;
        if (rc != SQLITE_OK) {
                int r = ps_store_fail(s, "commit");

                (void) exec(s, "ROLLBACK");
                return r;
        }
        s->last_commit_ms = ps_clock_wall_ms(s->clock);
        s->commits++;
        return 0;
}

static void arm_fallback(ps_store *s, int64_t ms) {
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        evtimer_add(s->fallback, &tv);
}

static void on_commit(evutil_socket_t fd, short what, void *userdata) {
        ps_store *s = userdata;
        int rc;

        (void) fd;
        (void) what;
        rc = commit_now(s);
        if (rc == 1) {
                arm_fallback(s, COMMIT_RETRY_MS);
                return;
        }
        evtimer_del(s->fallback);
        event_del(s->commit_ev);
        run_after(s, rc);
}

static void schedule(ps_store *s) {
        if (!evtimer_pending(s->fallback, NULL))
                arm_fallback(s, s->commit_wait_max_ms);
        event_active(s->commit_ev, EV_TIMEOUT, 0);
}

int ps_store_change_begin(ps_store *s) {
        if (s->frozen)
                return 1;
        if (!s->in_tx) {
                if (exec(s, "BEGIN") != SQLITE_OK)
                        return ps_store_fail(s, "begin");
                s->in_tx = true;
        }
        schedule(s);
        return 0;
}

int ps_store_after_commit(ps_store *s, ps_store_commit_fn fn, void *userdata) {
        if (!s || !fn)
                return -EINVAL;
        if (s->n_after == s->cap_after) {
                size_t cap = s->cap_after ? s->cap_after * 2 : 8;
                after_commit *a = realloc(s->after, cap * sizeof(*a));

                if (!a)
                        return -ENOMEM;
                s->after = a;
                s->cap_after = cap;
        }
        s->after[s->n_after++] = (after_commit) { .fn = fn, .userdata = userdata };
        schedule(s);
        return 0;
}

int ps_store_commit(ps_store *s) {
        int rc;

        if (!s)
                return 0;
        do
                rc = commit_now(s);
        while (rc == 1);
        evtimer_del(s->fallback);
        event_del(s->commit_ev);
        run_after(s, rc);
        return rc;
}

bool ps_store_pending(const ps_store *s) {
        return s && s->in_tx;
}

void ps_store_freeze(ps_store *s) {
        if (!s)
                return;
        (void) ps_store_commit(s);
        s->frozen = true;
}

/* ---- open and close ------------------------------------------------------ */

static int open_db(ps_store *s, char *err, size_t errlen) {
        int rc;

        if ((rc = file_check(s->path, err, errlen)) < 0)
                return rc;
        if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK)
                return ps_errf(err, errlen, -EIO, "cannot open the state store %s: %s", s->path,
                               s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_extended_result_codes(s->db, 1);
        rc = configure(s);
        if (corrupt_code(rc))
                return -EBADMSG;
        if (rc != SQLITE_OK)
                return ps_errf(err, errlen, -EIO, "state store %s: %s", s->path, sqlite3_errmsg(s->db));
        return migrate(s, err, errlen);
}

static int open_or_reset(ps_store *s, bool reset, char *moved, size_t moved_len, char *err,
                         size_t errlen) {
        int rc = open_db(s, err, errlen);

        if (rc != -EBADMSG)
                return rc;
        if (!reset)
                return ps_errf(err, errlen, -EBADMSG,
                               "state store %s is corrupt (%s): start with --reset-state to move it "
                               "aside and begin with an empty state",
                               s->path, s->db ? sqlite3_errmsg(s->db) : "unreadable");
        sqlite3_close(s->db);
        s->db = NULL;
        if ((rc = move_aside(s, moved, moved_len, err, errlen)) < 0)
                return rc;
        return open_db(s, err, errlen);
}

int ps_store_open(struct event_base *base, const ps_store_options *o, ps_store **ret,
                  char *moved_aside, size_t moved_len, char *err, size_t errlen) {
        ps_store *s;
        int rc, prio;

        if (moved_aside && moved_len)
                moved_aside[0] = '\0';
        if (!base || !o || !o->path || !ret)
                return -EINVAL;
        *ret = NULL;
        s = calloc(1, sizeof(*s));
        if (!s || !(s->path = strdup(o->path))) {
                free(s);
                return -ENOMEM;
        }
        s->clock = o->clock;
        s->ckpt_pages = o->checkpoint_pages ? o->checkpoint_pages : CHECKPOINT_PAGES_DEFAULT;
        s->commit_wait_max_ms = o->commit_wait_max_ms > 0 ? o->commit_wait_max_ms
                                                          : COMMIT_WAIT_MAX_DEFAULT_MS;
        pthread_mutex_init(&s->ckpt_lock, NULL);
        pthread_cond_init(&s->ckpt_cond, NULL);
        /* The commit waits for every more important callback of the turn;
         * the fallback timer is as urgent as anything. */
        s->commit_ev = event_new(base, -1, 0, on_commit, s);
        s->fallback = evtimer_new(base, on_commit, s);
        prio = event_base_get_npriorities(base) - 1;
        if (!s->commit_ev || !s->fallback || event_priority_set(s->commit_ev, prio < 0 ? 0 : prio) < 0 ||
            event_priority_set(s->fallback, 0) < 0) {
                ps_store_free(s);
                return -ENOMEM;
        }
        rc = open_or_reset(s, o->reset_corrupt, moved_aside, moved_len, err, errlen);
        if (rc == 0)
                rc = checkpointer_start(s, err, errlen);
        if (rc < 0) {
                ps_store_free(s);
                return rc;
        }
        *ret = s;
        return 0;
}

ps_store *ps_store_free(ps_store *s) {
        if (!s)
                return NULL;
        if (s->db)
                (void) ps_store_commit(s);
        run_after(s, -ECANCELED);
        checkpointer_stop(s);
        for (size_t i = 0; i < STMT_MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        if (s->db)
                sqlite3_close(s->db);
        if (s->commit_ev)
                event_free(s->commit_ev);
        if (s->fallback)
                event_free(s->fallback);
        pthread_mutex_destroy(&s->ckpt_lock);
        pthread_cond_destroy(&s->ckpt_cond);
        free(s->policy_breaker);
        free(s->policy_storm);
        for (size_t i = 0; i < s->n_held_drains; i++)
                free(s->held_drains[i]);
        free(s->held_drains);
        free(s->path);
        free(s);
        return NULL;
}

/* ---- the registry's store ------------------------------------------------ */

typedef struct store_ref {
        ps_store *store;
} store_ref;

static void on_registry_free(void *state) {
        free(state);
}

static const ps_registry_hooks store_hooks = {
        .free = on_registry_free,
};

int ps_store_attach(ps_store *s, ps_registry *reg) {
        store_ref *ref;

        if (!reg)
                return -EINVAL;
        ref = ps_registry_attached(reg, &store_hooks);
        if (ref) {
                ref->store = s;
                return 0;
        }
        ref = calloc(1, sizeof(*ref));
        if (!ref)
                return -ENOMEM;
        ref->store = s;
        if (ps_registry_attach(reg, &store_hooks, ref) < 0) {
                free(ref);
                return -ENOMEM;
        }
        return 0;
}

ps_store *ps_store_of(const ps_registry *reg) {
        const store_ref *ref = reg ? ps_registry_attached(reg, &store_hooks) : NULL;

        return ref ? ref->store : NULL;
}

/* ---- status -------------------------------------------------------------- */

const char *ps_store_error(const ps_store *s) {
        return s ? s->error : "";
}

int ps_store_schema_version(const ps_store *s) {
        return s ? s->schema_version : 0;
}

static int64_t file_size(const char *path, const char *suffix) {
        char p[4096];
        struct stat st;

        snprintf(p, sizeof(p), "%s%s", path, suffix);
        return stat(p, &st) == 0 ? (int64_t) st.st_size : 0;
}

json_t *ps_store_status(const ps_store *s) {
        json_t *o;
        int64_t db = file_size(s->path, ""), wal = file_size(s->path, "-wal");

        o = json_pack("{s:s, s:i, s:I, s:I, s:I, s:s*}",
                      "path", s->path,
                      "schema_version", s->schema_version,
                      "commits", (json_int_t) s->commits,
                      "size_bytes", (json_int_t) (db + wal),
                      "wal_bytes", (json_int_t) wal,
                      "last_error", s->error[0] ? s->error : NULL);
        if (o && json_object_set_new(o, "last_commit_at", s->last_commit_ms
                                                              ? json_integer(s->last_commit_ms)
                                                              : json_null()) < 0)
                o = (json_decref(o), NULL);
        return o;
}
