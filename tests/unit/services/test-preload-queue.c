/* SPDX-License-Identifier: MIT */
/*
 * Preloads spread over loop turns: however many pools are queued, one
 * turn starts at most a batch of engines, every queued replica still
 * comes up, and one removed before its turn is answered "not found".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "fake-node.h"
#include "pool-services/base/errors.h"
#include "pool-services/pool/preload-queue.h"

#define N_POOLS 12
#define PER_TURN 3

typedef struct answers {
        unsigned ok, not_found, other;
} answers;

static void on_done(int rc, const char *message, void *userdata) {
        answers *a = userdata;

        (void) message;
        if (rc == 0)
                a->ok++;
        else if (rc == PS_E_NOT_FOUND)
                a->not_found++;
        else
                a->other++;
}

static bool all_answered(fake_node *n, const void *arg) {
        const answers *a = arg;

        (void) n;
        return a->ok + a->not_found + a->other == N_POOLS;
}

/* N_POOLS pools of one replica, each queued, answered through done. */
static void add_pools_with(fake_node *n, ps_preload_queue *q, ps_done_fn done, void *userdata) {
        for (unsigned i = 0; i < N_POOLS; i++) {
                char id[16];

                snprintf(id, sizeof(id), "p%u", i);
                fake_node_add(n, fake_spec(id, "r0", 0, 1), fake_policy(NULL));
                assert_int_equal(ps_preload_queue_add(q, id, "r0", done, userdata), 0);
        }
}

static void add_pools(fake_node *n, ps_preload_queue *q, answers *a) {
        add_pools_with(n, q, on_done, a);
}

static void test_a_batch_per_turn_and_all_come_up(void **state) {
        fake_node *n = *state;
        ps_preload_queue *q = ps_preload_queue_new(n->base, n->reg, PER_TURN);
        answers a = { 0 };
        size_t first;

        assert_non_null(q);
        add_pools(n, q, &a);
        /* queuing starts nothing: the loop does, a batch per turn */
        assert_int_equal(fake_engines_spawned(), 0);
        assert_int_equal(ps_preload_queue_pending(q), N_POOLS);
        event_base_loop(n->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        first = fake_engines_spawned();
        assert_in_range(first, 1, PER_TURN);
        assert_int_equal(ps_preload_queue_pending(q), N_POOLS - first);
        event_base_loop(n->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        assert_in_range(fake_engines_spawned(), first + 1, first + PER_TURN);

        assert_true(fake_node_until(n, all_answered, &a));
        assert_int_equal(a.ok, N_POOLS);
        assert_int_equal(fake_engines_spawned(), N_POOLS);
        assert_int_equal(ps_preload_queue_pending(q), 0);
        ps_preload_queue_free(q);
}

static void test_a_pool_removed_before_its_turn_is_not_found(void **state) {
        fake_node *n = *state;
        ps_preload_queue *q = ps_preload_queue_new(n->base, n->reg, PER_TURN);
        answers a = { 0 };
        char err[256];

        assert_non_null(q);
        add_pools(n, q, &a);
        assert_int_equal(ps_registry_remove_pool(n->reg, "p11", err, sizeof(err)), 0);
        assert_true(fake_node_until(n, all_answered, &a));
        assert_int_equal(a.ok, N_POOLS - 1);
        assert_int_equal(a.not_found, 1);
        assert_int_equal(fake_engines_spawned(), N_POOLS - 1);
        ps_preload_queue_free(q);
}

/* Freed with starts still queued: none of them runs, nothing leaks. */
static void test_free_drops_what_has_not_started(void **state) {
        fake_node *n = *state;
        ps_preload_queue *q = ps_preload_queue_new(n->base, n->reg, PER_TURN);
        answers a = { 0 };
        size_t first;

        assert_non_null(q);
        add_pools(n, q, &a);
        event_base_loop(n->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        first = fake_engines_spawned();
        ps_preload_queue_free(q);
        fake_node_run_for(n, 50);
        assert_int_equal(fake_engines_spawned(), first);
        assert_true(first < N_POOLS);
        assert_int_equal(ps_preload_queue_add(NULL, "p", "r0", on_done, &a), -EINVAL);
}

typedef struct cancelled {
        unsigned n;
        int rc;
        char message[64];
} cancelled;

static void on_cancelled(int rc, const char *message, void *userdata) {
        cancelled *c = userdata;

        c->n++;
        c->rc = rc;
        snprintf(c->message, sizeof(c->message), "%s", message);
}

/* The shutdown cancels what has not started: each is answered with the
 * reason, none starts later, and the queue takes new work afterwards. */
static void test_cancel_answers_and_starts_nothing_more(void **state) {
        fake_node *n = *state;
        ps_preload_queue *q = ps_preload_queue_new(n->base, n->reg, PER_TURN);
        cancelled c = { 0 };
        size_t first;

        assert_non_null(q);
        add_pools_with(n, q, on_cancelled, &c);
        event_base_loop(n->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        first = fake_engines_spawned();
        assert_in_range(first, 1, PER_TURN);
        assert_int_equal(ps_preload_queue_cancel(q, PS_E_CONFLICT, "shutting down"), N_POOLS - first);
        assert_int_equal(c.n, N_POOLS - first);
        assert_int_equal(c.rc, PS_E_CONFLICT);
        assert_string_equal(c.message, "shutting down");
        assert_int_equal(ps_preload_queue_pending(q), 0);
        fake_node_run_for(n, 50);
        assert_int_equal(fake_engines_spawned(), first);
        assert_int_equal(ps_preload_queue_cancel(q, PS_E_CONFLICT, "again"), 0);
        assert_int_equal(ps_preload_queue_cancel(NULL, PS_E_CONFLICT, "none"), 0);
        ps_preload_queue_free(q);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fake_node_setup, fake_node_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_a_batch_per_turn_and_all_come_up),
                T(test_a_pool_removed_before_its_turn_is_not_found),
                T(test_free_drops_what_has_not_started),
                T(test_cancel_answers_and_starts_nothing_more),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
