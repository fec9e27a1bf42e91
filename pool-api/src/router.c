/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router-private.h"

static const struct {
        enum evhttp_cmd_type method;
        const char *name;
} method_names[] = {
        { EVHTTP_REQ_GET, "GET" },
        { EVHTTP_REQ_HEAD, "HEAD" },
        { EVHTTP_REQ_POST, "POST" },
        { EVHTTP_REQ_PUT, "PUT" },
        { EVHTTP_REQ_PATCH, "PATCH" },
        { EVHTTP_REQ_DELETE, "DELETE" },
        { EVHTTP_REQ_OPTIONS, "OPTIONS" },
        { EVHTTP_REQ_TRACE, "TRACE" },
        { EVHTTP_REQ_CONNECT, "CONNECT" },
};

#define N_METHODS (sizeof(method_names) / sizeof(method_names[0]))

const char *pa_method_to_string(enum evhttp_cmd_type method) {
        for (size_t i = 0; i < N_METHODS; i++)
                if (method_names[i].method == method)
                        return method_names[i].name;
        return "UNKNOWN";
}

void pa_methods_format(unsigned methods, char *buf, size_t size) {
        size_t o = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        /* In the table's order, so the header reads the same every time. */
        for (size_t i = 0; i < N_METHODS; i++) {
                int n;

                if (!(methods & (unsigned) method_names[i].method))
                        continue;
                n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", method_names[i].name);
                if (n < 0 || (size_t) n >= size - o) {
                        /* Drop the half-written name, keep the whole ones. */
                        buf[o] = '\0';
                        return;
                }
                o += (size_t) n;
        }
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int pa_path_parse(const char *raw, pa_path *ret, pa_error *err) {
        pa_path p = { .n_segments = 0 };
        size_t o = 0;
        char *buf;

        if (!raw || raw[0] != '/')
                return pa_error_set(err, -EINVAL, "path must start with '/'");

        /* Decoding only shrinks the text, so the raw length is enough. */
        buf = malloc(strlen(raw) + 1);
        if (!buf)
                return pa_error_set(err, -ENOMEM, "out of memory");

        p.buf = buf;
        p.segments[p.n_segments++] = buf;
        for (const char *c = raw + 1; *c; c++) {
                char byte = *c;

                if (byte == '/') {
                        if (p.n_segments == PA_PATH_SEGMENTS_MAX) {
                                pa_path_done(&p);
                                return pa_error_set(err, -EINVAL, "path has more than %d segments",
                                                    PA_PATH_SEGMENTS_MAX);
                        }
                        buf[o++] = '\0';
                        p.segments[p.n_segments++] = buf + o;
                        continue;
                }
                if (byte == '%') {
                        int hi = hex_value(c[1]), lo = hi < 0 ? -1 : hex_value(c[2]);

                        if (hi < 0 || lo < 0) {
                                pa_path_done(&p);
                                return pa_error_set(err, -EINVAL,
                                                    "path has an invalid percent-escape at byte %zu",
                                                    (size_t) (c - raw));
                        }
                        byte = (char) (hi << 4 | lo);
                        if (byte == '\0') {
                                pa_path_done(&p);
                                return pa_error_set(err, -EINVAL, "path contains an encoded NUL byte (%%00)");
                        }
                        if (byte == '/') {
                                pa_path_done(&p);
                                return pa_error_set(err, -EINVAL,
                                                    "path segment contains an encoded '/' (%%2F)");
                        }
                        c += 2;
                }
                buf[o++] = byte;
        }
        buf[o] = '\0';

        *ret = p;
        return 0;
}

void pa_path_done(pa_path *path) {
        if (!path)
                return;
        free(path->buf);
        path->buf = NULL;
        path->n_segments = 0;
}

const char *pa_params_get(const pa_params *params, const char *name) {
        size_t len = strlen(name);

        for (size_t i = 0; params && i < params->n; i++)
                if (params->v[i].name_len == len && memcmp(params->v[i].name, name, len) == 0)
                        return params->v[i].value;
        return NULL;
}

/* Walks the pattern one segment at a time against the decoded path. */
static bool pattern_matches(const char *pattern, const pa_path *path, pa_params *params) {
        const char *seg = pattern + 1;   /* patterns start with '/' */
        size_t i = 0;

        params->n = 0;
        for (;;) {
                const char *end = strchr(seg, '/');
                size_t len = end ? (size_t) (end - seg) : strlen(seg);

                if (i == path->n_segments)
                        return false;
                if (len >= 2 && seg[0] == '{' && seg[len - 1] == '}') {
                        if (path->segments[i][0] == '\0' || params->n == PA_PARAMS_MAX)
                                return false;
                        params->v[params->n].name = seg + 1;
                        params->v[params->n].name_len = len - 2;
                        params->v[params->n].value = path->segments[i];
                        params->n++;
                } else if (strlen(path->segments[i]) != len ||
                           memcmp(path->segments[i], seg, len) != 0)
                        return false;
                i++;
                if (!end)
                        break;
                seg = end + 1;
        }
        return i == path->n_segments;
}

pa_match pa_router_match(const pa_route *routes, size_t n_routes,
                         enum evhttp_cmd_type method, const pa_path *path,
                         const pa_route **ret_route, pa_params *ret_params,
                         unsigned *ret_allowed) {
        unsigned allowed = 0;
        pa_params params;

        for (size_t i = 0; i < n_routes; i++) {
                /* A GET route answers HEAD too (evhttp leaves the body out). */
                unsigned takes = (unsigned) routes[i].method |
                                 (routes[i].method == EVHTTP_REQ_GET ? (unsigned) EVHTTP_REQ_HEAD : 0u);

                if (!pattern_matches(routes[i].pattern, path, &params))
                        continue;
                if (takes & (unsigned) method) {
                        if (ret_route)
                                *ret_route = &routes[i];
                        if (ret_params)
                                *ret_params = params;
                        return PA_MATCH_FOUND;
                }
                allowed |= takes;
        }
        if (ret_allowed)
                *ret_allowed = allowed;
        return allowed ? PA_MATCH_NO_METHOD : PA_MATCH_NO_ROUTE;
}
