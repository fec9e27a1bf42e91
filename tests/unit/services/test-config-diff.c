/* SPDX-License-Identifier: MIT */
/* The plan of a configuration reload: which pools were added, removed,
 * changed (in place or not), or left alone. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pool-services/conf/config-diff.h"
#include "pool-services/base/digest.h"

#define BASE "/etc/pool-managerd"
#define GPUS "\"gpu\": {\"backend\": \"fake\", \"devices\": [" \
             "{\"index\": 0, \"vram_total_bytes\": 1000}, {\"index\": 1, \"vram_total_bytes\": 1000}]}"
#define POOL(id, port, extra) \
        "{\"id\": \"" id "\", \"engine\": \"llamacpp\", \"engine_version\": \"b1\"," \
        " \"binary\": \"/usr/bin/engine\", \"shared_devices\": true, \"port\": " #port extra "}"

static ps_config *load(const char *pools) {
        char text[4096], err[512];
        ps_config *cfg = NULL;

        snprintf(text, sizeof(text), "{" GPUS ", \"pools\": [%s]}", pools);
        if (ps_config_load_string(text, BASE, &cfg, err, sizeof(err)) != 0)
                fail_msg("%s\n%s", err, text);
        return cfg;
}

static const ps_pool_diff *entry(const ps_config_diff *d, const char *id) {
        for (size_t i = 0; i < d->n_pools; i++)
                if (strcmp(d->pools[i].pool_id, id) == 0)
                        return &d->pools[i];
        fail_msg("pool %s not in the diff", id);
        return NULL;
}

static void test_added_removed_changed_unchanged(void **state) {
        ps_config *old = load(POOL("same", 8000, ", \"device_mask\": \"0\"") ","
                              POOL("model", 8100, ", \"device_mask\": \"0\", \"model_path\": \"/m/a.gguf\"") ","
                              POOL("moved", 8200, ", \"device_mask\": \"1\"") ","
                              POOL("tuned", 8300, ", \"device_mask\": \"1\"") ","
                              POOL("gone", 8400, ", \"device_mask\": \"1\""));
        ps_config *next = load(POOL("same", 8000, ", \"device_mask\": \"0\"") ","
                               POOL("model", 8100, ", \"device_mask\": \"0\", \"model_path\": \"/m/b.gguf\"") ","
                               POOL("moved", 8250, ", \"device_mask\": \"1\"") ","
                               POOL("tuned", 8300, ", \"device_mask\": \"1\", \"policy\": {\"lease_ttl_ms\": 5000}") ","
                               POOL("new", 8500, ", \"device_mask\": \"1\""));
        ps_config_diff *d = NULL;
        const ps_pool_diff *e;

        (void) state;
        assert_int_equal(ps_config_diff_compute(old, next, &d), 0);
        assert_int_equal(d->n_pools, 6);
        assert_int_equal(d->count[PS_POOL_ADDED], 1);
        assert_int_equal(d->count[PS_POOL_REMOVED], 1);
        assert_int_equal(d->count[PS_POOL_CHANGED], 3);
        assert_int_equal(d->count[PS_POOL_UNCHANGED], 1);

        assert_int_equal(entry(d, "same")->change, PS_POOL_UNCHANGED);
        e = entry(d, "model");
        assert_int_equal(e->change, PS_POOL_CHANGED);
        assert_true(e->in_place);
        assert_true(e->engine_changed);
        e = entry(d, "moved");
        assert_int_equal(e->change, PS_POOL_CHANGED);
        assert_false(e->in_place);   /* another port: replaced, not reloaded */
        e = entry(d, "tuned");
        assert_int_equal(e->change, PS_POOL_CHANGED);
        assert_true(e->in_place);
        assert_false(e->engine_changed);   /* the policy alone: no restart */
        assert_int_equal(entry(d, "new")->change, PS_POOL_ADDED);
        assert_int_equal(entry(d, "gone")->change, PS_POOL_REMOVED);
        /* the new file's order first, removed pools last */
        assert_string_equal(d->pools[0].pool_id, "same");
        assert_string_equal(d->pools[5].pool_id, "gone");
        assert_string_equal(ps_pool_change_to_string(PS_POOL_REMOVED), "removed");
        assert_null(ps_pool_change_to_string(PS_POOL_CHANGE_MAX));
        ps_config_diff_free(d);

        /* the same file twice: nothing to do */
        assert_int_equal(ps_config_diff_compute(next, next, &d), 0);
        assert_int_equal(d->count[PS_POOL_UNCHANGED], 5);
        assert_int_equal(d->count[PS_POOL_CHANGED] + d->count[PS_POOL_ADDED] + d->count[PS_POOL_REMOVED], 0);
        ps_config_diff_free(d);
        assert_int_equal(ps_config_diff_compute(NULL, next, &d), -EINVAL);
        ps_config_free(old);
        ps_config_free(next);
}

static void test_replica_count_and_args_changes(void **state) {
        ps_config *old = load(POOL("p", 8000, ", \"device_mask\": \"0\", \"args\": [\"--port\", \"{port}\"]"));
        ps_config *more = load(POOL("p", 8000, ", \"device_mask\": \"0\", \"replicas\": 2,"
                                    " \"args\": [\"--port\", \"{port}\"]"));
        ps_config *args = load(POOL("p", 8000, ", \"device_mask\": \"0\", \"args\": [\"--port\", \"{port}\", \"-fa\"]"));
        ps_config_diff *d = NULL;

        (void) state;
        assert_int_equal(ps_config_diff_compute(old, more, &d), 0);
        assert_false(d->pools[0].in_place);
        ps_config_diff_free(d);
        assert_int_equal(ps_config_diff_compute(old, args, &d), 0);
        assert_int_equal(d->pools[0].change, PS_POOL_CHANGED);
        assert_true(d->pools[0].in_place);
        assert_true(d->pools[0].engine_changed);
        ps_config_diff_free(d);
        ps_config_free(old);
        ps_config_free(more);
        ps_config_free(args);
}

static void sha_hex(const char *text, size_t repeat, char hex[65]) {
        ps_sha256 c;

        ps_sha256_init(&c);
        for (size_t i = 0; i < repeat; i++)
                ps_sha256_update(&c, text, strlen(text));
        ps_sha256_final_hex(&c, hex);
}

static void test_sha256_known_answers(void **state) {
        char hex[65];
        const char *digits;

        (void) state;
        sha_hex("", 1, hex);
        assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        sha_hex("abc", 1, hex);
        assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1, hex);
        assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        /* a million 'a', fed in uneven pieces across block boundaries */
        sha_hex("aaaaaaaaaaaaaaaaaaaaaaaaa", 40000, hex);
        assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

        assert_true(ps_sha256_parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &digits));
        assert_string_equal(digits, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_true(ps_sha256_parse("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", NULL));
        assert_false(ps_sha256_parse("ba7816bf", NULL));
        assert_false(ps_sha256_parse("zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", NULL));
        assert_false(ps_sha256_parse(NULL, NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_added_removed_changed_unchanged),
                cmocka_unit_test(test_replica_count_and_args_changes),
                cmocka_unit_test(test_sha256_known_answers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
