/* SPDX-License-Identifier: MIT */
/*
 * The daemon registers its configured replicas a batch per loop turn
 * (pool-managerd/register.c): a small configuration is registered before
 * the loop runs, a large one over several turns with every replica in
 * the end and one answer; a replica the registry refuses ends it with
 * the reason.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "fake-node.h"
#include "register.h"
#include "pool-services/base/errors.h"

typedef struct answer {
        unsigned calls;
        int rc;
        char message[256];
} answer;

static void on_done(int rc, const char *message, void *userdata) {
        answer *a = userdata;

        a->calls++;
        a->rc = rc;
        snprintf(a->message, sizeof(a->message), "%s", message);
}

/* A configuration of n pools (two replicas each when two is set). */
static ps_config *config_of(unsigned n, bool two) {
        size_t cap = 256 + (size_t) n * 200;
        char *text = malloc(cap), err[512] = "";
        size_t len = 0;
        ps_config *cfg = NULL;

        assert_non_null(text);
        len += (size_t) snprintf(text + len, cap - len,
                                 "{\"gpu\": {\"backend\": \"none\", \"require\": false}, \"pools\": [");
        for (unsigned i = 0; i < n; i++)
                len += (size_t) snprintf(text + len, cap - len,
                                         "%s{\"id\": \"p%04u\", \"engine\": \"llamacpp\", \"engine_version\": \"b1\", "
                                         "\"binary\": \"/usr/bin/engine\", \"port\": %u, "
                                         "\"device_mask\": \"none\", \"replicas\": %d}",
                                         i ? ", " : "", i, 20000 + 4 * i, two ? 2 : 1);
        snprintf(text + len, cap - len, "]}");
        if (ps_config_load_string(text, "/", &cfg, err, sizeof(err)) != 0)
                fail_msg("config: %s", err);
        free(text);
        return cfg;
}

/* Starts registering cfg into n's registry, answered into a. */
static pm_register *start(fake_node *n, const ps_config *cfg, answer *a) {
        pm_register *g = NULL;
        char err[256] = "";

        if (pm_register_start(n->base, n->reg, cfg, on_done, a, &g, err, sizeof(err)) != 0)
                fail_msg("pm_register_start: %s", err);
        return g;
}

static bool answered(fake_node *n, const void *arg) {
        (void) n;
        return ((const answer *) arg)->calls > 0;
}

static void test_small_config_registered_before_the_loop(void **state) {
        fake_node *n = *state;
        ps_config *cfg = config_of(3, true);
        pm_register *g = NULL;
        answer a = { 0 };

        g = start(n, cfg, &a);
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.rc, 0);
        assert_int_equal(pm_register_done_count(g), 6);
        assert_int_equal(pm_register_total(g), 6);
        assert_int_equal(ps_registry_pool_count(n->reg), 3);
        assert_non_null(ps_registry_find(n->reg, "p0002", "r1"));
        pm_register_free(g);
        ps_config_free(cfg);
}

static void test_large_config_over_turns(void **state) {
        fake_node *n = *state;
        unsigned pools = 3 * PM_REGISTER_PER_TURN + 7;
        ps_config *cfg = config_of(pools, false);
        pm_register *g = NULL;
        answer a = { 0 };
        size_t first;

        g = start(n, cfg, &a);
        /* one batch now, the rest after the loop has polled */
        first = pm_register_done_count(g);
        assert_in_range(first, 1, PM_REGISTER_PER_TURN);
        assert_int_equal(a.calls, 0);
        assert_int_equal(ps_registry_pool_count(n->reg), first);
        event_base_loop(n->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        assert_in_range(pm_register_done_count(g), first + 1, first + PM_REGISTER_PER_TURN);

        assert_true(fake_node_until(n, answered, &a));
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.rc, 0);
        assert_int_equal(ps_registry_pool_count(n->reg), pools);
        for (unsigned i = 0; i < pools; i++) {
                char id[16];

                snprintf(id, sizeof(id), "p%04u", i);
                assert_string_equal(ps_registry_pool_id_at(n->reg, i), id);
        }
        fake_node_run_for(n, 20);
        assert_int_equal(a.calls, 1);
        pm_register_free(g);
        ps_config_free(cfg);
}

/* Freed half-way (a signal during the start): nothing more is registered,
 * no answer comes, nothing leaks. */
static void test_free_stops_it(void **state) {
        fake_node *n = *state;
        ps_config *cfg = config_of(2 * PM_REGISTER_PER_TURN + 1, false);
        pm_register *g = NULL;
        answer a = { 0 };
        size_t first;

        g = start(n, cfg, &a);
        first = ps_registry_pool_count(n->reg);
        pm_register_free(g);
        fake_node_run_for(n, 20);
        assert_int_equal(ps_registry_pool_count(n->reg), first);
        assert_int_equal(a.calls, 0);
        ps_config_free(cfg);
}

/* A replica the registry refuses (its pool is already there) ends the
 * registration with the reason. */
static void test_refused_replica_answers_the_reason(void **state) {
        fake_node *n = *state;
        ps_config *cfg = config_of(2, false);
        pm_register *g = NULL;
        answer a = { 0 };
        char err[256];

        fake_node_add(n, fake_spec("p0001", "r0", 0, 1), fake_policy(NULL));
        g = start(n, cfg, &a);
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.rc, PS_E_EXISTS);
        assert_string_equal(a.message, "pool p0001 replica r0 already exists");
        assert_int_equal(pm_register_start(NULL, n->reg, cfg, on_done, &a, &g, err, sizeof(err)),
                         -EINVAL);
        pm_register_free(g);
        ps_config_free(cfg);
}

/* A refusal whose code is PS_E_INVALID (1) is a refusal, not "all in":
 * what follows is not registered, and the answer says which and why. */
static void test_invalid_replica_is_not_taken_for_done(void **state) {
        fake_node *n = *state;
        ps_config *cfg = config_of(3, false);
        pm_register *g = NULL;
        answer a = { 0 };

        cfg->pools[1].slots = 0;        /* past the file's checks, as a bug would */
        g = start(n, cfg, &a);
        fake_node_run_for(n, 20);
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.rc, PS_E_INVALID);
        assert_string_equal(a.message, "slots: must be at least 1");
        assert_int_equal(ps_registry_pool_count(n->reg), 1);
        assert_int_equal(pm_register_done_count(g), 1);
        pm_register_free(g);
        ps_config_free(cfg);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fake_node_setup, fake_node_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_small_config_registered_before_the_loop),
                T(test_large_config_over_turns),
                T(test_free_stops_it),
                T(test_refused_replica_answers_the_reason),
                T(test_invalid_replica_is_not_taken_for_done),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
