/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Appends formatted text into a caller's buffer and remembers whether
 * anything was cut off. The formatters of device masks and splits use it:
 * a cut-off list reads like a different, valid one ("0,1" cut to "0"), so
 * pd_text_out_finish() hands back an empty string and -ENOSPC, never a prefix.
 */
typedef struct pd_text_out {
        char *buf;
        size_t len;
        size_t pos;
        bool truncated;
} pd_text_out;

void pd_text_out_printf(pd_text_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The length written, or -ENOSPC (buf emptied) when it did not fit. */
int pd_text_out_finish(pd_text_out *o);

/* Whether line (len bytes, not NUL-terminated) holds needle, a lowercase
 * NUL-terminated string, ignoring ASCII case. No locale is consulted. */
bool pd_text_has_nocase(const char *line, size_t len, const char *needle);
