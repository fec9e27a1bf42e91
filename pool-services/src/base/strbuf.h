/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * A growable, NUL-terminated string. Start from { 0 }; s is allocated by
 * the first add and belongs to the caller (free(s)). When an allocation
 * fails, oom is set and every later add does nothing, so a writer checks
 * once at the end.
 */
typedef struct ps_strbuf {
        char *s;
        size_t len, cap;
        bool oom;
} ps_strbuf;

/* Room for extra more bytes and the NUL; false when out of memory. */
bool ps_strbuf_reserve(ps_strbuf *b, size_t extra);
void ps_strbuf_add(ps_strbuf *b, const char *s, size_t n);
void ps_strbuf_str(ps_strbuf *b, const char *s);
void ps_strbuf_printf(ps_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a Prometheus label value: backslash, double quote and line feed
 * escaped. */
void ps_strbuf_label_value(ps_strbuf *b, const char *s);
