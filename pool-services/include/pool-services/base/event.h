/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "pool-services/base/log.h"

/*
 * Lower layers do not print. They report what happened through an event
 * sink the daemon injects; the daemon turns events into log lines (and,
 * later, metrics). A new kind of event is a new ps_event_type value plus
 * whatever fields it carries: the struct itself stays the same.
 */

typedef enum ps_event_type {
        PS_EVENT_GENERIC,         /* a message with fields, nothing more   */
        PS_EVENT_HTTP_REQUEST,    /* the API answered a request            */
        /* supervision; fields named in parentheses are always present */
        PS_EVENT_ENGINE_SPAWNED,  /* an engine process started (pid)       */
        PS_EVENT_SPAWN_FAILED,    /* it could not be started (error)       */
        PS_EVENT_ENGINE_EXITED,   /* its pidfd fired (expected)            */
        PS_EVENT_ENGINE_FAILED,   /* a failure was counted (class)         */
        PS_EVENT_READY,           /* the primary became ready (startup_ms) */
        PS_EVENT_RESTART_SCHEDULED, /* (backoff_ms, next_restart_at)       */
        PS_EVENT_STATE_CHANGED,   /* (from, state)                         */
        PS_EVENT_ALERT,           /* storm, throttle, breaker (alert)      */
        PS_EVENT_PROBE_FAILED,    /* a health probe of a ready engine      */
        PS_EVENT_ENGINE_LOG_ERROR, /* a CUDA/driver/OOM line (class)       */
        PS_EVENT_REQUEST_DONE,    /* preload/drain/reload answered (request, ok) */
        PS_EVENT_LEASE,           /* granted, released, expired, dropped, refused (lease) */
        PS_EVENT_DRAIN_STARTED,   /* a pool began to drain (active_leases) */
        PS_EVENT_TYPE_MAX,
} ps_event_type;

/* "generic", "http_request"; NULL when out of range. */
const char *ps_event_type_to_string(ps_event_type type);

/* Every pointer is borrowed for the duration of the callback only: a sink
 * that keeps an event must copy what it needs. */
typedef struct ps_event {
        ps_event_type type;
        ps_log_level level;
        const char *pool_id;      /* NULL when not about one pool           */
        const char *replica_id;   /* NULL when not about one replica        */
        const char *correlation_id; /* the API request that caused it; NULL */
        const char *message;      /* short and stable: "request", "spawned" */
        const ps_field *fields;   /* n_fields of them; may be NULL when 0   */
        size_t n_fields;
} ps_event;

typedef void (*ps_event_fn)(const ps_event *event, void *userdata);

/* Copied by value into whatever reports through it. fn == NULL is a sink
 * that drops everything, which is what tests that do not care pass. */
typedef struct ps_event_sink {
        ps_event_fn fn;
        void *userdata;
} ps_event_sink;

/* Hands the event to the sink; a NULL sink or callback drops it. */
void ps_event_emit(const ps_event_sink *sink, const ps_event *event);

/*
 * The standard translation of an event into a log line: msg is the
 * message, then `event` (the type name, left out for GENERIC), `pool_id`,
 * `replica_id`, `correlation_id`, then the event's own fields. Returns what ps_log_fields()
 * returns.
 */
int ps_logger_log_event(ps_logger *logger, const ps_event *event);
