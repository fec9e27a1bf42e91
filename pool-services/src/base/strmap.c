/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/strmap.h"
#include "pool-services/base/hash.h"

static uint64_t hash_bytes(const char *s, size_t n) {
        return ps_fnv1a(PS_FNV1A_INIT, s, n);
}

void ps_strmap_clear(ps_strmap *m) {
        for (size_t i = 0; i < m->cap; i++)
                free(m->keys[i]);
        free(m->keys);
        free(m->vals);
        *m = (ps_strmap) { 0 };
}

static int strmap_grow(ps_strmap *m) {
        ps_strmap bigger = { .cap = m->cap ? m->cap * 2 : 64 };

        bigger.keys = calloc(bigger.cap, sizeof(*bigger.keys));
        bigger.vals = calloc(bigger.cap, sizeof(*bigger.vals));
        if (!bigger.keys || !bigger.vals) {
                free(bigger.keys);
                free(bigger.vals);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
                size_t j;

                if (!m->keys[i])
                        continue;
                j = hash_bytes(m->keys[i], strlen(m->keys[i])) & (bigger.cap - 1);
                while (bigger.keys[j])
                        j = (j + 1) & (bigger.cap - 1);
                bigger.keys[j] = m->keys[i];
                bigger.vals[j] = m->vals[i];
        }
        bigger.n = m->n;
        free(m->keys);
        free(m->vals);
        *m = bigger;
        return 0;
}

/* The slot of key, or of where it would go; SIZE_MAX for an empty map. */
static size_t strmap_slot(const ps_strmap *m, const char *key, size_t n) {
        size_t j;

        if (m->cap == 0)
                return SIZE_MAX;
        j = hash_bytes(key, n) & (m->cap - 1);
        while (m->keys[j] && !(strncmp(m->keys[j], key, n) == 0 && m->keys[j][n] == '\0'))
                j = (j + 1) & (m->cap - 1);
        return j;
}

bool ps_strmap_get(const ps_strmap *m, const char *key, size_t n, size_t *val) {
        size_t j = strmap_slot(m, key, n);

        if (j == SIZE_MAX || !m->keys[j])
                return false;
        *val = m->vals[j];
        return true;
}

int ps_strmap_put(ps_strmap *m, const char *key, size_t n, size_t val) {
        size_t j;

        if ((m->n + 1) * 2 > m->cap && strmap_grow(m) < 0)
                return -ENOMEM;
        j = strmap_slot(m, key, n);
        if (m->keys[j])
                return 1;
        m->keys[j] = strndup(key, n);
        if (!m->keys[j])
                return -ENOMEM;
        m->vals[j] = val;
        m->n++;
        return 0;
}
