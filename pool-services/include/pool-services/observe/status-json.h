/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>

#include "pool-services/pool/registry.h"
#include "pool-services/supervise/replica.h"
#include "pool-services/supervise/status.h"

/*
 * Status as JSON, for the edges that speak it: the API's snapshots, the
 * control plane's payloads. The one place a status struct becomes JSON;
 * docs/api.md lists the fields. Each returns a new reference, NULL on OOM.
 */

/* {replica_id, state, live, ready, ..., breaker: {...}, driver_resets}. */
json_t *ps_replica_status_json(const ps_replica_status *s);
/* {pool_id, state, ..., replicas: [...], devices: []}: the pool-level
 * fields, its replicas, and an empty "devices" the API fills. */
json_t *ps_pool_status_json(const ps_pool_status *s);
/* {"pools": [...]}. */
json_t *ps_registry_status_json(const ps_registry_status *s);

/* Filled and rendered in one call. */
json_t *ps_replica_snapshot(const ps_replica *r);
/* NULL for an unknown pool too. */
json_t *ps_registry_pool_snapshot(const ps_registry *reg, const char *pool_id);
json_t *ps_registry_snapshot(const ps_registry *reg);
