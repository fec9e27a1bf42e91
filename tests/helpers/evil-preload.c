/* SPDX-License-Identifier: MIT */
/*
 * A library an attacker would like an engine to load: when it is loaded,
 * it leaves a file "ran" next to itself. The security scenarios offer it
 * through LD_PRELOAD and check that the file never appears.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char anchor;

__attribute__((constructor)) static void evil_ran(void) {
        Dl_info info;
        char path[4096];
        const char *slash;
        int fd;

        if (!dladdr(&anchor, &info) || !info.dli_fname)
                return;
        slash = strrchr(info.dli_fname, '/');
        if (!slash)
                return;
        snprintf(path, sizeof(path), "%.*s/ran", (int) (slash - info.dli_fname), info.dli_fname);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
                close(fd);
}
