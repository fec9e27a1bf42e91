/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/*
 * What one replica is doing, as plain values: filled by
 * ps_replica_status_get() (pool-services/supervise/replica.h) and read by
 * whoever shows it -- the registry's pool totals, the metrics, the control
 * plane payloads, the API. Turning it into JSON is the edges' job
 * (pool-services/observe/status-json.h).
 *
 * Strings are borrowed: the static names of states and classes, and the
 * replica's own ids, spec fields and last error, valid until the replica
 * next changes (an event on the loop) or is freed. NULL means unknown or
 * none. Times are epoch milliseconds, 0 when there is none.
 */

typedef struct ps_breaker_status {
        const char *state;             /* "closed", "open", "half_open"      */
        unsigned failures;             /* general circuit, towards opening   */
        unsigned opens;                /* times it opened, ever              */
        int64_t open_until;            /* while open; else 0                 */
} ps_breaker_status;

typedef struct ps_replica_status {
        const char *pool_id;
        const char *replica_id;
        const char *state;             /* pd_state_to_string()               */
        bool live;
        bool ready;
        bool draining;
        bool external;                 /* tracked from a handoff file        */
        int pid;                       /* the primary engine's; 0: none      */
        char url[300];                 /* base URL, no trailing slash        */
        uint16_t port;                 /* the port it runs on now            */
        uint16_t home_port;            /* the port it was registered with    */

        const char *engine;
        const char *engine_version;
        const char *model_id;
        const char *model_digest;
        const char *device_mask;

        uint32_t slots_total;
        uint32_t slots_free;           /* 0 unless ready                     */
        uint32_t active_leases;        /* on every engine of the replica     */
        uint32_t primary_leases;       /* ... on the primary engine          */
        uint32_t surge_leases;         /* ... on a surge engine (a reload)   */
        uint32_t retiring_leases;      /* ... on a surge's old engine, retiring */

        const char *last_error;
        const char *last_error_class;  /* pd_crash_class_to_string()         */
        int64_t last_error_at;
        int64_t last_heartbeat;        /* external replicas: the file's      */

        unsigned restart_count;        /* restarts after failures, ever      */
        unsigned crash_count;          /* failures since the last stable run */
        unsigned restarts_in_window;   /* what the storm limiter counts      */
        unsigned driver_resets;
        int64_t backoff_ms;            /* the last delay chosen              */
        int64_t next_restart_at;
        ps_breaker_status breaker;

        int64_t started_at;            /* the primary engine's start         */
        int64_t ready_at;              /* while ready                        */
        int64_t uptime_s;
} ps_replica_status;
