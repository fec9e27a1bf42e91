/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the integration tests share: the event loop driven until a
 * condition holds (bounded by a generous deadline, never by a sleep),
 * temporary runtime directories, and a registry on its own loop with the
 * fake engine, short policies and a sink that keeps every event.
 *
 * Failures are cmocka assertions: include <cmocka.h> (and what it needs)
 * before this header.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "pool-services/base/event.h"
#include "pool-services/conf/policy.h"
#include "pool-services/supervise/probe.h"
#include "pool-services/pool/registry.h"

/* ---- the loop ------------------------------------------------------------- */

/* How long the waits below run before they give up: far beyond what
 * anything takes on a loaded machine. */
#define TH_WAIT_MS 20000

/* A condition on the test's fixture; arg is what the waiter passed. */
typedef bool th_cond(void *fixture, const void *arg);

int64_t th_now_ms(void);

/* Runs the loop until cond(fixture, arg) holds or wait_ms pass, and says
 * whether it holds. */
bool th_loop_until(struct event_base *base, th_cond *cond, void *fixture, const void *arg,
                   int64_t wait_ms);

/* Runs the loop for wait_ms whatever happens: only where a test checks
 * that something does NOT happen within a time. */
void th_loop_for(struct event_base *base, int64_t wait_ms);

/* Condition: *(bool *) arg is true. */
bool th_flag_set(void *fixture, const void *arg);

/* ---- files ----------------------------------------------------------------- */

/* A fresh directory /tmp/pm-<name>-XXXXXX, into dir (at least 64 bytes). */
void th_tmpdir(char *dir, size_t len, const char *name);

/* Removes a directory and all below it. */
void th_rmtree(const char *dir);

/* A file's whole content, NUL-terminated (len, if not NULL, without the
 * NUL); NULL when it cannot be read. The caller frees it. */
char *th_slurp(const char *path, size_t *len);

void th_write_file(const char *path, const char *text);
bool th_file_exists(const char *path);

/* ---- events ---------------------------------------------------------------- */

/* One event as the sink saw it: its message and its "file" and "error"
 * fields (NULL where it had none). */
typedef struct th_event {
        char *message;
        char *file;
        char *error;
} th_event;

typedef struct th_events {
        th_event *list;
        size_t n;
        size_t cap;
} th_events;

/* How many events have a message starting with prefix. */
size_t th_events_seen(const th_events *e, const char *prefix);

/* The first event with exactly this message, or NULL. */
const th_event *th_events_find(const th_events *e, const char *message);

/* ---- a registry on its own loop ------------------------------------------- */

typedef struct th_node_options {
        const char *name;              /* of the runtime directory */
        uint64_t seed;
        ps_preflight_fn preflight;
        void *preflight_userdata;
} th_node_options;

/*
 * An event base (a timer keeps it turning every 10 ms, counted in ticks),
 * a prober, a registry in a fresh runtime directory, and the events it
 * reported (printed too when TEST_VERBOSE is set). The last preload answer is kept in done,
 * done_ok, done_rc and done_text.
 */
typedef struct th_node {
        struct event_base *base;
        struct event *tick;
        unsigned ticks;
        char dir[64];
        ps_prober *prober;
        ps_context ctx;
        ps_registry *reg;
        th_events events;
        ps_event_sink also;            /* given every event after it is kept */
        bool done;
        bool done_ok;
        int done_rc;                   /* 0 or the PS_E_* it failed with */
        char done_text[512];
        bool all_stopped;              /* th_node_stop_all() was answered */
} th_node;

void th_node_init(th_node *n, const th_node_options *o);

/* Stops every engine of the registry and runs the loop until they are. */
void th_node_stop_all(th_node *n);

/* Frees what init made and removes the runtime directory. */
void th_node_clear(th_node *n);

/* cmocka setup and teardown for a test whose fixture is a th_node and no
 * more: a node with seed 7 in /tmp/pm-<program>-XXXXXX, and after the test
 * its engines stopped, everything freed. */
int th_node_setup(void **state);
int th_node_teardown(void **state);

/* Runs the node's loop until cond(n, arg) holds or wait_ms pass. */
bool th_node_until(th_node *n, th_cond *cond, const void *arg, int64_t wait_ms);

size_t th_node_seen(const th_node *n, const char *prefix);

/* Adds a replica; takes spec and pol. */
ps_replica *th_add(th_node *n, ps_engine_spec *spec, ps_policy *pol);

/* Starts a preload of r answered into n->done, n->done_ok and
 * n->done_text; returns what ps_replica_preload() returns. */
int th_preload_start(th_node *n, ps_replica *r, char *err, size_t errlen);

/* Preloads r and runs the loop until it is answered. */
ps_replica *th_preload(th_node *n, ps_replica *r);

/* Runs the loop until the replica is in state, or fails the test. */
void th_wait_state(th_node *n, const char *pool_id, const char *replica_id, const char *state);

/* ---- the fake engine -------------------------------------------------------- */

/* tests/helpers/fake-engine, or $FAKE_ENGINE. */
const char *th_fake_engine(void);

/* A loopback port nobody listens on now. */
uint16_t th_free_port(void);

/* A spec running the fake engine on port (0: a free one) with
 * "--port <port>" and further arguments (NULL-terminated): engine
 * llamacpp b6000, model "tiny", device 0, on 127.0.0.1. */
ps_engine_spec *th_fake_spec(const char *pool_id, const char *replica_id, uint16_t port,
                             uint32_t slots, const char *first, ...);
ps_engine_spec *th_fake_spec_va(const char *pool_id, const char *replica_id, uint16_t port,
                                uint32_t slots, const char *first, va_list ap);

/* A policy with short timings (health every 50 ms, timeout 200 ms,
 * startup 5 s; backoff 50..400 ms without jitter; stop grace 500 ms),
 * changed further by json (may be NULL). */
ps_policy *th_policy(const char *json);

/* Changes p by json (may be NULL), or fails the test. */
void th_policy_apply(ps_policy *p, const char *json);
