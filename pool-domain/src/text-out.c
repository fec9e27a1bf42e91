/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

/* Case-insensitive (ASCII) search of a NUL-terminated lowercase needle in
 * a buffer that need not be terminated. Log lines are short, so the naive
 * search is fast enough and keeps this free of locale-dependent calls. */
bool pd_text_has_nocase(const char *line, size_t len, const char *needle) {
        size_t n = strlen(needle);

        if (n > len)
                return false;
        for (size_t i = 0; i + n <= len; i++) {
                size_t j = 0;

                for (; j < n; j++) {
                        unsigned char c = (unsigned char) line[i + j];

                        if (c >= 'A' && c <= 'Z')
                                c = (unsigned char) (c - 'A' + 'a');
                        if (c != (unsigned char) needle[j])
                                break;
                }
                if (j == n)
                        return true;
        }
        return false;
}
