/* SPDX-License-Identifier: MIT */
/*
 * The handoff watcher against a real directory: files are written the way
 * a provisioner writes them (atomically, or in place), removed, broken and
 * replaced, and the test runs the loop until the registry shows the
 * outcome, within a generous deadline. Nothing sleeps for a fixed time.
 *
 * Handoffs from others are claims: files that are links, not root's or
 * ours, writable by others, about a pool the daemon supervises, with a
 * url that is not this node's or more slots than allowed are refused,
 * reported and counted in pool_managerd_handoff_refusals_total.
 *
 * Files as the llama-orch provisioner writes them (a "slots" count, or
 * none, and fields this reader ignores) register pools that take leases.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "pool-services/observe/status-json.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/cloud/handoff-watch.h"
#include "pool-services/pool/lease.h"
#include "pool-services/observe/metrics.h"
#include "harness.h"

typedef struct fx {
        th_node node;
        char engines[96];
        ps_handoff_watch *watch;
        ps_metrics *metrics;      /* fed every event, as the daemon's is */
} fx;

static void count_event(const ps_event *ev, void *userdata) {
        ps_metrics_observe(userdata, ev);
}

static fx *fixture(int64_t rescan_ms, bool start) {
        fx *f = calloc(1, sizeof(*f));
        char err[256];

        assert_non_null(f);
        th_node_init(&f->node, &(th_node_options) { .name = "watch", .seed = 7 });
        snprintf(f->engines, sizeof(f->engines), "%s/engines", f->node.dir);
        f->metrics = ps_metrics_new();
        assert_non_null(f->metrics);
        f->node.also = (ps_event_sink) { .fn = count_event, .userdata = f->metrics };
        if (start)
                assert_int_equal(ps_handoff_watch_new(&f->node.ctx, f->node.reg, rescan_ms, &f->watch,
                                                      err, sizeof(err)), 0);
        return f;
}

/* A watcher with options instead of the defaults. */
static fx *fixture_with(const ps_handoff_watch_options *o) {
        fx *f = fixture(0, false);
        char err[256];

        if (ps_handoff_watch_start(&f->node.ctx, f->node.reg, o, &f->watch, err, sizeof(err)) != 0)
                fail_msg("watch: %s", err);
        return f;
}

static int setup(void **state) {
        *state = fixture(60000, true);
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        if (!f)
                return 0;
        ps_handoff_watch_free(f->watch);
        th_node_clear(&f->node);
        ps_metrics_free(f->metrics);
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

#define HANDOFF_URL_SLOTS(pool, replica, url, slots) \
        "{\"pool_id\": \"" pool "\", \"replica_id\": \"" replica "\", " \
        "\"engine\": \"vllm\", \"engine_version\": \"0.6.1\", " \
        "\"url\": \"" url "\", \"slots_total\": " slots ", \"slots_free\": 6, " \
        "\"device_mask\": \"0\", \"model\": {\"id\": \"llama-3-8b\", \"path\": \"/m\"}}"
#define HANDOFF_URL(pool, replica, url) HANDOFF_URL_SLOTS(pool, replica, url, "8")
#define HANDOFF(pool, replica) HANDOFF_URL(pool, replica, "http://127.0.0.1:8000")

/* The PS_HANDOFF_IGNORED event about this file, or NULL. */
static const th_event *ignored(fx *f, const char *name) {
        for (size_t i = 0; i < f->node.events.n; i++) {
                const th_event *ev = &f->node.events.list[i];

                if (strcmp(ev->message, PS_HANDOFF_IGNORED) == 0 && ev->file &&
                    strcmp(ev->file, name) == 0)
                        return ev;
        }
        return NULL;
}

static bool is_ignored(void *fixture, const void *arg) {
        return ignored(fixture, arg) != NULL;
}

/* Runs the loop until the file is refused; its error must say want. */
static void assert_refused(fx *f, const char *name, const char *want) {
        const th_event *ev;

        if (!loop_until(f, is_ignored, name))
                fail_msg("%s was not refused", name);
        ev = ignored(f, name);
        if (want && (!ev->error || !strstr(ev->error, want)))
                fail_msg("%s refused with \"%s\", not with \"%s\"", name,
                         ev->error ? ev->error : "", want);
}

/* The node's count of refusals for reason. */
static long refusals(fx *f, const char *reason) {
        char *text = ps_metrics_render(f->metrics, NULL, NULL), prefix[128];
        const char *p;
        long n = -1;

        assert_non_null(text);
        snprintf(prefix, sizeof(prefix), "\npool_managerd_handoff_refusals_total{reason=\"%s\"} ",
                 reason);
        p = strstr(text, prefix);
        if (p)
                n = strtol(p + strlen(prefix), NULL, 10);
        free(text);
        return n;
}

typedef struct count_ref {
        const char *reason;
        long n;
} count_ref;

static bool counted(void *fixture, const void *arg) {
        const count_ref *c = arg;

        return refusals(fixture, c->reason) >= c->n;
}

/* Writes name atomically, then sets its mode. */
static void write_mode(fx *f, const char *name, const char *text, mode_t mode) {
        char path[PATH_MAX], tmp[PATH_MAX];

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", f->engines, name);
        snprintf(path, sizeof(path), "%s/%s", f->engines, name);
        th_write_file(tmp, text);
        assert_int_equal(chmod(tmp, mode), 0);
        assert_int_equal(rename(tmp, path), 0);
}

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
        assert_string_equal(json_string_value(json_object_get(snap, "url")), "http://127.0.0.1:8000");
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


/* ---- claims, not commands ------------------------------------------------ */

static void handoff_into_a_managed_pool_is_refused(void **state) {
        fx *f = *state;
        replica_ref other = { "ext", "r0" };
        ps_engine_spec *spec;
        ps_replica *managed;

        /* Configured (or preloaded): supervised by this daemon, stopped now. */
        spec = ps_engine_spec_new();
        assert_non_null(spec);
        spec->pool_id = strdup("managed");
        spec->replica_id = strdup("r0");
        spec->binary_path = strdup("/bin/true");
        spec->host = strdup("127.0.0.1");
        spec->port = 8000;
        spec->slots = 4;
        managed = th_add(&f->node, spec, NULL);
        assert_false(ps_replica_external(managed));

        /* Neither a new replica in the pool ... */
        write_atomic(f, "inject.json", HANDOFF_URL_SLOTS("managed", "r9", "http://127.0.0.1:8000", "200"));
        assert_refused(f, "inject.json", "pool managed is supervised by this daemon");
        assert_null(ps_registry_find(f->node.reg, "managed", "r9"));
        assert_null(ps_registry_replica_at(f->node.reg, "managed", 1));

        /* ... nor a take-over of its stopped replica. */
        write_atomic(f, "takeover.json", HANDOFF("managed", "r0"));
        assert_refused(f, "takeover.json", "supervised by this daemon");
        assert_false(ps_replica_ready(managed));
        assert_false(ps_replica_external(managed));

        /* Other pools still come in. */
        write_atomic(f, "ext.json", HANDOFF("ext", "r0"));
        assert_true(loop_until(f, is_ready, &other));
        assert_int_equal(refusals(f, "managed_pool"), 2);
        assert_int_equal(refusals(f, "url"), 0);
        assert_int_equal(ps_handoff_watch_tracked(f->watch), 1);
}

static void world_writable_file_is_refused_until_fixed(void **state) {
        fx *f = *state;
        replica_ref ref = { "p", "r0" };
        char path[PATH_MAX];

        write_mode(f, "p.json", HANDOFF("p", "r0"), 0666);
        assert_refused(f, "p.json", "writable by group or others (mode 0666)");
        assert_null(ps_registry_find(f->node.reg, "p", "r0"));
        assert_int_equal(refusals(f, "mode"), 1);
        /* Group-writable is no better; fixing the mode is seen at once. */
        snprintf(path, sizeof(path), "%s/p.json", f->engines);
        assert_int_equal(chmod(path, 0620), 0);
        ps_handoff_watch_rescan(f->watch);
        assert_int_equal(refusals(f, "mode"), 2);
        assert_int_equal(chmod(path, 0644), 0);
        assert_true(loop_until(f, is_ready, &ref));

        /* A file that was fine and is no longer backs nothing. */
        assert_int_equal(chmod(path, 0666), 0);
        assert_true(loop_until(f, is_unready, &ref));
        assert_int_equal(refusals(f, "mode"), 3);
}

static void file_of_another_user_is_refused(void **state) {
        fx *f = *state;
        char tmp[PATH_MAX], path[PATH_MAX];

        if (geteuid() != 0) {
                printf("# skipped: only root can give a file to uid 65534\n");
                skip();
        }
        snprintf(tmp, sizeof(tmp), "%s/.nobody.tmp", f->engines);
        snprintf(path, sizeof(path), "%s/nobody.json", f->engines);
        th_write_file(tmp, HANDOFF("nobody", "r0"));
        assert_int_equal(chmod(tmp, 0644), 0);
        assert_int_equal(chown(tmp, 65534, 65534), 0);
        assert_int_equal(rename(tmp, path), 0);
        assert_refused(f, "nobody.json", "owned by uid 65534");
        assert_null(ps_registry_find(f->node.reg, "nobody", "r0"));
        assert_int_equal(refusals(f, "owner"), 1);

        /* Root's own files are fine. */
        assert_int_equal(chown(path, 0, 0), 0);
        write_atomic(f, "root.json", HANDOFF("root", "r0"));
        assert_true(loop_until(f, is_ready, &(replica_ref) { "root", "r0" }));
        assert_true(loop_until(f, is_ready, &(replica_ref) { "nobody", "r0" }));
}

static void symlinked_file_is_refused(void **state) {
        fx *f = *state;
        char target[PATH_MAX], tmp[PATH_MAX], link[PATH_MAX];

        /* A good handoff elsewhere, linked in (atomically, so the watcher
         * hears of it at once). */
        snprintf(target, sizeof(target), "%s/elsewhere.json", f->node.dir);
        th_write_file(target, HANDOFF("linked", "r0"));
        snprintf(tmp, sizeof(tmp), "%s/.linked.tmp", f->engines);
        snprintf(link, sizeof(link), "%s/linked.json", f->engines);
        assert_int_equal(symlink(target, tmp), 0);
        assert_int_equal(rename(tmp, link), 0);
        assert_refused(f, "linked.json", "symbolic link");
        assert_null(ps_registry_find(f->node.reg, "linked", "r0"));
        assert_int_equal(refusals(f, "symlink"), 1);
}

static void remote_url_is_refused(void **state) {
        fx *f = *state;
        replica_ref ref = { "six", "r0" }, name = { "named", "r0" };

        write_atomic(f, "remote.json", HANDOFF_URL("remote", "r0", "http://10.0.0.5:8000"));
        assert_refused(f, "remote.json", "url host 10.0.0.5 is not this node");
        write_atomic(f, "name.json", HANDOFF_URL("name", "r0", "https://evil.example.com/"));
        assert_refused(f, "name.json", "evil.example.com");
        assert_null(ps_registry_find(f->node.reg, "remote", "r0"));
        assert_null(ps_registry_find(f->node.reg, "name", "r0"));
        assert_int_equal(refusals(f, "url"), 2);

        /* Loopback in any spelling is this node. */
        write_atomic(f, "six.json", HANDOFF_URL("six", "r0", "http://[::1]:8000/"));
        assert_true(loop_until(f, is_ready, &ref));
        write_atomic(f, "named.json", HANDOFF_URL("named", "r0", "https://localhost"));
        assert_true(loop_until(f, is_ready, &name));
}

static void junk_urls_are_refused(void **state) {
        fx *f = *state;
        static const struct {
                const char *name, *text;
        } junk[] = {
                { "query.json", HANDOFF_URL("j", "r0", "http://127.0.0.1:19400/health?x=") },
                { "path.json", HANDOFF_URL("j", "r1", "http://127.0.0.1:19400/v1") },
                { "user.json", HANDOFF_URL("j", "r2", "http://user@127.0.0.1:19400") },
                { "scheme.json", HANDOFF_URL("j", "r3", "ftp://127.0.0.1:19400") },
                { "port0.json", HANDOFF_URL("j", "r4", "http://127.0.0.1:0") },
                { "port.json", HANDOFF_URL("j", "r5", "http://127.0.0.1:65536") },
                { "noport.json", HANDOFF_URL("j", "r6", "http://127.0.0.1:") },
                { "nohost.json", HANDOFF_URL("j", "r7", "http://:8000") },
                { "frag.json", HANDOFF_URL("j", "r8", "http://127.0.0.1#x") },
                { "zone.json", HANDOFF_URL("j", "r9", "http://[fe80::1%25eth0]:8000") },
                { "space.json", HANDOFF_URL("j", "r10", "http://127.0.0.1:80 ") },
                { "number.json", "{\"pool_id\": \"j\", \"replica_id\": \"r11\", "
                                 "\"engine_version\": \"1\", \"url\": 8000}" },
        };
        replica_ref ok = { "j", "ok" };

        for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
                write_atomic(f, junk[i].name, junk[i].text);
        for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
                assert_refused(f, junk[i].name, "url");
        assert_int_equal(refusals(f, "url"), (long) (sizeof(junk) / sizeof(junk[0])));
        assert_false(ps_registry_has_pool(f->node.reg, "j"));

        /* A trailing '/' is all that may follow the port. */
        write_atomic(f, "ok.json", HANDOFF_URL("j", "ok", "http://127.0.0.1:19400/"));
        assert_true(loop_until(f, is_ready, &ok));
}

static void too_many_slots_are_refused_not_clamped(void **state) {
        fx *f = *state;
        replica_ref ref = { "big", "r0" };
        json_t *snap;

        write_atomic(f, "big.json", HANDOFF_URL_SLOTS("big", "r0", "http://127.0.0.1:8000", "1000"));
        assert_refused(f, "big.json", "slots_total 1000 is above handoff.max_slots 256");
        assert_null(ps_registry_find(f->node.reg, "big", "r0"));
        assert_int_equal(refusals(f, "slots"), 1);
        /* More free than total is no better. */
        write_atomic(f, "big.json", HANDOFF_URL_SLOTS("big", "r0", "http://127.0.0.1:8000", "4"));
        assert_true(loop_until(f, counted, &(count_ref) { "slots", 2 }));
        ps_handoff_watch_rescan(f->watch);
        assert_int_equal(refusals(f, "slots"), 2);
        assert_null(ps_registry_find(f->node.reg, "big", "r0"));

        write_atomic(f, "big.json", HANDOFF_URL_SLOTS("big", "r0", "http://127.0.0.1:8000", "256"));
        assert_true(loop_until(f, is_ready, &ref));
        snap = ps_registry_pool_snapshot(f->node.reg, "big");
        assert_int_equal(json_integer_value(json_object_get(snap, "slots_total")), 256);
        json_decref(snap);
}

static void max_slots_and_allow_remote_are_options(void **state) {
        fx *f = fixture_with(&(ps_handoff_watch_options) {
                .rescan_ms = 60000, .max_slots = 8, .allow_remote = true,
        });
        replica_ref ref = { "remote", "r0" };

        *state = f;
        write_atomic(f, "nine.json", HANDOFF_URL_SLOTS("nine", "r0", "http://127.0.0.1:8000", "9"));
        assert_refused(f, "nine.json", "above handoff.max_slots 8");
        write_atomic(f, "remote.json", HANDOFF_URL("remote", "r0", "http://10.0.0.5:8000"));
        assert_true(loop_until(f, is_ready, &ref));
        /* Any host, still only scheme://host[:port][/]. */
        write_atomic(f, "junk.json", HANDOFF_URL("junk", "r0", "http://10.0.0.5:8000/x"));
        assert_refused(f, "junk.json", "url");
}

static void advertised_and_own_addresses_are_this_node(void **state) {
        fx *f = fixture_with(&(ps_handoff_watch_options) {
                .rescan_ms = 60000, .address = "http://Node7.example:9000",
        });
        replica_ref adv = { "adv", "r0" }, own = { "own", "r0" };
        struct ifaddrs *ifs = NULL;
        char addr[INET_ADDRSTRLEN] = "", text[512];

        *state = f;
        write_atomic(f, "adv.json", HANDOFF_URL("adv", "r0", "http://node7.example:8000"));
        assert_true(loop_until(f, is_ready, &adv));

        /* An address of one of the node's interfaces, where there is one. */
        assert_int_equal(getifaddrs(&ifs), 0);
        for (struct ifaddrs *i = ifs; i && !addr[0]; i = i->ifa_next) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *) (void *) i->ifa_addr;

                if (sin && sin->sin_family == AF_INET && (ntohl(sin->sin_addr.s_addr) >> 24) != 127)
                        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        }
        freeifaddrs(ifs);
        if (!addr[0]) {
                printf("# skipped: no address but loopback here\n");
                skip();
        }
        snprintf(text, sizeof(text),
                 "{\"pool_id\": \"own\", \"replica_id\": \"r0\", \"engine_version\": \"1\", "
                 "\"url\": \"http://%s:8000\"}", addr);
        write_atomic(f, "own.json", text);
        assert_true(loop_until(f, is_ready, &own));
}

static void handoff_dir_is_an_option(void **state) {
        fx *f = fixture(0, false);
        char dir[PATH_MAX];
        replica_ref ref = { "elsewhere", "r0" };
        struct stat st;
        char err[256];

        *state = f;
        snprintf(dir, sizeof(dir), "%s/provisioner/handoffs", f->node.dir);
        assert_int_equal(ps_handoff_watch_start(&f->node.ctx, f->node.reg, &(ps_handoff_watch_options) {
                        .dir = dir, .rescan_ms = 60000,
                }, &f->watch, err, sizeof(err)), 0);
        /* Made private, and the default one is not made at all. */
        assert_int_equal(lstat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_false(th_file_exists(f->engines));
        assert_true(snprintf(f->engines, sizeof(f->engines), "%s", dir) < (int) sizeof(f->engines));
        write_atomic(f, "e.json", HANDOFF("elsewhere", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
}

static bool has_dir_refused(void *fixture, const void *arg) {
        fx *f = fixture;

        (void) arg;
        return th_events_find(&f->node.events, "handoff directory refused: its files are ignored");
}

static void unsafe_directory_is_refused(void **state) {
        fx *f = fixture(60000, false);
        replica_ref ref = { "p", "r0" };
        char err[512];

        *state = f;
        /* At start: the watcher does not start. */
        assert_int_equal(mkdir(f->engines, 0700), 0);
        assert_int_equal(chmod(f->engines, 0777), 0);
        assert_int_equal(ps_handoff_watch_new(&f->node.ctx, f->node.reg, 60000, &f->watch,
                                              err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "writable by group or others (mode 0777): chmod go-w"));
        assert_null(f->watch);

        /* Later: its files stop counting until it is fixed. */
        assert_int_equal(chmod(f->engines, 0700), 0);
        assert_int_equal(ps_handoff_watch_new(&f->node.ctx, f->node.reg, 60000, &f->watch,
                                              err, sizeof(err)), 0);
        write_atomic(f, "p.json", HANDOFF("p", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
        assert_int_equal(chmod(f->engines, 0777), 0);
        assert_true(loop_until(f, has_dir_refused, NULL));
        assert_true(is_unready(f, &ref));
        assert_int_equal(chmod(f->engines, 0755), 0);
        assert_true(loop_until(f, is_ready, &ref));
}

/* ---- files as the llama-orch provisioner writes them --------------------- */

/* Its writer's shape: "slots", no slots_total or slots_free, and fields a
 * reader ignores (provisioning_mode, model.path only, flags, pid). */
#define SEED_HANDOFF(pool, replica, slots_field) \
        "{\"pool_id\": \"" pool "\", \"replica_id\": \"" replica "\", " \
        "\"engine\": \"llamacpp\", \"engine_version\": \"b6000-cuda\", " \
        "\"url\": \"http://127.0.0.1:8081\", \"device_mask\": \"GPU0\", " slots_field \
        "\"provisioning_mode\": \"source\", \"model\": {\"path\": \"/models/m.gguf\"}, " \
        "\"flags\": [\"--parallel\", \"3\", \"--ctx-size\", \"4096\"], \"pid\": 4242}"

static json_int_t snap_int(fx *f, const char *pool_id, const char *key) {
        json_t *snap = ps_registry_pool_snapshot(f->node.reg, pool_id);
        json_int_t v;

        assert_non_null(snap);
        v = json_integer_value(json_object_get(snap, key));
        json_decref(snap);
        return v;
}

static void seed_file_with_slots_is_a_placeable_pool(void **state) {
        fx *f = *state;
        replica_ref ref = { "seed_pool", "r0" };
        ps_lease leases[4];
        char err[256];
        json_t *snap;

        write_atomic(f, "seed_pool.json", SEED_HANDOFF("seed_pool", "r0", "\"slots\": 3, "));
        assert_true(loop_until(f, is_ready, &ref));
        assert_false(has_event(f, PS_HANDOFF_IGNORED));
        snap = ps_registry_pool_snapshot(f->node.reg, "seed_pool");
        assert_non_null(snap);
        assert_true(json_is_true(json_object_get(snap, "ready")));
        assert_string_equal(json_string_value(json_object_get(snap, "engine")), "llamacpp");
        assert_string_equal(json_string_value(json_object_get(snap, "engine_version")), "b6000-cuda");
        assert_string_equal(json_string_value(json_object_get(snap, "device_mask")), "GPU0");
        assert_int_equal(json_integer_value(json_object_get(snap, "slots_total")), 3);
        assert_int_equal(json_integer_value(json_object_get(snap, "slots_free")), 3);
        json_decref(snap);

        /* Placeable: three leases, and the fourth finds no slot. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(ps_lease_acquire(f->node.reg, "seed_pool", 0, &leases[i],
                                                  err, sizeof(err)), 0);
        assert_string_equal(leases[0].url, "http://127.0.0.1:8081");
        assert_int_equal(snap_int(f, "seed_pool", "slots_free"), 0);
        assert_int_equal(ps_lease_acquire(f->node.reg, "seed_pool", 0, &leases[3], err, sizeof(err)),
                         PS_E_NO_SLOT);
        assert_int_equal(ps_lease_release(f->node.reg, "seed_pool", leases[0].lease_id,
                                          err, sizeof(err)), 0);
        assert_int_equal(snap_int(f, "seed_pool", "slots_free"), 1);
}

static void file_without_slots_has_one(void **state) {
        fx *f = *state;
        replica_ref ref = { "one", "r0" };
        ps_lease lease;
        char err[256];

        write_atomic(f, "one.json", SEED_HANDOFF("one", "r0", ""));
        assert_true(loop_until(f, is_ready, &ref));
        assert_int_equal(snap_int(f, "one", "slots_total"), 1);
        assert_int_equal(snap_int(f, "one", "slots_free"), 1);
        assert_int_equal(ps_lease_acquire(f->node.reg, "one", 0, &lease, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_release(f->node.reg, "one", lease.lease_id, err, sizeof(err)), 0);

        /* The file is the whole truth each time: rewritten with our own
         * fields, then with none, the slots follow it. */
        write_atomic(f, "one.json", HANDOFF("one", "r0"));
        ps_handoff_watch_rescan(f->watch);
        assert_int_equal(snap_int(f, "one", "slots_total"), 8);
        assert_int_equal(snap_int(f, "one", "slots_free"), 6);
        write_atomic(f, "one.json", SEED_HANDOFF("one", "r0", ""));
        ps_handoff_watch_rescan(f->watch);
        assert_int_equal(snap_int(f, "one", "slots_total"), 1);
        assert_int_equal(snap_int(f, "one", "slots_free"), 1);
}

static void slots_and_our_own_fields_agree(void **state) {
        fx *f = *state;
        replica_ref both = { "both", "r0" };

        /* As this daemon writes them: slots beside slots_total and slots_free. */
        write_atomic(f, "both.json", SEED_HANDOFF("both", "r0",
                     "\"slots\": 4, \"slots_total\": 4, \"slots_free\": 2, "));
        assert_true(loop_until(f, is_ready, &both));
        assert_int_equal(snap_int(f, "both", "slots_total"), 4);
        assert_int_equal(snap_int(f, "both", "slots_free"), 2);
}

static void zero_and_inconsistent_slots_are_refused(void **state) {
        fx *f = *state;
        static const struct {
                const char *name, *text, *reason, *error;
        } bad[] = {
                { "zero.json", SEED_HANDOFF("z", "r0", "\"slots\": 0, "), "invalid",
                  "handoff slots: must be between 1 and 4294967295, got 0" },
                { "zero_total.json", SEED_HANDOFF("z", "r1", "\"slots_total\": 0, "), "invalid",
                  "handoff slots_total: must be between 1" },
                { "negative.json", SEED_HANDOFF("z", "r2", "\"slots\": -1, "), "invalid",
                  "handoff slots: must be between 1" },
                { "text.json", SEED_HANDOFF("z", "r3", "\"slots\": \"4\", "), "invalid",
                  "handoff slots: must be an integer" },
                { "real.json", SEED_HANDOFF("z", "r4", "\"slots\": 2.5, "), "invalid",
                  "handoff slots: must be an integer" },
                { "disagree.json", SEED_HANDOFF("z", "r5", "\"slots\": 4, \"slots_total\": 8, "),
                  "invalid", "handoff slots: 4 disagrees with slots_total 8" },
                { "free_above_one.json", SEED_HANDOFF("z", "r6", "\"slots_free\": 2, "), "invalid",
                  "handoff slots_free: 2 is above the slot count 1" },
                { "many.json", SEED_HANDOFF("z", "r7", "\"slots\": 300, "), "slots",
                  "slots 300 is above handoff.max_slots 256" },
                { "free_above.json", SEED_HANDOFF("z", "r8", "\"slots\": 2, \"slots_free\": 3, "),
                  "slots", "slots_free 3 is above slots 2" },
        };
        long invalid = 0, slots = 0;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                write_atomic(f, bad[i].name, bad[i].text);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_refused(f, bad[i].name, bad[i].error);
                if (strcmp(bad[i].reason, "invalid") == 0)
                        invalid++;
                else
                        slots++;
        }
        assert_int_equal(refusals(f, "invalid"), invalid);
        assert_int_equal(refusals(f, "slots"), slots);
        assert_false(ps_registry_has_pool(f->node.reg, "z"));
}

static void own_handoff_dir_is_watched_by_default(void **state) {
        fx *f = fixture(0, false);
        char dir[PATH_MAX], path[PATH_MAX], err[256];
        replica_ref ref = { "ext", "r0" };
        ps_engine_spec *spec;
        ps_handoff h = { .pid = 1 };

        *state = f;
        snprintf(dir, sizeof(dir), "%s/handoffs", f->node.dir);
        f->node.ctx.handoff_dir = dir;
        assert_string_equal(ps_handoff_dir(&f->node.ctx, path, sizeof(path)), dir);
        assert_int_equal(ps_handoff_watch_new(&f->node.ctx, f->node.reg, 60000, &f->watch,
                                              err, sizeof(err)), 0);
        assert_false(th_file_exists(f->engines));
        assert_true(snprintf(f->engines, sizeof(f->engines), "%s", dir) < (int) sizeof(f->engines));

        /* Our own file goes there and is left alone; another's registers. */
        spec = ps_engine_spec_new();
        assert_non_null(spec);
        spec->pool_id = strdup("mine");
        spec->replica_id = strdup("r0");
        spec->binary_path = strdup("/opt/llama.cpp/bin/llama-server");
        spec->host = strdup("127.0.0.1");
        spec->port = 8000;
        spec->slots = 2;
        h.spec = spec;
        assert_int_equal(ps_handoff_write(ps_handoff_dir(&f->node.ctx, path, sizeof(path)), &h,
                                          err, sizeof(err)), 0);
        ps_handoff_path(dir, "mine", "r0", path, sizeof(path));
        assert_true(th_file_exists(path));
        write_atomic(f, "ext.json", HANDOFF("ext", "r0"));
        assert_true(loop_until(f, is_ready, &ref));
        assert_false(ps_registry_has_pool(f->node.reg, "mine"));
        assert_false(has_event(f, PS_HANDOFF_IGNORED));
        assert_int_equal(ps_handoff_remove(dir, "mine", "r0"), 0);
        assert_false(th_file_exists(path));
        ps_engine_spec_free(spec);
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
                cmocka_unit_test_setup_teardown(handoff_into_a_managed_pool_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(world_writable_file_is_refused_until_fixed, setup, teardown),
                cmocka_unit_test_setup_teardown(file_of_another_user_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(symlinked_file_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(remote_url_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(junk_urls_are_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(too_many_slots_are_refused_not_clamped, setup, teardown),
                cmocka_unit_test_setup_teardown(max_slots_and_allow_remote_are_options, setup_none, teardown),
                cmocka_unit_test_setup_teardown(advertised_and_own_addresses_are_this_node, setup_none, teardown),
                cmocka_unit_test_setup_teardown(handoff_dir_is_an_option, setup_none, teardown),
                cmocka_unit_test_setup_teardown(unsafe_directory_is_refused, setup_none, teardown),
                cmocka_unit_test_setup_teardown(seed_file_with_slots_is_a_placeable_pool, setup, teardown),
                cmocka_unit_test_setup_teardown(file_without_slots_has_one, setup, teardown),
                cmocka_unit_test_setup_teardown(slots_and_our_own_fields_agree, setup, teardown),
                cmocka_unit_test_setup_teardown(zero_and_inconsistent_slots_are_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(own_handoff_dir_is_watched_by_default, setup_none, teardown),
        };

        /* Files are written 0644, whatever the caller's umask. */
        umask(022);
        return cmocka_run_group_tests_name("handoff watcher", tests, NULL, NULL);
}
