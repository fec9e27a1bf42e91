/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Bearer-token checks for the API. With a token configured, every route
 * except GET /health and GET /metrics needs "Authorization: Bearer <token>"
 * (401 otherwise).
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

/* GET /health and GET /metrics never need a token (HEAD likewise). */
bool pa_auth_route_is_public(const char *method, const char *path);
