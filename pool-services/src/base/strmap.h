/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * A map from strings to indices, for looking names and series up while a
 * scrape is read (open addressing, FNV-1a). Start from { 0 }; keys are
 * copied, so they may point into text that is not NUL-terminated. Keys
 * hold no NUL byte.
 */
typedef struct ps_strmap {
        char **keys;
        size_t *vals;
        size_t cap, n;
} ps_strmap;

void ps_strmap_clear(ps_strmap *m);
bool ps_strmap_get(const ps_strmap *m, const char *key, size_t n, size_t *val);
/* 0 added, 1 already there (its value left as it was), -ENOMEM. */
int ps_strmap_put(ps_strmap *m, const char *key, size_t n, size_t val);
