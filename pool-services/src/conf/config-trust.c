/* SPDX-License-Identifier: MIT */
/*
 * Trust (docs/security.md): which binaries, models, working directories,
 * engine variables and hosts an API caller may name; where the API socket
 * and the handoff directory live; the bearer token and the rest of the
 * cloud profile, resolved after flags.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errfmt.h"
#include "conf/config-private.h"
#include "pool-domain/ids.h"
#include "pool-services/base/fs.h"

/*
 * Refused from the API whatever engines.env_allow says: the dynamic
 * loader, glibc's unsafe-for-setuid set, interpreters' start-up hooks,
 * and what the daemon sets itself. Defence in depth: engine flags are the
 * caller's business anyway.
 */
static const char *const refused_env[] = {
        "LD_*", "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
        "MALLOC_*", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR",
        "TZDIR", "GLIBC_TUNABLES", "OPENSSL_CONF", "OPENSSL_MODULES", "OPENSSL_ENGINES",
        "PYTHON*", "PERL5*", "RUBY*", "NODE_OPTIONS", "BASH_ENV", "ENV", "IFS", "PATH",
        "HOME", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES",
        /* libraries the engines' own runtimes dlopen() by name */
        "GGML_BACKEND_PATH", "CUDA_INJECTION*", "NCCL_*PLUGIN*", "OMP_TOOL*",
        "TRITON_LIBCUDA_PATH", "CUDA_HOME", "CUDA_PATH",
        /* a model or a download the daemon has not checked */
        "LLAMA_ARG_MODEL*", "LLAMA_ARG_HF_*", "HF_ENDPOINT",
};

/* ---- paths an API caller names (docs/security.md) ---- */

/* One place a path may lie: as written (normalised, "dir/" for a tree)
 * and resolved. */
typedef struct allowed {
        char *lexical;
        char *real;               /* NULL: does not resolve               */
        bool children_only;       /* a "dir/" covering only its own files */
} allowed;

typedef struct allowset {
        allowed *v;
        size_t n;
} allowset;

static void allowset_clear(allowset *set) {
        for (size_t i = 0; i < set->n; i++) {
                free(set->v[i].lexical);
                free(set->v[i].real);
        }
        free(set->v);
        set->v = NULL;
        set->n = 0;
}

/* Adds an entry, taking both strings; real NULL: nothing real lies under
 * it (it did not resolve). */
static int allowset_push(allowset *set, char *lexical, char *real) {
        allowed *v = realloc(set->v, (set->n + 1) * sizeof(*v));

        if (!v) {
                free(lexical);
                free(real);
                return -ENOMEM;
        }
        set->v = v;
        v[set->n++] = (allowed) { .lexical = lexical, .real = real };
        return 0;
}

static bool allowset_has(const allowset *set, const char *lexical) {
        for (size_t i = 0; i < set->n; i++)
                if (strcmp(set->v[i].lexical, lexical) == 0)
                        return true;
        return false;
}

/* Adds an entry resolved now (lexical taken; NULL: out of memory). */
static int allowset_add(allowset *set, char *lexical) {
        char *real;

        if (!lexical)
                return -ENOMEM;
        real = ps_conf_entry_realpath(lexical);
        if (!real && errno == ENOMEM) {
                free(lexical);
                return -ENOMEM;
        }
        return allowset_push(set, lexical, real);
}

/* An allowlist of the config with the realpaths resolved at load. */
static int allowset_from_list(allowset *set, char *const *list, char *const *real, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char *lex = strdup(list[i]), *res = real[i] ? strdup(real[i]) : NULL;
                int r;

                if (!lex || (real[i] && !res)) {
                        free(lex);
                        free(res);
                        return -ENOMEM;
                }
                r = allowset_push(set, lex, res);
                if (r)
                        return r;
        }
        return 0;
}

/* "/a/b/c" -> "/a/b/" (malloc'd); NULL on OOM. */
static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');

        return strndup(path, slash ? (size_t) (slash - path) + 1 : 0);
}

/* A tree entry "dir/" covers dir itself and everything below (with
 * children_only: dir's own files, no deeper); a file entry only itself. */
static bool covered(const char *path, const char *entry, bool children_only) {
        size_t len = strlen(entry);

        if (len && entry[len - 1] == '/') {
                if (strlen(path) == len - 1 && strncmp(path, entry, len - 1) == 0)
                        return true;
                return strncmp(path, entry, len) == 0 &&
                       (!children_only || !strchr(path + len, '/'));
        }
        return strcmp(path, entry) == 0;
}

/*
 * The check shared by binaries, models and working directories: lexical
 * first, so a path outside gets the same answer whether it exists or not
 * and nothing touches it; then the realpath against the entries' realpaths.
 */
static int path_check(ps_conf_ctx *c, const char *what, const char *list_name, int forbidden,
                      const allowset *set, const char *path, char **resolved) {
        char *norm, *real;
        bool inside = false;

        if (path[0] != '/')
                return ps_conf_fail(c, "%s: must be an absolute path, got \"" PS_CONF_SHOWN "\"",
                                    what, path);
        norm = ps_conf_path_resolve(NULL, path);
        if (!norm)
                return -ENOMEM;
        inside = strcmp(norm, path) == 0;
        free(norm);
        if (!inside)
                return ps_conf_fail(c, "%s: " PS_CONF_SHOWN " has \".\", \"..\" or empty "
                                    "components", what, path);
        inside = false;
        for (size_t i = 0; !inside && i < set->n; i++)
                inside = covered(path, set->v[i].lexical, set->v[i].children_only);
        if (!inside) {
                ps_conf_fail(c, "%s: " PS_CONF_SHOWN " is not in %s", what, path, list_name);
                return forbidden;
        }
        real = realpath(path, NULL);
        if (!real) {
                int e = errno;

                if (e == ENOMEM)
                        return -ENOMEM;
                ps_conf_fail(c, "%s: " PS_CONF_SHOWN ": %s", what, path, strerror(e));
                return e == ENOENT || e == ENOTDIR ? PS_E_NOT_FOUND : PS_E_INVALID;
        }
        inside = false;
        for (size_t i = 0; !inside && i < set->n; i++)
                inside = set->v[i].real &&
                         covered(real, set->v[i].real, set->v[i].children_only);
        if (!inside) {
                ps_conf_fail(c, "%s: " PS_CONF_SHOWN " resolves to " PS_CONF_SHOWN ", which is not "
                             "in %s", what, path, real, list_name);
                free(real);
                return forbidden;
        }
        if (resolved)
                *resolved = real;
        else
                free(real);
        return 0;
}

int ps_config_binary_allowed(const ps_config *config, const char *path, char **resolved,
                             char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        allowset set = { 0 };
        const char *list = "engines.allow";
        int r = 0;

        if (!config || !path)
                return -EINVAL;
        if (config->n_engines_allow == 0) {
                /* Every entry is a file, and a path that names one
                 * resolves as that entry does: only the entry it names
                 * is resolved, not every pool's (a thousand realpaths for
                 * each request at a thousand pools). */
                list = "engines.allow (empty: only the binaries of configured pools)";
                for (size_t i = 0; i < config->n_pools; i++)
                        if (config->pools[i].binary && strcmp(config->pools[i].binary, path) == 0) {
                                r = allowset_add(&set, strdup(path));
                                break;
                        }
        } else
                r = allowset_from_list(&set, config->engines_allow, config->engines_allow_real,
                                       config->n_engines_allow);
        if (!r)
                r = path_check(&c, "binary_path", list, PS_E_FORBIDDEN, &set, path, resolved);
        allowset_clear(&set);
        return r;
}

/* models.allow, or the directories of configured pools' models. */
static int model_set(const ps_config *config, allowset *set, const char **list) {
        int r = 0;

        if (config->n_models_allow > 0) {
                *list = "models.allow";
                return allowset_from_list(set, config->models_allow, config->models_allow_real,
                                          config->n_models_allow);
        }
        *list = "models.allow (empty: only the files beside configured pools' models)";
        for (size_t i = 0; !r && i < config->n_pools; i++) {
                char *dir;

                if (!config->pools[i].model_path)
                        continue;
                dir = dir_of(config->pools[i].model_path);
                if (!dir)
                        return -ENOMEM;
                /* a model at the root would otherwise allow every file;
                 * pools sharing a directory resolve it once */
                if (strcmp(dir, "/") == 0 || allowset_has(set, dir)) {
                        free(dir);
                        continue;
                }
                r = allowset_add(set, dir);
                if (!r)
                        set->v[set->n - 1].children_only = true;
        }
        return r;
}

int ps_config_model_allowed(const ps_config *config, const char *path, char **resolved,
                            char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        allowset set = { 0 };
        const char *list;
        int r;

        if (!config || !path)
                return -EINVAL;
        r = model_set(config, &set, &list);
        if (!r)
                r = path_check(&c, "model_path", list, PS_E_MODEL_FORBIDDEN, &set, path, resolved);
        allowset_clear(&set);
        return r;
}

int ps_config_workdir_allowed(const ps_config *config, const char *path, char **resolved,
                              char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        allowset set = { 0 };
        const char *list;
        char *run = NULL, *run_dir = NULL, cwd[PATH_MAX];
        int r;

        if (!config || !path)
                return -EINVAL;
        r = model_set(config, &set, &list);
        /* the runtime directory, made absolute without touching it */
        if (!r && config->runtime_dir[0] != '/' && !getcwd(cwd, sizeof(cwd)))
                r = ps_conf_fail(&c, "workdir: the daemon's working directory: %s",
                                 strerror(errno));
        if (!r) {
                run = ps_conf_path_resolve(config->runtime_dir[0] == '/' ? NULL : cwd,
                                           config->runtime_dir);
                if (run && asprintf(&run_dir, "%s/", strcmp(run, "/") ? run : "") < 0)
                        run_dir = NULL;
                r = allowset_add(&set, run_dir);
        }
        free(run);
        if (!r)
                r = path_check(&c, "workdir", "the runtime directory or models.allow",
                               PS_E_MODEL_FORBIDDEN, &set, path, resolved);
        allowset_clear(&set);
        return r;
}

/* ---- environment ---- */

static bool name_matches(const char *const *patterns, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (fnmatch(patterns[i], name, 0) == 0)
                        return true;
        return false;
}

bool ps_env_name_reserved(const char *name) {
        return name && (strcmp(name, "CUDA_VISIBLE_DEVICES") == 0 ||
                        strcmp(name, "CUDA_DEVICE_ORDER") == 0);
}

int ps_config_api_env_allowed(const ps_config *config, const char *name,
                              char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };

        if (!config || !name)
                return -EINVAL;
        if (ps_conf_check_env_name(name) != 0)
                return ps_conf_fail(&c, "env: \"" PS_CONF_SHOWN "\" is not a variable name", name);
        if (ps_env_name_reserved(name))
                return ps_conf_fail(&c, "env.%s: is set by the daemon (from device_mask)", name);
        if (name_matches(refused_env, sizeof(refused_env) / sizeof(refused_env[0]), name))
                return ps_conf_fail(&c, "env.%s: may not be set through the API (it can change "
                                    "what the engine loads or runs)", name);
        if (!name_matches((const char *const *) config->engines_env_allow,
                          config->n_engines_env_allow, name))
                return ps_conf_fail(&c, "env.%s: is not allowed by engines.env_allow", name);
        return 0;
}

/* ---- hosts ---- */

typedef union ip_addr {
        struct in_addr v4;
        struct in6_addr v6;
} ip_addr;

static bool is_local_address(int family, const ip_addr *a) {
        struct ifaddrs *list, *i;
        bool found = false;

        if (getifaddrs(&list) < 0)
                return false;
        for (i = list; i && !found; i = i->ifa_next) {
                if (!i->ifa_addr || i->ifa_addr->sa_family != family)
                        continue;
                if (family == AF_INET)
                        found = ((const struct sockaddr_in *) (const void *) i->ifa_addr)
                                        ->sin_addr.s_addr == a->v4.s_addr;
                else
                        found = memcmp(&((const struct sockaddr_in6 *) (const void *) i->ifa_addr)
                                                ->sin6_addr,
                                       &a->v6, sizeof(a->v6)) == 0;
        }
        freeifaddrs(list);
        return found;
}

int ps_host_check(const char *host, bool allow_remote, char *out, size_t outlen,
                  char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        char text[INET6_ADDRSTRLEN];
        ip_addr a;
        int family;
        bool loopback;

        if (!host || !out)
                return -EINVAL;
        if (strcmp(host, "localhost") == 0)
                host = "127.0.0.1";
        if (inet_pton(AF_INET, host, &a.v4) == 1)
                family = AF_INET;
        else if (inet_pton(AF_INET6, host, &a.v6) == 1)
                family = AF_INET6;
        else
                return ps_conf_fail(&c, "must be an IP address of this node (or \"localhost\"), "
                            "not a host name or URL, got \"" PS_CONF_SHOWN "\"", host);
        if (!inet_ntop(family, &a, text, sizeof(text)))
                return ps_conf_fail(&c, "cannot format \"" PS_CONF_SHOWN "\"", host);
        if (family == AF_INET ? a.v4.s_addr == htonl(INADDR_ANY)
                              : IN6_IS_ADDR_UNSPECIFIED(&a.v6))
                return ps_conf_fail(&c, "%s is not an address an engine can be reached at; "
                            "use 127.0.0.1 or one of the node's addresses", text);
        loopback = family == AF_INET ? (ntohl(a.v4.s_addr) >> 24) == 127
                                     : IN6_IS_ADDR_LOOPBACK(&a.v6);
        if (!loopback && !allow_remote)
                return ps_conf_fail(&c, "%s is not a loopback address "
                                    "(engines.allow_remote_hosts is off)", text);
        if (!loopback && !is_local_address(family, &a))
                return ps_conf_fail(&c, "%s is not an address of this node", text);
        if (strlen(text) >= outlen)
                return ps_conf_fail(&c, "%s does not fit", text);
        memcpy(out, text, strlen(text) + 1);
        return 0;
}

/* ---- where things live ---- */

int ps_config_api_socket(const ps_config *config, ps_getenv_fn getenv_fn, void *userdata,
                         char *buf, size_t len, char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        const char *dir = NULL;
        size_t dir_len;
        int n;

        if (!config || !buf || !len)
                return -EINVAL;
        buf[0] = '\0';
        if (config->api_socket) {
                if (!config->api_socket[0])
                        return 0;
                n = snprintf(buf, len, "%s", config->api_socket);
        } else {
                /* systemd's RuntimeDirectory=, unless a flag named the runtime dir */
                if (strcmp(config->runtime_dir_source, "flag") != 0)
                        dir = getenv_fn ? getenv_fn("RUNTIME_DIRECTORY", userdata)
                                        : getenv("RUNTIME_DIRECTORY");
                if (!dir || !dir[0])
                        dir = config->runtime_dir;
                dir_len = strcspn(dir, ":");
                n = snprintf(buf, len, "%.*s/api.sock", (int) dir_len, dir);
        }
        if (n < 0 || (size_t) n >= len || n > PS_CONF_SOCKET_PATH_MAX) {
                buf[0] = '\0';
                return ps_conf_fail(&c, "api.socket: the socket path is longer than %d bytes, "
                                    "the most a Unix socket path may have; set api.socket to a "
                                    "shorter path, or \"\" to listen on TCP only",
                                    PS_CONF_SOCKET_PATH_MAX);
        }
        return 0;
}

int ps_config_handoff_dir(const ps_config *config, char *buf, size_t len) {
        int n;

        if (!config || !buf || !len)
                return -EINVAL;
        if (config->handoff_dir)
                n = snprintf(buf, len, "%s", config->handoff_dir);
        else
                n = snprintf(buf, len, "%s/engines", config->runtime_dir);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

/* ---- the cloud profile, resolved ---- */

#define TOKEN_FILE_MAX 4096

/*
 * Whoever may read the token may change the node, and whoever may write
 * it chooses it: the file must be a regular file of root or of the
 * daemon's user, that others can neither read nor write and its group
 * cannot write (0600, or 0640 for a root-owned file the daemon reads
 * through its group). Checked on the descriptor read.
 */
static int token_file_guarded(ps_conf_ctx *c, const char *key, const char *path, int fd) {
        struct stat st;

        if (fstat(fd, &st) != 0)
                return ps_conf_fail(c, "%s: cannot stat %s: %s", key, path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return ps_conf_fail(c, "%s: %s is not a regular file", key, path);
        if (st.st_uid != 0 && st.st_uid != geteuid())
                return ps_conf_fail(c, "%s: %s belongs to uid %u, neither root nor the daemon's "
                                    "user (uid %u): chown %u %s", key, path, (unsigned) st.st_uid,
                                    (unsigned) geteuid(), (unsigned) geteuid(), path);
        if (st.st_mode & 0027)
                return ps_conf_fail(c, "%s: %s is open to %s (mode %04o): chmod 600 %s", key, path,
                                    st.st_mode & 0007 ? "others" : "its group's writes",
                                    (unsigned) (st.st_mode & 07777), path);
        return 0;
}

/* The token file's first line, without its line end; key names the
 * setting in messages ("api.token_file"). */
static int read_token_file(ps_conf_ctx *c, const char *key, const char *path, char **ret) {
        char buf[TOKEN_FILE_MAX + 2];
        size_t n;
        FILE *f = fopen(path, "re");
        int r = 0;

        if (!f)
                return ps_conf_fail(c, "%s: cannot read %s: %s", key, path, strerror(errno));
        if ((r = token_file_guarded(c, key, path, fileno(f))) != 0) {
                fclose(f);
                return r;
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        if (ferror(f))
                r = ps_conf_fail(c, "%s: cannot read %s: %s", key, path, strerror(errno));
        fclose(f);
        if (r)
                return r;
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        if (strlen(buf) > TOKEN_FILE_MAX)
                r = ps_conf_fail(c, "%s: %s: the token is longer than %d bytes", key, path,
                                 TOKEN_FILE_MAX);
        else if (!buf[0])
                r = ps_conf_fail(c, "%s: %s is empty", key, path);
        else if (!ps_conf_token_ok(buf))
                r = ps_conf_fail(c, "%s: %s: the token must be printable ASCII without spaces",
                                 key, path);
        if (!r && !(*ret = strdup(buf)))
                r = -ENOMEM;
        explicit_bzero(buf, sizeof(buf));
        return r;
}

int ps_config_resolve_token(ps_config *config, char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        ps_cloud_config *cl;

        if (!config)
                return -EINVAL;
        cl = &config->cloud;
        if (cl->api_token)              /* LLORCH_API_TOKEN wins */
                return 0;
        if (config->api_token_file)
                return read_token_file(&c, "api.token_file", config->api_token_file,
                                       &cl->api_token);
        if (cl->token_file[0])
                return read_token_file(&c, "cloud.token_file", cl->token_file, &cl->api_token);
        return 0;
}

int ps_config_resolve_cloud(ps_config *config, const char *hostname, char *err, size_t errlen) {
        ps_conf_ctx c = { .err = err, .errlen = errlen };
        ps_cloud_config *cl;
        char host[256];
        bool no_address, no_url;
        pd_error perr;
        int r;

        if (!config)
                return -EINVAL;
        cl = &config->cloud;
        if (config->profile != PS_PROFILE_CLOUD)
                return 0;
        no_address = !cl->address[0];
        no_url = !cl->orchestrator_url[0];
        if (no_address && no_url)
                return ps_conf_fail(&c, "cloud profile: the node address (cloud.address or "
                                "POOL_MANAGERD_ADDRESS) and the control-plane URL "
                                "(cloud.orchestrator_url or ORCHESTRATORD_URL) are missing");
        if (no_address)
                return ps_conf_fail(&c, "cloud profile: the node address (cloud.address or "
                                "POOL_MANAGERD_ADDRESS) is missing");
        if (no_url)
                return ps_conf_fail(&c, "cloud profile: the control-plane URL "
                                    "(cloud.orchestrator_url or ORCHESTRATORD_URL) is missing");
        if (!cl->node_id[0]) {
                if (!hostname) {
                        if (gethostname(host, sizeof(host)) < 0)
                                return ps_conf_fail(&c, "cloud profile: no node id (cloud.node_id "
                                                    "or POOL_MANAGERD_NODE_ID) and no host name: "
                                                    "%s", strerror(errno));
                        host[sizeof(host) - 1] = '\0';
                        hostname = host;
                }
                if (pd_id_validate(hostname, "node id", &perr) != 0)
                        return ps_conf_fail(&c, "cloud profile: the host name \"" PS_CONF_SHOWN
                                            "\" is not a valid node id (%s); set cloud.node_id or "
                                            "POOL_MANAGERD_NODE_ID", hostname, perr.msg);
                r = ps_conf_str_set(&cl->node_id, hostname);
                if (r)
                        return r;
        }
        if (!cl->machine_id[0] && (r = ps_conf_str_set(&cl->machine_id, cl->node_id)))
                return r;
        return ps_config_resolve_token(config, err, errlen);
}

int ps_runtime_dirs_check(const ps_config *config, char *err, size_t errlen) {
        char dir[PATH_MAX], derr[PATH_MAX + 256];
        int r;

        if (!config || !config->runtime_dir)
                return -EINVAL;
        r = ps_private_dir(config->runtime_dir, true, derr, sizeof(derr));
        if (r < 0)
                return ps_errf(err, errlen, r, "runtime %s", derr);
        r = ps_config_handoff_dir(config, dir, sizeof(dir));
        if (r < 0)
                return ps_errf(err, errlen, r, "handoff directory: %s", strerror(-r));
        r = ps_private_dir(dir, true, derr, sizeof(derr));
        if (r < 0)
                return ps_errf(err, errlen, r, "handoff %s", derr);
        return 0;
}
