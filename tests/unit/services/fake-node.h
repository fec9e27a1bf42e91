/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A registry on its own loop with fake engines (fake-engine-ops.h) and a
 * pinned clock: what the unit tests of supervision, leases, drain and
 * reload share. Time as the services read it moves only when the test
 * advances it, so deadlines, backoff delays, lease expiry times and
 * durations in snapshots and answers are exact numbers. The loop's timers
 * still run on the kernel's clock: a timer armed for 20 ms by the pinned
 * clock fires 20 ms later, so policies here use delays of milliseconds.
 *
 * The loop is run until a condition holds, bounded by a generous
 * deadline; nothing sleeps for a fixed time except where a test checks
 * that something does not happen. Failures are cmocka assertions.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fake-engine-ops.h"
#include "pool-services/base/clock.h"
#include "pool-services/conf/policy.h"
#include "pool-services/supervise/probe.h"
#include "pool-services/pool/registry.h"

/* Where the fixture's pinned clock starts. */
#define FAKE_WALL_START_MS 1700000000000LL
#define FAKE_MONO_START_MS 5000000LL

/* Far beyond what anything here takes, even under a sanitizer. */
#define FAKE_WAIT_MS 10000

typedef struct fake_clock {
        ps_clock clock;                /* hand &clock to a context */
        int64_t wall_ms;
        int64_t mono_ms;
} fake_clock;

void fake_clock_init(fake_clock *c);
void fake_clock_advance(fake_clock *c, int64_t ms);

typedef struct fake_node {
        struct event_base *base;
        fake_clock clock;
        ps_prober *prober;
        ps_context ctx;
        ps_registry *reg;
        char dir[64];
        char **messages;               /* every event's message, in order */
        size_t n_messages, cap_messages;
        /* the last answer of fake_node_preload_start() */
        bool done;
        int done_rc;
        char done_text[512];
} fake_node;

/* A node in a fresh /tmp/pm-<name>-XXXXXX with fake engines installed. */
void fake_node_init(fake_node *n, const char *name);
/* Stops every engine, frees the registry, puts the real engines back,
 * removes the directory. */
void fake_node_clear(fake_node *n);

/* cmocka setup and teardown for a fixture that is a fake_node. */
int fake_node_setup(void **state);
int fake_node_teardown(void **state);

typedef bool fake_cond(fake_node *n, const void *arg);

/* Runs the loop until cond(n, arg) holds (or FAKE_WAIT_MS pass); says
 * whether it holds. */
bool fake_node_until(fake_node *n, fake_cond *cond, const void *arg);
/* Runs the loop for ms whatever happens. */
void fake_node_run_for(fake_node *n, int64_t ms);

/* Conditions. arg: a const bool *; a size_t * count of spawns; a
 * fake_want_state *. */
bool fake_flag_set(fake_node *n, const void *arg);
bool fake_spawned_at_least(fake_node *n, const void *arg);
typedef struct fake_want_state {
        ps_replica *replica;
        const char *state;
} fake_want_state;
bool fake_in_state(fake_node *n, const void *arg);

/* Runs the loop until r is in state, or fails the test. */
void fake_node_wait_state(fake_node *n, ps_replica *r, const char *state);
/* Runs the loop until at least count spawns have succeeded, or fails;
 * returns the count-th. */
fake_engine *fake_node_wait_spawns(fake_node *n, size_t count);

/* How many events had exactly this message. */
size_t fake_node_seen(const fake_node *n, const char *message);

/* A loopback port nobody listens on now; with a free port above it too
 * when spare (a surge's). */
uint16_t fake_free_port(bool spare);

/*
 * A llama-server-like spec: /opt/engines/llama-server --port {port}
 * -m {model_path} --parallel {slots}, model /models/tiny.gguf, engine
 * llamacpp b6000, device 0, on 127.0.0.1:port (0: a free one).
 */
ps_engine_spec *fake_spec(const char *pool_id, const char *replica_id, uint16_t port,
                          uint32_t slots);
/* Short timings: health every 20 ms (timeout 500, startup 5000); backoff
 * 20..400 ms without jitter; stop grace 200 ms; changed further by json
 * (NULL: nothing). */
ps_policy *fake_policy(const char *json);

/* Adds a replica; takes spec and pol. */
ps_replica *fake_node_add(fake_node *n, ps_engine_spec *spec, ps_policy *pol);
/* Starts a preload answered into n->done, done_rc, done_text; returns
 * what ps_replica_preload() returns. */
int fake_node_preload_start(fake_node *n, ps_replica *r);
/* Preloads r and runs the loop until it is answered; returns the rc. */
int fake_node_preload(fake_node *n, ps_replica *r);

/* A member of r's snapshot, as an integer (0 when not one); a string
 * (NULL when not one: borrowed until the next call). */
int64_t fake_snap_int(const ps_replica *r, const char *key);
const char *fake_snap_str(const ps_replica *r, const char *key);
