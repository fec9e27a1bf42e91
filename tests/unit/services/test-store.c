/* SPDX-License-Identifier: MIT */
/*
 * The state store: a new file is made 0600 and migrated to the current
 * schema; a newer schema and a corrupt file are refused (the latter moved
 * aside on request); records come back as written; the changes of one
 * loop turn commit once, after every more important callback, and the
 * after-commit callbacks run then, in order. With fake engines: a lease
 * granted is in the store, and one restored keeps its id and expiry, its
 * time left capped at the TTL it was granted with.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "fake-node.h"
#include "supervise/replica.h"
#include "pool-services/base/errors.h"
#include "pool-services/pool/lease.h"
#include "pool-services/pool/store.h"

typedef struct store_fx {
        struct event_base *base;
        char dir[64];
        char path[128];
        char err[1024];
        char moved[512];
        ps_store *s;
} store_fx;

static int setup(void **state) {
        store_fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        f->base = event_base_new();
        assert_non_null(f->base);
        assert_int_equal(event_base_priority_init(f->base, 3), 0);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-store-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        store_fx *f = *state;
        char cmd[128];

        f->s = ps_store_free(f->s);
        event_base_free(f->base);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static int open_store(store_fx *f, bool reset) {
        ps_store_options o = { .path = f->path, .reset_corrupt = reset };

        f->err[0] = '\0';
        return ps_store_open(f->base, &o, &f->s, f->moved, sizeof(f->moved), f->err, sizeof(f->err));
}

/* Through a connection of the test's own. */
static int sql_int(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int v = -1;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void sql_exec(const char *path, const char *sql) {
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

static void make_file(const char *path, const char *content, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);

        assert_true(fd >= 0);
        if (content)
                assert_int_equal(write(fd, content, strlen(content)), (ssize_t) strlen(content));
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static void test_new_file_migrated(void **state) {
        store_fx *f = *state;
        struct stat st;
        json_t *status;

        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(ps_store_schema_version(f->s), PS_STORE_SCHEMA_VERSION);
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(sql_int(f->path, "PRAGMA user_version"), PS_STORE_SCHEMA_VERSION);
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                          "name IN ('engines', 'leases', 'drains', 'reloads', 'policy')"),
                         5);
        status = ps_store_status(f->s);
        assert_string_equal(json_string_value(json_object_get(status, "path")), f->path);
        assert_int_equal(json_integer_value(json_object_get(status, "schema_version")),
                         PS_STORE_SCHEMA_VERSION);
        assert_true(json_is_null(json_object_get(status, "last_commit_at")));
        json_decref(status);
        f->s = ps_store_free(f->s);
        /* WAL, set on the file itself */
        {
                sqlite3 *db = NULL;
                sqlite3_stmt *q = NULL;

                assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
                assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
                assert_int_equal(sqlite3_step(q), SQLITE_ROW);
                assert_string_equal((const char *) sqlite3_column_text(q, 0), "wal");
                sqlite3_finalize(q);
                sqlite3_close(db);
        }
        /* Opened again: nothing to migrate, nothing lost. */
        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(ps_store_schema_version(f->s), PS_STORE_SCHEMA_VERSION);
}

/* An empty file of ours (schema 0) is taken and migrated forward. */
static void test_empty_file_migrated(void **state) {
        store_fx *f = *state;

        make_file(f->path, NULL, 0600);
        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(sql_int(f->path, "PRAGMA user_version"), PS_STORE_SCHEMA_VERSION);
}

static void test_newer_schema_refused(void **state) {
        store_fx *f = *state;
        char sql[64], words[128];

        make_file(f->path, NULL, 0600);
        snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", PS_STORE_SCHEMA_VERSION + 1);
        sql_exec(f->path, sql);
        assert_int_equal(open_store(f, true), -EPROTO);
        assert_null(f->s);
        snprintf(words, sizeof(words), "has schema version %d, newer than this pool-managerd's %d",
                 PS_STORE_SCHEMA_VERSION + 1, PS_STORE_SCHEMA_VERSION);
        assert_non_null(strstr(f->err, words));
        /* never moved aside: it is not corrupt */
        assert_string_equal(f->moved, "");
        assert_int_equal(sql_int(f->path, "PRAGMA user_version"), PS_STORE_SCHEMA_VERSION + 1);
}

static void test_corrupt_refused_then_reset(void **state) {
        store_fx *f = *state;
        char pattern[160];
        glob_t g;

        make_file(f->path, "SQLite format 3? no: this is not a database at all, just text.......", 0600);
        assert_int_equal(open_store(f, false), -EBADMSG);
        assert_null(f->s);
        assert_non_null(strstr(f->err, "is corrupt"));
        assert_non_null(strstr(f->err, "--reset-state"));

        assert_int_equal(open_store(f, true), 0);
        assert_non_null(f->s);
        snprintf(pattern, sizeof(pattern), "%s.corrupt-*", f->path);
        assert_int_equal(glob(pattern, 0, NULL, &g), 0);
        assert_int_equal(g.gl_pathc, 1);
        assert_string_equal(g.gl_pathv[0], f->moved);
        globfree(&g);
        assert_int_equal(ps_store_schema_version(f->s), PS_STORE_SCHEMA_VERSION);
}

static void test_open_to_others_refused(void **state) {
        store_fx *f = *state;

        make_file(f->path, NULL, 0644);
        assert_int_equal(open_store(f, false), -EPERM);
        assert_non_null(strstr(f->err, "chmod 600"));
        assert_int_equal(unlink(f->path), 0);
        assert_int_equal(symlink("/etc/passwd", f->path), 0);
        assert_int_equal(open_store(f, false), -ELOOP);
        assert_non_null(strstr(f->err, "symbolic link"));
}

static int collect_lease(const ps_store_lease *l, void *ud) {
        ps_store_lease *out = ud;

        assert_string_equal(out->id, "");   /* only one expected */
        *out = *l;
        return 0;
}

static void test_lease_round_trip(void **state) {
        store_fx *f = *state;
        ps_store_lease a = { .id = "0123456789abcdef0123456789abcdef", .pool_id = "chat",
                             .replica_id = "r0", .instance = 1, .granted_ms = 1000, .expiry_ms = 61000 };
        ps_store_lease b = a, got = { .id = "" };

        snprintf(b.id, sizeof(b.id), "ffffffffffffffffffffffffffffffff");
        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(ps_store_put_lease(f->s, &a), 0);
        assert_int_equal(ps_store_put_lease(f->s, &b), 0);
        assert_int_equal(ps_store_del_lease(f->s, b.id), 0);
        assert_int_equal(ps_store_put_drain(f->s, "chat", 99000), 0);
        assert_int_equal(ps_store_commit(f->s), 0);
        f->s = ps_store_free(f->s);

        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(ps_store_each_lease(f->s, collect_lease, &got), 0);
        assert_string_equal(got.id, a.id);
        assert_string_equal(got.pool_id, "chat");
        assert_string_equal(got.replica_id, "r0");
        assert_int_equal(got.instance, 1);
        assert_int_equal(got.granted_ms, 1000);
        assert_int_equal(got.expiry_ms, 61000);
        assert_int_equal(sql_int(f->path, "SELECT deadline_ms FROM drains WHERE pool = 'chat'"), 99000);
}

static void test_policy_round_trip(void **state) {
        store_fx *f = *state;
        ps_store_policy p = { .pool_id = "chat", .replica_id = "r1", .crash_count = 3,
                              .restart_count = 5, .backoff_ms = 4000,
                              .breaker = "{\"state\":\"open\"}", .storm = "[1,2]" }, got;

        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(ps_store_get_policy(f->s, "chat", "r1", &got), PS_E_NOT_FOUND);
        assert_int_equal(ps_store_put_policy(f->s, &p), 0);
        assert_int_equal(ps_store_commit(f->s), 0);
        assert_int_equal(ps_store_get_policy(f->s, "chat", "r1", &got), 0);
        assert_int_equal(got.crash_count, 3);
        assert_int_equal(got.restart_count, 5);
        assert_int_equal(got.backoff_ms, 4000);
        assert_string_equal(got.breaker, "{\"state\":\"open\"}");
        assert_string_equal(got.storm, "[1,2]");
}

/* ---- grouped commits ------------------------------------------------------- */

typedef struct calls {
        int order[8];
        int rc[8];
        size_t n;
        uint64_t commits_seen;
        ps_store *s;
} calls;

static uint64_t commits_of(ps_store *s) {
        json_t *st = ps_store_status(s);
        uint64_t n = (uint64_t) json_integer_value(json_object_get(st, "commits"));

        json_decref(st);
        return n;
}

static void after_1(int rc, void *ud) {
        calls *c = ud;

        c->rc[c->n] = rc;
        c->order[c->n++] = 1;
        c->commits_seen = commits_of(c->s);
}

static void after_2(int rc, void *ud) {
        calls *c = ud;

        c->rc[c->n] = rc;
        c->order[c->n++] = 2;
}

typedef struct busy {
        ps_store *s;
        int runs;
} busy;

/* A callback of the default priority that changes more: it runs before
 * the commit, and its change joins the same transaction. */
static void on_busy(evutil_socket_t fd, short what, void *ud) {
        busy *b = ud;
        ps_store_lease l = { .id = "22222222222222222222222222222222", .pool_id = "p",
                             .replica_id = "r0", .granted_ms = 1, .expiry_ms = 2 };

        (void) fd;
        (void) what;
        b->runs++;
        assert_int_equal(ps_store_put_lease(b->s, &l), 0);
}

static void test_grouped_commit(void **state) {
        store_fx *f = *state;
        ps_store_lease l = { .id = "11111111111111111111111111111111", .pool_id = "p",
                             .replica_id = "r0", .granted_ms = 1, .expiry_ms = 2 };
        calls c = { .n = 0 };
        busy b = { .runs = 0 };
        struct event *ev;

        assert_int_equal(open_store(f, false), 0);
        c.s = b.s = f->s;
        ev = event_new(f->base, -1, 0, on_busy, &b);
        assert_non_null(ev);
        assert_int_equal(event_priority_set(ev, 1), 0);

        /* One turn: two changes, two waiting answers, and a callback of
         * the default priority still to run. */
        assert_int_equal(ps_store_put_lease(f->s, &l), 0);
        assert_int_equal(ps_store_after_commit(f->s, after_1, &c), 0);
        assert_int_equal(ps_store_put_drain(f->s, "p", 5), 0);
        assert_int_equal(ps_store_after_commit(f->s, after_2, &c), 0);
        event_active(ev, EV_TIMEOUT, 0);
        assert_int_equal(c.n, 0);                       /* never from inside */
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM leases"), 0);

        assert_true(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
        assert_int_equal(b.runs, 1);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.order[0], 1);
        assert_int_equal(c.order[1], 2);
        assert_int_equal(c.rc[0], 0);
        assert_int_equal(c.rc[1], 0);
        /* one commit held all three changes, and came before the answers */
        assert_int_equal(c.commits_seen, 1);
        assert_int_equal(commits_of(f->s), 1);
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM leases"), 2);
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM drains"), 1);

        /* Nothing pending: a waiting answer still comes from the loop. */
        c.n = 0;
        assert_int_equal(ps_store_after_commit(f->s, after_2, &c), 0);
        assert_int_equal(c.n, 0);
        assert_true(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
        assert_int_equal(c.n, 1);
        assert_int_equal(c.rc[0], 0);
        assert_int_equal(commits_of(f->s), 1);
        event_free(ev);
}

/* Frozen: changes are dropped (a registry torn down at exit). */
static void test_frozen_drops_changes(void **state) {
        store_fx *f = *state;

        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(ps_store_put_drain(f->s, "p", 5), 0);
        ps_store_freeze(f->s);
        assert_int_equal(ps_store_del_drain(f->s, "p"), 0);
        assert_int_equal(ps_store_put_drain(f->s, "q", 6), 0);
        f->s = ps_store_free(f->s);
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM drains WHERE pool = 'p'"), 1);
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM drains WHERE pool = 'q'"), 0);
}

/* ---- leases through the store, with fake engines ----------------------- */

static int first_lease(const ps_store_lease *l, void *ud) {
        *(ps_store_lease *) ud = *l;
        return 1;
}

static void test_lease_written_and_restored(void **state) {
        store_fx *f = *state;
        fake_node node;
        ps_replica *r;
        ps_store_lease rec = { .id = "" };
        ps_lease grant;
        char err[256];

        fake_node_init(&node, "store");
        r = fake_node_add(&node, fake_spec("chat", "r0", 0, 2), fake_policy(NULL));
        assert_int_equal(fake_node_preload(&node, r), 0);
        {
                ps_store_options o = { .path = f->path, .clock = &node.clock.clock };

                assert_int_equal(ps_store_open(node.base, &o, &f->s, NULL, 0, err, sizeof(err)), 0);
        }
        assert_int_equal(ps_store_attach(f->s, node.reg), 0);
        assert_int_equal(ps_lease_acquire(node.reg, "chat", 60000, &grant, err, sizeof(err)), 0);
        assert_int_equal(ps_store_commit(f->s), 0);
        assert_int_equal(ps_store_each_lease(f->s, first_lease, &rec), 1);
        assert_string_equal(rec.id, grant.lease_id);
        assert_string_equal(rec.replica_id, "r0");
        assert_int_equal(rec.granted_ms, FAKE_WALL_START_MS);
        assert_int_equal(rec.expiry_ms, FAKE_WALL_START_MS + 60000);

        /* Held again (as a restarted daemon would): same id, same expiry. */
        assert_int_equal(ps_lease_release(node.reg, "chat", grant.lease_id, err, sizeof(err)), 0);
        assert_int_equal(ps_store_commit(f->s), 0);
        assert_int_equal(ps_store_each_lease(f->s, first_lease, &(ps_store_lease) { .id = "" }), 0);
        fake_clock_advance(&node.clock, 10000);
        assert_int_equal(ps_lease_restore(node.reg, &rec, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_renew(node.reg, "chat", rec.id, 0, &grant, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_release(node.reg, "chat", rec.id, err, sizeof(err)), 0);
        assert_int_equal(ps_registry_lease_count(node.reg), 0);

        /* The wall clock went back an hour: the lease keeps its 60 s, not
         * an hour more. */
        node.clock.wall_ms = FAKE_WALL_START_MS - 3600000;
        assert_int_equal(ps_lease_restore(node.reg, &rec, err, sizeof(err)), 0);
        assert_int_equal(ps_store_commit(f->s), 0);
        rec.id[0] = '\0';
        assert_int_equal(ps_store_each_lease(f->s, first_lease, &rec), 1);
        assert_int_equal(rec.expiry_ms, FAKE_WALL_START_MS - 3600000 + 60000);
        assert_int_equal(rec.expiry_ms - rec.granted_ms, 60000);
        assert_int_equal(ps_lease_restore(node.reg, &rec, err, sizeof(err)), PS_E_EXISTS);

        /* Expired while down: refused. */
        assert_int_equal(ps_lease_release(node.reg, "chat", rec.id, err, sizeof(err)), 0);
        node.clock.wall_ms = rec.expiry_ms + 1;
        assert_int_equal(ps_lease_restore(node.reg, &rec, err, sizeof(err)), PS_E_CONFLICT);
        assert_non_null(strstr(err, "expired"));

        /* A stored drain waiting for its pool: the pool refuses leases as
         * draining until the drain is resumed. */
        assert_int_equal(ps_store_drain_hold(f->s, "chat"), 0);
        assert_true(ps_store_drain_held(f->s, "chat"));
        assert_false(ps_store_drain_held(f->s, "other"));
        assert_int_equal(ps_lease_acquire(node.reg, "chat", 0, &grant, err, sizeof(err)), PS_E_DRAINING);
        assert_string_equal(err, "pool chat is draining");
        ps_store_drain_release(f->s, "chat");
        assert_false(ps_store_drain_held(f->s, "chat"));
        assert_int_equal(ps_lease_acquire(node.reg, "chat", 0, &grant, err, sizeof(err)), 0);

        assert_int_equal(ps_store_attach(NULL, node.reg), 0);
        f->s = ps_store_free(f->s);
        fake_node_clear(&node);
}

/* A replica's policy state goes out and comes back as it was, its times
 * taken onto the clock of the day. */
static void test_replica_policy_restored(void **state) {
        store_fx *f = *state;
        fake_node node;
        ps_replica *r;
        ps_replica_policy_state st, got, zero = { .crash_count = 0 };
        ps_store_options o = { .path = f->path };
        char err[256];

        fake_node_init(&node, "store-policy");
        r = fake_node_add(&node, fake_spec("chat", "r0", 0, 2), fake_policy(NULL));
        o.clock = &node.clock.clock;
        assert_int_equal(ps_store_open(node.base, &o, &f->s, NULL, 0, err, sizeof(err)), 0);
        assert_int_equal(ps_store_restore_policy(f->s, r), PS_E_NOT_FOUND);

        ps_replica_policy_state_get(r, &st);
        st.crash_count = 4;
        st.restart_count = 7;
        st.backoff_ms = 1600;
        st.backoff.crashes = 4;
        st.backoff.last_delay_ms = 1600;
        st.breakers.circuit[0].state = PD_BREAKER_OPEN;
        st.breakers.circuit[0].failures = 4;
        st.breakers.circuit[0].opens = 2;
        st.breakers.circuit[0].open_period_ms = 60000;
        st.breakers.circuit[0].open_until_ms = FAKE_WALL_START_MS + 30000;
        st.storm.count = 2;
        st.storm.head = PD_STORM_LIMIT_MAX - 1;   /* wraps */
        st.storm.ring[PD_STORM_LIMIT_MAX - 1] = (pd_storm_entry) { FAKE_WALL_START_MS - 2000, 1 };
        st.storm.ring[0] = (pd_storm_entry) { FAKE_WALL_START_MS - 1000, 2 };
        st.storm.storms = 1;
        ps_replica_policy_state_set(r, &st);
        assert_int_equal(ps_store_save_policy(f->s, r), 0);
        assert_int_equal(ps_store_commit(f->s), 0);

        /* Gone from the replica, the clock on, then restored. */
        ps_replica_policy_state_set(r, &zero);
        fake_clock_advance(&node.clock, 5000);
        assert_int_equal(ps_store_restore_policy(f->s, r), 0);
        ps_replica_policy_state_get(r, &got);
        assert_int_equal(got.crash_count, 4);
        assert_int_equal(got.restart_count, 7);
        assert_int_equal(got.backoff_ms, 1600);
        assert_int_equal(got.backoff.crashes, 4);
        assert_int_equal(got.backoff.last_delay_ms, 1600);
        assert_int_equal(got.breakers.circuit[0].state, PD_BREAKER_OPEN);
        assert_int_equal(got.breakers.circuit[0].failures, 4);
        assert_int_equal(got.breakers.circuit[0].opens, 2);
        assert_int_equal(got.breakers.circuit[0].open_period_ms, 60000);
        assert_int_equal(got.breakers.circuit[0].open_until_ms, FAKE_WALL_START_MS + 30000);
        assert_int_equal(got.storm.count, 2);
        assert_int_equal(got.storm.storms, 1);
        assert_int_equal(got.storm.ring[(got.storm.head) % PD_STORM_LIMIT_MAX].at_ms,
                         FAKE_WALL_START_MS - 2000);
        assert_int_equal(got.storm.ring[(got.storm.head + 1) % PD_STORM_LIMIT_MAX].at_ms,
                         FAKE_WALL_START_MS - 1000);
        assert_int_equal(got.storm.ring[(got.storm.head + 1) % PD_STORM_LIMIT_MAX].cls, 2);

        /* A record that does not parse leaves the replica alone. */
        sql_exec(f->path, "UPDATE policy SET storm = '{\"storms\": \"many\"}'");
        ps_replica_policy_state_set(r, &zero);
        assert_int_equal(ps_store_restore_policy(f->s, r), -EBADMSG);
        ps_replica_policy_state_get(r, &got);
        assert_int_equal(got.crash_count, 0);

        f->s = ps_store_free(f->s);
        fake_node_clear(&node);
}

typedef struct engines_seen {
        int n;
        ps_store_engine e[4];
        char spec[4][512];
} engines_seen;

static int collect_engine(const ps_store_engine *e, void *ud) {
        engines_seen *seen = ud;

        assert_true(seen->n < 4);
        seen->e[seen->n] = *e;
        snprintf(seen->spec[seen->n], sizeof(seen->spec[0]), "%s", e->spec);
        seen->e[seen->n].spec = seen->spec[seen->n];
        seen->n++;
        return 0;
}

/* Engine records: written, swapped at a promotion, deleted only for the
 * pid they name; a spec survives its JSON unchanged. */
static void test_engine_records(void **state) {
        store_fx *f = *state;
        ps_engine_spec *spec = ps_engine_spec_new(), *back;
        const char *flags[] = { "--port", "8081", "-m", "/m/a.gguf" };

        ps_store_engine home = { .pool_id = "chat", .replica_id = "r0", .role = "home",
                                 .id = { .pid = 4242, .start_time = 777, .uid = 1000,
                                         .cmdline_hash = "aa" }, .port = 8081 };
        ps_store_engine surge = home;
        ps_store_reload rl = { .pool_id = "chat", .strategy = "surge", .phase = "staging" };
        engines_seen seen = { .n = 0 };
        char *json;

        spec->binary_path = strdup("/bin/engine");
        spec->host = strdup("127.0.0.1");
        spec->port = 8081;
        spec->model_path = strdup("/m/a.gguf");
        spec->pool_id = strdup("chat");
        spec->replica_id = strdup("r0");
        spec->slots = 4;
        spec->env = calloc(2, sizeof(char *));
        spec->env[0] = strdup("A=1");
        spec->n_env = 1;
        assert_int_equal(ps_engine_spec_set_argv(spec, flags, 4), 0);
        json = ps_store_spec_json(spec);
        assert_non_null(json);
        back = ps_store_spec_parse(json);
        assert_non_null(back);
        {
                char *again = ps_store_spec_json(back);

                assert_string_equal(again, json);
                free(again);
        }
        assert_int_equal(back->port, 8081);
        assert_int_equal(back->slots, 4);
        assert_string_equal(back->env[0], "A=1");
        assert_null(ps_store_spec_parse("{\"port\": 1}"));
        assert_null(ps_store_spec_parse("not json"));

        home.spec = json;
        snprintf(surge.role, sizeof(surge.role), "surge");
        surge.id.pid = 4343;
        surge.port = 8082;
        assert_int_equal(open_store(f, false), 0);
        assert_int_equal(ps_store_put_engine(f->s, &home), 0);
        assert_int_equal(ps_store_put_engine(f->s, &surge), 0);
        assert_int_equal(ps_store_swap_engines(f->s, "chat", "r0"), 0);
        rl.target_spec = json;
        assert_int_equal(ps_store_put_reload(f->s, &rl), 0);
        assert_int_equal(ps_store_commit(f->s), 0);
        assert_int_equal(sql_int(f->path, "SELECT pid FROM engines WHERE role = 'home'"), 4343);
        assert_int_equal(sql_int(f->path, "SELECT pid FROM engines WHERE role = 'surge'"), 4242);
        /* Another pid in the role: the record stays. */
        assert_int_equal(ps_store_del_engine_pid(f->s, "chat", "r0", "surge", 1), 0);
        assert_int_equal(ps_store_del_engine_pid(f->s, "chat", "r0", "home", 4343), 0);
        assert_int_equal(ps_store_del_reload(f->s, "chat"), 0);
        assert_int_equal(ps_store_commit(f->s), 0);
        assert_int_equal(ps_store_each_engine(f->s, collect_engine, &seen), 0);
        assert_int_equal(seen.n, 1);
        assert_string_equal(seen.e[0].role, "surge");
        assert_int_equal(seen.e[0].id.pid, 4242);
        assert_int_equal((int) seen.e[0].id.start_time, 777);
        assert_int_equal(seen.e[0].port, 8081);
        assert_string_equal(seen.e[0].id.cmdline_hash, "aa");
        assert_string_equal(seen.e[0].spec, json);
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM reloads"), 0);
        free(json);
        ps_engine_spec_free(spec);
        ps_engine_spec_free(back);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_new_file_migrated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_file_migrated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_refused_then_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_to_others_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lease_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_policy_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_grouped_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_frozen_drops_changes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lease_written_and_restored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replica_policy_restored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_engine_records, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
