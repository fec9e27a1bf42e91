/* SPDX-License-Identifier: MIT */
/*
 * The state store's tables: leases, drains and replica policy, written
 * into the turn's transaction and read back at start.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool-services/base/errors.h"
#include "pool/store-private.h"

static const char *const stmt_sql[STMT_MAX] = {
        [STMT_PUT_LEASE] = "INSERT OR REPLACE INTO leases (id, pool, replica, instance, granted_ms, "
                           "expiry_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        [STMT_DEL_LEASE] = "DELETE FROM leases WHERE id = ?1",
        [STMT_PUT_DRAIN] = "INSERT OR REPLACE INTO drains (pool, deadline_ms) VALUES (?1, ?2)",
        [STMT_DEL_DRAIN] = "DELETE FROM drains WHERE pool = ?1",
        [STMT_PUT_POLICY] = "INSERT OR REPLACE INTO policy (pool, replica, crash_count, restart_count, "
                            "backoff_ms, breaker, storm) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_GET_POLICY] = "SELECT crash_count, restart_count, backoff_ms, breaker, storm "
                            "FROM policy WHERE pool = ?1 AND replica = ?2",
};

sqlite3_stmt *ps_store_stmt(ps_store *s, store_stmt which) {
        if (!s->stmt[which] &&
            sqlite3_prepare_v3(s->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[which],
                               NULL) != SQLITE_OK) {
                (void) ps_store_fail(s, "prepare");
                return NULL;
        }
        sqlite3_reset(s->stmt[which]);
        sqlite3_clear_bindings(s->stmt[which]);
        return s->stmt[which];
}

/* Runs a bound change to its end; 0 or -EIO. */
static int run_change(ps_store *s, sqlite3_stmt *st, const char *what) {
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : ps_store_fail(s, what);
}

/* The statement for a change, the transaction open; NULL when the change
 * is dropped (*rc 0: frozen) or failed (*rc < 0). */
static sqlite3_stmt *change(ps_store *s, store_stmt which, int *rc) {
        *rc = 0;
        if (!s)
                return NULL;
        *rc = ps_store_change_begin(s);
        if (*rc != 0) {
                *rc = *rc > 0 ? 0 : *rc;
                return NULL;
        }
        {
                sqlite3_stmt *st = ps_store_stmt(s, which);

                if (!st)
                        *rc = -EIO;
                return st;
        }
}

static void bind_text(sqlite3_stmt *st, int i, const char *text) {
        if (text)
                sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
        else
                sqlite3_bind_null(st, i);
}

int ps_store_put_lease(ps_store *s, const ps_store_lease *l) {
        int rc;
        sqlite3_stmt *st = l ? change(s, STMT_PUT_LEASE, &rc) : NULL;

        if (!l)
                return s ? -EINVAL : 0;
        if (!st)
                return rc;
        bind_text(st, 1, l->id);
        bind_text(st, 2, l->pool_id);
        bind_text(st, 3, l->replica_id);
        sqlite3_bind_int(st, 4, l->instance);
        sqlite3_bind_int64(st, 5, l->granted_ms);
        sqlite3_bind_int64(st, 6, l->expiry_ms);
        return run_change(s, st, "lease");
}

static int del_by_key(ps_store *s, store_stmt which, const char *key, const char *what) {
        int rc;
        sqlite3_stmt *st = key ? change(s, which, &rc) : NULL;

        if (!key)
                return s ? -EINVAL : 0;
        if (!st)
                return rc;
        bind_text(st, 1, key);
        return run_change(s, st, what);
}

int ps_store_del_lease(ps_store *s, const char *lease_id) {
        return del_by_key(s, STMT_DEL_LEASE, lease_id, "lease");
}

int ps_store_put_drain(ps_store *s, const char *pool_id, int64_t deadline_ms) {
        int rc;
        sqlite3_stmt *st = pool_id ? change(s, STMT_PUT_DRAIN, &rc) : NULL;

        if (!pool_id)
                return s ? -EINVAL : 0;
        if (!st)
                return rc;
        bind_text(st, 1, pool_id);
        sqlite3_bind_int64(st, 2, deadline_ms);
        return run_change(s, st, "drain");
}

int ps_store_del_drain(ps_store *s, const char *pool_id) {
        return del_by_key(s, STMT_DEL_DRAIN, pool_id, "drain");
}

int ps_store_put_policy(ps_store *s, const ps_store_policy *p) {
        int rc;
        sqlite3_stmt *st = p ? change(s, STMT_PUT_POLICY, &rc) : NULL;

        if (!p)
                return s ? -EINVAL : 0;
        if (!st)
                return rc;
        bind_text(st, 1, p->pool_id);
        bind_text(st, 2, p->replica_id);
        sqlite3_bind_int64(st, 3, p->crash_count);
        sqlite3_bind_int64(st, 4, p->restart_count);
        sqlite3_bind_int64(st, 5, p->backoff_ms);
        bind_text(st, 6, p->breaker);
        bind_text(st, 7, p->storm);
        return run_change(s, st, "policy");
}

static void copy_text(char *dst, size_t len, sqlite3_stmt *st, int col) {
        const unsigned char *t = sqlite3_column_text(st, col);

        snprintf(dst, len, "%s", t ? (const char *) t : "");
}

typedef struct walk {
        int (*lease)(const ps_store_lease *l, void *ud);
        int (*drain)(const ps_store_drain *d, void *ud);
        void *ud;
} walk;

/* Walks a query; row() turns a row into a record and calls w's function. */
static int each(ps_store *s, const char *sql, int (*row)(sqlite3_stmt *st, const walk *w),
                const walk *w) {
        sqlite3_stmt *st = NULL;
        int rc, stop = 0;

        if (!s)
                return 0;
        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return ps_store_fail(s, "read");
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && stop == 0)
                stop = row(st, w);
        if (stop == 0 && rc != SQLITE_DONE)
                stop = ps_store_fail(s, "read");
        sqlite3_finalize(st);
        return stop;
}

static int lease_row(sqlite3_stmt *st, const walk *w) {
        ps_store_lease l = { .instance = sqlite3_column_int(st, 3) };

        copy_text(l.id, sizeof(l.id), st, 0);
        copy_text(l.pool_id, sizeof(l.pool_id), st, 1);
        copy_text(l.replica_id, sizeof(l.replica_id), st, 2);
        l.granted_ms = sqlite3_column_int64(st, 4);
        l.expiry_ms = sqlite3_column_int64(st, 5);
        return w->lease(&l, w->ud);
}

int ps_store_each_lease(ps_store *s, int (*fn)(const ps_store_lease *l, void *ud), void *ud) {
        return each(s, "SELECT id, pool, replica, instance, granted_ms, expiry_ms FROM leases",
                    lease_row, &(walk) { .lease = fn, .ud = ud });
}

static int drain_row(sqlite3_stmt *st, const walk *w) {
        ps_store_drain d = { .deadline_ms = sqlite3_column_int64(st, 1) };

        copy_text(d.pool_id, sizeof(d.pool_id), st, 0);
        return w->drain(&d, w->ud);
}

int ps_store_each_drain(ps_store *s, int (*fn)(const ps_store_drain *d, void *ud), void *ud) {
        return each(s, "SELECT pool, deadline_ms FROM drains", drain_row,
                    &(walk) { .drain = fn, .ud = ud });
}

static char *dup_column(sqlite3_stmt *st, int col) {
        const unsigned char *t = sqlite3_column_text(st, col);

        return t ? strdup((const char *) t) : NULL;
}

int ps_store_get_policy(ps_store *s, const char *pool_id, const char *replica_id,
                        ps_store_policy *ret) {
        sqlite3_stmt *st;
        int rc;

        if (!s || !pool_id || !replica_id || !ret)
                return -EINVAL;
        st = ps_store_stmt(s, STMT_GET_POLICY);
        if (!st)
                return -EIO;
        bind_text(st, 1, pool_id);
        bind_text(st, 2, replica_id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                sqlite3_reset(st);
                return rc == SQLITE_DONE ? PS_E_NOT_FOUND : ps_store_fail(s, "read");
        }
        free(s->policy_breaker);
        free(s->policy_storm);
        s->policy_breaker = dup_column(st, 3);
        s->policy_storm = dup_column(st, 4);
        *ret = (ps_store_policy) {
                .crash_count = (uint32_t) sqlite3_column_int64(st, 0),
                .restart_count = (uint32_t) sqlite3_column_int64(st, 1),
                .backoff_ms = sqlite3_column_int64(st, 2),
                .breaker = s->policy_breaker,
                .storm = s->policy_storm,
        };
        snprintf(ret->pool_id, sizeof(ret->pool_id), "%s", pool_id);
        snprintf(ret->replica_id, sizeof(ret->replica_id), "%s", replica_id);
        sqlite3_reset(st);
        return 0;
}

/* ---- drains waiting to be resumed ----------------------------------------- */

int ps_store_drain_hold(ps_store *s, const char *pool_id) {
        char **grown, *id;

        if (!s || !pool_id)
                return -EINVAL;
        if (ps_store_drain_held(s, pool_id))
                return 0;
        grown = realloc(s->held_drains, (s->n_held_drains + 1) * sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        s->held_drains = grown;
        id = strdup(pool_id);
        if (!id)
                return -ENOMEM;
        s->held_drains[s->n_held_drains++] = id;
        return 0;
}

bool ps_store_drain_held(const ps_store *s, const char *pool_id) {
        for (size_t i = 0; s && pool_id && i < s->n_held_drains; i++)
                if (strcmp(s->held_drains[i], pool_id) == 0)
                        return true;
        return false;
}

void ps_store_drain_release(ps_store *s, const char *pool_id) {
        for (size_t i = 0; s && pool_id && i < s->n_held_drains; i++)
                if (strcmp(s->held_drains[i], pool_id) == 0) {
                        free(s->held_drains[i]);
                        s->held_drains[i] = s->held_drains[--s->n_held_drains];
                        return;
                }
}
