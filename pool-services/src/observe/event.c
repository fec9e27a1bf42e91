/* SPDX-License-Identifier: MIT */
#include "pool-services/event.h"

static const char *const event_type_names[PS_EVENT_TYPE_MAX] = {
        [PS_EVENT_GENERIC] = "generic",
        [PS_EVENT_HTTP_REQUEST] = "http_request",
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
