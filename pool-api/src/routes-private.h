/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "router-private.h"

/* Every route the API serves, in one table. */
extern const pa_route pa_routes[];
extern const size_t pa_n_routes;
