/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include <event2/event.h>

#include "pool-services/base/libevent-log.h"

static ps_logger *libevent_logger;

static ps_log_level level_of(int severity) {
        switch (severity) {
        case EVENT_LOG_DEBUG:
                return PS_LOG_DEBUG;
        case EVENT_LOG_MSG:
                return PS_LOG_INFO;
        case EVENT_LOG_WARN:
                return PS_LOG_WARN;
        default:
                return PS_LOG_ERROR;
        }
}

static void on_libevent_log(int severity, const char *msg) {
        ps_log(libevent_logger, level_of(severity), msg ? msg : "(no message)",
               PS_FIELD_STR("source", "libevent"));
}

static void on_libevent_fatal(int err) {
        ps_log(libevent_logger, PS_LOG_CRITICAL, "libevent failed fatally: aborting",
               PS_FIELD_STR("source", "libevent"), PS_FIELD_INT("code", err));
        abort();
}

void ps_libevent_log_to(ps_logger *logger) {
        libevent_logger = logger;
        event_set_log_callback(logger ? on_libevent_log : NULL);
        event_set_fatal_callback(logger ? on_libevent_fatal : NULL);
}
