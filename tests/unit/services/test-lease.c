/* SPDX-License-Identifier: MIT */
/*
 * Leases on fake engines with a pinned clock: a lease takes a slot of the
 * least-loaded ready replica and names its URL; release frees the slot;
 * the TTL sets expires_at exactly (the clock's now + ttl) and, when it
 * runs out, the slot comes back by itself; a renewal moves the expiry
 * from the renewal's now. A pool that does not serve hands out nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "fake-node.h"
#include "pool-services/base/errors.h"
#include "pool-services/pool/lease.h"

typedef struct lease_fx {
        fake_node node;
        ps_replica *r0, *r1;
} lease_fx;

static int setup(void **state) {
        lease_fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        fake_node_init(&f->node, "lease");
        f->r0 = fake_node_add(&f->node, fake_spec("chat", "r0", 0, 1), fake_policy(NULL));
        f->r1 = fake_node_add(&f->node, fake_spec("chat", "r1", 0, 2), fake_policy(NULL));
        assert_int_equal(fake_node_preload(&f->node, f->r0), 0);
        assert_int_equal(fake_node_preload(&f->node, f->r1), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        lease_fx *f = *state;

        fake_node_clear(&f->node);
        free(f);
        return 0;
}

static void test_grant_picks_least_loaded_and_release_frees(void **state) {
        lease_fx *f = *state;
        ps_registry *reg = f->node.reg;
        ps_lease a, b, c;
        char url[300], err[256];

        /* r1 has more free slots: it gets the first lease */
        assert_int_equal(ps_lease_acquire(reg, "chat", 30000, &a, err, sizeof(err)), 0);
        assert_string_equal(a.replica_id, "r1");
        assert_int_equal(strlen(a.lease_id), PS_LEASE_ID_LEN);
        ps_replica_url(f->r1, url, sizeof(url));
        assert_string_equal(a.url, url);
        assert_int_equal(a.expires_at, FAKE_WALL_START_MS + 30000);

        /* now both have one free slot; then none */
        assert_int_equal(ps_lease_acquire(reg, "chat", 0, &b, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_acquire(reg, "chat", 0, &c, err, sizeof(err)), 0);
        assert_true(strcmp(b.replica_id, c.replica_id) != 0);
        assert_int_equal(ps_lease_acquire(reg, "chat", 0, &c, err, sizeof(err)), PS_E_NO_SLOT);
        assert_string_equal(err, "pool chat has no free slot (3 of 3 leased)");
        assert_int_equal(ps_registry_lease_count(reg), 3);
        assert_int_equal(fake_snap_int(f->r0, "slots_free"), 0);

        /* release gives the slot back, once */
        assert_int_equal(ps_lease_release(reg, "chat", a.lease_id, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_release(reg, "chat", a.lease_id, err, sizeof(err)),
                         PS_E_NOT_FOUND);
        assert_int_equal(ps_registry_active_leases(reg, "chat"), 2);
        assert_int_equal(fake_snap_int(f->r1, "slots_free"), 1);
        assert_int_equal(ps_lease_acquire(reg, "chat", 0, &a, err, sizeof(err)), 0);
        assert_string_equal(a.replica_id, "r1");
        /* the pool's default TTL (10 minutes) by the pinned clock */
        assert_int_equal(a.expires_at, FAKE_WALL_START_MS + 600000);
}

static bool no_leases(fake_node *n, const void *arg) {
        (void) arg;
        return ps_registry_lease_count(n->reg) == 0;
}

static void test_ttl_expires_and_renewal_moves_it(void **state) {
        lease_fx *f = *state;
        ps_registry *reg = f->node.reg;
        ps_lease short_one, renewed;

        assert_int_equal(ps_lease_acquire(reg, "chat", 60000, &short_one, NULL, 0), 0);
        fake_clock_advance(&f->node.clock, 20000);
        assert_int_equal(ps_lease_renew(reg, "chat", short_one.lease_id, 40, &renewed, NULL, 0), 0);
        assert_string_equal(renewed.lease_id, short_one.lease_id);
        assert_int_equal(renewed.expires_at, FAKE_WALL_START_MS + 20000 + 40);

        /* 40 ms later it is gone by itself, and its slot is free again */
        assert_true(fake_node_until(&f->node, no_leases, NULL));
        assert_int_equal(fake_node_seen(&f->node, "lease expired"), 1);
        assert_int_equal(fake_snap_int(f->r1, "slots_free"), 2);
        assert_int_equal(ps_lease_release(reg, "chat", short_one.lease_id, NULL, 0),
                         PS_E_NOT_FOUND);
        assert_int_equal(ps_lease_renew(reg, "chat", short_one.lease_id, 0, NULL, NULL, 0),
                         PS_E_NOT_FOUND);
}

static void test_no_lease_from_a_pool_that_does_not_serve(void **state) {
        lease_fx *f = *state;
        ps_registry *reg = f->node.reg;
        ps_replica *idle;
        ps_lease l;
        char err[256];

        assert_int_equal(ps_lease_acquire(reg, "nope", 0, &l, err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_lease_acquire(reg, "chat", -1, &l, err, sizeof(err)), PS_E_INVALID);
        idle = fake_node_add(&f->node, fake_spec("idle", "r0", 0, 1), fake_policy(NULL));
        assert_int_equal(ps_lease_acquire(reg, "idle", 0, &l, err, sizeof(err)), PS_E_NOT_READY);
        assert_string_equal(err, "pool idle is not ready");
        (void) idle;

        /* a lease held on a stopped engine ends with it */
        assert_int_equal(ps_lease_acquire(reg, "chat", 0, &l, NULL, 0), 0);
        assert_string_equal(l.replica_id, "r1");
        assert_int_equal(ps_replica_stop(f->r1, NULL, 0), 0);
        fake_node_wait_state(&f->node, f->r1, "stopped");
        assert_int_equal(ps_registry_active_leases(reg, "chat"), 0);
        assert_int_equal(ps_lease_release(reg, "chat", l.lease_id, NULL, 0), PS_E_NOT_FOUND);
}

/* The pool's leases, oldest grant first, each with its replica and both
 * times; other pools' leases and ended ones are not listed. */
static void test_list_names_each_lease(void **state) {
        lease_fx *f = *state;
        ps_registry *reg = f->node.reg;
        ps_lease a, b, *list = NULL;
        size_t n = 99;

        assert_int_equal(ps_lease_list(reg, "chat", &list, &n), 0);
        assert_null(list);
        assert_int_equal(n, 0);
        assert_int_equal(ps_lease_list(reg, "nope", &list, &n), PS_E_NOT_FOUND);

        assert_int_equal(ps_lease_acquire(reg, "chat", 30000, &a, NULL, 0), 0);
        fake_clock_advance(&f->node.clock, 1000);
        assert_int_equal(ps_lease_acquire(reg, "chat", 60000, &b, NULL, 0), 0);
        fake_node_add(&f->node, fake_spec("other", "r0", 0, 1), fake_policy(NULL));
        assert_int_equal(ps_lease_list(reg, "other", &list, &n), 0);
        assert_int_equal(n, 0);

        assert_int_equal(ps_lease_list(reg, "chat", &list, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].lease_id, a.lease_id);
        assert_string_equal(list[0].replica_id, a.replica_id);
        assert_int_equal(list[0].granted_at, FAKE_WALL_START_MS);
        assert_int_equal(list[0].expires_at, FAKE_WALL_START_MS + 30000);
        assert_string_equal(list[1].lease_id, b.lease_id);
        assert_int_equal(list[1].granted_at, FAKE_WALL_START_MS + 1000);
        assert_int_equal(list[1].expires_at, FAKE_WALL_START_MS + 1000 + 60000);
        free(list);

        assert_int_equal(ps_lease_release(reg, "chat", a.lease_id, NULL, 0), 0);
        assert_int_equal(ps_lease_list(reg, "chat", &list, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(list[0].lease_id, b.lease_id);
        free(list);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_grant_picks_least_loaded_and_release_frees),
                T(test_ttl_expires_and_renewal_moves_it),
                T(test_no_lease_from_a_pool_that_does_not_serve),
                T(test_list_names_each_lease),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
