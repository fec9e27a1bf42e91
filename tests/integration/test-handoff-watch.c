/* SPDX-License-Identifier: MIT */
/*
 * The handoff watcher against a real directory: files are written the way
 * a provisioner writes them (atomically, or in place), removed, broken and
 * replaced, and the test runs the loop until the registry shows the
 * outcome, within a generous deadline. Nothing sleeps for a fixed time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "pool-services/handoff-watch.h"
#include "harness.h"

typedef struct fx {
        th_node node;
        char engines[96];
        ps_handoff_watch *watch;
} fx;

static fx *fixture(int64_t rescan_ms, bool start) {
        fx *f = calloc(1, sizeof(*f));
        char err[256];

        assert_non_null(f);
        th_node_init(&f->node, &(th_node_options) { .name = "watch", .seed = 7 });
        snprintf(f->engines, sizeof(f->engines), "%s/engines", f->node.dir);
        if (start)
                assert_int_equal(ps_handoff_watch_new(&f->node.ctx, f->node.reg, rescan_ms, &f->watch,
                                                      err, sizeof(err)), 0);
        return f;
}

static int setup(void **state) {
        *state = fixture(60000, true);
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        ps_handoff_watch_free(f->watch);
        th_node_clear(&f->node);
        free(f);
        return 0;
}

static bool loop_until(fx *f, th_cond *cond, const void *arg) {
        return th_loop_until(f->node.base, cond, f, arg, TH_WAIT_MS);
}

typedef struct replica_ref {
        const char *pool_id, *replica_id;
} replica_ref;

static bool is_ready(void *fixture, const void *arg) {
        fx *f = fixture;
        const replica_ref *ref = arg;
        ps_replica *r = ps_registry_find(f->node.reg, ref->pool_id, ref->replica_id);

        return r && ps_replica_ready(r);
}

static bool is_unready(void *fixture, const void *arg) {
        fx *f = fixture;
        const replica_ref *ref = arg;
        ps_replica *r = ps_registry_find(f->node.reg, ref->pool_id, ref->replica_id);

        return r && !ps_replica_ready(r);
}

static bool has_event(void *fixture, const void *arg) {
        fx *f = fixture;

        return th_events_find(&f->node.events, arg) != NULL;
}

/* As a careful provisioner does: a temp file, then rename. */
static void write_atomic(fx *f, const char *name, const char *text) {
        char tmp[PATH_MAX], path[PATH_MAX];

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", f->engines, name);
        snprintf(path, sizeof(path), "%s/%s", f->engines, name);
        th_write_file(tmp, text);
        assert_int_equal(rename(tmp, path), 0);
}

static void write_in_place(fx *f, const char *name, const char *text) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s", f->engines, name);
        th_write_file(path, text);
}

static void remove_file(fx *f, const char *name) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s", f->engines, name);
        assert_int_equal(unlink(path), 0);
}

#define HANDOFF(pool, replica) \
        "{\"pool_id\": \"" pool "\", \"replica_id\": \"" replica "\", " \
        "\"engine\": \"vllm\", \"engine_version\": \"0.6.1\", " \
        "\"url\": \"http://10.0.0.5:8000\", \"slots_total\": 8, \"slots_free\": 6, " \
        "\"device_mask\": \"0\", \"model\": {\"id\": \"llama-3-8b\", \"path\": \"/m\"}}"

static void atomic_file_registers_a_ready_replica(void **state) {
        fx *f = *state;
        replica_ref ref = { "ext_pool", "r_1" };
        json_t *snap;

        /* Ids come from the content: the name says something else. */
        write_atomic(f, "whatever_name.json", HANDOFF("ext_pool", "r_1"));
        assert_true(loop_until(f, is_ready, &ref));
        snap = ps_registry_pool_snapshot(f->node.reg, "ext_pool");
        assert_non_null(snap);
        assert_string_equal(json_string_value(json_object_get(snap, "engine")), "vllm");
        assert_string_equal(json_string_value(json_object_get(snap, "model_id")), "llama-3-8b");
        assert_int_equal(json_integer_value(json_object_get(snap, "slots_total")), 8);
        assert_int_equal(json_integer_value(json_object_get(snap, "slots_free")), 6);
        assert_string_equal(json_string_value(json_object_get(snap, "url")), "http://10.0.0.5:8000");
        json_decref(snap);
        assert_int_equal(ps_handoff_watch_tracked(f->watch), 1);
        assert_false(has_event(f, "handoff ignored"));
}

static void removing_the_file_makes_it_unready(void **state) {
        fx *f = *state;
        replica_ref ref = { "p", "r0" };

        write_in_place(f, "p_r0.json", HANDOFF("p", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
        remove_file(f, "p_r0.json");
        assert_true(loop_until(f, is_unready, &ref));
        assert_int_equal(ps_handoff_watch_tracked(f->watch), 0);
        assert_true(has_event(f, "handoff removed: replica unready"));

        /* And back. */
        write_atomic(f, "p_r0.json", HANDOFF("p", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
}

static void moving_the_file_away_makes_it_unready(void **state) {
        fx *f = *state;
        replica_ref ref = { "p", "r0" };
        char from[PATH_MAX], to[PATH_MAX];

        write_atomic(f, "p_r0.json", HANDOFF("p", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
        snprintf(from, sizeof(from), "%s/p_r0.json", f->engines);
        snprintf(to, sizeof(to), "%s/p_r0.json", f->node.dir);
        assert_int_equal(rename(from, to), 0);
        assert_true(loop_until(f, is_unready, &ref));
}

static void malformed_file_is_reported_and_ignored(void **state) {
        fx *f = *state;
        replica_ref ref = { "p", "r0" };
        const th_event *ignored;

        /* Half a document, as a provisioner that crashed mid-write leaves it. */
        write_in_place(f, "p_r0.json", "{\"pool_id\": \"p\", \"replica_id\": \"r0\", \"engi");
        assert_true(loop_until(f, has_event, "handoff ignored"));
        ignored = th_events_find(&f->node.events, "handoff ignored");
        assert_string_equal(ignored->file, "p_r0.json");
        assert_non_null(strstr(ignored->error, "malformed JSON"));
        assert_null(ps_registry_find(f->node.reg, "p", "r0"));

        /* A rescan does not report the same broken file again. */
        ps_handoff_watch_rescan(f->watch);
        assert_int_equal(th_events_seen(&f->node.events, "handoff ignored"), 1);

        /* Finishing the file registers it. */
        write_in_place(f, "p_r0.json", HANDOFF("p", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
}

static void invalid_fields_are_reported_with_the_field(void **state) {
        fx *f = *state;
        replica_ref ref = { "good", "r0" };
        bool found = false;

        write_atomic(f, "bad.json", "{\"pool_id\": \"bad\", \"replica_id\": \"r0\", "
                                    "\"engine_version\": \"1\", \"slots_total\": \"many\"}");
        write_atomic(f, "array.json", "[1, 2]");
        write_atomic(f, "good.json", HANDOFF("good", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
        for (size_t i = 0; i < f->node.events.n; i++) {
                const th_event *ev = &f->node.events.list[i];

                if (strcmp(ev->message, "handoff ignored") == 0 && strcmp(ev->file, "bad.json") == 0) {
                        assert_non_null(strstr(ev->error, "slots_total"));
                        found = true;
                }
        }
        assert_true(found);
        assert_null(ps_registry_find(f->node.reg, "bad", "r0"));
        assert_int_equal(ps_registry_pool_count(f->node.reg), 1);
}

static void own_files_and_temp_files_are_not_processed(void **state) {
        fx *f = *state;
        replica_ref ref = { "ext", "r0" };

        write_atomic(f, "mine_r0.json",
                     "{\"pool_id\": \"mine\", \"replica_id\": \"r0\", \"engine_version\": \"b1\", "
                     "\"managed_by\": \"pool-managerd\"}");
        write_in_place(f, ".tmp-ext.json", HANDOFF("hidden", "r0"));
        write_in_place(f, "notes.txt", HANDOFF("text", "r0"));
        /* Events arrive in order: once this one is in, the others were seen. */
        write_atomic(f, "ext_r0.json", HANDOFF("ext", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
        ps_handoff_watch_rescan(f->watch);
        assert_false(ps_registry_has_pool(f->node.reg, "mine"));
        assert_false(ps_registry_has_pool(f->node.reg, "hidden"));
        assert_false(ps_registry_has_pool(f->node.reg, "text"));
        assert_false(has_event(f, "handoff ignored"));
}

static void file_renamed_to_other_ids_moves_readiness(void **state) {
        fx *f = *state;
        replica_ref a = { "p", "r0" }, b = { "p", "r1" };

        write_atomic(f, "slot.json", HANDOFF("p", "r0"));
        assert_true(loop_until(f, is_ready, &a));
        write_atomic(f, "slot.json", HANDOFF("p", "r1"));
        assert_true(loop_until(f, is_ready, &b));
        assert_true(is_unready(f, &a));
}

static void files_present_at_start_are_registered(void **state) {
        fx *f = fixture(60000, false);
        replica_ref ref = { "early", "r0" };
        char err[256];

        *state = f;
        assert_int_equal(mkdir(f->engines, 0755), 0);
        write_atomic(f, "early.json", HANDOFF("early", "r0"));
        assert_int_equal(ps_handoff_watch_new(&f->node.ctx, f->node.reg, 60000, &f->watch,
                                              err, sizeof(err)), 0);
        /* Before the loop ever ran. */
        assert_true(is_ready(f, &ref));
}

static void rescan_recovers_a_replaced_directory(void **state) {
        fx *f = fixture(100, true);
        replica_ref ref = { "p", "r0" }, later = { "later", "r0" };
        char cmd[PATH_MAX];

        *state = f;
        write_atomic(f, "p.json", HANDOFF("p", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
        /* The whole directory goes (its watch with it) and comes back. */
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->engines);
        assert_int_equal(system(cmd), 0);
        assert_true(loop_until(f, is_unready, &ref));
        mkdir(f->engines, 0755);
        write_atomic(f, "later.json", HANDOFF("later", "r0"));
        assert_true(loop_until(f, is_ready, &later));
}

static int setup_none(void **state) {
        *state = NULL;
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(atomic_file_registers_a_ready_replica, setup, teardown),
                cmocka_unit_test_setup_teardown(removing_the_file_makes_it_unready, setup, teardown),
                cmocka_unit_test_setup_teardown(moving_the_file_away_makes_it_unready, setup, teardown),
                cmocka_unit_test_setup_teardown(malformed_file_is_reported_and_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(invalid_fields_are_reported_with_the_field, setup, teardown),
                cmocka_unit_test_setup_teardown(own_files_and_temp_files_are_not_processed, setup, teardown),
                cmocka_unit_test_setup_teardown(file_renamed_to_other_ids_moves_readiness, setup, teardown),
                cmocka_unit_test_setup_teardown(files_present_at_start_are_registered, setup_none, teardown),
                cmocka_unit_test_setup_teardown(rescan_recovers_a_replaced_directory, setup_none, teardown),
        };

        return cmocka_run_group_tests_name("handoff watcher", tests, NULL, NULL);
}
