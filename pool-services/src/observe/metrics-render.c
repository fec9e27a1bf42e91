/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "base/strbuf.h"
#include "observe/metrics-private.h"

/* The Prometheus text format 0.0.4: HELP and TYPE lines, series, values. */

void ps_expo_header(ps_strbuf *o, const char *name, const char *type, const char *help) {
        ps_strbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void ps_expo_series(ps_strbuf *o, const char *name, const char *suffix,
                    const ps_expo_label *labels, size_t n) {
        ps_strbuf_str(o, name);
        ps_strbuf_str(o, suffix);
        if (n > 0) {
                ps_strbuf_str(o, "{");
                for (size_t i = 0; i < n; i++) {
                        ps_strbuf_printf(o, "%s%s=\"", i ? "," : "", labels[i].key);
                        ps_strbuf_label_value(o, labels[i].value);
                        ps_strbuf_str(o, "\"");
                }
                ps_strbuf_str(o, "}");
        }
        ps_strbuf_str(o, " ");
}

const char *ps_expo_format_ms(char buf[32], int64_t ms) {
        uint64_t a = ms < 0 ? (uint64_t) 0 - (uint64_t) ms : (uint64_t) ms;
        unsigned frac = (unsigned) (a % 1000);
        int n;

        if (frac == 0) {
                snprintf(buf, 32, "%s%" PRIu64, ms < 0 ? "-" : "", a / 1000);
                return buf;
        }
        n = snprintf(buf, 32, "%s%" PRIu64 ".%03u", ms < 0 ? "-" : "", a / 1000, frac);
        while (n > 0 && buf[n - 1] == '0')
                buf[--n] = '\0';
        return buf;
}

void ps_expo_u64_line(ps_strbuf *o, uint64_t v) {
        ps_strbuf_printf(o, "%" PRIu64 "\n", v);
}

void ps_expo_int_line(ps_strbuf *o, json_int_t v) {
        ps_strbuf_printf(o, "%" JSON_INTEGER_FORMAT "\n", v);
}

void ps_expo_ms_line(ps_strbuf *o, int64_t ms) {
        char buf[32];

        ps_strbuf_str(o, ps_expo_format_ms(buf, ms));
        ps_strbuf_str(o, "\n");
}
