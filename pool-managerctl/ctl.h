/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * pool-managerctl: the operator's client of pool-managerd's HTTP API. It
 * speaks HTTP and JSON only, over the daemon's Unix socket or TCP, and
 * shares no code with the daemon. docs/cli.md describes every command.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#include <jansson.h>

/* Exit statuses (stated in --help and docs/cli.md). */
enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_REFUSED = 1,        /* the daemon said no (4xx/5xx)          */
        CTL_EXIT_USAGE = 2,
        CTL_EXIT_UNREACHABLE = 3,    /* no daemon answered (socket, TCP)     */
};

/* Where the daemon is and how to talk to it. */
typedef struct ctl_conn {
        const char *socket_path;     /* NULL with url                        */
        const char *url;             /* base URL over TCP; NULL: the socket  */
        char *token;                 /* bearer token over TCP; owned         */
        const char *token_source;    /* where it came from, for messages     */
} ctl_conn;

/* What one request answered. */
typedef struct ctl_reply {
        long status;                 /* HTTP status                          */
        json_t *body;                /* parsed body; NULL when none or not JSON */
        char *text;                  /* the raw body, NUL-terminated          */
} ctl_reply;

/* The settings of one invocation. */
typedef struct ctl_opts {
        ctl_conn conn;
        bool json;                   /* print the daemon's JSON as it is     */
        bool color;                  /* ANSI colours: stdout is a TTY        */
        bool now;                    /* stop --now                           */
        bool surge;                  /* reload --surge                       */
        int64_t deadline_ms;         /* stop --deadline; -1: the default     */
        const char *model;           /* reload --model                       */
        const char *sha256;          /* reload --sha256                      */
        const char *engine_version;  /* reload --engine-version              */
        const char *pool;            /* the command's POOL                   */
        const char *replica;         /* logs --replica (default r0)          */
        int64_t tail;                /* logs -n (default 100)                */
        bool follow;                 /* logs -f                              */
} ctl_opts;

/* ---- http.c ---- */

/* Chooses the socket or the URL and loads the token: 0, or CTL_EXIT_USAGE
 * with the reason printed. */
int ctl_conn_resolve(ctl_conn *conn, const char *socket_flag, const char *url_flag,
                     const char *token_file);
void ctl_conn_done(ctl_conn *conn);

/*
 * One request; body (may be NULL) is sent as JSON. 0 with *reply filled
 * (whatever the status), or CTL_EXIT_UNREACHABLE with the reason printed
 * (for a socket: missing, refused, or not ours to open, naming its group).
 */
int ctl_request(const ctl_conn *conn, const char *method, const char *path, json_t *body,
                ctl_reply *reply);
void ctl_reply_done(ctl_reply *reply);

/* A GET whose 200 body goes to out as it arrives (a followed log); any
 * other answer lands in reply as ctl_request() would leave it. */
int ctl_request_stream(const ctl_conn *conn, const char *path, FILE *out, ctl_reply *reply);

/*
 * The daemon's answer as the exit status: 0 for a 2xx; else its error is
 * printed ("pool-managerctl: pool x not found (POOL_NOT_FOUND)") and 1.
 * With json, the body goes to stdout whatever the status.
 */
int ctl_reply_check(const ctl_opts *o, const ctl_reply *reply);

/* ---- render.c ---- */

void ctl_print_status(const ctl_opts *o, const json_t *pools);
void ctl_print_pool(const ctl_opts *o, const json_t *pool);
void ctl_print_devices(const ctl_opts *o, const json_t *devices);
void ctl_print_node(const ctl_opts *o, const json_t *node);
void ctl_print_leases(const ctl_opts *o, const json_t *leases);
void ctl_print_reload(const ctl_opts *o, const json_t *answer);
void ctl_print_config_reload(const ctl_opts *o, const json_t *answer);
/* "3d04h", "2h05m", "4m10s", "12s"; "-" below zero. */
void ctl_format_duration(int64_t seconds, char *buf, size_t len);

/* ---- commands.c ---- */

typedef int (*ctl_command_fn)(const ctl_opts *o);

int ctl_cmd_status(const ctl_opts *o);
int ctl_cmd_show(const ctl_opts *o);
int ctl_cmd_devices(const ctl_opts *o);
int ctl_cmd_node(const ctl_opts *o);
int ctl_cmd_leases(const ctl_opts *o);
int ctl_cmd_start(const ctl_opts *o);
int ctl_cmd_stop(const ctl_opts *o);
int ctl_cmd_restart(const ctl_opts *o);
int ctl_cmd_reload(const ctl_opts *o);
int ctl_cmd_breaker_reset(const ctl_opts *o);
int ctl_cmd_reload_config(const ctl_opts *o);
int ctl_cmd_logs(const ctl_opts *o);
