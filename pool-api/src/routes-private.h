/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "pool-services/pool/registry.h"
#include "request-private.h"
#include "router-private.h"

struct pa_request;

/* Every route the API serves, in one table. */
extern const pa_route pa_routes[];
extern const size_t pa_n_routes;

/* ---- what the route files share (routes.c) ---- */

/* The registry, or NULL with a 503 sent. */
ps_registry *pa_need_registry(struct pa_request *r);
/* The {id} of the path when it is a valid pool id, or NULL with a 400 sent. */
const char *pa_pool_param(struct pa_request *r);
/* The registry (*ret) and a known pool's id, or NULL with the error sent. */
const char *pa_known_pool(struct pa_request *r, ps_registry **ret);
/* Answers a pool-services failure: PS_E_* through the code table, a
 * negative errno as INTERNAL. */
void pa_reply_services_error(struct pa_request *r, int rc, const char *err);
/*
 * The body as a JSON object. An empty body is an empty object when
 * optional, else a 400; malformed JSON names the line, column and
 * problem. NULL with the error sent.
 */
json_t *pa_read_body(struct pa_request *r, bool optional);

/*
 * The PreparedEngine of a preload body (routes.c): the body itself, or
 * the llama-orch orchestrator's envelope {"prepared": PreparedEngine},
 * whose "prepared" is then the only field and an object. Borrowed from
 * body; NULL with err set (an INVALID_FIELD message) otherwise.
 */
json_t *pa_preload_unwrap(json_t *body, char *err, size_t errlen);

/*
 * How a failed preload answers: rc (its ps_done_fn code) alone decides the
 * code, and so the status; the message is shown into buf, after "preload
 * failed: " when no more specific code applies.
 */
pa_code pa_preload_failure(int rc, const char *message, char *buf, size_t len);

/* One pool's snapshot as GET /v2/pools/{id} answers it (devices,
 * tensor_split, engine hints); NULL when unknown or on OOM. */
json_t *pa_pool_snapshot_json(struct pa_request *r, const ps_registry *reg, const char *pool_id);

/* ---- routes-ops.c: leases, drain, reload ---- */

/*
 * The model a reload body names: exactly one of "model_path",
 * "model_ref" and "new_model_ref" (llama-orch's name for model_ref), each
 * a non-empty string when present (null: absent). *model_path or
 * *model_ref is set, borrowed from body, the other NULL; -1 with err set
 * (an INVALID_FIELD message) otherwise.
 */
int pa_reload_model(const json_t *body, const char **model_path, const char **model_ref,
                    char *err, size_t errlen);

void pa_route_drain(struct pa_request *r);
void pa_route_reload(struct pa_request *r);
void pa_route_lease_acquire(struct pa_request *r);
void pa_route_lease_renew(struct pa_request *r);
void pa_route_lease_release(struct pa_request *r);

/* ---- routes-ctl.c: lease list, start, configuration reload ---- */

void pa_route_lease_list(struct pa_request *r);
void pa_route_start(struct pa_request *r);
void pa_route_config_reload(struct pa_request *r);

/* ---- routes-logs.c: an engine's log, tailed or followed ---- */

void pa_route_logs(struct pa_request *r);
