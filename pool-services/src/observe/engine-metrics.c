/* SPDX-License-Identifier: MIT */
/*
 * Engines' own /metrics: parse and relabel one scrape (pure), merge many
 * into one exposition (pure), smooth performance hints (pure), and the
 * scraper that fetches on the event loop and keeps the last good scrape
 * of every replica. docs/metrics.md ("Engine metrics") is the user's side.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/strbuf.h"
#include "pool-services/config.h"
#include "pool-services/engine-metrics.h"
#include "pool-services/probe.h"
#include "pool-services/registry.h"

#define LABELS_MAX 64
#define VALUE_MAX 64
#define PATH_MAX_LEN 255
#define OUR_PREFIX "pool_managerd_"
#define ENGINE_PREFIX "engine_"

/* ---- a string -> index map (open addressing) ------------------------------ */

typedef struct strmap {
        char **keys;
        size_t *vals;
        size_t cap, n;
} strmap;

static uint64_t hash_bytes(const char *s, size_t n) {
        uint64_t h = 1469598103934665603ULL;      /* FNV-1a */

        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char) s[i];
                h *= 1099511628211ULL;
        }
        return h;
}

static void strmap_clear(strmap *m) {
        for (size_t i = 0; i < m->cap; i++)
                free(m->keys[i]);
        free(m->keys);
        free(m->vals);
        *m = (strmap) { 0 };
}

static int strmap_grow(strmap *m) {
        strmap bigger = { .cap = m->cap ? m->cap * 2 : 64 };

        bigger.keys = calloc(bigger.cap, sizeof(*bigger.keys));
        bigger.vals = calloc(bigger.cap, sizeof(*bigger.vals));
        if (!bigger.keys || !bigger.vals) {
                free(bigger.keys);
                free(bigger.vals);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
                size_t j;

                if (!m->keys[i])
                        continue;
                j = hash_bytes(m->keys[i], strlen(m->keys[i])) & (bigger.cap - 1);
                while (bigger.keys[j])
                        j = (j + 1) & (bigger.cap - 1);
                bigger.keys[j] = m->keys[i];
                bigger.vals[j] = m->vals[i];
        }
        bigger.n = m->n;
        free(m->keys);
        free(m->vals);
        *m = bigger;
        return 0;
}

/* The slot of key, or of where it would go; SIZE_MAX for an empty map. */
static size_t strmap_slot(const strmap *m, const char *key, size_t n) {
        size_t j;

        if (m->cap == 0)
                return SIZE_MAX;
        j = hash_bytes(key, n) & (m->cap - 1);
        while (m->keys[j] && !(strncmp(m->keys[j], key, n) == 0 && m->keys[j][n] == '\0'))
                j = (j + 1) & (m->cap - 1);
        return j;
}

static bool strmap_get(const strmap *m, const char *key, size_t n, size_t *val) {
        size_t j = strmap_slot(m, key, n);

        if (j == SIZE_MAX || !m->keys[j])
                return false;
        *val = m->vals[j];
        return true;
}

/* 0 added, 1 already there (*val left), -ENOMEM. */
static int strmap_put(strmap *m, const char *key, size_t n, size_t val) {
        size_t j;

        if ((m->n + 1) * 2 > m->cap && strmap_grow(m) < 0)
                return -ENOMEM;
        j = strmap_slot(m, key, n);
        if (m->keys[j])
                return 1;
        m->keys[j] = strndup(key, n);
        if (!m->keys[j])
                return -ENOMEM;
        m->vals[j] = val;
        m->n++;
        return 0;
}

/* ---- the text format's pieces --------------------------------------------- */

typedef enum fam_type {
        T_UNTYPED,
        T_COUNTER,
        T_GAUGE,
        T_HISTOGRAM,
        T_SUMMARY,
        T_MAX,
} fam_type;

static const char *const type_names[T_MAX] = {
        [T_UNTYPED] = "untyped",
        [T_COUNTER] = "counter",
        [T_GAUGE] = "gauge",
        [T_HISTOGRAM] = "histogram",
        [T_SUMMARY] = "summary",
};

typedef enum suffix {
        SUF_NONE,
        SUF_BUCKET,
        SUF_SUM,
        SUF_COUNT,
        SUF_MAX,
} suffix;

static const char *const suffix_names[SUF_MAX] = {
        [SUF_NONE] = "",
        [SUF_BUCKET] = "_bucket",
        [SUF_SUM] = "_sum",
        [SUF_COUNT] = "_count",
};

static bool is_name_start(char c) { return isalpha((unsigned char) c) || c == '_' || c == ':'; }
static bool is_name_char(char c) { return isalnum((unsigned char) c) || c == '_' || c == ':'; }
static bool is_label_start(char c) { return isalpha((unsigned char) c) || c == '_'; }
static bool is_label_char(char c) { return isalnum((unsigned char) c) || c == '_'; }
static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static bool ends_with(const char *s, size_t n, const char *tail) {
        size_t t = strlen(tail);

        return n >= t && memcmp(s + n - t, tail, t) == 0;
}

static bool utf8_valid(const unsigned char *s, size_t n) {
        size_t i = 0;

        while (i < n) {
                unsigned char c = s[i];
                size_t more;
                uint32_t cp;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xe0) == 0xc0) {
                        more = 1;
                        cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        more = 2;
                        cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        more = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                for (size_t k = 1; k <= more; k++) {
                        if (i + k >= n || (s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) ||
                    (more == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += more + 1;
        }
        return true;
}

/*
 * Escaped text as the format allows it: in HELP \\ and \n; in a label
 * value also \". Anything else after a backslash fails the line.
 */
static bool escapes_valid(const char *s, size_t n, bool quote_allowed) {
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '\\')
                        continue;
                if (i + 1 >= n)
                        return false;
                i++;
                if (s[i] != '\\' && s[i] != 'n' && !(quote_allowed && s[i] == '"'))
                        return false;
        }
        return utf8_valid((const unsigned char *) s, n);
}

/* A sample value as Prometheus reads it: a decimal float, NaN, +Inf, -Inf. */
static bool value_parse(const char *s, size_t n, double *ret) {
        char buf[VALUE_MAX];
        char *end;

        if (n == 0 || n >= sizeof(buf))
                return false;
        memcpy(buf, s, n);
        buf[n] = '\0';
        if (strcasecmp(buf, "nan") == 0) {
                *ret = NAN;
                return true;
        }
        if (strcasecmp(buf, "+inf") == 0 || strcasecmp(buf, "inf") == 0) {
                *ret = INFINITY;
                return true;
        }
        if (strcasecmp(buf, "-inf") == 0) {
                *ret = -INFINITY;
                return true;
        }
        for (size_t i = 0; i < n; i++)
                if (!strchr("0123456789+-.eE", buf[i]))
                        return false;
        errno = 0;
        *ret = strtod(buf, &end);
        return end == buf + n && end != buf;
}

/* promlint's camelCase rule: a lower-case letter followed by an upper-case one. */
static bool camel_case(const char *s, size_t n) {
        for (size_t i = 0; i + 1 < n; i++)
                if (islower((unsigned char) s[i]) && isupper((unsigned char) s[i + 1]))
                        return true;
        return false;
}

/* ---- parsing ---------------------------------------------------------------- */

typedef struct psample {
        suffix suf;
        char *rest;               /* "{labels} value" */
        double value;
} psample;

typedef struct pfamily {
        char *orig;               /* the engine's name */
        char *help;               /* escaped, as written; NULL: none */
        fam_type type;
        bool type_set;
        psample *v;
        size_t n, cap;
} pfamily;

typedef struct parser {
        const char *pool_id, *replica_id;
        pfamily *fams;
        size_t n_fams, cap_fams;
        strmap by_name;           /* orig name -> index */
        strmap series;            /* sample name + labels: duplicates */
        size_t current;           /* SIZE_MAX: none */
        ps_relabel_stats stats;
} parser;

static void pfamily_clear(pfamily *f) {
        for (size_t i = 0; i < f->n; i++)
                free(f->v[i].rest);
        free(f->v);
        free(f->orig);
        free(f->help);
}

static void parser_clear(parser *p) {
        for (size_t i = 0; i < p->n_fams; i++)
                pfamily_clear(&p->fams[i]);
        free(p->fams);
        strmap_clear(&p->by_name);
        strmap_clear(&p->series);
}

/* The family named so, created when new. -ENOMEM or 0. */
static int family_get(parser *p, const char *name, size_t n, size_t *ret) {
        pfamily *f;
        int r;

        if (strmap_get(&p->by_name, name, n, ret))
                return 0;
        if (p->n_fams == p->cap_fams) {
                size_t cap = p->cap_fams ? p->cap_fams * 2 : 16;
                pfamily *grown = realloc(p->fams, cap * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                p->fams = grown;
                p->cap_fams = cap;
        }
        f = &p->fams[p->n_fams];
        *f = (pfamily) { .orig = strndup(name, n) };
        if (!f->orig)
                return -ENOMEM;
        r = strmap_put(&p->by_name, name, n, p->n_fams);
        if (r < 0) {
                free(f->orig);
                return r;
        }
        *ret = p->n_fams++;
        return 0;
}

/* "# HELP name text" / "# TYPE name type"; other comments are dropped. */
static int parse_comment(parser *p, const char *s, size_t n) {
        const char *end = s + n, *kw, *name, *rest;
        size_t kw_len, name_len, idx;
        bool help;
        int r;

        s++;                                    /* '#' */
        while (s < end && is_blank(*s))
                s++;
        kw = s;
        while (s < end && !is_blank(*s))
                s++;
        kw_len = (size_t) (s - kw);
        if (kw_len == 4 && memcmp(kw, "HELP", 4) == 0)
                help = true;
        else if (kw_len == 4 && memcmp(kw, "TYPE", 4) == 0)
                help = false;
        else
                return 0;                       /* a plain comment */
        while (s < end && is_blank(*s))
                s++;
        name = s;
        if (s == end || !is_name_start(*s)) {
                p->stats.dropped_lines++;
                return 0;
        }
        while (s < end && is_name_char(*s))
                s++;
        name_len = (size_t) (s - name);
        if (s < end && !is_blank(*s)) {
                p->stats.dropped_lines++;
                return 0;
        }
        while (s < end && is_blank(*s))
                s++;
        rest = s;

        r = family_get(p, name, name_len, &idx);
        if (r < 0)
                return r;
        p->current = idx;
        if (help) {
                pfamily *f = &p->fams[idx];
                size_t rest_len = (size_t) (end - rest);

                if (f->help || !escapes_valid(rest, rest_len, false)) {
                        p->stats.dropped_lines++;
                        return 0;
                }
                f->help = strndup(rest, rest_len);
                return f->help ? 0 : -ENOMEM;
        } else {
                pfamily *f = &p->fams[idx];
                size_t rest_len = (size_t) (end - rest);
                int t;

                while (rest_len > 0 && is_blank(rest[rest_len - 1]))
                        rest_len--;
                for (t = 0; t < T_MAX; t++)
                        if (strlen(type_names[t]) == rest_len &&
                            memcmp(type_names[t], rest, rest_len) == 0)
                                break;
                /* A TYPE after samples, twice, or unknown: the family stays as it is. */
                if (t == T_MAX || f->type_set || f->n > 0) {
                        p->stats.dropped_lines++;
                        return 0;
                }
                f->type = (fam_type) t;
                f->type_set = true;
                return 0;
        }
}

/* Which family a sample named so belongs to, and with which suffix. */
static int sample_family(parser *p, const char *name, size_t n, size_t *idx, suffix *suf) {
        /* the family being read, then any family by its own name */
        for (int pass = 0; pass < 2; pass++) {
                for (int s = SUF_NONE; s < SUF_MAX; s++) {
                        size_t t = strlen(suffix_names[s]);
                        size_t i;
                        const pfamily *f;

                        if (!ends_with(name, n, suffix_names[s]))
                                continue;
                        if (pass == 0) {
                                if (p->current == SIZE_MAX)
                                        break;
                                i = p->current;
                                f = &p->fams[i];
                                if (strlen(f->orig) != n - t || memcmp(f->orig, name, n - t) != 0)
                                        continue;
                        } else {
                                if (!strmap_get(&p->by_name, name, n - t, &i))
                                        continue;
                                f = &p->fams[i];
                        }
                        if (s == SUF_NONE ||
                            (f->type == T_HISTOGRAM) ||
                            (f->type == T_SUMMARY && s != SUF_BUCKET)) {
                                *idx = i;
                                *suf = (suffix) s;
                                return 0;
                        }
                }
        }
        *suf = SUF_NONE;
        return family_get(p, name, n, idx);
}

typedef struct label {
        const char *name, *value;
        size_t name_len, value_len;
} label;

static bool label_is(const label *l, const char *name) {
        return l->name_len == strlen(name) && memcmp(l->name, name, l->name_len) == 0;
}

static int parse_sample(parser *p, const char *s, size_t n) {
        const char *end = s + n, *name = s, *after_name, *value;
        size_t name_len, value_len, n_labels = 0, idx;
        label labels[LABELS_MAX];
        bool has_le = false, has_quantile = false, first = true;
        ps_strbuf rest = { 0 }, key = { 0 };
        pfamily *f;
        psample *ps;
        suffix suf;
        double v;
        int r;

        while (s < end && is_name_char(*s))
                s++;
        name_len = (size_t) (s - name);
        after_name = s;
        while (s < end && is_blank(*s))
                s++;
        if (s < end && *s == '{') {
                s++;
                for (;;) {
                        label *l;

                        while (s < end && is_blank(*s))
                                s++;
                        if (s < end && *s == '}') {
                                s++;
                                break;
                        }
                        if (s == end || !is_label_start(*s) || n_labels == LABELS_MAX)
                                goto malformed;
                        l = &labels[n_labels++];
                        l->name = s;
                        while (s < end && is_label_char(*s))
                                s++;
                        l->name_len = (size_t) (s - l->name);
                        while (s < end && is_blank(*s))
                                s++;
                        if (s == end || *s != '=')
                                goto malformed;
                        s++;
                        while (s < end && is_blank(*s))
                                s++;
                        if (s == end || *s != '"')
                                goto malformed;
                        l->value = ++s;
                        while (s < end && *s != '"') {
                                if (*s == '\\')
                                        s++;
                                s++;
                        }
                        if (s >= end)
                                goto malformed;
                        l->value_len = (size_t) (s - l->value);
                        s++;
                        if (!escapes_valid(l->value, l->value_len, true) ||
                            camel_case(l->name, l->name_len))
                                goto malformed;
                        for (size_t k = 0; k + 1 < n_labels; k++)
                                if (labels[k].name_len == l->name_len &&
                                    memcmp(labels[k].name, l->name, l->name_len) == 0)
                                        goto malformed;
                        while (s < end && is_blank(*s))
                                s++;
                        if (s < end && *s == ',')
                                s++;
                        else if (s < end && *s != '}')
                                goto malformed;
                }
                if (s == end || !is_blank(*s))
                        goto malformed;
                while (s < end && is_blank(*s))
                        s++;
        } else if (s == after_name) {
                goto malformed;                 /* "name1" is not "name 1" */
        }
        value = s;
        while (s < end && !is_blank(*s))
                s++;
        value_len = (size_t) (s - value);
        if (!value_parse(value, value_len, &v))
                goto malformed;
        while (s < end && is_blank(*s))
                s++;
        if (s < end) {                          /* a timestamp: checked, then dropped */
                const char *ts = s;

                if (*s == '-')
                        s++;
                while (s < end && isdigit((unsigned char) *s))
                        s++;
                if (s == ts || s[-1] == '-')
                        goto malformed;
                while (s < end && is_blank(*s))
                        s++;
                if (s < end)
                        goto malformed;
        }

        r = sample_family(p, name, name_len, &idx, &suf);
        if (r < 0)
                return r;
        p->current = idx;
        f = &p->fams[idx];

        for (size_t k = 0; k < n_labels; k++) {
                if (label_is(&labels[k], "le")) {
                        double le;

                        if (!value_parse(labels[k].value, labels[k].value_len, &le))
                                goto malformed;
                        has_le = true;
                }
                if (label_is(&labels[k], "quantile"))
                        has_quantile = true;
        }
        /* What promtool insists on: le only on buckets, quantile only on a
         * summary's quantiles, and buckets and quantiles carry theirs. */
        if (has_le != (f->type == T_HISTOGRAM && suf == SUF_BUCKET) ||
            has_quantile != (f->type == T_SUMMARY && suf == SUF_NONE))
                goto malformed;

        ps_strbuf_add(&rest, "{", 1);
        for (size_t k = 0; k < n_labels; k++) {
                const label *l = &labels[k];

                if (!first)
                        ps_strbuf_add(&rest, ",", 1);
                first = false;
                /* ours win; the engine's stays visible under another name */
                if (label_is(l, "pool_id") || label_is(l, "replica_id"))
                        ps_strbuf_str(&rest, "exported_");
                ps_strbuf_add(&rest, l->name, l->name_len);
                ps_strbuf_add(&rest, "=\"", 2);
                ps_strbuf_add(&rest, l->value, l->value_len);
                ps_strbuf_add(&rest, "\"", 1);
        }
        if (!first)
                ps_strbuf_add(&rest, ",", 1);
        ps_strbuf_str(&rest, "pool_id=\"");
        ps_strbuf_label_value(&rest, p->pool_id);
        ps_strbuf_str(&rest, "\",replica_id=\"");
        ps_strbuf_label_value(&rest, p->replica_id);
        ps_strbuf_str(&rest, "\"}");

        /* the same series twice: the first one stands */
        ps_strbuf_add(&key, name, name_len);
        ps_strbuf_add(&key, rest.s ? rest.s : "", rest.len);
        if (rest.oom || key.oom) {
                free(rest.s);
                free(key.s);
                return -ENOMEM;
        }
        r = strmap_put(&p->series, key.s, key.len, 0);
        free(key.s);
        if (r != 0) {
                free(rest.s);
                if (r < 0)
                        return r;
                p->stats.dropped_lines++;
                return 0;
        }
        ps_strbuf_add(&rest, " ", 1);
        ps_strbuf_add(&rest, value, value_len);
        if (rest.oom) {
                free(rest.s);
                return -ENOMEM;
        }

        if (f->n == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 4;
                psample *grown = realloc(f->v, cap * sizeof(*grown));

                if (!grown) {
                        free(rest.s);
                        return -ENOMEM;
                }
                f->v = grown;
                f->cap = cap;
        }
        ps = &f->v[f->n++];
        *ps = (psample) { .suf = suf, .rest = rest.s, .value = v };
        return 0;

malformed:
        p->stats.dropped_lines++;
        return 0;
}

static int parse_line(parser *p, const char *s, size_t n) {
        while (n > 0 && (is_blank(s[n - 1]) || s[n - 1] == '\r'))
                n--;
        while (n > 0 && is_blank(*s)) {
                s++;
                n--;
        }
        if (n == 0)
                return 0;
        if (memchr(s, '\0', n)) {
                p->stats.dropped_lines++;
                return 0;
        }
        if (*s == '#')
                return parse_comment(p, s, n);
        if (!is_name_start(*s)) {
                p->stats.dropped_lines++;
                return 0;
        }
        return parse_sample(p, s, n);
}

/* ---- names promtool accepts --------------------------------------------------- */

static bool token_in(const char *tok, size_t n, const char *const *list) {
        for (; *list; list++)
                if (strlen(*list) == n && memcmp(*list, tok, n) == 0)
                        return true;
        return false;
}

/* promlint's rules on a metric name, by its "_"-separated words. */
static bool name_refused(const char *name, fam_type type) {
        static const char *const abbreviations[] = {
                "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d", NULL,
        };
        static const char *const types[] = {
                "counter", "gauge", "histogram", "summary", "untyped", NULL,
        };
        static const char *const base_units[] = {
                "amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters", "metres",
                "seconds", "volts", NULL,
        };
        static const char *const other_units[] = {
                "minutes", "hours", "days", "weeks", "kelvins", "fahrenheit", "rankine",
                "inches", "yards", "miles", "feet", "grains", "pounds", "ounces", "calories",
                "bits", "percents", NULL,
        };
        static const char *const prefixes[] = {
                "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo",
                "kibi", "mega", "mebi", "giga", "gibi", "tera", "tebi", "peta", "pebi", NULL,
        };
        size_t n = strlen(name);

        if (camel_case(name, n))
                return true;
        if (type != T_COUNTER && type != T_UNTYPED && ends_with(name, n, "_total"))
                return true;
        if (type != T_HISTOGRAM && ends_with(name, n, "_bucket"))
                return true;
        if (type != T_HISTOGRAM && type != T_SUMMARY &&
            (ends_with(name, n, "_count") || ends_with(name, n, "_sum")))
                return true;
        for (const char *w = name; *w;) {
                size_t len = strcspn(w, "_");

                if (token_in(w, len, abbreviations) || token_in(w, len, types) ||
                    token_in(w, len, other_units))
                        return true;
                for (const char *const *pre = prefixes; *pre; pre++) {
                        size_t pl = strlen(*pre);

                        if (len > pl && memcmp(w, *pre, pl) == 0 &&
                            (token_in(w + pl, len - pl, base_units) ||
                             token_in(w + pl, len - pl, other_units)))
                                return true;
                }
                w += len;
                if (*w == '_')
                        w++;
        }
        return false;
}

/* The name we publish, or NULL (refused, or OOM: *oom). */
static char *name_publish(const char *orig, fam_type type, bool *oom) {
        ps_strbuf b = { 0 };

        if (strncmp(orig, OUR_PREFIX, strlen(OUR_PREFIX)) == 0)
                ps_strbuf_str(&b, ENGINE_PREFIX);
        ps_strbuf_str(&b, orig);
        if (b.oom) {
                *oom = true;
                return NULL;
        }
        for (char *c = b.s; *c; c++)
                if (*c == ':')
                        *c = '_';
        if (type == T_COUNTER && !ends_with(b.s, b.len, "_total"))
                ps_strbuf_str(&b, "_total");
        if (b.oom) {
                *oom = true;
                return NULL;
        }
        if (name_refused(b.s, type)) {
                free(b.s);
                return NULL;
        }
        return b.s;
}

/* ---- the relabelled scrape ------------------------------------------------------ */

typedef struct family {
        char *name;
        char *help;               /* escaped */
        fam_type type;
        char *text;               /* its sample lines */
        size_t text_len;
        size_t n_samples;
        size_t order;             /* in the engine's text: the first name wins */
        bool has[SUF_MAX];
        double sum[SUF_MAX];      /* over label sets */
} family;

struct ps_engine_scrape {
        family *fams;
        size_t n;
        size_t bytes;
};

static void family_clear(family *f) {
        free(f->name);
        free(f->help);
        free(f->text);
}

ps_engine_scrape *ps_engine_scrape_free(ps_engine_scrape *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                family_clear(&s->fams[i]);
        free(s->fams);
        free(s);
        return NULL;
}

size_t ps_engine_scrape_bytes(const ps_engine_scrape *s) {
        return s ? s->bytes : 0;
}

static size_t family_bytes(const family *f) {
        /* "# HELP name help\n# TYPE name type\n" + samples */
        return 8 + strlen(f->name) + strlen(f->help) + 1 + 8 + strlen(f->name) +
               strlen(type_names[f->type]) + 1 + f->text_len;
}

static int family_cmp(const void *a, const void *b) {
        return strcmp(((const family *) a)->name, ((const family *) b)->name);
}

static int family_order_cmp(const void *a, const void *b) {
        const family *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        if (c)
                return c;
        return x->order < y->order ? -1 : x->order > y->order;
}

static int family_build(const pfamily *pf, family *out, bool *refused) {
        ps_strbuf text = { 0 };
        bool oom = false;

        *out = (family) { .type = pf->type };
        *refused = false;
        out->name = name_publish(pf->orig, pf->type, &oom);
        if (oom)
                return -ENOMEM;
        if (!out->name) {
                *refused = true;
                return 0;
        }
        if (pf->help) {
                out->help = strdup(pf->help);
        } else {
                ps_strbuf h = { 0 };

                ps_strbuf_str(&h, "Reported by the engine as ");
                ps_strbuf_str(&h, pf->orig);
                ps_strbuf_str(&h, " (without help text).");
                out->help = h.s;
                oom = h.oom;
        }
        if (!out->help || oom) {
                family_clear(out);
                return -ENOMEM;
        }
        for (size_t i = 0; i < pf->n; i++) {
                const psample *s = &pf->v[i];

                ps_strbuf_str(&text, out->name);
                ps_strbuf_str(&text, suffix_names[s->suf]);
                ps_strbuf_str(&text, s->rest);
                ps_strbuf_add(&text, "\n", 1);
                if (s->suf != SUF_BUCKET && !isnan(s->value)) {
                        out->sum[s->suf] += s->value;
                        out->has[s->suf] = true;
                }
        }
        if (text.oom) {
                free(text.s);
                family_clear(out);
                return -ENOMEM;
        }
        out->text = text.s;
        out->text_len = text.len;
        out->n_samples = pf->n;
        return 0;
}

int ps_engine_metrics_relabel(const char *text, size_t len, const char *pool_id,
                              const char *replica_id, size_t max_bytes,
                              ps_engine_scrape **ret, ps_relabel_stats *stats) {
        parser p = { .pool_id = pool_id, .replica_id = replica_id, .current = SIZE_MAX };
        ps_engine_scrape *s;
        size_t kept = 0;
        int r = 0;

        if ((!text && len) || !pool_id || !replica_id || !ret)
                return -EINVAL;
        for (size_t i = 0; i < len && r == 0;) {
                const char *nl = memchr(text + i, '\n', len - i);
                size_t n = nl ? (size_t) (nl - (text + i)) : len - i;

                r = parse_line(&p, text + i, n);
                i += n + 1;
        }
        if (r < 0) {
                parser_clear(&p);
                return r;
        }

        s = calloc(1, sizeof(*s));
        if (!s || !(s->fams = calloc(p.n_fams ? p.n_fams : 1, sizeof(*s->fams)))) {
                free(s);
                parser_clear(&p);
                return -ENOMEM;
        }
        for (size_t i = 0; i < p.n_fams; i++) {
                bool refused;

                if (p.fams[i].n == 0)
                        continue;               /* HELP and TYPE, no samples */
                r = family_build(&p.fams[i], &s->fams[s->n], &refused);
                if (r < 0) {
                        parser_clear(&p);
                        ps_engine_scrape_free(s);
                        return r;
                }
                if (refused) {
                        p.stats.dropped_families++;
                        p.stats.dropped_lines += p.fams[i].n;
                        continue;
                }
                s->fams[s->n].order = i;
                s->n++;
        }
        parser_clear(&p);

        qsort(s->fams, s->n, sizeof(*s->fams), family_order_cmp);
        /* Names that met after renaming ("a:b" and "a_b"), and the cap. */
        for (size_t i = 0; i < s->n; i++) {
                family *f = &s->fams[i];
                size_t b = family_bytes(f);

                if ((kept > 0 && strcmp(s->fams[kept - 1].name, f->name) == 0) ||
                    (max_bytes && s->bytes + b > max_bytes)) {
                        p.stats.dropped_families++;
                        p.stats.dropped_lines += f->n_samples;
                        family_clear(f);
                        continue;
                }
                s->bytes += b;
                p.stats.samples += f->n_samples;
                s->fams[kept++] = *f;
        }
        s->n = kept;
        p.stats.families = kept;
        if (stats)
                *stats = p.stats;
        *ret = s;
        return 0;
}

static const family *scrape_find(const ps_engine_scrape *s, const char *name) {
        family key = { .name = (char *) name };

        if (!s || s->n == 0)
                return NULL;
        return bsearch(&key, s->fams, s->n, sizeof(*s->fams), family_cmp);
}

bool ps_engine_scrape_value(const ps_engine_scrape *s, const char *name, double *ret) {
        size_t n = name ? strlen(name) : 0;
        const family *f;

        if (!s || !name)
                return false;
        f = scrape_find(s, name);
        if (f && f->has[SUF_NONE]) {
                *ret = f->sum[SUF_NONE];
                return true;
        }
        for (int suf = SUF_SUM; suf <= SUF_COUNT; suf++) {
                size_t t = strlen(suffix_names[suf]);
                char base[256];

                if (!ends_with(name, n, suffix_names[suf]) || n - t >= sizeof(base))
                        continue;
                memcpy(base, name, n - t);
                base[n - t] = '\0';
                f = scrape_find(s, base);
                if (f && (f->type == T_HISTOGRAM || f->type == T_SUMMARY) && f->has[suf]) {
                        *ret = f->sum[suf];
                        return true;
                }
        }
        return false;
}

/* ---- merging scrapes ------------------------------------------------------------- */

typedef struct merge_item {
        const family *f;
        size_t scrape;
} merge_item;

static int merge_cmp(const void *a, const void *b) {
        const merge_item *x = a, *y = b;
        int c = strcmp(x->f->name, y->f->name);

        if (c)
                return c;
        return x->scrape < y->scrape ? -1 : x->scrape > y->scrape;
}

int ps_engine_scrapes_render(const ps_engine_scrape *const *scrapes, size_t n,
                             struct evbuffer *out) {
        merge_item *items;
        size_t total = 0, k = 0;
        int r = 0;

        if ((!scrapes && n) || !out)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                total += scrapes[i] ? scrapes[i]->n : 0;
        if (total == 0)
                return 0;
        items = malloc(total * sizeof(*items));
        if (!items)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; scrapes[i] && j < scrapes[i]->n; j++)
                        items[k++] = (merge_item) { .f = &scrapes[i]->fams[j], .scrape = i };
        qsort(items, total, sizeof(*items), merge_cmp);

        for (size_t i = 0; i < total && r == 0;) {
                const family *head = items[i].f;
                size_t j = i;

                if (evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", head->name,
                                        head->help, head->name, type_names[head->type]) < 0)
                        r = -ENOMEM;
                for (; j < total && strcmp(items[j].f->name, head->name) == 0; j++) {
                        if (r == 0 && items[j].f->type == head->type &&
                            evbuffer_add(out, items[j].f->text, items[j].f->text_len) < 0)
                                r = -ENOMEM;
                }
                i = j;
        }
        free(items);
        return r;
}

/* ---- performance hints ------------------------------------------------------------ */

enum {
        C_LLAMA_TOKENS,           /* llamacpp_tokens_predicted_total          */
        C_LLAMA_SECONDS,          /* llamacpp_tokens_predicted_seconds_total  */
        C_VLLM_TOKENS,            /* vllm_generation_tokens_total             */
        C_TTFT_SUM,               /* vllm_time_to_first_token_seconds_sum     */
        C_TTFT_COUNT,             /* vllm_time_to_first_token_seconds_count   */
        C_MAX,
};

static const char *const counter_names[C_MAX] = {
        [C_LLAMA_TOKENS] = "llamacpp_tokens_predicted_total",
        [C_LLAMA_SECONDS] = "llamacpp_tokens_predicted_seconds_total",
        [C_VLLM_TOKENS] = "vllm_generation_tokens_total",
        [C_TTFT_SUM] = "vllm_time_to_first_token_seconds_sum",
        [C_TTFT_COUNT] = "vllm_time_to_first_token_seconds_count",
};

_Static_assert(C_MAX <= sizeof(((ps_perf_hints *) 0)->prev) / sizeof(double),
               "ps_perf_hints keeps every counter");

void ps_perf_hints_init(ps_perf_hints *h, double alpha) {
        *h = (ps_perf_hints) { .alpha = (alpha > 0 && alpha <= 1) ? alpha : PS_ENGINE_METRICS_ALPHA };
}

static void ewma(double alpha, bool *have, double *value, double sample) {
        if (!isfinite(sample) || sample < 0)
                return;
        *value = *have ? alpha * sample + (1 - alpha) * *value : sample;
        *have = true;
}

void ps_perf_hints_observe(ps_perf_hints *h, const ps_engine_scrape *s, int64_t now_ms) {
        bool has[C_MAX];
        double cur[C_MAX], d[C_MAX];
        bool delta_ok = h->prev_valid && now_ms > h->prev_ms;
        double gauge;

        for (int i = 0; i < C_MAX; i++) {
                has[i] = ps_engine_scrape_value(s, counter_names[i], &cur[i]) && isfinite(cur[i]);
                d[i] = 0;
                if (has[i] && delta_ok && h->prev_has[i]) {
                        d[i] = cur[i] - h->prev[i];
                        if (d[i] < 0)           /* a counter went back: restarted */
                                delta_ok = false;
                }
        }

        if (has[C_LLAMA_TOKENS] && has[C_LLAMA_SECONDS]) {
                if (delta_ok && h->prev_has[C_LLAMA_TOKENS] && h->prev_has[C_LLAMA_SECONDS] &&
                    d[C_LLAMA_TOKENS] > 0 && d[C_LLAMA_SECONDS] > 0)
                        ewma(h->alpha, &h->have_tokens_per_s, &h->tokens_per_s,
                             d[C_LLAMA_TOKENS] / d[C_LLAMA_SECONDS]);
        } else if (has[C_VLLM_TOKENS]) {
                if (delta_ok && h->prev_has[C_VLLM_TOKENS] && d[C_VLLM_TOKENS] > 0)
                        ewma(h->alpha, &h->have_tokens_per_s, &h->tokens_per_s,
                             d[C_VLLM_TOKENS] * 1000.0 / (double) (now_ms - h->prev_ms));
        } else if (ps_engine_scrape_value(s, "llamacpp_predicted_tokens_seconds", &gauge) &&
                   gauge > 0) {
                ewma(h->alpha, &h->have_tokens_per_s, &h->tokens_per_s, gauge);
        }

        if (has[C_TTFT_SUM] && has[C_TTFT_COUNT] && delta_ok && h->prev_has[C_TTFT_SUM] &&
            h->prev_has[C_TTFT_COUNT] && d[C_TTFT_COUNT] > 0)
                ewma(h->alpha, &h->have_first_token_ms, &h->first_token_ms,
                     d[C_TTFT_SUM] / d[C_TTFT_COUNT] * 1000.0);

        for (int i = 0; i < C_MAX; i++) {
                h->prev_has[i] = has[i];
                h->prev[i] = has[i] ? cur[i] : 0;
        }
        h->prev_ms = now_ms;
        h->prev_valid = true;
}

bool ps_perf_hints_tokens_per_s(const ps_perf_hints *h, double *ret) {
        if (!h || !h->have_tokens_per_s)
                return false;
        *ret = h->tokens_per_s;
        return true;
}

bool ps_perf_hints_first_token_ms(const ps_perf_hints *h, double *ret) {
        if (!h || !h->have_first_token_ms)
                return false;
        *ret = h->first_token_ms;
        return true;
}

/* ---- the scraper ------------------------------------------------------------------- */

typedef struct pool_setting {
        char *pool_id;
        char *path;
        bool enabled;
} pool_setting;

typedef struct entry {
        ps_engine_metrics *em;
        char *pool_id, *replica_id;
        ps_probe *probe;          /* in flight */
        ps_engine_scrape *cache;  /* last good one */
        unsigned missed;
        bool seen;                /* ready and enabled at this tick */
        int pid;                  /* the engine the hints describe */
        ps_perf_hints perf;
} entry;

struct ps_engine_metrics {
        const ps_context *ctx;
        ps_registry *reg;
        ps_engine_metrics_options opt;
        struct event *timer;
        pool_setting *pools;
        size_t n_pools;
        entry **entries;
        size_t n_entries;
};

static void entry_free(entry *e) {
        if (!e)
                return;
        ps_probe_cancel(e->probe);
        ps_engine_scrape_free(e->cache);
        free(e->pool_id);
        free(e->replica_id);
        free(e);
}

static void entry_remove(ps_engine_metrics *em, size_t i) {
        entry_free(em->entries[i]);
        memmove(&em->entries[i], &em->entries[i + 1],
                (em->n_entries - i - 1) * sizeof(*em->entries));
        em->n_entries--;
}

static entry *entry_find(const ps_engine_metrics *em, const char *pool_id,
                         const char *replica_id, size_t *index) {
        for (size_t i = 0; i < em->n_entries; i++) {
                entry *e = em->entries[i];

                if (strcmp(e->pool_id, pool_id) == 0 && strcmp(e->replica_id, replica_id) == 0) {
                        if (index)
                                *index = i;
                        return e;
                }
        }
        return NULL;
}

static entry *entry_get(ps_engine_metrics *em, const char *pool_id, const char *replica_id) {
        entry *e = entry_find(em, pool_id, replica_id, NULL), **grown;

        if (e)
                return e;
        grown = realloc(em->entries, (em->n_entries + 1) * sizeof(*grown));
        if (!grown)
                return NULL;
        em->entries = grown;
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        e->em = em;
        e->pool_id = strdup(pool_id);
        e->replica_id = strdup(replica_id);
        if (!e->pool_id || !e->replica_id) {
                entry_free(e);
                return NULL;
        }
        ps_perf_hints_init(&e->perf, em->opt.ewma_alpha);
        em->entries[em->n_entries++] = e;
        return e;
}

/* A scrape that did not happen or failed: after stale_after of them in a
 * row the cache goes, and with it the hints. */
static void entry_missed(entry *e) {
        if (e->missed < UINT32_MAX)
                e->missed++;
        if (e->missed >= e->em->opt.stale_after) {
                e->cache = ps_engine_scrape_free(e->cache);
                ps_perf_hints_init(&e->perf, e->em->opt.ewma_alpha);
        }
}

static void on_scrape(ps_probe_result result, long http_status, const char *detail,
                      const char *body, size_t body_len, void *userdata) {
        entry *e = userdata;
        ps_engine_metrics *em = e->em;
        ps_engine_scrape *s = NULL;

        (void) http_status;
        (void) detail;
        e->probe = NULL;
        if (result != PS_PROBE_OK ||
            ps_engine_metrics_relabel(body, body_len, e->pool_id, e->replica_id,
                                      em->opt.max_bytes, &s, NULL) < 0) {
                entry_missed(e);
                return;
        }
        ps_engine_scrape_free(e->cache);
        e->cache = s;
        e->missed = 0;
        ps_perf_hints_observe(&e->perf, s, ps_clock_mono_ms(em->ctx->clock));
}

static const pool_setting *setting_find(const ps_engine_metrics *em, const char *pool_id) {
        for (size_t i = 0; i < em->n_pools; i++)
                if (strcmp(em->pools[i].pool_id, pool_id) == 0)
                        return &em->pools[i];
        return NULL;
}

static void scrape_replica(ps_engine_metrics *em, const pool_setting *ps, ps_replica *r) {
        char url[600];
        entry *e;
        int pid, n;

        if (!ps_replica_ready(r) || ps_replica_external(r))
                return;
        e = entry_get(em, ps->pool_id, ps_replica_id(r));
        if (!e)
                return;                 /* OOM: try at the next tick */
        e->seen = true;
        if (e->probe)
                return;                 /* the last one is still running */
        pid = ps_replica_pid(r);
        if (pid != e->pid) {            /* another engine: other hints */
                ps_perf_hints_init(&e->perf, em->opt.ewma_alpha);
                e->pid = pid;
        }
        n = ps_replica_url(r, url, sizeof(url) - PATH_MAX_LEN - 1);
        if (n < 0 || (size_t) n >= sizeof(url) - PATH_MAX_LEN - 1) {
                entry_missed(e);
                return;
        }
        snprintf(url + n, sizeof(url) - (size_t) n, "%s", ps->path);
        if (ps_prober_fetch(em->ctx->prober, url, em->opt.timeout_ms, em->opt.max_bytes,
                            on_scrape, e, &e->probe) < 0) {
                e->probe = NULL;
                entry_missed(e);
        }
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        ps_engine_metrics *em = userdata;
        const char *pool_id;

        (void) fd;
        (void) what;
        for (size_t i = 0; i < em->n_entries; i++)
                em->entries[i]->seen = false;
        for (size_t i = 0; (pool_id = ps_registry_pool_id_at(em->reg, i)); i++) {
                const pool_setting *ps = setting_find(em, pool_id);
                ps_replica *r;

                if (!ps || !ps->enabled)
                        continue;
                for (size_t j = 0; (r = ps_registry_replica_at(em->reg, pool_id, j)); j++)
                        scrape_replica(em, ps, r);
        }
        for (size_t i = 0; i < em->n_entries;) {
                entry *e = em->entries[i];

                if (!e->seen && !e->probe)
                        entry_missed(e);
                /* gone, not ready and nothing left to show: forget it */
                if (!e->seen && !e->probe && !e->cache) {
                        entry_remove(em, i);
                        continue;
                }
                i++;
        }
}

ps_engine_metrics *ps_engine_metrics_new(const ps_context *ctx, ps_registry *reg,
                                         const ps_engine_metrics_options *opts) {
        ps_engine_metrics_options o = opts ? *opts : (ps_engine_metrics_options) { 0 };
        ps_engine_metrics *em;

        if (!ctx || !ctx->base || !ctx->prober || !reg)
                return NULL;
        if (o.interval_ms < 0 || o.timeout_ms < 0 || !(o.ewma_alpha >= 0 && o.ewma_alpha <= 1))
                return NULL;
        if (o.interval_ms == 0)
                o.interval_ms = PS_ENGINE_METRICS_INTERVAL_MS;
        if (o.timeout_ms == 0)
                o.timeout_ms = o.interval_ms < PS_ENGINE_METRICS_TIMEOUT_MS ?
                               o.interval_ms : PS_ENGINE_METRICS_TIMEOUT_MS;
        if (o.timeout_ms > o.interval_ms)
                return NULL;
        if (o.max_bytes == 0)
                o.max_bytes = PS_ENGINE_METRICS_MAX_BYTES;
        if (o.stale_after == 0)
                o.stale_after = PS_ENGINE_METRICS_STALE_AFTER;
        if (o.ewma_alpha == 0)
                o.ewma_alpha = PS_ENGINE_METRICS_ALPHA;

        em = calloc(1, sizeof(*em));
        if (!em)
                return NULL;
        em->ctx = ctx;
        em->reg = reg;
        em->opt = o;
        em->timer = event_new(ctx->base, -1, EV_PERSIST, on_tick, em);
        if (!em->timer)
                return ps_engine_metrics_free(em);
        return em;
}

ps_engine_metrics *ps_engine_metrics_free(ps_engine_metrics *em) {
        if (!em)
                return NULL;
        if (em->timer)
                event_free(em->timer);
        for (size_t i = 0; i < em->n_entries; i++)
                entry_free(em->entries[i]);
        free(em->entries);
        for (size_t i = 0; i < em->n_pools; i++) {
                free(em->pools[i].pool_id);
                free(em->pools[i].path);
        }
        free(em->pools);
        free(em);
        return NULL;
}

static bool path_valid(const char *path) {
        if (path[0] != '/' || strlen(path) > PATH_MAX_LEN)
                return false;
        for (const char *c = path; *c; c++)
                if ((unsigned char) *c <= ' ' || *c == 0x7f || *c == '#')
                        return false;
        return true;
}

int ps_engine_metrics_set_pool(ps_engine_metrics *em, const char *pool_id, bool enabled,
                               const char *path) {
        pool_setting *ps;
        char *copy = NULL;

        if (!em || !pool_id || (path && !path_valid(path)))
                return -EINVAL;
        ps = (pool_setting *) setting_find(em, pool_id);
        if (!ps) {
                pool_setting *grown = realloc(em->pools, (em->n_pools + 1) * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                em->pools = grown;
                ps = &em->pools[em->n_pools];
                *ps = (pool_setting) { .pool_id = strdup(pool_id), .path = strdup("/metrics") };
                if (!ps->pool_id || !ps->path) {
                        free(ps->pool_id);
                        free(ps->path);
                        return -ENOMEM;
                }
                em->n_pools++;
        }
        if (path) {
                copy = strdup(path);
                if (!copy)
                        return -ENOMEM;
                free(ps->path);
                ps->path = copy;
        }
        ps->enabled = enabled;
        for (size_t i = 0; !enabled && i < em->n_entries;) {
                if (strcmp(em->entries[i]->pool_id, pool_id) == 0)
                        entry_remove(em, i);
                else
                        i++;
        }
        return 0;
}

int ps_engine_metrics_configure(ps_engine_metrics *em, const ps_config *config) {
        if (!em || !config)
                return -EINVAL;
        for (size_t i = 0; i < config->n_pools; i++) {
                const ps_pool_config *p = &config->pools[i];
                int r = ps_engine_metrics_set_pool(em, p->id, p->engine_metrics,
                                                   p->engine_metrics_path);

                if (r < 0)
                        return r;
        }
        return 0;
}

int ps_engine_metrics_start(ps_engine_metrics *em) {
        struct timeval tv;

        if (!em)
                return -EINVAL;
        tv.tv_sec = em->opt.interval_ms / 1000;
        tv.tv_usec = (em->opt.interval_ms % 1000) * 1000;
        if (event_add(em->timer, &tv) < 0)
                return -ENOMEM;
        event_active(em->timer, EV_TIMEOUT, 0);
        return 0;
}

static int entry_cmp(const void *a, const void *b) {
        const entry *x = *(const entry *const *) a, *y = *(const entry *const *) b;
        int c = strcmp(x->pool_id, y->pool_id);

        return c ? c : strcmp(x->replica_id, y->replica_id);
}

int ps_engine_metrics_render(const ps_engine_metrics *em, struct evbuffer *out) {
        const ps_engine_scrape **scrapes;
        entry **sorted;
        size_t n = 0;
        int r;

        if (!em || !out)
                return -EINVAL;
        if (em->n_entries == 0)
                return 0;
        sorted = malloc(em->n_entries * sizeof(*sorted));
        scrapes = malloc(em->n_entries * sizeof(*scrapes));
        if (!sorted || !scrapes) {
                free(sorted);
                free(scrapes);
                return -ENOMEM;
        }
        memcpy(sorted, em->entries, em->n_entries * sizeof(*sorted));
        qsort(sorted, em->n_entries, sizeof(*sorted), entry_cmp);
        for (size_t i = 0; i < em->n_entries; i++)
                if (sorted[i]->cache)
                        scrapes[n++] = sorted[i]->cache;
        r = ps_engine_scrapes_render(scrapes, n, out);
        free(sorted);
        free(scrapes);
        return r;
}

bool ps_engine_metrics_perf(const ps_engine_metrics *em, const char *pool_id,
                            const char *replica_id, double *tokens_per_s,
                            double *first_token_ms) {
        const entry *e;
        bool any = false;

        if (!em || !pool_id || !replica_id)
                return false;
        e = entry_find(em, pool_id, replica_id, NULL);
        if (!e || !e->cache)
                return false;
        if (tokens_per_s)
                any |= ps_perf_hints_tokens_per_s(&e->perf, tokens_per_s);
        if (first_token_ms)
                any |= ps_perf_hints_first_token_ms(&e->perf, first_token_ms);
        return any;
}

static int set_real(json_t *obj, const char *key, double v) {
        return json_object_set_new(obj, key, json_real(round(v * 10) / 10)) < 0 ? -ENOMEM : 0;
}

static int set_ms(json_t *obj, const char *key, double v) {
        return json_object_set_new(obj, key, json_integer((json_int_t) llround(v))) < 0 ? -ENOMEM : 0;
}

static int annotate_pool(const ps_engine_metrics *em, json_t *pool) {
        const char *pool_id = json_string_value(json_object_get(pool, "pool_id"));
        json_t *replicas = json_object_get(pool, "replicas"), *rep;
        double tps_sum = 0, ttft_sum = 0;
        size_t n_tps = 0, n_ttft = 0, i;
        int r = 0;

        if (!pool_id || !json_is_array(replicas))
                return 0;
        json_array_foreach(replicas, i, rep) {
                const char *rid = json_string_value(json_object_get(rep, "replica_id"));
                const entry *e = rid ? entry_find(em, pool_id, rid, NULL) : NULL;
                double v;

                if (!e || !e->cache)
                        continue;
                if (ps_perf_hints_tokens_per_s(&e->perf, &v)) {
                        tps_sum += v;
                        n_tps++;
                        r = r ? r : set_real(rep, "perf_tokens_per_s", v);
                }
                if (ps_perf_hints_first_token_ms(&e->perf, &v)) {
                        ttft_sum += v;
                        n_ttft++;
                        r = r ? r : set_ms(rep, "first_token_ms", v);
                }
        }
        if (n_tps)
                r = r ? r : set_real(pool, "perf_tokens_per_s", tps_sum);
        if (n_ttft)
                r = r ? r : set_ms(pool, "first_token_ms", ttft_sum / (double) n_ttft);
        return r;
}

int ps_engine_metrics_annotate(const ps_engine_metrics *em, json_t *snapshot) {
        json_t *pools, *pool;
        size_t i;

        if (!em || !json_is_object(snapshot))
                return -EINVAL;
        pools = json_object_get(snapshot, "pools");
        if (!json_is_array(pools))
                return annotate_pool(em, snapshot);
        json_array_foreach(pools, i, pool) {
                int r = json_is_object(pool) ? annotate_pool(em, pool) : 0;

                if (r < 0)
                        return r;
        }
        return 0;
}

size_t ps_engine_metrics_cached(const ps_engine_metrics *em) {
        size_t n = 0;

        for (size_t i = 0; em && i < em->n_entries; i++)
                n += em->entries[i]->cache != NULL;
        return n;
}
