/* SPDX-License-Identifier: MIT */
/*
 * The runtime directory's lock and the state store's wiring.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool-services/base/errors.h"
#include "pool-services/pool/drain.h"
#include "pool-services/pool/lease.h"
#include "state.h"

/* ---- one daemon per runtime directory ------------------------------------ */

/* A POSIX (process-associated) lock, not an OFD one: F_GETLK then names
 * the holder's pid. It is not inherited across fork(), and O_CLOEXEC keeps
 * the descriptor out of every engine and probe child. */
int pm_lock_take(const char *runtime_dir, char *err, size_t errlen) {
        char path[PATH_MAX], pid[32];
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
        int fd, n;

        if ((size_t) snprintf(path, sizeof(path), "%s/lock", runtime_dir) >= sizeof(path)) {
                snprintf(err, errlen, "the lock file's path in %s is too long", runtime_dir);
                return -1;
        }
        fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
                return -1;
        }
        for (int tries = 0; fcntl(fd, F_SETLK, &fl) < 0; tries++) {
                struct flock who = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

                if ((errno != EAGAIN && errno != EACCES) || tries > 3) {
                        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
                        close(fd);
                        return -1;
                }
                if (fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK) {
                        snprintf(err, errlen, "runtime directory %s is in use by pool-managerd pid %ld",
                                 runtime_dir, (long) who.l_pid);
                        close(fd);
                        return -1;
                }
                /* released meanwhile: try again */
        }
        n = snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t) n, 0) != n) {
                /* the lock holds all the same; the pid is for people */
        }
        return fd;
}

int pm_lock_release(int fd) {
        if (fd >= 0)
                close(fd);
        return -1;
}

/* ---- the state store ------------------------------------------------------- */

int pm_state_open(pm_state *st, struct event_base *base, const char *runtime_dir, bool reset,
                  ps_logger *log) {
        char path[PATH_MAX], moved[PATH_MAX + 64], err[1024];
        ps_store_options o = { .path = path, .reset_corrupt = reset };
        int rc;

        if ((size_t) snprintf(path, sizeof(path), "%s/state.db", runtime_dir) >= sizeof(path)) {
                ps_log(log, PS_LOG_ERROR, "the state store's path is too long",
                       PS_FIELD_STR("runtime_dir", runtime_dir));
                return -1;
        }
        rc = ps_store_open(base, &o, &st->store, moved, sizeof(moved), err, sizeof(err));
        if (moved[0])
                ps_log(log, PS_LOG_WARN, "--reset-state: the corrupt state store was moved aside; "
                       "starting with an empty state", PS_FIELD_STR("moved_to", moved));
        if (rc < 0) {
                ps_log(log, PS_LOG_ERROR, "cannot use the state store", PS_FIELD_STR("path", path),
                       PS_FIELD_STR("error", err));
                return -1;
        }
        ps_log(log, PS_LOG_DEBUG, "state store open", PS_FIELD_STR("path", path),
               PS_FIELD_INT("schema_version", ps_store_schema_version(st->store)));
        return 0;
}

typedef struct restore_ctx {
        pm_state *st;
        ps_registry *reg;
        ps_logger *log;
        int64_t restored, dropped;
} restore_ctx;

static int restore_lease(const ps_store_lease *l, void *ud) {
        restore_ctx *c = ud;
        char err[256] = "";
        int rc = ps_lease_restore(c->reg, l, err, sizeof(err));

        if (rc == 0) {
                c->restored++;
                return 0;
        }
        c->dropped++;
        ps_log(c->log, PS_LOG_INFO, "stored lease not restored", PS_FIELD_STR("lease", l->id),
               PS_FIELD_STR("pool_id", l->pool_id), PS_FIELD_STR("reason", err[0] ? err : strerror(-rc)));
        (void) ps_store_del_lease(c->st->store, l->id);
        return 0;
}

static int keep_drain(const ps_store_drain *d, void *ud) {
        restore_ctx *c = ud;
        ps_store_drain *grown = realloc(c->st->drains, (c->st->n_drains + 1) * sizeof(*grown));

        if (!grown)
                return -ENOMEM;
        c->st->drains = grown;
        grown[c->st->n_drains++] = *d;
        /* No lease on the pool until the drain goes on. */
        return ps_store_drain_hold(c->st->store, d->pool_id);
}

void pm_state_restore_policy(pm_state *st, ps_registry *reg, ps_logger *log) {
        int64_t restored = 0;
        ps_replica *r;

        if (!st->store)
                return;
        if (ps_store_attach(st->store, reg) < 0) {
                ps_log(log, PS_LOG_ERROR, "cannot attach the state store: out of memory");
                st->store = ps_store_free(st->store);
                return;
        }
        for (size_t p = 0; p < ps_registry_pool_count(reg); p++) {
                const char *pool_id = ps_registry_pool_id_at(reg, p);

                for (size_t i = 0; (r = ps_registry_replica_at(reg, pool_id, i)); i++) {
                        int rc = ps_store_restore_policy(st->store, r);

                        if (rc == 0)
                                restored++;
                        else if (rc != PS_E_NOT_FOUND)
                                ps_log(log, PS_LOG_WARN, "stored restart policy state not restored",
                                       PS_FIELD_STR("pool_id", pool_id),
                                       PS_FIELD_STR("replica_id", ps_replica_id(r)),
                                       PS_FIELD_STR("reason", rc == -EBADMSG ? "malformed record"
                                                                             : ps_store_error(st->store)));
                }
        }
        if (restored)
                ps_log(log, PS_LOG_INFO, "restart policy state restored",
                       PS_FIELD_INT("replicas", restored));
}

void pm_state_on_event(pm_state *st, ps_registry *reg, const ps_event *event) {
        switch (event->type) {
        case PS_EVENT_ENGINE_FAILED:
        case PS_EVENT_RESTART_SCHEDULED:
        case PS_EVENT_ALERT:
        case PS_EVENT_READY:
        case PS_EVENT_STATE_CHANGED:
                if (st->store && reg && event->pool_id && event->replica_id)
                        (void) ps_store_save_replica_policy(reg, event->pool_id, event->replica_id);
                break;
        case PS_EVENT_GENERIC:
        case PS_EVENT_HTTP_REQUEST:
        case PS_EVENT_ENGINE_SPAWNED:
        case PS_EVENT_SPAWN_FAILED:
        case PS_EVENT_ENGINE_EXITED:
        case PS_EVENT_PROBE_FAILED:
        case PS_EVENT_ENGINE_LOG_ERROR:
        case PS_EVENT_REQUEST_DONE:
        case PS_EVENT_LEASE:
        case PS_EVENT_DRAIN_STARTED:
        case PS_EVENT_TYPE_MAX:
                break;
        }
}

void pm_state_restore(pm_state *st, ps_registry *reg, ps_logger *log) {
        restore_ctx c = { .st = st, .reg = reg, .log = log };

        if (!st->store || ps_store_attach(st->store, reg) < 0)
                return;
        if (ps_store_each_lease(st->store, restore_lease, &c) < 0 ||
            ps_store_each_drain(st->store, keep_drain, &c) < 0)
                ps_log(log, PS_LOG_ERROR, "cannot read the state store",
                       PS_FIELD_STR("error", ps_store_error(st->store)));
        if (c.restored || c.dropped || st->n_drains)
                ps_log(log, PS_LOG_INFO, "state restored", PS_FIELD_INT("leases", c.restored),
                       PS_FIELD_INT("leases_dropped", c.dropped),
                       PS_FIELD_INT("drains", (int64_t) st->n_drains));
}

void pm_state_resume_drains(pm_state *st, ps_registry *reg, ps_logger *log) {
        for (size_t i = 0; i < st->n_drains; i++) {
                const ps_store_drain *d = &st->drains[i];
                char err[256] = "";
                int rc;

                ps_store_drain_release(st->store, d->pool_id);
                rc = ps_pool_drain_resume(reg, d->pool_id, d->deadline_ms, err, sizeof(err));

                if (rc == 0) {
                        ps_log(log, PS_LOG_INFO, "drain resumed", PS_FIELD_STR("pool_id", d->pool_id),
                               PS_FIELD_INT("deadline_at", d->deadline_ms));
                        continue;
                }
                ps_log(log, PS_LOG_WARN, "stored drain not resumed", PS_FIELD_STR("pool_id", d->pool_id),
                       PS_FIELD_STR("reason", err[0] ? err : strerror(rc < 0 ? -rc : EINVAL)));
                (void) ps_store_del_drain(st->store, d->pool_id);
        }
        free(st->drains);
        st->drains = NULL;
        st->n_drains = 0;
}

void pm_state_freeze(pm_state *st) {
        ps_store_freeze(st->store);
}

void pm_state_close(pm_state *st) {
        free(st->drains);
        st->drains = NULL;
        st->n_drains = 0;
        st->store = ps_store_free(st->store);
}
