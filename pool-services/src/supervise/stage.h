/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

struct event_base;

/*
 * Staging a model before a reload touches the running engine: the file is
 * a readable regular file and, when a digest is given, hashes to it.
 * Models are gigabytes, so the work runs on a thread of its own; the
 * answer comes back to the loop through a pipe.
 */
typedef enum stage_result {
        STAGE_OK,
        STAGE_UNUSABLE,           /* missing, unreadable, not a file       */
        STAGE_MISMATCH,           /* read fine, wrong sha256               */
} stage_result;

typedef struct stage_job stage_job;

/* Called once on the loop; detail is borrowed for the call. The job may
 * be freed from inside. */
typedef void (*stage_done_fn)(stage_result result, const char *detail, void *userdata);

/* sha256_hex: 64 hex digits, or NULL to check only that the file reads.
 * 0 and *ret, or a negative errno. */
int ps_stage_job_start(struct event_base *base, const char *path, const char *sha256_hex,
                    stage_done_fn done, void *userdata, stage_job **ret);
/* Cancels a job still hashing (waits for its current read to end) and
 * frees it without calling back. Accepts NULL; returns NULL. */
stage_job *ps_stage_job_free(stage_job *job);
