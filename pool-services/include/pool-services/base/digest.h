/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * SHA-256, for verifying model files before a reload uses them. Pure
 * computation: the reload hashes files on a worker thread, never on the
 * event loop.
 */
typedef struct ps_sha256 {
        uint32_t h[8];
        uint64_t bytes;
        uint8_t block[64];
        size_t used;
} ps_sha256;

void ps_sha256_init(ps_sha256 *c);
void ps_sha256_update(ps_sha256 *c, const void *data, size_t len);
/* 64 lowercase hex digits and a NUL. */
void ps_sha256_final_hex(ps_sha256 *c, char hex[65]);

/* Whether s is a digest as the API takes it: 64 hex digits, optionally
 * after "sha256:". *hex (may be NULL) points at the digits. */
bool ps_sha256_parse(const char *s, const char **hex);
