/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One request while its handler runs, and the ways to answer it. Every
 * error body is {"error": "<human message>", "code": "<MACHINE_CODE>"},
 * and the code decides the HTTP status through the one table in reply.c.
 */

#include <stdint.h>

#include <event2/http.h>
#include <jansson.h>

#include "pool-api/server.h"
#include "router-private.h"

typedef enum pa_code {
        PA_CODE_BAD_REQUEST,
        PA_CODE_NOT_FOUND,
        PA_CODE_METHOD_NOT_ALLOWED,
        PA_CODE_INTERNAL,
        PA_CODE_MAX,
} pa_code;

/* "NOT_FOUND"...; NULL when out of range. */
const char *pa_code_to_string(pa_code code);
/* 404...; 500 when out of range. */
int pa_code_to_status(pa_code code);

typedef struct pa_request {
        struct evhttp_request *req;     /* borrowed from evhttp            */
        pa_server *server;
        enum evhttp_cmd_type method;
        const char *raw_path;           /* as the client sent it           */
        const char *correlation_id;     /* NULL when absent or unusable    */
        pa_params params;
        int64_t started_ms;             /* monotonic                       */
        int status;                     /* 0 until a reply has been sent   */
} pa_request;

/* Sends body (stolen, may be NULL: then a 500) as application/json. */
void pa_reply_json(pa_request *r, int status, json_t *body);

/* Sends the error body for code with a printf-style message. */
void pa_reply_error(pa_request *r, pa_code code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
