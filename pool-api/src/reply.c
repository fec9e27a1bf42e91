/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "pool-services/base/errors.h"
#include "request-private.h"

/* The one place an error code meets an HTTP status. docs/api.md lists the
 * same codes for clients. */
static const struct {
        const char *name;
        int status;
        const char *reason;
} codes[PA_CODE_MAX] = {
        [PA_CODE_BAD_REQUEST] = { "BAD_REQUEST", 400, "Bad Request" },
        [PA_CODE_INVALID_JSON] = { "INVALID_JSON", 400, "Bad Request" },
        [PA_CODE_INVALID_FIELD] = { "INVALID_FIELD", 400, "Bad Request" },
        [PA_CODE_UNAUTHORIZED] = { "UNAUTHORIZED", 401, "Unauthorized" },
        [PA_CODE_BINARY_NOT_ALLOWED] = { "BINARY_NOT_ALLOWED", 403, "Forbidden" },
        [PA_CODE_MODEL_NOT_ALLOWED] = { "MODEL_NOT_ALLOWED", 403, "Forbidden" },
        [PA_CODE_READ_ONLY] = { "READ_ONLY", 403, "Forbidden" },
        [PA_CODE_NOT_FOUND] = { "NOT_FOUND", 404, "Not Found" },
        [PA_CODE_POOL_NOT_FOUND] = { "POOL_NOT_FOUND", 404, "Not Found" },
        [PA_CODE_LEASE_NOT_FOUND] = { "LEASE_NOT_FOUND", 404, "Not Found" },
        [PA_CODE_METHOD_NOT_ALLOWED] = { "METHOD_NOT_ALLOWED", 405, "Method Not Allowed" },
        [PA_CODE_CONFLICT] = { "CONFLICT", 409, "Conflict" },
        [PA_CODE_NOT_RUNNING] = { "NOT_RUNNING", 409, "Conflict" },
        [PA_CODE_BREAKER_OPEN] = { "BREAKER_OPEN", 409, "Conflict" },
        [PA_CODE_DRAINING] = { "POOL_DRAINING", 409, "Conflict" },
        [PA_CODE_DRAIN_TIMEOUT] = { "DRAIN_TIMEOUT", 409, "Conflict" },
        [PA_CODE_STAGE_FAILED] = { "STAGE_FAILED", 422, "Unprocessable Content" },
        [PA_CODE_CONFIG_INVALID] = { "CONFIG_INVALID", 422, "Unprocessable Content" },
        [PA_CODE_NO_FREE_SLOT] = { "NO_FREE_SLOT", 429, "Too Many Requests" },
        [PA_CODE_INTERNAL] = { "INTERNAL", 500, "Internal Server Error" },
        [PA_CODE_PRELOAD_FAILED] = { "PRELOAD_FAILED", 500, "Internal Server Error" },
        [PA_CODE_HEALTH_CHECK_FAILED] = { "HEALTH_CHECK_FAILED", 500, "Internal Server Error" },
        [PA_CODE_RELOAD_FAILED] = { "RELOAD_FAILED", 500, "Internal Server Error" },
        [PA_CODE_SERVICE_UNAVAILABLE] = { "SERVICE_UNAVAILABLE", 503, "Service Unavailable" },
        [PA_CODE_NOT_READY] = { "NOT_READY", 503, "Service Unavailable" },
        [PA_CODE_GPU_ONLY] = { "GPU_ONLY", 503, "Service Unavailable" },
        [PA_CODE_PREFLIGHT_FAILED] = { "PREFLIGHT_FAILED", 503, "Service Unavailable" },
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

pa_code pa_code_from_services(int rc) {
        switch (rc) {
        case PS_E_INVALID:
                return PA_CODE_INVALID_FIELD;
        case PS_E_NOT_FOUND:
                return PA_CODE_POOL_NOT_FOUND;
        case PS_E_EXISTS:
        case PS_E_CONFLICT:
                return PA_CODE_CONFLICT;
        case PS_E_BREAKER_OPEN:
                return PA_CODE_BREAKER_OPEN;
        case PS_E_NOT_RUNNING:
                return PA_CODE_NOT_RUNNING;
        case PS_E_FORBIDDEN:
                return PA_CODE_BINARY_NOT_ALLOWED;
        case PS_E_MODEL_FORBIDDEN:
                return PA_CODE_MODEL_NOT_ALLOWED;
        case PS_E_GPU_ONLY:
                return PA_CODE_GPU_ONLY;
        case PS_E_PREFLIGHT:
                return PA_CODE_PREFLIGHT_FAILED;
        case PS_E_DRAINING:
                return PA_CODE_DRAINING;
        case PS_E_NOT_READY:
                return PA_CODE_NOT_READY;
        case PS_E_NO_SLOT:
                return PA_CODE_NO_FREE_SLOT;
        case PS_E_DRAIN_TIMEOUT:
                return PA_CODE_DRAIN_TIMEOUT;
        case PS_E_STAGE_FAILED:
                return PA_CODE_STAGE_FAILED;
        case PS_E_RELOAD_FAILED:
        case PS_E_ROLLBACK_FAILED:
        case PS_E_ENGINE_FAILED:
                return PA_CODE_RELOAD_FAILED;
        case PS_E_START_FAILED:
                return PA_CODE_PRELOAD_FAILED;
        case PS_E_HEALTH_CHECK:
                return PA_CODE_HEALTH_CHECK_FAILED;
        default:
                return PA_CODE_INTERNAL;
        }
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

void pa_reply_send_now(pa_request *r, int status, const char *content_type,
                       const char *body, size_t len) {
        struct evkeyvalq *headers;
        struct evbuffer *out;
        char length[24];

        r->status = status;
        if (!r->req)
                return;   /* a deferred request whose client went away */
        if (!content_type) {
                evhttp_send_reply(r->req, 204, "No Content", NULL);
                r->req = NULL;
                return;
        }
        headers = evhttp_request_get_output_headers(r->req);
        out = evhttp_request_get_output_buffer(r->req);
        evhttp_add_header(headers, "Content-Type", content_type);
        if (evhttp_request_get_command(r->req) == EVHTTP_REQ_HEAD) {
                /* GET's headers without the body: evhttp 2.1 would send
                 * it, and the next answer on the connection would start
                 * inside it. */
                snprintf(length, sizeof(length), "%zu", len);
                evhttp_add_header(headers, "Content-Length", length);
        } else if (evbuffer_add(out, body, len) < 0) {
                /* Nothing fits: an empty 500 still ends the request. */
                status = r->status = 500;
                evbuffer_drain(out, evbuffer_get_length(out));
        }
        evhttp_send_reply(r->req, status, status_reason(status), NULL);
        /* evhttp owns (and may already have freed) the request now. */
        r->req = NULL;
}

/* Now, or once the state store has committed what the reply may show. */
static void send_raw(pa_request *r, int status, const char *content_type,
                     const char *body, size_t len) {
        if (r->req && pa_request_hold(r, status, content_type, body, len))
                return;
        pa_reply_send_now(r, status, content_type, body, len);
}

void pa_reply_json(pa_request *r, int status, json_t *body) {
        static const char oom[] = "{\"error\":\"out of memory\",\"code\":\"INTERNAL\"}";
        char *text;

        if (status == 204 && !body) {   /* a held reply without content */
                pa_reply_no_content(r);
                return;
        }
        text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text) {
                send_raw(r, 500, "application/json", oom, sizeof(oom) - 1);
                return;
        }
        send_raw(r, status, "application/json", text, strlen(text));
        free(text);
}

void pa_reply_no_content(pa_request *r) {
        send_raw(r, 204, NULL, NULL, 0);
}

void pa_reply_text(pa_request *r, int status, const char *content_type,
                   const char *text, size_t len) {
        send_raw(r, status, content_type, text, len);
}

void pa_reply_errorv(pa_request *r, pa_code code, const char *fmt, va_list ap) {
        char msg[512];
        json_t *jmsg;

        if ((unsigned) code >= PA_CODE_MAX)
                code = PA_CODE_INTERNAL;
        if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
                msg[0] = '\0';

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

void pa_reply_error(pa_request *r, pa_code code, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        pa_reply_errorv(r, code, fmt, ap);
        va_end(ap);
}
