/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool-domain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PD_DEVICES_MAX 64
#define PD_UUID_MAX 64
#define PD_DEVICE_NAME_MAX 96
#define PD_PCI_BUS_ID_MAX 32

/* One GPU as discovery (or the fake backend) reports it. */
typedef struct pd_device {
        int index;                          /* CUDA ordinal, PCI bus order */
        char uuid[PD_UUID_MAX];             /* "GPU-8f2c..."               */
        char name[PD_DEVICE_NAME_MAX];
        char pci_bus_id[PD_PCI_BUS_ID_MAX];
        int cc_major, cc_minor;
        uint64_t vram_total_bytes;
        uint64_t vram_free_bytes;
} pd_device;

/* A borrowed view of the node's devices. */
typedef struct pd_inventory {
        const pd_device *devices;
        size_t count;
} pd_inventory;

const pd_device *pd_inventory_find(const pd_inventory *inv, int index);
/* By full UUID ("GPU-8f2c..."), ignoring case; NULL when absent. */
const pd_device *pd_inventory_find_uuid(const pd_inventory *inv, const char *uuid);

/*
 * A device mask: the devices a pool may use, in the order given (a tensor
 * split follows that order), or `none` for a CPU-only pool.
 */
typedef struct pd_devmask {
        bool none;
        unsigned count;
        int index[PD_DEVICES_MAX];          /* pd_device.index values */
} pd_devmask;

/*
 * Parses "0,1", "GPU0,GPU1", "GPU-<uuid>" (any mix, spaces around commas
 * allowed) or "none". With an inventory, every device must exist in it
 * (UUIDs need one); without, only the syntax is checked. Duplicates and
 * empty entries are errors. Messages name the token
 * ("GPU7 is not a known device").
 */
int pd_devmask_parse(const char *text, const pd_inventory *inv,
                     pd_devmask *out, pd_error *err);

bool pd_devmask_contains(const pd_devmask *m, int index);
/* True when a and b share a device; *shared (may be NULL) gets the first. */
bool pd_devmask_overlaps(const pd_devmask *a, const pd_devmask *b, int *shared);

/* Canonical text: "0,1" or "none". Returns the length snprintf would write
 * or a negative errno; truncation is an error (-ENOSPC). */
int pd_devmask_format(const pd_devmask *m, char *buf, size_t len);

/* The value for CUDA_VISIBLE_DEVICES: "" for none, "0,1" by index, or
 * "GPU-...,GPU-..." by UUID (needs the inventory). */
int pd_devmask_format_visible(const pd_devmask *m, const pd_inventory *inv,
                              bool by_uuid, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
