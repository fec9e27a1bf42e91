/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "pool-services/pool/registry.h"

/*
 * A handoff document as an external provisioner writes it, read into a
 * ps_handoff_claim. pool_id, replica_id and engine_version are required;
 * url, engine, device_mask and model.id are optional and stay unset (NULL)
 * when missing; other fields are ignored. The slot count is slots_total,
 * else llama-orch's "slots", else 1; it must be at least 1, and slots and
 * slots_total given together must agree; slots_free (at most the count)
 * is taken when given, else the free slots follow the leases.
 *
 * 0 or PS_E_INVALID naming the field. The claim's strings are borrowed
 * from doc.
 */
int ps_handoff_claim_from_json(const json_t *doc, ps_handoff_claim *out,
                               char *err, size_t errlen);

/* ps_handoff_claim_from_json(), then ps_registry_register_handoff(). */
int ps_registry_register_ready_from_handoff(ps_registry *reg, const json_t *doc,
                                            char *err, size_t errlen);
