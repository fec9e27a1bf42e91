/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the configuration's files share: config.c loads and owns the
 * struct, config-schema.c walks the section tables of config-sections.c
 * and config-pools.c, config-env.c lays the environment over the file,
 * config-trust.c answers what the API may do. Only they (and their tests)
 * include this.
 */

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "pool-services/conf/config.h"

/* Enough of a value for a message. */
#define PS_CONF_SHOWN "%.80s"

/* Room for a place in a message: "pools[12].policy", "gpu.devices[3].uuid". */
#define PS_CONF_AT_MAX 160

/* sockaddr_un.sun_path holds 108 bytes with the NUL. */
#define PS_CONF_SOCKET_PATH_MAX 107

/*
 * Every problem of a check (--check-config), not just the first: with one,
 * ps_conf_fail() appends each message, and the walker goes on past a bad
 * value (skipping the cross-checks of a section that misses a required
 * value or has a bad nested one: they would read what was not stored).
 */
typedef struct ps_conf_report {
        char **msgs;
        size_t n;
        bool oom;
} ps_conf_report;

/* One load (or one check): where its message goes and what it reads. */
typedef struct ps_conf_ctx {
        char *err;
        size_t errlen;
        ps_conf_report *report;     /* NULL: stop at the first problem        */
        const char *base_dir;       /* relative paths resolve here; NULL: none */
        const ps_inventory *known;  /* auto/cuda: use these GPUs, do not probe */
        ps_config *cfg;             /* the configuration being loaded          */
        void *state;                /* a section's scratch while it is walked  */
} ps_conf_ctx;

/* Formats the message (and adds it to the report); returns PS_E_INVALID. */
int ps_conf_fail(ps_conf_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Adds a copy of msg to the report; false on OOM (then oom is set). */
bool ps_conf_report_add(ps_conf_report *rep, const char *msg);

/* Whether a walk goes on after r: a problem of the input while every
 * problem is collected. */
bool ps_conf_keep_going(const ps_conf_ctx *c, int r);

/* Replaces *dst with a copy of s. -ENOMEM leaves *dst as it was. */
int ps_conf_str_set(char **dst, const char *s);

bool ps_conf_has_space(const char *s);      /* a space or a control character */
bool ps_conf_is_url(const char *s);         /* http:// or https://           */
bool ps_conf_token_ok(const char *s);       /* printable ASCII, no spaces    */

/* A variable name: letters, digits, '_', not starting with a digit. 0 or -1. */
int ps_conf_check_env_name(const char *s);

/*
 * Joins a path to base (when relative) and removes ".", ".." and empty
 * components lexically. NULL on OOM.
 */
char *ps_conf_path_resolve(const char *base, const char *path);

/* The realpath of an allowlist entry, keeping the "/" that marks a tree;
 * NULL (errno set) when it cannot be resolved. */
char *ps_conf_entry_realpath(const char *entry);

/* HOST:PORT or [V6]:PORT into its parts; false when it is neither. */
bool ps_conf_bind_split(const char *s, char *host, size_t hostlen, unsigned *port);
/* The same as a check; label names the setting in the message. */
int ps_conf_check_bind(ps_conf_ctx *c, const char *bind, const char *label);
/* The API port must not be one an engine listens on. */
int ps_conf_check_bind_ports(ps_conf_ctx *c, const ps_config *cfg, const char *bind,
                             const char *label);

/* The file's sections into cfg (config-sections.c). */
int ps_conf_parse(ps_conf_ctx *c, ps_config *cfg, const json_t *doc);
/* The "pools" array (config-pools.c); base is the ps_config. */
int ps_conf_pools_parse(ps_conf_ctx *c, void *base, const json_t *pools, const char *at);
/* The top-level defaults (bind, gpu, cloud, ...) into a fresh config. */
int ps_conf_set_defaults(ps_config *cfg);
