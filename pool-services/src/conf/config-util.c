/* SPDX-License-Identifier: MIT */
/*
 * The small checks every part of the configuration shares: messages,
 * strings, paths, bind addresses. The ground of the configuration's
 * files: it calls none of them.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config-private.h"

bool ps_conf_report_add(ps_conf_report *rep, const char *msg) {
        char **v, *copy;

        if (rep->oom)
                return false;
        v = realloc(rep->msgs, (rep->n + 1) * sizeof(*v));
        copy = strdup(msg);
        if (v)
                rep->msgs = v;
        if (!v || !copy) {
                free(copy);
                rep->oom = true;
                return false;
        }
        v[rep->n++] = copy;
        return true;
}

bool ps_conf_keep_going(const ps_conf_ctx *c, int r) {
        return r == PS_E_INVALID && c->report && !c->report->oom;
}

int ps_conf_fail(ps_conf_ctx *c, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (c->err && c->errlen > 0)
                snprintf(c->err, c->errlen, "%s", msg);
        if (c->report)
                (void) ps_conf_report_add(c->report, msg);
        return PS_E_INVALID;
}

/* ---- small checks ---- */

int ps_conf_str_set(char **dst, const char *s) {
        char *d = strdup(s);

        if (!d)
                return -ENOMEM;
        free(*dst);
        *dst = d;
        return 0;
}

bool ps_conf_has_space(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || *s == 0x7f)
                        return true;
        return false;
}

bool ps_conf_is_url(const char *s) {
        return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

bool ps_conf_token_ok(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

int ps_conf_check_env_name(const char *s) {
        if (!(isalpha((unsigned char) s[0]) || s[0] == '_'))
                return -1;
        for (; *s; s++)
                if (!(isalnum((unsigned char) *s) || *s == '_'))
                        return -1;
        return 0;
}

/* The result is absolute when base is (or path is); ".." at the root
 * stays at the root. */
char *ps_conf_path_resolve(const char *base, const char *path) {
        size_t blen = (path[0] == '/' || !base) ? 0 : strlen(base);
        size_t cap = blen + strlen(path) + 3;
        char *joined = malloc(cap), *out = malloc(cap);
        size_t o = 0;
        char *p, *tok;

        if (!joined || !out) {
                free(joined);
                free(out);
                return NULL;
        }
        if (blen)
                snprintf(joined, cap, "%s/%s", base, path);
        else
                snprintf(joined, cap, "%s", path);

        if (joined[0] == '/')
                out[o++] = '/';
        for (p = joined; (tok = strsep(&p, "/"));) {
                if (tok[0] == '\0' || strcmp(tok, ".") == 0)
                        continue;
                if (strcmp(tok, "..") == 0) {
                        /* drop the last component, if any */
                        size_t floor = out[0] == '/' ? 1 : 0;

                        if (o > floor) {
                                while (o > floor && out[o - 1] != '/')
                                        o--;
                                if (o > floor)
                                        o--;
                                continue;
                        }
                        if (floor == 1)
                                continue;
                }
                if (o > 0 && out[o - 1] != '/')
                        out[o++] = '/';
                memcpy(out + o, tok, strlen(tok));
                o += strlen(tok);
        }
        if (o == 0)
                out[o++] = '.';
        out[o] = '\0';
        free(joined);
        return out;
}

char *ps_conf_entry_realpath(const char *entry) {
        size_t len = strlen(entry);
        char *real = realpath(entry, NULL), *dir;

        if (!real || len < 2 || entry[len - 1] != '/' || strcmp(real, "/") == 0)
                return real;
        dir = malloc(strlen(real) + 2);
        if (dir)
                snprintf(dir, strlen(real) + 2, "%s/", real);
        free(real);
        return dir;
}

/* HOST:PORT or [V6]:PORT, port 0..65535. The daemon parses the address
 * itself; this catches typos in the file and the environment. */
bool ps_conf_bind_split(const char *s, char *host, size_t hostlen, unsigned *port) {
        const char *colon, *h = s;
        size_t hlen;
        unsigned long v = 0;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close || close[1] != ':')
                        return false;
                h = s + 1;
                hlen = (size_t) (close - h);
                colon = close + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return false;
                hlen = (size_t) (colon - s);
        }
        if (hlen == 0 || hlen >= hostlen || !colon[1] || strlen(colon + 1) > 5)
                return false;
        for (const char *d = colon + 1; *d; d++) {
                if (*d < '0' || *d > '9')
                        return false;
                v = v * 10 + (unsigned long) (*d - '0');
        }
        if (v > 65535)
                return false;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        if (ps_conf_has_space(host))
                return false;
        *port = (unsigned) v;
        return true;
}

int ps_conf_check_bind(ps_conf_ctx *c, const char *bind, const char *label) {
        char host[256];
        unsigned port;

        if (!ps_conf_bind_split(bind, host, sizeof(host), &port))
                return ps_conf_fail(c, "%s: expected HOST:PORT (e.g. 127.0.0.1:9200 or "
                                    "[::1]:9200), got \"" PS_CONF_SHOWN "\"", label, bind);
        return 0;
}
