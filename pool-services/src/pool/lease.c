/* SPDX-License-Identifier: MIT */
/*
 * Leases: a hash table of lease records keyed by their random ids, and
 * one expiry timer per lease on the loop. The count per engine instance is
 * the replica's (ps_replica_lease_add/remove), kept within [0, slots].
 *
 * A lease belongs to one engine instance of a replica (primary or surge):
 * when a surge reload promotes the new engine, the old engine's leases
 * move with it to the surge slot, and the machine waits for exactly those.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <event2/event.h>

#include "base/errfmt.h"
#include "conf/policy-private.h"
#include "pool/registry-private.h"
#include "supervise/replica.h"
#include "pool-domain/lease.h"
#include "pool-services/pool/lease.h"
#include "pool-services/pool/store.h"

typedef struct lease_table lease_table;

typedef struct lease {
        char id[PS_LEASE_ID_LEN + 1];
        lease_table *table;
        ps_replica *replica;
        pd_instance_id inst;
        int64_t granted_wall_ms;       /* when the running TTL began */
        int64_t expires_wall_ms;
        struct event *timer;
        struct lease *next;            /* bucket chain */
} lease;

struct lease_table {
        ps_registry *reg;
        lease **buckets;
        size_t n_buckets;              /* a power of two */
        size_t count;
};

#define BUCKETS_INITIAL 64

/* ---- the table ----------------------------------------------------------- */

static lease_table *table_new(ps_registry *reg) {
        lease_table *t = calloc(1, sizeof(*t));

        if (!t)
                return NULL;
        t->reg = reg;
        t->n_buckets = BUCKETS_INITIAL;
        t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
        if (!t->buckets) {
                free(t);
                return NULL;
        }
        return t;
}

static void lease_destroy(lease *l) {
        if (l->timer)
                event_free(l->timer);
        free(l);
}

static lease_table *table_free(lease_table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_buckets; i++)
                for (lease *l = t->buckets[i], *next; l; l = next) {
                        next = l->next;
                        lease_destroy(l);
                }
        free(t->buckets);
        free(t);
        return NULL;
}

/* Ids are random: their first 16 hex digits are as good as any hash. */
static size_t bucket_of(const lease_table *t, const char *id) {
        uint64_t h = 0;

        for (int i = 0; i < 16 && id[i]; i++)
                h = h * 16 + (uint64_t) (id[i] <= '9' ? id[i] - '0' : (id[i] | 0x20) - 'a' + 10);
        return (size_t) (h & (t->n_buckets - 1));
}

static lease *table_find(const lease_table *t, const char *id) {
        if (!t || !id || strlen(id) != PS_LEASE_ID_LEN)
                return NULL;
        for (lease *l = t->buckets[bucket_of(t, id)]; l; l = l->next)
                if (strcmp(l->id, id) == 0)
                        return l;
        return NULL;
}

static void table_grow(lease_table *t) {
        size_t n = t->n_buckets * 2;
        lease **b = calloc(n, sizeof(*b));
        lease_table moved = { .buckets = b, .n_buckets = n };

        if (!b)
                return;   /* longer chains, still correct */
        for (size_t i = 0; i < t->n_buckets; i++)
                for (lease *l = t->buckets[i], *next; l; l = next) {
                        size_t at = bucket_of(&moved, l->id);

                        next = l->next;
                        l->next = b[at];
                        b[at] = l;
                }
        free(t->buckets);
        t->buckets = b;
        t->n_buckets = n;
}

static void table_insert(lease_table *t, lease *l) {
        size_t at;

        if (t->count >= t->n_buckets)
                table_grow(t);
        at = bucket_of(t, l->id);
        l->next = t->buckets[at];
        t->buckets[at] = l;
        t->count++;
}

static void table_unlink(lease_table *t, lease *l) {
        for (lease **p = &t->buckets[bucket_of(t, l->id)]; *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        t->count--;
                        return;
                }
}

/* Removes every record for which keep() says no; returns how many. */
static size_t table_remove_if(lease_table *t, bool (*gone)(const lease *l, const void *arg),
                              const void *arg) {
        size_t n = 0;

        for (size_t i = 0; i < t->n_buckets; i++)
                for (lease **p = &t->buckets[i]; *p;) {
                        lease *l = *p;

                        if (!gone(l, arg)) {
                                p = &l->next;
                                continue;
                        }
                        *p = l->next;
                        t->count--;
                        lease_destroy(l);
                        n++;
                }
        return n;
}

/* ---- reporting ----------------------------------------------------------- */

static void emit_lease(const ps_context *ctx, const char *pool_id, const char *replica_id,
                       ps_log_level level, const char *message, const char *what,
                       const char *reason, int64_t count) {
        const ps_field fields[] = {
                PS_FIELD_STR("lease", what),
                PS_FIELD_STR("reason", reason),
                PS_FIELD_INT("leases", count),
        };
        ps_event ev = {
                .type = PS_EVENT_LEASE,
                .level = level,
                .pool_id = pool_id,
                .replica_id = replica_id,
                .message = message,
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        ps_event_emit(&ctx->sink, &ev);
}

/* ---- the state store ------------------------------------------------------ */

/* Writes the lease through to the state store (in the turn's commit). */
static void persist(const lease *l) {
        ps_store *store = ps_store_of(l->table->reg);
        ps_store_lease rec = {
                .instance = (int) l->inst,
                .granted_ms = l->granted_wall_ms,
                .expiry_ms = l->expires_wall_ms,
        };

        if (!store)
                return;
        snprintf(rec.id, sizeof(rec.id), "%s", l->id);
        snprintf(rec.pool_id, sizeof(rec.pool_id), "%s", ps_replica_pool_id(l->replica));
        snprintf(rec.replica_id, sizeof(rec.replica_id), "%s", ps_replica_id(l->replica));
        (void) ps_store_put_lease(store, &rec);
}

static void forget(const lease *l) {
        (void) ps_store_del_lease(ps_store_of(l->table->reg), l->id);
}

/* ---- per replica --------------------------------------------------------- */

typedef struct owner {
        const ps_replica *replica;
        int inst;                      /* -1: any */
} owner;

static bool owned_by(const lease *l, const void *arg) {
        const owner *o = arg;
        bool gone = l->replica == o->replica && (o->inst < 0 || (int) l->inst == o->inst);

        if (gone)
                forget(l);
        return gone;
}

/* The replica ended the leases on one engine instance by force: their
 * records go (the replica has counted them). */
static void on_leases_dropped(void *state, const ps_replica *r, pd_instance_id inst) {
        owner o = { .replica = r, .inst = (int) inst };

        (void) table_remove_if(state, owned_by, &o);
}

/* The replica promoted its surge engine: its records swap instances. */
static void on_leases_moved(void *state, const ps_replica *r) {
        lease_table *t = state;

        for (size_t i = 0; i < t->n_buckets; i++)
                for (lease *l = t->buckets[i]; l; l = l->next)
                        if (l->replica == r) {
                                l->inst = l->inst == PD_INSTANCE_PRIMARY ? PD_INSTANCE_SURGE
                                                                         : PD_INSTANCE_PRIMARY;
                                persist(l);
                        }
}

/* The replica leaves the registry: its lease records go, uncounted. */
static void on_replica_removed(void *state, const ps_replica *r) {
        owner o = { .replica = r, .inst = -1 };

        (void) table_remove_if(state, owned_by, &o);
}

static void on_registry_free(void *state) {
        table_free(state);
}

static const ps_registry_hooks lease_hooks = {
        .replica_removed = on_replica_removed,
        .leases_dropped = on_leases_dropped,
        .leases_moved = on_leases_moved,
        .free = on_registry_free,
};

/* The registry's table; NULL until the first lease is granted. */
static lease_table *table_of(const ps_registry *reg) {
        return ps_registry_attached(reg, &lease_hooks);
}

static lease_table *table_get(ps_registry *reg) {
        lease_table *t = table_of(reg);

        if (t)
                return t;
        t = table_new(reg);
        if (t && ps_registry_attach(reg, &lease_hooks, t) < 0)
                t = table_free(t);
        return t;
}

/* ---- lease life ------------------------------------------------------------ */

/* Ends a lease: its slot is free again, and a drain waiting for it may
 * go on. */
static void lease_end(lease *l, const char *why) {
        ps_replica *r = l->replica;
        pd_instance_id inst = l->inst;
        const ps_context *ctx = ps_registry_ctx(l->table->reg);

        forget(l);
        table_unlink(l->table, l);
        lease_destroy(l);
        ps_replica_lease_remove(r, inst);
        emit_lease(ctx, ps_replica_pool_id(r), ps_replica_id(r),
                   strcmp(why, "expired") == 0 ? PS_LOG_INFO : PS_LOG_DEBUG,
                   strcmp(why, "expired") == 0 ? "lease expired" : "lease released",
                   why, NULL, ps_replica_leases(r));
        ps_replica_kick(r);
}

static void on_expire(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        lease_end(userdata, "expired");
}

static int64_t ttl_of(const ps_replica *r, int64_t ttl_ms) {
        return ttl_ms > 0 ? ttl_ms : ps_policy_domain(ps_replica_policy(r))->lease_ttl_ms;
}

static void arm(lease *l, int64_t ttl_ms) {
        struct timeval tv = { .tv_sec = ttl_ms / 1000, .tv_usec = (ttl_ms % 1000) * 1000 };
        const ps_context *ctx = ps_registry_ctx(l->table->reg);

        l->granted_wall_ms = ps_clock_wall_ms(ctx->clock);
        l->expires_wall_ms = pd_lease_expires_at(l->granted_wall_ms, ttl_ms);
        evtimer_add(l->timer, &tv);
        persist(l);
}

static void fill(const lease *l, ps_lease *out) {
        const ps_replica *r = l->replica;

        snprintf(out->lease_id, sizeof(out->lease_id), "%s", l->id);
        snprintf(out->replica_id, sizeof(out->replica_id), "%s", ps_replica_id(r));
        ps_replica_url(r, out->url, sizeof(out->url));
        out->granted_at = l->granted_wall_ms;
        out->expires_at = l->expires_wall_ms;
}

static int random_id(char out[PS_LEASE_ID_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char raw[PS_LEASE_ID_LEN / 2];
        size_t got = 0;

        while (got < sizeof(raw)) {
                ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t) n;
        }
        for (size_t i = 0; i < sizeof(raw); i++) {
                out[2 * i] = hex[raw[i] >> 4];
                out[2 * i + 1] = hex[raw[i] & 15];
        }
        out[PS_LEASE_ID_LEN] = '\0';
        return 0;
}

static void refused(ps_registry *reg, const char *pool_id, const char *reason) {
        emit_lease(ps_registry_ctx(reg), pool_id, NULL, PS_LOG_DEBUG, "lease refused", "refused",
                   reason, 0);
}

#define POOL_REPLICAS_MAX 256

int ps_lease_acquire(ps_registry *reg, const char *pool_id, int64_t ttl_ms, ps_lease *ret,
                     char *err, size_t errlen) {
        lease_table *t;
        ps_replica *r, *cand[POOL_REPLICAS_MAX];
        pd_slots slots[POOL_REPLICAS_MAX];
        bool eligible[POOL_REPLICAS_MAX], any_ready = false, any_draining = false;
        uint32_t leased = 0, total = 0;
        size_t n = 0, pick;
        lease *l;
        int rc;

        if (!reg || !pool_id || !ret)
                return -EINVAL;
        if (!ps_registry_has_pool(reg, pool_id))
                return ps_errf(err, errlen, PS_E_NOT_FOUND, "pool %s not found", pool_id);
        if (ttl_ms < 0)
                return ps_errf(err, errlen, PS_E_INVALID, "ttl_ms: must be >= 0");
        for (size_t i = 0; n < POOL_REPLICAS_MAX && (r = ps_registry_replica_at(reg, pool_id, i)); i++) {
                cand[n] = r;
                eligible[n] = ps_replica_ready(r);
                any_draining |= ps_replica_draining(r);
                any_ready |= eligible[n];
                slots[n] = (pd_slots) { .total = ps_replica_slots(r),
                                        .leased = ps_replica_inst_leases(r, PD_INSTANCE_PRIMARY) };
                if (eligible[n]) {
                        total = pd_sat_add_u32(total, slots[n].total);
                        leased = pd_sat_add_u32(leased, slots[n].leased);
                }
                n++;
        }
        /* A stored drain waits for its pool to come up: it drains. */
        if (ps_store_drain_held(ps_store_of(reg), pool_id)) {
                any_ready = false;
                any_draining = true;
        }
        if (!any_ready) {
                refused(reg, pool_id, any_draining ? "draining" : "not_ready");
                if (any_draining)
                        return ps_errf(err, errlen, PS_E_DRAINING, "pool %s is draining", pool_id);
                return ps_errf(err, errlen, PS_E_NOT_READY, "pool %s is not ready", pool_id);
        }
        if (pd_slots_pick_least_loaded(slots, eligible, n, &pick) != 0) {
                refused(reg, pool_id, "no_slot");
                return ps_errf(err, errlen, PS_E_NO_SLOT, "pool %s has no free slot (%u of %u leased)",
                               pool_id, leased, total);
        }
        r = cand[pick];

        t = table_get(reg);
        l = t ? calloc(1, sizeof(*l)) : NULL;
        if (!l)
                return -ENOMEM;
        do {
                rc = random_id(l->id);
                if (rc < 0) {
                        free(l);
                        return rc;
                }
        } while (table_find(t, l->id));   /* 2^-128; never hand one out twice */
        l->table = t;
        l->replica = r;
        l->inst = PD_INSTANCE_PRIMARY;
        l->timer = evtimer_new(ps_registry_ctx(reg)->base, on_expire, l);
        if (!l->timer) {
                free(l);
                return -ENOMEM;
        }
        if (ps_replica_lease_add(r, PD_INSTANCE_PRIMARY) != 0) {   /* cannot fail after the pick */
                lease_destroy(l);
                return ps_errf(err, errlen, PS_E_NO_SLOT, "pool %s has no free slot", pool_id);
        }
        table_insert(t, l);
        arm(l, ttl_of(r, ttl_ms));
        fill(l, ret);
        emit_lease(ps_registry_ctx(reg), pool_id, ps_replica_id(r), PS_LOG_DEBUG, "lease granted", "granted",
                   NULL, ps_replica_leases(r));
        return 0;
}

static lease *find_in_pool(ps_registry *reg, const char *pool_id, const char *lease_id,
                           char *err, size_t errlen, int *rc) {
        lease *l;

        if (!ps_registry_has_pool(reg, pool_id)) {
                *rc = ps_errf(err, errlen, PS_E_NOT_FOUND, "pool %s not found", pool_id);
                return NULL;
        }
        l = table_find(table_of(reg), lease_id);
        if (!l || strcmp(ps_replica_pool_id(l->replica), pool_id) != 0) {
                *rc = ps_errf(err, errlen, PS_E_NOT_FOUND, "lease %.64s not found in pool %s",
                              lease_id ? lease_id : "", pool_id);
                return NULL;
        }
        *rc = 0;
        return l;
}

int ps_lease_renew(ps_registry *reg, const char *pool_id, const char *lease_id, int64_t ttl_ms,
                   ps_lease *ret, char *err, size_t errlen) {
        lease *l;
        int rc;

        if (!reg || !pool_id)
                return -EINVAL;
        l = find_in_pool(reg, pool_id, lease_id, err, errlen, &rc);
        if (!l)
                return rc;
        if (ttl_ms < 0)
                return ps_errf(err, errlen, PS_E_INVALID, "ttl_ms: must be >= 0");
        evtimer_del(l->timer);
        arm(l, ttl_of(l->replica, ttl_ms));
        if (ret)
                fill(l, ret);
        return 0;
}

int ps_lease_release(ps_registry *reg, const char *pool_id, const char *lease_id,
                     char *err, size_t errlen) {
        lease *l;
        int rc;

        if (!reg || !pool_id)
                return -EINVAL;
        l = find_in_pool(reg, pool_id, lease_id, err, errlen, &rc);
        if (!l)
                return rc;
        lease_end(l, "released");
        return 0;
}

json_t *ps_lease_to_json(const ps_lease *grant, const char *pool_id) {
        return json_pack("{s:s, s:s, s:s, s:s, s:I}",
                         "lease_id", grant->lease_id,
                         "pool_id", pool_id ? pool_id : "",
                         "replica_id", grant->replica_id,
                         "url", grant->url,
                         "expires_at", (json_int_t) grant->expires_at);
}

static int by_grant(const void *a, const void *b) {
        const ps_lease *x = a, *y = b;

        if (x->granted_at != y->granted_at)
                return x->granted_at < y->granted_at ? -1 : 1;
        return strcmp(x->lease_id, y->lease_id);
}

int ps_lease_list(ps_registry *reg, const char *pool_id, ps_lease **ret, size_t *n) {
        const lease_table *t;
        ps_lease *list = NULL;
        size_t count = 0;

        *ret = NULL;
        *n = 0;
        if (!reg || !pool_id || !ps_registry_has_pool(reg, pool_id))
                return PS_E_NOT_FOUND;
        t = table_of(reg);
        if (!t || t->count == 0)
                return 0;
        list = calloc(t->count, sizeof(*list));
        if (!list)
                return -ENOMEM;
        for (size_t b = 0; b < t->n_buckets; b++)
                for (const lease *l = t->buckets[b]; l; l = l->next)
                        if (count < t->count && strcmp(ps_replica_pool_id(l->replica), pool_id) == 0)
                                fill(l, &list[count++]);
        if (count == 0) {
                free(list);
                return 0;
        }
        qsort(list, count, sizeof(*list), by_grant);
        *ret = list;
        *n = count;
        return 0;
}

size_t ps_registry_lease_count(ps_registry *reg) {
        const lease_table *t = reg ? table_of(reg) : NULL;

        return t ? t->count : 0;
}

/* ---- restored at start ----------------------------------------------------- */

static ps_replica *replica_named(ps_registry *reg, const char *pool_id, const char *replica_id) {
        ps_replica *r;

        for (size_t i = 0; (r = ps_registry_replica_at(reg, pool_id, i)); i++)
                if (strcmp(ps_replica_id(r), replica_id) == 0)
                        return r;
        return NULL;
}

int ps_lease_restore(ps_registry *reg, const ps_store_lease *rec, char *err, size_t errlen) {
        int64_t now, ttl, remaining;
        lease_table *t;
        ps_replica *r;
        lease *l;

        if (!reg || !rec)
                return -EINVAL;
        r = replica_named(reg, rec->pool_id, rec->replica_id);
        if (!r)
                return ps_errf(err, errlen, PS_E_NOT_FOUND, "replica %s of pool %s is gone",
                               rec->replica_id, rec->pool_id);
        if (strlen(rec->id) != PS_LEASE_ID_LEN ||
            (rec->instance != PD_INSTANCE_PRIMARY && rec->instance != PD_INSTANCE_SURGE))
                return ps_errf(err, errlen, PS_E_INVALID, "lease record %.40s is malformed", rec->id);
        /* What is left, never more than the TTL it was given: a wall clock
         * stepped back cannot stretch a lease. */
        now = ps_clock_wall_ms(ps_registry_ctx(reg)->clock);
        ttl = rec->expiry_ms - rec->granted_ms;
        remaining = rec->expiry_ms - now;
        if (ttl < 0)
                ttl = 0;
        if (remaining > ttl)
                remaining = ttl;
        if (remaining <= 0)
                return ps_errf(err, errlen, PS_E_CONFLICT, "lease %s expired while the daemon was down",
                               rec->id);
        t = table_get(reg);
        if (!t)
                return -ENOMEM;
        if (table_find(t, rec->id))
                return ps_errf(err, errlen, PS_E_EXISTS, "lease %s is held already", rec->id);
        if (ps_replica_lease_add(r, (pd_instance_id) rec->instance) != 0)
                return ps_errf(err, errlen, PS_E_NO_SLOT, "replica %s of pool %s has no free slot",
                               rec->replica_id, rec->pool_id);
        l = calloc(1, sizeof(*l));
        if (l)
                l->timer = evtimer_new(ps_registry_ctx(reg)->base, on_expire, l);
        if (!l || !l->timer) {
                free(l);
                ps_replica_lease_remove(r, (pd_instance_id) rec->instance);
                return -ENOMEM;
        }
        snprintf(l->id, sizeof(l->id), "%s", rec->id);
        l->table = t;
        l->replica = r;
        l->inst = (pd_instance_id) rec->instance;
        table_insert(t, l);
        {
                struct timeval tv = { .tv_sec = remaining / 1000, .tv_usec = (remaining % 1000) * 1000 };

                l->granted_wall_ms = now + remaining - ttl;
                l->expires_wall_ms = now + remaining;
                evtimer_add(l->timer, &tv);
        }
        if (l->expires_wall_ms != rec->expiry_ms)
                persist(l);
        emit_lease(ps_registry_ctx(reg), rec->pool_id, rec->replica_id, PS_LOG_INFO, "lease restored",
                   "restored", NULL, ps_replica_leases(r));
        return 0;
}
