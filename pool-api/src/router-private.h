/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * evhttp has no router: this is ours. A request path is split at '/', each
 * segment percent-decoded on its own, and matched against a table of
 * {method, pattern, handler}. Pure string work, so tests/unit/api drives it
 * without sockets.
 */

#include <stddef.h>

#include <event2/http.h>

#include "pool-api/error.h"

/* Deeper than any route we will have; deeper paths are refused. */
#define PA_PATH_SEGMENTS_MAX 16
#define PA_PARAMS_MAX 4

typedef struct pa_path {
        char *buf;                /* owned: decoded segments, NUL-separated */
        const char *segments[PA_PATH_SEGMENTS_MAX];
        size_t n_segments;
} pa_path;

/*
 * Splits and decodes a raw request path ("/v2/pools/a%2Eb" → "v2", "pools",
 * "a.b"). "/" is one empty segment; "/health/" is "health" and "". Refuses
 * with -EINVAL (err says why) a path not starting with '/', a bad escape,
 * an encoded NUL, an encoded '/' inside a segment (it would let a pool id
 * smuggle a separator), or too many segments; -ENOMEM.
 */
int pa_path_parse(const char *raw, pa_path *ret, pa_error *err);

/* Frees what parse allocated; safe on a zeroed or already-freed pa_path. */
void pa_path_done(pa_path *path);

typedef struct pa_params {
        size_t n;
        struct {
                const char *name;  /* points into the pattern, not terminated */
                size_t name_len;
                const char *value; /* points into the pa_path               */
        } v[PA_PARAMS_MAX];
} pa_params;

/* The value captured for "{name}", or NULL. */
const char *pa_params_get(const pa_params *params, const char *name);

struct pa_request;
typedef void (*pa_handler)(struct pa_request *request);

/* A pattern is literal segments and "{name}" captures of one whole,
 * non-empty segment: "/v2/pools/{id}/preload". */
typedef struct pa_route {
        enum evhttp_cmd_type method;
        const char *pattern;
        pa_handler handler;
} pa_route;

typedef enum pa_match {
        PA_MATCH_FOUND,           /* *ret_route and params set            */
        PA_MATCH_NO_ROUTE,        /* no pattern fits the path: 404        */
        PA_MATCH_NO_METHOD,       /* patterns fit, methods do not: 405    */
} pa_match;

/* On PA_MATCH_NO_METHOD *ret_allowed holds the methods (EVHTTP_REQ_* bits)
 * that the path does take, for the Allow header. A GET route also answers
 * HEAD. */
pa_match pa_router_match(const pa_route *routes, size_t n_routes,
                         enum evhttp_cmd_type method, const pa_path *path,
                         const pa_route **ret_route, pa_params *ret_params,
                         unsigned *ret_allowed);

/* "GET", "PATCH", ...; "UNKNOWN" for anything else. */
const char *pa_method_to_string(enum evhttp_cmd_type method);

/* Every method evhttp knows, for evhttp_set_allowed_methods(). */
#define PA_METHODS_ALL                                                         \
        (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | \
         EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |           \
         EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

/* "GET, POST": the value of an Allow header. Cut short, never unterminated,
 * when buf is too small. */
void pa_methods_format(unsigned methods, char *buf, size_t size);
