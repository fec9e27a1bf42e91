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

#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "pool-services/handoff-watch.h"
#include "pool-services/probe.h"
#include "pool-services/registry.h"

#define WAIT_MS 20000
#define MAX_EVENTS 64

typedef struct fx {
        struct event_base *base;
        char dir[64];
        char engines[96];
        ps_prober *prober;
        ps_context ctx;
        ps_registry *reg;
        ps_handoff_watch *watch;
        char *messages[MAX_EVENTS];
        char *files[MAX_EVENTS];
        char *errors[MAX_EVENTS];
        size_t n_events;
} fx;

static const char *field(const ps_event *ev, const char *key) {
        for (size_t i = 0; i < ev->n_fields; i++)
                if (strcmp(ev->fields[i].key, key) == 0 && ev->fields[i].type == PS_FIELD_TYPE_STRING)
                        return ev->fields[i].str;
        return NULL;
}

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void on_event(const ps_event *ev, void *userdata) {
        fx *f = userdata;

        if (ev->type != PS_EVENT_GENERIC || f->n_events == MAX_EVENTS ||
            strncmp(ev->message, "handoff", 7) != 0)
                return;
        f->messages[f->n_events] = strdup(ev->message);
        f->files[f->n_events] = dup_or_null(field(ev, "file"));
        f->errors[f->n_events] = dup_or_null(field(ev, "error"));
        f->n_events++;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

static fx *fixture(int64_t rescan_ms, bool start) {
        fx *f = calloc(1, sizeof(*f));
        char err[256];

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/pm-watch-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->engines, sizeof(f->engines), "%s/engines", f->dir);
        f->base = event_base_new();
        f->prober = ps_prober_new(f->base);
        f->ctx = (ps_context) {
                .base = f->base,
                .sink = { .fn = on_event, .userdata = f },
                .prober = f->prober,
                .runtime_dir = f->dir,
                .seed = 7,
        };
        f->reg = ps_registry_new(&f->ctx);
        assert_non_null(f->reg);
        if (start)
                assert_int_equal(ps_handoff_watch_new(&f->ctx, f->reg, rescan_ms, &f->watch,
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
        ps_registry_free(f->reg);
        ps_prober_free(f->prober);
        event_base_free(f->base);
        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        for (size_t i = 0; i < f->n_events; i++) {
                free(f->messages[i]);
                free(f->files[i]);
                free(f->errors[i]);
        }
        free(f);
        return 0;
}

static void on_deadline(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        *(bool *) userdata = true;
}

typedef bool (*cond_fn)(fx *f, const void *arg);

static bool loop_until(fx *f, cond_fn cond, const void *arg) {
        struct timeval tv = { WAIT_MS / 1000, (WAIT_MS % 1000) * 1000 };
        bool expired = false;
        struct event *deadline = evtimer_new(f->base, on_deadline, &expired);

        evtimer_add(deadline, &tv);
        while (!cond(f, arg) && !expired)
                event_base_loop(f->base, EVLOOP_ONCE);
        event_free(deadline);
        return cond(f, arg);
}

typedef struct replica_ref {
        const char *pool_id, *replica_id;
} replica_ref;

static bool is_ready(fx *f, const void *arg) {
        const replica_ref *ref = arg;
        ps_replica *r = ps_registry_find(f->reg, ref->pool_id, ref->replica_id);

        return r && ps_replica_ready(r);
}

static bool is_unready(fx *f, const void *arg) {
        const replica_ref *ref = arg;
        ps_replica *r = ps_registry_find(f->reg, ref->pool_id, ref->replica_id);

        return r && !ps_replica_ready(r);
}

static bool has_event(fx *f, const void *arg) {
        const char *message = arg;

        for (size_t i = 0; i < f->n_events; i++)
                if (strcmp(f->messages[i], message) == 0)
                        return true;
        return false;
}

static void write_text(const char *path, const char *text) {
        FILE *fp = fopen(path, "w");

        assert_non_null(fp);
        fputs(text, fp);
        assert_int_equal(fclose(fp), 0);
}

/* As a careful provisioner does: a temp file, then rename. */
static void write_atomic(fx *f, const char *name, const char *text) {
        char tmp[PATH_MAX], path[PATH_MAX];

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", f->engines, name);
        snprintf(path, sizeof(path), "%s/%s", f->engines, name);
        write_text(tmp, text);
        assert_int_equal(rename(tmp, path), 0);
}

static void write_in_place(fx *f, const char *name, const char *text) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s", f->engines, name);
        write_text(path, text);
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
        snap = ps_registry_pool_snapshot(f->reg, "ext_pool");
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
        snprintf(to, sizeof(to), "%s/p_r0.json", f->dir);
        assert_int_equal(rename(from, to), 0);
        assert_true(loop_until(f, is_unready, &ref));
}

static void malformed_file_is_reported_and_ignored(void **state) {
        fx *f = *state;
        replica_ref ref = { "p", "r0" };
        size_t i;

        /* Half a document, as a provisioner that crashed mid-write leaves it. */
        write_in_place(f, "p_r0.json", "{\"pool_id\": \"p\", \"replica_id\": \"r0\", \"engi");
        assert_true(loop_until(f, has_event, "handoff ignored"));
        for (i = 0; i < f->n_events && strcmp(f->messages[i], "handoff ignored") != 0; i++)
                ;
        assert_string_equal(f->files[i], "p_r0.json");
        assert_non_null(strstr(f->errors[i], "malformed JSON"));
        assert_null(ps_registry_find(f->reg, "p", "r0"));

        /* A rescan does not report the same broken file again. */
        ps_handoff_watch_rescan(f->watch);
        {
                size_t n = 0;

                for (size_t j = 0; j < f->n_events; j++)
                        n += strcmp(f->messages[j], "handoff ignored") == 0;
                assert_int_equal(n, 1);
        }

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
        for (size_t i = 0; i < f->n_events; i++)
                if (strcmp(f->messages[i], "handoff ignored") == 0 &&
                    strcmp(f->files[i], "bad.json") == 0) {
                        assert_non_null(strstr(f->errors[i], "slots_total"));
                        found = true;
                }
        assert_true(found);
        assert_null(ps_registry_find(f->reg, "bad", "r0"));
        assert_int_equal(ps_registry_pool_count(f->reg), 1);
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
        assert_false(ps_registry_has_pool(f->reg, "mine"));
        assert_false(ps_registry_has_pool(f->reg, "hidden"));
        assert_false(ps_registry_has_pool(f->reg, "text"));
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
        assert_int_equal(ps_handoff_watch_new(&f->ctx, f->reg, 60000, &f->watch,
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
