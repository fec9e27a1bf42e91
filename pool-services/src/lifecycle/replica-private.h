/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <event2/util.h>

#include "core/policy-private.h"
#include "lifecycle/replica.h"
#include "pool-domain/lifecycle.h"
#include "pool-services/engine.h"
#include "pool-services/logtail.h"
#include "pool-services/probe.h"

/* The fields of a replica, and what its files (lifecycle/replica*.c) share
 * with each other: for those files only; everyone else goes through
 * lifecycle/replica.h. */

#define REPLICA_QUEUE_MAX 32
#define REPLICA_DETAIL_MAX 256
#define REPLICA_REPLIES_MAX 4

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
};

/* An answer to a waiting request, held until the step is over. */
typedef struct reply_out {
        pending_reply to;
        int rc;
        char text[PD_ACTION_TEXT_MAX];
} reply_out;

/* ---- time (replica.c) ---------------------------------------------------- */

static inline int64_t ps_replica_mono_now(const ps_replica *r) {
        return ps_clock_mono_ms(r->ctx->clock);
}

static inline int64_t ps_replica_wall_now(const ps_replica *r) {
        return ps_clock_wall_ms(r->ctx->clock);
}

/* The lifecycle counts in monotonic time; people read wall time. */
static inline int64_t ps_replica_mono_to_wall(const ps_replica *r, int64_t at_mono) {
        if (at_mono == 0)
                return 0;
        return ps_replica_wall_now(r) + (at_mono - ps_replica_mono_now(r));
}

static inline struct timeval ps_replica_ms_to_tv(int64_t ms) {
        if (ms < 0)
                ms = 0;
        return (struct timeval) { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

static inline const pd_policy *ps_replica_domain_policy(const ps_replica *r) {
        return ps_policy_domain(r->policy);
}

static inline const char *ps_replica_engine_version(const ps_replica *r) {
        return r->current ? r->current->engine_version : NULL;
}

/* ---- the queue and the machine (replica.c) ------------------------------- */

/* One event in the sink, with the replica's ids and request. */
void ps_replica_emit(ps_replica *r, ps_event_type type, ps_log_level level, const char *message,
                     const ps_field *fields, size_t n_fields);

#define REPLICA_EMIT(r, type, level, message, ...)                                   \
        do {                                                                        \
                const ps_field f_[] = { __VA_ARGS__ };                              \
                ps_replica_emit((r), (type), (level), (message), f_,                \
                                sizeof(f_) / sizeof(f_[0]));                        \
        } while (0)

/* Queues an event for the machine (copied, detail included). */
void ps_replica_enqueue(ps_replica *r, const pd_event *ev);
void ps_replica_enqueue_simple(ps_replica *r, pd_event_type type, pd_instance_id id,
                               const char *detail);
/* Runs the machine on what is queued; a no-op inside a step. The replica
 * may be freed when it returns. */
void ps_replica_run(ps_replica *r);

/* ---- leases (replica-leases.c) ------------------------------------------- */

/* Ends the leases held on one engine instance by force; they count as
 * dropped. */
void ps_replica_drop_leases(ps_replica *r, pd_instance_id inst);
/* Queues what the leases mean for the machine; whether an event was queued. */
bool ps_replica_queue_lease_events(ps_replica *r);

/* ---- health probes (replica-probe.c) ------------------------------------- */

static inline bool ps_replica_inst_ready(const replica_inst *in) {
        return in->owner->lc.inst[in->id].ready_at_ms != 0;
}

void ps_replica_probe_start(replica_inst *in);
void ps_replica_probe_stop(replica_inst *in);
/* Probes now, or once the probe in flight has answered. */
void ps_replica_probe_send(replica_inst *in);
void ps_replica_probe_schedule(replica_inst *in, int64_t delay_ms);
/* The callback of each slot's probe_timer. */
void ps_replica_on_probe_timer(evutil_socket_t fd, short what, void *userdata);

/* ---- engine output and exit (replica-log.c) ------------------------------ */

/* The callbacks of a slot's log tail and engine (userdata: the slot). */
void ps_replica_on_log_line(const char *line, size_t len, void *userdata);
void ps_replica_on_engine_exit(ps_engine *engine, const ps_exit_status *st, void *userdata);
/* The OOM-kill counter of the daemon's cgroup; false when unknown. */
bool ps_replica_read_oom_kill(uint64_t *out);

/* ---- actions (replica-actions.c) ----------------------------------------- */

/* Carries out one action of the machine; an answer to a waiting request is
 * added to replies (at most REPLICA_REPLIES_MAX) instead of being given. */
void ps_replica_execute(ps_replica *r, const pd_action *a, reply_out *replies, size_t *n_replies);
/* What the machine's answer means to whoever waits (ps_done_fn's code). */
int ps_replica_reply_code(pd_reply reply, pd_outcome outcome, int refusal);
