/* SPDX-License-Identifier: MIT */
#include "text-out.h"
#include "pool-domain/devmask.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Tokens are echoed in messages; a runaway token must not crowd out the
 * rest of the message. */
#define TOKEN_SHOWN_MAX 80

/* ASCII only: <ctype.h> depends on the locale and is undefined for
 * negative chars. */
static bool char_is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool char_is_digit(char c) {
        return c >= '0' && c <= '9';
}

static char char_lower(char c) {
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

static bool prefix_equal_nocase(const char *s, size_t len, const char *prefix) {
        size_t n = strlen(prefix);

        if (len < n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (char_lower(s[i]) != char_lower(prefix[i]))
                        return false;
        return true;
}

static bool token_equal_nocase(const char *s, size_t len, const char *word) {
        return strlen(word) == len && prefix_equal_nocase(s, len, word);
}

static int token_shown(size_t len) {
        return (int) (len < TOKEN_SHOWN_MAX ? len : TOKEN_SHOWN_MAX);
}

const pd_device *pd_inventory_find(const pd_inventory *inv, int index) {
        if (!inv || !inv->devices)
                return NULL;

        for (size_t i = 0; i < inv->count; i++)
                if (inv->devices[i].index == index)
                        return &inv->devices[i];
        return NULL;
}

static const pd_device *inventory_find_uuid_n(const pd_inventory *inv, const char *uuid,
                                              size_t len) {
        if (!inv || !inv->devices)
                return NULL;

        /* NVML and CUDA print UUIDs in lower case, people paste them in
         * whatever case their tool showed. */
        for (size_t i = 0; i < inv->count; i++)
                if (token_equal_nocase(uuid, len, inv->devices[i].uuid))
                        return &inv->devices[i];
        return NULL;
}

const pd_device *pd_inventory_find_uuid(const pd_inventory *inv, const char *uuid) {
        if (!uuid)
                return NULL;
        return inventory_find_uuid_n(inv, uuid, strlen(uuid));
}

/*
 * Digits only: no sign, no "0x", no whitespace, which strtoul() would all
 * accept. Fails on values above `max`.
 */
static bool digits_parse(const char *s, size_t len, int max, int *ret) {
        long long v = 0;

        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (!char_is_digit(s[i]))
                        return false;
                v = v * 10 + (s[i] - '0');
                if (v > max)
                        return false;
        }
        *ret = (int) v;
        return true;
}

static bool digits_only(const char *s, size_t len) {
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!char_is_digit(s[i]))
                        return false;
        return true;
}

/*
 * One entry of a mask, already trimmed: "3", "GPU3" or "GPU-<uuid>".
 *
 * Without an inventory an index is only checked against PD_DEVICES_MAX:
 * CUDA ordinals are dense from 0, so a node that fits in a pd_devmask has
 * no ordinal at or above it.
 */
static int token_resolve(const char *tok, size_t len, const pd_inventory *inv, int *ret,
                         pd_error *err) {
        int shown = token_shown(len);
        const char *digits = tok;
        size_t ndigits = len;
        int index;

        if (prefix_equal_nocase(tok, len, "GPU-")) {
                const pd_device *d;

                if (!inv)
                        return pd_error_set(err, "%.*s needs the GPU inventory to resolve",
                                            shown, tok);
                d = inventory_find_uuid_n(inv, tok, len);
                if (!d)
                        return pd_error_setc(err, PD_E_NOT_FOUND, "%.*s is not a known device",
                                             shown, tok);
                *ret = d->index;
                return 0;
        }

        if (prefix_equal_nocase(tok, len, "GPU")) {
                digits = tok + 3;
                ndigits = len - 3;
        }

        if (!digits_only(digits, ndigits))
                return pd_error_set(err,
                                    "%.*s is not a device (expected an index, GPU<n>, "
                                    "GPU-<uuid> or none)", shown, tok);

        if (!inv) {
                if (!digits_parse(digits, ndigits, PD_DEVICES_MAX - 1, &index))
                        return pd_error_set(err,
                                            "%.*s is out of range (device indexes are 0..%d)",
                                            shown, tok, PD_DEVICES_MAX - 1);
        } else {
                if (!digits_parse(digits, ndigits, INT_MAX, &index))
                        return pd_error_set(err, "%.*s is out of range", shown, tok);
                if (!pd_inventory_find(inv, index))
                        return pd_error_setc(err, PD_E_NOT_FOUND, "%.*s is not a known device",
                                             shown, tok);
        }

        *ret = index;
        return 0;
}

int pd_devmask_parse(const char *text, const pd_inventory *inv, pd_devmask *out,
                     pd_error *err) {
        pd_devmask m = { .count = 0 };
        size_t entries = 1;
        bool saw_none = false;
        const char *p;

        if (!text || !out)
                return -EINVAL;

        /* Count first, so an overlong mask is reported as such rather than
         * as whatever its 65th entry happens to be. */
        for (p = text; *p; p++)
                if (*p == ',')
                        entries++;
        if (entries > PD_DEVICES_MAX)
                return pd_error_set(err, "device mask has %zu entries, at most %d allowed",
                                    entries, PD_DEVICES_MAX);

        p = text;
        for (size_t pos = 1;; pos++) {
                const char *start = p, *end;
                int device = -1;
                int r;

                while (*p && *p != ',')
                        p++;
                end = p;
                while (start < end && char_is_space(*start))
                        start++;
                while (end > start && char_is_space(end[-1]))
                        end--;

                if (start == end) {
                        if (entries == 1)
                                return pd_error_set(err, "empty device mask");
                        return pd_error_set(err, "empty entry %zu in device mask \"%.*s\"",
                                            pos, token_shown(strlen(text)), text);
                }

                if (token_equal_nocase(start, (size_t) (end - start), "none")) {
                        saw_none = true;
                } else {
                        r = token_resolve(start, (size_t) (end - start), inv, &device, err);
                        if (r != 0)
                                return r;
                        if (pd_devmask_contains(&m, device))
                                return pd_error_set(err,
                                                    "device %d is listed twice (again as %.*s)",
                                                    device, token_shown((size_t) (end - start)),
                                                    start);
                        m.index[m.count++] = device;
                }

                if (saw_none && entries > 1)
                        return pd_error_set(err, "none cannot be combined with devices in "
                                            "device mask \"%.*s\"",
                                            token_shown(strlen(text)), text);

                if (*p == '\0')
                        break;
                p++;
        }

        m.none = saw_none;
        *out = m;
        return 0;
}

bool pd_devmask_contains(const pd_devmask *m, int index) {
        if (!m || m->none)
                return false;

        for (unsigned i = 0; i < m->count && i < PD_DEVICES_MAX; i++)
                if (m->index[i] == index)
                        return true;
        return false;
}

bool pd_devmask_overlaps(const pd_devmask *a, const pd_devmask *b, int *shared) {
        if (!a || !b || a->none || b->none)
                return false;

        for (unsigned i = 0; i < a->count && i < PD_DEVICES_MAX; i++)
                if (pd_devmask_contains(b, a->index[i])) {
                        if (shared)
                                *shared = a->index[i];
                        return true;
                }
        return false;
}


static bool devmask_is_sane(const pd_devmask *m) {
        return m->none || (m->count > 0 && m->count <= PD_DEVICES_MAX);
}

int pd_devmask_format(const pd_devmask *m, char *buf, size_t len) {
        pd_text_out o = { .buf = buf, .len = len };

        if (!m || !devmask_is_sane(m))
                return -EINVAL;
        if (!buf || len == 0)
                return -ENOSPC;

        if (m->none)
                pd_text_out_printf(&o, "none");
        else
                for (unsigned i = 0; i < m->count; i++)
                        pd_text_out_printf(&o, "%s%d", i > 0 ? "," : "", m->index[i]);

        return pd_text_out_finish(&o);
}

int pd_devmask_format_visible(const pd_devmask *m, const pd_inventory *inv, bool by_uuid,
                              char *buf, size_t len) {
        pd_text_out o = { .buf = buf, .len = len };

        if (!m || !devmask_is_sane(m))
                return -EINVAL;
        if (by_uuid && !inv)
                return -EINVAL;
        if (!buf || len == 0)
                return -ENOSPC;

        /* An empty CUDA_VISIBLE_DEVICES hides every GPU, which is what a
         * CPU-only pool wants; unsetting it would expose them all. */
        if (m->none) {
                buf[0] = '\0';
                return 0;
        }

        for (unsigned i = 0; i < m->count; i++) {
                const char *sep = i > 0 ? "," : "";

                if (by_uuid) {
                        const pd_device *d = pd_inventory_find(inv, m->index[i]);

                        if (!d) {
                                buf[0] = '\0';
                                return -ENOENT;
                        }
                        pd_text_out_printf(&o, "%s%s", sep, d->uuid);
                } else
                        pd_text_out_printf(&o, "%s%d", sep, m->index[i]);
        }

        return pd_text_out_finish(&o);
}
