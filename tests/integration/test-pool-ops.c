/* SPDX-License-Identifier: MIT */
/*
 * Leases, drain and reload end to end inside pool-services, with real
 * fake-engine processes on the event loop. Waits are bounded and event
 * driven; nothing asserts on how long something took.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <jansson.h>

#include "pool-services/observe/status-json.h"
#include "pool-services/pool/config-apply.h"
#include "pool-services/pool/drain.h"
#include "pool-services/pool/lease.h"
#include "pool-services/pool/reload.h"
#include "harness.h"

typedef struct fx {
        th_node node;
        /* drain answer */
        bool drained;
        ps_drain_outcome drain;
        char drain_text[256];
        /* reload answer */
        bool reloaded;
        int reload_rc;
        json_t *reload_result;
        /* ready replicas seen at each state change, for surge */
        bool watch_ready;
        bool lost_ready;
} fx;

/* With watch_ready set: notes a pool that an event names not being ready. */
static void watch_ready(const ps_event *ev, void *userdata) {
        fx *f = userdata;

        if (f->watch_ready && ev->pool_id && f->node.reg) {
                json_t *s = ps_registry_pool_snapshot(f->node.reg, ev->pool_id);

                if (s && !json_is_true(json_object_get(s, "ready")))
                        f->lost_ready = true;
                json_decref(s);
        }
}

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        th_node_init(&f->node, &(th_node_options) { .name = "poolops", .seed = 11 });
        f->node.also = (ps_event_sink) { .fn = watch_ready, .userdata = f };
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        th_node_stop_all(&f->node);
        th_node_clear(&f->node);
        json_decref(f->reload_result);
        free(f);
        return 0;
}

static bool run_until(fx *f, th_cond *cond, const void *arg, int64_t ms) {
        return th_loop_until(f->node.base, cond, f, arg, ms);
}

static bool port_free(uint16_t port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons(port) };
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        bool ok;

        assert_true(fd >= 0);
        ok = bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
        close(fd);
        return ok;
}

/* A port whose neighbour is free too (a surge engine goes to port + 1),
 * below the ephemeral range so probe connections do not take it. */
static uint16_t free_port_pair(void) {
        static unsigned seed;

        if (!seed)
                seed = (unsigned) getpid();
        for (int tries = 0; tries < 1000; tries++) {
                uint16_t port = (uint16_t) (20000 + rand_r(&seed) % 10000);

                if (port_free(port) && port_free((uint16_t) (port + 1)))
                        return port;
        }
        fail_msg("no pair of free ports");
        return 0;
}

/* The harness's short timings, with room for a probe (500 ms) and a stop
 * (1 s), changed further by json. */
static ps_policy *fast_policy(const char *json) {
        ps_policy *p = th_policy("{\"health\": {\"timeout_ms\": 500}, \"stop_grace_ms\": 1000}");

        th_policy_apply(p, json);
        return p;
}

static ps_replica *add(fx *f, ps_engine_spec *spec, const char *policy_json) {
        return th_add(&f->node, spec, fast_policy(policy_json));
}

static void preload(fx *f, ps_replica *r) {
        th_preload(&f->node, r);
        assert_true(f->node.done_ok);
        assert_true(ps_replica_ready(r));
}

/* One ready replica r0 of `pool` with `slots` slots. */
static ps_replica *ready_pool(fx *f, const char *pool, uint32_t slots, const char *policy_json) {
        ps_replica *r = add(f, th_fake_spec(pool, "r0", 0, slots, NULL), policy_json);

        preload(f, r);
        return r;
}

static json_t *pool_snap(fx *f, const char *pool) {
        json_t *s = ps_registry_pool_snapshot(f->node.reg, pool);

        assert_non_null(s);
        return s;
}

static json_int_t pool_int(fx *f, const char *pool, const char *key) {
        json_t *s = pool_snap(f, pool);
        json_int_t v = json_integer_value(json_object_get(s, key));

        json_decref(s);
        return v;
}

/* ---- leases ---------------------------------------------------------------- */

static void test_lease_invariants_under_many_operations(void **state) {
        fx *f = *state;
        ps_replica *r0 = add(f, th_fake_spec("multi", "r0", 0, 3, NULL), NULL);
        ps_replica *r1 = add(f, th_fake_spec("multi", "r1", 0, 3, NULL), NULL);
        enum { HELD_MAX = 6, ROUNDS = 3000, IDS_MAX = ROUNDS + HELD_MAX };
        static char ids[IDS_MAX][PS_LEASE_ID_LEN + 1];
        char held[HELD_MAX][PS_LEASE_ID_LEN + 1], err[256];
        size_t n_held = 0, n_ids = 0;
        unsigned seed = 42;
        ps_lease l;
        int rc;

        preload(f, r0);
        preload(f, r1);

        /* least loaded first: six leases spread three and three */
        for (int i = 0; i < HELD_MAX; i++) {
                assert_int_equal(ps_lease_acquire(f->node.reg, "multi", 0, &l, err, sizeof(err)), 0);
                assert_int_equal(strlen(l.lease_id), PS_LEASE_ID_LEN);
                assert_true(l.expires_at > 0);
                assert_non_null(strstr(l.url, "http://127.0.0.1:"));
                memcpy(held[n_held++], l.lease_id, sizeof(l.lease_id));
                memcpy(ids[n_ids++], l.lease_id, sizeof(l.lease_id));
        }
        assert_int_equal(pool_int(f, "multi", "active_leases"), 6);
        assert_int_equal(pool_int(f, "multi", "slots_free"), 0);
        rc = ps_lease_acquire(f->node.reg, "multi", 0, &l, err, sizeof(err));
        assert_int_equal(rc, PS_E_NO_SLOT);
        assert_non_null(strstr(err, "no free slot"));
        assert_non_null(strstr(err, "6 of 6"));

        /* random acquire and release; the books always balance */
        for (int round = 0; round < ROUNDS; round++) {
                bool take = n_held == 0 || (n_held < HELD_MAX && rand_r(&seed) % 2);

                if (take) {
                        assert_int_equal(ps_lease_acquire(f->node.reg, "multi", 0, &l, err, sizeof(err)), 0);
                        for (size_t i = 0; i < n_ids; i++)
                                assert_string_not_equal(ids[i], l.lease_id);
                        memcpy(ids[n_ids++], l.lease_id, sizeof(l.lease_id));
                        memcpy(held[n_held++], l.lease_id, sizeof(l.lease_id));
                } else {
                        size_t k = (size_t) rand_r(&seed) % n_held;
                        char gone[PS_LEASE_ID_LEN + 1];

                        memcpy(gone, held[k], sizeof(gone));
                        assert_int_equal(ps_lease_release(f->node.reg, "multi", gone, err, sizeof(err)), 0);
                        memcpy(held[k], held[--n_held], sizeof(held[k]));
                        /* a second release of the same lease changes nothing */
                        assert_int_equal(ps_lease_release(f->node.reg, "multi", gone, err, sizeof(err)),
                                         PS_E_NOT_FOUND);
                        assert_non_null(strstr(err, "not found"));
                }
                assert_int_equal(ps_registry_active_leases(f->node.reg, "multi"), n_held);
                if (round % 100 == 0) {
                        assert_int_equal(pool_int(f, "multi", "slots_free"), HELD_MAX - (json_int_t) n_held);
                        assert_true(pool_int(f, "multi", "active_leases") <= 6);
                }
        }
        assert_int_equal(ps_registry_lease_count(f->node.reg), n_held);
        while (n_held > 0)
                assert_int_equal(ps_lease_release(f->node.reg, "multi", held[--n_held], NULL, 0), 0);
        assert_int_equal(pool_int(f, "multi", "active_leases"), 0);
        assert_int_equal(pool_int(f, "multi", "slots_free"), 6);
}

static void test_lease_refusals_say_why(void **state) {
        fx *f = *state;
        ps_replica *idle = add(f, th_fake_spec("idle", "r0", 0, 1, NULL), NULL);
        char err[256];
        ps_lease l, other;

        (void) idle;
        assert_int_equal(ps_lease_acquire(f->node.reg, "nope", 0, &l, err, sizeof(err)), PS_E_NOT_FOUND);
        assert_string_equal(err, "pool nope not found");
        assert_int_equal(ps_lease_acquire(f->node.reg, "idle", 0, &l, err, sizeof(err)), PS_E_NOT_READY);
        assert_string_equal(err, "pool idle is not ready");

        ready_pool(f, "one", 1, NULL);
        assert_int_equal(ps_lease_acquire(f->node.reg, "one", -5, &l, err, sizeof(err)), PS_E_INVALID);
        assert_int_equal(ps_lease_acquire(f->node.reg, "one", 0, &l, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_acquire(f->node.reg, "one", 0, &other, err, sizeof(err)), PS_E_NO_SLOT);
        /* a lease belongs to its pool; ids that are not ours are unknown */
        assert_int_equal(ps_lease_release(f->node.reg, "idle", l.lease_id, err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_lease_release(f->node.reg, "one", "0123", err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_lease_release(f->node.reg, "one", "", err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_lease_renew(f->node.reg, "one", "ffffffffffffffffffffffffffffffff", 0, NULL,
                                        err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_lease_release(f->node.reg, "nope", l.lease_id, err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_lease_release(f->node.reg, "one", l.lease_id, err, sizeof(err)), 0);
        assert_int_equal(pool_int(f, "one", "active_leases"), 0);
}

static bool no_leases(void *fixture, const void *arg) {
        fx *f = fixture;
        return ps_registry_active_leases(f->node.reg, (const char *) arg) == 0;
}

static void test_lease_expiry_and_renewal(void **state) {
        fx *f = *state;
        ps_lease l, renewed, kept;
        char err[256];

        ready_pool(f, "ttl", 2, "{\"lease_ttl_ms\": 300}");
        assert_int_equal(ps_lease_acquire(f->node.reg, "ttl", 0, &l, err, sizeof(err)), 0);
        assert_int_equal(pool_int(f, "ttl", "active_leases"), 1);
        run_until(f, no_leases, (void *) "ttl", TH_WAIT_MS);
        assert_int_equal(pool_int(f, "ttl", "active_leases"), 0);
        assert_int_equal(pool_int(f, "ttl", "slots_free"), 2);
        assert_int_equal(th_node_seen(&f->node, "lease expired"), 1);
        assert_int_equal(ps_lease_release(f->node.reg, "ttl", l.lease_id, err, sizeof(err)), PS_E_NOT_FOUND);

        /* renewing pushes the expiry out; the lease outlives its first TTL */
        assert_int_equal(ps_lease_acquire(f->node.reg, "ttl", 0, &kept, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_renew(f->node.reg, "ttl", kept.lease_id, 60000, &renewed, err, sizeof(err)), 0);
        assert_string_equal(renewed.lease_id, kept.lease_id);
        assert_true(renewed.expires_at >= kept.expires_at + 50000);
        th_loop_for(f->node.base, 800);
        assert_int_equal(pool_int(f, "ttl", "active_leases"), 1);
        assert_int_equal(ps_lease_release(f->node.reg, "ttl", kept.lease_id, err, sizeof(err)), 0);
        assert_int_equal(th_node_seen(&f->node, "lease expired"), 1);
}

/* ---- drain ------------------------------------------------------------------- */

static void on_drained(const char *pool_id, const ps_drain_outcome *o, void *userdata) {
        fx *f = userdata;

        (void) pool_id;
        f->drained = true;
        f->drain = *o;
        snprintf(f->drain_text, sizeof(f->drain_text), "%s", o->message);
        f->drain.message = f->drain_text;
}

static bool drain_answered(void *fixture, const void *arg) {
        fx *f = fixture;
        (void) arg;
        return f->drained;
}

static void test_drain_waits_for_leases_then_stops(void **state) {
        fx *f = *state;
        ps_replica *r = ready_pool(f, "dr", 2, NULL);
        ps_drain_info info, again;
        char err[256], path[PATH_MAX];
        ps_lease a, b, c;

        assert_int_equal(ps_lease_acquire(f->node.reg, "dr", 0, &a, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_acquire(f->node.reg, "dr", 0, &b, err, sizeof(err)), 0);
        assert_int_equal(ps_pool_drain(f->node.reg, "dr", 10000, on_drained, f, &info, err, sizeof(err)), 0);
        assert_false(info.already_running);
        assert_int_equal(info.active_leases, 2);
        assert_true(info.deadline_at >= info.started_at + 10000);
        assert_int_equal(th_node_seen(&f->node, "draining: no new leases"), 1);
        assert_true(ps_pool_draining(f->node.reg, "dr"));
        assert_true(ps_replica_draining(r));
        assert_false(ps_replica_ready(r));

        /* draining at once: no new lease, and a second drain is the same one */
        assert_int_equal(ps_lease_acquire(f->node.reg, "dr", 0, &c, err, sizeof(err)), PS_E_DRAINING);
        assert_string_equal(err, "pool dr is draining");
        assert_int_equal(ps_pool_drain(f->node.reg, "dr", 5, NULL, NULL, &again, err, sizeof(err)), 0);
        assert_true(again.already_running);
        assert_int_equal(again.deadline_at, info.deadline_at);

        /* leases still end; the engine stops only when the last one does */
        assert_int_equal(ps_lease_release(f->node.reg, "dr", a.lease_id, err, sizeof(err)), 0);
        th_loop_for(f->node.base, 300);
        assert_false(f->drained);
        assert_true(ps_replica_live(r));
        assert_int_equal(ps_lease_renew(f->node.reg, "dr", b.lease_id, 0, NULL, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_release(f->node.reg, "dr", b.lease_id, err, sizeof(err)), 0);
        run_until(f, drain_answered, NULL, TH_WAIT_MS);
        assert_true(f->drained);
        assert_true(f->drain.ok);
        assert_false(f->drain.force_stopped);
        assert_int_equal(f->drain.leases_left, 0);
        assert_string_equal(f->drain.message, "drained: engine stopped");

        assert_string_equal(ps_replica_state(r), "stopped");
        assert_false(ps_replica_live(r));
        assert_false(ps_replica_ready(r));
        assert_int_equal(ps_replica_pid(r), 0);
        snprintf(path, sizeof(path), "%s/dr_r0.pid", f->node.dir);
        assert_false(th_file_exists(path));
        snprintf(path, sizeof(path), "%s/engines/dr_r0.json", f->node.dir);
        assert_false(th_file_exists(path));
        assert_false(ps_pool_draining(f->node.reg, "dr"));

        /* a stopped pool has nothing to drain, and can be forgotten */
        assert_int_equal(ps_pool_drain(f->node.reg, "dr", 1000, NULL, NULL, NULL, err, sizeof(err)), PS_E_CONFLICT);
        assert_string_equal(err, "pool dr is not running");
        assert_int_equal(ps_lease_acquire(f->node.reg, "dr", 0, &c, err, sizeof(err)), PS_E_NOT_READY);
        assert_int_equal(ps_registry_remove_pool(f->node.reg, "dr", err, sizeof(err)), 0);
        assert_int_equal(ps_pool_drain(f->node.reg, "dr", 1000, NULL, NULL, NULL, err, sizeof(err)), PS_E_NOT_FOUND);
}

static void test_drain_without_leases_is_immediate(void **state) {
        fx *f = *state;
        ps_replica *r = ready_pool(f, "empty", 1, NULL);
        char err[256];

        assert_int_equal(ps_pool_drain(f->node.reg, "empty", -1, on_drained, f, NULL, err, sizeof(err)),
                         PS_E_INVALID);
        assert_int_equal(ps_pool_drain(f->node.reg, "empty", 60000, on_drained, f, NULL, err, sizeof(err)), 0);
        assert_false(f->drained);   /* never answered from inside the call */
        run_until(f, drain_answered, NULL, TH_WAIT_MS);
        assert_true(f->drain.ok);
        assert_false(f->drain.force_stopped);
        assert_string_equal(ps_replica_state(r), "stopped");
}

static void test_drain_deadline_force_stops(void **state) {
        fx *f = *state;
        ps_replica *r = ready_pool(f, "stuck", 3, NULL);
        char err[256];
        ps_lease a, b;

        assert_int_equal(ps_lease_acquire(f->node.reg, "stuck", 0, &a, err, sizeof(err)), 0);
        assert_int_equal(ps_lease_acquire(f->node.reg, "stuck", 0, &b, err, sizeof(err)), 0);
        assert_int_equal(ps_pool_drain(f->node.reg, "stuck", 300, on_drained, f, NULL, err, sizeof(err)), 0);
        run_until(f, drain_answered, NULL, TH_WAIT_MS);
        assert_true(f->drained);
        assert_true(f->drain.ok);
        assert_true(f->drain.force_stopped);
        assert_int_equal(f->drain.leases_left, 2);
        assert_non_null(strstr(f->drain.message, "force-stopped with 2 leases left"));
        assert_string_equal(ps_replica_state(r), "stopped");
        assert_false(ps_replica_live(r));
        /* the leases ended with the engine */
        assert_int_equal(ps_registry_active_leases(f->node.reg, "stuck"), 0);
        assert_int_equal(ps_lease_release(f->node.reg, "stuck", a.lease_id, err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_registry_lease_count(f->node.reg), 0);
}

/* ---- reload ------------------------------------------------------------------ */

/* sha256("abc") */
#define ABC_SHA256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

/* A ready pool whose engine runs `-m <dir>/model-a.gguf`; model-b.gguf
 * (content "abc") lies beside it. */
static ps_replica *model_pool(fx *f, const char *pool, const char *policy_json, const char *extra) {
        char a[PATH_MAX], b[PATH_MAX];
        ps_engine_spec *s;
        ps_replica *r;

        snprintf(a, sizeof(a), "%s/model-a.gguf", f->node.dir);
        snprintf(b, sizeof(b), "%s/model-b.gguf", f->node.dir);
        th_write_file(a, "model a");
        th_write_file(b, "abc");
        s = th_fake_spec(pool, "r0", free_port_pair(), 2, "-m", a, extra, NULL);
        free(s->model_path);
        s->model_path = strdup(a);
        free(s->model_id);
        s->model_id = strdup("model-a.gguf");
        /* a literal argv, as an API preload has it: --port and -m become
         * variables, so a reload or a surge can change them */
        assert_int_equal(ps_engine_spec_set_argv(s, (const char *const *) s->flags, s->n_flags), 0);
        r = add(f, s, policy_json);
        preload(f, r);
        return r;
}

static void on_reloaded(int rc, const char *message, const json_t *result, void *userdata) {
        fx *f = userdata;

        (void) message;
        f->reloaded = true;
        f->reload_rc = rc;
        json_decref(f->reload_result);
        f->reload_result = json_deep_copy(result);
}

static bool reload_answered(void *fixture, const void *arg) {
        fx *f = fixture;
        (void) arg;
        return f->reloaded;
}

static const char *result_str(fx *f, const char *key) {
        return json_string_value(json_object_get(f->reload_result, key));
}

static void reload(fx *f, const char *pool, const ps_reload_request *req) {
        char err[256];

        f->reloaded = false;
        if (ps_pool_reload(f->node.reg, pool, req, on_reloaded, f, err, sizeof(err)) != 0)
                fail_msg("reload: %s", err);
        assert_false(f->reloaded);   /* never answered from inside the call */
}

static void model_b(fx *f, char *path, size_t len) {
        snprintf(path, len, "%s/model-b.gguf", f->node.dir);
}

/* The registry freed under a reload still waiting (a daemon leaving its
 * engines running): the caller is answered, not left waiting. */
static void test_reload_answered_when_the_registry_goes(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "gone", NULL, NULL);
        ps_reload_request req = { .engine_version = "b7000", .drain_deadline_ms = 60000 };
        char b[PATH_MAX], err[256];
        int pid = ps_replica_pid(r);
        ps_lease held;

        model_b(f, b, sizeof(b));
        req.model_path = b;
        assert_int_equal(ps_lease_acquire(f->node.reg, "gone", 0, &held, err, sizeof(err)), 0);
        reload(f, "gone", &req);
        th_loop_for(f->node.base, 100);
        assert_false(f->reloaded);

        f->node.reg = ps_registry_free(f->node.reg);
        assert_true(f->reloaded);
        assert_int_equal(f->reload_rc, PS_E_CONFLICT);
        assert_null(f->reload_result);

        /* freeing leaves engines running (for adoption): end this one */
        assert_true(pid > 0);
        kill(-pid, SIGKILL);
        f->node.reg = ps_registry_new(&f->node.ctx);
        assert_non_null(f->node.reg);
}

static void test_reload_drain_first_swaps_the_model(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "rl", NULL, NULL);
        char b[PATH_MAX], path[PATH_MAX], err[256], *text;
        ps_reload_request req = { .engine_version = "b7000", .drain_deadline_ms = 15000 };
        int old_pid = ps_replica_pid(r);
        ps_lease held, refused;
        json_t *s;

        model_b(f, b, sizeof(b));
        req.model_path = b;
        assert_int_equal(ps_lease_acquire(f->node.reg, "rl", 0, &held, err, sizeof(err)), 0);
        reload(f, "rl", &req);
        assert_true(ps_pool_reloading(f->node.reg, "rl"));
        assert_int_equal(ps_pool_reload(f->node.reg, "rl", &req, on_reloaded, f, err, sizeof(err)), PS_E_CONFLICT);
        assert_int_equal(ps_pool_drain(f->node.reg, "rl", 1000, NULL, NULL, NULL, err, sizeof(err)), PS_E_CONFLICT);

        /* the old engine drains its lease first: no new one meanwhile */
        th_loop_for(f->node.base, 300);
        assert_false(f->reloaded);
        assert_int_equal(ps_replica_pid(r), old_pid);
        assert_int_equal(ps_lease_acquire(f->node.reg, "rl", 0, &refused, err, sizeof(err)), PS_E_DRAINING);
        assert_int_equal(ps_lease_release(f->node.reg, "rl", held.lease_id, err, sizeof(err)), 0);

        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_true(f->reloaded);
        assert_int_equal(f->reload_rc, 0);
        assert_true(json_is_true(json_object_get(f->reload_result, "ok")));
        assert_false(json_is_true(json_object_get(f->reload_result, "noop")));
        assert_string_equal(result_str(f, "strategy"), "drain-first");
        assert_string_equal(result_str(f, "model_id"), "model-b.gguf");
        assert_string_equal(result_str(f, "engine_version"), "b7000");
        assert_string_equal(json_string_value(json_object_get(json_object_get(f->reload_result, "previous"),
                                                              "model_id")), "model-a.gguf");
        assert_false(ps_pool_reloading(f->node.reg, "rl"));

        /* ready on the new engine; ids and mask kept; handoff rewritten */
        assert_true(ps_replica_ready(r));
        assert_true(ps_replica_pid(r) > 0);
        assert_int_not_equal(ps_replica_pid(r), old_pid);
        s = ps_replica_snapshot(r);
        assert_string_equal(json_string_value(json_object_get(s, "model_id")), "model-b.gguf");
        assert_string_equal(json_string_value(json_object_get(s, "engine_version")), "b7000");
        assert_string_equal(json_string_value(json_object_get(s, "replica_id")), "r0");
        assert_string_equal(json_string_value(json_object_get(s, "device_mask")), "0");
        json_decref(s);
        snprintf(path, sizeof(path), "%s/engines/rl_r0.json", f->node.dir);
        text = th_slurp(path, NULL);
        assert_non_null(strstr(text, "model-b.gguf"));
        assert_non_null(strstr(text, "b7000"));
        free(text);
        assert_int_equal(ps_lease_acquire(f->node.reg, "rl", 0, &held, err, sizeof(err)), 0);
}

static void test_reload_rolls_back_when_the_new_engine_never_gets_ready(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "rb", "{\"health\": {\"startup_timeout_ms\": 1500}}", NULL);
        const char *flags[] = { "--port", "{port}", "-m", "{model_path}", "--never-ready" };
        char b[PATH_MAX], err[256];
        ps_reload_request req = { .engine_version = "b7000", .flags = flags, .n_flags = 5 };
        int old_pid = ps_replica_pid(r);
        ps_lease l;
        json_t *s;

        model_b(f, b, sizeof(b));
        req.model_path = b;
        reload(f, "rb", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_true(f->reloaded);
        assert_int_equal(f->reload_rc, PS_E_RELOAD_FAILED);
        assert_string_equal(result_str(f, "reason"), "health");
        assert_non_null(strstr(result_str(f, "error"), "startup timeout"));
        assert_non_null(strstr(result_str(f, "error"), "rolled back"));

        /* the old model serves again, from a restarted engine */
        assert_true(ps_replica_ready(r));
        assert_int_not_equal(ps_replica_pid(r), old_pid);
        s = ps_replica_snapshot(r);
        assert_string_equal(json_string_value(json_object_get(s, "model_id")), "model-a.gguf");
        assert_string_equal(json_string_value(json_object_get(s, "engine_version")), "b6000");
        assert_string_equal(json_string_value(json_object_get(s, "state")), "ready");
        /* a reload failure is not an engine crash */
        assert_int_equal(json_integer_value(json_object_get(s, "crash_count")), 0);
        json_decref(s);
        assert_int_equal(ps_lease_acquire(f->node.reg, "rb", 0, &l, err, sizeof(err)), 0);
}

static void test_reload_drain_timeout_leaves_the_engine_alone(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "dt", NULL, NULL);
        char b[PATH_MAX], err[256];
        ps_reload_request req = { .drain_deadline_ms = 300 };
        int old_pid = ps_replica_pid(r);
        ps_lease held;

        model_b(f, b, sizeof(b));
        req.model_path = b;
        assert_int_equal(ps_lease_acquire(f->node.reg, "dt", 0, &held, err, sizeof(err)), 0);
        reload(f, "dt", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, PS_E_DRAIN_TIMEOUT);
        assert_string_equal(result_str(f, "reason"), "drain_timeout");
        assert_non_null(strstr(result_str(f, "error"), "drain timeout"));
        /* nothing was stopped: same engine, same model, lease still held */
        assert_int_equal(ps_replica_pid(r), old_pid);
        assert_true(ps_replica_ready(r));
        assert_string_equal(result_str(f, "model_id"), "model-a.gguf");
        assert_int_equal(ps_registry_active_leases(f->node.reg, "dt"), 1);
        assert_int_equal(ps_lease_release(f->node.reg, "dt", held.lease_id, err, sizeof(err)), 0);
}

static void test_reload_to_the_running_model_is_a_noop(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "same", NULL, NULL);
        char a[PATH_MAX];
        ps_reload_request req = { .engine_version = "b6000" };
        int old_pid = ps_replica_pid(r);
        size_t spawns = th_node_seen(&f->node, "engine spawned");

        snprintf(a, sizeof(a), "%s/model-a.gguf", f->node.dir);
        req.model_path = a;
        reload(f, "same", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        assert_true(json_is_true(json_object_get(f->reload_result, "noop")));
        assert_int_equal(ps_replica_pid(r), old_pid);
        assert_int_equal(th_node_seen(&f->node, "engine spawned"), spawns);
        assert_true(ps_replica_ready(r));
}

static bool engine_gone(void *fixture, const void *arg) {
        (void) fixture;
        return kill(*(const int *) arg, 0) != 0;
}

static void test_reload_surge_stays_ready(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "sg", NULL, NULL);
        char b[PATH_MAX], err[256], old_url[300];
        ps_reload_request req = { .strategy = PS_RELOAD_SURGE, .drain_deadline_ms = 15000 };
        int old_pid = ps_replica_pid(r);
        ps_lease old_lease, new_lease;
        json_t *s;

        model_b(f, b, sizeof(b));
        req.model_path = b;
        assert_int_equal(ps_lease_acquire(f->node.reg, "sg", 0, &old_lease, err, sizeof(err)), 0);
        snprintf(old_url, sizeof(old_url), "%s", old_lease.url);
        f->watch_ready = true;
        f->lost_ready = false;
        reload(f, "sg", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        assert_string_equal(result_str(f, "strategy"), "surge");
        assert_string_equal(result_str(f, "model_id"), "model-b.gguf");

        /* the new engine serves on the spare port and takes the new leases;
         * the old one still runs for the lease it holds */
        assert_true(ps_replica_ready(r));
        assert_int_not_equal(ps_replica_pid(r), old_pid);
        assert_int_equal(kill(old_pid, 0), 0);
        assert_int_equal(ps_lease_acquire(f->node.reg, "sg", 0, &new_lease, err, sizeof(err)), 0);
        assert_string_not_equal(new_lease.url, old_url);
        assert_int_equal(ps_registry_active_leases(f->node.reg, "sg"), 2);

        /* its last lease ends: the old engine goes, the pool stays ready */
        assert_int_equal(ps_lease_release(f->node.reg, "sg", old_lease.lease_id, err, sizeof(err)), 0);
        run_until(f, engine_gone, &old_pid, TH_WAIT_MS);
        assert_int_not_equal(kill(old_pid, 0), 0);
        th_loop_for(f->node.base, 100);
        assert_false(f->lost_ready);
        f->watch_ready = false;
        s = ps_replica_snapshot(r);
        assert_string_equal(json_string_value(json_object_get(s, "state")), "ready");
        assert_int_equal(json_integer_value(json_object_get(s, "active_leases")), 1);
        json_decref(s);
        assert_int_equal(ps_lease_release(f->node.reg, "sg", new_lease.lease_id, err, sizeof(err)), 0);

        /* and a second surge goes back to the home port */
        snprintf(b, sizeof(b), "%s/model-a.gguf", f->node.dir);
        req.model_path = b;
        reload(f, "sg", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        assert_int_equal(ps_lease_acquire(f->node.reg, "sg", 0, &new_lease, err, sizeof(err)), 0);
        assert_string_equal(new_lease.url, old_url);
}

/* A preflight that finds no room for a second engine of pool "nr". */
static int no_room_for_two(const ps_engine_spec *spec, void *userdata, char *err, size_t errlen) {
        fx *f = userdata;
        ps_replica *r = ps_registry_find(f->node.reg, spec->pool_id, spec->replica_id);

        if (strcmp(spec->pool_id, "nr") == 0 && r && ps_replica_pid(r) > 0) {
                snprintf(err, errlen, "insufficient VRAM: need 9.1 GiB, free 7.8 GiB on GPU0");
                return PS_E_PREFLIGHT;
        }
        return 0;
}

static void test_reload_surge_without_room_runs_drain_first(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "nr", NULL, NULL);
        ps_reload_request req = { .strategy = PS_RELOAD_SURGE, .drain_deadline_ms = 15000 };
        int old_pid = ps_replica_pid(r);
        char b[PATH_MAX];

        f->node.ctx.preflight = no_room_for_two;
        f->node.ctx.preflight_userdata = f;
        model_b(f, b, sizeof(b));
        req.model_path = b;
        reload(f, "nr", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        f->node.ctx.preflight = NULL;
        assert_int_equal(f->reload_rc, 0);
        assert_string_equal(result_str(f, "strategy"), "drain-first");
        assert_non_null(strstr(result_str(f, "surge_fallback"), "no room for both engines"));
        assert_non_null(strstr(result_str(f, "surge_fallback"), "insufficient VRAM"));
        assert_string_equal(result_str(f, "model_id"), "model-b.gguf");
        assert_true(ps_replica_ready(r));
        assert_int_not_equal(ps_replica_pid(r), old_pid);
        assert_int_equal(th_events_seen(&f->node.events, "surge reload runs drain-first"), 1);
}

/* Whether the running engine's command line has `flag value` in it. */
static bool cmdline_has(int pid, const char *flag, const char *value) {
        char path[64], *text;
        size_t len;
        bool found = false;

        snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
        text = th_slurp(path, &len);
        assert_non_null(text);
        for (size_t at = 0; at < len && !found; at += strlen(text + at) + 1) {
                size_t next = at + strlen(text + at) + 1;

                found = strcmp(text + at, flag) == 0 && next < len && strcmp(text + next, value) == 0;
        }
        free(text);
        return found;
}

/* A surge moves the port variable and nothing else: an argument that
 * equals the port, or spells a placeholder, is passed on as it was. */
static void test_reload_surge_keeps_arguments_equal_to_the_port(void **state) {
        fx *f = *state;
        uint16_t port = free_port_pair();
        char a[PATH_MAX], b[PATH_MAX], home[16], spare[16];
        ps_reload_request req = { .strategy = PS_RELOAD_SURGE, .drain_deadline_ms = 15000 };
        ps_engine_spec *s;
        ps_replica *r;
        int old_pid;

        snprintf(a, sizeof(a), "%s/model-a.gguf", f->node.dir);
        th_write_file(a, "model a");
        model_b(f, b, sizeof(b));
        th_write_file(b, "abc");
        snprintf(home, sizeof(home), "%u", (unsigned) port);
        snprintf(spare, sizeof(spare), "%u", (unsigned) port + 1);
        s = th_fake_spec("cs", "r0", port, 2, "--ctx-size", home, "-m", a, "--alias", "{port}{{",
                         NULL);
        free(s->model_path);
        s->model_path = strdup(a);
        assert_int_equal(ps_engine_spec_set_argv(s, (const char *const *) s->flags, s->n_flags), 0);
        r = add(f, s, NULL);
        preload(f, r);
        old_pid = ps_replica_pid(r);
        assert_true(cmdline_has(old_pid, "--port", home));
        assert_true(cmdline_has(old_pid, "--ctx-size", home));
        assert_true(cmdline_has(old_pid, "--alias", "{port}{{"));

        req.model_path = b;
        reload(f, "cs", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        assert_string_equal(result_str(f, "strategy"), "surge");
        assert_null(result_str(f, "surge_fallback"));
        assert_int_not_equal(ps_replica_pid(r), old_pid);
        assert_true(cmdline_has(ps_replica_pid(r), "--port", spare));
        assert_true(cmdline_has(ps_replica_pid(r), "--ctx-size", home));
        assert_true(cmdline_has(ps_replica_pid(r), "-m", b));
        assert_true(cmdline_has(ps_replica_pid(r), "--alias", "{port}{{"));
}

/* An engine whose arguments do not take its port cannot be moved to the
 * spare one: the surge runs drain-first and the answer says why. */
static void test_reload_surge_without_a_port_variable_runs_drain_first(void **state) {
        fx *f = *state;
        uint16_t port = free_port_pair();
        char a[PATH_MAX], b[PATH_MAX], padded[16], err[512];
        const char *bad[] = { "--port", "{port}", "--alias", "{{x}}", "{nope}" };
        ps_reload_request req = { .strategy = PS_RELOAD_SURGE, .drain_deadline_ms = 15000 };
        ps_engine_spec *s;
        ps_replica *r;
        int old_pid;

        snprintf(a, sizeof(a), "%s/model-a.gguf", f->node.dir);
        th_write_file(a, "model a");
        model_b(f, b, sizeof(b));
        th_write_file(b, "abc");
        /* "--port 0<port>": the engine's port, but not the spec's "<port>" */
        snprintf(padded, sizeof(padded), "0%u", (unsigned) port);
        s = th_fake_spec("np", "r0", port, 2, NULL);
        free(s->model_path);
        s->model_path = strdup(a);
        assert_int_equal(ps_engine_spec_set_argv(s, (const char *const[]) { "--port", padded, "-m", a },
                                                 4), 0);
        assert_false(ps_engine_spec_takes_port(s));
        r = add(f, s, NULL);
        preload(f, r);
        old_pid = ps_replica_pid(r);

        req.model_path = b;
        reload(f, "np", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        assert_string_equal(result_str(f, "strategy"), "drain-first");
        assert_non_null(strstr(result_str(f, "surge_fallback"), "no port variable"));
        assert_non_null(strstr(result_str(f, "surge_fallback"), padded + 1));
        assert_int_equal(th_events_seen(&f->node.events, "surge reload runs drain-first"), 1);
        assert_true(ps_replica_ready(r));
        assert_int_not_equal(ps_replica_pid(r), old_pid);
        assert_true(cmdline_has(ps_replica_pid(r), "--port", padded));
        assert_true(cmdline_has(ps_replica_pid(r), "-m", b));

        /* flags given with the reload are templates: checked at once */
        req.flags = bad;
        req.n_flags = 5;
        assert_int_equal(ps_pool_reload(f->node.reg, "np", &req, on_reloaded, f, err, sizeof(err)),
                         PS_E_INVALID);
        assert_non_null(strstr(err, "flags[4]: unknown placeholder {nope}"));
}

static void test_reload_verifies_sha256_before_touching_anything(void **state) {
        fx *f = *state;
        ps_replica *r = model_pool(f, "sha", NULL, NULL);
        char b[PATH_MAX], missing[PATH_MAX], err[256];
        ps_reload_request req = { .sha256 = "sha256:0000000000000000000000000000000000000000000000000000000000000000" };
        int old_pid = ps_replica_pid(r);
        json_t *s;

        model_b(f, b, sizeof(b));
        req.model_path = b;
        reload(f, "sha", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, PS_E_STAGE_FAILED);
        assert_string_equal(result_str(f, "reason"), "checksum");
        assert_non_null(strstr(result_str(f, "error"), "sha256 mismatch"));
        assert_non_null(strstr(result_str(f, "error"), ABC_SHA256));
        assert_int_equal(ps_replica_pid(r), old_pid);

        snprintf(missing, sizeof(missing), "%s/nope.gguf", f->node.dir);
        req.model_path = missing;
        req.sha256 = NULL;
        reload(f, "sha", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, PS_E_STAGE_FAILED);
        assert_string_equal(result_str(f, "reason"), "staging");
        assert_non_null(strstr(result_str(f, "error"), "No such file"));
        assert_int_equal(ps_replica_pid(r), old_pid);

        req.model_path = b;
        req.sha256 = ABC_SHA256;
        reload(f, "sha", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        s = ps_replica_snapshot(r);
        assert_string_equal(json_string_value(json_object_get(s, "model_digest")), "sha256:" ABC_SHA256);
        json_decref(s);

        /* bad requests are refused at once, naming the field */
        req.sha256 = "abc";
        assert_int_equal(ps_pool_reload(f->node.reg, "sha", &req, on_reloaded, f, err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "sha256"));
        req.sha256 = NULL;
        req.model_path = "relative.gguf";
        assert_int_equal(ps_pool_reload(f->node.reg, "sha", &req, on_reloaded, f, err, sizeof(err)), PS_E_INVALID);
        assert_non_null(strstr(err, "model_path"));
        req.model_path = NULL;
        assert_int_equal(ps_pool_reload(f->node.reg, "sha", &req, on_reloaded, f, err, sizeof(err)), PS_E_INVALID);
        req.model_path = b;
        assert_int_equal(ps_pool_reload(f->node.reg, "none", &req, on_reloaded, f, err, sizeof(err)), PS_E_NOT_FOUND);
        assert_int_equal(ps_pool_drain(f->node.reg, "sha", 10000, NULL, NULL, NULL, err, sizeof(err)), 0);
        assert_int_equal(ps_pool_reload(f->node.reg, "sha", &req, on_reloaded, f, err, sizeof(err)), PS_E_DRAINING);
}

/* ---- configuration reload -------------------------------------------------- */

static ps_config *config_of(const char *pools) {
        char text[4096], err[512], *bin = realpath(th_fake_engine(), NULL);
        ps_config *cfg = NULL;

        assert_non_null(bin);
        snprintf(text, sizeof(text),
                 "{\"gpu\": {\"backend\": \"fake\", \"devices\": [{\"index\": 0, \"vram_total_bytes\": 1000}]},"
                 " \"defaults\": {\"health\": {\"interval_ms\": 50, \"startup_timeout_ms\": 5000},"
                 "               \"reload\": {\"retire_grace_ms\": 50}, \"stop_grace_ms\": 1000},"
                 " \"pools\": [%s]}", pools);
        for (char *p = strstr(text, "BIN"); p; p = strstr(text, "BIN")) {
                char rest[4096];

                snprintf(rest, sizeof(rest), "%s", p + 3);
                snprintf(p, sizeof(text) - (size_t) (p - text), "%s%s", bin, rest);
        }
        free(bin);
        if (ps_config_load_string(text, "/tmp", &cfg, err, sizeof(err)) != 0)
                fail_msg("%s\n%s", err, text);
        return cfg;
}

#define CFG_POOL(id, version) \
        "{\"id\": \"" id "\", \"engine\": \"llamacpp\", \"engine_version\": \"" version "\"," \
        " \"binary\": \"BIN\", \"shared_devices\": true, \"device_mask\": \"0\", \"port\": %u," \
        " \"args\": [\"--port\", \"{port}\"]}"

static bool config_settled(void *fixture, const void *arg) {
        fx *f = fixture;
        ps_replica *fresh = ps_registry_find(f->node.reg, "fresh", "r0");
        ps_replica *bumped = ps_registry_find(f->node.reg, "bumped", "r0");
        json_t *s = bumped ? ps_replica_snapshot(bumped) : NULL;
        bool done = !ps_registry_has_pool(f->node.reg, "gone") && fresh && ps_replica_ready(fresh) &&
                    s && strcmp(json_string_value(json_object_get(s, "engine_version")), "b2") == 0 &&
                    ps_replica_ready(bumped);

        (void) arg;
        json_decref(s);
        return done;
}

static void test_config_reload_adds_removes_and_reloads(void **state) {
        fx *f = *state;
        char pools[2048];
        ps_config *old, *next;
        ps_config_replica *list = NULL;
        size_t n = 0;
        ps_replica *r, *keep;
        uint16_t pk = free_port_pair(), pg = free_port_pair(), pb = free_port_pair(), pf = free_port_pair();
        char err[512];
        int keep_pid;

        snprintf(pools, sizeof(pools), CFG_POOL("keep", "b1") "," CFG_POOL("gone", "b1") ","
                 CFG_POOL("bumped", "b1"), pk, pg, pb);
        old = config_of(pools);
        snprintf(pools, sizeof(pools), CFG_POOL("keep", "b1") "," CFG_POOL("bumped", "b2") ","
                 CFG_POOL("fresh", "b1"), pk, pb, pf);
        next = config_of(pools);

        assert_int_equal(ps_config_replicas(old, &list, &n, err, sizeof(err)), 0);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(ps_registry_add(f->node.reg, list[i].spec, list[i].policy, &r, err, sizeof(err)), 0);
                preload(f, r);
        }
        ps_config_replicas_free(list, n);
        keep = ps_registry_find(f->node.reg, "keep", "r0");
        keep_pid = ps_replica_pid(keep);

        assert_int_equal(ps_registry_apply_config(f->node.reg, old, next, err, sizeof(err)), 0);
        ps_config_free(old);
        ps_config_free(next);
        run_until(f, config_settled, NULL, TH_WAIT_MS);
        assert_true(config_settled(f, NULL));
        /* the unchanged pool was not touched */
        assert_int_equal(ps_replica_pid(keep), keep_pid);
        assert_true(ps_replica_ready(keep));
        assert_int_equal(ps_registry_pool_count(f->node.reg), 3);
}

static bool process_gone(void *fixture, const void *arg) {
        (void) fixture;
        return kill(*(const int *) arg, 0) != 0;
}

static bool reloaded_to_two_slots(void *fixture, const void *arg) {
        fx *f = fixture;
        ps_replica *r = ps_registry_find(f->node.reg, "sg", "r0");
        json_t *s = r ? ps_replica_snapshot(r) : NULL;
        bool done = s && ps_replica_ready(r) &&
                    json_integer_value(json_object_get(s, "slots_total")) == 2;

        (void) arg;
        json_decref(s);
        return done;
}

/* After a surge the engine runs on the spare port; a SIGHUP that changes
 * only `slots` reloads it from there, without a probe of the wrong port,
 * a startup timeout and a rollback. */
static void test_config_reload_after_surge_follows_the_engine(void **state) {
        fx *f = *state;
        uint16_t port = free_port_pair();
        char pools[1024], err[512], url[64], spare[16];
        ps_config *old, *next;
        ps_config_replica *list = NULL;
        size_t n = 0;
        ps_replica *r;
        ps_reload_request req = { .model_ref = "other", .drain_deadline_ms = 5000,
                                  .strategy = PS_RELOAD_SURGE };
        int first_pid, surged_pid;

        snprintf(pools, sizeof(pools), CFG_POOL("sg", "b1"), port);
        old = config_of(pools);
        snprintf(pools, sizeof(pools),
                 "{\"id\": \"sg\", \"engine\": \"llamacpp\", \"engine_version\": \"b1\","
                 " \"binary\": \"BIN\", \"shared_devices\": true, \"device_mask\": \"0\","
                 " \"port\": %u, \"slots\": 2, \"args\": [\"--port\", \"{port}\"]}", port);
        next = config_of(pools);
        assert_int_equal(ps_config_replicas(old, &list, &n, err, sizeof(err)), 0);
        assert_int_equal(ps_registry_add(f->node.reg, list[0].spec, list[0].policy, &r, err, sizeof(err)), 0);
        ps_config_replicas_free(list, n);
        preload(f, r);
        first_pid = ps_replica_pid(r);

        reload(f, "sg", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        assert_true(run_until(f, process_gone, &first_pid, TH_WAIT_MS));
        surged_pid = ps_replica_pid(r);

        assert_int_equal(ps_registry_apply_config(f->node.reg, old, next, err, sizeof(err)), 0);
        ps_config_free(old);
        ps_config_free(next);
        assert_true(run_until(f, reloaded_to_two_slots, NULL, TH_WAIT_MS));
        assert_true(run_until(f, process_gone, &surged_pid, TH_WAIT_MS));
        snprintf(spare, sizeof(spare), ":%u", (unsigned) port + 1);
        ps_replica_url(r, url, sizeof(url));
        assert_non_null(strstr(url, spare));
        assert_true(ps_replica_ready(r));
        assert_int_equal(kill(ps_replica_pid(r), 0), 0);
}

/* A SIGHUP while a surge's old engine still serves a lease leaves the pool
 * as it is and says why: neither a reload nor a drain can start then. */
static void test_config_reload_while_the_old_engine_retires(void **state) {
        fx *f = *state;
        uint16_t port = free_port_pair();
        char pools[1024], err[512];
        ps_config *old, *next;
        ps_config_replica *list = NULL;
        size_t n = 0;
        ps_replica *r;
        ps_lease held;
        ps_reload_request req = { .model_ref = "other", .drain_deadline_ms = 60000,
                                  .strategy = PS_RELOAD_SURGE };
        int first_pid, surged_pid;

        snprintf(pools, sizeof(pools), CFG_POOL("rt", "b1"), port);
        old = config_of(pools);
        snprintf(pools, sizeof(pools), CFG_POOL("rt", "b2"), port);
        next = config_of(pools);
        assert_int_equal(ps_config_replicas(old, &list, &n, err, sizeof(err)), 0);
        assert_int_equal(ps_registry_add(f->node.reg, list[0].spec, list[0].policy, &r, err, sizeof(err)), 0);
        ps_config_replicas_free(list, n);
        preload(f, r);
        first_pid = ps_replica_pid(r);
        assert_int_equal(ps_lease_acquire(f->node.reg, "rt", 0, &held, err, sizeof(err)), 0);

        reload(f, "rt", &req);
        run_until(f, reload_answered, NULL, TH_WAIT_MS);
        assert_int_equal(f->reload_rc, 0);
        surged_pid = ps_replica_pid(r);

        assert_int_equal(ps_registry_apply_config(f->node.reg, old, next, err, sizeof(err)), 0);
        ps_config_free(old);
        ps_config_free(next);
        assert_int_equal(th_node_seen(&f->node, "configuration change not applied to the pool"), 1);
        assert_int_equal(th_node_seen(&f->node, "pool could not be removed"), 0);
        assert_true(ps_registry_has_pool(f->node.reg, "rt"));
        assert_int_equal(ps_replica_pid(r), surged_pid);
        assert_int_equal(kill(first_pid, 0), 0);
        assert_true(ps_replica_ready(r));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_lease_invariants_under_many_operations),
                T(test_lease_refusals_say_why),
                T(test_lease_expiry_and_renewal),
                T(test_drain_waits_for_leases_then_stops),
                T(test_drain_without_leases_is_immediate),
                T(test_drain_deadline_force_stops),
                T(test_reload_drain_first_swaps_the_model),
                T(test_reload_answered_when_the_registry_goes),
                T(test_reload_rolls_back_when_the_new_engine_never_gets_ready),
                T(test_reload_drain_timeout_leaves_the_engine_alone),
                T(test_reload_to_the_running_model_is_a_noop),
                T(test_reload_surge_stays_ready),
                T(test_reload_surge_without_room_runs_drain_first),
                T(test_reload_surge_keeps_arguments_equal_to_the_port),
                T(test_reload_surge_without_a_port_variable_runs_drain_first),
                T(test_reload_verifies_sha256_before_touching_anything),
                T(test_config_reload_adds_removes_and_reloads),
                T(test_config_reload_after_surge_follows_the_engine),
                T(test_config_reload_while_the_old_engine_retires),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
