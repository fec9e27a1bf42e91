/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "pool-api/error.h"

int pa_error_set(pa_error *err, int r, const char *fmt, ...) {
        va_list ap;

        if (!err)
                return r;
        err->error = r;
        va_start(ap, fmt);
        /* A message longer than the buffer is cut, never left unterminated. */
        if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) < 0)
                err->msg[0] = '\0';
        va_end(ap);
        return r;
}
