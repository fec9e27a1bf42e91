/* SPDX-License-Identifier: MIT */
/*
 * The state store's engines and reloads: every engine instance the daemon
 * owns (role, pid, start time, uid, port, argv hash, the spec it runs, as
 * JSON), and the reloads in flight. Read back at start by
 * pool/reconcile.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pool-services/base/errors.h"
#include "pool/store-private.h"

/* ---- a spec as JSON --------------------------------------------------------- */

static json_t *strv_json(char *const *v, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                if (json_array_append_new(a, json_string(v[i])) < 0)
                        return json_decref(a), NULL;
        return a;
}

char *ps_store_spec_json(const ps_engine_spec *sp) {
        json_t *o;
        char *text;

        if (!sp)
                return NULL;
        o = json_pack("{s:s?, s:o, s:s?, s:i, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, "
                      "s:s?, s:I, s:o, s:s?, s:s?, s:s?}",
                      "binary_path", sp->binary_path, "flags", strv_json(sp->flags, sp->n_flags),
                      "host", sp->host, "port", (int) sp->port, "model_path", sp->model_path,
                      "model_id", sp->model_id, "model_digest", sp->model_digest,
                      "engine", sp->engine, "engine_version", sp->engine_version,
                      "pool_id", sp->pool_id, "replica_id", sp->replica_id,
                      "device_mask", sp->device_mask,
                      "cuda_visible_devices", sp->cuda_visible_devices,
                      "slots", (json_int_t) sp->slots, "env", strv_json(sp->env, sp->n_env),
                      "workdir", sp->workdir, "health_path", sp->health_path,
                      "tensor_split", sp->tensor_split);
        if (!o)
                return NULL;
        text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
        return text;
}

static bool take_str(json_t *o, const char *key, char **at) {
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v))
                return true;
        if (!json_is_string(v))
                return false;
        *at = strdup(json_string_value(v));
        return *at != NULL;
}

static bool take_strv(json_t *o, const char *key, char ***at, size_t *n) {
        json_t *a = json_object_get(o, key), *v;
        size_t i;

        if (!a)
                return true;
        if (!json_is_array(a))
                return false;
        *at = calloc(json_array_size(a) + 1, sizeof(**at));
        if (!*at)
                return false;
        json_array_foreach(a, i, v) {
                if (!json_is_string(v) || !((*at)[i] = strdup(json_string_value(v))))
                        return false;
                *n = i + 1;
        }
        return true;
}

ps_engine_spec *ps_store_spec_parse(const char *text) {
        json_t *o = text ? json_loads(text, 0, NULL) : NULL;
        ps_engine_spec *sp = o ? ps_engine_spec_new() : NULL;
        json_t *port = o ? json_object_get(o, "port") : NULL;
        json_t *slots = o ? json_object_get(o, "slots") : NULL;
        bool ok = sp && json_is_object(o) && json_is_integer(port) && json_is_integer(slots);

        ok = ok && take_str(o, "binary_path", &sp->binary_path) &&
             take_strv(o, "flags", &sp->flags, &sp->n_flags) && take_str(o, "host", &sp->host) &&
             take_str(o, "model_path", &sp->model_path) && take_str(o, "model_id", &sp->model_id) &&
             take_str(o, "model_digest", &sp->model_digest) && take_str(o, "engine", &sp->engine) &&
             take_str(o, "engine_version", &sp->engine_version) &&
             take_str(o, "pool_id", &sp->pool_id) && take_str(o, "replica_id", &sp->replica_id) &&
             take_str(o, "device_mask", &sp->device_mask) &&
             take_str(o, "cuda_visible_devices", &sp->cuda_visible_devices) &&
             take_strv(o, "env", &sp->env, &sp->n_env) && take_str(o, "workdir", &sp->workdir) &&
             take_str(o, "health_path", &sp->health_path) &&
             take_str(o, "tensor_split", &sp->tensor_split);
        if (ok) {
                json_int_t p = json_integer_value(port), n = json_integer_value(slots);

                ok = p > 0 && p <= 65535 && n >= 0 && n <= UINT32_MAX && sp->binary_path &&
                     sp->pool_id && sp->replica_id && sp->host;
                if (ok) {
                        sp->port = (uint16_t) p;
                        sp->slots = (uint32_t) n;
                }
        }
        json_decref(o);
        if (!ok)
                return ps_engine_spec_free(sp);
        return sp;
}

/* ---- statements ----------------------------------------------------------- */

static void bind_text(sqlite3_stmt *st, int i, const char *text) {
        if (text)
                sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
        else
                sqlite3_bind_null(st, i);
}

/* A change with up to three text keys first: 0 (done, or dropped while
 * frozen, or no store) or -EIO. */
static int change3(ps_store *s, const char *sql, const char *a, const char *b, const char *c) {
        sqlite3_stmt *st = NULL;
        int rc;

        if (!s)
                return 0;
        rc = ps_store_change_begin(s);
        if (rc != 0)
                return rc > 0 ? 0 : rc;
        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return ps_store_fail(s, "prepare");
        bind_text(st, 1, a);
        bind_text(st, 2, b);
        bind_text(st, 3, c);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : ps_store_fail(s, "engine record");
}

int ps_store_put_engine(ps_store *s, const ps_store_engine *e) {
        sqlite3_stmt *st = NULL;
        int rc;

        if (!s || !e)
                return s ? -EINVAL : 0;
        rc = ps_store_change_begin(s);
        if (rc != 0)
                return rc > 0 ? 0 : rc;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT OR REPLACE INTO engines (pool, replica, role, pid, start_time, "
                               "uid, port, argv_hash, spec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                               -1, &st, NULL) != SQLITE_OK)
                return ps_store_fail(s, "prepare");
        bind_text(st, 1, e->pool_id);
        bind_text(st, 2, e->replica_id);
        bind_text(st, 3, e->role);
        sqlite3_bind_int64(st, 4, e->id.pid);
        sqlite3_bind_int64(st, 5, (sqlite3_int64) e->id.start_time);
        sqlite3_bind_int64(st, 6, e->id.uid);
        sqlite3_bind_int(st, 7, e->port);
        bind_text(st, 8, e->id.cmdline_hash);
        bind_text(st, 9, e->spec ? e->spec : "{}");
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : ps_store_fail(s, "engine record");
}

int ps_store_del_engine(ps_store *s, const char *pool_id, const char *replica_id, const char *role) {
        if (!pool_id || !replica_id || !role)
                return s ? -EINVAL : 0;
        return change3(s, "DELETE FROM engines WHERE pool = ?1 AND replica = ?2 AND role = ?3", pool_id,
                       replica_id, role);
}

int ps_store_del_engine_pid(ps_store *s, const char *pool_id, const char *replica_id, const char *role,
                            pid_t pid) {
        if (!pool_id || !replica_id || !role)
                return s ? -EINVAL : 0;
        if (!s)
                return 0;
        {
                sqlite3_stmt *st = NULL;
                int rc = ps_store_change_begin(s);

                if (rc != 0)
                        return rc > 0 ? 0 : rc;
                if (sqlite3_prepare_v2(s->db, "DELETE FROM engines WHERE pool = ?1 AND replica = ?2 "
                                       "AND role = ?3 AND pid = ?4", -1, &st, NULL) != SQLITE_OK)
                        return ps_store_fail(s, "prepare");
                bind_text(st, 1, pool_id);
                bind_text(st, 2, replica_id);
                bind_text(st, 3, role);
                sqlite3_bind_int64(st, 4, pid);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
                return rc == SQLITE_DONE ? 0 : ps_store_fail(s, "engine record");
        }
}

int ps_store_swap_engines(ps_store *s, const char *pool_id, const char *replica_id) {
        int rc;

        if (!pool_id || !replica_id)
                return s ? -EINVAL : 0;
        /* The key is unique at every row: the home record steps aside. */
        if ((rc = change3(s, "UPDATE engines SET pool = ?1 || '/' WHERE pool = ?1 AND replica = ?2 "
                          "AND role = 'home'", pool_id, replica_id, NULL)) < 0 ||
            (rc = change3(s, "UPDATE engines SET role = 'home' WHERE pool = ?1 AND replica = ?2 "
                          "AND role = 'surge'", pool_id, replica_id, NULL)) < 0)
                return rc;
        return change3(s, "UPDATE engines SET pool = ?1, role = 'surge' WHERE pool = ?1 || '/' AND "
                       "replica = ?2", pool_id, replica_id, NULL);
}

int ps_store_put_reload(ps_store *s, const ps_store_reload *r) {
        sqlite3_stmt *st = NULL;
        int rc;

        if (!s || !r)
                return s ? -EINVAL : 0;
        rc = ps_store_change_begin(s);
        if (rc != 0)
                return rc > 0 ? 0 : rc;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT OR REPLACE INTO reloads (pool, target_spec, strategy, phase, "
                               "previous_spec) VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK)
                return ps_store_fail(s, "prepare");
        bind_text(st, 1, r->pool_id);
        bind_text(st, 2, r->target_spec ? r->target_spec : "{}");
        bind_text(st, 3, r->strategy);
        bind_text(st, 4, r->phase);
        bind_text(st, 5, r->previous_spec);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : ps_store_fail(s, "reload record");
}

int ps_store_del_reload(ps_store *s, const char *pool_id) {
        if (!pool_id)
                return s ? -EINVAL : 0;
        return change3(s, "DELETE FROM reloads WHERE pool = ?1", pool_id, NULL, NULL);
}

/* ---- reading back --------------------------------------------------------- */

static void copy_text(char *dst, size_t len, sqlite3_stmt *st, int col) {
        const unsigned char *t = sqlite3_column_text(st, col);

        snprintf(dst, len, "%s", t ? (const char *) t : "");
}

int ps_store_each_engine(ps_store *s, int (*fn)(const ps_store_engine *e, void *ud), void *ud) {
        sqlite3_stmt *st = NULL;
        int rc, stop = 0;

        if (!s)
                return 0;
        if (sqlite3_prepare_v2(s->db, "SELECT pool, replica, role, pid, start_time, uid, port, "
                               "argv_hash, spec FROM engines", -1, &st, NULL) != SQLITE_OK)
                return ps_store_fail(s, "read");
        while (stop == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                ps_store_engine e = {
                        .id = { .pid = (pid_t) sqlite3_column_int64(st, 3),
                                .start_time = (uint64_t) sqlite3_column_int64(st, 4),
                                .uid = (uid_t) sqlite3_column_int64(st, 5) },
                        .port = (uint16_t) sqlite3_column_int(st, 6),
                        .spec = (const char *) sqlite3_column_text(st, 8),
                };

                copy_text(e.pool_id, sizeof(e.pool_id), st, 0);
                copy_text(e.replica_id, sizeof(e.replica_id), st, 1);
                copy_text(e.role, sizeof(e.role), st, 2);
                copy_text(e.id.cmdline_hash, sizeof(e.id.cmdline_hash), st, 7);
                stop = fn(&e, ud);
        }
        if (stop == 0 && rc != SQLITE_DONE)
                stop = ps_store_fail(s, "read");
        sqlite3_finalize(st);
        return stop;
}

int ps_store_each_reload(ps_store *s, int (*fn)(const ps_store_reload *r, void *ud), void *ud) {
        sqlite3_stmt *st = NULL;
        int rc, stop = 0;

        if (!s)
                return 0;
        if (sqlite3_prepare_v2(s->db, "SELECT pool, target_spec, strategy, phase, previous_spec "
                               "FROM reloads", -1, &st, NULL) != SQLITE_OK)
                return ps_store_fail(s, "read");
        while (stop == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                ps_store_reload r = {
                        .target_spec = (const char *) sqlite3_column_text(st, 1),
                        .previous_spec = (const char *) sqlite3_column_text(st, 4),
                };

                copy_text(r.pool_id, sizeof(r.pool_id), st, 0);
                copy_text(r.strategy, sizeof(r.strategy), st, 2);
                copy_text(r.phase, sizeof(r.phase), st, 3);
                stop = fn(&r, ud);
        }
        if (stop == 0 && rc != SQLITE_DONE)
                stop = ps_store_fail(s, "read");
        sqlite3_finalize(st);
        return stop;
}

void ps_store_note_reload(ps_registry *reg, const char *pool_id, const char *strategy,
                          const char *phase, const ps_engine_spec *target,
                          const ps_engine_spec *previous) {
        ps_store *s = ps_store_of(reg);
        ps_store_reload rec = { .target_spec = NULL };
        char *t, *p;

        if (!s || !pool_id)
                return;
        if (!strategy) {
                (void) ps_store_del_reload(s, pool_id);
                return;
        }
        t = ps_store_spec_json(target);
        p = ps_store_spec_json(previous);
        snprintf(rec.pool_id, sizeof(rec.pool_id), "%s", pool_id);
        snprintf(rec.strategy, sizeof(rec.strategy), "%s", strategy);
        snprintf(rec.phase, sizeof(rec.phase), "%s", phase ? phase : "");
        rec.target_spec = t;
        rec.previous_spec = p;
        if (t)
                (void) ps_store_put_reload(s, &rec);
        free(t);
        free(p);
}
