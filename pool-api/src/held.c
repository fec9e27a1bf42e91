/* SPDX-License-Identifier: MIT */
/* The pools an operator stopped through the API (held-private.h). */
#include <stdlib.h>
#include <string.h>

#include "held-private.h"

typedef struct held {
        const ps_registry *reg;
        char *pool_id;
        struct held *next;
} held;

/* The event loop is the only thread that serves requests. */
static held *all;

static held **find(const ps_registry *reg, const char *pool_id) {
        held **h = &all;

        while (*h && ((*h)->reg != reg || strcmp((*h)->pool_id, pool_id) != 0))
                h = &(*h)->next;
        return h;
}

void pa_held_set(const ps_registry *reg, const char *pool_id, bool on) {
        held **h = find(reg, pool_id), *gone;

        if (on && !*h) {
                held *n = calloc(1, sizeof(*n));

                if (!n || !(n->pool_id = strdup(pool_id))) {
                        free(n);
                        return;
                }
                n->reg = reg;
                *h = n;
        } else if (!on && *h) {
                gone = *h;
                *h = gone->next;
                free(gone->pool_id);
                free(gone);
        }
}

bool pa_held(const ps_registry *reg, const char *pool_id) {
        return *find(reg, pool_id) != NULL;
}
