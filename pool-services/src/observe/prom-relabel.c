/* SPDX-License-Identifier: MIT */
/*
 * One parsed scrape made ours: names promtool accepts, pool_id and
 * replica_id on every sample, whole families within a byte cap. Then
 * many scrapes merged into one exposition, each family once.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "base/strbuf.h"
#include "observe/prom-parse.h"
#include "observe/prom-relabel.h"
#include "base/strmap.h"
#include "pool-services/observe/engine-metrics.h"

#define OUR_PREFIX "pool_managerd_"
#define ENGINE_PREFIX "engine_"

static bool ends_with(const char *s, size_t n, const char *tail) {
        size_t t = strlen(tail);

        return n >= t && memcmp(s + n - t, tail, t) == 0;
}

/* ---- names promtool accepts ------------------------------------------------------- */

static bool token_in(const char *tok, size_t n, const char *const *list) {
        for (; *list; list++)
                if (strlen(*list) == n && memcmp(*list, tok, n) == 0)
                        return true;
        return false;
}

/* promlint's rules on one "_"-separated word of a metric name. */
static bool word_refused(const char *w, size_t len) {
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
        return false;
}

/* promlint's rules on a metric name: its suffixes for the type, its words. */
static bool name_refused(const char *name, ps_prom_type type) {
        size_t n = strlen(name);

        if (ps_prom_camel_case(name, n))
                return true;
        if (type != PS_PROM_COUNTER && type != PS_PROM_UNTYPED && ends_with(name, n, "_total"))
                return true;
        if (type != PS_PROM_HISTOGRAM && ends_with(name, n, "_bucket"))
                return true;
        if (type != PS_PROM_HISTOGRAM && type != PS_PROM_SUMMARY &&
            (ends_with(name, n, "_count") || ends_with(name, n, "_sum")))
                return true;
        for (const char *w = name; *w;) {
                size_t len = strcspn(w, "_");

                if (word_refused(w, len))
                        return true;
                w += len;
                if (*w == '_')
                        w++;
        }
        return false;
}

/* Whether name, once its ':' are '_', starts with prefix. */
static bool starts_as(const char *name, const char *prefix) {
        size_t n = strlen(prefix);

        for (size_t i = 0; i < n; i++)
                if (!name[i] || (name[i] == ':' ? '_' : name[i]) != prefix[i])
                        return false;
        return true;
}

/* Ours, or the process_* families the daemon renders of itself (an
 * engine's become engine_process_*). */
static bool in_our_namespace(const char *name) {
        return starts_as(name, OUR_PREFIX) || starts_as(name, "process_");
}

int ps_prom_name_publish(const char *name, ps_prom_type type, char **ret) {
        ps_strbuf b = { 0 };

        if (in_our_namespace(name))
                ps_strbuf_str(&b, ENGINE_PREFIX);
        ps_strbuf_str(&b, name);
        if (b.oom) {
                free(b.s);
                return -ENOMEM;
        }
        for (char *c = b.s; *c; c++)
                if (*c == ':')
                        *c = '_';
        if (type == PS_PROM_COUNTER && !ends_with(b.s, b.len, "_total"))
                ps_strbuf_str(&b, "_total");
        if (b.oom) {
                free(b.s);
                return -ENOMEM;
        }
        if (name_refused(b.s, type)) {
                free(b.s);
                b.s = NULL;
        }
        *ret = b.s;
        return 0;
}

/* ---- samples with our labels -------------------------------------------------------- */

/* One family's samples, relabelled, before its name is known to be kept. */
typedef struct rsample {
        ps_prom_suffix suf;
        char *rest;               /* "{labels} value" */
        double value;
} rsample;

typedef struct rfamily {
        rsample *v;
        size_t n, cap;
} rfamily;

static void rfamilies_free(rfamily *rf, size_t n) {
        for (size_t i = 0; rf && i < n; i++) {
                for (size_t k = 0; k < rf[i].n; k++)
                        free(rf[i].v[k].rest);
                free(rf[i].v);
        }
        free(rf);
}

/* The engine's labels, then ours: '{a="1",pool_id="p",replica_id="r0"}'. */
static void labels_relabel(ps_strbuf *b, const ps_prom_sample *s, const char *pool_id,
                           const char *replica_id) {
        ps_strbuf_add(b, "{", 1);
        for (size_t k = 0; k < s->n_labels; k++) {
                const ps_prom_label *l = &s->labels[k];

                /* ours win; the engine's stays visible under another name */
                if ((l->name_len == 7 && memcmp(l->name, "pool_id", 7) == 0) ||
                    (l->name_len == 10 && memcmp(l->name, "replica_id", 10) == 0))
                        ps_strbuf_str(b, "exported_");
                ps_strbuf_add(b, l->name, l->name_len);
                ps_strbuf_add(b, "=\"", 2);
                ps_strbuf_add(b, l->value, l->value_len);
                ps_strbuf_add(b, "\",", 2);
        }
        ps_strbuf_str(b, "pool_id=\"");
        ps_strbuf_label_value(b, pool_id);
        ps_strbuf_str(b, "\",replica_id=\"");
        ps_strbuf_label_value(b, replica_id);
        ps_strbuf_str(b, "\"}");
}

/* 1 when the series came before under our labels (an engine label named
 * pool_id meeting one named exported_pool_id), 0 when new. */
static int series_seen(ps_strmap *series, const char *family, ps_prom_suffix suf,
                       const ps_strbuf *rest) {
        ps_strbuf key = { 0 };
        int r;

        ps_strbuf_str(&key, family);
        ps_strbuf_str(&key, ps_prom_suffix_to_string(suf));
        ps_strbuf_add(&key, rest->s, rest->len);
        if (key.oom) {
                free(key.s);
                return -ENOMEM;
        }
        r = ps_strmap_put(series, key.s, key.len, 0);
        free(key.s);
        return r;
}

static int rfamily_add(rfamily *rf, const ps_prom_sample *s, char *rest) {
        if (rf->n == rf->cap) {
                size_t cap = rf->cap ? rf->cap * 2 : 4;
                rsample *grown = realloc(rf->v, cap * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                rf->v = grown;
                rf->cap = cap;
        }
        rf->v[rf->n++] = (rsample) { .suf = s->suffix, .rest = rest, .value = s->value };
        return 0;
}

/* One sample into its family's list, unless a sample before has its series. */
static int sample_relabel(const ps_prom_text *text, const ps_prom_sample *s,
                          const char *pool_id, const char *replica_id, ps_strmap *series,
                          rfamily *rf, ps_relabel_stats *stats) {
        ps_strbuf rest = { 0 };
        int r;

        labels_relabel(&rest, s, pool_id, replica_id);
        if (rest.oom) {
                free(rest.s);
                return -ENOMEM;
        }
        r = series_seen(series, text->families[s->family].name, s->suffix, &rest);
        if (r != 0) {
                free(rest.s);
                if (r > 0)
                        stats->dropped_lines++;
                return r < 0 ? r : 0;
        }
        ps_strbuf_add(&rest, " ", 1);
        ps_strbuf_add(&rest, s->value_text, s->value_len);
        r = rest.oom ? -ENOMEM : rfamily_add(&rf[s->family], s, rest.s);
        if (r < 0)
                free(rest.s);
        return r;
}

/* Every sample relabelled, by family (an array parallel to text's families). */
static int samples_relabel(const ps_prom_text *text, const char *pool_id,
                           const char *replica_id, rfamily **ret, ps_relabel_stats *stats) {
        rfamily *rf = calloc(text->n_families ? text->n_families : 1, sizeof(*rf));
        ps_strmap series = { 0 };
        int r = 0;

        if (!rf)
                return -ENOMEM;
        for (size_t i = 0; i < text->n_samples && r == 0; i++)
                r = sample_relabel(text, &text->samples[i], pool_id, replica_id, &series, rf,
                                   stats);
        ps_strmap_clear(&series);
        if (r < 0) {
                rfamilies_free(rf, text->n_families);
                return r;
        }
        *ret = rf;
        return 0;
}

/* ---- the relabelled scrape ------------------------------------------------------------ */

typedef struct family {
        char *name;
        char *help;               /* escaped */
        ps_prom_type type;
        char *text;               /* its sample lines */
        size_t text_len;
        size_t n_samples;
        size_t order;             /* in the engine's text: the first name wins */
        bool has[PS_PROM_SUFFIX_MAX];
        double sum[PS_PROM_SUFFIX_MAX];   /* over label sets */
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
               strlen(ps_prom_type_to_string(f->type)) + 1 + f->text_len;
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

/* The engine's HELP, or one made up when it gave none. */
static char *help_text(const ps_prom_family *pf) {
        ps_strbuf h = { 0 };

        if (pf->help)
                return strdup(pf->help);
        ps_strbuf_str(&h, "Reported by the engine as ");
        ps_strbuf_str(&h, pf->name);
        ps_strbuf_str(&h, " (without help text).");
        if (h.oom) {
                free(h.s);
                return NULL;
        }
        return h.s;
}

/* Its sample lines under the published name, and the sums by suffix. */
static int family_render_samples(family *f, const rfamily *rf) {
        ps_strbuf text = { 0 };

        for (size_t i = 0; i < rf->n; i++) {
                const rsample *s = &rf->v[i];

                ps_strbuf_str(&text, f->name);
                ps_strbuf_str(&text, ps_prom_suffix_to_string(s->suf));
                ps_strbuf_str(&text, s->rest);
                ps_strbuf_add(&text, "\n", 1);
                if (s->suf != PS_PROM_SUFFIX_BUCKET && !isnan(s->value)) {
                        f->sum[s->suf] += s->value;
                        f->has[s->suf] = true;
                }
        }
        if (text.oom) {
                free(text.s);
                return -ENOMEM;
        }
        f->text = text.s;
        f->text_len = text.len;
        f->n_samples = rf->n;
        return 0;
}

/* 0 and *out, or *refused when promtool would refuse its name; -ENOMEM. */
static int family_build(const ps_prom_family *pf, const rfamily *rf, family *out,
                        bool *refused) {
        int r;

        *out = (family) { .type = pf->type };
        r = ps_prom_name_publish(pf->name, pf->type, &out->name);
        if (r < 0)
                return r;
        *refused = !out->name;
        if (*refused)
                return 0;
        out->help = help_text(pf);
        r = out->help ? family_render_samples(out, rf) : -ENOMEM;
        if (r < 0)
                family_clear(out);
        return r;
}

/* A family for every parsed one with samples and a name we publish. */
static int families_build(const ps_prom_text *text, const rfamily *rf, ps_engine_scrape *s,
                          ps_relabel_stats *stats) {
        s->fams = calloc(text->n_families ? text->n_families : 1, sizeof(*s->fams));
        if (!s->fams)
                return -ENOMEM;
        for (size_t i = 0; i < text->n_families; i++) {
                bool refused;
                int r;

                if (rf[i].n == 0)
                        continue;               /* HELP and TYPE, no samples */
                r = family_build(&text->families[i], &rf[i], &s->fams[s->n], &refused);
                if (r < 0)
                        return r;
                if (refused) {
                        stats->dropped_families++;
                        stats->dropped_lines += rf[i].n;
                        continue;
                }
                s->fams[s->n].order = i;
                s->n++;
        }
        return 0;
}

/* Sorted by name; of names that met after renaming ("a:b" and "a_b") the
 * first one written stands; whole families up to max_bytes (0: no cap). */
static void families_trim(ps_engine_scrape *s, size_t max_bytes, ps_relabel_stats *stats) {
        size_t kept = 0;

        qsort(s->fams, s->n, sizeof(*s->fams), family_order_cmp);
        for (size_t i = 0; i < s->n; i++) {
                family *f = &s->fams[i];
                size_t b = family_bytes(f);

                if ((kept > 0 && strcmp(s->fams[kept - 1].name, f->name) == 0) ||
                    (max_bytes && s->bytes + b > max_bytes)) {
                        stats->dropped_families++;
                        stats->dropped_lines += f->n_samples;
                        family_clear(f);
                        continue;
                }
                s->bytes += b;
                stats->samples += f->n_samples;
                s->fams[kept++] = *f;
        }
        s->n = kept;
        stats->families = kept;
}

static int scrape_from_text(const ps_prom_text *text, const char *pool_id,
                            const char *replica_id, size_t max_bytes,
                            ps_engine_scrape **ret, ps_relabel_stats *stats) {
        rfamily *rf;
        ps_engine_scrape *s;
        int r;

        r = samples_relabel(text, pool_id, replica_id, &rf, stats);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        r = s ? families_build(text, rf, s, stats) : -ENOMEM;
        rfamilies_free(rf, text->n_families);
        if (r < 0) {
                ps_engine_scrape_free(s);
                return r;
        }
        families_trim(s, max_bytes, stats);
        *ret = s;
        return 0;
}

int ps_engine_metrics_relabel(const char *text, size_t len, const char *pool_id,
                              const char *replica_id, size_t max_bytes,
                              ps_engine_scrape **ret, ps_relabel_stats *stats) {
        ps_relabel_stats st = { 0 };
        ps_prom_text *parsed;
        int r;

        if ((!text && len) || !pool_id || !replica_id || !ret)
                return -EINVAL;
        r = ps_prom_parse(text, len, &parsed);
        if (r < 0)
                return r;
        st.dropped_lines = parsed->dropped_lines;
        r = scrape_from_text(parsed, pool_id, replica_id, max_bytes, ret, &st);
        ps_prom_text_free(parsed);
        if (r == 0 && stats)
                *stats = st;
        return r;
}

/* ---- reading a value back --------------------------------------------------------------- */

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
        if (f && f->has[PS_PROM_SUFFIX_NONE]) {
                *ret = f->sum[PS_PROM_SUFFIX_NONE];
                return true;
        }
        for (int suf = PS_PROM_SUFFIX_SUM; suf <= PS_PROM_SUFFIX_COUNT; suf++) {
                const char *tail = ps_prom_suffix_to_string((ps_prom_suffix) suf);
                size_t t = strlen(tail);
                char base[256];

                if (!ends_with(name, n, tail) || n - t >= sizeof(base))
                        continue;
                memcpy(base, name, n - t);
                base[n - t] = '\0';
                f = scrape_find(s, base);
                if (f && (f->type == PS_PROM_HISTOGRAM || f->type == PS_PROM_SUMMARY) &&
                    f->has[suf]) {
                        *ret = f->sum[suf];
                        return true;
                }
        }
        return false;
}

/* ---- merging scrapes ----------------------------------------------------------------------- */

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

/* One family: HELP and TYPE of the first, then the samples of each scrape
 * that agrees on the type. items[i..] share the name; the next index. */
static size_t merge_family(const merge_item *items, size_t i, size_t total,
                           struct evbuffer *out, int *r) {
        const family *head = items[i].f;

        if (evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", head->name, head->help,
                                head->name, ps_prom_type_to_string(head->type)) < 0)
                *r = -ENOMEM;
        for (; i < total && strcmp(items[i].f->name, head->name) == 0; i++)
                if (*r == 0 && items[i].f->type == head->type &&
                    evbuffer_add(out, items[i].f->text, items[i].f->text_len) < 0)
                        *r = -ENOMEM;
        return i;
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
        for (size_t i = 0; i < total && r == 0;)
                i = merge_family(items, i, total, out, &r);
        free(items);
        return r;
}
