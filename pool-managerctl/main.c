/* SPDX-License-Identifier: MIT */
/*
 * pool-managerctl COMMAND [POOL] [OPTIONS]: arguments, the command table,
 * and the exit status. docs/cli.md is the manual.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ctl.h"
#include "pm-config.h"

/* Options only some commands take. */
enum {
        OPT_NOW = 1u << 0,
        OPT_DEADLINE = 1u << 1,
        OPT_MODEL = 1u << 2,
        OPT_SURGE = 1u << 3,
        OPT_SHA256 = 1u << 4,
        OPT_ENGINE_VERSION = 1u << 5,
        OPT_REPLICA = 1u << 6,
        OPT_TAIL = 1u << 7,
        OPT_FOLLOW = 1u << 8,
};

typedef struct command {
        const char *name;
        bool takes_pool;
        unsigned options;            /* OPT_* it accepts                     */
        ctl_command_fn run;
        const char *usage;           /* its line in --help                   */
} command;

/* In --help's order. A new command (e.g. `logs POOL`) is one line here,
 * its function in commands.c, and its line in docs/cli.md and the bash
 * completion. */
static const command commands[] = {
        { "status", false, 0, ctl_cmd_status,
          "status                    every pool and replica, one line each" },
        { "show", true, 0, ctl_cmd_show,
          "show POOL                 everything about one pool" },
        { "devices", false, 0, ctl_cmd_devices,
          "devices                   the GPU inventory" },
        { "node", false, 0, ctl_cmd_node,
          "node                      the node: profile, state store, errors" },
        { "leases", true, 0, ctl_cmd_leases,
          "leases POOL               the leases held on a pool" },
        { "start", true, 0, ctl_cmd_start,
          "start POOL                start a configured pool that is stopped" },
        { "stop", true, OPT_NOW | OPT_DEADLINE, ctl_cmd_stop,
          "stop POOL [--deadline MS | --now]\n"
          "                            drain, then stop (default deadline 60000 ms)" },
        { "restart", true, 0, ctl_cmd_restart,
          "restart POOL              restart the pool's engines now" },
        { "reload", true, OPT_MODEL | OPT_SURGE | OPT_SHA256 | OPT_ENGINE_VERSION | OPT_DEADLINE,
          ctl_cmd_reload,
          "reload POOL --model PATH [--surge] [--sha256 HEX] [--engine-version V]\n"
          "       [--deadline MS]    move the pool to another model, losing no request" },
        { "breaker-reset", true, 0, ctl_cmd_breaker_reset,
          "breaker-reset POOL        close the circuit breaker; a failed pool restarts" },
        { "reload-config", false, 0, ctl_cmd_reload_config,
          "reload-config             re-read the daemon's configuration file (as SIGHUP)" },
        { "logs", true, OPT_REPLICA | OPT_TAIL | OPT_FOLLOW, ctl_cmd_logs,
          "logs POOL [--replica R] [-n N] [-f]\n"
          "                            the engine's own log: the last N lines (100), -f follows" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void help(void) {
        printf("Usage: pool-managerctl [OPTIONS] COMMAND [POOL] [COMMAND OPTIONS]\n"
               "\n"
               "Controls pool-managerd, the daemon that keeps LLM engines loaded on this node.\n"
               "\n"
               "Commands:\n");
        for (size_t i = 0; i < N_COMMANDS; i++)
                printf("  %s\n", commands[i].usage);
        printf("\n"
               "Options:\n"
               "      --socket PATH       the daemon's Unix socket (default: $POOL_MANAGERD_SOCKET,\n"
               "                          else $POOL_MANAGERD_RUNTIME_DIR/api.sock, else\n"
               "                          /run/pool-managerd/api.sock when it exists, else\n"
               "                          .runtime/api.sock)\n"
               "      --url URL           talk over TCP instead, e.g. http://127.0.0.1:9200;\n"
               "                          changes then need the daemon's token\n"
               "      --token-file FILE   the token for --url (default: $POOL_MANAGERD_TOKEN,\n"
               "                          else $LLORCH_API_TOKEN)\n"
               "      --json              print the daemon's JSON answer as it is\n"
               "      --replica R         logs: which replica (default r0)\n"
               "  -n, --tail N            logs: how many lines back (default 100)\n"
               "  -f, --follow            logs: keep printing lines as the engine writes them\n"
               "  -h, --help              show this help and exit\n"
               "  -V, --version           show the version and exit\n"
               "\n"
               "Exit status: 0 done; 1 the daemon refused (its error is printed, READ_ONLY\n"
               "included); 2 a usage error; 3 the daemon could not be reached (no socket,\n"
               "nothing listening, or no permission to open the socket).\n");
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "pool-managerctl: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'pool-managerctl --help' for more information.\n");
        return CTL_EXIT_USAGE;
}

static const command *find_command(const char *name) {
        for (size_t i = 0; i < N_COMMANDS; i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

static int parse_ms(const char *arg, int64_t *ret) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(arg, &end, 10);
        if (errno || end == arg || *end || v < 0)
                return -1;
        *ret = (int64_t) v;
        return 0;
}

typedef struct flags {
        const char *socket, *url, *token_file;
        unsigned given;              /* OPT_* seen                           */
        const char *given_name;      /* the last command option seen         */
} flags;

enum { F_SOCKET = 0x100, F_URL, F_TOKEN_FILE, F_JSON, F_NOW, F_DEADLINE, F_MODEL, F_SURGE,
       F_SHA256, F_ENGINE_VERSION, F_REPLICA };

static const struct option long_options[] = {
        { "socket", required_argument, NULL, F_SOCKET },
        { "url", required_argument, NULL, F_URL },
        { "token-file", required_argument, NULL, F_TOKEN_FILE },
        { "json", no_argument, NULL, F_JSON },
        { "now", no_argument, NULL, F_NOW },
        { "deadline", required_argument, NULL, F_DEADLINE },
        { "model", required_argument, NULL, F_MODEL },
        { "surge", no_argument, NULL, F_SURGE },
        { "sha256", required_argument, NULL, F_SHA256 },
        { "engine-version", required_argument, NULL, F_ENGINE_VERSION },
        { "replica", required_argument, NULL, F_REPLICA },
        { "tail", required_argument, NULL, 'n' },
        { "follow", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
};

/* Pool ids are [A-Za-z0-9][A-Za-z0-9._-]{0,63} (docs/api.md): another is
 * no pool, and would not fit a URL as it is. */
static bool pool_id_valid(const char *id) {
        size_t n = strlen(id);

        if (n == 0 || n > 64 || !((id[0] >= 'A' && id[0] <= 'Z') || (id[0] >= 'a' && id[0] <= 'z') ||
                                  (id[0] >= '0' && id[0] <= '9')))
                return false;
        return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* One option into o and f; -1 to go on, else the exit status. */
static int take_option(int c, const char *arg, ctl_opts *o, flags *f) {
        static const struct { int c; unsigned bit; const char *name; } cmd_opts[] = {
                { F_NOW, OPT_NOW, "--now" }, { F_DEADLINE, OPT_DEADLINE, "--deadline" },
                { F_MODEL, OPT_MODEL, "--model" }, { F_SURGE, OPT_SURGE, "--surge" },
                { F_SHA256, OPT_SHA256, "--sha256" },
                { F_ENGINE_VERSION, OPT_ENGINE_VERSION, "--engine-version" },
                { F_REPLICA, OPT_REPLICA, "--replica" }, { 'n', OPT_TAIL, "-n" },
                { 'f', OPT_FOLLOW, "-f" },
        };

        for (size_t i = 0; i < sizeof(cmd_opts) / sizeof(cmd_opts[0]); i++)
                if (cmd_opts[i].c == c) {
                        f->given |= cmd_opts[i].bit;
                        f->given_name = cmd_opts[i].name;
                }
        switch (c) {
        case F_SOCKET: f->socket = arg; break;
        case F_URL: f->url = arg; break;
        case F_TOKEN_FILE: f->token_file = arg; break;
        case F_JSON: o->json = true; break;
        case F_NOW: o->now = true; break;
        case F_SURGE: o->surge = true; break;
        case F_MODEL: o->model = arg; break;
        case F_SHA256: o->sha256 = arg; break;
        case F_ENGINE_VERSION: o->engine_version = arg; break;
        case F_REPLICA:
                if (!pool_id_valid(arg))
                        return usage_error("--replica %s: not a replica id", arg);
                o->replica = arg;
                break;
        case 'f': o->follow = true; break;
        case 'n':
                if (parse_ms(arg, &o->tail) < 0 || o->tail > 10000)
                        return usage_error("-n %s: must be a number of lines, 0 to 10000", arg);
                break;
        case F_DEADLINE:
                if (parse_ms(arg, &o->deadline_ms) < 0)
                        return usage_error("--deadline %s: must be milliseconds, 0 or more", arg);
                break;
        case 'h':
                help();
                return CTL_EXIT_OK;
        case 'V':
                printf("pool-managerctl %s\n", PM_VERSION);
                return CTL_EXIT_OK;
        default:
                /* getopt printed what it did not understand */
                fprintf(stderr, "Try 'pool-managerctl --help' for more information.\n");
                return CTL_EXIT_USAGE;
        }
        return -1;
}

/* The command's arguments and options agree; -1 to go on, else 2. */
static int check_command(const command *cmd, int n_args, char **args, const ctl_opts *o,
                         const flags *f) {
        unsigned extra = f->given & ~cmd->options;

        if (cmd->takes_pool && n_args < 1)
                return usage_error("%s: which pool? (pool-managerctl status lists them)", cmd->name);
        if (cmd->takes_pool && !pool_id_valid(args[0]))
                return usage_error("'%s' is not a pool id ([A-Za-z0-9][A-Za-z0-9._-]*, "
                                   "at most 64 characters)", args[0]);
        if (n_args > (cmd->takes_pool ? 1 : 0))
                return usage_error("unexpected argument '%s'", args[cmd->takes_pool ? 1 : 0]);
        if (extra) {
                fprintf(stderr, "pool-managerctl: %s does not take %s\n", cmd->name, f->given_name);
                fprintf(stderr, "Try 'pool-managerctl --help' for more information.\n");
                return CTL_EXIT_USAGE;
        }
        if (o->now && (f->given & OPT_DEADLINE))
                return usage_error("%s", "--now and --deadline exclude each other");
        if ((cmd->options & OPT_MODEL) && !o->model)
                return usage_error("%s: --model PATH is required", cmd->name);
        return -1;
}

static int run(int argc, char **argv) {
        ctl_opts o = { .deadline_ms = -1, .tail = 100, .replica = "r0" };
        flags f = { .socket = NULL };
        const command *cmd;
        int c, rc;

        opterr = 1;
        while ((c = getopt_long(argc, argv, "hVn:f", long_options, NULL)) != -1)
                if ((rc = take_option(c, optarg, &o, &f)) >= 0)
                        return rc;
        if (optind >= argc)
                return usage_error("%s", "no command given (status, show POOL, stop POOL, ...)");
        cmd = find_command(argv[optind]);
        if (!cmd)
                return usage_error("unknown command '%s'", argv[optind]);
        rc = check_command(cmd, argc - optind - 1, argv + optind + 1, &o, &f);
        if (rc >= 0)
                return rc;
        o.pool = cmd->takes_pool ? argv[optind + 1] : NULL;
        rc = ctl_conn_resolve(&o.conn, f.socket, f.url, f.token_file);
        if (rc == CTL_EXIT_USAGE)
                fprintf(stderr, "Try 'pool-managerctl --help' for more information.\n");
        if (rc != 0)
                return rc;
        o.color = !o.json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
        rc = cmd->run(&o);
        ctl_conn_done(&o.conn);
        return rc;
}

int main(int argc, char **argv) {
        int rc;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
                fprintf(stderr, "pool-managerctl: cannot start libcurl\n");
                return CTL_EXIT_UNREACHABLE;
        }
        rc = run(argc, argv);
        curl_global_cleanup();
        fflush(stdout);
        return rc;
}
