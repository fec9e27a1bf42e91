/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "pool-services/base/event.h"
#include "pool-services/base/log.h"
#include "base/strbuf.h"

struct ps_logger {
        FILE *out;
        ps_log_level min_level;
        ps_log_format format;
        const ps_clock *clock;
        bool journal;             /* out is the journal: "<6>" line prefixes */
};

static const char *const level_names[PS_LOG_LEVEL_MAX] = {
        [PS_LOG_DEBUG] = "debug",
        [PS_LOG_INFO] = "info",
        [PS_LOG_WARN] = "warn",
        [PS_LOG_ERROR] = "error",
        [PS_LOG_CRITICAL] = "critical",
};

const char *ps_log_level_to_string(ps_log_level level) {
        if ((unsigned) level >= PS_LOG_LEVEL_MAX)
                return NULL;
        return level_names[level];
}

int ps_log_level_from_string(const char *s, ps_log_level *ret) {
        if (!s)
                return -EINVAL;
        for (unsigned i = 0; i < PS_LOG_LEVEL_MAX; i++)
                if (strcmp(s, level_names[i]) == 0) {
                        if (ret)
                                *ret = (ps_log_level) i;
                        return 0;
                }
        return -EINVAL;
}

static const char *const format_names[PS_LOG_FORMAT_MAX] = {
        [PS_LOG_FORMAT_JSON] = "json",
        [PS_LOG_FORMAT_TEXT] = "text",
};

const char *ps_log_format_to_string(ps_log_format format) {
        if ((unsigned) format >= PS_LOG_FORMAT_MAX)
                return NULL;
        return format_names[format];
}

int ps_log_format_from_string(const char *s, ps_log_format *ret) {
        if (!s)
                return -EINVAL;
        for (unsigned i = 0; i < PS_LOG_FORMAT_MAX; i++)
                if (strcmp(s, format_names[i]) == 0) {
                        if (ret)
                                *ret = (ps_log_format) i;
                        return 0;
                }
        return -EINVAL;
}

/*
 * Whether fd is the very stream systemd connected to the journal:
 * $JOURNAL_STREAM ("device:inode") names it, and a child's redirected
 * stderr differs.
 */
static bool fd_is_journal(int fd, const char *journal_stream) {
        unsigned long long dev, ino;
        struct stat st;
        char tail;

        return journal_stream && fd >= 0 &&
               sscanf(journal_stream, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
               fstat(fd, &st) == 0 && (unsigned long long) st.st_dev == dev &&
               (unsigned long long) st.st_ino == ino;
}

ps_log_format ps_log_format_default(int fd, const char *journal_stream) {
        if (isatty(fd) || fd_is_journal(fd, journal_stream))
                return PS_LOG_FORMAT_TEXT;
        return PS_LOG_FORMAT_JSON;
}

/* The journal reads a line's priority from a "<N>" prefix (sd-daemon(3)). */
static bool stream_is_journal(FILE *out) {
        return fd_is_journal(fileno(out), getenv("JOURNAL_STREAM"));
}

/* The prefix a line of that level starts with: "" when not the journal. */
static const char *journal_prefix(const ps_logger *logger, ps_log_level level) {
        static const char *const prefix[PS_LOG_LEVEL_MAX] = {
                [PS_LOG_DEBUG] = "<7>",
                [PS_LOG_INFO] = "<6>",
                [PS_LOG_WARN] = "<4>",
                [PS_LOG_ERROR] = "<3>",
                [PS_LOG_CRITICAL] = "<2>",
        };

        return logger->journal ? prefix[level] : "";
}

ps_logger *ps_logger_new(FILE *out, ps_log_level min_level, const ps_clock *clock) {
        ps_logger *logger;

        if (!out || (unsigned) min_level >= PS_LOG_LEVEL_MAX)
                return NULL;
        logger = calloc(1, sizeof(*logger));
        if (!logger)
                return NULL;
        logger->out = out;
        logger->min_level = min_level;
        logger->clock = clock ? clock : ps_clock_system();
        logger->journal = stream_is_journal(out);
        return logger;
}

ps_logger *ps_logger_free(ps_logger *logger) {
        free(logger);
        return NULL;
}

void ps_logger_set_level(ps_logger *logger, ps_log_level min_level) {
        if (logger && (unsigned) min_level < PS_LOG_LEVEL_MAX)
                logger->min_level = min_level;
}

void ps_logger_set_format(ps_logger *logger, ps_log_format format) {
        if (logger && (unsigned) format < PS_LOG_FORMAT_MAX)
                logger->format = format;
}

ps_log_level ps_logger_get_level(const ps_logger *logger) {
        return logger ? logger->min_level : PS_LOG_LEVEL_MAX;
}

bool ps_logger_enabled(const ps_logger *logger, ps_log_level level) {
        return logger && (unsigned) level < PS_LOG_LEVEL_MAX &&
               level >= logger->min_level;
}

/* RFC 3339 in UTC with milliseconds: 2026-11-24T12:00:00.123Z. Floor
 * division, so a time before 1970 still gets 0..999 milliseconds. */
static int format_timestamp(int64_t wall_ms, char *buf, size_t size) {
        int64_t secs = wall_ms / 1000, ms = wall_ms % 1000;
        struct tm tm;
        time_t t;
        size_t n;

        if (ms < 0) {
                ms += 1000;
                secs--;
        }
        t = (time_t) secs;
        if (!gmtime_r(&t, &tm))
                return -EOVERFLOW;
        n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0 || snprintf(buf + n, size - n, ".%03dZ", (int) ms) != 5)
                return -EOVERFLOW;
        return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s does not
 * start one: overlong forms, surrogates and code points above U+10FFFF are
 * invalid, exactly what jansson refuses. */
static size_t utf8_sequence_length(const unsigned char *s) {
        unsigned char c = s[0];
        size_t len;
        unsigned cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                cp = c & 0x07;
        } else
                return 0;

        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return len;
}

/* A copy of s with every invalid byte replaced by U+FFFD. Engine output and
 * request paths can carry anything; the line must still be written. */
static char *utf8_sanitize(const char *s) {
        static const char replacement[] = "\xef\xbf\xbd";
        const unsigned char *p = (const unsigned char *) s;
        size_t len = strlen(s), o = 0;
        char *copy;

        /* At worst every byte becomes three. */
        copy = malloc(len * 3 + 1);
        if (!copy)
                return NULL;
        while (*p) {
                size_t n = utf8_sequence_length(p);

                if (n == 0) {
                        memcpy(copy + o, replacement, 3);
                        o += 3;
                        p++;
                } else {
                        memcpy(copy + o, p, n);
                        o += n;
                        p += n;
                }
        }
        copy[o] = '\0';
        return copy;
}

static json_t *json_string_lossy(const char *s) {
        json_t *j = json_string(s);
        char *clean;

        if (j)
                return j;
        clean = utf8_sanitize(s);
        if (!clean)
                return NULL;
        j = json_string(clean);
        free(clean);
        return j;
}

static bool key_is_reserved(const char *key) {
        return strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 ||
               strcmp(key, "msg") == 0;
}

static int add_fields(json_t *obj, const ps_field *fields, size_t n_fields) {
        for (size_t i = 0; fields && i < n_fields && fields[i].key; i++) {
                const ps_field *f = &fields[i];
                json_t *value;

                if (key_is_reserved(f->key))
                        continue;
                switch (f->type) {
                case PS_FIELD_TYPE_STRING:
                        if (!f->str)
                                continue;
                        value = json_string_lossy(f->str);
                        break;
                case PS_FIELD_TYPE_INTEGER:
                        value = json_integer(f->integer);
                        break;
                case PS_FIELD_TYPE_BOOL:
                        value = json_boolean(f->boolean);
                        break;
                case PS_FIELD_TYPE_NONE:
                case PS_FIELD_TYPE_MAX:
                default:
                        continue;
                }
                if (!value)
                        return -ENOMEM;
                /* Fails only for a key that is not UTF-8: a programming
                 * error that should not cost the whole line. */
                (void) json_object_set_new(obj, f->key, value);
        }
        return 0;
}

/*
 * Writes prefix (the journal's "<N>", or "") and the line's n bytes with a
 * single fwrite: stderr is unbuffered, and a line must reach the journal
 * whole.
 */
static int write_buf(FILE *out, const char *prefix, const char *buf, size_t n) {
        size_t p = strlen(prefix);
        char *joined = NULL;
        int r = 0;

        if (p > 0) {
                joined = malloc(p + n);
                if (!joined)
                        return -ENOMEM;
                memcpy(joined, prefix, p);
                memcpy(joined + p, buf, n);
                buf = joined;
        }
        errno = 0;
        if (fwrite(buf, 1, p + n, out) != p + n || fflush(out) != 0)
                r = errno > 0 ? -errno : -EIO;
        free(joined);
        return r;
}

/* Serialises obj and writes it plus '\n' in one write (write_buf()):
 * json_dumpf() would issue one write per token. */
static int write_line(FILE *out, const char *prefix, const json_t *obj) {
        char stack_buf[1024], *heap_buf = NULL, *buf = stack_buf;
        size_t n;
        int r;

        n = json_dumpb(obj, stack_buf, sizeof(stack_buf) - 1, JSON_COMPACT);
        if (n == 0)
                return -ENOMEM;
        if (n > sizeof(stack_buf) - 1) {
                heap_buf = malloc(n + 1);
                if (!heap_buf)
                        return -ENOMEM;
                if (json_dumpb(obj, heap_buf, n, JSON_COMPACT) != n) {
                        free(heap_buf);
                        return -ENOMEM;
                }
                buf = heap_buf;
        }
        buf[n] = '\n';
        r = write_buf(out, prefix, buf, n + 1);
        free(heap_buf);
        return r;
}

/* A text value goes bare unless a reader could not tell where it ends. */
static bool text_needs_quotes(const char *s) {
        if (!*s)
                return true;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
                        return true;
        return false;
}

static void text_value(ps_strbuf *b, const char *raw) {
        char *clean = utf8_sanitize(raw);
        const char *s = clean ? clean : "";

        if (!clean)
                b->oom = true;
        if (!text_needs_quotes(s)) {
                ps_strbuf_str(b, s);
                free(clean);
                return;
        }
        ps_strbuf_add(b, "\"", 1);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p == '"' || *p == '\\')
                        ps_strbuf_printf(b, "\\%c", *p);
                else if (*p == '\n')
                        ps_strbuf_str(b, "\\n");
                else if (*p == '\t')
                        ps_strbuf_str(b, "\\t");
                else if (*p < ' ' || *p == 0x7f)
                        ps_strbuf_printf(b, "\\x%02x", *p);
                else
                        ps_strbuf_add(b, (const char *) p, 1);
        ps_strbuf_add(b, "\"", 1);
        free(clean);
}

/* The message as written: unquoted, but a newline or control character
 * cannot break the line. */
static void text_message(ps_strbuf *b, const char *msg) {
        char *clean = utf8_sanitize(msg);

        if (!clean) {
                b->oom = true;
                return;
        }
        for (const unsigned char *p = (const unsigned char *) clean; *p; p++)
                if (*p == '\n')
                        ps_strbuf_str(b, "\\n");
                else if (*p < ' ' || *p == 0x7f)
                        ps_strbuf_printf(b, "\\x%02x", *p);
                else
                        ps_strbuf_add(b, (const char *) p, 1);
        free(clean);
}

static bool field_written(const ps_field *f) {
        return f->key && !key_is_reserved(f->key) &&
               (f->type == PS_FIELD_TYPE_INTEGER || f->type == PS_FIELD_TYPE_BOOL ||
                (f->type == PS_FIELD_TYPE_STRING && f->str));
}

/* pool= and replica= lead a text line: the first pool_id and replica_id
 * string among the fields. */
static bool is_lead_key(const char *key) {
        return strcmp(key, "pool_id") == 0 || strcmp(key, "replica_id") == 0;
}

static void text_lead(ps_strbuf *b, const char *key, const char *name,
                      const ps_field *const lists[2], const size_t counts[2]) {
        for (size_t l = 0; l < 2; l++)
                for (size_t i = 0; lists[l] && i < counts[l] && lists[l][i].key; i++) {
                        const ps_field *f = &lists[l][i];

                        if (f->type == PS_FIELD_TYPE_STRING && f->str &&
                            strcmp(f->key, key) == 0) {
                                ps_strbuf_printf(b, "%s=", name);
                                text_value(b, f->str);
                                ps_strbuf_add(b, " ", 1);
                                return;
                        }
                }
}

static void text_fields(ps_strbuf *b, const ps_field *const lists[2], const size_t counts[2]) {
        for (size_t l = 0; l < 2; l++)
                for (size_t i = 0; lists[l] && i < counts[l] && lists[l][i].key; i++) {
                        const ps_field *f = &lists[l][i];

                        if (!field_written(f) ||
                            (f->type == PS_FIELD_TYPE_STRING && is_lead_key(f->key)))
                                continue;
                        ps_strbuf_printf(b, " %s=", f->key);
                        if (f->type == PS_FIELD_TYPE_INTEGER)
                                ps_strbuf_printf(b, "%lld", (long long) f->integer);
                        else if (f->type == PS_FIELD_TYPE_BOOL)
                                ps_strbuf_str(b, f->boolean ? "true" : "false");
                        else
                                text_value(b, f->str);
                }
}

static int log_text(ps_logger *logger, const char *ts, ps_log_level level, const char *msg,
                    const ps_field *a, size_t na, const ps_field *b, size_t nb) {
        const ps_field *const lists[2] = { a, b };
        const size_t counts[2] = { na, nb };
        ps_strbuf line = { 0 };
        int r;

        ps_strbuf_printf(&line, "%s %-5s ", ts, level_names[level]);
        text_lead(&line, "pool_id", "pool", lists, counts);
        text_lead(&line, "replica_id", "replica", lists, counts);
        text_message(&line, msg);
        text_fields(&line, lists, counts);
        ps_strbuf_add(&line, "\n", 1);
        r = line.oom ? -ENOMEM : write_buf(logger->out, journal_prefix(logger, level), line.s, line.len);
        free(line.s);
        return r;
}

/* Two field lists, so an event's own fields follow the ones the logger
 * derives from it without copying either into a new array. */
static int log_two(ps_logger *logger, ps_log_level level, const char *msg,
                   const ps_field *a, size_t na, const ps_field *b, size_t nb) {
        char ts[64];
        json_t *obj, *jmsg;
        int r;

        if ((unsigned) level >= PS_LOG_LEVEL_MAX || !msg)
                return -EINVAL;
        if (!ps_logger_enabled(logger, level))
                return 0;

        r = format_timestamp(ps_clock_wall_ms(logger->clock), ts, sizeof(ts));
        if (r < 0)
                return r;
        if (logger->format == PS_LOG_FORMAT_TEXT)
                return log_text(logger, ts, level, msg, a, na, b, nb);

        obj = json_object();
        jmsg = json_string_lossy(msg);
        if (!obj || !jmsg) {
                json_decref(jmsg);
                r = -ENOMEM;
                goto out;
        }
        if (json_object_set_new(obj, "ts", json_string(ts)) < 0 ||
            json_object_set_new(obj, "level", json_string(level_names[level])) < 0 ||
            json_object_set_new(obj, "msg", jmsg) < 0) {
                r = -ENOMEM;
                goto out;
        }
        r = add_fields(obj, a, na);
        if (r < 0)
                goto out;
        r = add_fields(obj, b, nb);
        if (r < 0)
                goto out;
        r = write_line(logger->out, journal_prefix(logger, level), obj);
out:
        json_decref(obj);
        return r;
}

int ps_log_fields(ps_logger *logger, ps_log_level level, const char *msg,
                  const ps_field *fields, size_t n_fields) {
        return log_two(logger, level, msg, fields, n_fields, NULL, 0);
}

int ps_logger_log_event(ps_logger *logger, const ps_event *event) {
        const char *type_name;

        if (!event)
                return -EINVAL;
        if (!ps_logger_enabled(logger, event->level))
                return 0;

        type_name = event->type == PS_EVENT_GENERIC ? NULL
                                                    : ps_event_type_to_string(event->type);
        const ps_field derived[] = {
                PS_FIELD_STR("event", type_name),
                PS_FIELD_STR("pool_id", event->pool_id),
                PS_FIELD_STR("replica_id", event->replica_id),
                PS_FIELD_STR("correlation_id", event->correlation_id),
        };
        return log_two(logger, event->level, event->message ? event->message : "event",
                       derived, sizeof(derived) / sizeof(derived[0]),
                       event->fields, event->n_fields);
}
