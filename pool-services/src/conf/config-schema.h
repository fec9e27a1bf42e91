/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The configuration file as tables: one per section, one row per key,
 * and one walker (config-schema.c) that reads any of them. The walker
 * refuses keys a table does not have, checks each value's type and
 * range, stores it at its offset, then calls the row's hook for what a
 * table cannot say. Rows are read in table order, so the first problem in
 * that order is the one reported, naming its place:
 *
 *   pools[3].port: must be 1..65535, got 0
 *
 * With a report in the context (--check-config) every problem is reported:
 * the walk goes on past a bad value, and an unknown key gets the table's
 * nearest key ("did you mean") when it is within two edits.
 *
 * docs/configuration.md has a table per section with the same keys;
 * tests/unit/services/test-config-doc.c holds the two together.
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "conf/config-private.h"

typedef enum ps_field_type {
        PS_FIELD_STRING,        /* any string                                    */
        PS_FIELD_WORD,          /* 1..255 bytes without spaces or controls       */
        PS_FIELD_PATH,          /* relative: against the file's directory        */
        PS_FIELD_INT,           /* min..max (max PS_FIELD_NO_MAX: min and up)    */
        PS_FIELD_BOOL,
        PS_FIELD_ENUM,          /* one of names, stored as an int                */
        PS_FIELD_STRINGS,       /* an array of strings, at most max (0: any)     */
        PS_FIELD_OBJECT,        /* a nested section (sub), or the hook's own     */
        PS_FIELD_ARRAY,         /* the hook's own                                */
        PS_FIELD_CHECK,         /* no key: the hook runs at this point           */
        PS_FIELD_TYPE_MAX,
} ps_field_type;

#define PS_FIELD_NO_MAX ((json_int_t) LLONG_MAX)

/* Where a row stores its value: offset and size of a member of the
 * section's struct. A row without it leaves storing to its hook. */
#define PS_MEMBER(type, member) \
        .offset = offsetof(type, member), .size = sizeof(((type *) 0)->member)

typedef struct ps_schema ps_schema;

/*
 * What a table cannot say (a cross-check, a canonical form, a nested
 * array). base is the section's struct, v the value (NULL for a CHECK),
 * at the value's place ("pools[2].host"; for a CHECK the section's,
 * "pools[2]"). Runs after the value was stored. 0, PS_E_INVALID with the
 * message, or a negative errno.
 */
typedef int (*ps_field_hook)(ps_conf_ctx *c, void *base, const json_t *v, const char *at);

typedef struct ps_field {
        const char *key;              /* NULL for a CHECK                    */
        ps_field_type type;
        size_t offset;                /* of the member, or a nested section  */
        size_t size;                  /* 0: not stored (the hook does)       */
        size_t count_offset;          /* STRINGS: the size_t count           */
        json_int_t min, max;          /* INT; STRINGS: max entries           */
        bool required;
        const char *hint;             /* "pools[0].device_mask: required (hint)" */
        bool empty_ok;                /* PATH: "" is kept as ""              */
        const char *const *names;     /* ENUM                                */
        int n_names;
        const ps_schema *sub;         /* OBJECT                              */
        ps_field_hook hook;
        /* the default, set by ps_schema_defaults(): */
        bool has_default;             /* INT, BOOL, ENUM: def_int            */
        json_int_t def_int;
        const char *def_str;          /* STRING, WORD, PATH; NULL: none      */
        const char *const *def_strv;  /* STRINGS, NULL-terminated            */
} ps_field;

struct ps_schema {
        const char *name;             /* its table in docs/configuration.md:
                                         "" (top level), "gpu.devices[]",
                                         "cloud.etcd" (inside cloud's)       */
        const ps_field *fields;
        size_t n_fields;
};

/*
 * Reads obj (it must be an object: "<where>: must be an object, got ...")
 * into base by the table s. where is obj's place, "" at the top.
 */
int ps_schema_walk(ps_conf_ctx *c, const ps_schema *s, const json_t *obj, const char *where,
                   void *base);

/* Stores every default of s (and of its nested sections) into base. */
int ps_schema_defaults(const ps_schema *s, void *base);

/* The row for key; NULL when s has none. */
const ps_field *ps_schema_field(const ps_schema *s, const char *key);

/* Every table, the top level first; NULL-terminated. */
extern const ps_schema *const ps_conf_schemas[];
extern const ps_schema ps_conf_schema_pool; /* config-pools.c */

/* The environment's variables, in the order they are checked; NULL past
 * the end. */
const char *ps_conf_env_name(size_t i);
