/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "pool-services/conf/config.h"
#include "pool-services/base/errors.h"
#include "pool-services/conf/policy.h"
#include "pool-services/conf/spec.h"

/*
 * A PreparedEngine sent to the API (POST /v2/pools/{id}/preload), checked
 * and turned into the spec a replica runs:
 *
 *   binary_path  string, required; absolute, executable, allowed by
 *                engines.allow (PS_E_FORBIDDEN otherwise)
 *   port         integer 1..65535, required
 *   pool_id      string, default the id in the URL; another one is refused
 *   replica_id   string, default "r0"
 *   host         string, default "127.0.0.1"
 *   flags        array of strings, default []: the engine's argv[1..]
 *   model_path   string, absolute and readable when given
 *   model_id, model_digest, engine, engine_version, workdir   strings
 *   device_mask  "0,1" or "none"; default every device of the inventory,
 *                or "none" when there is none and gpu.require is off
 *   slots        integer 1..4096, default 1
 *   env          object of strings; CUDA_VISIBLE_DEVICES comes from the
 *                mask and may not be set here
 *
 * Unknown keys are refused, like in the config file. With gpu.require on,
 * a mask of "none" or a node without devices is PS_E_GPU_ONLY with a
 * message starting "GPU-only enforcement:". Messages name the field.
 */
int ps_prepared_engine_parse(const json_t *body, const char *url_pool_id,
                             const ps_config *config, ps_engine_spec **ret,
                             char *err, size_t errlen);

/* The policy a pool started through the API runs under: its pool's in the
 * config, else the config's defaults. Borrowed from config. */
const ps_policy *ps_prepared_engine_policy(const ps_config *config, const char *pool_id);

/* Pool and replica ids: [A-Za-z0-9][A-Za-z0-9._-]{0,63} (they become file
 * names). 0, or PS_E_INVALID with the reason. what names the id. */
int ps_id_check(const char *id, const char *what, char *err, size_t errlen);
