/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Who may do what through the API (docs/api.md, "Access"):
 *
 *   listener      token  /health /metrics /ready  other read-only  the rest
 *   Unix socket   any    open                     open             open
 *   TCP           yes    open                     token, else 401  token, else 401
 *   TCP           no     open                     open             403 READ_ONLY
 *
 * The listener a request arrived on decides; nothing the client sends
 * does. On TCP the token is checked before routing (without it no route is
 * seen to exist), the read-only rule after it (an unknown route is a 404,
 * a wrong method a 405).
 *
 * Bearer-token checks: with a token configured, every route except the
 * public ones needs "Authorization: Bearer <token>" over TCP.
 *
 * The comparison takes the same time whatever the presented value and
 * whatever the token: both are copied into fixed-size zero-padded buffers
 * (the copy of the token is made once, at init) and the whole buffers are
 * compared without an early exit, with the lengths folded into the same
 * result. Neither the token's bytes nor its length shape the time taken.
 */

/* Longer tokens are refused by pa_auth_init(). */
#define PA_AUTH_TOKEN_MAX 512

typedef struct pa_auth {
        bool enabled;
        size_t len;
        unsigned char token[PA_AUTH_TOKEN_MAX];
} pa_auth;

/* token NULL or "": auth off, every request passes. 0, or -EINVAL for a
 * token longer than PA_AUTH_TOKEN_MAX or with bytes outside printable
 * ASCII (or a space). */
int pa_auth_init(pa_auth *auth, const char *token);
/* Wipes the copy of the token. */
void pa_auth_clear(pa_auth *auth);

/* Whether the request may proceed: auth off, or the Authorization header
 * value (NULL when absent) is "Bearer <token>" ("bearer" in any case,
 * spaces after the scheme and trailing spaces tolerated). */
bool pa_auth_check(const pa_auth *auth, const char *authorization);

/* GET /health, /metrics and /ready never need a token (HEAD likewise).
 * path is the raw request path: an encoded spelling is not public. */
bool pa_auth_route_is_public(const char *method, const char *path);

struct pa_path;

/*
 * Read-only requests change nothing: every GET and HEAD, and POST
 * /v2/pools/{id}/status or /pools/{id}/status (a status query with a
 * body). path is the decoded path (router-private.h); NULL is not
 * read-only.
 */
bool pa_auth_path_is_read_only(const char *method, const struct pa_path *path);
/* The same from the raw request path; one that does not parse is not
 * read-only (unless the method is GET or HEAD). */
bool pa_auth_route_is_read_only(const char *method, const char *raw_path);

/* Where a request came in. */
typedef enum pa_listener {
        PA_LISTENER_TCP,
        PA_LISTENER_UNIX,         /* the Unix-domain socket: no token needed */
} pa_listener;

/* Before routing: whether this request must carry the token (then
 * pa_auth_check() decides). Never on the socket, never without a token,
 * never for the public routes. */
bool pa_auth_token_required(const pa_auth *auth, pa_listener via, const char *method,
                            const char *raw_path);

/*
 * Private reads: an engine's log (GET /v2/pools/{id}/replicas/{r}/logs)
 * can carry prompts, so it is served only through the socket or with the
 * token, never on an open TCP listener.
 */
bool pa_auth_path_is_private(const struct pa_path *path);

/* After routing: whether the request is refused with 403 READ_ONLY: it
 * came over TCP, no token is configured, and it is not read-only or it is
 * a private read. */
bool pa_auth_read_only_refused(const pa_auth *auth, pa_listener via, const char *method,
                               const struct pa_path *path);
