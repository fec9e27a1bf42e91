/* SPDX-License-Identifier: MIT */
/*
 * One function per command: the request it sends, and what it prints.
 * Each returns the exit status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

typedef void (*print_fn)(const ctl_opts *o, const json_t *answer);

/* Sends the request; prints the answer with print (the JSON with --json,
 * nothing when print is NULL) or the daemon's error. */
static int call(const ctl_opts *o, const char *method, const char *path, json_t *body,
                print_fn print) {
        ctl_reply reply;
        int rc = ctl_request(&o->conn, method, path, body, &reply);

        json_decref(body);
        if (rc != 0)
                return rc;
        rc = ctl_reply_check(o, &reply);
        if (rc == CTL_EXIT_OK && !o->json && print) {
                if (reply.body)
                        print(o, reply.body);
                else
                        fprintf(stderr, "pool-managerctl: the daemon's answer is not JSON\n");
        }
        ctl_reply_done(&reply);
        return rc;
}

/* "/v2/pools/ID/rest"; ids are checked by the daemon (and cannot hold
 * '/', '?' or '%': they match [A-Za-z0-9][A-Za-z0-9._-]*). */
static const char *pool_path(const ctl_opts *o, const char *rest, char *buf, size_t len) {
        snprintf(buf, len, "/v2/pools/%s%s", o->pool, rest);
        return buf;
}

int ctl_cmd_status(const ctl_opts *o) {
        return call(o, "GET", "/v2/pools", NULL, ctl_print_status);
}

int ctl_cmd_show(const ctl_opts *o) {
        char path[256];

        return call(o, "GET", pool_path(o, "", path, sizeof(path)), NULL, ctl_print_pool);
}

int ctl_cmd_devices(const ctl_opts *o) {
        return call(o, "GET", "/v2/devices", NULL, ctl_print_devices);
}

int ctl_cmd_node(const ctl_opts *o) {
        return call(o, "GET", "/v2/node", NULL, ctl_print_node);
}

int ctl_cmd_leases(const ctl_opts *o) {
        char path[256];

        return call(o, "GET", pool_path(o, "/leases", path, sizeof(path)), NULL, ctl_print_leases);
}

static void print_started(const ctl_opts *o, const json_t *pool) {
        (void) o;
        printf("pool %s: starting (%s); `pool-managerctl status` shows it ready\n",
               json_string_value(json_object_get(pool, "pool_id")),
               json_string_value(json_object_get(pool, "state")));
}

int ctl_cmd_start(const ctl_opts *o) {
        char path[256];

        return call(o, "POST", pool_path(o, "/start", path, sizeof(path)), NULL, print_started);
}

static void print_draining(const ctl_opts *o, const json_t *d) {
        (void) o;
        printf("pool %s: %s, %" JSON_INTEGER_FORMAT " lease(s) held; its engines stop when they "
               "end, or at the deadline\n", json_string_value(json_object_get(d, "pool_id")),
               json_is_true(json_object_get(d, "already_running")) ? "already draining" : "draining",
               json_integer_value(json_object_get(d, "active_leases")));
}

int ctl_cmd_stop(const ctl_opts *o) {
        char path[256];
        json_t *body = json_object();
        int64_t deadline = o->now ? 0 : o->deadline_ms;

        if (body && deadline >= 0)
                json_object_set_new(body, "deadline_ms", json_integer(deadline));
        return call(o, "POST", pool_path(o, "/drain", path, sizeof(path)), body, print_draining);
}

static void print_restarted(const ctl_opts *o, const json_t *pool) {
        (void) o;
        printf("pool %s: restarting; it goes through backoff and preloading to ready\n",
               json_string_value(json_object_get(pool, "pool_id")));
}

int ctl_cmd_restart(const ctl_opts *o) {
        char path[256];

        return call(o, "POST", pool_path(o, "/restart", path, sizeof(path)), NULL, print_restarted);
}

/* The daemon wants an absolute path: over the socket it runs on this
 * machine, so a relative one is taken from the working directory. */
static json_t *model_path_json(const ctl_opts *o) {
        const char *rel = o->model;
        char cwd[4096], *abs;
        json_t *v;

        while (rel[0] == '.' && rel[1] == '/')
                rel += 2;
        if (o->model[0] == '/' || o->conn.url || !getcwd(cwd, sizeof(cwd)) ||
            asprintf(&abs, "%s/%s", cwd, rel) < 0)
                return json_string(o->model);
        v = json_string(abs);
        free(abs);
        return v;
}

int ctl_cmd_reload(const ctl_opts *o) {
        char path[256];
        json_t *body = json_pack("{s:o}", "model_path", model_path_json(o));

        if (body && o->surge)
                json_object_set_new(body, "strategy", json_string("surge"));
        if (body && o->sha256)
                json_object_set_new(body, "sha256", json_string(o->sha256));
        if (body && o->engine_version)
                json_object_set_new(body, "engine_version", json_string(o->engine_version));
        if (body && o->deadline_ms >= 0)
                json_object_set_new(body, "drain_deadline_ms", json_integer(o->deadline_ms));
        return call(o, "POST", pool_path(o, "/reload", path, sizeof(path)), body, ctl_print_reload);
}

static void print_breaker(const ctl_opts *o, const json_t *pool) {
        (void) o;
        printf("pool %s: breaker closed (%s)\n", json_string_value(json_object_get(pool, "pool_id")),
               json_string_value(json_object_get(pool, "state")));
}

int ctl_cmd_breaker_reset(const ctl_opts *o) {
        char path[256];

        return call(o, "POST", pool_path(o, "/breaker/reset", path, sizeof(path)), NULL,
                    print_breaker);
}

int ctl_cmd_reload_config(const ctl_opts *o) {
        return call(o, "POST", "/v2/config/reload", NULL, ctl_print_config_reload);
}

/* The engine's log as the daemon serves it (text): printed as it comes,
 * so -f shows each line when the engine writes it, until ^C. */
int ctl_cmd_logs(const ctl_opts *o) {
        char path[512];
        ctl_reply reply;
        int rc;

        snprintf(path, sizeof(path), "/v2/pools/%s/replicas/%s/logs?tail=%lld%s", o->pool,
                 o->replica, (long long) o->tail, o->follow ? "&follow=true" : "");
        rc = ctl_request_stream(&o->conn, path, stdout, &reply);
        if (rc != 0)
                return rc;
        rc = reply.status == 200 ? CTL_EXIT_OK : ctl_reply_check(o, &reply);
        ctl_reply_done(&reply);
        return rc;
}
