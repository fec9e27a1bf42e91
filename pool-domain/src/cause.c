/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "pool-domain/cause.h"
#include "pool-domain/crash.h"
#include "text-out.h"

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Digits, then (sep digits) `groups` more times; 0 when it does not fit. */
static size_t skip_number_groups(const char *s, size_t n, char sep, unsigned groups) {
        size_t i = 0;

        for (unsigned g = 0; g <= groups; g++) {
                size_t from;

                if (g > 0) {
                        if (i >= n || s[i] != sep)
                                return 0;
                        i++;
                }
                from = i;
                while (i < n && is_digit(s[i]))
                        i++;
                if (i == from)
                        return 0;
        }
        return i;
}

/* "E " / "I " / ... : a level letter and a space. */
static size_t skip_level_letter(const char *s, size_t n, bool *error) {
        if (n >= 2 && s[0] && strchr("IWEDN", s[0]) && s[1] == ' ') {
                *error = s[0] == 'E';
                return 2;
        }
        return 0;
}

/* llama.cpp's common_log: "0.00.013.368 E ". */
static size_t skip_llama_prefix(const char *s, size_t n, bool *error) {
        size_t i = skip_number_groups(s, n, '.', 3), j;

        if (i == 0 || i >= n || s[i] != ' ')
                return 0;
        j = skip_level_letter(s + i + 1, n - i - 1, error);
        return j ? i + 1 + j : 0;
}

static const char *const vllm_levels[] = { "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", NULL };

/* vLLM: "[(EngineCore_0 pid=7) ]ERROR 12-06 10:00:00[.123] [core.py:12] ". */
static size_t skip_vllm_prefix(const char *s, size_t n, bool *error) {
        size_t i = 0, k, lvl_len = 0;
        const char *const *lvl;

        if (n > 0 && s[0] == '(') {
                const char *close = memchr(s, ')', n);

                if (!close || (size_t) (close - s) + 1 >= n || close[1] != ' ')
                        return 0;
                i = (size_t) (close - s) + 2;
        }
        for (lvl = vllm_levels; *lvl; lvl++) {
                lvl_len = strlen(*lvl);
                if (n - i > lvl_len && memcmp(s + i, *lvl, lvl_len) == 0 && s[i + lvl_len] == ' ')
                        break;
        }
        if (!*lvl)
                return 0;
        i += lvl_len + 1;
        /* the date and the time, each optional */
        k = skip_number_groups(s + i, n - i, '-', 1);
        if (k && i + k < n && s[i + k] == ' ')
                i += k + 1;
        k = skip_number_groups(s + i, n - i, ':', 2);
        if (k) {
                if (i + k < n && s[i + k] == '.')
                        k += 1 + skip_number_groups(s + i + k + 1, n - i - k - 1, '.', 0);
                if (i + k < n && s[i + k] == ' ')
                        i += k + 1;
        }
        if (i < n && s[i] == '[') {
                const char *close = memchr(s + i, ']', n - i);

                if (close && (size_t) (close - s) + 1 < n && close[1] == ' ')
                        i = (size_t) (close - s) + 2;
        }
        *error = strcmp(*lvl, "ERROR") == 0 || strcmp(*lvl, "CRITICAL") == 0;
        return i;
}

const char *pd_log_line_body(const char *line, size_t len, size_t *body_len, bool *error) {
        bool err = false;
        size_t skip;

        if (!line)
                len = 0;
        while (len > 0 && is_blank(line[0])) {
                line++;
                len--;
        }
        if ((skip = skip_llama_prefix(line, len, &err)) == 0 &&
            (skip = skip_vllm_prefix(line, len, &err)) == 0)
                skip = skip_level_letter(line, len, &err);
        line += skip;
        len -= skip;
        while (len > 0 && is_blank(line[0])) {
                line++;
                len--;
        }
        while (len > 0 && is_blank(line[len - 1]))
                len--;
        if (body_len)
                *body_len = len;
        if (error)
                *error = err;
        return line ? line : "";
}

/* Lowercase. Lines that only say the engine gives up, without why. */
static const char *const generic_lines[] = {
        "exiting due to",               /* llama-server's last line */
        "see root cause above",         /* vLLM's final RuntimeError */
        NULL,
};

/* What went wrong, specifically (rank 3). */
static const char *const specific_causes[] = {
        "not within the file bounds",
        "invalid magic",
        "failed to open gguf",
        "unknown model architecture",
        "couldn't bind",
        "could not bind",
        "address already in use",
        "out of memory",
        "outofmemoryerror",             /* torch.OutOfMemoryError */
        "no such file or directory",
        "permission denied",
        "valueerror",
        "runtimeerror",
        "oserror",
        "filenotfounderror",
        "importerror",
        "modulenotfounderror",
        "notimplementederror",
        "assertionerror",
        "keyerror",
        "typeerror",
        NULL,
};

static bool has_any(const char *s, size_t n, const char *const *needles) {
        for (; *needles; needles++)
                if (pd_text_has_nocase(s, n, *needles))
                        return true;
        return false;
}

/* ggml's abort line "/src/ggml-cuda.cu:84: CUDA error" follows the line
 * that says which CUDA error it was. */
static bool is_bare_abort(const char *s, size_t n) {
        static const char tail[] = "cuda error";
        size_t t = sizeof(tail) - 1;

        return n >= t && pd_text_has_nocase(s + n - t, t, tail);
}

/* 3: a specific cause; 2: "error loading model: <why>" or ggml's bare
 * abort line; 1: a bare "failed to load model"; 0: not a cause. */
static int cause_rank(const char *s, size_t n) {
        if (has_any(s, n, generic_lines))
                return 0;
        if (has_any(s, n, specific_causes) || pd_crash_scan_line(s, n, NULL))
                return is_bare_abort(s, n) ? 2 : 3;
        if (pd_text_has_nocase(s, n, "error loading model"))
                return 2;
        if (pd_text_has_nocase(s, n, "failed to load model"))
                return 1;
        return 0;
}

int pd_log_cause_pick(const pd_log_line *lines, size_t n, char *buf, size_t size) {
        int best = -1, best_rank = 0, last_error = -1, last = -1;

        if (buf && size > 0)
                buf[0] = '\0';
        if (!lines)
                return -1;
        for (size_t i = 0; i < n; i++) {
                size_t len;
                bool error;
                const char *body = pd_log_line_body(lines[i].text, lines[i].len, &len, &error);
                int rank;

                if (len == 0)
                        continue;
                last = (int) i;
                rank = cause_rank(body, len);
                if (rank > 0 && rank >= best_rank) {
                        best = (int) i;
                        best_rank = rank;
                }
                if (error && !has_any(body, len, generic_lines))
                        last_error = (int) i;
        }
        if (best < 0)
                best = last_error >= 0 ? last_error : last;
        if (best >= 0 && buf && size > 0) {
                size_t len;
                const char *body = pd_log_line_body(lines[best].text, lines[best].len, &len, NULL);

                if (len >= size)
                        len = size - 1;
                memcpy(buf, body, len);
                buf[len] = '\0';
        }
        return best;
}
