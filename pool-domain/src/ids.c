/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "pool-domain/ids.h"

/* ASCII by hand: isalnum() follows the locale, and an id must mean the
 * same file name whatever locale the daemon runs in. */
static bool id_char_is_alnum(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9');
}

static bool id_char_is_allowed(unsigned char c) {
        return id_char_is_alnum(c) || c == '.' || c == '_' || c == '-';
}

static bool id_char_is_printable(unsigned char c) {
        return c >= 0x20 && c < 0x7f;
}

/* The id goes into a message that is logged and returned as JSON, so
 * control bytes, non-ASCII and quotes are written as escapes. An id can
 * be of any length here: only the start is shown. */
static void id_quote(const char *id, char *buf, size_t size) {
        static const size_t shown = 64;
        size_t o = 0, i = 0;

        for (; id[i] && i < shown && o + 5 < size; i++) {
                unsigned char c = (unsigned char) id[i];

                if (id_char_is_printable(c) && c != '"' && c != '\\')
                        buf[o++] = (char) c;
                else
                        o += (size_t) snprintf(buf + o, size - o, "\\x%02x", c);
        }
        if (id[i] && o + 4 <= size) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
}

static void id_quote_char(unsigned char c, char buf[8]) {
        if (id_char_is_printable(c) && c != '\'' && c != '\\')
                snprintf(buf, 8, "'%c'", c);
        else
                snprintf(buf, 8, "'\\x%02x'", c);
}

int pd_id_validate(const char *id, const char *what, pd_error *err) {
        char quoted[64 * 4 + 4], ch[8];
        size_t len;

        if (!what)
                what = "id";
        if (!id)
                return pd_error_set(err, "%s: missing", what);

        len = strnlen(id, PD_ID_MAX + 1);
        if (len == 0)
                return pd_error_set(err, "%s: empty", what);
        if (len > PD_ID_MAX)
                return pd_error_set(err, "%s: longer than %d characters", what, PD_ID_MAX);

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) id[i];

                if (i == 0 && !id_char_is_alnum(c)) {
                        id_quote(id, quoted, sizeof(quoted));
                        id_quote_char(c, ch);
                        return pd_error_set(err,
                                            "%s \"%s\": must start with a letter or digit, not %s",
                                            what, quoted, ch);
                }
                if (!id_char_is_allowed(c)) {
                        id_quote(id, quoted, sizeof(quoted));
                        id_quote_char(c, ch);
                        return pd_error_set(err,
                                            "%s \"%s\": character %s at position %zu is not allowed (letters, digits, '.', '_', '-')",
                                            what, quoted, ch, i);
                }
        }
        return 0;
}

bool pd_id_is_valid(const char *id) {
        return pd_id_validate(id, "id", NULL) == 0;
}
