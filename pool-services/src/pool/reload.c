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

#include "base/errfmt.h"
#include "pool/registry-private.h"
#include "supervise/replica.h"
#include "base/strv.h"
#include "supervise/stage.h"
#include "pool-services/base/digest.h"
#include "pool-services/pool/reload.h"
#include "pool-services/pool/store.h"

#define MESSAGE_MAX 768

typedef struct reload_op reload_op;

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

static reload_op *reload_op_free(reload_op *op) {
        if (!op)
                return NULL;
        op->stage = ps_stage_job_free(op->stage);
        for (size_t i = 0; i < op->n_parts; i++) {
                reload_part *part = &op->parts[i];

                if (part->waiting)
                        ps_replica_forget_reply(part->replica, PD_REPLY_RELOAD);
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

/* The pool goes with the reload unfinished: its caller is answered
 * (PS_E_CONFLICT, no result) as a replica answers its waiters when freed:
 * a request waiting on it must not wait, or leak, forever. */
static void on_pool_removed(void *state) {
        reload_op *op = state;
        ps_reload_done_fn fn = op ? op->fn : NULL;

        if (!op)
                return;
        op->fn = NULL;
        if (fn)
                fn(PS_E_CONFLICT, "reload abandoned: the pool is no longer supervised", NULL,
                   op->userdata);
        reload_op_free(op);
}

/* The pool's reload slot; NULL for an unknown pool. */
static ps_pool_op *slot_of(ps_registry *reg, const char *pool_id) {
        return ps_registry_pool_op(reg, pool_id, PS_POOL_OP_RELOAD);
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
               a->slots == b->slots && a->port == b->port && str_same(a->host, b->host) &&
               str_same(a->tensor_split, b->tensor_split);
}

static int set_str(char **field, const char *value) {
        char *copy = value ? strdup(value) : NULL;

        if (value && !copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

/* The spare port of a surge: port + replicas from the home port, and back
 * home from there. */
static uint16_t surge_port(const ps_replica *r, size_t n_replicas) {
        uint16_t home = ps_replica_home_port(r);
        unsigned port = ps_replica_spec(r)->port == home ? home + n_replicas : home;

        return port <= 65535 ? (uint16_t) port : 0;
}

static const char *base_name(const char *path) {
        const char *slash = strrchr(path, '/');

        return slash ? slash + 1 : path;
}

/* The request's flags as the new templates. */
static int set_flags(ps_engine_spec *s, const char *const *flags, size_t n) {
        char **copy = calloc(n ? n : 1, sizeof(*copy));

        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(copy[i] = strdup(flags[i]))) {
                        ps_strv_free(copy, i);
                        return -ENOMEM;
                }
        ps_strv_free(s->flags, s->n_flags);
        s->flags = copy;
        s->n_flags = n;
        return 0;
}

/*
 * The new spec of one replica for a request (port not yet moved): the
 * request changes the spec's variables and, with flags, its templates;
 * the argv is rendered when the engine starts.
 */
static int spec_for_request(const ps_replica *r, const ps_reload_request *req, const char *hex,
                            ps_engine_spec **ret, char *err, size_t errlen) {
        const ps_engine_spec *cur = ps_replica_spec(r);
        ps_engine_spec *s = ps_engine_spec_copy(cur);
        char digest[80], **argv = NULL;
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
                rc = set_flags(s, req->flags, req->n_flags);
        /* refused now, not when the engine starts */
        if (rc == 0)
                rc = ps_engine_spec_argv(s, &argv, err, errlen);
        free(argv);
        if (rc != 0) {
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
        const ps_engine_spec *now = first ? ps_replica_spec(first->replica) : NULL;
        const ps_engine_spec *before = first ? first->old_spec : NULL;
        json_t *replicas = json_array();

        for (size_t i = 0; replicas && i < op->n_parts; i++)
                json_array_append_new(replicas, json_pack("{s:s, s:b, s:o}",
                        "replica_id", ps_replica_id(op->parts[i].replica),
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
        const ps_context *ctx = ps_registry_ctx(op->reg);
        ps_pool_op *slot = slot_of(op->reg, op->pool_id);
        int64_t duration_ms = ps_clock_mono_ms(ctx->clock) - op->started_mono;
        json_t *result = result_json(op, duration_ms);
        const ps_field fields[] = {
                PS_FIELD_STR("request", "reload"),
                PS_FIELD_BOOL("ok", op->rc == 0),
                PS_FIELD_STR("strategy", ps_reload_strategy_to_string(op->strategy)),
                PS_FIELD_STR("reason", op->rc == 0 ? NULL : op->reason),
                PS_FIELD_BOOL("noop", op->noop),
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

        if (slot && slot->state == op)
                *slot = (ps_pool_op) { 0 };   /* the callback may remove the pool */
        ps_store_note_reload(op->reg, op->pool_id, NULL, NULL, NULL, NULL);
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

/* How the new engine failed: a health check, or the way it exited. */
static const char *new_engine_failure(pd_crash_class cls) {
        switch (cls) {
        case PD_CRASH_STARTUP_TIMEOUT:
        case PD_CRASH_HEALTH_TIMEOUT:
        case PD_CRASH_STALL_TIMEOUT:
        case PD_CRASH_CLASS_MAX:
                return "health";
        case PD_CRASH_GRACEFUL:
        case PD_CRASH_EXIT_CODE:
        case PD_CRASH_SIGNAL:
        case PD_CRASH_CUDA_ERROR:
        case PD_CRASH_DRIVER_ERROR:
        case PD_CRASH_VRAM_OOM:
        case PD_CRASH_HOST_OOM:
        case PD_CRASH_PREFLIGHT:
        case PD_CRASH_NODE_ERROR:
                break;
        }
        return pd_crash_class_to_string(cls);
}

/* A replica's failed reload as the pool's outcome, and the reason the
 * result and the metrics give for it. */
static int part_failure(int rc, pd_crash_class cls, const char **reason) {
        switch (rc) {
        case PS_E_DRAIN_TIMEOUT:
                *reason = "drain_timeout";
                return PS_E_DRAIN_TIMEOUT;
        case PS_E_STAGE_FAILED:
                *reason = "staging";
                return PS_E_STAGE_FAILED;
        case PS_E_ROLLBACK_FAILED:
                *reason = "rollback_failed";
                return PS_E_RELOAD_FAILED;
        case PS_E_ENGINE_FAILED:
                *reason = "engine_failed";
                return PS_E_RELOAD_FAILED;
        case PS_E_CONFLICT:
                *reason = "stopped";
                return PS_E_CONFLICT;
        default:
                *reason = new_engine_failure(cls);
                return PS_E_RELOAD_FAILED;
        }
}

/* ---- steps ------------------------------------------------------------------- */

static void on_part_done(int rc, const char *message, void *userdata) {
        reload_part *part = userdata;
        reload_op *op = part->op;
        char text[PD_ACTION_TEXT_MAX];
        const char *reason;
        int failure;

        if (!part->waiting)
                return;
        part->waiting = false;
        snprintf(text, sizeof(text), "%s%s", rc == 0 ? "" : "reload failed: ",
                 message ? message : "");
        if (!op->reverting) {
                part->ok = rc == 0;
                snprintf(part->message, sizeof(part->message), "%s", text);
                if (rc == 0) {
                        op->at++;
                } else {
                        failure = part_failure(rc, ps_replica_lifecycle(part->replica)->reload_error_cls,
                                               &reason);
                        fail(op, failure, reason, "%s", part->message);
                        op->reverting = true;
                        op->revert_at = op->at;
                }
        } else {
                op->revert_at--;
                if (rc != 0) {
                        size_t len = strlen(op->message);

                        snprintf(op->message + len, sizeof(op->message) - len,
                                 "; restoring replica %s failed: %s", ps_replica_id(part->replica),
                                 text);
                }
                snprintf(part->message, sizeof(part->message), "%s",
                         rc == 0 ? "restored to the previous engine" : text);
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

        if (ps_replica_stage(r, spec) < 0)
                return -ENOMEM;
        part->waiting = true;
        rc = ps_replica_request(r, &ev, PD_REPLY_RELOAD, on_part_done, part);
        if (rc != 0) {
                part->waiting = false;
                (void) ps_replica_stage(r, NULL);
        }
        return rc;
}

static bool retiring(const ps_replica *r) {
        return pd_lifecycle_retiring(ps_replica_lifecycle(r));
}

/* A replica of the pool ran its machine: a rollback waiting for a
 * surged replica's old engine to leave goes on once it has. */
static void on_pool_settled(void *state) {
        reload_op *op = state;

        if (!op->awaiting || (op->revert_at > 0 && retiring(op->parts[op->revert_at - 1].replica)))
                return;
        op->awaiting = false;
        kick(op);
}

static const ps_pool_op_hooks reload_hooks = {
        .pool_settled = on_pool_settled,
        .pool_removed = on_pool_removed,
};

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
                             op->pool_id, ps_replica_id(part->replica), ps_replica_state(part->replica));
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
                         "; replica %s could not be restored (%s)", ps_replica_id(part->replica),
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

        op->stage = ps_stage_job_free(op->stage);
        if (result != STAGE_OK) {
                fail(op, PS_E_STAGE_FAILED, result == STAGE_MISMATCH ? "checksum" : "staging",
                     "reload failed: staging failed: %s", detail);
                op->finished = true;
        }
        step(op);
}

/* ---- starting ------------------------------------------------------------------ */

static int check_pool(ps_registry *reg, const char *pool_id, char *err, size_t errlen) {
        const ps_pool_op *slot = slot_of(reg, pool_id);
        ps_replica *r;

        if (!slot)
                return ps_errf(err, errlen, PS_E_NOT_FOUND, "pool %s not found", pool_id);
        if (ps_registry_pool_op(reg, pool_id, PS_POOL_OP_DRAIN)->state)
                return ps_errf(err, errlen, PS_E_DRAINING, "pool %s is draining", pool_id);
        if (slot->state)
                return ps_errf(err, errlen, PS_E_CONFLICT, "pool %s is already reloading", pool_id);
        for (size_t i = 0; (r = ps_registry_replica_at(reg, pool_id, i)); i++) {
                if (ps_replica_external(r))
                        return ps_errf(err, errlen, PS_E_CONFLICT,
                                       "pool %s replica %s was registered from a handoff file: not managed here",
                                       pool_id, ps_replica_id(r));
                if (ps_replica_draining(r))
                        return ps_errf(err, errlen, PS_E_DRAINING, "pool %s is draining", pool_id);
                if (pd_lifecycle_retiring(ps_replica_lifecycle(r)))
                        return ps_errf(err, errlen, PS_E_CONFLICT,
                                       "pool %s replica %s is still retiring its previous engine "
                                       "(surge reload): reload again once it has stopped",
                                       pool_id, ps_replica_id(r));
                if (ps_replica_lifecycle(r)->state != PD_STATE_READY)
                        return ps_errf(err, errlen, PS_E_NOT_READY, "pool %s is not ready: replica %s is %s",
                                       pool_id, ps_replica_id(r), ps_replica_state(r));
        }
        return 0;
}

static reload_op *op_new(ps_registry *reg, const char *pool_id, size_t n, ps_reload_strategy strategy,
                         int64_t deadline_ms, ps_reload_done_fn done, void *userdata) {
        const ps_context *ctx = ps_registry_ctx(reg);
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
                op->parts[i].old_spec = ps_engine_spec_copy(ps_replica_spec(op->parts[i].replica));
                if (!op->parts[i].old_spec)
                        return reload_op_free(op);
        }
        return op;
}

static void surge_falls_back(reload_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The surge runs drain-first instead: the answer's surge_fallback and a
 * warning say why. */
static void surge_falls_back(reload_op *op, const char *fmt, ...) {
        const ps_context *ctx = ps_registry_ctx(op->reg);
        va_list ap;

        op->strategy = PS_RELOAD_DRAIN_FIRST;
        va_start(ap, fmt);
        vsnprintf(op->fallback, sizeof(op->fallback), fmt, ap);
        va_end(ap);
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

/* Decides no-op or not, moves surge ports, stages, and registers the op. */
static int op_begin(reload_op *op, const char *sha_hex) {
        const ps_context *ctx = ps_registry_ctx(op->reg);
        ps_pool_op *slot = slot_of(op->reg, op->pool_id);
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
        /* The surge engine gets the spare port through {port}: one whose
         * arguments do not take it would start on the port the old engine
         * holds. Such a reload runs drain-first and says why. */
        for (size_t i = 0; !op->noop && op->strategy == PS_RELOAD_SURGE && i < op->n_parts; i++) {
                const reload_part *part = &op->parts[i];

                if (!ps_engine_spec_takes_port(part->new_spec))
                        surge_falls_back(op, "replica %s has no port variable: its arguments do "
                                         "not take {port} (a PreparedEngine: no \"--port %u\" "
                                         "in flags), so a second engine cannot get a spare port",
                                         ps_replica_id(part->replica),
                                         (unsigned) part->old_spec->port);
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
                surge_falls_back(op, "no room for both engines on the devices: %s", why);
        }
        /* The port is a variable: the templates render for the new one. */
        for (size_t i = 0; !op->noop && op->strategy == PS_RELOAD_SURGE && i < op->n_parts; i++) {
                reload_part *part = &op->parts[i];
                uint16_t port = surge_port(part->replica, op->n_parts);

                if (port == 0) {
                        reload_op_free(op);
                        return PS_E_INVALID;
                }
                if (part->new_spec->port == part->old_spec->port)
                        part->new_spec->port = port;
        }
        if (!op->noop && op->n_parts > 0)
                model = op->parts[0].new_spec->model_path;
        if (model && !str_same(model, op->parts[0].old_spec->model_path)) {
                rc = ps_stage_job_start(ctx->base, model, sha_hex, on_staged, op, &op->stage);
                if (rc < 0) {
                        reload_op_free(op);
                        return rc;
                }
        } else if (model && sha_hex) {
                rc = ps_stage_job_start(ctx->base, model, sha_hex, on_staged, op, &op->stage);
                if (rc < 0) {
                        reload_op_free(op);
                        return rc;
                }
        } else {
                kick(op);
        }
        *slot = (ps_pool_op) { .hooks = &reload_hooks, .state = op };
        if (!op->noop && op->n_parts > 0)
                ps_store_note_reload(op->reg, op->pool_id, ps_reload_strategy_to_string(op->strategy),
                                     op->stage ? "staging" : "replicas", op->parts[0].new_spec,
                                     op->parts[0].old_spec);
        return 0;
}

int ps_pool_reload(ps_registry *reg, const char *pool_id, const ps_reload_request *req,
                   ps_reload_done_fn done, void *userdata, char *err, size_t errlen) {
        const char *hex = NULL;
        reload_op *op;
        size_t n;
        int rc;

        if (!reg || !pool_id || !req)
                return -EINVAL;
        if ((rc = check_pool(reg, pool_id, err, errlen)) != 0)
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

        n = ps_registry_pool_size(reg, pool_id);
        op = op_new(reg, pool_id, n, req->strategy, req->drain_deadline_ms, done, userdata);
        if (!op)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if ((rc = spec_for_request(op->parts[i].replica, req, hex, &op->parts[i].new_spec,
                                           err, errlen)) != 0) {
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
        reload_op *op;
        int rc;

        if (!reg || !pool_id || (n && !specs))
                return -EINVAL;
        if ((rc = check_pool(reg, pool_id, err, errlen)) != 0)
                return rc;
        if (n != ps_registry_pool_size(reg, pool_id))
                return ps_errf(err, errlen, PS_E_INVALID, "pool %s has %zu replicas, %zu specs given",
                               pool_id, ps_registry_pool_size(reg, pool_id), n);
        if ((unsigned) strategy >= PS_RELOAD_STRATEGY_MAX)
                return ps_errf(err, errlen, PS_E_INVALID, "strategy: must be drain-first or surge");
        for (size_t i = 0; i < n; i++) {
                const ps_replica *r = ps_registry_replica_at(reg, pool_id, i);

                if (!specs[i] || !str_same(specs[i]->pool_id, ps_replica_pool_id(r)) ||
                    !str_same(specs[i]->replica_id, ps_replica_id(r)) ||
                    !str_same(specs[i]->device_mask, ps_replica_device_mask(r)))
                        return ps_errf(err, errlen, PS_E_INVALID,
                                       "specs[%zu]: pool_id, replica_id and device_mask must stay %s/%s/%s",
                                       i, ps_replica_pool_id(r), ps_replica_id(r),
                                       ps_replica_device_mask(r) ? ps_replica_device_mask(r) : "(none)");
        }
        op = op_new(reg, pool_id, n, strategy, drain_deadline_ms, done, userdata);
        if (!op)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                reload_part *part = &op->parts[i];

                part->new_spec = ps_engine_spec_copy(specs[i]);
                if (!part->new_spec) {
                        reload_op_free(op);
                        return -ENOMEM;
                }
                /* The configuration names the replica's home port; after a
                 * surge its engine runs on the spare one. The reload goes
                 * on from where the engine is, so the port follows it. */
                if (part->new_spec->port == ps_replica_home_port(part->replica))
                        part->new_spec->port = part->old_spec->port;
        }
        rc = op_begin(op, NULL);
        if (rc == PS_E_INVALID)
                return ps_errf(err, errlen, PS_E_INVALID, "pool %s: no spare port for a surge", pool_id);
        return rc;
}

bool ps_pool_reloading(ps_registry *reg, const char *pool_id) {
        const ps_pool_op *slot = reg ? slot_of(reg, pool_id) : NULL;

        return slot && slot->state;
}
