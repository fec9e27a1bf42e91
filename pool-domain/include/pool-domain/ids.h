/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pool-domain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pool and replica ids become file names, so they are restricted to
 * [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
#define PD_ID_MAX 64

/* 0 when id is valid; PD_E_INVALID otherwise, with a message that starts
 * with `what` ("pool id", "replica id") and names the offending character
 * and its position. A NULL id is invalid; a NULL `what` reads "id".
 * Bytes outside printable ASCII, and quotes, appear in the message as \xNN. */
int pd_id_validate(const char *id, const char *what, pd_error *err);

bool pd_id_is_valid(const char *id);

#ifdef __cplusplus
}
#endif
