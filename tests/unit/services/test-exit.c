/* SPDX-License-Identifier: MIT */
/*
 * How a replica reads an engine's end: last_error names the cause the
 * engine logged, not its generic last line, and without its log prefix.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fake-node.h"
#include "pool-services/base/errors.h"

static void test_last_error_names_the_cause_not_the_exit_line(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("cut", "r0", 0, 1),
                                      fake_policy("{\"backoff\": {\"initial_ms\": 10000}}"));
        fake_engine *e;

        assert_int_equal(fake_node_preload(n, r), 0);
        e = fake_engines_last();
        /* what llama-server writes on a truncated GGUF, then exit 1 */
        fake_engine_log(e, "0.00.010.100 I llama_model_loader: loaded meta data with 31 key-value pairs");
        fake_engine_log(e, "0.00.012.300 E llama_model_load: error loading model: tensor "
                           "'blk.3.ffn_up.weight' data is not within the file bounds, model is "
                           "corrupted or incomplete");
        fake_engine_log(e, "0.00.012.310 E llama_model_load_from_file_impl: failed to load model");
        fake_engine_log(e, "0.00.013.200 E srv    load_model: failed to load model, '/models/tiny.gguf'");
        fake_engine_log(e, "0.00.013.368 E main: exiting due to model loading error");
        fake_engine_exit(e, 1);
        fake_node_wait_state(n, r, "backoff");
        assert_string_equal(fake_snap_str(r, "last_error"),
                            "exited with code 1: llama_model_load: error loading model: tensor "
                            "'blk.3.ffn_up.weight' data is not within the file bounds, model is "
                            "corrupted or incomplete");
}

static void test_last_error_strips_the_prefix_of_a_plain_last_line(void **state) {
        fake_node *n = *state;
        ps_replica *r = fake_node_add(n, fake_spec("plain", "r0", 0, 1),
                                      fake_policy("{\"backoff\": {\"initial_ms\": 10000}}"));
        fake_engine *e;

        assert_int_equal(fake_node_preload(n, r), 0);
        e = fake_engines_last();
        fake_engine_log(e, "0.00.013.100 I srv  update_slots: all slots are idle");
        fake_engine_log(e, "0.00.013.368 W srv  operator(): giving up");
        fake_engine_exit(e, 3);
        fake_node_wait_state(n, r, "backoff");
        assert_string_equal(fake_snap_str(r, "last_error"), "exited with code 3: srv  operator(): giving up");
}

#define T(f) cmocka_unit_test_setup_teardown(f, fake_node_setup, fake_node_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_last_error_names_the_cause_not_the_exit_line),
                T(test_last_error_strips_the_prefix_of_a_plain_last_line),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
