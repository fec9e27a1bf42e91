/* SPDX-License-Identifier: MIT */
/*
 * A pool of two replicas as the API shows it: the pool serves while any
 * replica serves, its slots and leases are the sums of its replicas', and
 * the trouble of one replica (its error, its restart time) shows at the
 * pool's level without hiding that the other still serves.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "fake-node.h"
#include "pool-services/observe/status-json.h"
#include "pool-services/base/errors.h"
#include "pool-services/pool/lease.h"

typedef struct pool_fx {
        fake_node node;
        ps_replica *r0, *r1;
} pool_fx;

static int setup(void **state) {
        pool_fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        fake_node_init(&f->node, "registry");
        f->r0 = fake_node_add(&f->node, fake_spec("chat", "r0", 0, 2), fake_policy(NULL));
        f->r1 = fake_node_add(&f->node, fake_spec("chat", "r1", 0, 3),
                              fake_policy("{\"backoff\": {\"initial_ms\": 60000,"
                                          " \"max_ms\": 60000}}"));
        *state = f;
        return 0;
}

static int teardown(void **state) {
        pool_fx *f = *state;

        fake_node_clear(&f->node);
        free(f);
        return 0;
}

static json_t *pool_snapshot(pool_fx *f) {
        json_t *s = ps_registry_pool_snapshot(f->node.reg, "chat");

        assert_non_null(s);
        return s;
}

static int64_t get_int(const json_t *o, const char *key) {
        const json_t *v = json_object_get(o, key);

        assert_true(json_is_integer(v));
        return (int64_t) json_integer_value(v);
}

static void test_two_ready_replicas_add_up(void **state) {
        pool_fx *f = *state;
        ps_lease lease;
        json_t *s, *all;

        assert_int_equal(fake_node_preload(&f->node, f->r0), 0);
        assert_int_equal(fake_node_preload(&f->node, f->r1), 0);
        assert_int_equal(ps_lease_acquire(f->node.reg, "chat", 0, &lease, NULL, 0), 0);

        s = pool_snapshot(f);
        assert_string_equal(json_string_value(json_object_get(s, "state")), "ready");
        assert_true(json_is_true(json_object_get(s, "ready")));
        assert_true(json_is_true(json_object_get(s, "live")));
        assert_int_equal(get_int(s, "slots_total"), 5);
        assert_int_equal(get_int(s, "slots_free"), 4);
        assert_int_equal(get_int(s, "active_leases"), 1);
        assert_int_equal(get_int(s, "crash_count"), 0);
        assert_int_equal(json_array_size(json_object_get(s, "replicas")), 2);
        /* the pool's pid is its first replica's */
        assert_int_equal(get_int(s, "pid"), ps_replica_pid(f->r0));
        json_decref(s);

        /* the whole registry: one pool */
        all = ps_registry_snapshot(f->node.reg);
        assert_int_equal(json_array_size(json_object_get(all, "pools")), 1);
        assert_int_equal(ps_registry_pool_count(f->node.reg), 1);
        assert_int_equal(ps_registry_active_leases(f->node.reg, "chat"), 1);
        json_decref(all);
}

static fake_engine *engine_of(const ps_replica *r) {
        for (size_t i = fake_engines_spawned(); i > 0; i--)
                if (fake_engine_pid(fake_engines_at(i - 1)) == ps_replica_pid(r))
                        return fake_engines_at(i - 1);
        fail_msg("no engine for replica %s", ps_replica_id(r));
        return NULL;
}

static void test_one_crashed_replica_shows_but_the_pool_serves(void **state) {
        pool_fx *f = *state;
        json_t *s, *reps;

        assert_int_equal(fake_node_preload(&f->node, f->r0), 0);
        assert_int_equal(fake_node_preload(&f->node, f->r1), 0);
        fake_engine_log(engine_of(f->r1), "terminate called after throwing an instance");
        fake_engine_exit(engine_of(f->r1), 134);
        fake_node_wait_state(&f->node, f->r1, "backoff");

        s = pool_snapshot(f);
        /* r0 still serves: the pool is ready, with r0's slots only */
        assert_string_equal(json_string_value(json_object_get(s, "state")), "ready");
        assert_true(json_is_true(json_object_get(s, "ready")));
        assert_int_equal(get_int(s, "slots_total"), 5);
        assert_int_equal(get_int(s, "slots_free"), 2);
        assert_int_equal(get_int(s, "crash_count"), 1);
        /* r1's trouble, exactly when it restarts (60 s by the pinned clock) */
        assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")),
                               "exited with code 134"));
        assert_int_equal(get_int(s, "next_restart_at"), FAKE_WALL_START_MS + 60000);
        assert_int_equal(get_int(s, "backoff_ms"), 60000);
        reps = json_object_get(s, "replicas");
        assert_string_equal(json_string_value(json_object_get(json_array_get(reps, 0), "state")),
                            "ready");
        assert_string_equal(json_string_value(json_object_get(json_array_get(reps, 1), "state")),
                            "backoff");
        json_decref(s);
}

/* The pool's struct adds its replicas' up and points at the ones whose
 * fields it repeats; the API's JSON is that struct rendered. */
static void test_pool_status_adds_up_its_replicas(void **state) {
        pool_fx *f = *state;
        ps_pool_status p;
        ps_registry_status all;
        json_t *snap, *mine;

        assert_int_equal(ps_registry_pool_status_get(f->node.reg, "nope", &p), PS_E_NOT_FOUND);
        assert_int_equal(ps_registry_pool_status_get(f->node.reg, "chat", &p), 0);
        assert_string_equal(p.pool_id, "chat");
        assert_string_equal(p.state, "empty");
        assert_int_equal(p.n_replicas, 2);
        assert_ptr_equal(p.first, &p.replicas[0]);
        assert_string_equal(p.replicas[1].replica_id, "r1");
        assert_int_equal(p.slots_total, 5);
        assert_null(p.last_error);
        ps_pool_status_done(&p);
        assert_null(p.replicas);

        assert_int_equal(fake_node_preload(&f->node, f->r0), 0);
        assert_int_equal(fake_node_preload(&f->node, f->r1), 0);
        fake_engine_exit(engine_of(f->r1), 134);
        fake_node_wait_state(&f->node, f->r1, "backoff");

        assert_int_equal(ps_registry_pool_status_get(f->node.reg, "chat", &p), 0);
        assert_string_equal(p.state, "ready");
        assert_true(p.ready && p.live);
        assert_false(p.draining);
        assert_int_equal(p.slots_total, 5);
        assert_int_equal(p.slots_free, 2);
        assert_int_equal(p.crash_count, 1);
        assert_int_equal(p.restart_count, p.replicas[0].restart_count + p.replicas[1].restart_count);
        /* r1's error and restart, though r0 comes first */
        assert_ptr_equal(p.last_error, p.replicas[1].last_error);
        assert_non_null(strstr(p.last_error, "exited with code 134"));
        assert_int_equal(p.next_restart_at, FAKE_WALL_START_MS + 60000);
        assert_int_equal(p.backoff_ms, 60000);
        assert_string_equal(p.replicas[1].state, "backoff");
        assert_int_equal(p.replicas[1].slots_free, 0);
        assert_int_equal(p.replicas[0].pid, ps_replica_pid(f->r0));

        snap = ps_registry_pool_snapshot(f->node.reg, "chat");
        mine = ps_pool_status_json(&p);
        assert_true(json_equal(snap, mine));
        json_decref(snap);
        json_decref(mine);
        ps_pool_status_done(&p);

        assert_int_equal(ps_registry_status_get(f->node.reg, &all), 0);
        assert_int_equal(all.n_pools, 1);
        assert_string_equal(all.pools[0].pool_id, "chat");
        assert_int_equal(all.pools[0].n_replicas, 2);
        ps_registry_status_done(&all);
        assert_null(all.pools);
}

/* A handoff claim registers an external replica, tracked as the claim
 * says; its status shows it. */
static void test_handoff_claim_shows_in_the_status(void **state) {
        pool_fx *f = *state;
        ps_handoff_claim claim = {
                .pool_id = "ext", .replica_id = "e0", .engine_version = "v9",
                .engine = "vllm", .url = "http://10.0.0.5:8000", .model_id = "m",
                .slots = 8, .has_slots_free = true, .slots_free = 3,
        };
        ps_pool_status p;
        char err[256];

        claim.slots_free = 9;
        assert_int_equal(ps_registry_register_handoff(f->node.reg, &claim, err, sizeof(err)),
                         PS_E_INVALID);
        assert_string_equal(err, "handoff slots_free: 9 is above the slot count 8");
        claim.slots_free = 3;
        claim.pool_id = "../x";
        assert_int_equal(ps_registry_register_handoff(f->node.reg, &claim, err, sizeof(err)),
                         PS_E_INVALID);
        claim.pool_id = "ext";
        assert_int_equal(ps_registry_register_handoff(f->node.reg, &claim, err, sizeof(err)), 0);

        assert_int_equal(ps_registry_pool_status_get(f->node.reg, "ext", &p), 0);
        assert_int_equal(p.n_replicas, 1);
        assert_true(p.replicas[0].external);
        assert_true(p.ready);
        assert_string_equal(p.replicas[0].url, "http://10.0.0.5:8000");
        assert_string_equal(p.replicas[0].engine, "vllm");
        assert_string_equal(p.replicas[0].engine_version, "v9");
        assert_string_equal(p.replicas[0].model_id, "m");
        assert_null(p.replicas[0].device_mask);
        assert_int_equal(p.slots_total, 8);
        assert_int_equal(p.slots_free, 3);
        assert_int_equal(p.replicas[0].last_heartbeat, FAKE_WALL_START_MS);
        assert_int_equal(p.replicas[0].pid, 0);
        ps_pool_status_done(&p);
}

static bool pool_gone(fake_node *n, const void *pool_id) {
        return !ps_registry_has_pool(n->reg, pool_id);
}

static void test_pool_shows_first_replica_state_when_none_serves(void **state) {
        pool_fx *f = *state;
        json_t *s;

        s = pool_snapshot(f);
        assert_string_equal(json_string_value(json_object_get(s, "state")), "empty");
        assert_false(json_is_true(json_object_get(s, "ready")));
        assert_int_equal(get_int(s, "slots_free"), 0);
        assert_true(json_is_null(json_object_get(s, "last_error")));
        json_decref(s);

        /* forgetting the pool stops its engines first */
        assert_int_equal(fake_node_preload(&f->node, f->r0), 0);
        assert_int_equal(ps_registry_forget_pool(f->node.reg, "chat", NULL, 0), 0);
        assert_true(ps_registry_pool_removing(f->node.reg, "chat"));
        s = pool_snapshot(f);
        assert_string_equal(json_string_value(json_object_get(s, "state")), "removing");
        json_decref(s);
        assert_true(fake_node_until(&f->node, pool_gone, "chat"));
        assert_int_equal(fake_engines_running("chat", "r0"), 0);
}

/* A restart (or preload) of a pool being removed, in the loop turn of the
 * removal, is refused: an engine started then would keep the pool
 * `removing` forever, serving leases nobody can see go. */
static void test_start_of_a_pool_being_removed_is_refused(void **state) {
        pool_fx *f = *state;
        char err[256] = "";
        size_t spawned;

        assert_int_equal(fake_node_preload(&f->node, f->r1), 0);
        fake_engine_exit(engine_of(f->r1), 1);
        fake_node_wait_state(&f->node, f->r1, "backoff");
        spawned = fake_engines_spawned();

        assert_int_equal(ps_registry_forget_pool(f->node.reg, "chat", err, sizeof(err)), 0);
        assert_string_equal(ps_replica_state(f->r1), "stopped");
        assert_int_equal(ps_replica_restart(f->r1, err, sizeof(err)), PS_E_CONFLICT);
        assert_string_equal(err, "pool chat replica r1 is being removed: cannot restart");
        assert_int_equal(ps_replica_preload(f->r0, NULL, NULL, err, sizeof(err)), PS_E_CONFLICT);
        assert_string_equal(err, "pool chat replica r0 is being removed: cannot start");

        assert_true(fake_node_until(&f->node, pool_gone, "chat"));
        assert_int_equal(fake_engines_spawned(), spawned);
}

/* Many pools, one forgotten from the middle: every other is still found
 * by id (the index follows the array), in order, and the id is free for
 * a new pool that is found too. */
static void test_lookup_by_id_after_a_pool_leaves(void **state) {
        pool_fx *f = *state;
        char id[16];

        (void) f;
        for (unsigned i = 0; i < 40; i++) {
                snprintf(id, sizeof(id), "p%02u", i);
                fake_node_add(&f->node, fake_spec(id, "r0", 0, 1), fake_policy(NULL));
        }
        assert_int_equal(ps_registry_pool_count(f->node.reg), 41);
        assert_int_equal(ps_registry_forget_pool(f->node.reg, "p17", NULL, 0), 0);
        assert_true(fake_node_until(&f->node, pool_gone, "p17"));
        assert_int_equal(ps_registry_pool_count(f->node.reg), 40);
        for (unsigned i = 0; i < 40; i++) {
                ps_replica *r;

                snprintf(id, sizeof(id), "p%02u", i);
                r = ps_registry_find(f->node.reg, id, "r0");
                if (i == 17) {
                        assert_null(r);
                        continue;
                }
                assert_non_null(r);
                assert_string_equal(ps_replica_pool_id(r), id);
                assert_string_equal(ps_registry_pool_id_at(f->node.reg, i < 17 ? i + 1 : i), id);
        }
        assert_ptr_equal(ps_registry_replica_at(f->node.reg, "chat", 1), f->r1);
        assert_null(ps_registry_find(f->node.reg, "p17x", "r0"));
        fake_node_add(&f->node, fake_spec("p17", "r0", 0, 1), fake_policy(NULL));
        assert_string_equal(ps_registry_pool_id_at(f->node.reg, 40), "p17");
        assert_non_null(ps_registry_find(f->node.reg, "p17", "r0"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_two_ready_replicas_add_up),
                T(test_one_crashed_replica_shows_but_the_pool_serves),
                T(test_pool_shows_first_replica_state_when_none_serves),
                T(test_pool_status_adds_up_its_replicas),
                T(test_handoff_claim_shows_in_the_status),
                T(test_start_of_a_pool_being_removed_is_refused),
                T(test_lookup_by_id_after_a_pool_leaves),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
