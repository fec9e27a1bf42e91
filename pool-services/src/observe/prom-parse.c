/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus text format, line by line. Every check here is one
 * promtool makes, so that whatever an engine sends, what is kept still
 * passes `promtool check metrics` once relabelled.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/strbuf.h"
#include "observe/prom-parse.h"
#include "base/strmap.h"

#define LABELS_MAX 64
#define VALUE_MAX 64

static const char *const type_names[PS_PROM_TYPE_MAX] = {
        [PS_PROM_UNTYPED] = "untyped",
        [PS_PROM_COUNTER] = "counter",
        [PS_PROM_GAUGE] = "gauge",
        [PS_PROM_HISTOGRAM] = "histogram",
        [PS_PROM_SUMMARY] = "summary",
};

static const char *const suffix_names[PS_PROM_SUFFIX_MAX] = {
        [PS_PROM_SUFFIX_NONE] = "",
        [PS_PROM_SUFFIX_BUCKET] = "_bucket",
        [PS_PROM_SUFFIX_SUM] = "_sum",
        [PS_PROM_SUFFIX_COUNT] = "_count",
};

const char *ps_prom_type_to_string(ps_prom_type type) {
        return (unsigned) type < PS_PROM_TYPE_MAX ? type_names[type] : NULL;
}

const char *ps_prom_suffix_to_string(ps_prom_suffix suffix) {
        return (unsigned) suffix < PS_PROM_SUFFIX_MAX ? suffix_names[suffix] : NULL;
}

/* ---- characters, values, escapes -------------------------------------------- */

static bool is_name_start(char c) { return isalpha((unsigned char) c) || c == '_' || c == ':'; }
static bool is_name_char(char c) { return isalnum((unsigned char) c) || c == '_' || c == ':'; }
static bool is_label_start(char c) { return isalpha((unsigned char) c) || c == '_'; }
static bool is_label_char(char c) { return isalnum((unsigned char) c) || c == '_'; }
static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static bool ends_with(const char *s, size_t n, const char *tail) {
        size_t t = strlen(tail);

        return n >= t && memcmp(s + n - t, tail, t) == 0;
}

bool ps_prom_camel_case(const char *s, size_t n) {
        for (size_t i = 0; i + 1 < n; i++)
                if (islower((unsigned char) s[i]) && isupper((unsigned char) s[i + 1]))
                        return true;
        return false;
}

/* The length of the UTF-8 sequence that starts with c and the bits it
 * gives the code point; 0 for a byte no sequence starts with. */
static size_t utf8_lead(unsigned char c, uint32_t *cp) {
        if ((c & 0xe0) == 0xc0) {
                *cp = c & 0x1f;
                return 2;
        }
        if ((c & 0xf0) == 0xe0) {
                *cp = c & 0x0f;
                return 3;
        }
        if ((c & 0xf8) == 0xf0) {
                *cp = c & 0x07;
                return 4;
        }
        return 0;
}

/* No overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n) {
        static const uint32_t least[] = { 0, 0, 0x80, 0x800, 0x10000 };

        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len;

                if (s[i] < 0x80) {
                        i++;
                        continue;
                }
                len = utf8_lead(s[i], &cp);
                if (len == 0)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if (i + k >= n || (s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += len;
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
        *ret = strtod(buf, &end);
        return end == buf + n && end != buf;
}

/* ---- a cursor over one line ----------------------------------------------------- */

typedef struct cursor {
        const char *s, *end;
} cursor;

static bool at_end(const cursor *c) { return c->s >= c->end; }

static void skip_blanks(cursor *c) {
        while (c->s < c->end && is_blank(*c->s))
                c->s++;
}

static bool take(cursor *c, char want) {
        if (c->s >= c->end || *c->s != want)
                return false;
        c->s++;
        return true;
}

/* ---- families --------------------------------------------------------------------- */

typedef struct parser {
        ps_prom_text *out;
        ps_strmap by_name;        /* family name -> index */
        ps_strmap series;         /* name and labels as written: duplicates */
        size_t current;           /* the family being read; SIZE_MAX: none */
        size_t cap_families, cap_samples;
} parser;

static void family_clear(ps_prom_family *f) {
        free(f->name);
        free(f->help);
}

static void sample_clear(ps_prom_sample *s) {
        free(s->labels);
}

ps_prom_text *ps_prom_text_free(ps_prom_text *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_families; i++)
                family_clear(&t->families[i]);
        for (size_t i = 0; i < t->n_samples; i++)
                sample_clear(&t->samples[i]);
        free(t->families);
        free(t->samples);
        free(t);
        return NULL;
}

/* v, or a larger copy of it when its n elements fill cap; NULL on OOM
 * (v left as it was). */
static void *reserve(void *v, size_t n, size_t *cap, size_t size) {
        size_t bigger;
        void *grown;

        if (n < *cap)
                return v;
        bigger = *cap ? *cap * 2 : 16;
        grown = realloc(v, bigger * size);
        if (grown)
                *cap = bigger;
        return grown;
}

/* The family named so, created when new. 0 or -ENOMEM. */
static int family_get(parser *p, const char *name, size_t n, size_t *ret) {
        ps_prom_text *t = p->out;
        ps_prom_family *f, *grown;
        int r;

        if (ps_strmap_get(&p->by_name, name, n, ret))
                return 0;
        grown = reserve(t->families, t->n_families, &p->cap_families, sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        t->families = grown;
        f = &t->families[t->n_families];
        *f = (ps_prom_family) { .name = strndup(name, n) };
        if (!f->name)
                return -ENOMEM;
        r = ps_strmap_put(&p->by_name, name, n, t->n_families);
        if (r < 0) {
                free(f->name);
                return r;
        }
        *ret = t->n_families++;
        return 0;
}

/* Whether a sample of this family may carry the suffix. */
static bool family_takes(const ps_prom_family *f, ps_prom_suffix suf) {
        return suf == PS_PROM_SUFFIX_NONE || f->type == PS_PROM_HISTOGRAM ||
               (f->type == PS_PROM_SUMMARY && suf != PS_PROM_SUFFIX_BUCKET);
}

/* The family being read, when name is its name with a suffix it takes. */
static bool current_family(const parser *p, const char *name, size_t n, size_t *idx,
                           ps_prom_suffix *suf) {
        const ps_prom_family *f;
        size_t len;

        if (p->current == SIZE_MAX)
                return false;
        f = &p->out->families[p->current];
        len = strlen(f->name);
        for (int s = PS_PROM_SUFFIX_NONE; s < PS_PROM_SUFFIX_MAX; s++) {
                if (len + strlen(suffix_names[s]) == n && memcmp(f->name, name, len) == 0 &&
                    ends_with(name, n, suffix_names[s]) && family_takes(f, (ps_prom_suffix) s)) {
                        *idx = p->current;
                        *suf = (ps_prom_suffix) s;
                        return true;
                }
        }
        return false;
}

/* Any family, when name is its name with a suffix it takes. */
static bool named_family(const parser *p, const char *name, size_t n, size_t *idx,
                         ps_prom_suffix *suf) {
        for (int s = PS_PROM_SUFFIX_NONE; s < PS_PROM_SUFFIX_MAX; s++) {
                size_t i;

                if (ends_with(name, n, suffix_names[s]) &&
                    ps_strmap_get(&p->by_name, name, n - strlen(suffix_names[s]), &i) &&
                    family_takes(&p->out->families[i], (ps_prom_suffix) s)) {
                        *idx = i;
                        *suf = (ps_prom_suffix) s;
                        return true;
                }
        }
        return false;
}

/* Which family a sample named so belongs to, and with which suffix. */
static int sample_family(parser *p, const char *name, size_t n, size_t *idx,
                         ps_prom_suffix *suf) {
        if (current_family(p, name, n, idx, suf) || named_family(p, name, n, idx, suf))
                return 0;
        *suf = PS_PROM_SUFFIX_NONE;
        return family_get(p, name, n, idx);
}

/* ---- HELP and TYPE ------------------------------------------------------------------ */

static bool is_word(const char *s, size_t n, const char *word) {
        return strlen(word) == n && memcmp(s, word, n) == 0;
}

static int family_set_help(parser *p, ps_prom_family *f, const char *s, size_t n) {
        if (f->help || !escapes_valid(s, n, false)) {
                p->out->dropped_lines++;
                return 0;
        }
        f->help = strndup(s, n);
        return f->help ? 0 : -ENOMEM;
}

static void family_set_type(parser *p, ps_prom_family *f, const char *s, size_t n) {
        int t;

        while (n > 0 && is_blank(s[n - 1]))
                n--;
        for (t = 0; t < PS_PROM_TYPE_MAX; t++)
                if (is_word(s, n, type_names[t]))
                        break;
        /* A TYPE after samples, twice, or unknown: the family stays as it is. */
        if (t == PS_PROM_TYPE_MAX || f->type_set || f->n_samples > 0) {
                p->out->dropped_lines++;
                return;
        }
        f->type = (ps_prom_type) t;
        f->type_set = true;
}

/* "# HELP name text" / "# TYPE name type"; other comments are dropped. */
static int parse_comment(parser *p, const char *s, size_t n) {
        cursor c = { s + 1, s + n };            /* after '#' */
        const char *kw, *name;
        size_t kw_len, name_len, idx;
        bool help;
        int r;

        skip_blanks(&c);
        kw = c.s;
        while (!at_end(&c) && !is_blank(*c.s))
                c.s++;
        kw_len = (size_t) (c.s - kw);
        if (!is_word(kw, kw_len, "HELP") && !is_word(kw, kw_len, "TYPE"))
                return 0;                       /* a plain comment */
        help = is_word(kw, kw_len, "HELP");
        skip_blanks(&c);
        name = c.s;
        if (at_end(&c) || !is_name_start(*c.s)) {
                p->out->dropped_lines++;
                return 0;
        }
        while (!at_end(&c) && is_name_char(*c.s))
                c.s++;
        name_len = (size_t) (c.s - name);
        if (!at_end(&c) && !is_blank(*c.s)) {
                p->out->dropped_lines++;
                return 0;
        }
        skip_blanks(&c);

        r = family_get(p, name, name_len, &idx);
        if (r < 0)
                return r;
        p->current = idx;
        if (help)
                return family_set_help(p, &p->out->families[idx], c.s, (size_t) (c.end - c.s));
        family_set_type(p, &p->out->families[idx], c.s, (size_t) (c.end - c.s));
        return 0;
}

/* ---- samples ------------------------------------------------------------------------ */

/* One sample line as written, before it is given to a family. */
typedef struct line_sample {
        const char *name;
        size_t name_len;
        ps_prom_label labels[LABELS_MAX];
        size_t n_labels;
        const char *value_text;
        size_t value_len;
        double value;
} line_sample;

static bool label_named(const ps_prom_label *l, const char *name) {
        return is_word(l->name, l->name_len, name);
}

/* 'name="value"', the value's escapes and UTF-8 checked. */
static bool read_label(cursor *c, ps_prom_label *l) {
        l->name = c->s;
        while (!at_end(c) && is_label_char(*c->s))
                c->s++;
        l->name_len = (size_t) (c->s - l->name);
        skip_blanks(c);
        if (!take(c, '='))
                return false;
        skip_blanks(c);
        if (!take(c, '"'))
                return false;
        l->value = c->s;
        while (c->s < c->end && *c->s != '"') {
                if (*c->s == '\\')
                        c->s++;
                c->s++;
        }
        if (at_end(c))
                return false;
        l->value_len = (size_t) (c->s - l->value);
        c->s++;
        return escapes_valid(l->value, l->value_len, true) &&
               !ps_prom_camel_case(l->name, l->name_len);
}

/* Whether the last of n labels repeats the name of an earlier one. */
static bool label_repeated(const ps_prom_label *labels, size_t n) {
        const ps_prom_label *last = &labels[n - 1];

        for (size_t k = 0; k + 1 < n; k++)
                if (labels[k].name_len == last->name_len &&
                    memcmp(labels[k].name, last->name, last->name_len) == 0)
                        return true;
        return false;
}

/* '{a="1",b="2"}' (a trailing comma allowed), from the '{'. */
static bool read_labels(cursor *c, line_sample *ls) {
        c->s++;
        for (;;) {
                skip_blanks(c);
                if (take(c, '}'))
                        return true;
                if (at_end(c) || !is_label_start(*c->s) || ls->n_labels == LABELS_MAX)
                        return false;
                ls->n_labels++;
                if (!read_label(c, &ls->labels[ls->n_labels - 1]) ||
                    label_repeated(ls->labels, ls->n_labels))
                        return false;
                skip_blanks(c);
                if (!take(c, ',') && !at_end(c) && *c->s != '}')
                        return false;
        }
}

/* An optional timestamp, in milliseconds: checked, then dropped. */
static bool read_timestamp(cursor *c) {
        const char *ts;

        skip_blanks(c);
        if (at_end(c))
                return true;
        ts = c->s;
        take(c, '-');
        while (!at_end(c) && isdigit((unsigned char) *c->s))
                c->s++;
        if (c->s == ts || c->s[-1] == '-')
                return false;
        skip_blanks(c);
        return at_end(c);
}

/* 'name{labels} value [timestamp]', as far as it can be checked alone. */
static bool read_sample_line(const char *s, size_t n, line_sample *ls) {
        cursor c = { s, s + n };
        const char *after_name;

        ls->name = s;
        while (!at_end(&c) && is_name_char(*c.s))
                c.s++;
        ls->name_len = (size_t) (c.s - s);
        after_name = c.s;
        skip_blanks(&c);
        if (!at_end(&c) && *c.s == '{') {
                if (!read_labels(&c, ls) || at_end(&c) || !is_blank(*c.s))
                        return false;
                skip_blanks(&c);
        } else if (c.s == after_name) {
                return false;                   /* "name1" is not "name 1" */
        }
        ls->value_text = c.s;
        while (!at_end(&c) && !is_blank(*c.s))
                c.s++;
        ls->value_len = (size_t) (c.s - ls->value_text);
        return value_parse(ls->value_text, ls->value_len, &ls->value) && read_timestamp(&c);
}

/* What promtool insists on: le only on buckets, quantile only on a
 * summary's quantiles, and buckets and quantiles carry theirs. */
static bool labels_fit(const line_sample *ls, const ps_prom_family *f, ps_prom_suffix suf) {
        bool has_le = false, has_quantile = false;

        for (size_t k = 0; k < ls->n_labels; k++) {
                const ps_prom_label *l = &ls->labels[k];
                double le;

                if (label_named(l, "le")) {
                        if (!value_parse(l->value, l->value_len, &le))
                                return false;
                        has_le = true;
                }
                if (label_named(l, "quantile"))
                        has_quantile = true;
        }
        return has_le == (f->type == PS_PROM_HISTOGRAM && suf == PS_PROM_SUFFIX_BUCKET) &&
               has_quantile == (f->type == PS_PROM_SUMMARY && suf == PS_PROM_SUFFIX_NONE);
}

/* 1 when the series (name and labels as written) came before, 0 when new. */
static int series_seen(parser *p, const line_sample *ls) {
        ps_strbuf key = { 0 };
        int r;

        ps_strbuf_add(&key, ls->name, ls->name_len);
        for (size_t k = 0; k < ls->n_labels; k++) {
                const ps_prom_label *l = &ls->labels[k];

                ps_strbuf_add(&key, k ? ",": "{", 1);
                ps_strbuf_add(&key, l->name, l->name_len);
                ps_strbuf_add(&key, "=\"", 2);
                ps_strbuf_add(&key, l->value, l->value_len);
                ps_strbuf_add(&key, "\"", 1);
        }
        if (key.oom) {
                free(key.s);
                return -ENOMEM;
        }
        r = ps_strmap_put(&p->series, key.s, key.len, 0);
        free(key.s);
        return r;
}

static int sample_add(parser *p, const line_sample *ls, size_t idx, ps_prom_suffix suf) {
        ps_prom_text *t = p->out;
        ps_prom_sample *s, *grown;

        grown = reserve(t->samples, t->n_samples, &p->cap_samples, sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        t->samples = grown;
        s = &t->samples[t->n_samples];
        *s = (ps_prom_sample) {
                .family = idx,
                .suffix = suf,
                .n_labels = ls->n_labels,
                .value_text = ls->value_text,
                .value_len = ls->value_len,
                .value = ls->value,
        };
        if (ls->n_labels > 0) {
                s->labels = malloc(ls->n_labels * sizeof(*s->labels));
                if (!s->labels)
                        return -ENOMEM;
                memcpy(s->labels, ls->labels, ls->n_labels * sizeof(*s->labels));
        }
        t->n_samples++;
        t->families[idx].n_samples++;
        return 0;
}

static int parse_sample(parser *p, const char *s, size_t n) {
        line_sample ls = { 0 };
        ps_prom_suffix suf;
        size_t idx;
        int r;

        if (!read_sample_line(s, n, &ls)) {
                p->out->dropped_lines++;
                return 0;
        }
        r = sample_family(p, ls.name, ls.name_len, &idx, &suf);
        if (r < 0)
                return r;
        p->current = idx;
        if (!labels_fit(&ls, &p->out->families[idx], suf)) {
                p->out->dropped_lines++;
                return 0;
        }
        r = series_seen(p, &ls);
        if (r < 0)
                return r;
        if (r > 0) {                            /* the first one stands */
                p->out->dropped_lines++;
                return 0;
        }
        return sample_add(p, &ls, idx, suf);
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
                p->out->dropped_lines++;
                return 0;
        }
        if (*s == '#')
                return parse_comment(p, s, n);
        if (!is_name_start(*s)) {
                p->out->dropped_lines++;
                return 0;
        }
        return parse_sample(p, s, n);
}

int ps_prom_parse(const char *text, size_t len, ps_prom_text **ret) {
        parser p = { .current = SIZE_MAX };
        int r = 0;

        if ((!text && len) || !ret)
                return -EINVAL;
        p.out = calloc(1, sizeof(*p.out));
        if (!p.out)
                return -ENOMEM;
        for (size_t i = 0; i < len && r == 0;) {
                const char *nl = memchr(text + i, '\n', len - i);
                size_t n = nl ? (size_t) (nl - (text + i)) : len - i;

                r = parse_line(&p, text + i, n);
                i += n + 1;
        }
        ps_strmap_clear(&p.by_name);
        ps_strmap_clear(&p.series);
        if (r < 0) {
                ps_prom_text_free(p.out);
                return r;
        }
        *ret = p.out;
        return 0;
}
