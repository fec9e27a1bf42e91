/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Errors in pool-domain.
 *
 * Functions that can fail return int: 0 on success, a negative errno for a
 * misuse that is the caller's bug (-EINVAL for a NULL argument), or a positive
 * PD_E_* code for a documented outcome the caller must handle. Parsers and
 * validators also fill a pd_error with a message naming the field at fault.
 */

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
        PD_E_INVALID = 1,        /* input rejected; pd_error says why       */
        PD_E_NOT_FOUND,          /* unknown device, lease, ...               */
        PD_E_NO_SLOT,            /* every slot is leased                     */
        PD_E_NOT_LEASED,         /* release without a matching acquire       */
        PD_E_OVERLAP,            /* two device masks share a device          */
        PD_E_INSUFFICIENT,       /* not enough VRAM for the requested split  */
        PD_E_TRANSITION,         /* event not allowed in the current state   */
        PD_E_BREAKER_OPEN,       /* the circuit breaker refuses a restart    */
        PD_E_MAX                 /* one past the last code                   */
};

#define PD_ERROR_MAX 256

typedef struct pd_error {
        char msg[PD_ERROR_MAX];
} pd_error;

/* Formats a message into err (which may be NULL) and returns PD_E_INVALID,
 * so validators can write `return pd_error_set(err, "...", ...);`. */
int pd_error_set(pd_error *err, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Like pd_error_set() but returns the given code. */
int pd_error_setc(pd_error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* A sentence for what a pd_ function returned: "success" for 0, the
 * system's strerror(3) for a negative errno, a description for each PD_E_*
 * code, "unknown error code" otherwise. Never NULL. */
const char *pd_strerror(int rc);

/* Short machine name of a PD_E_* code ("invalid", "no_slot", ...); "ok"
 * for 0, "system" for a negative errno, "unknown" for any other value. */
const char *pd_error_code_to_string(int code);

#ifdef __cplusplus
}
#endif
