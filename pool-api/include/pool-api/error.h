/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Why a pool-api call failed, in words an operator can act on. The return
 * value of the call says the same as a code; the message names the input or
 * the address at fault.
 */

#define PA_ERROR_MAX 256

typedef struct pa_error {
        int error;                /* the negative errno also returned      */
        char msg[PA_ERROR_MAX];
} pa_error;

/* Fills err (which may be NULL) and returns r, so a function can write
 * `return pa_error_set(err, -EINVAL, "port %s is out of range", p);`. */
int pa_error_set(pa_error *err, int r, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
