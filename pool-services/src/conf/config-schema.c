/* SPDX-License-Identifier: MIT */
/*
 * The walker over the configuration's tables (config-schema.h). jansson's
 * json_unpack_ex() would read the values but not name the key in a type
 * error, and the messages must say which key and what it got.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config-schema.h"
#include "base/errfmt.h"
#include "base/strv.h"

#define TEXT_MAX 255            /* WORD: engine, engine_version, host, ... */

/* "where.key", or "key" at the top level. */
static const char *path_of(char *buf, size_t len, const char *where, const char *key) {
        if (where && where[0])
                snprintf(buf, len, "%s.%s", where, key);
        else
                snprintf(buf, len, "%s", key);
        return buf;
}

static void *member_at(void *base, size_t offset) {
        return (char *) base + offset;
}

const ps_field *ps_schema_field(const ps_schema *s, const char *key) {
        for (size_t i = 0; i < s->n_fields; i++)
                if (s->fields[i].key && strcmp(s->fields[i].key, key) == 0)
                        return &s->fields[i];
        return NULL;
}

/* "\"auto\", \"cuda\", \"fake\" or \"none\"" */
static void enum_text(const ps_field *f, char *buf, size_t len) {
        size_t used = 0;

        if (len > 0)
                buf[0] = '\0';
        for (int i = 0; i < f->n_names && used < len; i++) {
                const char *sep = i == 0 ? "" : i == f->n_names - 1 ? " or " : ", ";
                int n = snprintf(buf + used, len - used, "%s\"%s\"", sep, f->names[i]);

                if (n < 0)
                        break;
                used += (size_t) n;
        }
}

/* Levenshtein distance, capped: keys are short, and only 0..2 matter. */
static size_t edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b), row[64];

        if (la >= sizeof(row) / sizeof(row[0]) || lb >= sizeof(row) / sizeof(row[0]))
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];

                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        diag = up;
                        row[j] = best;
                }
        }
        return row[lb];
}

/* The table's key nearest to key, when it is within two edits. */
static const char *nearest_key(const ps_schema *s, const char *key) {
        const char *best = NULL;
        size_t best_d = 3;

        for (size_t i = 0; i < s->n_fields; i++) {
                size_t d;

                if (!s->fields[i].key)
                        continue;
                d = edit_distance(key, s->fields[i].key);
                if (d < best_d) {
                        best_d = d;
                        best = s->fields[i].key;
                }
        }
        return best;
}

static int check_keys(ps_conf_ctx *c, const ps_schema *s, const json_t *obj, const char *where) {
        char at[PS_CONF_AT_MAX];
        const char *key, *near;
        json_t *v;
        int r = 0;

        json_object_foreach((json_t *) obj, key, v) {
                if (ps_schema_field(s, key))
                        continue;
                path_of(at, sizeof(at), where, key);
                near = nearest_key(s, key);
                r = near ? ps_conf_fail(c, "%s: unknown key (did you mean \"%s\"?)", at, near)
                         : ps_conf_fail(c, "%s: unknown key", at);
                if (!ps_conf_keep_going(c, r))
                        return r;
        }
        return r;
}

static int want_type(ps_conf_ctx *c, const json_t *v, const char *at, json_type type) {
        const char *what;

        switch (type) {
        case JSON_STRING:  what = "a string"; break;
        case JSON_INTEGER: what = "an integer"; break;
        case JSON_OBJECT:  what = "an object"; break;
        case JSON_ARRAY:   what = "an array"; break;
        case JSON_TRUE:
        case JSON_FALSE:   what = "true or false"; break;
        case JSON_REAL:
        case JSON_NULL:
        default:           what = "a value"; break;
        }
        if (json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v)))
                return 0;
        return ps_conf_fail(c, "%s: must be %s, got %s", at, what, ps_json_type_name(v));
}

static void store_int(const ps_field *f, void *base, json_int_t i) {
        void *dst = member_at(base, f->offset);

        if (f->size == sizeof(uint16_t)) {
                uint16_t v = (uint16_t) i;

                memcpy(dst, &v, sizeof(v));
        } else if (f->size == sizeof(uint32_t)) {
                uint32_t v = (uint32_t) i;

                memcpy(dst, &v, sizeof(v));
        } else if (f->size == sizeof(uint64_t)) {
                uint64_t v = (uint64_t) i;

                memcpy(dst, &v, sizeof(v));
        }
}

static void store_bool(const ps_field *f, void *base, bool b) {
        memcpy(member_at(base, f->offset), &b, sizeof(b));
}

static int store_string(const ps_field *f, void *base, const char *s) {
        return f->size ? ps_conf_str_set(member_at(base, f->offset), s) : 0;
}

static int read_word(ps_conf_ctx *c, const ps_field *f, const json_t *v, const char *at,
                     void *base) {
        const char *s = json_string_value(v);

        if (!s[0])
                return ps_conf_fail(c, "%s: must not be empty", at);
        if (strlen(s) > TEXT_MAX || ps_conf_has_space(s))
                return ps_conf_fail(c, "%s: must be at most %d characters without spaces, got \""
                                    PS_CONF_SHOWN "\"", at, TEXT_MAX, s);
        return store_string(f, base, s);
}

/* Relative paths resolve against the config file's directory. */
static int read_path(ps_conf_ctx *c, const ps_field *f, const json_t *v, const char *at,
                     void *base) {
        const char *s = json_string_value(v);
        char **dst = member_at(base, f->offset), *resolved;

        if (!s[0] && f->empty_ok)
                return store_string(f, base, s);
        if (!s[0])
                return ps_conf_fail(c, "%s: must not be empty", at);
        if (s[0] != '/' && !c->base_dir)
                return ps_conf_fail(c, "%s: must be an absolute path (relative paths need a config "
                                    "file to resolve against), got \"" PS_CONF_SHOWN "\"", at, s);
        resolved = ps_conf_path_resolve(c->base_dir, s);
        if (!resolved)
                return -ENOMEM;
        free(*dst);
        *dst = resolved;
        return 0;
}

static int read_int(ps_conf_ctx *c, const ps_field *f, const json_t *v, const char *at,
                    void *base) {
        json_int_t i = json_integer_value(v);

        if (i < f->min && f->max == PS_FIELD_NO_MAX)
                return ps_conf_fail(c, "%s: must be >= %" JSON_INTEGER_FORMAT ", got %"
                                    JSON_INTEGER_FORMAT, at, f->min, i);
        if (i < f->min || i > f->max)
                return ps_conf_fail(c, "%s: must be %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT
                                    ", got %" JSON_INTEGER_FORMAT, at, f->min, f->max, i);
        if (f->size)
                store_int(f, base, i);
        return 0;
}

static int read_enum(ps_conf_ctx *c, const ps_field *f, const json_t *v, const char *at,
                     void *base) {
        const char *s = json_string_value(v);
        char expected[256];

        for (int i = 0; i < f->n_names; i++)
                if (strcmp(f->names[i], s) == 0) {
                        store_int(f, base, i);
                        return 0;
                }
        enum_text(f, expected, sizeof(expected));
        return ps_conf_fail(c, "%s: must be %s, got \"" PS_CONF_SHOWN "\"", at, expected, s);
}

/* Replaces the vector at the row's offset (and its count) with a copy. */
static int store_strings(const ps_field *f, void *base, const char *const *src, size_t count) {
        char ***list = member_at(base, f->offset);
        size_t *n = member_at(base, f->count_offset);
        char **v = calloc(count ? count : 1, sizeof(*v));

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++)
                if (!(v[i] = strdup(src[i]))) {
                        ps_strv_free(v, count);
                        return -ENOMEM;
                }
        ps_strv_free(*list, *n);
        *list = v;
        *n = count;
        return 0;
}

static int read_strings(ps_conf_ctx *c, const ps_field *f, const json_t *v, const char *at,
                        void *base) {
        size_t count = json_array_size(v);
        const char **src;
        int r;

        if (f->max > 0 && count > (size_t) f->max)
                return ps_conf_fail(c, "%s: at most %zu entries, got %zu", at, (size_t) f->max,
                                    count);
        for (size_t i = 0; i < count; i++) {
                const json_t *s = json_array_get(v, i);

                if (!json_is_string(s))
                        return ps_conf_fail(c, "%s[%zu]: must be a string, got %s", at, i,
                                            ps_json_type_name(s));
        }
        src = calloc(count ? count : 1, sizeof(*src));
        if (!src)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++)
                src[i] = json_string_value(json_array_get(v, i));
        r = store_strings(f, base, src, count);
        free(src);
        return r;
}

/* Type, range and storage of one present value. */
static int read_value(ps_conf_ctx *c, const ps_field *f, const json_t *v, const char *at,
                      void *base) {
        static const json_type json_types[PS_FIELD_TYPE_MAX] = {
                [PS_FIELD_STRING] = JSON_STRING, [PS_FIELD_WORD] = JSON_STRING,
                [PS_FIELD_PATH] = JSON_STRING, [PS_FIELD_INT] = JSON_INTEGER,
                [PS_FIELD_BOOL] = JSON_TRUE, [PS_FIELD_ENUM] = JSON_STRING,
                [PS_FIELD_STRINGS] = JSON_ARRAY, [PS_FIELD_OBJECT] = JSON_OBJECT,
                [PS_FIELD_ARRAY] = JSON_ARRAY, [PS_FIELD_CHECK] = JSON_NULL,
        };
        int r = want_type(c, v, at, json_types[f->type]);

        if (r)
                return r;
        switch (f->type) {
        case PS_FIELD_STRING:  return store_string(f, base, json_string_value(v));
        case PS_FIELD_WORD:    return read_word(c, f, v, at, base);
        case PS_FIELD_PATH:    return read_path(c, f, v, at, base);
        case PS_FIELD_INT:     return read_int(c, f, v, at, base);
        case PS_FIELD_ENUM:    return read_enum(c, f, v, at, base);
        case PS_FIELD_STRINGS: return read_strings(c, f, v, at, base);
        case PS_FIELD_BOOL:
                if (f->size)
                        store_bool(f, base, json_is_true(v));
                return 0;
        case PS_FIELD_OBJECT:
                return f->sub ? ps_schema_walk(c, f->sub, v, at, member_at(base, f->offset)) : 0;
        case PS_FIELD_ARRAY:
        case PS_FIELD_CHECK:
        case PS_FIELD_TYPE_MAX:
                break;
        }
        return 0;
}

static int walk_field(ps_conf_ctx *c, const ps_field *f, const json_t *obj, const char *where,
                      void *base) {
        char at[PS_CONF_AT_MAX];
        const json_t *v;
        int r;

        if (f->type == PS_FIELD_CHECK)
                return f->hook(c, base, NULL, where);
        path_of(at, sizeof(at), where, f->key);
        v = json_object_get(obj, f->key);
        if (!v && f->required && f->hint)
                return ps_conf_fail(c, "%s: required (%s)", at, f->hint);
        if (!v && f->required)
                return ps_conf_fail(c, "%s: required", at);
        if (!v)
                return 0;
        r = read_value(c, f, v, at, base);
        if (!r && f->hook)
                r = f->hook(c, base, v, at);
        return r;
}

/*
 * A hook that says "invalid" with its own message in c->err, without
 * ps_conf_fail(), still gets it into the report.
 */
static void report_unsaid(ps_conf_ctx *c, int r, size_t before) {
        if (ps_conf_keep_going(c, r) && c->report->n == before && c->err && c->err[0])
                (void) ps_conf_report_add(c->report, c->err);
}

int ps_schema_walk(ps_conf_ctx *c, const ps_schema *s, const json_t *obj, const char *where,
                   void *base) {
        bool unsafe = false;
        int r, failed = 0;

        if (!json_is_object(obj))
                return ps_conf_fail(c, "%s: must be an object, got %s", where,
                                    ps_json_type_name(obj));
        /* Collecting, an unknown key is reported and the walk goes on as
         * if it were not there: it stores nothing. */
        r = check_keys(c, s, obj, where);
        if (r && !ps_conf_keep_going(c, r))
                return r;
        /* Collecting: the values go on past a bad one. A bad optional
         * value leaves its default, which the cross-checks can read; after
         * a required one or a nested section they do not run (they would
         * read what is missing or half-made). */
        for (size_t i = 0; i < s->n_fields; i++) {
                const ps_field *f = &s->fields[i];
                size_t before = c->report ? c->report->n : 0;

                if (unsafe && f->type == PS_FIELD_CHECK)
                        continue;
                r = walk_field(c, f, obj, where, base);
                report_unsaid(c, r, before);
                if (r && !ps_conf_keep_going(c, r))
                        return r;
                if (r) {
                        failed = r;
                        unsafe = unsafe || f->required || f->type == PS_FIELD_OBJECT ||
                                 f->type == PS_FIELD_ARRAY;
                }
        }
        return failed;
}

int ps_schema_defaults(const ps_schema *s, void *base) {
        int r = 0;

        for (size_t i = 0; !r && i < s->n_fields; i++) {
                const ps_field *f = &s->fields[i];
                size_t n = 0;

                if (f->type == PS_FIELD_OBJECT && f->sub)
                        r = ps_schema_defaults(f->sub, member_at(base, f->offset));
                else if (f->def_str)
                        r = store_string(f, base, f->def_str);
                else if (f->def_strv) {
                        while (f->def_strv[n])
                                n++;
                        r = store_strings(f, base, f->def_strv, n);
                } else if (f->has_default && f->type == PS_FIELD_BOOL)
                        store_bool(f, base, f->def_int != 0);
                else if (f->has_default)
                        store_int(f, base, f->def_int);
        }
        return r;
}
