/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Documented outcomes of pool-services calls, returned as positive values
 * (system failures are negative errnos). pool-api maps each to an HTTP
 * status in one table.
 */
enum {
        PS_E_INVALID = 1,       /* bad input; the message names the field  */
        PS_E_NOT_FOUND,         /* unknown pool or replica                 */
        PS_E_EXISTS,            /* the replica is already registered       */
        PS_E_CONFLICT,          /* not possible in the current state       */
        PS_E_BREAKER_OPEN,      /* the breaker refuses a start             */
        PS_E_NOT_RUNNING,       /* stop of a pool with no engine           */
        PS_E_PREFLIGHT,         /* not enough VRAM or host RAM for a start */
        PS_E_GPU_ONLY,          /* a GPU the pool needs is missing         */
};
