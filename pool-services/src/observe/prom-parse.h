/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * The Prometheus text format 0.0.4, read as promtool reads it: text in,
 * families and samples out. No I/O, no event loop, no JSON.
 *
 * A line promtool would refuse is dropped and counted, never an error:
 * bad names, labels or values, invalid UTF-8 or escapes, a NUL byte, a
 * duplicate label, a camelCase label name, "le" or "quantile" where the
 * family's type does not want them (or missing where it does), a bad
 * timestamp, a second HELP or TYPE of a family, an unknown TYPE, a TYPE
 * after the family's samples, a series written again (the same name and
 * labels, in the same order: the first one stands). Plain comments, blank
 * lines and timestamps are dropped without a count.
 *
 * A sample joins the family named by HELP or TYPE it follows when its
 * name is that family's with a suffix the type allows (_bucket, _sum and
 * _count for a histogram; _sum and _count for a summary), else any
 * family of that name (so "x_sum" written after another family still
 * finds summary "x"), else a new untyped family of its full name.
 */

typedef enum ps_prom_type {
        PS_PROM_UNTYPED,
        PS_PROM_COUNTER,
        PS_PROM_GAUGE,
        PS_PROM_HISTOGRAM,
        PS_PROM_SUMMARY,
        PS_PROM_TYPE_MAX,
} ps_prom_type;

typedef enum ps_prom_suffix {
        PS_PROM_SUFFIX_NONE,
        PS_PROM_SUFFIX_BUCKET,
        PS_PROM_SUFFIX_SUM,
        PS_PROM_SUFFIX_COUNT,
        PS_PROM_SUFFIX_MAX,
} ps_prom_suffix;

/* "counter", ...; "" for the suffix NONE, "_bucket", ... NULL out of range. */
const char *ps_prom_type_to_string(ps_prom_type type);
const char *ps_prom_suffix_to_string(ps_prom_suffix suffix);

typedef struct ps_prom_family {
        char *name;               /* as the engine wrote it                  */
        char *help;               /* escaped as written; NULL: no HELP       */
        ps_prom_type type;        /* PS_PROM_UNTYPED without a TYPE line     */
        bool type_set;
        size_t n_samples;
} ps_prom_family;

/* Slices of the parsed text: not NUL-terminated. */
typedef struct ps_prom_label {
        const char *name, *value; /* value escaped as written                */
        size_t name_len, value_len;
} ps_prom_label;

typedef struct ps_prom_sample {
        size_t family;            /* index in families                       */
        ps_prom_suffix suffix;    /* the name is the family's plus this      */
        ps_prom_label *labels;    /* in the order written                    */
        size_t n_labels;
        const char *value_text;   /* as written: "1.5e-3", "+Inf"            */
        size_t value_len;
        double value;
} ps_prom_sample;

/*
 * Families in the order their names first appear, including those with
 * HELP or TYPE and no samples; samples in the order written.
 */
typedef struct ps_prom_text {
        ps_prom_family *families;
        size_t n_families;
        ps_prom_sample *samples;
        size_t n_samples;
        size_t dropped_lines;     /* refused, see above                      */
} ps_prom_text;

/*
 * Parses len bytes of text (NUL-terminated or not; lines end in "\n",
 * optionally "\r\n"; the last may have none). Samples point into text,
 * which must outlive the result. 0 and *ret, -EINVAL (text NULL with a
 * length, ret NULL), -ENOMEM.
 */
int ps_prom_parse(const char *text, size_t len, ps_prom_text **ret);
/* Accepts NULL; returns NULL. */
ps_prom_text *ps_prom_text_free(ps_prom_text *text);

/* promlint's camelCase rule: a lower-case letter followed by an upper-case one. */
bool ps_prom_camel_case(const char *s, size_t n);
