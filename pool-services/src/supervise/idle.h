/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pool-services/supervise/probe.h"

struct event_base;

/*
 * Waiting for an engine that takes no new work to finish what it has:
 * the wait before its SIGTERM in a drain or when a reload retires it.
 * A lease is not the only way work reaches an engine (clients that route
 * by /v1/replicasets send requests without one), and llama-server leaves
 * a non-streaming request unanswered once it has its SIGTERM.
 *
 * The engine's own in-flight count, read from its /metrics:
 *   llama-server  llamacpp:requests_processing + llamacpp:requests_deferred
 *   vLLM          vllm:num_requests_running + vllm:num_requests_waiting
 * is read every poll_ms until it is 0. An engine that shows no such count
 * (llama-server without --metrics answers 501) is given grace_ms instead.
 * Once a count was read, a failed reading is tried again at the next poll.
 * The caller bounds the whole wait (the drain deadline).
 */
typedef struct ps_idle_watch ps_idle_watch;

typedef enum ps_idle_how {
        PS_IDLE_COUNTED,          /* the engine said 0 in flight           */
        PS_IDLE_GRACE,            /* no count: grace_ms passed             */
        PS_IDLE_HOW_MAX,
} ps_idle_how;

/* Called once, from the loop (never inside ps_idle_watch_new()); detail
 * says why there was no count (borrowed; NULL when counted). The watch
 * may be freed from inside. */
typedef void (*ps_idle_fn)(ps_idle_how how, const char *detail, void *userdata);

typedef struct ps_idle_options {
        const char *url;          /* the engine: "http://127.0.0.1:8080"  */
        int64_t poll_ms;          /* between readings while work runs     */
        int64_t timeout_ms;       /* one reading                          */
        int64_t grace_ms;         /* without a count                      */
} ps_idle_options;

/* NULL on OOM. */
ps_idle_watch *ps_idle_watch_new(struct event_base *base, ps_prober *prober,
                                 const ps_idle_options *opt, ps_idle_fn fn, void *userdata);
/* Without calling back. Accepts NULL; returns NULL. */
ps_idle_watch *ps_idle_watch_free(ps_idle_watch *w);

/*
 * The in-flight count in a Prometheus text body: the sum of the samples
 * of the families above. false when the body has none of them.
 */
bool ps_idle_count_parse(const char *body, size_t len, double *count);
