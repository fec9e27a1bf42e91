/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "request-private.h"

/* The one place an error code meets an HTTP status. docs/api.md lists the
 * same codes for clients. */
static const struct {
        const char *name;
        int status;
        const char *reason;
} codes[PA_CODE_MAX] = {
        [PA_CODE_BAD_REQUEST] = { "BAD_REQUEST", 400, "Bad Request" },
        [PA_CODE_NOT_FOUND] = { "NOT_FOUND", 404, "Not Found" },
        [PA_CODE_METHOD_NOT_ALLOWED] = { "METHOD_NOT_ALLOWED", 405, "Method Not Allowed" },
        [PA_CODE_INTERNAL] = { "INTERNAL", 500, "Internal Server Error" },
};

const char *pa_code_to_string(pa_code code) {
        if ((unsigned) code >= PA_CODE_MAX)
                return NULL;
        return codes[code].name;
}

int pa_code_to_status(pa_code code) {
        if ((unsigned) code >= PA_CODE_MAX)
                return 500;
        return codes[code].status;
}

/* Reason phrases for the statuses success replies use; the error table
 * has its own. evhttp wants one with every reply. */
static const char *status_reason(int status) {
        for (unsigned i = 0; i < PA_CODE_MAX; i++)
                if (codes[i].status == status)
                        return codes[i].reason;
        switch (status) {
        case 200:
                return "OK";
        case 201:
                return "Created";
        case 202:
                return "Accepted";
        case 204:
                return "No Content";
        default:
                return "Unknown";
        }
}

static void send_raw(pa_request *r, int status, const char *body, size_t len) {
        struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
        struct evbuffer *out = evhttp_request_get_output_buffer(r->req);

        evhttp_add_header(headers, "Content-Type", "application/json");
        if (evbuffer_add(out, body, len) < 0) {
                /* Nothing fits: an empty 500 still ends the request. */
                status = 500;
                evbuffer_drain(out, evbuffer_get_length(out));
        }
        evhttp_send_reply(r->req, status, status_reason(status), NULL);
        r->status = status;
}

void pa_reply_json(pa_request *r, int status, json_t *body) {
        static const char oom[] = "{\"error\":\"out of memory\",\"code\":\"INTERNAL\"}";
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

        json_decref(body);
        if (!text) {
                send_raw(r, 500, oom, sizeof(oom) - 1);
                return;
        }
        send_raw(r, status, text, strlen(text));
        free(text);
}

void pa_reply_error(pa_request *r, pa_code code, const char *fmt, ...) {
        char msg[512];
        json_t *jmsg;
        va_list ap;

        if ((unsigned) code >= PA_CODE_MAX)
                code = PA_CODE_INTERNAL;
        va_start(ap, fmt);
        if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
                msg[0] = '\0';
        va_end(ap);

        /* Messages echo what the client sent, which need not be UTF-8 (or
         * may be cut mid-character): json_string() refuses that, so fall
         * back to ASCII with '?' for every other byte. */
        jmsg = json_string(msg);
        if (!jmsg) {
                for (char *c = msg; *c; c++)
                        if ((unsigned char) *c >= 0x80)
                                *c = '?';
                jmsg = json_string(msg);
        }
        pa_reply_json(r, codes[code].status,
                      json_pack("{s:o?, s:s}", "error", jmsg, "code", codes[code].name));
}
