/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "supervise/replica.h"
#include "pool-domain/lifecycle.h"
#include "pool-services/supervise/engine.h"
#include "pool-services/supervise/handoff.h"
#include "supervise/event-queue.h"
#include "supervise/instance.h"
#include "supervise/machine-timers.h"
#include "supervise/replies.h"
#include "supervise/report.h"

/* The fields of a replica: for supervise/replica.c (and its tests) only;
 * everyone else goes through supervise/replica.h. */

#define REPLICA_DETAIL_MAX 256

/* One engine slot of a replica (primary or surge): the engine instance
 * (supervise/instance.h, with its own fields) and what the replica keeps
 * of it. The slots swap when a surge promotes. */
typedef struct replica_inst {
        ps_instance *proc;          /* the engine process, its log tail,
                                       health and idle watches           */
        uint32_t leases;            /* leases held on this engine; they
                                       move with it when a surge promotes */
} replica_inst;

struct ps_replica {
        ps_replica_owner owner;
        const ps_context *ctx;
        char *pool_id;
        char *replica_id;
        char *correlation_id;       /* the request being carried out; NULL */
        bool started_once;          /* adoption is tried at the first start */
        const ps_engine_spec *spawning; /* during ps_instance_spawn() only   */
        int ready_pid;              /* the engine ready_at and the last
                                       "ready" line speak of               */
        bool removing;              /* its pool goes: no start any more     */
        ps_engine_spec *current;    /* what the replica runs              */
        ps_engine_spec *staged;     /* what a reload wants to run         */
        ps_policy *policy;
        pd_lifecycle lc;
        pd_rng rng;

        replica_inst inst[PD_INSTANCE_MAX];
        ps_machine_timers *timers;

        ps_event_queue *queue;      /* what the machine has still to take  */
        bool stepping;

        ps_replies *replies;        /* who waits for which answer          */

        /* the last exit, for the "engine failed" line */
        ps_report_exit last_exit;

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
