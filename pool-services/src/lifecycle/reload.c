/* SPDX-License-Identifier: MIT */
/*
 * Reloading a pool: stage the model once for the pool (off the loop),
 * then hand each replica's machine a reload with its new spec staged, one
 * replica at a time. When one fails, the replicas already reloaded are
 * reloaded back onto their previous spec, so the pool ends on one model.
 *
 * The machine does the per-replica work (drain, stop, start, health,
 * rollback, surge); this file only sequences replicas and words the
 * result.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/errfmt.h"
#include "core/policy-private.h"
#include "core/registry-private.h"
#include "lifecycle/replica-private.h"
#include "lifecycle/stage.h"
#include "pool-services/digest.h"
#include "pool-services/reload.h"

#define MESSAGE_MAX 768

typedef struct reload_part {
        reload_op *op;
        ps_replica *replica;
        ps_engine_spec *old_spec;
        ps_engine_spec *new_spec;
        bool waiting;
        bool ok;
        char message[PD_ACTION_TEXT_MAX];
} reload_part;

struct reload_op {
        ps_registry *reg;
        char *pool_id;
        ps_reload_strategy strategy;
        int64_t deadline_ms;
        reload_part *parts;
        size_t n_parts;
        size_t at;                     /* next replica forward            */
        bool reverting;
        size_t revert_at;              /* replicas [0, revert_at) to undo */
        bool finished;
        bool noop;
        bool awaiting;                 /* a replica to restore still retires */
        char fallback[MESSAGE_MAX];    /* why surge became drain-first, or "" */
        stage_job *stage;
        char *stage_path;
        char sha256[65];
        struct event *kick;
        int64_t started_mono;
        int rc;
        const char *reason;
        char message[MESSAGE_MAX];
        ps_reload_done_fn fn;
        void *userdata;
};

static const char *const strategy_names[PS_RELOAD_STRATEGY_MAX] = {
        [PS_RELOAD_DRAIN_FIRST] = "drain-first",
        [PS_RELOAD_SURGE] = "surge",
};

const char *ps_reload_strategy_to_string(ps_reload_strategy s) {
        return (unsigned) s < PS_RELOAD_STRATEGY_MAX ? strategy_names[s] : NULL;
}

int ps_reload_strategy_from_string(const char *name, ps_reload_strategy *ret) {
        for (int i = 0; name && i < PS_RELOAD_STRATEGY_MAX; i++)
                if (strcmp(name, strategy_names[i]) == 0) {
                        *ret = (ps_reload_strategy) i;
                        return 0;
                }
        return PS_E_INVALID;
}

/* ---- the record ------------------------------------------------------------ */

reload_op *reload_op_free(reload_op *op) {
        if (!op)
                return NULL;
        op->stage = stage_job_free(op->stage);
        for (size_t i = 0; i < op->n_parts; i++) {
                reload_part *part = &op->parts[i];

                if (part->waiting)
                        part->replica->pending[PD_REPLY_RELOAD] = (pending_reply) { 0 };
                ps_engine_spec_free(part->old_spec);
                ps_engine_spec_free(part->new_spec);
        }
        if (op->kick)
                event_free(op->kick);
        free(op->parts);
        free(op->stage_path);
        free(op->pool_id);
        free(op);
        return NULL;
}

reload_op *reload_op_abandon(reload_op *op) {
        ps_reload_done_fn fn = op ? op->fn : NULL;

        if (!op)
                return NULL;
        op->fn = NULL;
        if (fn)
                fn(PS_E_CONFLICT, "reload abandoned: the pool is no longer supervised", NULL,
                   op->userdata);
        return reload_op_free(op);
}

static void kick(reload_op *op) {
        struct timeval now = { 0, 0 };

        evtimer_add(op->kick, &now);
}

/* ---- specs ------------------------------------------------------------------- */

static bool str_same(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool flags_same(const ps_engine_spec *a, const ps_engine_spec *b) {
        if (a->n_flags != b->n_flags)
                return false;
        for (size_t i = 0; i < a->n_flags; i++)
                if (!str_same(a->flags[i], b->flags[i]))
                        return false;
        return true;
}

static bool env_same(const ps_engine_spec *a, const ps_engine_spec *b) {
        if (a->n_env != b->n_env)
                return false;
        for (size_t i = 0; i < a->n_env; i++)
                if (!str_same(a->env[i], b->env[i]))
                        return false;
        return true;
}

/* What a reload can change; the same everywhere means nothing to do. */
static bool spec_same(const ps_engine_spec *a, const ps_engine_spec *b) {
        return str_same(a->model_path, b->model_path) && str_same(a->model_id, b->model_id) &&
               str_same(a->engine_version, b->engine_version) && str_same(a->engine, b->engine) &&
               str_same(a->binary_path, b->binary_path) && flags_same(a, b) && env_same(a, b) &&
               a->slots == b->slots && a->port == b->port && str_same(a->host, b->host);
}

static int set_str(char **field, const char *value) {
        char *copy = value ? strdup(value) : NULL;

        if (value && !copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

/* text with every `from` replaced by `to`; NULL on OOM. */
static char *replace_all(const char *text, const char *from, const char *to) {
        size_t flen = strlen(from), tlen = strlen(to), n = 0;
        const char *p;
        char *out, *w;

        if (flen == 0)
                return strdup(text);
        for (p = text; (p = strstr(p, from)); p += flen)
                n++;
        out = malloc(strlen(text) + n * (tlen > flen ? tlen - flen : 0) + 1);
        if (!out)
                return NULL;
        for (w = out, p = text;;) {
                const char *hit = strstr(p, from);

                if (!hit) {
                        strcpy(w, p);
                        break;
                }
                memcpy(w, p, (size_t) (hit - p));
                w += hit - p;
                memcpy(w, to, tlen);
                w += tlen;
                p = hit + flen;
        }
        return out;
}

/* An argument that is `from`, or ends in "=from" ("--model=/m/a.gguf"),
 * gets `to` instead. */
static int swap_arg(char **arg, const char *from, const char *to) {
        size_t alen = strlen(*arg), flen = strlen(from);
        char *next;

        if (flen == 0)
                return 0;
        if (strcmp(*arg, from) == 0)
                return set_str(arg, to);
        if (alen > flen && (*arg)[alen - flen - 1] == '=' && strcmp(*arg + alen - flen, from) == 0) {
                next = malloc(alen - flen + strlen(to) + 1);
                if (!next)
                        return -ENOMEM;
                memcpy(next, *arg, alen - flen);
                strcpy(next + alen - flen, to);
                free(*arg);
                *arg = next;
        }
        return 0;
}

static int swap_args(ps_engine_spec *s, const char *from, const char *to) {
        int rc;

        for (size_t i = 0; from && to && i < s->n_flags; i++)
                if ((rc = swap_arg(&s->flags[i], from, to)) < 0)
                        return rc;
        return 0;
}

static int expand_flags(ps_engine_spec *s, const char *const *flags, size_t n) {
        char port[16], slots[16];
        const struct { const char *key, *value; } vars[] = {
                { "{model_path}", s->model_path ? s->model_path : "" },
                { "{model_id}", s->model_id ? s->model_id : "" },
                { "{port}", port },
                { "{host}", s->host ? s->host : "" },
                { "{slots}", slots },
        };
        char **out = calloc(n ? n : 1, sizeof(*out));

        if (!out)
                return -ENOMEM;
        snprintf(port, sizeof(port), "%u", (unsigned) s->port);
        snprintf(slots, sizeof(slots), "%u", (unsigned) s->slots);
        for (size_t i = 0; i < n; i++) {
                out[i] = strdup(flags[i]);
                for (size_t v = 0; out[i] && v < sizeof(vars) / sizeof(vars[0]); v++) {
                        char *next = replace_all(out[i], vars[v].key, vars[v].value);

                        free(out[i]);
                        out[i] = next;
                }
                if (!out[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(out[j]);
                        free(out);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < s->n_flags; i++)
                free(s->flags[i]);
        free(s->flags);
        s->flags = out;
        s->n_flags = n;
        return 0;
}

/* The spare port of a surge: port + replicas from the home port, and back
 * home from there. */
static uint16_t surge_port(const ps_replica *r, size_t n_replicas) {
        unsigned port = r->current->port == r->home_port ? r->home_port + n_replicas : r->home_port;

        return port <= 65535 ? (uint16_t) port : 0;
}

static int move_to_port(ps_engine_spec *s, uint16_t port) {
        char from[16], to[16];

        snprintf(from, sizeof(from), "%u", (unsigned) s->port);
        snprintf(to, sizeof(to), "%u", (unsigned) port);
        s->port = port;
        return swap_args(s, from, to);
}

static const char *base_name(const char *path) {
        const char *slash = strrchr(path, '/');

        return slash ? slash + 1 : path;
}

/* The new spec of one replica for a request (port not yet moved). */
static int spec_for_request(const ps_replica *r, const ps_reload_request *req, const char *hex,
                            ps_engine_spec **ret) {
        const ps_engine_spec *cur = r->current;
        ps_engine_spec *s = ps_engine_spec_copy(cur);
        const char *old_model = cur->model_path ? cur->model_path : cur->model_id;
        const char *new_model = req->model_path ? req->model_path : req->model_ref;
        char digest[80];
        int rc = 0;

        if (!s)
                return -ENOMEM;
        if (req->model_path) {
                rc = set_str(&s->model_path, req->model_path);
                if (rc == 0)
                        rc = set_str(&s->model_id, base_name(req->model_path));
        } else {
                rc = set_str(&s->model_path, NULL);
                if (rc == 0)
                        rc = set_str(&s->model_id, req->model_ref);
        }
        if (rc == 0 && hex) {
                snprintf(digest, sizeof(digest), "sha256:%s", hex);
                for (char *c = digest; *c; c++)
                        *c = (char) (*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
                rc = set_str(&s->model_digest, digest);
        } else if (rc == 0 && !str_same(s->model_path, cur->model_path)) {
                rc = set_str(&s->model_digest, NULL);
        }
        if (rc == 0 && req->engine_version)
                rc = set_str(&s->engine_version, req->engine_version);
        if (rc == 0 && req->flags)
                rc = expand_flags(s, req->flags, req->n_flags);
        else if (rc == 0 && !str_same(old_model, new_model))
                rc = swap_args(s, old_model, new_model);
        if (rc < 0) {
                ps_engine_spec_free(s);
                return rc;
        }
        *ret = s;
        return 0;
}

/* ---- the result ------------------------------------------------------------- */

static json_t *opt_str(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *result_json(const reload_op *op, int64_t duration_ms) {
        const reload_part *first = op->n_parts ? &op->parts[0] : NULL;
        const ps_engine_spec *now = first ? first->replica->current : NULL;
        const ps_engine_spec *before = first ? first->old_spec : NULL;
        json_t *replicas = json_array();

        for (size_t i = 0; replicas && i < op->n_parts; i++)
                json_array_append_new(replicas, json_pack("{s:s, s:b, s:o}",
                        "replica_id", op->parts[i].replica->replica_id,
                        "ok", op->parts[i].ok,
                        "message", op->parts[i].message[0] ? json_string(op->parts[i].message)
                                                           : json_null()));
        return json_pack("{s:s, s:b, s:b, s:s, s:o, s:o, s:o, s:{s:o, s:o}, s:I, s:o, s:o, s:o}",
                         "pool_id", op->pool_id,
                         "ok", op->rc == 0,
                         "noop", op->noop,
                         "strategy", ps_reload_strategy_to_string(op->strategy),
                         "surge_fallback", opt_str(op->fallback[0] ? op->fallback : NULL),
                         "model_id", opt_str(now ? now->model_id : NULL),
                         "engine_version", opt_str(now ? now->engine_version : NULL),
                         "previous",
                                "model_id", opt_str(before ? before->model_id : NULL),
                                "engine_version", opt_str(before ? before->engine_version : NULL),
                         "duration_ms", (json_int_t) duration_ms,
                         "replicas", replicas ? replicas : json_array(),
                         "error", op->rc == 0 ? json_null() : json_string(op->message),
                         "reason", opt_str(op->rc == 0 ? NULL : op->reason));
}

static void finish(reload_op *op) {
        const ps_context *ctx = registry_ctx(op->reg);
        pool_ops *ops = registry_pool_ops(op->reg, op->pool_id);
        int64_t duration_ms = ps_clock_mono_ms(ctx->clock) - op->started_mono;
        json_t *result = result_json(op, duration_ms);
        const ps_field fields[] = {
                PS_FIELD_STR("request", "reload"),
                PS_FIELD_STR("ok", op->rc == 0 ? "true" : "false"),
                PS_FIELD_STR("strategy", ps_reload_strategy_to_string(op->strategy)),
                PS_FIELD_STR("reason", op->rc == 0 ? NULL : op->reason),
                PS_FIELD_STR("noop", op->noop ? "true" : "false"),
                PS_FIELD_INT("duration_ms", duration_ms),
                PS_FIELD_STR("outcome", op->message),
        };
        ps_event ev = {
                .type = PS_EVENT_REQUEST_DONE,
                .level = op->rc == 0 ? PS_LOG_INFO : PS_LOG_ERROR,
                .pool_id = op->pool_id,
                .message = op->rc == 0 ? "reload finished" : "reload failed",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        if (ops && ops->reload == op)
                ops->reload = NULL;   /* the callback may remove the pool */
        ps_event_emit(&ctx->sink, &ev);
        if (op->fn)
                op->fn(op->rc, op->message, result, op->userdata);
        json_decref(result);
        reload_op_free(op);
}

static void fail(reload_op *op, int rc, const char *reason, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void fail(reload_op *op, int rc, const char *reason, const char *fmt, ...) {
        va_list ap;

        if (op->rc != 0)
                return;   /* the first failure is the one to tell */
        op->rc = rc;
        op->reason = reason;
        va_start(ap, fmt);
        vsnprintf(op->message, sizeof(op->message), fmt, ap);
        va_end(ap);
}

/* The machine words its answers; the reason is read from them. */
static void classify(const char *text, int *rc, const char **reason) {
        if (strstr(text, "drain timeout")) {
                *rc = PS_E_DRAIN_TIMEOUT;
                *reason = "drain_timeout";
        } else if (strstr(text, "staging failed")) {
                *rc = PS_E_STAGE_FAILED;
                *reason = "staging";
        } else if (strstr(text, "rollback failed")) {
                *rc = PS_E_RELOAD_FAILED;
                *reason = "rollback_failed";
        } else if (strstr(text, "running engine failed")) {
                *rc = PS_E_RELOAD_FAILED;
                *reason = "engine_failed";
        } else if (strstr(text, "stopped") || strstr(text, "drain requested") ||
                   strstr(text, "restart requested")) {
                *rc = PS_E_CONFLICT;
                *reason = "stopped";
        } else {
                *rc = PS_E_RELOAD_FAILED;
                *reason = "health";
        }
}

/* ---- steps ------------------------------------------------------------------- */

static void on_part_done(bool ok, const char *text, void *userdata) {
        reload_part *part = userdata;
        reload_op *op = part->op;
        const char *reason;
        int rc;

        if (!part->waiting)
                return;
        part->waiting = false;
        if (!op->reverting) {
                part->ok = ok;
                snprintf(part->message, sizeof(part->message), "%s", text ? text : "");
                if (ok) {
                        op->at++;
                } else {
                        classify(part->message, &rc, &reason);
                        fail(op, rc, reason, "%s", part->message);
                        op->reverting = true;
                        op->revert_at = op->at;
                }
        } else {
                op->revert_at--;
                if (!ok) {
                        size_t len = strlen(op->message);

                        snprintf(op->message + len, sizeof(op->message) - len,
                                 "; restoring replica %s failed: %s", part->replica->replica_id,
                                 text ? text : "");
                }
                snprintf(part->message, sizeof(part->message), "%s",
                         ok ? "restored to the previous engine" : (text ? text : ""));
        }
        kick(op);
}

/* Hands one replica's machine a reload onto `spec`. */
static int start_part(reload_op *op, reload_part *part, const ps_engine_spec *spec) {
        ps_replica *r = part->replica;
        pd_event ev = {
                .type = PD_EV_RELOAD,
                .strategy = op->strategy == PS_RELOAD_SURGE ? PD_RELOAD_SURGE : PD_RELOAD_DRAIN_FIRST,
                .deadline_ms = op->deadline_ms,
        };
        int rc;

        ps_engine_spec_free(r->staged);
        r->staged = ps_engine_spec_copy(spec);
        if (!r->staged)
                return -ENOMEM;
        part->waiting = true;
        rc = replica_request(r, &ev, PD_REPLY_RELOAD, on_part_done, part);
        if (rc != 0) {
                part->waiting = false;
                r->staged = ps_engine_spec_free(r->staged);
        }
        return rc;
}

static bool retiring(const ps_replica *r) {
        return r->lc.state == PD_STATE_RELOADING &&
               (r->lc.phase == PD_RELOAD_SURGE_RETIRE || r->lc.phase == PD_RELOAD_SURGE_STOP_OLD);
}

void reload_op_replica_settled(reload_op *op) {
        if (!op->awaiting || (op->revert_at > 0 && retiring(op->parts[op->revert_at - 1].replica)))
                return;
        op->awaiting = false;
        kick(op);
}

static void step(reload_op *op) {
        reload_part *part;

        if (op->noop || op->finished) {
                finish(op);
                return;
        }
        if (!op->reverting) {
                if (op->at == op->n_parts) {
                        snprintf(op->message, sizeof(op->message), "reloaded (%s): %zu replica%s",
                                 ps_reload_strategy_to_string(op->strategy), op->n_parts,
                                 op->n_parts == 1 ? "" : "s");
                        finish(op);
                        return;
                }
                part = &op->parts[op->at];
                if (start_part(op, part, part->new_spec) != 0) {
                        snprintf(part->message, sizeof(part->message), "not ready: %s",
                                 ps_replica_state(part->replica));
                        fail(op, PS_E_NOT_READY, "not_ready",
                             "reload failed: pool %s replica %s is %s, not ready",
                             op->pool_id, part->replica->replica_id, ps_replica_state(part->replica));
                        op->reverting = true;
                        op->revert_at = op->at;
                        kick(op);
                }
                return;
        }
        if (op->revert_at == 0) {
                finish(op);
                return;
        }
        part = &op->parts[op->revert_at - 1];
        /* A surged replica keeps its old engine (on the port the restore
         * needs) until that engine's leases end: restore it once it has
         * left, when the registry says the replica settled. */
        if (retiring(part->replica)) {
                op->awaiting = true;
                return;
        }
        if (start_part(op, part, part->old_spec) != 0) {
                size_t len = strlen(op->message);

                snprintf(op->message + len, sizeof(op->message) - len,
                         "; replica %s could not be restored (%s)", part->replica->replica_id,
                         ps_replica_state(part->replica));
                op->revert_at--;
                kick(op);
        }
}

static void on_kick(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        step(userdata);
}

static void on_staged(stage_result result, const char *detail, void *userdata) {
        reload_op *op = userdata;

        op->stage = stage_job_free(op->stage);
        if (result != STAGE_OK) {
                fail(op, PS_E_STAGE_FAILED, result == STAGE_MISMATCH ? "checksum" : "staging",
                     "reload failed: staging failed: %s", detail);
                op->finished = true;
        }
        step(op);
}

/* ---- starting ------------------------------------------------------------------ */

static int check_pool(ps_registry *reg, const char *pool_id, pool_ops **ops,
                      char *err, size_t errlen) {
        ps_replica *r;

        *ops = registry_pool_ops(reg, pool_id);
        if (!*ops)
                return ps_errf(err, errlen, PS_E_NOT_FOUND, "pool %s not found", pool_id);
        if ((*ops)->drain)
                return ps_errf(err, errlen, PS_E_DRAINING, "pool %s is draining", pool_id);
        if ((*ops)->reload)
                return ps_errf(err, errlen, PS_E_CONFLICT, "pool %s is already reloading", pool_id);
        for (size_t i = 0; (r = ps_registry_replica_at(reg, pool_id, i)); i++) {
                if (r->lc.external)
                        return ps_errf(err, errlen, PS_E_CONFLICT,
                                       "pool %s replica %s was registered from a handoff file: not managed here",
                                       pool_id, r->replica_id);
                if (pd_lifecycle_draining(&r->lc))
                        return ps_errf(err, errlen, PS_E_DRAINING, "pool %s is draining", pool_id);
                if (r->lc.state != PD_STATE_READY)
                        return ps_errf(err, errlen, PS_E_NOT_READY, "pool %s is not ready: replica %s is %s",
                                       pool_id, r->replica_id, ps_replica_state(r));
        }
        return 0;
}

static reload_op *op_new(ps_registry *reg, const char *pool_id, size_t n, ps_reload_strategy strategy,
                         int64_t deadline_ms, ps_reload_done_fn done, void *userdata) {
        const ps_context *ctx = registry_ctx(reg);
        reload_op *op = calloc(1, sizeof(*op));

        if (!op)
                return NULL;
        op->reg = reg;
        op->strategy = strategy;
        op->deadline_ms = deadline_ms < 0 ? PS_RELOAD_DRAIN_DEADLINE_DEFAULT_MS : deadline_ms;
        op->fn = done;
        op->userdata = userdata;
        op->reason = "";
        op->started_mono = ps_clock_mono_ms(ctx->clock);
        op->pool_id = strdup(pool_id);
        op->parts = calloc(n ? n : 1, sizeof(*op->parts));
        op->kick = evtimer_new(ctx->base, on_kick, op);
        if (!op->pool_id || !op->parts || !op->kick)
                return reload_op_free(op);
        op->n_parts = n;
        for (size_t i = 0; i < n; i++) {
                op->parts[i].op = op;
                op->parts[i].replica = ps_registry_replica_at(reg, pool_id, i);
                op->parts[i].old_spec = ps_engine_spec_copy(op->parts[i].replica->current);
                if (!op->parts[i].old_spec)
                        return reload_op_free(op);
        }
        return op;
}

/* Decides no-op or not, moves surge ports, stages, and registers the op. */
static int op_begin(reload_op *op, const char *sha_hex) {
        const ps_context *ctx = registry_ctx(op->reg);
        pool_ops *ops = registry_pool_ops(op->reg, op->pool_id);
        const char *model = NULL;
        int rc;

        op->noop = true;
        for (size_t i = 0; i < op->n_parts; i++)
                if (!spec_same(op->parts[i].new_spec, op->parts[i].old_spec))
                        op->noop = false;
        if (op->noop) {
                snprintf(op->message, sizeof(op->message), "already running: nothing to reload");
                for (size_t i = 0; i < op->n_parts; i++) {
                        op->parts[i].ok = true;
                        snprintf(op->parts[i].message, sizeof(op->parts[i].message), "unchanged");
                }
        }
        /* Surge needs the devices to hold both engines at once: the same
         * preflight a start gets, with the old engine's memory already
         * taken. Without room, the reload runs drain-first and says why. */
        for (size_t i = 0; !op->noop && op->strategy == PS_RELOAD_SURGE && ctx->preflight &&
                           i < op->n_parts; i++) {
                char why[MESSAGE_MAX / 2];

                if (ctx->preflight(op->parts[i].new_spec, ctx->preflight_userdata, why,
                                   sizeof(why)) == 0)
                        continue;
                op->strategy = PS_RELOAD_DRAIN_FIRST;
                snprintf(op->fallback, sizeof(op->fallback),
                         "no room for both engines on the devices: %s", why);
                ps_event ev = {
                        .type = PS_EVENT_GENERIC,
                        .level = PS_LOG_WARN,
                        .pool_id = op->pool_id,
                        .message = "surge reload runs drain-first",
                        .fields = (ps_field[]) { PS_FIELD_STR("reason", op->fallback) },
                        .n_fields = 1,
                };
                ps_event_emit(&ctx->sink, &ev);
        }
        for (size_t i = 0; !op->noop && op->strategy == PS_RELOAD_SURGE && i < op->n_parts; i++) {
                reload_part *part = &op->parts[i];
                uint16_t port = surge_port(part->replica, op->n_parts);

                if (port == 0) {
                        reload_op_free(op);
                        return PS_E_INVALID;
                }
                if (part->new_spec->port == part->old_spec->port &&
                    (rc = move_to_port(part->new_spec, port)) < 0) {
                        reload_op_free(op);
                        return rc;
                }
        }
        if (!op->noop && op->n_parts > 0)
                model = op->parts[0].new_spec->model_path;
        if (model && !str_same(model, op->parts[0].old_spec->model_path)) {
                rc = stage_job_start(ctx->base, model, sha_hex, on_staged, op, &op->stage);
                if (rc < 0) {
                        reload_op_free(op);
                        return rc;
                }
        } else if (model && sha_hex) {
                rc = stage_job_start(ctx->base, model, sha_hex, on_staged, op, &op->stage);
                if (rc < 0) {
                        reload_op_free(op);
                        return rc;
                }
        } else {
                kick(op);
        }
        ops->reload = op;
        return 0;
}

int ps_pool_reload(ps_registry *reg, const char *pool_id, const ps_reload_request *req,
                   ps_reload_done_fn done, void *userdata, char *err, size_t errlen) {
        const char *hex = NULL;
        pool_ops *ops;
        reload_op *op;
        size_t n;
        int rc;

        if (!reg || !pool_id || !req)
                return -EINVAL;
        if ((rc = check_pool(reg, pool_id, &ops, err, errlen)) != 0)
                return rc;
        if (!req->model_path == !req->model_ref)
                return ps_errf(err, errlen, PS_E_INVALID, "model_path or model_ref: exactly one is required");
        if (req->model_path && req->model_path[0] != '/')
                return ps_errf(err, errlen, PS_E_INVALID, "model_path: must be an absolute path");
        if (req->model_ref && (!req->model_ref[0] || strpbrk(req->model_ref, " \t\r\n")))
                return ps_errf(err, errlen, PS_E_INVALID, "model_ref: must be a non-empty reference without spaces");
        if (req->sha256 && !ps_sha256_parse(req->sha256, &hex))
                return ps_errf(err, errlen, PS_E_INVALID, "sha256: must be 64 hex digits");
        if (req->sha256 && !req->model_path)
                return ps_errf(err, errlen, PS_E_INVALID, "sha256: needs model_path (a file to verify)");
        if (req->engine_version && !req->engine_version[0])
                return ps_errf(err, errlen, PS_E_INVALID, "engine_version: must not be empty");
        if ((unsigned) req->strategy >= PS_RELOAD_STRATEGY_MAX)
                return ps_errf(err, errlen, PS_E_INVALID, "strategy: must be drain-first or surge");
        for (size_t i = 0; req->flags && i < req->n_flags; i++)
                if (!req->flags[i])
                        return ps_errf(err, errlen, PS_E_INVALID, "flags[%zu]: must be a string", i);

        n = registry_pool_size(reg, pool_id);
        op = op_new(reg, pool_id, n, req->strategy, req->drain_deadline_ms, done, userdata);
        if (!op)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if ((rc = spec_for_request(op->parts[i].replica, req, hex, &op->parts[i].new_spec)) < 0) {
                        reload_op_free(op);
                        return rc;
                }
        rc = op_begin(op, hex);
        if (rc == PS_E_INVALID)
                return ps_errf(err, errlen, PS_E_INVALID, "pool %s: no spare port for a surge", pool_id);
        return rc;
}

int ps_pool_reload_specs(ps_registry *reg, const char *pool_id,
                         const ps_engine_spec *const *specs, size_t n,
                         ps_reload_strategy strategy, int64_t drain_deadline_ms,
                         ps_reload_done_fn done, void *userdata, char *err, size_t errlen) {
        pool_ops *ops;
        reload_op *op;
        int rc;

        if (!reg || !pool_id || (n && !specs))
                return -EINVAL;
        if ((rc = check_pool(reg, pool_id, &ops, err, errlen)) != 0)
                return rc;
        if (n != registry_pool_size(reg, pool_id))
                return ps_errf(err, errlen, PS_E_INVALID, "pool %s has %zu replicas, %zu specs given",
                               pool_id, registry_pool_size(reg, pool_id), n);
        if ((unsigned) strategy >= PS_RELOAD_STRATEGY_MAX)
                return ps_errf(err, errlen, PS_E_INVALID, "strategy: must be drain-first or surge");
        for (size_t i = 0; i < n; i++) {
                const ps_replica *r = ps_registry_replica_at(reg, pool_id, i);

                if (!specs[i] || !str_same(specs[i]->pool_id, r->pool_id) ||
                    !str_same(specs[i]->replica_id, r->replica_id) ||
                    !str_same(specs[i]->device_mask, r->current->device_mask))
                        return ps_errf(err, errlen, PS_E_INVALID,
                                       "specs[%zu]: pool_id, replica_id and device_mask must stay %s/%s/%s",
                                       i, r->pool_id, r->replica_id,
                                       r->current->device_mask ? r->current->device_mask : "(none)");
        }
        op = op_new(reg, pool_id, n, strategy, drain_deadline_ms, done, userdata);
        if (!op)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                op->parts[i].new_spec = ps_engine_spec_copy(specs[i]);
                if (!op->parts[i].new_spec) {
                        reload_op_free(op);
                        return -ENOMEM;
                }
        }
        rc = op_begin(op, NULL);
        if (rc == PS_E_INVALID)
                return ps_errf(err, errlen, PS_E_INVALID, "pool %s: no spare port for a surge", pool_id);
        return rc;
}

bool ps_pool_reloading(ps_registry *reg, const char *pool_id) {
        pool_ops *ops = reg ? registry_pool_ops(reg, pool_id) : NULL;

        return ops && ops->reload;
}
