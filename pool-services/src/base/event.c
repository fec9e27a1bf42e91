/* SPDX-License-Identifier: MIT */
#include "pool-services/base/event.h"

static const char *const event_type_names[PS_EVENT_TYPE_MAX] = {
        [PS_EVENT_GENERIC] = "generic",
        [PS_EVENT_HTTP_REQUEST] = "http_request",
        [PS_EVENT_ENGINE_SPAWNED] = "engine_spawned",
        [PS_EVENT_SPAWN_FAILED] = "spawn_failed",
        [PS_EVENT_ENGINE_EXITED] = "engine_exited",
        [PS_EVENT_ENGINE_FAILED] = "engine_failed",
        [PS_EVENT_READY] = "ready",
        [PS_EVENT_RESTART_SCHEDULED] = "restart_scheduled",
        [PS_EVENT_STATE_CHANGED] = "state_changed",
        [PS_EVENT_ALERT] = "alert",
        [PS_EVENT_PROBE_FAILED] = "probe_failed",
        [PS_EVENT_ENGINE_LOG_ERROR] = "engine_log_error",
        [PS_EVENT_REQUEST_DONE] = "request_done",
        [PS_EVENT_LEASE] = "lease",
        [PS_EVENT_DRAIN_STARTED] = "drain_started",
};

const char *ps_event_type_to_string(ps_event_type type) {
        if ((unsigned) type >= PS_EVENT_TYPE_MAX)
                return NULL;
        return event_type_names[type];
}

void ps_event_emit(const ps_event_sink *sink, const ps_event *event) {
        if (sink && sink->fn && event)
                sink->fn(event, sink->userdata);
}
