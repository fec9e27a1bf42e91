/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * --check-config FILE: every problem a start would have with FILE (and the
 * environment), one line each on stderr ("FILE: pools[1].port: ..."),
 * warnings as "FILE: warning: ...", "FILE: ok (...)" on stdout when there
 * is no error. EXIT_SUCCESS exactly when there is no error, 2 otherwise.
 */
int pm_check_config(const char *path);
