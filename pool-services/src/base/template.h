/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Argument templates: the one place an engine's argv is made from its
 * templates. "{name}" is a variable; "{{" and "}}" are literal braces, and
 * so is a lone "}". Templates are kept and rendered at each start, so a
 * reload or a surge changes variables, never strings.
 */

/* The placeholders, in the order an unknown one's message lists them. */
#define PS_TEMPLATE_PLACEHOLDERS \
        "{model_path}, {port}, {slots}, {host}, {tensor_split}, {replica_id}, {pool_id}, {model_id}"

typedef struct ps_template_vars {
        const char *where;          /* "pools[0]": a missing value names
                                       that pool's field; NULL: it does not */
        const char *model_path;     /* NULL: not set (an error when used)   */
        const char *model_id;       /* NULL: not set                       */
        const char *host;
        const char *tensor_split;   /* NULL: no split                      */
        const char *replica_id;
        const char *pool_id;
        unsigned port;
        unsigned slots;
} ps_template_vars;

/*
 * Renders one template into a new string (*ret, the caller frees it).
 * Returns 0, -ENOMEM, or PS_E_INVALID with the reason in why: an unknown
 * or unterminated placeholder, or one whose value is not set.
 */
int ps_template_render(const char *tmpl, const ps_template_vars *v, char **ret,
                       char *why, size_t whylen);

/*
 * Renders n templates into n new strings (*ret: free with ps_strv_free(),
 * NULL when n is 0). A failure names the template: "<what>[1]: unknown
 * placeholder {x} (known: ...)".
 */
int ps_template_render_all(char *const *tmpls, size_t n, const ps_template_vars *v,
                           const char *what, char ***ret, char *why, size_t whylen);

/* Whether tmpl uses the placeholder {name}. */
bool ps_template_uses(const char *tmpl, const char *name);

/* text as a template that renders to text: every brace doubled. NULL on
 * OOM. */
char *ps_template_escape(const char *text);

/*
 * A literal argv as templates that render back to it. Every argument is
 * escaped, except the value of a known flag that equals its variable in v,
 * which becomes that placeholder: "--port" (port), "-m" and "--model"
 * (model_path), "--host" (host), "--parallel" and "-np" (slots), each also
 * as "--flag=value". Nothing else is ever a variable. *ret: n new strings
 * (ps_strv_free()), NULL when n is 0. Returns 0 or -ENOMEM.
 */
int ps_template_from_argv(const char *const *argv, size_t n, const ps_template_vars *v,
                          char ***ret);
