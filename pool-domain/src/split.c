/* SPDX-License-Identifier: MIT */
#include "text-out.h"
#include "pool-domain/split.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

/* Tokens are echoed in messages; a runaway token must not crowd out the
 * rest of the message. */
#define TOKEN_SHOWN_MAX 80

/* ASCII only: <ctype.h> depends on the locale. */
static bool char_is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int token_shown(size_t len) {
        return (int) (len < TOKEN_SHOWN_MAX ? len : TOKEN_SHOWN_MAX);
}

int pd_split_plan_auto(const uint64_t *usable, size_t n, pd_split *out, pd_error *err) {
        pd_split s = { .count = n };
        double total = 0;

        if (!out)
                return -EINVAL;
        if (n == 0)
                return pd_error_set(err, "no devices to split across");
        if (n > PD_DEVICES_MAX)
                return pd_error_set(err, "%zu devices to split across, at most %d allowed",
                                    n, PD_DEVICES_MAX);
        if (!usable)
                return -EINVAL;

        /* Summed as double: 64 devices of huge uint64 values would wrap. */
        for (size_t i = 0; i < n; i++)
                total += (double) usable[i];
        if (total <= 0)
                return pd_error_set(err, "none of the %zu devices has usable memory", n);

        for (size_t i = 0; i < n; i++)
                s.ratio[i] = (double) usable[i] / total;

        *out = s;
        return 0;
}

int pd_split_parse(const char *text, size_t expect, pd_split *out, pd_error *err) {
        pd_split s = { .count = 0 };
        size_t entries = 1;
        double sum = 0;
        const char *p;

        if (!text || !out)
                return -EINVAL;

        for (p = text; *p; p++)
                if (*p == ',')
                        entries++;
        if (expect > 0 && entries != expect)
                return pd_error_set(err, "mask has %zu device%s, split gives %zu",
                                    expect, expect == 1 ? "" : "s", entries);
        if (entries > PD_DEVICES_MAX)
                return pd_error_set(err, "split has %zu entries, at most %d allowed",
                                    entries, PD_DEVICES_MAX);

        p = text;
        for (size_t pos = 1;; pos++) {
                const char *start = p, *end;
                char *parsed;
                int shown;
                double v;

                while (*p && *p != ',')
                        p++;
                end = p;
                while (start < end && char_is_space(*start))
                        start++;
                while (end > start && char_is_space(end[-1]))
                        end--;
                shown = token_shown((size_t) (end - start));

                if (start == end) {
                        if (entries == 1)
                                return pd_error_set(err, "empty split");
                        return pd_error_set(err, "empty entry %zu in split \"%.*s\"",
                                            pos, token_shown(strlen(text)), text);
                }

                /* strtod() honours LC_NUMERIC; the daemon never calls
                 * setlocale(), so the decimal point is always '.'. The
                 * token ends at a comma or space, so strtod() cannot read
                 * past it into the next entry. */
                errno = 0;
                v = strtod(start, &parsed);
                if (parsed != end)
                        return pd_error_set(err, "split entry %.*s is not a number",
                                            shown, start);
                if (!isfinite(v))
                        return pd_error_set(err, "split entry %.*s is not a finite number",
                                            shown, start);
                if (v <= 0)
                        return pd_error_set(err, "split entry %.*s is not positive",
                                            shown, start);
                if (errno == ERANGE)
                        return pd_error_set(err, "split entry %.*s is out of range",
                                            shown, start);

                s.ratio[s.count++] = v;
                sum += v;

                if (*p == '\0')
                        break;
                p++;
        }

        if (fabs(sum - 1.0) > PD_SPLIT_TOLERANCE)
                return pd_error_set(err, "ratios must sum to 1, got %g", sum);

        for (size_t i = 0; i < s.count; i++)
                s.ratio[i] /= sum;

        *out = s;
        return 0;
}

static bool split_is_sane(const pd_split *s) {
        double sum = 0;

        if (s->count == 0 || s->count > PD_DEVICES_MAX)
                return false;
        for (size_t i = 0; i < s->count; i++) {
                if (!isfinite(s->ratio[i]) || s->ratio[i] < 0)
                        return false;
                sum += s->ratio[i];
        }
        return sum > 0;
}

/*
 * Water-filling. Every device over its limit is pinned at its limit and
 * the excess is spread over the unpinned devices in proportion to their
 * room. Since the devices together hold required_bytes, the excess never
 * exceeds the room left, so in exact arithmetic one round suffices; the
 * loop is for rounding, which can leave a device a hair over. Each round
 * pins at least one more device, so it ends within count rounds.
 */
int pd_split_cap(pd_split *s, const uint64_t *usable, uint64_t required_bytes,
                 pd_error *err) {
        double want[PD_DEVICES_MAX], cap[PD_DEVICES_MAX];
        bool pinned[PD_DEVICES_MAX] = { false };
        double required = (double) required_bytes;
        uint64_t total = 0;
        bool over = false;

        if (!s || !usable || !split_is_sane(s))
                return -EINVAL;
        if (required_bytes == 0)
                return 0;

        for (size_t i = 0; i < s->count; i++) {
                cap[i] = (double) usable[i];
                want[i] = s->ratio[i] * required;
                /* In integers, so "exactly enough" is not lost to rounding;
                 * saturating, as 64 huge devices could wrap. */
                total = usable[i] > UINT64_MAX - total ? UINT64_MAX : total + usable[i];
                if (want[i] > cap[i])
                        over = true;
        }

        if (total < required)
                return pd_error_setc(err, PD_E_INSUFFICIENT,
                                     "need %.1f GiB, usable %.1f GiB across %zu device%s",
                                     required / GIB, (double) total / GIB, s->count,
                                     s->count == 1 ? "" : "s");

        /* Leave a split that already fits bit for bit as it was. */
        if (!over)
                return 0;

        for (size_t round = 0; round < s->count; round++) {
                double excess = 0, room = 0;

                for (size_t i = 0; i < s->count; i++)
                        if (!pinned[i] && want[i] > cap[i]) {
                                excess += want[i] - cap[i];
                                want[i] = cap[i];
                                pinned[i] = true;
                        }
                if (excess <= 0)
                        break;

                for (size_t i = 0; i < s->count; i++)
                        if (!pinned[i])
                                room += cap[i] - want[i];
                if (room <= 0)
                        break;  /* everything pinned: total == required */

                for (size_t i = 0; i < s->count; i++)
                        if (!pinned[i])
                                want[i] += excess * (cap[i] - want[i]) / room;
        }

        /* Callers multiply back (ratio * required) to check a device, and
         * want / required * required can round one ulp above the limit; step
         * down until the product fits, so that check cannot fail by a hair. */
        for (size_t i = 0; i < s->count; i++) {
                double r = want[i] / required;

                while (r > 0 && r * required > cap[i])
                        r = nextafter(r, 0);
                s->ratio[i] = r;
        }
        return 0;
}


/*
 * In ten-thousandths, so the text is built from integers: no "-0" from a
 * -0.0 ratio, no exponent, nothing that depends on printf's rounding mode.
 * Dividing by the sum keeps every value within 0..1 even for a split that
 * was built by hand.
 */
static void split_format_fraction(const pd_split *s, pd_text_out *o) {
        double sum = 0;

        for (size_t i = 0; i < s->count; i++)
                sum += s->ratio[i];

        for (size_t i = 0; i < s->count; i++) {
                long v = lround(s->ratio[i] / sum * 10000);
                long frac = v % 10000;
                int digits = 4;

                pd_text_out_printf(o, "%s%ld", i > 0 ? "," : "", v / 10000);
                if (frac == 0)
                        continue;
                while (frac % 10 == 0) {
                        frac /= 10;
                        digits--;
                }
                pd_text_out_printf(o, ".%0*ld", digits, frac);
        }
}

static unsigned gcd(unsigned a, unsigned b) {
        while (b != 0) {
                unsigned t = a % b;

                a = b;
                b = t;
        }
        return a;
}

/*
 * The smallest whole numbers whose shares, rounded to whole percents, equal
 * the ratios rounded to whole percents: 0.3333/0.6667 gives "1,2" rather
 * than "33,67", 0.6/0.4 gives "3,2". Engines normalise, so only the shares
 * matter. Tries totals 1 to 100 and takes the first that fits.
 */
static bool split_integers_small(const pd_split *s, double sum, unsigned *k) {
        long pct[PD_DEVICES_MAX];

        for (size_t i = 0; i < s->count; i++)
                pct[i] = lround(s->ratio[i] / sum * 100);

        for (unsigned total = 1; total <= 100; total++) {
                unsigned got = 0;
                bool fits = true;

                for (size_t i = 0; i < s->count; i++) {
                        k[i] = (unsigned) lround(s->ratio[i] / sum * total);
                        got += k[i];
                }
                if (got == 0)
                        continue;
                for (size_t i = 0; i < s->count && fits; i++)
                        fits = lround(100.0 * k[i] / got) == pct[i];
                if (fits)
                        return true;
        }
        return false;
}

/* When no small total fits (many devices all rounding the same way), whole
 * percents by largest remainder, which always sum to 100. Ties go to the
 * earlier device, so the result is stable. */
static void split_integers_percent(const pd_split *s, double sum, unsigned *k) {
        double rest[PD_DEVICES_MAX];
        unsigned given = 0;

        for (size_t i = 0; i < s->count; i++) {
                double pct = s->ratio[i] / sum * 100;

                k[i] = (unsigned) floor(pct);
                rest[i] = pct - k[i];
                given += k[i];
        }
        for (size_t n = 0; given < 100 && n < s->count; n++, given++) {
                size_t best = 0;

                for (size_t i = 1; i < s->count; i++)
                        if (rest[i] > rest[best])
                                best = i;
                k[best]++;
                rest[best] = -1;
        }
}

static void split_integers(const pd_split *s, unsigned *k) {
        double sum = 0;
        unsigned g = 0;

        for (size_t i = 0; i < s->count; i++)
                sum += s->ratio[i];

        if (!split_integers_small(s, sum, k))
                split_integers_percent(s, sum, k);

        for (size_t i = 0; i < s->count; i++)
                g = gcd(g, k[i]);
        if (g > 1)
                for (size_t i = 0; i < s->count; i++)
                        k[i] /= g;
}

int pd_split_format(const pd_split *s, pd_split_style style, char *buf, size_t len) {
        pd_text_out o = { .buf = buf, .len = len };
        unsigned k[PD_DEVICES_MAX];

        if (!s || !split_is_sane(s))
                return -EINVAL;
        if (!buf || len == 0)
                return -ENOSPC;

        switch (style) {
        case PD_SPLIT_STYLE_FRACTION:
                split_format_fraction(s, &o);
                break;
        case PD_SPLIT_STYLE_INTEGER:
                split_integers(s, k);
                for (size_t i = 0; i < s->count; i++)
                        pd_text_out_printf(&o, "%s%u", i > 0 ? "," : "", k[i]);
                break;
        case PD_SPLIT_STYLE_MAX:
        default:
                return -EINVAL;
        }

        return pd_text_out_finish(&o);
}
