/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "supervise/replica.h"
#include "pool-domain/lifecycle.h"
#include "pool-services/supervise/engine.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/supervise/logtail.h"
#include "pool-services/supervise/probe.h"

/* The fields of a replica: for supervise/replica.c (and its tests) only;
 * everyone else goes through supervise/replica.h. */

#define REPLICA_QUEUE_MAX 32
#define REPLICA_DETAIL_MAX 256

/* One engine process slot of a replica (primary or surge). */
typedef struct replica_inst {
        ps_replica *owner;
        pd_instance_id id;
        ps_engine *engine;          /* NULL when none runs                 */
        ps_engine *dead;            /* exited; freed at the next spawn     */
        ps_logtail *tail;
        ps_probe *probe;            /* in flight, or NULL                  */
        struct event *probe_timer;
        bool probing;
        bool probe_again;           /* a kick arrived while one was in flight */
        int64_t probe_delay_ms;     /* loading schedule: 5, 10, 20, 25..., 50 */
        int64_t probe_started_ms;   /* when probing of this engine began    */
        int64_t last_probe_ms;
        int64_t last_progress_ms;   /* for the stall timeout               */
        long last_http_status;
        bool oom_known;
        uint64_t oom_kill_before;
        int64_t started_wall_ms;
        char last_line[REPLICA_DETAIL_MAX];
        uint32_t leases;            /* leases held on this engine; they
                                       move with it when a surge promotes */
} replica_inst;

typedef struct replica_timer {
        ps_replica *owner;
        pd_timer timer;
        pd_instance_id inst;
        struct event *ev;
} replica_timer;

typedef struct queued_event {
        pd_event ev;
        char detail[REPLICA_DETAIL_MAX];
} queued_event;

typedef struct pending_reply {
        ps_done_fn fn;
        void *userdata;
} pending_reply;

struct ps_replica {
        ps_replica_owner owner;
        const ps_context *ctx;
        char *pool_id;
        char *replica_id;
        char *correlation_id;       /* the request being carried out; NULL */
        bool started_once;          /* adoption is tried at the first start */
        bool promoted;              /* a surge engine took over; ready_at set */
        ps_engine_spec *current;    /* what the replica runs              */
        ps_engine_spec *staged;     /* what a reload wants to run         */
        ps_policy *policy;
        pd_lifecycle lc;
        pd_rng rng;

        replica_inst inst[PD_INSTANCE_MAX];
        replica_timer timers[PD_TIMER_MAX][PD_INSTANCE_MAX];

        queued_event *queue;        /* ring of q_cap, grown on demand      */
        unsigned q_cap, q_head, q_len;
        bool stepping;

        pending_reply pending[PD_REPLY_MAX];

        /* the last exit, for the "engine failed" line */
        bool last_exit_known;
        ps_exit_status last_exit;
        int64_t last_uptime_ms;

        uint16_t home_port;         /* the port it was registered with    */
        uint32_t leases_dropped;    /* ended by force since last asked    */
        int64_t last_heartbeat_wall_ms;
        int64_t ready_wall_ms;

        /* external replicas: what the handoff said */
        char *ext_url;
        bool has_slots_free;
        uint32_t ext_slots_free;

        ps_handoff_retry *handoff_retry; /* a failed handoff write, again; NULL */
};
