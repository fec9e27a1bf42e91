/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pool-domain/error.h"

static void error_vformat(pd_error *err, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

static void error_vformat(pd_error *err, const char *fmt, va_list ap) {
        if (!err)
                return;
        /* A message longer than the buffer is cut, never left unterminated. */
        if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) < 0)
                err->msg[0] = '\0';
}

int pd_error_set(pd_error *err, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        error_vformat(err, fmt, ap);
        va_end(ap);
        return PD_E_INVALID;
}

int pd_error_setc(pd_error *err, int code, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        error_vformat(err, fmt, ap);
        va_end(ap);
        return code;
}

const char *pd_error_code_to_string(int code) {
        /* Callers pass whatever a pd_ function returned, so 0 and negative
         * errno values get names too rather than NULL. */
        if (code == 0)
                return "ok";
        if (code < 0)
                return "system";

        switch (code) {
        case PD_E_INVALID:
                return "invalid";
        case PD_E_NOT_FOUND:
                return "not_found";
        case PD_E_NO_SLOT:
                return "no_slot";
        case PD_E_NOT_LEASED:
                return "not_leased";
        case PD_E_OVERLAP:
                return "overlap";
        case PD_E_INSUFFICIENT:
                return "insufficient";
        case PD_E_TRANSITION:
                return "transition";
        case PD_E_BREAKER_OPEN:
                return "breaker_open";
        default:
                return "unknown";
        }
}

const char *pd_strerror(int rc) {
        if (rc == 0)
                return "success";
        if (rc < 0)
                return strerror(-rc);
        switch (rc) {
        case PD_E_INVALID:
                return "invalid input";
        case PD_E_NOT_FOUND:
                return "not found";
        case PD_E_NO_SLOT:
                return "no free slot: every slot is leased";
        case PD_E_NOT_LEASED:
                return "no such lease";
        case PD_E_OVERLAP:
                return "device masks overlap";
        case PD_E_INSUFFICIENT:
                return "not enough VRAM for the split";
        case PD_E_TRANSITION:
                return "event not allowed in the current state";
        case PD_E_BREAKER_OPEN:
                return "circuit breaker open: restart refused";
        default:
                return "unknown error code";
        }
}
