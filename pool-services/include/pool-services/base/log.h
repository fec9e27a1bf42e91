/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pool-services/base/clock.h"

/*
 * One line per event, in one of two formats. JSON lines (the default of a
 * logger):
 *
 *   {"ts":"2026-11-24T12:00:00.123Z","level":"info","msg":"listening","address":"127.0.0.1:9200"}
 *
 * `ts` (RFC 3339, UTC, milliseconds), `level` and `msg` always come first,
 * then the structured fields in the order given, with their types (strings,
 * integers, true/false). Text, for a person at a terminal or the journal:
 *
 *   2026-11-24T12:00:00.123Z warn  pool=qwen replica=r0 crashed signal=SIGKILL
 *
 * the timestamp, the level padded to five, pool= and replica= when the line
 * has them, the message, then the other fields as key=value (a value with
 * spaces, quotes, '=' or control characters quoted, C-style escapes).
 * Each line goes out in one write and is flushed, so a reader on a pipe
 * never sees half a line.
 */

typedef enum ps_log_format {
        PS_LOG_FORMAT_JSON,
        PS_LOG_FORMAT_TEXT,
        PS_LOG_FORMAT_MAX,
} ps_log_format;

/* "json", "text"; NULL when out of range. */
const char *ps_log_format_to_string(ps_log_format format);

/* 0 and *ret set on success; -EINVAL for an unknown name. */
int ps_log_format_from_string(const char *s, ps_log_format *ret);

/*
 * The format for a stream on fd when none is asked for: text when fd is a
 * terminal or the systemd journal (journal_stream, the value of
 * $JOURNAL_STREAM, "DEVICE:INODE", names fd's device and inode), JSON
 * otherwise (a pipe to a log shipper, a file).
 */
ps_log_format ps_log_format_default(int fd, const char *journal_stream);

typedef enum ps_log_level {
        PS_LOG_DEBUG,
        PS_LOG_INFO,
        PS_LOG_WARN,
        PS_LOG_ERROR,
        PS_LOG_CRITICAL,
        PS_LOG_LEVEL_MAX,
} ps_log_level;

/* "debug", "info", "warn", "error", "critical"; NULL when out of range. */
const char *ps_log_level_to_string(ps_log_level level);

/* 0 and *ret set on success; -EINVAL for an unknown name (ret untouched). */
int ps_log_level_from_string(const char *s, ps_log_level *ret);

typedef enum ps_field_type {
        PS_FIELD_TYPE_NONE,       /* terminator; never written             */
        PS_FIELD_TYPE_STRING,
        PS_FIELD_TYPE_INTEGER,
        PS_FIELD_TYPE_BOOL,       /* JSON true/false; text true/false       */
        PS_FIELD_TYPE_MAX,
} ps_field_type;

/*
 * One structured field. Keys and strings are borrowed for the duration of
 * the call. A string field whose value is NULL is left out of the line, so
 * optional fields need no if around the call:
 *
 *   PS_FIELD_STR("correlation_id", maybe_null)
 *
 * The keys `ts`, `level` and `msg` belong to the logger; fields that use
 * them are dropped. Invalid UTF-8 in a string is written as U+FFFD rather
 * than losing the line.
 */
typedef struct ps_field {
        const char *key;
        ps_field_type type;
        union {
                const char *str;
                int64_t integer;
                bool boolean;
        };
} ps_field;

#define PS_FIELD_STR(k, v) \
        ((ps_field) { .key = (k), .type = PS_FIELD_TYPE_STRING, .str = (v) })
#define PS_FIELD_INT(k, v) \
        ((ps_field) { .key = (k), .type = PS_FIELD_TYPE_INTEGER, .integer = (int64_t) (v) })
#define PS_FIELD_BOOL(k, v) \
        ((ps_field) { .key = (k), .type = PS_FIELD_TYPE_BOOL, .boolean = (v) })
/* A boolean written only when present: a field to leave out otherwise. */
#define PS_FIELD_BOOL_IF(k, present, v)                                          \
        ((ps_field) { .key = (k),                                               \
                      .type = (present) ? PS_FIELD_TYPE_BOOL : PS_FIELD_TYPE_NONE, \
                      .boolean = (v) })
#define PS_FIELD_END \
        ((ps_field) { .key = NULL, .type = PS_FIELD_TYPE_NONE })

typedef struct ps_logger ps_logger;

/*
 * out and clock are borrowed and must outlive the logger; a NULL clock is
 * the system clock. Lines below min_level are dropped. NULL on OOM or a
 * NULL out.
 */
ps_logger *ps_logger_new(FILE *out, ps_log_level min_level, const ps_clock *clock);

/* Does not close `out`. Accepts NULL; returns NULL. */
ps_logger *ps_logger_free(ps_logger *logger);

void ps_logger_set_level(ps_logger *logger, ps_log_level min_level);

/* JSON until set. */
void ps_logger_set_format(ps_logger *logger, ps_log_format format);
ps_log_level ps_logger_get_level(const ps_logger *logger);

/* Would a line at this level be written? Lets a caller skip building
 * expensive fields. False for a NULL logger. */
bool ps_logger_enabled(const ps_logger *logger, ps_log_level level);

/*
 * Writes one line with n_fields fields (stopping early at a field whose key
 * is NULL). Returns 0 when written or filtered out (also for a NULL logger),
 * -EINVAL for a bad level or NULL msg, -ENOMEM, or the negative errno of a
 * failed write. Logging never aborts the caller: most callers ignore it.
 */
int ps_log_fields(ps_logger *logger, ps_log_level level, const char *msg,
                  const ps_field *fields, size_t n_fields);

/*
 * ps_log(logger, level, msg, fields...): the same with the fields written
 * inline,
 *
 *   ps_log(log, PS_LOG_INFO, "listening",
 *          PS_FIELD_STR("address", addr), PS_FIELD_INT("port", port));
 *
 * The helpers split msg from the fields and append PS_FIELD_END, so the
 * field list may be empty (ISO C wants at least one argument for `...`).
 */
#define ps_log(logger, level, ...)                                              \
        PS_LOG_ARRAY_((logger), (level), PS_LOG_MSG_(__VA_ARGS__, 0),           \
                      ((const ps_field[]) { PS_LOG_FIELDS_(__VA_ARGS__, PS_FIELD_END) }))
#define PS_LOG_MSG_(msg, ...) (msg)
#define PS_LOG_FIELDS_(msg, ...) __VA_ARGS__
#define PS_LOG_ARRAY_(logger, level, msg, array) \
        ps_log_fields(logger, level, msg, array, sizeof(array) / sizeof((array)[0]) - 1)

