/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * mkdir -p: makes path and every missing parent (mode 0755 before the
 * umask); one that exists already is fine. 0, -ENAMETOOLONG for an empty
 * path or one of PATH_MAX or more, or mkdir(2)'s negative errno.
 */
int ps_mkdir_p(const char *path);
