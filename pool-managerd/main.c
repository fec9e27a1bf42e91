/* SPDX-License-Identifier: MIT */
/*
 * pool-managerd: wiring only. Options and environment in, then the event
 * loop, the logger and the API server, until SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "pm-config.h"
#include "pool-api/bind-addr.h"
#include "pool-api/server.h"
#include "pool-services/event.h"
#include "pool-services/log.h"

#define DEFAULT_BIND "127.0.0.1:9200"
#define DEFAULT_LOG_LEVEL PS_LOG_INFO

/* 1: it started but could not run; 2: the command line or environment is
 * wrong, as for most Unix tools. */
#define EXIT_USAGE 2

typedef struct options {
        const char *bind;         /* NULL: $POOL_MANAGERD_ADDR, then default */
        const char *log_level;    /* NULL: $POOL_MANAGERD_LOG_LEVEL, then info */
} options;

typedef struct manager {
        struct event_base *base;
        ps_logger *log;
        pa_server *server;
        struct event *sigterm;
        struct event *sigint;
} manager;

static void usage(FILE *f) {
        fputs("Usage: pool-managerd [OPTIONS]\n"
              "\n"
              "Keeps LLM inference engines loaded, healthy and accounted for on a GPU node.\n"
              "\n"
              "Options:\n"
              "  -b, --bind HOST:PORT    serve the API there (default " DEFAULT_BIND ",\n"
              "                          or $POOL_MANAGERD_ADDR); loopback only, e.g.\n"
              "                          127.0.0.1:9200 or [::1]:9200; port 0 picks one\n"
              "  -l, --log-level LEVEL   debug, info, warn, error or critical (default info,\n"
              "                          or $POOL_MANAGERD_LOG_LEVEL)\n"
              "  -h, --help              show this help and exit\n"
              "  -V, --version           show the version and exit\n"
              "\n"
              "Logs are JSON lines on stderr. SIGTERM or SIGINT stops the daemon.\n",
              f);
}

/* Returns -1 to go on, or the exit status to leave with at once. */
static int parse_argv(int argc, char *argv[], options *o) {
        static const struct option long_options[] = {
                { "bind", required_argument, NULL, 'b' },
                { "log-level", required_argument, NULL, 'l' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        int c;

        while ((c = getopt_long(argc, argv, "b:l:hV", long_options, NULL)) != -1)
                switch (c) {
                case 'b':
                        o->bind = optarg;
                        break;
                case 'l':
                        o->log_level = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                case 'V':
                        printf("pool-managerd %s\n", PM_VERSION);
                        return EXIT_SUCCESS;
                default:
                        /* getopt_long() has said what was wrong. */
                        usage(stderr);
                        return EXIT_USAGE;
                }

        if (optind < argc) {
                fprintf(stderr, "pool-managerd: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return EXIT_USAGE;
        }
        return -1;
}

/* A flag beats the environment, which beats the default. An empty
 * variable counts as unset, as environment files write `VAR=`. */
static const char *pick(const char *flag, const char *env_name, const char *fallback,
                        const char **ret_source) {
        const char *env = getenv(env_name);

        if (flag) {
                *ret_source = "flag";
                return flag;
        }
        if (env && *env) {
                *ret_source = env_name;
                return env;
        }
        *ret_source = "default";
        return fallback;
}

static const char *signal_name(int sig) {
        switch (sig) {
        case SIGTERM:
                return "SIGTERM";
        case SIGINT:
                return "SIGINT";
        default:
                return "unknown";
        }
}

/* Lower layers report through the sink; here events become log lines
 * (and, later, metrics). */
static void on_event(const ps_event *event, void *userdata) {
        ps_logger_log_event(userdata, event);
}

static void on_signal(evutil_socket_t sig, short what, void *userdata) {
        manager *m = userdata;

        (void) what;
        ps_log(m->log, PS_LOG_INFO, "shutting down", PS_FIELD_STR("signal", signal_name((int) sig)));
        /* Leaves the loop after the callbacks already due have run. */
        event_base_loopexit(m->base, NULL);
}

static void manager_done(manager *m) {
        m->server = pa_server_free(m->server);
        if (m->sigterm)
                event_free(m->sigterm);
        if (m->sigint)
                event_free(m->sigint);
        if (m->base)
                event_base_free(m->base);
        m->log = ps_logger_free(m->log);
}

static int run(const options *o) {
        manager m = { .base = NULL };
        char address[PA_BIND_ADDR_STRING_MAX];
        const char *bind_str, *bind_source, *level_str, *level_source;
        ps_log_level level = DEFAULT_LOG_LEVEL;
        pa_server_config config = { .clock = NULL };
        pa_error err;
        int ret = EXIT_FAILURE;

        m.log = ps_logger_new(stderr, DEFAULT_LOG_LEVEL, NULL);
        if (!m.log) {
                fputs("pool-managerd: out of memory\n", stderr);
                return EXIT_FAILURE;
        }

        level_str = pick(o->log_level, "POOL_MANAGERD_LOG_LEVEL", NULL, &level_source);
        if (level_str && ps_log_level_from_string(level_str, &level) < 0) {
                ps_log(m.log, PS_LOG_ERROR, "invalid log level: expected debug, info, warn, error or critical",
                       PS_FIELD_STR("value", level_str), PS_FIELD_STR("source", level_source));
                ret = EXIT_USAGE;
                goto out;
        }
        ps_logger_set_level(m.log, level);

        bind_str = pick(o->bind, "POOL_MANAGERD_ADDR", DEFAULT_BIND, &bind_source);
        if (pa_bind_addr_parse(bind_str, &config.bind, &err) < 0) {
                ps_log(m.log, PS_LOG_ERROR, err.msg, PS_FIELD_STR("source", bind_source));
                ret = EXIT_USAGE;
                goto out;
        }

        ps_log(m.log, PS_LOG_INFO, "starting", PS_FIELD_STR("version", PM_VERSION),
               PS_FIELD_INT("pid", getpid()));

        m.base = event_base_new();
        if (!m.base) {
                ps_log(m.log, PS_LOG_ERROR, "cannot create the event loop");
                goto out;
        }

        /* Before the socket opens: once "listening" is logged, a signal
         * must reach on_signal(), not the default action. */
        m.sigterm = evsignal_new(m.base, SIGTERM, on_signal, &m);
        m.sigint = evsignal_new(m.base, SIGINT, on_signal, &m);
        if (!m.sigterm || !m.sigint || evsignal_add(m.sigterm, NULL) < 0 ||
            evsignal_add(m.sigint, NULL) < 0) {
                ps_log(m.log, PS_LOG_ERROR, "cannot watch SIGTERM and SIGINT");
                goto out;
        }

        config.events = (ps_event_sink) { .fn = on_event, .userdata = m.log };
        m.server = pa_server_new(m.base, &config, &err);
        if (!m.server) {
                ps_log(m.log, PS_LOG_ERROR, err.msg,
                       PS_FIELD_STR("address", pa_bind_addr_to_string(&config.bind, address, sizeof(address))),
                       PS_FIELD_STR("error", strerror(-err.error)));
                goto out;
        }

        ps_log(m.log, PS_LOG_INFO, "listening",
               PS_FIELD_STR("address", pa_bind_addr_to_string(pa_server_address(m.server),
                                                              address, sizeof(address))),
               PS_FIELD_INT("port", pa_server_port(m.server)),
               PS_FIELD_STR("source", bind_source));

        if (event_base_dispatch(m.base) < 0) {
                ps_log(m.log, PS_LOG_ERROR, "event loop failed");
                goto out;
        }

        /* Connections close before "stopped" is said. */
        m.server = pa_server_free(m.server);
        ps_log(m.log, PS_LOG_INFO, "stopped");
        ret = EXIT_SUCCESS;
out:
        manager_done(&m);
        return ret;
}

int main(int argc, char *argv[]) {
        options o = { .bind = NULL };
        int r;

        r = parse_argv(argc, argv, &o);
        if (r >= 0)
                return r;

        /* A client that hangs up mid-reply must cost a write error, not the
         * daemon. */
        signal(SIGPIPE, SIG_IGN);

        r = run(&o);
        /* Frees libevent's global state, so leak checkers see a clean exit. */
        libevent_global_shutdown();
        return r;
}
