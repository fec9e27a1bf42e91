/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Which of an engine's last log lines explains why it stopped. Engines end
 * a failed start with a generic line (llama-server: "exiting due to model
 * loading error"; vLLM: "RuntimeError: Engine core initialization failed.
 * See root cause above."); the cause came a few lines earlier.
 */

/* One log line, not NUL-terminated. */
typedef struct pd_log_line {
        const char *text;
        size_t len;
} pd_log_line;

/*
 * The message of a log line without the engine's prefix: llama.cpp's
 * elapsed time and level letter ("0.00.013.368 E "), a level letter alone
 * ("E "), vLLM's level, date, time and source ("ERROR 12-06 10:00:00
 * [core.py:12] ", after an optional "(EngineCore_0 pid=7) "). Leading and
 * trailing blanks go too. Returns the start of the message inside line and
 * sets *body_len; *error (may be NULL) says whether the prefix named the
 * error level (E, ERROR, CRITICAL). A line without a known prefix is
 * returned whole, trimmed, and is not error-level.
 */
const char *pd_log_line_body(const char *line, size_t len, size_t *body_len, bool *error);

/*
 * Picks the text for last_error from the recent lines (oldest first), by
 * one rule:
 *   1. a recognised cause line: the crash classifier's CUDA, driver and
 *      out-of-memory patterns, and the load errors of llama.cpp and vLLM
 *      ("not within the file bounds", "invalid magic", "failed to open
 *      GGUF", "couldn't bind", "out of memory", "ValueError",
 *      "RuntimeError", "torch.OutOfMemoryError", ...); a specific cause
 *      beats "error loading model: ...", which beats the bare "failed to
 *      load model"; among equals the latest wins;
 *   2. else the last error-level line;
 *   3. else the last non-empty line.
 * Generic lines ("exiting due to ...", vLLM's "See root cause above") are
 * never chosen by rules 1 and 2. The chosen line is copied without its
 * prefix into buf (cut to size - 1 bytes). Returns the index of the chosen
 * line, or -1 (buf emptied) when every line is blank or n is 0.
 */
int pd_log_cause_pick(const pd_log_line *lines, size_t n, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
