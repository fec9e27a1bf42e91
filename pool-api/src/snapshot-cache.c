/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pool-services/base/hash.h"
#include "snapshot-cache-private.h"

/* Pools polled at once; more only share slots (a miss rebuilds). */
#define SLOTS 64
#define KEY_MAX 72

typedef struct slot {
        char key[KEY_MAX];
        pa_snapshot_stamp stamp;
        char *body;
        size_t len;
} slot;

struct pa_snapshot_cache {
        slot slots[SLOTS];
};

pa_snapshot_cache *pa_snapshot_cache_new(void) {
        return calloc(1, sizeof(pa_snapshot_cache));
}

pa_snapshot_cache *pa_snapshot_cache_free(pa_snapshot_cache *cache) {
        if (!cache)
                return NULL;
        for (size_t i = 0; i < SLOTS; i++)
                free(cache->slots[i].body);
        free(cache);
        return NULL;
}

/* The slot a key lives in. */
static size_t slot_of(const char *key) {
        return (size_t) (ps_fnv1a_str(PS_FNV1A_INIT, key) % SLOTS);
}

static bool same_stamp(const pa_snapshot_stamp *a, const pa_snapshot_stamp *b) {
        return a->events == b->events && a->requests == b->requests && a->second == b->second;
}

const char *pa_snapshot_cache_get(const pa_snapshot_cache *cache, const char *key,
                                  const pa_snapshot_stamp *stamp, size_t *len) {
        const slot *s;

        if (!cache || !key || strlen(key) >= KEY_MAX)
                return NULL;
        s = &cache->slots[slot_of(key)];
        if (!s->body || strcmp(s->key, key) != 0 || !same_stamp(&s->stamp, stamp))
                return NULL;
        *len = s->len;
        return s->body;
}

void pa_snapshot_cache_put(pa_snapshot_cache *cache, const char *key,
                           const pa_snapshot_stamp *stamp, char *body, size_t len) {
        slot *s;

        if (!cache || !key || strlen(key) >= KEY_MAX) {
                free(body);
                return;
        }
        s = &cache->slots[slot_of(key)];
        free(s->body);
        strcpy(s->key, key);
        s->stamp = *stamp;
        s->body = body;
        s->len = len;
}
