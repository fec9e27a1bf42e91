/* SPDX-License-Identifier: MIT */
#pragma once

#include "pool-services/conf/config.h"
#include "pool-services/conf/spec.h"
#include "pool-services/placement/preflight.h"

/*
 * The hook for ps_context.preflight: userdata is a ps_preflight_source
 * that outlives the registry. A pool found in the configuration adds what
 * it declares (vram_required_bytes, ram_required_bytes, its tensor split);
 * a pool preloaded through the API is checked from its spec alone.
 */
typedef struct ps_preflight_source {
        const ps_config *config;      /* gpu section and pools; borrowed      */
        const ps_inventory *inventory; /* NULL: config->inventory             */
        const char *meminfo_path;     /* NULL: /proc/meminfo                  */
} ps_preflight_source;

int ps_preflight_spec(const ps_engine_spec *spec, void *userdata, char *err, size_t errlen);
