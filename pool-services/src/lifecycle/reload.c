/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "core/registry-private.h"

reload_op *reload_op_free(reload_op *op) {
        free(op);
        return NULL;
}
