/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Engines without processes, for unit tests of supervision. Installed as
 * the engine operations (supervise/engine-private.h), a spawn builds the
 * real plan from the spec -- a spec that could not start a process does
 * not start here either -- records it, creates the engine's log file, and
 * answers every HTTP request on the spec's host and port from an evhttp
 * listener on the test's loop (200 unless the test says otherwise; /metrics
 * with llama-server's in-flight gauges), so
 * the real prober sees it come up. A fake engine exits when the test
 * says so, or when it is signalled (SIGTERM unless it ignores it, SIGKILL
 * always), and its exit always reaches the caller from the loop, as a
 * pidfd would report it.
 *
 * Pids start at FAKE_ENGINE_PID_BASE, above any kernel's pid_max: nothing
 * real can be signalled by mistake. Failures are cmocka assertions:
 * include <cmocka.h> (and what it needs) first.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef PS_ENGINE_PRIVATE_ALLOW
#define PS_ENGINE_PRIVATE_ALLOW
#endif
#include "supervise/engine-private.h"

#define FAKE_ENGINE_PID_BASE 5000000

struct event_base;

/* One spawn that succeeded, kept until fake_engines_uninstall(). */
typedef struct fake_engine fake_engine;

/* Called at each spawn once the engine runs (its port bound), before
 * the caller gets it: it may set the engine's health or schedule its
 * exit, or refuse the spawn with a negative errno and a message in err. */
typedef int (*fake_spawn_fn)(fake_engine *e, void *userdata, char *err, size_t errlen);

/* Makes the fakes the engines of the process, on base. */
void fake_engines_install(struct event_base *base);
/* Puts the real engines back and frees every record. Free the registry
 * (whose replicas hold engine objects) first. */
void fake_engines_uninstall(void);
/* NULL: every spawn starts an engine that answers 200. */
void fake_engines_on_spawn(fake_spawn_fn fn, void *userdata);

size_t fake_engines_spawned(void);
/* Spawns refused by the hook or failed (plan, port in use). */
size_t fake_engines_failed(void);
size_t fake_engines_adopt_tries(void);
/* The i-th spawn that succeeded; NULL past the end. */
fake_engine *fake_engines_at(size_t i);
fake_engine *fake_engines_last(void);
/* How many engines of a replica run now (a surge runs two). */
size_t fake_engines_running(const char *pool_id, const char *replica_id);

pid_t fake_engine_pid(const fake_engine *e);
/* What it was started from, and the plan the real spawn would have run. */
const ps_engine_spec *fake_engine_spec(const fake_engine *e);
const ps_engine_plan *fake_engine_plan(const fake_engine *e);
/* Whether argv holds arg followed by value (value NULL: arg anywhere). */
bool fake_engine_has_arg(const fake_engine *e, const char *arg, const char *value);
/* The value of NAME in its environment, or NULL. */
const char *fake_engine_env(const fake_engine *e, const char *name);
/* Not exited yet (an exit scheduled but not delivered still runs). */
bool fake_engine_running(const fake_engine *e);
unsigned fake_engine_signals(const fake_engine *e, int signo);
/* HTTP requests it answered. */
unsigned fake_engine_requests(const fake_engine *e);

/* The status its HTTP answers carry from now on (200, 503, ...). */
void fake_engine_set_health(fake_engine *e, int http_status);
void fake_engine_ignore_term(fake_engine *e, bool ignore);
/* What its /metrics says is in flight (llama-server's two gauges), 0 at
 * first; negative: it answers 501, as llama-server without --metrics. */
void fake_engine_set_in_flight(fake_engine *e, int n);
/* How many times its /metrics was read. */
unsigned fake_engine_metrics_reads(const fake_engine *e);
/* Appends a line to its log file (the log tail reads it); it is also
 * what ps_engine_last_log_line() reports. */
void fake_engine_log(fake_engine *e, const char *line);

/* The engine exits with code, or dies of signo: its port closes now, the
 * exit reaches the caller on the next loop pass. Once only. */
void fake_engine_exit(fake_engine *e, int code);
void fake_engine_die(fake_engine *e, int signo);
