/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "pool-services/conf/config.h"
#include "pool-services/pool/registry.h"

struct event_base;

/*
 * The configured replicas registered a batch per loop turn. A node with a
 * thousand pools spends tens of milliseconds making replica records (most
 * of it the kernel handing out fresh pages); in one piece before the loop
 * turns, that is how long the first GET /health waits. The first batch is
 * registered inside pm_register_start(): a configuration that fits in it
 * (every small node) is registered before the loop ever runs.
 */
typedef struct pm_register pm_register;

#define PM_REGISTER_PER_TURN 100
#define PM_REGISTER_TURN_MS 4

/*
 * Starts registering config's replicas into reg. done(rc, message,
 * userdata) runs once: rc 0 when every replica is registered (possibly
 * before this returns), else the PS_E_* or negative errno of the one
 * that was refused, with the reason; nothing more is registered then.
 * 0, or a negative errno (err says why) with done never called.
 */
int pm_register_start(struct event_base *base, ps_registry *reg, const ps_config *config,
                      ps_done_fn done, void *userdata, pm_register **ret, char *err,
                      size_t errlen);

/* Stops (done is not called) and frees; NULL. */
pm_register *pm_register_free(pm_register *g);

/* Registered so far, and in all. */
size_t pm_register_done_count(const pm_register *g);
size_t pm_register_total(const pm_register *g);
