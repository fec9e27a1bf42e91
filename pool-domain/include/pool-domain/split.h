/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "pool-domain/devmask.h"
#include "pool-domain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Tensor-split planning across the devices of a mask, in mask order.
 * Ratios are fractions that sum to 1.
 */
typedef struct pd_split {
        size_t count;
        double ratio[PD_DEVICES_MAX];
} pd_split;

/* Ratios given explicitly must sum to 1 within this tolerance. */
#define PD_SPLIT_TOLERANCE 0.01

/* Ratios proportional to each device's usable bytes. PD_E_INVALID when n is
 * 0, above PD_DEVICES_MAX, or every device has 0 usable bytes. */
int pd_split_plan_auto(const uint64_t *usable, size_t n, pd_split *out,
                       pd_error *err);

/* Parses "0.75,0.25": exactly `expect` positive finite numbers (expect 0:
 * any count) summing to 1 within PD_SPLIT_TOLERANCE; the result is
 * renormalised to sum to exactly 1. */
int pd_split_parse(const char *text, size_t expect, pd_split *out,
                   pd_error *err);

/*
 * Caps a split so that no device is asked for more than it can hold:
 * device i receives ratio[i] * required_bytes, which must not exceed
 * usable[i]. Overflow from a capped device moves to the others in
 * proportion to their remaining room (water-filling). PD_E_INSUFFICIENT,
 * with numbers in the message, when the devices together cannot hold
 * required_bytes. required_bytes 0 leaves the split unchanged.
 */
int pd_split_cap(pd_split *s, const uint64_t *usable, uint64_t required_bytes,
                 pd_error *err);

typedef enum pd_split_style {
        PD_SPLIT_STYLE_FRACTION,    /* "0.75,0.25" (up to 4 decimals)       */
        PD_SPLIT_STYLE_INTEGER,     /* "3,1": smallest integers, by percent */
        PD_SPLIT_STYLE_MAX,
} pd_split_style;

/* Formats for an engine flag; returns the length or a negative errno
 * (-ENOSPC when buf is too small). */
int pd_split_format(const pd_split *s, pd_split_style style, char *buf,
                    size_t len);

#ifdef __cplusplus
}
#endif
