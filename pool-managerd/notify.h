/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The service manager's notification protocol (sd_notify(3)), spoken by
 * hand: one datagram per message to $NOTIFY_SOCKET (docs/systemd.md says
 * why not libsystemd). Without $NOTIFY_SOCKET every call does nothing.
 *
 * READY=1 once the API listens and the configured preloads have answered
 * (EXTEND_TIMEOUT_USEC= until then), STATUS= with the pools ready,
 * RELOADING=1 / READY=1 around SIGHUP, STOPPING=1, and WATCHDOG=1 every
 * half $WATCHDOG_USEC from a timer of the event loop.
 */
#include <stdbool.h>

#include "pool-services/base/log.h"
#include "pool-services/pool/registry.h"

struct event_base;

typedef struct pm_notify pm_notify;

/* Reads (and removes from the environment, so engines do not inherit
 * them) NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID; starts the
 * watchdog timer. NULL only when out of memory. */
pm_notify *pm_notify_new(struct event_base *base, ps_logger *log);
pm_notify *pm_notify_free(pm_notify *n);

/* Sends one message ("READY=1\nSTATUS=..."): 0, or a negative errno. */
int pm_notify_send(pm_notify *n, const char *message);

/* Start-up: preloads are loading (EXTEND_TIMEOUT_USEC= now and on a
 * timer), then done (READY=1, once). */
void pm_notify_preloading(pm_notify *n);
void pm_notify_started(pm_notify *n, ps_registry *reg);
/* STATUS= again when the count of ready pools changed. */
void pm_notify_update(pm_notify *n, ps_registry *reg);
/* SIGHUP: RELOADING=1 with MONOTONIC_USEC=, then READY=1. */
void pm_notify_reloading(pm_notify *n);
void pm_notify_reloaded(pm_notify *n, ps_registry *reg);
/* SIGTERM/SIGINT. */
void pm_notify_stopping(pm_notify *n);
