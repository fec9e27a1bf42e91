/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"

bool ps_strbuf_reserve(ps_strbuf *b, size_t extra) {
        size_t cap;
        char *grown;

        if (b->oom)
                return false;
        if (b->len + extra + 1 <= b->cap)
                return true;
        cap = b->cap ? b->cap : 64;
        while (cap < b->len + extra + 1)
                cap *= 2;
        grown = realloc(b->s, cap);
        if (!grown) {
                b->oom = true;
                return false;
        }
        b->s = grown;
        b->cap = cap;
        return true;
}

void ps_strbuf_add(ps_strbuf *b, const char *s, size_t n) {
        if (!ps_strbuf_reserve(b, n))
                return;
        memcpy(b->s + b->len, s, n);
        b->len += n;
        b->s[b->len] = '\0';
}

void ps_strbuf_str(ps_strbuf *b, const char *s) {
        ps_strbuf_add(b, s, strlen(s));
}

void ps_strbuf_printf(ps_strbuf *b, const char *fmt, ...) {
        char small[128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(small, sizeof(small), fmt, ap);
        va_end(ap);
        if (n < 0) {
                b->oom = true;
                return;
        }
        if ((size_t) n < sizeof(small)) {
                ps_strbuf_add(b, small, (size_t) n);
                return;
        }
        if (!ps_strbuf_reserve(b, (size_t) n))
                return;
        va_start(ap, fmt);
        vsnprintf(b->s + b->len, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t) n;
}

void ps_strbuf_label_value(ps_strbuf *b, const char *s) {
        for (; *s; s++) {
                if (*s == '\\')
                        ps_strbuf_add(b, "\\\\", 2);
                else if (*s == '"')
                        ps_strbuf_add(b, "\\\"", 2);
                else if (*s == '\n')
                        ps_strbuf_add(b, "\\n", 2);
                else
                        ps_strbuf_add(b, s, 1);
        }
}
