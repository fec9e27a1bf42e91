/* SPDX-License-Identifier: MIT */
#include "pool-domain/version.h"

const char *pd_version(void) {
        return PD_VERSION_STRING;
}
