/* SPDX-License-Identifier: MIT */
/*
 * What a person reads: tables (status, devices, leases) and key: value
 * listings (show, node). Colour only when stdout is a terminal.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

#define ERROR_WIDTH 48

#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define RED "\033[31m"
#define RESET "\033[0m"

void ctl_format_duration(int64_t s, char *buf, size_t len) {
        if (s < 0)
                snprintf(buf, len, "-");
        else if (s >= 86400)
                snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
        else if (s >= 3600)
                snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
        else if (s >= 60)
                snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
        else
                snprintf(buf, len, "%" PRId64 "s", s);
}

static const char *str_or(const json_t *v, const char *fallback) {
        const char *s = json_string_value(v);

        return s && s[0] ? s : fallback;
}

static const char *state_color(const char *state) {
        if (strcmp(state, "ready") == 0)
                return GREEN;
        if (strcmp(state, "failed") == 0 || strcmp(state, "backoff") == 0)
                return RED;
        if (strcmp(state, "stopped") == 0 || strcmp(state, "empty") == 0)
                return "";
        return YELLOW;
}

/* One line of text cut to width characters (bytes), "..." marking a cut;
 * newlines become spaces. */
static void shorten(const char *s, char *buf, size_t width) {
        size_t n = strlen(s);

        if (n <= width) {
                memcpy(buf, s, n + 1);
        } else {
                memcpy(buf, s, width - 3);
                memcpy(buf + width - 3, "...", 4);
        }
        for (char *c = buf; *c; c++)
                if (*c == '\n' || *c == '\r' || *c == '\t')
                        *c = ' ';
}

static void print_state(const ctl_opts *o, const char *state, int width) {
        const char *c = o->color ? state_color(state) : "";

        printf("%s%-*s%s", c, width, state, c[0] ? RESET : "");
}

/* ---- tables: columns as wide as their widest cell, two spaces apart ---- */

#define COLS_MAX 10

typedef struct table {
        size_t n_cols;
        const char *const *header;
        int state_col;               /* coloured by state; -1: none          */
        char *(*rows)[COLS_MAX];
        size_t n_rows;
} table;

static void table_add(table *t, char *const cells[]) {
        char *(*rows)[COLS_MAX] = realloc(t->rows, (t->n_rows + 1) * sizeof(*rows));

        if (!rows)
                return;
        t->rows = rows;
        for (size_t c = 0; c < t->n_cols; c++)
                rows[t->n_rows][c] = strdup(cells[c] ? cells[c] : "-");
        t->n_rows++;
}

static void table_line(const ctl_opts *o, const table *t, char *const cells[], const int *width,
                       bool header) {
        for (size_t c = 0; c < t->n_cols; c++) {
                const char *cell = cells[c] ? cells[c] : "-";
                int w = c + 1 == t->n_cols ? 0 : width[c];

                if (!header && (int) c == t->state_col)
                        print_state(o, cell, w);
                else
                        printf("%-*s", w, cell);
                printf("%s", c + 1 == t->n_cols ? "\n" : "  ");
        }
}

/* Prints the table and frees its rows. */
static void table_print(const ctl_opts *o, table *t) {
        int width[COLS_MAX] = { 0 };

        for (size_t c = 0; c < t->n_cols; c++) {
                width[c] = (int) strlen(t->header[c]);
                for (size_t r = 0; r < t->n_rows; r++)
                        if (t->rows[r][c] && (int) strlen(t->rows[r][c]) > width[c])
                                width[c] = (int) strlen(t->rows[r][c]);
        }
        table_line(o, t, (char *const *) t->header, width, true);
        for (size_t r = 0; r < t->n_rows; r++) {
                table_line(o, t, t->rows[r], width, false);
                for (size_t c = 0; c < t->n_cols; c++)
                        free(t->rows[r][c]);
        }
        free(t->rows);
        t->rows = NULL;
        t->n_rows = 0;
}

/* One row of the status table. */
static void status_row(table *t, const char *pool, const json_t *rep, const json_t *p) {
        const json_t *src = rep ? rep : p;
        char uptime[32], slots[64], pid[24], restarts[24], error[ERROR_WIDTH + 1];
        json_int_t pidv = json_integer_value(json_object_get(src, "pid"));

        /* An engine's age; none without one. */
        ctl_format_duration(rep && pidv > 0 && json_is_integer(json_object_get(rep, "uptime_s"))
                                    ? json_integer_value(json_object_get(rep, "uptime_s")) : -1,
                            uptime, sizeof(uptime));
        snprintf(slots, sizeof(slots), "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(src, "active_leases")),
                 json_integer_value(json_object_get(src, "slots_total")));
        if (pidv > 0)
                snprintf(pid, sizeof(pid), "%" JSON_INTEGER_FORMAT, pidv);
        else
                snprintf(pid, sizeof(pid), "-");
        snprintf(restarts, sizeof(restarts), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(src, "restart_count")));
        shorten(str_or(json_object_get(src, "last_error"), "-"), error, ERROR_WIDTH);
        table_add(t, (char *const[]) {
                (char *) pool,
                (char *) (rep ? str_or(json_object_get(rep, "replica_id"), "-") : "-"),
                (char *) str_or(json_object_get(src, "state"), "?"), pid, uptime, restarts, slots,
                (char *) str_or(json_object_get(src, "device_mask"), "-"),
                (char *) str_or(json_object_get(src, "model_id"), "-"), error,
        });
}

void ctl_print_status(const ctl_opts *o, const json_t *answer) {
        static const char *const header[] = { "POOL", "REPLICA", "STATE", "PID", "UPTIME",
                                              "RESTARTS", "SLOTS", "DEVICES", "MODEL",
                                              "LAST ERROR" };
        table t = { .n_cols = 10, .header = header, .state_col = 2 };
        const json_t *pools = json_object_get(answer, "pools"), *p, *rep;
        size_t i, j;

        json_array_foreach(pools, i, p) {
                const char *id = str_or(json_object_get(p, "pool_id"), "?");
                const json_t *reps = json_object_get(p, "replicas");

                if (json_array_size(reps) == 0)
                        status_row(&t, id, NULL, p);
                json_array_foreach(reps, j, rep)
                        status_row(&t, id, rep, p);
        }
        table_print(o, &t);
}

/* "2026-12-06 19:30:05 UTC (in 9m58s)" for an epoch-ms time; "-" for null. */
static void format_time(const json_t *ms, char *buf, size_t len) {
        char when[64], rel[32];
        time_t now = time(NULL), t;
        struct tm tm;

        if (!json_is_integer(ms)) {
                snprintf(buf, len, "-");
                return;
        }
        t = (time_t) (json_integer_value(ms) / 1000);
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
        ctl_format_duration(t >= now ? (int64_t) (t - now) : (int64_t) (now - t), rel, sizeof(rel));
        snprintf(buf, len, "%s (%s%s%s)", when, t >= now ? "in " : "", rel, t >= now ? "" : " ago");
}

/* A JSON value as one short line. */
static void print_value(const char *indent, const char *key, const json_t *v) {
        char *text;

        if (json_is_string(v)) {
                printf("%s%-20s %s\n", indent, key, json_string_value(v));
        } else if (json_is_null(v)) {
                printf("%s%-20s -\n", indent, key);
        } else {
                text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                printf("%s%-20s %s\n", indent, key, text ? text : "?");
                free(text);
        }
}

/* Every field of an object, times made readable; nested lists apart. */
static void print_fields(const char *indent, const json_t *obj) {
        const char *key;
        const json_t *v;
        char when[128];

        json_object_foreach((json_t *) obj, key, v) {
                if (strcmp(key, "replicas") == 0 || strcmp(key, "devices") == 0)
                        continue;
                if (((strlen(key) > 3 && strcmp(key + strlen(key) - 3, "_at") == 0) ||
                     strcmp(key, "last_heartbeat") == 0) && json_is_integer(v)) {
                        format_time(v, when, sizeof(when));
                        printf("%s%-20s %s\n", indent, key, when);
                } else {
                        print_value(indent, key, v);
                }
        }
}

void ctl_print_pool(const ctl_opts *o, const json_t *pool) {
        const json_t *rep, *dev;
        size_t i;

        printf("pool %s: ", str_or(json_object_get(pool, "pool_id"), "?"));
        print_state(o, str_or(json_object_get(pool, "state"), "?"), 0);
        printf("\n");
        print_fields("  ", pool);
        json_array_foreach(json_object_get(pool, "replicas"), i, rep) {
                printf("\nreplica %s: ", str_or(json_object_get(rep, "replica_id"), "?"));
                print_state(o, str_or(json_object_get(rep, "state"), "?"), 0);
                printf("\n");
                print_fields("  ", rep);
        }
        json_array_foreach(json_object_get(pool, "devices"), i, dev) {
                printf("\ndevice %" JSON_INTEGER_FORMAT ":\n",
                       json_integer_value(json_object_get(dev, "index")));
                print_fields("  ", dev);
        }
}

void ctl_print_devices(const ctl_opts *o, const json_t *answer) {
        static const char *const header[] = { "INDEX", "NAME", "CC", "VRAM USED", "VRAM TOTAL",
                                              "UUID" };
        table t = { .n_cols = 6, .header = header, .state_col = -1 };
        const json_t *d;
        size_t i;

        printf("backend: %s\n", str_or(json_object_get(answer, "backend"), "?"));
        json_array_foreach(json_object_get(answer, "devices"), i, d) {
                double total = (double) json_integer_value(json_object_get(d, "vram_total_bytes"));
                double free_b = (double) json_integer_value(json_object_get(d, "vram_free_bytes"));
                char index[24], used[32], tot[32];

                snprintf(index, sizeof(index), "%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(d, "index")));
                snprintf(used, sizeof(used), "%.1f GiB", (total - free_b) / (1 << 30));
                snprintf(tot, sizeof(tot), "%.1f GiB", total / (1 << 30));
                table_add(&t, (char *const[]) {
                        index, (char *) str_or(json_object_get(d, "name"), "-"),
                        (char *) str_or(json_object_get(d, "compute_capability"), "-"), used, tot,
                        (char *) str_or(json_object_get(d, "uuid"), "-"),
                });
        }
        table_print(o, &t);
}

void ctl_print_node(const ctl_opts *o, const json_t *node) {
        const char *key;
        const json_t *v;

        (void) o;
        json_object_foreach((json_t *) node, key, v) {
                if (json_is_object(v)) {
                        printf("%s:\n", key);
                        print_fields("  ", v);
                } else {
                        print_value("", key, v);
                }
        }
}

void ctl_print_leases(const ctl_opts *o, const json_t *answer) {
        static const char *const header[] = { "LEASE", "REPLICA", "GRANTED", "EXPIRES" };
        table t = { .n_cols = 4, .header = header, .state_col = -1 };
        char granted[128], expires[128];
        const json_t *l;
        size_t i;

        json_array_foreach(json_object_get(answer, "leases"), i, l) {
                format_time(json_object_get(l, "granted_at"), granted, sizeof(granted));
                format_time(json_object_get(l, "expires_at"), expires, sizeof(expires));
                table_add(&t, (char *const[]) {
                        (char *) str_or(json_object_get(l, "lease_id"), "?"),
                        (char *) str_or(json_object_get(l, "replica_id"), "?"), granted, expires,
                });
        }
        table_print(o, &t);
}

void ctl_print_reload(const ctl_opts *o, const json_t *a) {
        (void) o;
        if (json_is_true(json_object_get(a, "noop"))) {
                printf("pool %s already runs %s: nothing changed\n",
                       str_or(json_object_get(a, "pool_id"), "?"),
                       str_or(json_object_get(a, "model_id"), "?"));
                return;
        }
        printf("pool %s reloaded to %s (%s, %" JSON_INTEGER_FORMAT " ms)\n",
               str_or(json_object_get(a, "pool_id"), "?"), str_or(json_object_get(a, "model_id"), "?"),
               str_or(json_object_get(a, "strategy"), "?"),
               json_integer_value(json_object_get(a, "duration_ms")));
        if (json_is_string(json_object_get(a, "surge_fallback")))
                printf("  surge fell back to drain-first: %s\n",
                       json_string_value(json_object_get(a, "surge_fallback")));
}

void ctl_print_config_reload(const ctl_opts *o, const json_t *a) {
        static const char *const kinds[] = { "added", "removed", "changed", "unchanged" };

        (void) o;
        printf("configuration reloaded\n");
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
                const json_t *list = json_object_get(a, kinds[k]), *id;
                size_t i;

                printf("  %-10s", kinds[k]);
                if (json_array_size(list) == 0)
                        printf(" -");
                json_array_foreach(list, i, id)
                        printf(" %s", json_string_value(id));
                printf("\n");
        }
}
