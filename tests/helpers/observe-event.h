/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * For tests of the metrics: hands ps_metrics_observe() one event built in
 * place, with the given fields (PS_FIELD_*). replica may be NULL (an event
 * about the whole pool).
 */

#include "pool-services/base/event.h"
#include "pool-services/observe/metrics.h"

#define OBSERVE_EVENT(m, type_, pool, replica, ...)                            \
        do {                                                                   \
                const ps_field f_[] = { __VA_ARGS__ };                         \
                const ps_event ev_ = {                                         \
                        .type = (type_),                                       \
                        .level = PS_LOG_INFO,                                  \
                        .pool_id = (pool),                                     \
                        .replica_id = (replica),                               \
                        .message = "test",                                     \
                        .fields = f_,                                          \
                        .n_fields = sizeof(f_) / sizeof(f_[0]),                \
                };                                                             \
                ps_metrics_observe((m), &ev_);                                 \
        } while (0)
