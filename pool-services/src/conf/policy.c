/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errfmt.h"
#include "conf/policy-private.h"

#define HEALTH_PATH_MAX 256

struct ps_policy {
        pd_policy pd;
        char health_path[HEALTH_PATH_MAX];
        bool verify_listener;   /* a 200 counts once the engine holds the listener */
        int64_t retire_grace_ms;   /* an engine with no in-flight count */
};

typedef enum field_kind {
        FIELD_MS,               /* integer >= 0, int64_t milliseconds   */
        FIELD_COUNT,            /* integer >= 0, unsigned               */
        FIELD_REAL,             /* number, double                       */
        FIELD_BOOL,
        FIELD_PATH,             /* string starting with '/'             */
        FIELD_MULTIPLIERS,      /* {"cuda_error": 2, ...}               */
        FIELD_RESTART,          /* "on-failure" | "always" | "never"    */
        FIELD_KIND_MAX,
} field_kind;

typedef struct field {
        const char *section;    /* NULL: top level */
        const char *key;
        field_kind kind;
        size_t offset;          /* into struct ps_policy */
} field;

#define PD(member) offsetof(struct ps_policy, pd) + offsetof(pd_policy, member)

static const field fields[] = {
        { "health", "path", FIELD_PATH, offsetof(struct ps_policy, health_path) },
        { "health", "interval_ms", FIELD_MS, PD(health.interval_ms) },
        { "health", "timeout_ms", FIELD_MS, PD(health.timeout_ms) },
        { "health", "startup_timeout_ms", FIELD_MS, PD(health.startup_timeout_ms) },
        { "health", "stall_timeout_ms", FIELD_MS, PD(health.stall_timeout_ms) },
        { "health", "failure_threshold", FIELD_COUNT, PD(health.failure_threshold) },
        { "health", "verify_listener", FIELD_BOOL, offsetof(struct ps_policy, verify_listener) },
        { "backoff", "initial_ms", FIELD_MS, PD(backoff.initial_ms) },
        { "backoff", "factor", FIELD_REAL, PD(backoff.factor) },
        { "backoff", "min_ms", FIELD_MS, PD(backoff.min_ms) },
        { "backoff", "max_ms", FIELD_MS, PD(backoff.max_ms) },
        { "backoff", "jitter", FIELD_REAL, PD(backoff.jitter) },
        { "backoff", "stable_reset_ms", FIELD_MS, PD(backoff.stable_reset_ms) },
        { "backoff", "class_multipliers", FIELD_MULTIPLIERS, PD(backoff.class_multiplier) },
        { "breaker", "threshold", FIELD_COUNT, PD(breaker.threshold) },
        { "breaker", "open_ms", FIELD_MS, PD(breaker.open_ms) },
        { "breaker", "close_after_ms", FIELD_MS, PD(breaker.close_after_ms) },
        { "breaker", "separate_gpu_circuit", FIELD_BOOL, PD(breaker.separate_gpu_circuit) },
        { "storm", "limit", FIELD_COUNT, PD(storm.limit) },
        { "storm", "window_ms", FIELD_MS, PD(storm.window_ms) },
        { "storm", "burst_window_ms", FIELD_MS, PD(storm.burst_window_ms) },
        { "storm", "warn_above", FIELD_COUNT, PD(storm.warn_above) },
        { "reload", "retire_grace_ms", FIELD_MS, offsetof(struct ps_policy, retire_grace_ms) },
        { NULL, "stop_grace_ms", FIELD_MS, PD(stop_grace_ms) },
        { NULL, "lease_ttl_ms", FIELD_MS, PD(lease_ttl_ms) },
        { NULL, "restart", FIELD_RESTART, PD(restart) },
};

static const char *const sections[] = { "health", "backoff", "breaker", "storm", "reload" };

ps_policy *ps_policy_new(void) {
        ps_policy *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        pd_policy_init(&p->pd);
        snprintf(p->health_path, sizeof(p->health_path), "/health");
        p->verify_listener = true;
        p->retire_grace_ms = PS_POLICY_RETIRE_GRACE_DEFAULT_MS;
        return p;
}

ps_policy *ps_policy_copy(const ps_policy *policy) {
        ps_policy *p;

        if (!policy)
                return NULL;
        p = malloc(sizeof(*p));
        if (p)
                *p = *policy;
        return p;
}

ps_policy *ps_policy_free(ps_policy *policy) {
        free(policy);
        return NULL;
}

const pd_policy *ps_policy_domain(const ps_policy *policy) {
        return &policy->pd;
}

const char *ps_policy_health_path(const ps_policy *policy) {
        return policy->health_path;
}

bool ps_policy_verify_listener(const ps_policy *policy) {
        return policy->verify_listener;
}

int64_t ps_policy_retire_grace_ms(const ps_policy *policy) {
        return policy->retire_grace_ms;
}

static int set_field(ps_policy *p, const field *f, const json_t *v, const char *path,
                     char *err, size_t errlen) {
        char *at = (char *) p + f->offset;
        json_int_t i;

        switch (f->kind) {
        case FIELD_MS:
        case FIELD_COUNT:
                if (!json_is_integer(v))
                        return ps_errf(err, errlen, -EINVAL, "%s: must be an integer, got %s", path, ps_json_type_name(v));
                i = json_integer_value(v);
                if (i < 0)
                        return ps_errf(err, errlen, -EINVAL, "%s: must be >= 0, got %" JSON_INTEGER_FORMAT, path, i);
                if (f->kind == FIELD_COUNT) {
                        if (i > UINT_MAX)
                                return ps_errf(err, errlen, -EINVAL, "%s: too large, got %" JSON_INTEGER_FORMAT, path, i);
                        *(unsigned *) (void *) at = (unsigned) i;
                } else {
                        *(int64_t *) (void *) at = (int64_t) i;
                }
                return 0;
        case FIELD_REAL:
                if (!json_is_number(v))
                        return ps_errf(err, errlen, -EINVAL, "%s: must be a number, got %s", path, ps_json_type_name(v));
                *(double *) (void *) at = json_number_value(v);
                return 0;
        case FIELD_BOOL:
                if (!json_is_boolean(v))
                        return ps_errf(err, errlen, -EINVAL, "%s: must be true or false, got %s", path, ps_json_type_name(v));
                *(bool *) (void *) at = json_is_true(v);
                return 0;
        case FIELD_PATH:
                if (!json_is_string(v))
                        return ps_errf(err, errlen, -EINVAL, "%s: must be a string, got %s", path, ps_json_type_name(v));
                if (json_string_value(v)[0] != '/' || json_string_length(v) >= HEALTH_PATH_MAX ||
                    strpbrk(json_string_value(v), " \r\n\t"))
                        return ps_errf(err, errlen, -EINVAL, "%s: must be a URL path starting with '/' "
                                    "(no spaces, under %d bytes)", path, HEALTH_PATH_MAX);
                snprintf(at, HEALTH_PATH_MAX, "%s", json_string_value(v));
                return 0;
        case FIELD_MULTIPLIERS: {
                double *mult = (double *) (void *) at;
                const char *cls_name;
                json_t *m;
                pd_crash_class cls;

                if (!json_is_object(v))
                        return ps_errf(err, errlen, -EINVAL, "%s: must be an object, got %s", path, ps_json_type_name(v));
                json_object_foreach((json_t *) v, cls_name, m) {
                        if (pd_crash_class_from_string(cls_name, &cls) != 0)
                                return ps_errf(err, errlen, -EINVAL, "%s.%s: unknown crash class", path, cls_name);
                        if (!json_is_number(m))
                                return ps_errf(err, errlen, -EINVAL, "%s.%s: must be a number, got %s",
                                            path, cls_name, ps_json_type_name(m));
                        mult[cls] = json_number_value(m);
                }
                return 0;
        }
        case FIELD_RESTART:
                if (!json_is_string(v) ||
                    pd_restart_mode_from_string(json_string_value(v), (pd_restart_mode *) (void *) at) != 0)
                        return ps_errf(err, errlen, -EINVAL, "%s: must be \"on-failure\", \"always\" "
                                       "or \"never\"", path);
                return 0;
        case FIELD_KIND_MAX:
                break;
        }
        return -EINVAL;
}

static const field *find_field(const char *section, const char *key) {
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                bool same_section = section ? fields[i].section && strcmp(section, fields[i].section) == 0
                                            : fields[i].section == NULL;
                if (same_section && strcmp(key, fields[i].key) == 0)
                        return &fields[i];
        }
        return NULL;
}

static bool is_section(const char *key) {
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
                if (strcmp(key, sections[i]) == 0)
                        return true;
        return false;
}

int ps_policy_apply_json(ps_policy *policy, const json_t *obj, const char *where,
                         char *err, size_t errlen) {
        ps_policy next;
        pd_error perr;
        const char *key, *sub;
        json_t *v, *sv;
        char path[256];
        const field *f;
        int r;

        if (!policy || !obj)
                return -EINVAL;
        where = where ? where : "policy";
        if (!json_is_object(obj))
                return ps_errf(err, errlen, -EINVAL, "%s: must be an object, got %s", where, ps_json_type_name(obj));

        next = *policy;
        json_object_foreach((json_t *) obj, key, v) {
                if (is_section(key)) {
                        if (!json_is_object(v))
                                return ps_errf(err, errlen, -EINVAL, "%s.%s: must be an object, got %s",
                                            where, key, ps_json_type_name(v));
                        json_object_foreach(v, sub, sv) {
                                snprintf(path, sizeof(path), "%s.%s.%s", where, key, sub);
                                f = find_field(key, sub);
                                if (!f)
                                        return ps_errf(err, errlen, -EINVAL, "%s: unknown key", path);
                                r = set_field(&next, f, sv, path, err, errlen);
                                if (r < 0)
                                        return r;
                        }
                        continue;
                }
                snprintf(path, sizeof(path), "%s.%s", where, key);
                f = find_field(NULL, key);
                if (!f)
                        return ps_errf(err, errlen, -EINVAL, "%s: unknown key", path);
                r = set_field(&next, f, v, path, err, errlen);
                if (r < 0)
                        return r;
        }
        if (pd_policy_validate(&next.pd, &perr) != 0)
                return ps_errf(err, errlen, -EINVAL, "%s.%s", where, perr.msg);
        *policy = next;
        return 0;
}

json_t *ps_policy_to_json(const ps_policy *policy) {
        const pd_policy *p = &policy->pd;
        json_t *mult = json_object();

        for (int c = 0; mult && c < PD_CRASH_CLASS_MAX; c++)
                if (p->backoff.class_multiplier[c] != 1.0)
                        json_object_set_new(mult, pd_crash_class_to_string((pd_crash_class) c),
                                            json_real(p->backoff.class_multiplier[c]));
        return json_pack("{s:{s:s, s:I, s:I, s:I, s:I, s:I, s:b},"
                         " s:{s:I, s:f, s:I, s:I, s:f, s:I, s:o},"
                         " s:{s:I, s:I, s:I, s:b},"
                         " s:{s:I, s:I, s:I, s:I},"
                         " s:{s:I},"
                         " s:I, s:I, s:s}",
                         "health", "path", policy->health_path,
                                   "interval_ms", (json_int_t) p->health.interval_ms,
                                   "timeout_ms", (json_int_t) p->health.timeout_ms,
                                   "startup_timeout_ms", (json_int_t) p->health.startup_timeout_ms,
                                   "stall_timeout_ms", (json_int_t) p->health.stall_timeout_ms,
                                   "failure_threshold", (json_int_t) p->health.failure_threshold,
                                   "verify_listener", policy->verify_listener,
                         "backoff", "initial_ms", (json_int_t) p->backoff.initial_ms,
                                    "factor", p->backoff.factor,
                                    "min_ms", (json_int_t) p->backoff.min_ms,
                                    "max_ms", (json_int_t) p->backoff.max_ms,
                                    "jitter", p->backoff.jitter,
                                    "stable_reset_ms", (json_int_t) p->backoff.stable_reset_ms,
                                    "class_multipliers", mult,
                         "breaker", "threshold", (json_int_t) p->breaker.threshold,
                                    "open_ms", (json_int_t) p->breaker.open_ms,
                                    "close_after_ms", (json_int_t) p->breaker.close_after_ms,
                                    "separate_gpu_circuit", p->breaker.separate_gpu_circuit,
                         "storm", "limit", (json_int_t) p->storm.limit,
                                  "window_ms", (json_int_t) p->storm.window_ms,
                                  "burst_window_ms", (json_int_t) p->storm.burst_window_ms,
                                  "warn_above", (json_int_t) p->storm.warn_above,
                         "reload", "retire_grace_ms", (json_int_t) policy->retire_grace_ms,
                         "stop_grace_ms", (json_int_t) p->stop_grace_ms,
                         "lease_ttl_ms", (json_int_t) p->lease_ttl_ms,
                         "restart", pd_restart_mode_to_string(p->restart));
}
