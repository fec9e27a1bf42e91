/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's hold on its runtime directory (one daemon per directory)
 * and its durable state: the store opened, leases restored, drains to
 * resume once their pools have come up (docs/reliability.md).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-services/base/event.h"
#include "pool-services/base/log.h"
#include "pool-services/pool/registry.h"
#include "pool-services/pool/store.h"

struct event_base;

/*
 * Takes <runtime_dir>/lock (a POSIX record lock held for the process's
 * life, the pid written in the file; O_CLOEXEC, so no child holds it).
 * Returns the descriptor, or -1 with err: "runtime directory X is in use
 * by pool-managerd pid N", or why the file could not be locked.
 */
int pm_lock_take(const char *runtime_dir, char *err, size_t errlen);
/* NULL-safe: fd < 0 is nothing. Returns -1. */
int pm_lock_release(int fd);

typedef struct pm_state {
        ps_store *store;
        ps_store_drain *drains;       /* to resume once their pools are up */
        size_t n_drains;
} pm_state;

/* Opens <runtime_dir>/state.db (reset: a corrupt one moved aside). 0 or
 * -1, said in the log. */
int pm_state_open(pm_state *st, struct event_base *base, const char *runtime_dir, bool reset,
                  ps_logger *log);
/* Attaches the store to the registry and gives each replica the restart
 * policy state it had (failure counts, backoff, breaker, storm window).
 * After the replicas are added, before they start. */
void pm_state_restore_policy(pm_state *st, ps_registry *reg, ps_logger *log);
/* A supervision event that may have changed a replica's policy state:
 * it is written (in the turn's commit). */
void pm_state_on_event(pm_state *st, ps_registry *reg, const ps_event *event);
/* Holds the stored leases again;
 * reads the drains to resume. Before the loop runs. */
void pm_state_restore(pm_state *st, ps_registry *reg, ps_logger *log);
/* Resumes the stored drains (after the configured preloads answered). */
void pm_state_resume_drains(pm_state *st, ps_registry *reg, ps_logger *log);
/* Commits, stops recording (the registry's teardown is not a change). */
void pm_state_freeze(pm_state *st);
void pm_state_close(pm_state *st);
