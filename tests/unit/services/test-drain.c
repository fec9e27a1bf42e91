/* SPDX-License-Identifier: MIT */
/*
 * Draining a pool on fake engines with a pinned clock: from the call on no
 * new lease is granted; while a lease is held the engine keeps running
 * (no signal at all); once the last lease ends the engine is stopped
 * gracefully and the drain answers; at the deadline the engine is stopped
 * with the lease still held, which is ended by force and counted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "fake-node.h"
#include "pool-services/pool/drain.h"
#include "pool-services/base/errors.h"
#include "pool-services/pool/lease.h"

typedef struct drain_fx {
        fake_node node;
        ps_replica *r;
        fake_engine *engine;
        ps_lease lease;
        /* the drain's answer */
        bool done;
        ps_drain_outcome outcome;
        char message[256];
} drain_fx;

static int setup(void **state) {
        drain_fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        fake_node_init(&f->node, "drain");
        f->r = fake_node_add(&f->node, fake_spec("chat", "r0", 0, 2), fake_policy(NULL));
        assert_int_equal(fake_node_preload(&f->node, f->r), 0);
        f->engine = fake_engines_last();
        assert_int_equal(ps_lease_acquire(f->node.reg, "chat", 0, &f->lease, NULL, 0), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        drain_fx *f = *state;

        fake_node_clear(&f->node);
        free(f);
        return 0;
}

static void on_drained(const char *pool_id, const ps_drain_outcome *o, void *userdata) {
        drain_fx *f = userdata;

        assert_string_equal(pool_id, "chat");
        f->done = true;
        f->outcome = *o;
        snprintf(f->message, sizeof(f->message), "%s", o->message);
        f->outcome.message = f->message;
}

static void test_drain_waits_for_the_lease_then_stops(void **state) {
        drain_fx *f = *state;
        ps_registry *reg = f->node.reg;
        ps_drain_info info;
        ps_lease refused;
        char err[256];

        assert_int_equal(ps_pool_drain(reg, "chat", 60000, on_drained, f, &info, err, sizeof(err)),
                         0);
        assert_false(info.already_running);
        assert_int_equal(info.active_leases, 1);
        assert_int_equal(info.started_at, FAKE_WALL_START_MS);
        assert_int_equal(info.deadline_at, FAKE_WALL_START_MS + 60000);
        assert_true(ps_pool_draining(reg, "chat"));

        /* no new lease, and the engine serving the held one is left alone */
        assert_int_equal(ps_lease_acquire(reg, "chat", 0, &refused, err, sizeof(err)),
                         PS_E_DRAINING);
        assert_string_equal(err, "pool chat is draining");
        fake_node_run_for(&f->node, 50);
        assert_false(f->done);
        assert_true(fake_engine_running(f->engine));
        assert_int_equal(fake_engine_signals(f->engine, SIGTERM), 0);
        assert_true(ps_replica_draining(f->r));
        /* a second request joins the running drain */
        assert_int_equal(ps_pool_drain(reg, "chat", 5, NULL, NULL, &info, NULL, 0), 0);
        assert_true(info.already_running);
        assert_int_equal(info.deadline_at, FAKE_WALL_START_MS + 60000);

        /* the last lease ends: SIGTERM, exit, answer */
        fake_clock_advance(&f->node.clock, 1500);
        assert_int_equal(ps_lease_release(reg, "chat", f->lease.lease_id, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_true(f->outcome.ok);
        assert_false(f->outcome.force_stopped);
        assert_int_equal(f->outcome.leases_left, 0);
        assert_int_equal(f->outcome.duration_ms, 1500);
        assert_string_equal(f->outcome.message, "drained: engine stopped");
        assert_int_equal(fake_engine_signals(f->engine, SIGTERM), 1);
        assert_int_equal(fake_engine_signals(f->engine, SIGKILL), 0);
        assert_false(fake_engine_running(f->engine));
        assert_string_equal(ps_replica_state(f->r), "stopped");
        assert_false(ps_replica_live(f->r));
        assert_false(ps_pool_draining(reg, "chat"));
        /* stopped stays stopped: a drained pool is not restarted */
        fake_node_run_for(&f->node, 50);
        assert_int_equal(fake_engines_spawned(), 1);
}

static void test_deadline_drops_the_leases_and_stops(void **state) {
        drain_fx *f = *state;
        ps_registry *reg = f->node.reg;

        assert_int_equal(ps_pool_drain(reg, "chat", 30, on_drained, f, NULL, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_true(f->outcome.ok);
        assert_true(f->outcome.force_stopped);
        assert_int_equal(f->outcome.leases_left, 1);
        assert_string_equal(f->outcome.message,
                            "drain deadline reached: engine force-stopped with 1 leases left");
        assert_int_equal(fake_engine_signals(f->engine, SIGTERM), 1);
        assert_string_equal(ps_replica_state(f->r), "stopped");
        /* the lease is gone: the control plane cannot use it any more */
        assert_int_equal(ps_registry_lease_count(reg), 0);
        assert_int_equal(ps_lease_release(reg, "chat", f->lease.lease_id, NULL, 0), PS_E_NOT_FOUND);
        assert_int_equal(fake_node_seen(&f->node, "leases ended by force"), 1);
}

static void test_a_pool_not_running_cannot_drain(void **state) {
        drain_fx *f = *state;
        ps_registry *reg = f->node.reg;
        char err[256];

        (void) fake_node_add(&f->node, fake_spec("idle", "r0", 0, 1), fake_policy(NULL));
        assert_int_equal(ps_pool_drain(reg, "idle", 1000, on_drained, f, NULL, err, sizeof(err)),
                         PS_E_CONFLICT);
        assert_string_equal(err, "pool idle is not running");
        assert_int_equal(ps_pool_drain(reg, "nope", 1000, on_drained, f, NULL, err, sizeof(err)),
                         PS_E_NOT_FOUND);
        assert_int_equal(ps_pool_drain(reg, "chat", -1, on_drained, f, NULL, err, sizeof(err)),
                         PS_E_INVALID);
        fake_node_run_for(&f->node, 10);
        assert_false(f->done);
}

static bool metrics_read_twice(fake_node *n, const void *arg) {
        (void) n;
        return fake_engine_metrics_reads(arg) >= 2;
}

/* Leases are not the only work: a request sent without one (routing by
 * /v1/replicasets) still runs when the last lease ends. The engine is
 * stopped once its own in-flight count says it is done. */
static void test_drain_waits_for_requests_in_flight(void **state) {
        drain_fx *f = *state;
        ps_registry *reg = f->node.reg;

        assert_int_equal(ps_lease_release(reg, "chat", f->lease.lease_id, NULL, 0), 0);
        fake_engine_set_in_flight(f->engine, 1);
        assert_int_equal(ps_pool_drain(reg, "chat", 60000, on_drained, f, NULL, NULL, 0), 0);
        assert_true(fake_node_until(&f->node, metrics_read_twice, f->engine));
        assert_false(f->done);
        assert_true(fake_engine_running(f->engine));
        assert_int_equal(fake_engine_signals(f->engine, SIGTERM), 0);

        fake_engine_set_in_flight(f->engine, 0);
        assert_true(fake_node_until(&f->node, fake_flag_set, &f->done));
        assert_true(f->outcome.ok);
        assert_false(f->outcome.force_stopped);
        assert_int_equal(fake_engine_signals(f->engine, SIGTERM), 1);
        assert_string_equal(ps_replica_state(f->r), "stopped");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_drain_waits_for_the_lease_then_stops),
                T(test_deadline_drops_the_leases_and_stops),
                T(test_a_pool_not_running_cannot_drain),
                T(test_drain_waits_for_requests_in_flight),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
