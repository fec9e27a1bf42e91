/* SPDX-License-Identifier: MIT */
/*
 * docs/configuration.md against the tables the loader reads: each key of
 * a section's table is a row of that section's table in the document and
 * each row is a key, with the same type, range, default and "required";
 * the same for the policy keys of `defaults` and for the environment's
 * variables. The document's path comes in CONFIG_DOC.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "conf/config-schema.h"
#include "pool-services/conf/policy.h"

#define SECTION_ENV "Environment"

typedef struct doc_row {
        char *section;          /* "" for the top level, "gpu.devices[]", SECTION_ENV */
        char *key;              /* "port", "etcd.ttl_ms", "POOL_MANAGERD_ADDR" */
        char *type;
        char *def;
        int line;
} doc_row;

typedef struct doc {
        doc_row *rows;
        size_t n_rows;
        char **sections;        /* headings that name a section */
        size_t n_sections;
} doc;

static doc the_doc;

/* Problems found, one per line, reported all at once. */
typedef struct problems {
        char text[16384];
        size_t used;
        int count;
} problems;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(problems *p, const char *fmt, ...) {
        size_t room = sizeof(p->text) - p->used;
        va_list ap;
        int n;

        p->count++;
        if (room < 2)
                return;
        va_start(ap, fmt);
        n = vsnprintf(p->text + p->used, room - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        p->used += (size_t) n < room - 1 ? (size_t) n : room - 2;
        p->text[p->used++] = '\n';
        p->text[p->used] = '\0';
}

static void problems_assert(const problems *p) {
        if (p->count > 0)
                fail_msg("docs/configuration.md and the configuration's tables differ "
                         "(%d):\n%s", p->count, p->text);
}

/* ---- reading the document ---- */

static char *trimmed(const char *s, size_t len) {
        while (len > 0 && (*s == ' ' || *s == '\t')) {
                s++;
                len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n'))
                len--;
        return strndup(s, len);
}

/* The text of the first `code span` in s; NULL when there is none. */
static char *first_code(const char *s) {
        const char *open = strchr(s, '`'), *close;

        if (!open)
                return NULL;
        close = strchr(open + 1, '`');
        return close ? strndup(open + 1, (size_t) (close - open - 1)) : NULL;
}

/* "## `gpu.devices[]` (fake backend)" -> "gpu.devices[]"; "## Top level"
 * -> ""; NULL for a heading that names no section. */
static char *heading_section(const char *line) {
        const char *text = line + strspn(line, "#");

        text += strspn(text, " ");
        if (strncmp(text, "Top level", 9) == 0)
                return strdup("");
        if (strncmp(text, SECTION_ENV, strlen(SECTION_ENV)) == 0)
                return strdup(SECTION_ENV);
        return text[0] == '`' ? first_code(text) : NULL;
}

/* The cells of a table row, split at '|' but not at "\|". */
static size_t row_cells(const char *line, char **cells, size_t max) {
        const char *start = line + 1;
        size_t n = 0;

        for (const char *p = start; *p && n < max; p++) {
                if (*p == '\\' && p[1] == '|') {
                        p++;
                        continue;
                }
                if (*p != '|')
                        continue;
                cells[n++] = trimmed(start, (size_t) (p - start));
                start = p + 1;
        }
        return n;
}

static void doc_add_row(doc *d, const char *section, char **cells, int line) {
        char *key = cells[0];
        size_t len = strlen(key);

        if (len >= 2 && key[0] == '`' && key[len - 1] == '`') {
                memmove(key, key + 1, len - 2);
                key[len - 2] = '\0';
        }
        d->rows = realloc(d->rows, (d->n_rows + 1) * sizeof(*d->rows));
        assert_non_null(d->rows);
        d->rows[d->n_rows++] = (doc_row) {
                .section = strdup(section), .key = key, .type = cells[1], .def = cells[2],
                .line = line,
        };
}

static void doc_read(doc *d, const char *path) {
        FILE *f = fopen(path, "re");
        char *line = NULL, *section = NULL;
        size_t cap = 0;
        int lineno = 0;

        if (!f)
                fail_msg("cannot read %s (CONFIG_DOC)", path);
        while (getline(&line, &cap, f) > 0) {
                char *cells[8] = { 0 };
                size_t n;

                lineno++;
                if (line[0] == '#') {
                        free(section);
                        section = heading_section(line);
                        if (section) {
                                d->sections = realloc(d->sections,
                                                      (d->n_sections + 1) * sizeof(char *));
                                assert_non_null(d->sections);
                                d->sections[d->n_sections++] = strdup(section);
                        }
                        continue;
                }
                if (!section || line[0] != '|' || strncmp(line, "|---", 4) == 0)
                        continue;
                n = row_cells(line, cells, 8);
                if (n >= 3 && strcmp(cells[0], "key") != 0 && strcmp(cells[0], "variable") != 0) {
                        doc_add_row(d, section, cells, lineno);
                        for (size_t i = 3; i < n; i++)
                                free(cells[i]);
                } else {
                        for (size_t i = 0; i < n; i++)
                                free(cells[i]);
                }
        }
        free(section);
        free(line);
        fclose(f);
}

static bool doc_has_section(const doc *d, const char *name) {
        for (size_t i = 0; i < d->n_sections; i++)
                if (strcmp(d->sections[i], name) == 0)
                        return true;
        return false;
}

static const doc_row *doc_find(const doc *d, const char *section, const char *key) {
        for (size_t i = 0; i < d->n_rows; i++)
                if (strcmp(d->rows[i].section, section) == 0 && strcmp(d->rows[i].key, key) == 0)
                        return &d->rows[i];
        return NULL;
}

/* ---- where a table's keys are documented ---- */

/* A table with its own heading is documented there; one without, inside
 * its parent's table: cloud.etcd's ttl_ms is cloud's "etcd.ttl_ms". */
static void table_place(const doc *d, const ps_schema *s, char *section, size_t len,
                        char *prefix, size_t plen) {
        const char *dot = strrchr(s->name, '.');

        if (doc_has_section(d, s->name) || !dot) {
                snprintf(section, len, "%s", s->name);
                snprintf(prefix, plen, "%s", "");
                return;
        }
        snprintf(section, len, "%.*s", (int) (dot - s->name), s->name);
        snprintf(prefix, plen, "%s.", dot + 1);
}

/* A nested section documented inside its parent's table is no row itself. */
static bool field_is_row(const doc *d, const ps_field *f) {
        if (!f->key)
                return false;
        return !(f->type == PS_FIELD_OBJECT && f->sub && !doc_has_section(d, f->sub->name));
}

static void field_row_key(const ps_field *f, const char *prefix, char *buf, size_t len) {
        snprintf(buf, len, "%s%s", prefix, f->key);
}

/* ---- what a row must say ---- */

static json_t *field_default(const ps_field *f) {
        json_t *list;

        if (f->def_str)
                return json_string(f->def_str);
        if (f->def_strv) {
                list = json_array();
                for (size_t i = 0; f->def_strv[i]; i++)
                        json_array_append_new(list, json_string(f->def_strv[i]));
                return list;
        }
        if (!f->has_default)
                return NULL;
        if (f->type == PS_FIELD_BOOL)
                return json_boolean(f->def_int);
        if (f->type == PS_FIELD_ENUM)
                return json_string(f->names[f->def_int]);
        return json_integer(f->def_int);
}

/* The type column: exact for integers, booleans and enums, its first
 * word for the rest. */
static bool type_matches(const ps_field *f, const char *type, char *want, size_t len) {
        size_t used = 0;

        switch (f->type) {
        case PS_FIELD_INT:
                if (f->max == PS_FIELD_NO_MAX)
                        snprintf(want, len, "integer ≥ %" JSON_INTEGER_FORMAT, f->min);
                else
                        snprintf(want, len, "integer %" JSON_INTEGER_FORMAT "..%"
                                 JSON_INTEGER_FORMAT, f->min, f->max);
                return strcmp(type, want) == 0;
        case PS_FIELD_BOOL:
                snprintf(want, len, "boolean");
                return strcmp(type, want) == 0;
        case PS_FIELD_ENUM:
                want[0] = '\0';
                for (int i = 0; i < f->n_names && used < len; i++) {
                        int n = snprintf(want + used, len - used, "%s`\"%s\"`",
                                         i ? " \\| " : "", f->names[i]);

                        if (n < 0)
                                break;
                        used += (size_t) n;
                }
                return strcmp(type, want) == 0;
        case PS_FIELD_PATH:
                snprintf(want, len, "string (path)...");
                return strncmp(type, "string (path)", 13) == 0;
        case PS_FIELD_STRING:
        case PS_FIELD_WORD:
                snprintf(want, len, "string...");
                return strncmp(type, "string", 6) == 0;
        case PS_FIELD_STRINGS:
        case PS_FIELD_ARRAY:
                snprintf(want, len, "array...");
                return strncmp(type, "array", 5) == 0;
        case PS_FIELD_OBJECT:
                snprintf(want, len, "object...");
                return strncmp(type, "object", 6) == 0;
        case PS_FIELD_CHECK:
        case PS_FIELD_TYPE_MAX:
                break;
        }
        return true;
}

/* The default column: "required", or a `JSON value` first when the
 * table has a default. */
static void check_default(problems *p, const ps_field *f, const doc_row *row) {
        json_t *want = field_default(f), *got = NULL;
        char *code, *text;

        if (f->required != (strcmp(row->def, "required") == 0))
                problem(p, "configuration.md:%d: %s: default \"%s\", but the key is %srequired",
                        row->line, row->key, row->def, f->required ? "" : "not ");
        if (!want)
                return;
        code = first_code(row->def);
        if (code)
                got = json_loads(code, JSON_DECODE_ANY, NULL);
        if (!got || !json_equal(want, got)) {
                text = json_dumps(want, JSON_ENCODE_ANY);
                problem(p, "configuration.md:%d: %s: default \"%s\", the table's is `%s`",
                        row->line, row->key, row->def, text);
                free(text);
        }
        free(code);
        json_decref(got);
        json_decref(want);
}

/* ---- tests ---- */

static void test_every_key_documented(void **state) {
        problems p = { .count = 0 };

        (void) state;
        for (size_t i = 0; ps_conf_schemas[i]; i++) {
                const ps_schema *s = ps_conf_schemas[i];
                char section[64], prefix[64], key[128];

                table_place(&the_doc, s, section, sizeof(section), prefix, sizeof(prefix));
                if (!doc_has_section(&the_doc, section)) {
                        problem(&p, "no section for table \"%s\" (a heading `%s`)", s->name,
                                section);
                        continue;
                }
                for (size_t j = 0; j < s->n_fields; j++) {
                        if (!field_is_row(&the_doc, &s->fields[j]))
                                continue;
                        field_row_key(&s->fields[j], prefix, key, sizeof(key));
                        if (!doc_find(&the_doc, section, key))
                                problem(&p, "section \"%s\": no row for key `%s`", section, key);
                }
        }
        problems_assert(&p);
}

/* The table row for a documented key; NULL when no table has it. */
static const ps_field *field_of_row(const doc_row *row, bool *in_table_section) {
        *in_table_section = false;
        for (size_t i = 0; ps_conf_schemas[i]; i++) {
                const ps_schema *s = ps_conf_schemas[i];
                char section[64], prefix[64];
                const ps_field *f;

                table_place(&the_doc, s, section, sizeof(section), prefix, sizeof(prefix));
                if (strcmp(section, row->section) != 0)
                        continue;
                *in_table_section = true;
                if (strncmp(row->key, prefix, strlen(prefix)) != 0)
                        continue;
                f = ps_schema_field(s, row->key + strlen(prefix));
                if (f && field_is_row(&the_doc, f))
                        return f;
        }
        return NULL;
}

static void test_every_row_a_key(void **state) {
        problems p = { .count = 0 };

        (void) state;
        for (size_t i = 0; i < the_doc.n_rows; i++) {
                const doc_row *row = &the_doc.rows[i];
                bool table_section;

                if (!field_of_row(row, &table_section) && table_section)
                        problem(&p, "configuration.md:%d: section \"%s\": `%s` is no key of the "
                                "loader's table", row->line, row->section, row->key);
        }
        problems_assert(&p);
}

static void test_types_and_defaults(void **state) {
        problems p = { .count = 0 };

        (void) state;
        for (size_t i = 0; i < the_doc.n_rows; i++) {
                const doc_row *row = &the_doc.rows[i];
                char want[256];
                bool table_section;
                const ps_field *f = field_of_row(row, &table_section);

                if (!f)
                        continue;
                if (!type_matches(f, row->type, want, sizeof(want)))
                        problem(&p, "configuration.md:%d: %s: type \"%s\", the table's is \"%s\"",
                                row->line, row->key, row->type, want);
                check_default(&p, f, row);
        }
        problems_assert(&p);
}

/* A policy key's row, and its default where the JSON can say it exactly. */
static void check_policy_key(problems *p, const char *flat, const json_t *value) {
        const doc_row *row = doc_find(&the_doc, "defaults", flat);
        char *code;
        json_t *got;

        if (!row) {
                problem(p, "section \"defaults\": no row for key `%s`", flat);
                return;
        }
        if (!json_is_integer(value) && !json_is_boolean(value) && !json_is_string(value))
                return;
        code = first_code(row->def);
        got = code ? json_loads(code, JSON_DECODE_ANY, NULL) : NULL;
        if (!got || !json_equal(got, value))
                problem(p, "configuration.md:%d: %s: default \"%s\" is not the policy's",
                        row->line, flat, row->def);
        json_decref(got);
        free(code);
}

/* `defaults` is policy.c's table: its keys are those of a policy's JSON,
 * its sections ("health") one level deep. */
static void test_policy_keys(void **state) {
        ps_policy *policy = ps_policy_new();
        json_t *j = ps_policy_to_json(policy), *v, *sv;
        problems p = { .count = 0 };
        size_t n_keys = 0, n_rows = 0;
        const char *key, *sub;
        char flat[128];

        (void) state;
        json_object_foreach(j, key, v) {
                if (!json_is_object(v)) {
                        check_policy_key(&p, key, v);
                        n_keys++;
                        continue;
                }
                json_object_foreach(v, sub, sv) {
                        snprintf(flat, sizeof(flat), "%s.%s", key, sub);
                        check_policy_key(&p, flat, sv);
                        n_keys++;
                }
        }
        for (size_t i = 0; i < the_doc.n_rows; i++)
                n_rows += strcmp(the_doc.rows[i].section, "defaults") == 0;
        if (n_rows != n_keys)
                problem(&p, "section \"defaults\": %zu rows for %zu policy keys", n_rows, n_keys);
        json_decref(j);
        ps_policy_free(policy);
        problems_assert(&p);
}

static void test_environment(void **state) {
        problems p = { .count = 0 };
        size_t n = 0, n_rows = 0;
        const char *name;

        (void) state;
        for (; (name = ps_conf_env_name(n)); n++)
                if (!doc_find(&the_doc, SECTION_ENV, name))
                        problem(&p, "section \"%s\": no row for `%s`", SECTION_ENV, name);
        for (size_t i = 0; i < the_doc.n_rows; i++) {
                const doc_row *row = &the_doc.rows[i];
                bool known = false;

                if (strcmp(row->section, SECTION_ENV) != 0)
                        continue;
                n_rows++;
                for (size_t j = 0; j < n && !known; j++)
                        known = strcmp(ps_conf_env_name(j), row->key) == 0;
                if (!known)
                        problem(&p, "configuration.md:%d: `%s` is no variable the loader reads",
                                row->line, row->key);
        }
        if (n_rows != n)
                problem(&p, "section \"%s\": %zu rows for %zu variables", SECTION_ENV, n_rows, n);
        problems_assert(&p);
}

/* The checks above would pass on an empty document. */
static void test_document_read(void **state) {
        (void) state;
        assert_true(doc_has_section(&the_doc, ""));
        assert_true(doc_has_section(&the_doc, "pools[]"));
        assert_non_null(doc_find(&the_doc, "pools[]", "port"));
        assert_non_null(doc_find(&the_doc, "cloud", "etcd.ttl_ms"));
        assert_non_null(doc_find(&the_doc, SECTION_ENV, "POOL_MANAGERD_ADDR"));
}

static int doc_setup(void **state) {
        const char *path = getenv("CONFIG_DOC");

        (void) state;
        if (!path)
                return -1;
        doc_read(&the_doc, path);
        return 0;
}

static int doc_teardown(void **state) {
        (void) state;
        for (size_t i = 0; i < the_doc.n_rows; i++) {
                free(the_doc.rows[i].section);
                free(the_doc.rows[i].key);
                free(the_doc.rows[i].type);
                free(the_doc.rows[i].def);
        }
        for (size_t i = 0; i < the_doc.n_sections; i++)
                free(the_doc.sections[i]);
        free(the_doc.rows);
        free(the_doc.sections);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_document_read),
                cmocka_unit_test(test_every_key_documented),
                cmocka_unit_test(test_every_row_a_key),
                cmocka_unit_test(test_types_and_defaults),
                cmocka_unit_test(test_policy_keys),
                cmocka_unit_test(test_environment),
        };

        return cmocka_run_group_tests(tests, doc_setup, doc_teardown);
}
