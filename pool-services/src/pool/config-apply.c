/* SPDX-License-Identifier: MIT */
/*
 * A configuration reload, pool by pool: the diff says what changed, and
 * the pool operations (preload, drain, reload) do the work on the loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errfmt.h"
#include "pool/registry-private.h"
#include "supervise/replica.h"
#include "pool-services/pool/config-apply.h"
#include "pool-services/pool/drain.h"
#include "pool-services/pool/store.h"
#include "pool-services/pool/reload.h"

/* The replicas a pool is to be registered with once its old self is gone. */
typedef struct replace_job {
        ps_registry *reg;
        ps_engine_spec **specs;
        ps_policy **policies;
        size_t n;
} replace_job;

static void emit(ps_registry *reg, const char *pool_id, ps_log_level level, const char *message,
                 const char *detail) {
        const ps_field fields[] = { PS_FIELD_STR("detail", detail) };
        ps_event ev = {
                .type = PS_EVENT_GENERIC,
                .level = level,
                .pool_id = pool_id,
                .message = message,
                .fields = fields,
                .n_fields = detail ? 1 : 0,
        };

        ps_event_emit(&ps_registry_ctx(reg)->sink, &ev);
}

static replace_job *job_free(replace_job *job) {
        if (!job)
                return NULL;
        for (size_t i = 0; i < job->n; i++) {
                ps_engine_spec_free(job->specs[i]);
                ps_policy_free(job->policies[i]);
        }
        free(job->specs);
        free(job->policies);
        free(job);
        return NULL;
}

/* The configured replicas of one pool, copied. */
static replace_job *job_new(ps_registry *reg, const ps_config_replica *list, size_t n,
                            const char *pool_id) {
        replace_job *job = calloc(1, sizeof(*job));

        if (!job)
                return NULL;
        job->reg = reg;
        job->specs = calloc(n ? n : 1, sizeof(*job->specs));
        job->policies = calloc(n ? n : 1, sizeof(*job->policies));
        if (!job->specs || !job->policies)
                return job_free(job);
        for (size_t i = 0; i < n; i++) {
                if (strcmp(list[i].spec->pool_id, pool_id) != 0)
                        continue;
                job->specs[job->n] = ps_engine_spec_copy(list[i].spec);
                job->policies[job->n] = ps_policy_copy(list[i].policy);
                if (!job->specs[job->n] || !job->policies[job->n++])
                        return job_free(job);
        }
        return job;
}

/* Registers and preloads the job's replicas; frees the job. */
static void job_start(replace_job *job, const char *pool_id) {
        char err[256];
        ps_replica *r;

        for (size_t i = 0; i < job->n; i++) {
                if (ps_registry_add(job->reg, job->specs[i], job->policies[i], &r, err, sizeof(err)) != 0 ||
                    ps_replica_preload(r, NULL, NULL, err, sizeof(err)) != 0) {
                        emit(job->reg, pool_id, PS_LOG_ERROR, "configured pool could not be started", err);
                        break;
                }
        }
        job_free(job);
}

static void on_drained(const char *pool_id, const ps_drain_outcome *o, void *userdata) {
        replace_job *job = userdata;
        ps_registry *reg = job->reg;
        char err[256];

        (void) o;
        if (ps_registry_remove_pool(reg, pool_id, err, sizeof(err)) != 0) {
                emit(reg, pool_id, PS_LOG_ERROR, "pool could not be removed", err);
                job_free(job);
                return;
        }
        emit(reg, pool_id, PS_LOG_INFO, "pool removed from the configuration", NULL);
        job_start(job, pool_id);
}

/* A replica's old engine still leaves after a surge: the pool can be
 * neither drained nor reloaded until it has. */
static bool retiring(ps_registry *reg, const char *pool_id, char *err, size_t errlen) {
        ps_replica *r;

        for (size_t i = 0; (r = ps_registry_replica_at(reg, pool_id, i)); i++)
                if (pd_lifecycle_retiring(ps_replica_lifecycle(r))) {
                        snprintf(err, errlen, "replica %s is still retiring its previous engine "
                                 "(surge reload): reload the configuration again once it has stopped",
                                 ps_replica_id(r));
                        return true;
                }
        return false;
}

/* Drains the pool, forgets it, then registers the job's replicas (none
 * for a removed pool). Takes the job. */
static void replace(ps_registry *reg, const char *pool_id, replace_job *job) {
        ps_drain_info info;
        char err[256];
        int rc;

        if (retiring(reg, pool_id, err, sizeof(err))) {
                emit(reg, pool_id, PS_LOG_ERROR, "configuration change not applied to the pool", err);
                job_free(job);
                return;
        }
        rc = ps_pool_drain(reg, pool_id, PS_CONFIG_DRAIN_DEADLINE_MS, on_drained, job, &info,
                           err, sizeof(err));
        if (rc == PS_E_CONFLICT && !ps_pool_reloading(reg, pool_id)) {
                /* nothing runs: forget it now */
                ps_drain_outcome o = { .ok = true, .message = "not running" };

                on_drained(pool_id, &o, job);
                return;
        }
        if (rc != 0 || info.already_running) {
                emit(reg, pool_id, PS_LOG_ERROR, "configuration change not applied to the pool",
                     rc != 0 ? err : "a drain is already running");
                job_free(job);
                return;
        }
        /* The file ordered this drain, and after a restart the file
         * decides again: unlike an operator's drain, it is not kept in the
         * state store (a pool removed and added back while the daemon was
         * killed must not come back drained). */
        (void) ps_store_del_drain(ps_store_of(reg), pool_id);
}

static void set_policies(ps_registry *reg, const char *pool_id, const replace_job *job) {
        ps_replica *r;

        for (size_t i = 0; i < job->n && (r = ps_registry_replica_at(reg, pool_id, i)); i++) {
                (void) ps_replica_set_policy(r, job->policies[i]);   /* OOM: the old one stays */
        }
}

static void apply_changed(ps_registry *reg, const ps_pool_diff *e, replace_job *job) {
        char err[256];
        int rc;

        if (!e->in_place) {
                replace(reg, e->pool_id, job);
                return;
        }
        set_policies(reg, e->pool_id, job);
        if (!e->engine_changed) {
                emit(reg, e->pool_id, PS_LOG_INFO, "policy changed; engines keep running", NULL);
                job_free(job);
                return;
        }
        rc = ps_pool_reload_specs(reg, e->pool_id, (const ps_engine_spec *const *) job->specs, job->n,
                                  PS_RELOAD_DRAIN_FIRST, PS_CONFIG_DRAIN_DEADLINE_MS, NULL, NULL,
                                  err, sizeof(err));
        if (rc == 0 || retiring(reg, e->pool_id, err, sizeof(err))) {
                if (rc != 0)
                        emit(reg, e->pool_id, PS_LOG_ERROR, "configuration change not applied to the pool",
                             err);
                job_free(job);
                return;
        }
        /* not serving (backoff, failed, stopped): start it over instead */
        emit(reg, e->pool_id, PS_LOG_INFO, "pool cannot be reloaded in place; replacing it", err);
        replace(reg, e->pool_id, job);
}

int ps_registry_apply_config(ps_registry *reg, const ps_config *old, const ps_config *next,
                             char *err, size_t errlen) {
        ps_config_replica *list = NULL;
        ps_config_diff *diff = NULL;
        size_t n = 0;
        int rc;

        if (!reg || !old || !next)
                return -EINVAL;
        rc = ps_config_replicas(next, &list, &n, err, errlen);
        if (rc != 0)
                return rc;
        rc = ps_config_diff_compute(old, next, &diff);
        if (rc < 0) {
                ps_config_replicas_free(list, n);
                return rc;
        }
        for (size_t i = 0; i < diff->n_pools; i++) {
                const ps_pool_diff *e = &diff->pools[i];
                replace_job *job;

                emit(reg, e->pool_id, PS_LOG_INFO, "configuration", ps_pool_change_to_string(e->change));
                if (e->change == PS_POOL_UNCHANGED)
                        continue;
                job = job_new(reg, list, n, e->pool_id);
                if (!job) {
                        rc = -ENOMEM;
                        break;
                }
                switch (e->change) {
                case PS_POOL_ADDED:
                        if (ps_registry_has_pool(reg, e->pool_id))
                                replace(reg, e->pool_id, job);   /* added by the API before */
                        else
                                job_start(job, e->pool_id);
                        break;
                case PS_POOL_REMOVED:
                        replace(reg, e->pool_id, job);   /* no replicas: removal */
                        break;
                case PS_POOL_CHANGED:
                        apply_changed(reg, e, job);
                        break;
                case PS_POOL_UNCHANGED:
                case PS_POOL_CHANGE_MAX:
                        job_free(job);
                        break;
                }
        }
        ps_config_diff_free(diff);
        ps_config_replicas_free(list, n);
        return rc;
}
