/* SPDX-License-Identifier: MIT */
#include <jansson.h>

#include "pm-config.h"
#include "request-private.h"
#include "routes-private.h"

/* Answers at once whatever else the daemon is doing: supervisors and
 * load balancers poll it. */
static void route_health(pa_request *r) {
        pa_reply_json(r, 200, json_pack("{s:s, s:s}", "status", "ok", "version", PM_VERSION));
}

const pa_route pa_routes[] = {
        { EVHTTP_REQ_GET, "/health", route_health },
};

const size_t pa_n_routes = sizeof(pa_routes) / sizeof(pa_routes[0]);
