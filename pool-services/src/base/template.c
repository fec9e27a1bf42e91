/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/strv.h"
#include "base/template.h"
#include "pool-services/base/errors.h"

/* What a message shows of a template. */
#define SHOWN "%.80s"
/* What an unknown placeholder's message shows of its name. */
#define NAME_SHOWN 40

enum {
        VAR_MODEL_PATH,
        VAR_PORT,
        VAR_SLOTS,
        VAR_HOST,
        VAR_TENSOR_SPLIT,
        VAR_REPLICA_ID,
        VAR_POOL_ID,
        VAR_MODEL_ID,
        VAR_MAX,
};

/* field: the pool's configuration key that sets the value. */
static const struct {
        const char *name;
        const char *field;
} vars[VAR_MAX] = {
        [VAR_MODEL_PATH] = { "model_path", "model_path" },
        [VAR_PORT] = { "port", "port" },
        [VAR_SLOTS] = { "slots", "slots" },
        [VAR_HOST] = { "host", "host" },
        [VAR_TENSOR_SPLIT] = { "tensor_split", "split" },
        [VAR_REPLICA_ID] = { "replica_id", "replicas" },
        [VAR_POOL_ID] = { "pool_id", "id" },
        [VAR_MODEL_ID] = { "model_id", "model_path" },
};

static int var_find(const char *name, size_t n) {
        for (int i = 0; i < VAR_MAX; i++)
                if (strlen(vars[i].name) == n && strncmp(vars[i].name, name, n) == 0)
                        return i;
        return -1;
}

/* The value of variable i; numbers are written into num. NULL: not set. */
static const char *var_value(const ps_template_vars *v, int i, char *num, size_t numlen) {
        switch (i) {
        case VAR_MODEL_PATH:   return v->model_path;
        case VAR_MODEL_ID:     return v->model_id;
        case VAR_HOST:         return v->host;
        case VAR_TENSOR_SPLIT: return v->tensor_split;
        case VAR_REPLICA_ID:   return v->replica_id;
        case VAR_POOL_ID:      return v->pool_id;
        case VAR_PORT:
                snprintf(num, numlen, "%u", v->port);
                return num;
        case VAR_SLOTS:
                snprintf(num, numlen, "%u", v->slots);
                return num;
        }
        return NULL;
}

typedef enum token {
        TOKEN_END,
        TOKEN_TEXT,           /* literal text                 */
        TOKEN_VAR,            /* a placeholder's name         */
        TOKEN_UNTERMINATED,   /* "{" without a closing "}"    */
} token;

/* The next piece of the template at *p: its text in *s, *n bytes. */
static token next_token(const char **p, const char **s, size_t *n) {
        const char *at = *p, *end;

        if (!*at)
                return TOKEN_END;
        if ((at[0] == '{' && at[1] == '{') || (at[0] == '}' && at[1] == '}')) {
                *s = at;
                *n = 1;
                *p = at + 2;
                return TOKEN_TEXT;
        }
        if (at[0] == '{') {
                end = strchr(at + 1, '}');
                if (!end)
                        return TOKEN_UNTERMINATED;
                *s = at + 1;
                *n = (size_t) (end - at - 1);
                *p = end + 1;
                return TOKEN_VAR;
        }
        *s = at;
        *n = strcspn(at, "{}");
        if (*n == 0)
                *n = 1;         /* a lone '}' is literal */
        *p = at + *n;
        return TOKEN_TEXT;
}

int ps_template_render(const char *tmpl, const ps_template_vars *v, char **ret,
                       char *why, size_t whylen) {
        ps_strbuf b = { 0 };
        const char *p = tmpl, *s;
        token t;
        size_t n;

        ps_strbuf_add(&b, "", 0);
        while ((t = next_token(&p, &s, &n)) != TOKEN_END) {
                char num[16];
                const char *value;
                int i;

                if (t == TOKEN_TEXT) {
                        ps_strbuf_add(&b, s, n);
                        continue;
                }
                if (t == TOKEN_UNTERMINATED) {
                        free(b.s);
                        snprintf(why, whylen, "unterminated placeholder in \"" SHOWN "\" "
                                 "(write {{ for a literal brace)", tmpl);
                        return PS_E_INVALID;
                }
                i = var_find(s, n);
                if (i < 0) {
                        free(b.s);
                        snprintf(why, whylen, "unknown placeholder {%.*s} (known: "
                                 PS_TEMPLATE_PLACEHOLDERS ")",
                                 n > NAME_SHOWN ? NAME_SHOWN : (int) n, s);
                        return PS_E_INVALID;
                }
                value = var_value(v, i, num, sizeof(num));
                if (!value) {
                        free(b.s);
                        if (v->where)
                                snprintf(why, whylen, "{%s} is used but %s.%s is not set",
                                         vars[i].name, v->where, vars[i].field);
                        else
                                snprintf(why, whylen, "{%s} is used but has no value", vars[i].name);
                        return PS_E_INVALID;
                }
                ps_strbuf_str(&b, value);
        }
        if (b.oom) {
                free(b.s);
                return -ENOMEM;
        }
        *ret = b.s;
        return 0;
}

int ps_template_render_all(char *const *tmpls, size_t n, const ps_template_vars *v,
                           const char *what, char ***ret, char *why, size_t whylen) {
        char **out = NULL, reason[512];

        if (n > 0) {
                out = calloc(n, sizeof(*out));
                if (!out)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                int r = ps_template_render(tmpls[i], v, &out[i], reason, sizeof(reason));

                if (r != 0) {
                        ps_strv_free(out, i);
                        if (r > 0)
                                snprintf(why, whylen, "%s[%zu]: %s", what, i, reason);
                        return r;
                }
        }
        *ret = out;
        return 0;
}

bool ps_template_uses(const char *tmpl, const char *name) {
        const char *p = tmpl, *s;
        token t;
        size_t n;

        while ((t = next_token(&p, &s, &n)) != TOKEN_END && t != TOKEN_UNTERMINATED)
                if (t == TOKEN_VAR && n == strlen(name) && strncmp(s, name, n) == 0)
                        return true;
        return false;
}

char *ps_template_escape(const char *text) {
        ps_strbuf b = { 0 };

        ps_strbuf_add(&b, "", 0);
        for (const char *p = text; *p; p++) {
                if (*p == '{' || *p == '}')
                        ps_strbuf_add(&b, p, 1);
                ps_strbuf_add(&b, p, 1);
        }
        if (b.oom) {
                free(b.s);
                return NULL;
        }
        return b.s;
}

/* The flags whose value may be a variable, and which. */
static const struct {
        const char *flag;
        int var;
} known_flags[] = {
        { "--port", VAR_PORT },
        { "-m", VAR_MODEL_PATH },
        { "--model", VAR_MODEL_PATH },
        { "--host", VAR_HOST },
        { "--parallel", VAR_SLOTS },
        { "-np", VAR_SLOTS },
};

/* "{name}", or with a "--flag=" before it. NULL on OOM. */
static char *placeholder(const char *flag_eq, int var) {
        char *s;

        if (asprintf(&s, "%s{%s}", flag_eq ? flag_eq : "", vars[var].name) < 0)
                return NULL;
        return s;
}

/*
 * argv[i] as a template: a variable when it is the value of a known flag
 * (argv[i - 1], or "--flag=" inside argv[i]) equal to that variable,
 * escaped otherwise.
 */
static char *arg_template(const char *const *argv, size_t i, const ps_template_vars *v) {
        for (size_t k = 0; k < sizeof(known_flags) / sizeof(known_flags[0]); k++) {
                const char *flag = known_flags[k].flag, *value;
                size_t flen = strlen(flag);
                char num[16];

                value = var_value(v, known_flags[k].var, num, sizeof(num));
                if (!value)
                        continue;
                if (i > 0 && strcmp(argv[i - 1], flag) == 0 && strcmp(argv[i], value) == 0)
                        return placeholder(NULL, known_flags[k].var);
                if (flag[1] == '-' && strncmp(argv[i], flag, flen) == 0 && argv[i][flen] == '=' &&
                    strcmp(argv[i] + flen + 1, value) == 0) {
                        char flag_eq[32];

                        snprintf(flag_eq, sizeof(flag_eq), "%s=", flag);
                        return placeholder(flag_eq, known_flags[k].var);
                }
        }
        return ps_template_escape(argv[i]);
}

int ps_template_from_argv(const char *const *argv, size_t n, const ps_template_vars *v,
                          char ***ret) {
        char **out = NULL;

        if (n > 0) {
                out = calloc(n, sizeof(*out));
                if (!out)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                out[i] = arg_template(argv, i, v);
                if (!out[i]) {
                        ps_strv_free(out, i);
                        return -ENOMEM;
                }
        }
        *ret = out;
        return 0;
}
