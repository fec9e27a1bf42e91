/* SPDX-License-Identifier: MIT */
/*
 * Engines after a restart: the store's records against the processes that
 * run and the configuration this daemon has. Adopts what is wanted, stops
 * what is not, never signals a process that merely took over a recorded
 * pid, and records every engine change from then on.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "pool-services/base/errors.h"
#include "supervise/replica.h"
#include "pool-services/pool/reconcile.h"

#define DEFAULT_GRACE_MS 10000

typedef struct adopt_entry {
        char pool_id[65];
        char replica_id[65];
        ps_engine_identity id;
} adopt_entry;

typedef struct stopper stopper;

struct ps_reconcile {
        ps_context *ctx;
        ps_registry *reg;
        ps_store *store;
        int64_t grace_ms;
        adopt_entry *adopt;
        size_t n_adopt;
        stopper *stopping;
        unsigned adopted, dropped, stopped, reloads;
};

/* An engine no longer wanted, on its way out. */
struct stopper {
        ps_reconcile *rc;
        stopper *next;
        ps_engine *engine;
        struct event *grace;
        char pool_id[65], replica_id[65], role[8];
        pid_t pid;
};

static void say(const ps_reconcile *rc, ps_log_level level, const char *message, const char *pool_id,
                const char *replica_id, const ps_field *fields, size_t n) {
        const ps_event ev = {
                .type = PS_EVENT_GENERIC, .level = level, .message = message,
                .pool_id = pool_id && pool_id[0] ? pool_id : NULL,
                .replica_id = replica_id && replica_id[0] ? replica_id : NULL,
                .fields = fields, .n_fields = n,
        };

        ps_event_emit(&rc->ctx->sink, &ev);
}

#define SAY(rc, level, msg, pool, replica, ...)                                                 \
        do {                                                                                    \
                const ps_field f_[] = { __VA_ARGS__ };                                          \
                say(rc, level, msg, pool, replica, f_, sizeof(f_) / sizeof(f_[0]));            \
        } while (0)

/* ---- stopping what is not wanted ------------------------------------------ */

static void stopper_free(stopper *s) {
        ps_reconcile *rc = s->rc;

        for (stopper **at = &rc->stopping; *at; at = &(*at)->next)
                if (*at == s) {
                        *at = s->next;
                        break;
                }
        if (s->grace)
                event_free(s->grace);
        ps_engine_free(s->engine);
        free(s);
}

static void on_stopped(ps_engine *engine, const ps_exit_status *st, void *userdata) {
        stopper *s = userdata;
        char pid[16];

        (void) engine;
        (void) st;
        snprintf(pid, sizeof(pid), "%d", (int) s->pid);
        SAY(s->rc, PS_LOG_INFO, "engine no longer wanted has stopped", s->pool_id, s->replica_id,
            PS_FIELD_INT("pid", s->pid), PS_FIELD_STR("role", s->role));
        /* Only this engine's record: the replica may have a new one. */
        (void) ps_store_del_engine_pid(s->rc->store, s->pool_id, s->replica_id, s->role, s->pid);
        stopper_free(s);
}

static void on_grace(evutil_socket_t fd, short what, void *userdata) {
        stopper *s = userdata;

        (void) fd;
        (void) what;
        SAY(s->rc, PS_LOG_WARN, "stop grace over: killing engine no longer wanted", s->pool_id,
            s->replica_id, PS_FIELD_INT("pid", s->pid), PS_FIELD_STR("signal", "SIGKILL"));
        (void) ps_engine_signal(s->engine, SIGKILL);
}

static void stop_engine(ps_reconcile *rc, const ps_store_engine *e, const char *why) {
        ps_engine_spec *spec = ps_store_spec_parse(e->spec);
        char pid_name[160], log_name[176], err[256] = "";
        ps_engine_options opts = { .runtime_dir = rc->ctx->runtime_dir };
        stopper *s = calloc(1, sizeof(*s));
        struct timeval tv = { .tv_sec = rc->grace_ms / 1000, .tv_usec = (rc->grace_ms % 1000) * 1000 };
        ps_replica *rep = ps_registry_find(rc->reg, e->pool_id, e->replica_id);
        int r = -ENOMEM;

        /* The files follow the port: the spare port's are the surge's. */
        if (rep && e->port != ps_replica_home_port(rep)) {
                snprintf(pid_name, sizeof(pid_name), "%s_%s.surge.pid", e->pool_id, e->replica_id);
                snprintf(log_name, sizeof(log_name), "engine-%s_%s.surge.log", e->pool_id, e->replica_id);
                opts.pid_name = pid_name;
                opts.log_name = log_name;
        }
        if (s && spec) {
                s->rc = rc;
                s->pid = e->id.pid;
                snprintf(s->pool_id, sizeof(s->pool_id), "%s", e->pool_id);
                snprintf(s->replica_id, sizeof(s->replica_id), "%s", e->replica_id);
                snprintf(s->role, sizeof(s->role), "%s", e->role);
                r = ps_engine_adopt_recorded(rc->ctx->base, spec, &opts, &e->id, on_stopped, s,
                                             &s->engine, err, sizeof(err));
                s->grace = r == 0 ? evtimer_new(rc->ctx->base, on_grace, s) : NULL;
        }
        ps_engine_spec_free(spec);
        if (r < 0 || !s || !s->grace) {
                SAY(rc, PS_LOG_WARN, "engine no longer wanted cannot be stopped", e->pool_id,
                    e->replica_id, PS_FIELD_INT("pid", e->id.pid), PS_FIELD_STR("role", e->role),
                    PS_FIELD_STR("error", err[0] ? err : "its record does not parse"));
                if (s) {
                        ps_engine_free(s->engine);
                        free(s);
                }
                (void) ps_store_del_engine_pid(rc->store, e->pool_id, e->replica_id, e->role, e->id.pid);
                return;
        }
        s->next = rc->stopping;
        rc->stopping = s;
        rc->stopped++;
        SAY(rc, PS_LOG_WARN, "stopping an engine no longer wanted", e->pool_id, e->replica_id,
            PS_FIELD_INT("pid", e->id.pid), PS_FIELD_STR("role", e->role),
            PS_FIELD_INT("port", e->port), PS_FIELD_STR("reason", why));
        (void) ps_engine_signal(s->engine, SIGTERM);
        evtimer_add(s->grace, &tv);
}

/* ---- the records at start -------------------------------------------------- */

/* A record without a pid (the daemon died between the spawn and the
 * commit): the process of ours that runs exactly the recorded argv and
 * leads its process group, if one does. */
static bool find_unrecorded(ps_store_engine *e) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        bool found = false;

        while (d && !found && (de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                ps_engine_identity id;

                if (*end || pid <= 1 || ps_engine_proc_identity((pid_t) pid, &id) < 0 ||
                    strcmp(id.cmdline_hash, e->id.cmdline_hash) != 0 ||
                    (geteuid() != 0 && id.uid != geteuid()) || getpgid((pid_t) pid) != (pid_t) pid)
                        continue;
                e->id = id;
                found = true;
        }
        if (d)
                closedir(d);
        return found;
}

/* Whether the process runs the recorded spec as a "#!" script, whose
 * command line is its interpreter's ("/bin/sh /dev/fd/N ARGS"), not the
 * argv recorded. */
static bool runs_as_script(const ps_store_engine *e) {
        ps_engine_spec *spec = ps_store_spec_parse(e->spec);
        char **argv = NULL;
        bool yes;

        if (spec)
                (void) ps_engine_spec_argv(spec, &argv, NULL, 0);
        yes = argv && ps_engine_cmdline_is(e->id.pid, argv);
        free(argv);
        ps_engine_spec_free(spec);
        return yes;
}

/* Whether the record's process is still the engine it recorded. */
static bool still_ours(ps_reconcile *rc, const ps_store_engine *e) {
        ps_engine_identity now;
        int r = ps_engine_proc_identity(e->id.pid, &now);

        if (r == 0 && now.start_time == e->id.start_time && now.uid == e->id.uid &&
            (strcmp(now.cmdline_hash, e->id.cmdline_hash) == 0 || runs_as_script(e)))
                return true;
        if (r == 0)
                SAY(rc, PS_LOG_WARN, "recorded engine's pid is another process now; not signalled",
                    e->pool_id, e->replica_id, PS_FIELD_INT("pid", e->id.pid),
                    PS_FIELD_STR("role", e->role));
        else
                SAY(rc, PS_LOG_INFO, "recorded engine is gone", e->pool_id, e->replica_id,
                    PS_FIELD_INT("pid", e->id.pid), PS_FIELD_STR("role", e->role));
        return false;
}

/* The replica (when configured, and with no engine to adopt) will start
 * spec_json. 0 or a negative errno. */
static int take_spec(ps_reconcile *rc, const char *pool_id, const char *replica_id,
                     const char *spec_json) {
        ps_replica *r = ps_registry_find(rc->reg, pool_id, replica_id);
        ps_engine_spec *spec;
        char err[256];
        int ret;

        if (!r)
                return -ENOENT;
        for (size_t i = 0; i < rc->n_adopt; i++)
                if (strcmp(rc->adopt[i].pool_id, pool_id) == 0 &&
                    strcmp(rc->adopt[i].replica_id, replica_id) == 0)
                        return -EEXIST;
        spec = ps_store_spec_parse(spec_json);
        if (!spec)
                return -EBADMSG;
        ret = ps_replica_set_spec(r, spec, err, sizeof(err));
        ps_engine_spec_free(spec);
        return ret;
}

static int take_for_adoption(ps_reconcile *rc, ps_replica *r, const ps_store_engine *e) {
        ps_engine_spec *spec = ps_store_spec_parse(e->spec);
        adopt_entry *grown;
        char err[256] = "";
        int ret;

        if (!spec)
                return -EBADMSG;
        ret = ps_replica_set_spec(r, spec, err, sizeof(err));
        ps_engine_spec_free(spec);
        if (ret != 0)
                return ret < 0 ? ret : -EBUSY;
        grown = realloc(rc->adopt, (rc->n_adopt + 1) * sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        rc->adopt = grown;
        grown[rc->n_adopt] = (adopt_entry) { .id = e->id };
        snprintf(grown[rc->n_adopt].pool_id, sizeof(grown->pool_id), "%s", e->pool_id);
        snprintf(grown[rc->n_adopt].replica_id, sizeof(grown->replica_id), "%s", e->replica_id);
        rc->n_adopt++;
        return 0;
}

static int on_record(const ps_store_engine *rec, void *ud) {
        ps_reconcile *rc = ud;
        ps_store_engine found = *rec;
        const ps_store_engine *e = rec;
        ps_replica *r;

        if (rec->id.pid == 0) {
                if (!find_unrecorded(&found)) {
                        rc->dropped++;
                        (void) ps_store_del_engine_pid(rc->store, rec->pool_id, rec->replica_id,
                                                       rec->role, 0);
                        return 0;
                }
                e = &found;
                (void) ps_store_del_engine_pid(rc->store, rec->pool_id, rec->replica_id, rec->role, 0);
                (void) ps_store_put_engine(rc->store, e);
                SAY(rc, PS_LOG_INFO, "engine started just before the restart found by its command line",
                    e->pool_id, e->replica_id, PS_FIELD_INT("pid", e->id.pid),
                    PS_FIELD_STR("role", e->role));
        }
        if (!still_ours(rc, e)) {
                /* Its replica starts again on what it ran, as it would
                 * have had the daemon lived. */
                if (strcmp(e->role, "home") == 0)
                        (void) take_spec(rc, e->pool_id, e->replica_id, e->spec);
                rc->dropped++;
                (void) ps_store_del_engine_pid(rc->store, e->pool_id, e->replica_id, e->role, e->id.pid);
                return 0;
        }
        r = ps_registry_find(rc->reg, e->pool_id, e->replica_id);
        if (!r) {
                stop_engine(rc, e, "its pool or replica is no longer configured");
                return 0;
        }
        if (strcmp(e->role, "home") != 0) {
                stop_engine(rc, e, "a surge engine left by a reload the restart interrupted");
                return 0;
        }
        if (take_for_adoption(rc, r, e) < 0) {
                stop_engine(rc, e, "its recorded spec cannot be taken over");
                return 0;
        }
        rc->adopted++;
        return 0;
}

static int on_reload(const ps_store_reload *rl, void *ud) {
        ps_reconcile *rc = ud;
        ps_engine_spec *target = ps_store_spec_parse(rl->target_spec);
        ps_engine_spec *previous = ps_store_spec_parse(rl->previous_spec);

        /* No engine left to adopt (the old one stopped, the new one not
         * started): the replica rolls back onto the previous spec. */
        if (previous && previous->replica_id)
                (void) take_spec(rc, rl->pool_id, previous->replica_id, rl->previous_spec);
        ps_engine_spec_free(previous);
        rc->reloads++;
        SAY(rc, PS_LOG_WARN, "reload interrupted by a restart: the pool goes on with the engine "
            "recorded as serving", rl->pool_id, NULL, PS_FIELD_STR("strategy", rl->strategy),
            PS_FIELD_STR("phase", rl->phase),
            PS_FIELD_STR("target_model_id", target ? target->model_id : NULL));
        ps_engine_spec_free(target);
        (void) ps_store_del_reload(rc->store, rl->pool_id);
        return 0;
}

/* The records as read, their strings owned. */
typedef struct held_records {
        ps_store_engine *engines;
        size_t n_engines;
        ps_store_reload *reloads;
        size_t n_reloads;
} held_records;

static int keep_record(const ps_store_engine *e, void *ud) {
        held_records *h = ud;
        ps_store_engine *grown = realloc(h->engines, (h->n_engines + 1) * sizeof(*grown));

        if (!grown)
                return -ENOMEM;
        h->engines = grown;
        grown[h->n_engines] = *e;
        grown[h->n_engines].spec = e->spec ? strdup(e->spec) : NULL;
        h->n_engines++;
        return 0;
}

static int keep_reload(const ps_store_reload *r, void *ud) {
        held_records *h = ud;
        ps_store_reload *grown = realloc(h->reloads, (h->n_reloads + 1) * sizeof(*grown));

        if (!grown)
                return -ENOMEM;
        h->reloads = grown;
        grown[h->n_reloads] = *r;
        grown[h->n_reloads].target_spec = r->target_spec ? strdup(r->target_spec) : NULL;
        grown[h->n_reloads].previous_spec = r->previous_spec ? strdup(r->previous_spec) : NULL;
        h->n_reloads++;
        return 0;
}

static void held_free(held_records *h) {
        for (size_t i = 0; i < h->n_engines; i++)
                free((char *) h->engines[i].spec);
        for (size_t i = 0; i < h->n_reloads; i++) {
                free((char *) h->reloads[i].target_spec);
                free((char *) h->reloads[i].previous_spec);
        }
        free(h->engines);
        free(h->reloads);
}

/* ---- the hooks ------------------------------------------------------------ */

static const char *role_of(unsigned instance) {
        return instance == 0 ? "home" : "surge";
}

/* Before the fork, committed at once: a daemon killed between the spawn
 * and the turn's commit leaves a record without a pid, and the next one
 * finds the engine by its command line (find_unrecorded()). */
static void record_intent(ps_reconcile *rc, ps_replica *r, unsigned instance,
                          const ps_engine_spec *spec) {
        ps_store_engine rec = { .port = spec ? spec->port : 0 };
        char *json;

        if (!spec || ps_engine_argv_hash(spec, rec.id.cmdline_hash, NULL, 0) < 0)
                return;
        json = ps_store_spec_json(spec);
        snprintf(rec.pool_id, sizeof(rec.pool_id), "%s", ps_replica_pool_id(r));
        snprintf(rec.replica_id, sizeof(rec.replica_id), "%s", ps_replica_id(r));
        snprintf(rec.role, sizeof(rec.role), "%s", role_of(instance));
        rec.spec = json;
        if (json && ps_store_put_engine(rc->store, &rec) == 0)
                (void) ps_store_commit(rc->store);
        free(json);
}

static void on_engine_changed(ps_replica *r, ps_engine_change what, unsigned instance,
                              const ps_engine *engine, const ps_engine_spec *spec, void *userdata) {
        ps_reconcile *rc = userdata;
        ps_store_engine rec = { .port = spec ? spec->port : 0 };
        char *json;

        if (!rc->store)
                return;
        switch (what) {
        case PS_ENGINE_GONE:
                (void) ps_store_del_engine(rc->store, ps_replica_pool_id(r), ps_replica_id(r),
                                           role_of(instance));
                return;
        case PS_ENGINE_SWAPPED:
                (void) ps_store_swap_engines(rc->store, ps_replica_pool_id(r), ps_replica_id(r));
                return;
        case PS_ENGINE_STARTING:
                record_intent(rc, r, instance, spec);
                return;
        case PS_ENGINE_UP:
                break;
        }
        if (!engine || !spec || ps_engine_proc_identity(ps_engine_pid(engine), &rec.id) < 0 ||
            ps_engine_argv_hash(spec, rec.id.cmdline_hash, NULL, 0) < 0)
                return;
        json = ps_store_spec_json(spec);
        snprintf(rec.pool_id, sizeof(rec.pool_id), "%s", ps_replica_pool_id(r));
        snprintf(rec.replica_id, sizeof(rec.replica_id), "%s", ps_replica_id(r));
        snprintf(rec.role, sizeof(rec.role), "%s", role_of(instance));
        rec.spec = json;
        if (json)
                (void) ps_store_put_engine(rc->store, &rec);
        free(json);
}

static int on_engine_recorded(ps_replica *r, ps_engine_identity *ret, void *userdata) {
        ps_reconcile *rc = userdata;

        for (size_t i = 0; i < rc->n_adopt; i++)
                if (strcmp(rc->adopt[i].pool_id, ps_replica_pool_id(r)) == 0 &&
                    strcmp(rc->adopt[i].replica_id, ps_replica_id(r)) == 0) {
                        *ret = rc->adopt[i].id;
                        rc->adopt[i] = rc->adopt[--rc->n_adopt];
                        return 0;
                }
        return 1;
}

/* ---- the object ----------------------------------------------------------- */

int ps_reconcile_start(ps_context *ctx, ps_registry *reg, ps_store *store, int64_t grace_ms,
                       ps_reconcile **ret) {
        held_records held = { .engines = NULL };
        ps_reconcile *rc;

        if (!ctx || !reg || !ret)
                return -EINVAL;
        *ret = NULL;
        if (!store)
                return 0;
        rc = calloc(1, sizeof(*rc));
        if (!rc)
                return -ENOMEM;
        *rc = (ps_reconcile) { .ctx = ctx, .reg = reg, .store = store,
                               .grace_ms = grace_ms > 0 ? grace_ms : DEFAULT_GRACE_MS };
        if (ps_store_each_reload(store, keep_reload, &held) < 0 ||
            ps_store_each_engine(store, keep_record, &held) < 0)
                SAY(rc, PS_LOG_ERROR, "cannot read the recorded engines", NULL, NULL,
                    PS_FIELD_STR("error", ps_store_error(store)));
        /* Read first, then acted on: the walk never sees its own changes. */
        for (size_t i = 0; i < held.n_engines; i++)
                (void) on_record(&held.engines[i], rc);
        for (size_t i = 0; i < held.n_reloads; i++)
                (void) on_reload(&held.reloads[i], rc);
        held_free(&held);
        if (rc->adopted || rc->dropped || rc->stopped || rc->reloads)
                SAY(rc, PS_LOG_INFO, "engines reconciled", NULL, NULL,
                    PS_FIELD_INT("to_adopt", rc->adopted), PS_FIELD_INT("gone", rc->dropped),
                    PS_FIELD_INT("stopping", rc->stopped),
                    PS_FIELD_INT("reloads_interrupted", rc->reloads));
        ctx->engine_changed = on_engine_changed;
        ctx->engine_recorded = on_engine_recorded;
        ctx->engine_userdata = rc;
        *ret = rc;
        return 0;
}

ps_reconcile *ps_reconcile_free(ps_reconcile *rc) {
        if (!rc)
                return NULL;
        rc->ctx->engine_changed = NULL;
        rc->ctx->engine_recorded = NULL;
        rc->ctx->engine_userdata = NULL;
        while (rc->stopping)
                stopper_free(rc->stopping);
        free(rc->adopt);
        free(rc);
        return NULL;
}
