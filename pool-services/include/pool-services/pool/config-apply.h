/* SPDX-License-Identifier: MIT */
#pragma once

#include "pool-services/conf/config-diff.h"
#include "pool-services/pool/registry.h"

/* How long a configuration reload lets a removed or replaced pool drain. */
#define PS_CONFIG_DRAIN_DEADLINE_MS 60000

/*
 * Brings the registry from `old` to `next` (both loaded and valid):
 * added pools are registered and preloaded; removed pools are drained,
 * stopped and forgotten; changed pools are reloaded in place (drain-first,
 * one replica at a time) or replaced; a policy-only change is applied to
 * the running replicas without a restart; unchanged pools are not touched.
 * What happens later (a preload, a drain, a reload finishing) is reported
 * through the registry's event sink. Returns 0, PS_E_INVALID when `next`
 * does not resolve to engines (nothing is changed then), or -ENOMEM.
 * `next` may be freed once this returns.
 */
int ps_registry_apply_config(ps_registry *reg, const ps_config *old, const ps_config *next,
                             char *err, size_t errlen);
