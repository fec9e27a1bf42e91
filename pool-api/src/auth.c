/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "auth-private.h"
#include "router-private.h"

static bool token_byte_ok(unsigned char c) {
        return c > ' ' && c < 0x7f;
}

int pa_auth_init(pa_auth *auth, const char *token) {
        size_t len;

        if (!auth)
                return -EINVAL;
        if (!token || !token[0]) {
                pa_auth_clear(auth);
                return 0;
        }
        len = strlen(token);
        if (len > PA_AUTH_TOKEN_MAX)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if (!token_byte_ok((unsigned char) token[i]))
                        return -EINVAL;
        pa_auth_clear(auth);
        memcpy(auth->token, token, len);
        auth->len = len;
        auth->enabled = true;
        return 0;
}

void pa_auth_clear(pa_auth *auth) {
        if (!auth)
                return;
        explicit_bzero(auth->token, sizeof(auth->token));
        auth->len = 0;
        auth->enabled = false;
}

/* The whole fixed-size buffers, always: no early exit, no branch on a
 * byte or on the token's length. */
static bool equal_fixed(const unsigned char *a, size_t a_len,
                        const unsigned char *b, size_t b_len) {
        volatile unsigned char diff = 0;
        size_t len_diff = a_len ^ b_len;

        for (size_t i = 0; i < PA_AUTH_TOKEN_MAX; i++)
                diff |= a[i] ^ b[i];
        for (size_t i = 0; i < sizeof(len_diff); i++)
                diff |= (unsigned char) (len_diff >> (8 * i));
        return diff == 0;
}

bool pa_auth_check(const pa_auth *auth, const char *authorization) {
        unsigned char given[PA_AUTH_TOKEN_MAX] = { 0 };
        const char *p;
        size_t len;
        bool ok;

        if (!auth || !auth->enabled)
                return true;
        /* Everything up to the comparison depends only on what the client
         * sent, which it knows already. */
        if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
                p = "";
        else
                p = authorization + 7;
        while (*p == ' ')
                p++;
        len = strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                len--;
        /* Too long to be the token: still compare, against a truncated
         * copy whose length cannot match. */
        memcpy(given, p, len < PA_AUTH_TOKEN_MAX ? len : PA_AUTH_TOKEN_MAX);
        ok = equal_fixed(given, len, auth->token, auth->len);
        explicit_bzero(given, sizeof(given));
        return ok && len > 0;
}

bool pa_auth_route_is_public(const char *method, const char *path) {
        if (!method || !path)
                return false;
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
                return false;
        return strcmp(path, "/health") == 0 || strcmp(path, "/metrics") == 0 ||
               strcmp(path, "/ready") == 0;
}

static bool is_get_or_head(const char *method) {
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

bool pa_auth_path_is_read_only(const char *method, const pa_path *path) {
        const char *const *s;
        size_t n;

        if (!method)
                return false;
        if (is_get_or_head(method))
                return true;
        if (strcmp(method, "POST") != 0 || !path)
                return false;
        /* POST /v2/pools/{id}/status and POST /pools/{id}/status */
        s = path->segments;
        n = path->n_segments;
        if (n == 4 && strcmp(s[0], "v2") == 0) {
                s++;
                n--;
        }
        return n == 3 && strcmp(s[0], "pools") == 0 && s[1][0] != '\0' &&
               strcmp(s[2], "status") == 0;
}

bool pa_auth_route_is_read_only(const char *method, const char *raw_path) {
        pa_path path;
        bool ro;

        if (!method)
                return false;
        if (is_get_or_head(method))
                return true;
        if (pa_path_parse(raw_path, &path, NULL) < 0)
                return false;
        ro = pa_auth_path_is_read_only(method, &path);
        pa_path_done(&path);
        return ro;
}

bool pa_auth_token_required(const pa_auth *auth, pa_listener via, const char *method,
                            const char *raw_path) {
        if (via == PA_LISTENER_UNIX || !auth || !auth->enabled)
                return false;
        return !pa_auth_route_is_public(method, raw_path);
}

bool pa_auth_path_is_private(const pa_path *path) {
        const char *const *s = path ? path->segments : NULL;

        return path && path->n_segments == 6 && strcmp(s[0], "v2") == 0 &&
               strcmp(s[1], "pools") == 0 && strcmp(s[3], "replicas") == 0 &&
               strcmp(s[5], "logs") == 0;
}

bool pa_auth_read_only_refused(const pa_auth *auth, pa_listener via, const char *method,
                               const pa_path *path) {
        if (via == PA_LISTENER_UNIX || (auth && auth->enabled))
                return false;
        return !pa_auth_path_is_read_only(method, path) || pa_auth_path_is_private(path);
}
