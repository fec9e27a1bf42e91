/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * libevent's own messages (a failed epoll_ctl, a broken invariant) go to
 * our log as JSON lines, with "source": "libevent": debug and msg as debug
 * and info, warn as warn, err as error. A fatal error of libevent is
 * logged (critical) before the process aborts. Process-wide, as libevent's
 * callbacks are; NULL goes back to libevent's default (stderr).
 */

#include "pool-services/base/log.h"

void ps_libevent_log_to(ps_logger *logger);
