/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A replica as the pool-wide code of pool-services (registry, leases,
 * drain, reload) sees it: created with an owner table, driven by events,
 * read and changed through these calls only. The replica never calls up:
 * whatever it has to tell its owner goes through the table.
 */
#include <stdbool.h>
#include <stdint.h>

#include "pool-domain/lifecycle.h"
#include "pool-services/supervise/replica.h"

/*
 * What a replica tells whoever owns it. Every entry may be NULL. Each is
 * called from inside the replica's step: it must not free the replica.
 */
typedef struct ps_replica_owner {
        /* The replica has run its machine on a batch of events (its
         * answers to waiting requests go out right after). */
        void (*settled)(ps_replica *r, void *userdata);
        /* The leases held on one engine instance ended by force (drain
         * deadline, engine gone, replica stopped): their records go. The
         * replica has counted them. */
        void (*drop_leases)(ps_replica *r, pd_instance_id inst, void *userdata);
        /* A surge engine was promoted: primary and surge swapped slots,
         * and the records of the leases held on them move along. */
        void (*leases_moved)(ps_replica *r, void *userdata);
        /* The engine reported a driver error: the device's, not one
         * engine's. The others on its GPUs are to be reset
         * (ps_replica_share_trouble()). Called before r's own step. */
        void (*device_trouble)(ps_replica *r, const char *why, void *userdata);
        void *userdata;
} ps_replica_owner;

/* spec and policy are copied (policy NULL: the defaults); ctx and the
 * owner table's userdata are borrowed. NULL on OOM. */
ps_replica *ps_replica_new(const ps_context *ctx, const ps_engine_spec *spec,
                           const ps_policy *policy, const ps_replica_owner *owner);
/* Never stops the engine (a later daemon adopts it); whoever waits for an
 * answer gets one. */
ps_replica *ps_replica_free(ps_replica *r);

/* Feeds an event from outside and runs the machine. */
int ps_replica_feed(ps_replica *r, const pd_event *ev);
/* Runs the machine on what is queued, and on what the leases now say. */
void ps_replica_kick(ps_replica *r);
/* Whether the machine would take ev now (tried on a copy). */
bool ps_replica_accepts(const ps_replica *r, const pd_event *ev);
/*
 * Feeds an operator request (drain, reload) after trying it on a copy of
 * the machine, so a refusal leaves nothing pending: the pd_lifecycle_step()
 * result of the trial (0, PD_E_TRANSITION, ...). On 0, fn is called once
 * with the answer (possibly before this returns).
 */
int ps_replica_request(ps_replica *r, const pd_event *ev, pd_reply reply,
                       ps_done_fn fn, void *userdata);
/* Whoever waits for that answer is gone: it is not given. */
void ps_replica_forget_reply(ps_replica *r, pd_reply reply);

/* The replica's pool is being removed: from now on a preload or restart
 * is refused (PS_E_CONFLICT), so nothing starts an engine that would keep
 * the pool from being forgotten. */
void ps_replica_mark_removing(ps_replica *r);

/* The machine's state, read-only. */
const pd_lifecycle *ps_replica_lifecycle(const ps_replica *r);
bool ps_replica_engine_running(const ps_replica *r);
/* What the replica runs (never NULL) and the port it was registered with. */
const ps_engine_spec *ps_replica_spec(const ps_replica *r);
uint16_t ps_replica_home_port(const ps_replica *r);
/* What a reload wants to run next (copied; NULL discards). 0 or -ENOMEM. */
int ps_replica_stage(ps_replica *r, const ps_engine_spec *spec);
const ps_policy *ps_replica_policy(const ps_replica *r);
/* Replaces the policy (copied); on -ENOMEM the old one stays. */
int ps_replica_set_policy(ps_replica *r, const ps_policy *policy);

/*
 * Leases, counted per engine instance; the records (ids, expiry) are the
 * owner's. A lease held on an engine moves with it when a surge promotes.
 */
uint32_t ps_replica_slots(const ps_replica *r);
uint32_t ps_replica_leases(const ps_replica *r);
uint32_t ps_replica_inst_leases(const ps_replica *r, pd_instance_id inst);
/* One more lease on inst; PS_E_NO_SLOT when every slot is taken. */
int ps_replica_lease_add(ps_replica *r, pd_instance_id inst);
/* One lease on inst ended (never below zero). Call ps_replica_kick()
 * after: a drain may be waiting for it. */
void ps_replica_lease_remove(ps_replica *r, pd_instance_id inst);
/* The leases ended by force since last asked; the count starts again. */
uint32_t ps_replica_take_leases_dropped(ps_replica *r);

/* What a handoff file says about an external replica; NULL: unchanged. */
typedef struct ps_replica_handoff {
        const char *engine_version;    /* required */
        const char *engine;
        const char *device_mask;
        const char *url;
        const char *model_id;
        uint32_t slots;
        bool has_slots_free;
        uint32_t slots_free;
} ps_replica_handoff;

/* Takes what the handoff says, sets the heartbeat to now and feeds
 * PD_EV_HANDOFF_APPEARED. */
int ps_replica_take_handoff(ps_replica *r, const ps_replica_handoff *h);

/* from reported a driver error (why): r is reset when it runs an engine
 * on one of from's GPUs. */
void ps_replica_share_trouble(ps_replica *r, const ps_replica *from, const char *why);

/*
 * The restart policy's state (failure and restart counts, backoff, the
 * breaker circuits, the storm window), kept across daemon restarts by the
 * state store. Its times are wall-clock epoch ms (0: none); set takes them
 * back onto the replica's monotonic clock. Nothing else of the machine is
 * touched, and set feeds no event.
 */
typedef struct ps_replica_policy_state {
        unsigned crash_count;
        unsigned restart_count;
        int64_t backoff_ms;
        pd_backoff backoff;
        pd_breaker_set breakers;
        pd_storm storm;
} ps_replica_policy_state;

void ps_replica_policy_state_get(const ps_replica *r, ps_replica_policy_state *out);
void ps_replica_policy_state_set(ps_replica *r, const ps_replica_policy_state *in);
