/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Documented outcomes of pool-services calls, returned as positive values
 * (system failures are negative errnos). pool-api maps each to an HTTP
 * status in one table. The same codes say why a request that finishes
 * later ended (ps_done_fn, ps_reload_done_fn): callers decide on the code,
 * never on the words of the message that comes with it.
 */
enum {
        PS_E_INVALID = 1,       /* bad input; the message names the field  */
        PS_E_NOT_FOUND,         /* unknown pool or replica                 */
        PS_E_EXISTS,            /* the replica is already registered       */
        PS_E_CONFLICT,          /* not possible in the current state       */
        PS_E_BREAKER_OPEN,      /* the breaker refuses a start             */
        PS_E_NOT_RUNNING,       /* stop of a pool with no engine           */
        PS_E_DRAINING,          /* the pool is draining: no new leases     */
        PS_E_NOT_READY,         /* no replica of the pool serves           */
        PS_E_NO_SLOT,           /* every slot of the ready replicas leased */
        PS_E_DRAIN_TIMEOUT,     /* a reload's drain hit its deadline; the
                                   running engine was left untouched       */
        PS_E_STAGE_FAILED,      /* the new model is missing, unreadable or
                                   fails its sha256                        */
        PS_E_RELOAD_FAILED,     /* the new engine failed; rolled back      */
        PS_E_FORBIDDEN,         /* a binary outside engines.allow          */
        PS_E_GPU_ONLY,          /* needs a GPU the node does not have      */
        PS_E_PREFLIGHT,         /* not enough VRAM or host RAM for a start */
        PS_E_MODEL_FORBIDDEN,   /* a model or workdir outside models.allow */
        PS_E_START_FAILED,      /* a preload's engine did not come up: it
                                   exited, stalled or could not be spawned,
                                   or a stop, drain or restart came first */
        PS_E_HEALTH_CHECK,      /* a preload's engine never answered healthy
                                   within its startup timeout             */
        PS_E_ROLLBACK_FAILED,   /* a replica's reload failed and its
                                   previous engine did not come back      */
        PS_E_ENGINE_FAILED,     /* the serving engine failed while a
                                   replica's reload was under way         */
};
