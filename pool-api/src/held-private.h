/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "pool-services/pool/registry.h"

/*
 * The pools an operator took out of service through the API (a drain):
 * GET /ready does not wait for them while they rest. A start, preload,
 * restart or breaker reset puts a pool back in service; so does the
 * configuration adding it again. Kept per registry, for the daemon's life:
 * a restarted daemon starts every configured pool, and waits for each.
 */

/* held: the operator stopped it; false: it is to serve again. Out of
 * memory leaves a pool unheld (/ready then waits for it). */
void pa_held_set(const ps_registry *reg, const char *pool_id, bool held);
bool pa_held(const ps_registry *reg, const char *pool_id);
