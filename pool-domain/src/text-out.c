/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "text-out.h"

void pd_text_out_printf(pd_text_out *o, const char *fmt, ...) {
        va_list ap;
        int n;

        if (o->truncated)
                return;
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= o->len - o->pos)
                o->truncated = true;
        else
                o->pos += (size_t) n;
}

int pd_text_out_finish(pd_text_out *o) {
        if (o->truncated) {
                o->buf[0] = '\0';
                return -ENOSPC;
        }
        return (int) o->pos;
}
