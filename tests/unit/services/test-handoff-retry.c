/* SPDX-License-Identifier: MIT */
/*
 * A handoff file that could not be written is written later: the first
 * failure is logged, further tries (1 s, then doubling to 30 s) are quiet,
 * and the file appears once the cause is gone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-node.h"
#include "pool-services/supervise/handoff.h"

#define FAILED "cannot write handoff; retrying with backoff"
#define WRITTEN "handoff written after a failure"

static bool file_exists(fake_node *n, const void *arg) {
        (void) n;
        return access(arg, F_OK) == 0;
}

static void test_failed_write_is_retried(void **state) {
        fake_node *n = *state;
        char parent[128], dir[PATH_MAX], file[PATH_MAX];
        ps_replica *r;

        /* the handoff directory's parent is missing: every write fails */
        snprintf(parent, sizeof(parent), "%s/later", n->dir);
        snprintf(dir, sizeof(dir), "%s/engines", parent);
        assert_true(ps_handoff_path(dir, "ho", "r0", file, sizeof(file)) > 0);
        n->ctx.handoff_dir = dir;
        r = fake_node_add(n, fake_spec("ho", "r0", 0, 1), NULL);
        assert_int_equal(fake_node_preload(n, r), 0);
        assert_int_equal(fake_node_seen(n, FAILED), 1);
        assert_int_equal(access(file, F_OK), -1);

        /* the first try again (after 1 s) fails too, without a word */
        fake_node_run_for(n, 1500);
        assert_int_equal(fake_node_seen(n, FAILED), 1);
        assert_int_equal(access(file, F_OK), -1);

        /* the cause is gone: the next try writes it */
        assert_int_equal(mkdir(parent, 0700), 0);
        assert_true(fake_node_until(n, file_exists, file));
        assert_int_equal(fake_node_seen(n, WRITTEN), 1);
        assert_int_equal(fake_node_seen(n, FAILED), 1);
        n->ctx.handoff_dir = NULL;
}

/* A replica that stops while its handoff is failing stops retrying. */
static void test_removal_ends_the_retries(void **state) {
        fake_node *n = *state;
        char parent[128], dir[PATH_MAX], file[PATH_MAX];
        ps_replica *r;

        snprintf(parent, sizeof(parent), "%s/later", n->dir);
        snprintf(dir, sizeof(dir), "%s/engines", parent);
        assert_true(ps_handoff_path(dir, "ho", "r0", file, sizeof(file)) > 0);
        n->ctx.handoff_dir = dir;
        r = fake_node_add(n, fake_spec("ho", "r0", 0, 1), NULL);
        assert_int_equal(fake_node_preload(n, r), 0);
        assert_int_equal(fake_node_seen(n, FAILED), 1);
        assert_int_equal(ps_replica_stop(r, NULL, 0), 0);
        fake_node_wait_state(n, r, "stopped");
        assert_int_equal(mkdir(parent, 0700), 0);
        fake_node_run_for(n, 1500);
        assert_int_equal(access(file, F_OK), -1);
        assert_int_equal(fake_node_seen(n, WRITTEN), 0);
        n->ctx.handoff_dir = NULL;
}

#define T(f) cmocka_unit_test_setup_teardown(f, fake_node_setup, fake_node_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_failed_write_is_retried),
                T(test_removal_ends_the_retries),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
