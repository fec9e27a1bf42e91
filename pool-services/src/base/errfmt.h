/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include <jansson.h>

/*
 * The one way pool-services fills a caller's error buffer: formats the
 * message into err (which may be NULL or empty) and returns code, so a
 * check reads `return ps_errf(err, errlen, PS_E_INVALID, "port: ...");`.
 */
int ps_errf(char *err, size_t errlen, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* What v is, for "must be an object, got a string". */
const char *ps_json_type_name(const json_t *v);
