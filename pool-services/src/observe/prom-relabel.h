/* SPDX-License-Identifier: MIT */
#pragma once

#include "observe/prom-parse.h"

/*
 * Relabelling and merging engine scrapes: the pure half of
 * pool-services/observe/engine-metrics.h (ps_engine_metrics_relabel(),
 * ps_engine_scrape_*() and ps_engine_scrapes_render() live in
 * prom-relabel.c). What is declared here is the naming rule on its own.
 */

/*
 * The name a family the engine calls name is published under: a name of
 * ours ("pool_managerd_*") gets "engine_" in front, ':' becomes '_', and
 * a counter without "_total" gets it. *ret is NULL when promlint would
 * refuse the result for its type (camelCase, a unit not in base units or
 * abbreviated, a type's name as a word, "_total" on what is neither a
 * counter nor untyped, "_bucket", "_sum" or "_count" where the type has
 * none). 0 and *ret (malloc'd, or NULL), or -ENOMEM.
 */
int ps_prom_name_publish(const char *name, ps_prom_type type, char **ret);
