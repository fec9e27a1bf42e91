/* SPDX-License-Identifier: MIT */
/*
 * pool-managerd: wiring only. Options and environment in, then the event
 * loop, the logger and the API server, until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <glob.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "check.h"
#include "cloud.h"
#include "pool-services/observe/engine-metrics.h"
#include "pm-config.h"
#include "pool-api/bind-addr.h"
#include "pool-api/server.h"
#include "pool-services/conf/config.h"
#include "pool-services/base/errors.h"
#include "pool-services/conf/config-diff.h"
#include "pool-services/pool/config-apply.h"
#include "pool-services/pool/preload-queue.h"
#include "pool-services/base/clock.h"
#include "pool-services/pool/reconcile.h"
#include "pool-services/base/event.h"
#include "pool-services/base/fs.h"
#include "pool-services/observe/gpu-monitor.h"
#include "pool-services/placement/inventory.h"
#include "pool-services/base/libevent-log.h"
#include "pool-services/base/log.h"
#include "pool-services/observe/metrics.h"
#include "pool-services/conf/preflight-hook.h"
#include "pool-services/supervise/probe.h"
#include "pool-services/pool/registry.h"
#include "notify.h"
#include "register.h"
#include "state.h"

#define DEFAULT_LOG_LEVEL PS_LOG_INFO

/* 1: it started but could not run; 2: the command line, environment or
 * configuration is wrong, as for most Unix tools. */
#define EXIT_USAGE 2

typedef struct options {
        const char *config;       /* --config FILE                          */
        const char *check_config; /* --check-config FILE: validate and exit */
        const char *bind;         /* beats $POOL_MANAGERD_ADDR and the file  */
        const char *runtime_dir;  /* beats the file, the environment and
                                     $STATE_DIRECTORY                        */
        const char *log_level;    /* NULL: $POOL_MANAGERD_LOG_LEVEL, then info */
        const char *log_format;   /* NULL: text on a terminal or the journal,
                                     else JSON                              */
        bool keep_engines;        /* exit leaving engines running            */
        bool reset_state;         /* a corrupt state store moved aside       */
        bool no_state_store;      /* leases, drains, policy in memory only   */
} options;

typedef struct manager {
        struct event_base *base;
        ps_logger *log;
        ps_config *config;
        ps_metrics *metrics;
        ps_engine_metrics *engine_metrics;
        uint64_t events_seen;     /* supervision events, for the API's cache */
        ps_prober *prober;
        ps_context ctx;
        ps_registry *registry;
        pm_register *registering;      /* configured replicas, a batch per turn */
        bool starting;                 /* until they are: only /health answers */
        int start_failed;              /* the exit status of a start that failed */
        ps_preload_queue *preloads;    /* configured pools, a batch per turn */
        ps_reconcile *reconcile;       /* the recorded engines, kept recording */
        ps_preflight_source preflight;
        ps_gpu_monitor *gpu_monitor;
        pa_server *server;
        pm_cloud *cloud;
        struct event *sigterm;
        struct event *sigint;
        struct event *sighup;
        const char *config_path;  /* re-read on SIGHUP                       */
        ps_config **retired;      /* earlier configurations: still borrowed  */
        size_t n_retired;
        bool stopping;
        unsigned preloads_pending;
        bool preloads_started;    /* every configured preload was asked for */
        int lock_fd;              /* <runtime_dir>/lock, held for life       */
        pm_state state;
        pm_notify *notify;        /* the service manager's $NOTIFY_SOCKET   */
        char socket_path[256];    /* the API socket; "" for none            */
        char handoff_dir[PATH_MAX];
} manager;

static void usage(FILE *f) {
        fputs("Usage: pool-managerd [OPTIONS]\n"
              "\n"
              "Keeps LLM inference engines loaded, healthy and accounted for on a GPU node.\n"
              "\n"
              "Options:\n"
              "  -c, --config FILE         pools, policies and GPUs (JSON; docs/configuration.md);\n"
              "                            without it: an empty node\n"
              "      --check-config FILE   check FILE (with the environment) as a start would\n"
              "                            (binaries, models, GPUs, VRAM, bind) and exit:\n"
              "                            0 when there is no error, 2 with every error found\n"
              "  -b, --bind HOST:PORT      serve the API there (default 127.0.0.1:9200;\n"
              "                            beats $POOL_MANAGERD_ADDR and the file); loopback\n"
              "                            only, e.g. 127.0.0.1:9200 or [::1]:9200; port 0 picks one\n"
              "  -r, --runtime-dir DIR     PID files, engine logs, handoff files and the API\n"
              "                            socket (DIR/api.sock) live there (default .runtime;\n"
              "                            beats the file, $POOL_MANAGERD_RUNTIME_DIR and\n"
              "                            $STATE_DIRECTORY)\n"
              "  -k, --keep-engines        on SIGTERM/SIGINT exit leaving engines running, for\n"
              "                            a later daemon to adopt\n"
              "      --reset-state         move a corrupt state store (DIR/state.db) aside as\n"
              "                            state.db.corrupt-TIME and start with an empty state\n"
              "      --no-state-store      keep leases, drains, restart policy state and the\n"
              "                            engines' record in memory only: nothing of it\n"
              "                            survives a restart (benchmarks, throwaway nodes)\n"
              "  -l, --log-level LEVEL     debug, info, warn, error or critical (default info,\n"
              "                            or $POOL_MANAGERD_LOG_LEVEL)\n"
              "      --log-format FORMAT   text or json (default: text when stderr is a\n"
              "                            terminal or the systemd journal, json otherwise)\n"
              "  -h, --help                show this help and exit\n"
              "  -V, --version             show the version and exit\n"
              "\n"
              "Changes go through the Unix socket (curl --unix-socket DIR/api.sock\n"
              "http://localhost/...), or over TCP with the bearer token (LLORCH_API_TOKEN or\n"
              "api.token_file); without a token the TCP API is read-only.\n"
              "\n"
              "Logs go to stderr, one line per event. SIGTERM or SIGINT stops the engines and the\n"
              "daemon; a second one exits at once. SIGHUP re-reads the configuration file.\n",
              f);
}

/* Returns -1 to go on, or the exit status to leave with at once. */
static int parse_argv(int argc, char *argv[], options *o) {
        enum { OPT_CHECK_CONFIG = 0x100, OPT_RESET_STATE, OPT_NO_STATE_STORE, OPT_LOG_FORMAT };
        static const struct option long_options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", required_argument, NULL, OPT_CHECK_CONFIG },
                { "bind", required_argument, NULL, 'b' },
                { "runtime-dir", required_argument, NULL, 'r' },
                { "keep-engines", no_argument, NULL, 'k' },
                { "reset-state", no_argument, NULL, OPT_RESET_STATE },
                { "no-state-store", no_argument, NULL, OPT_NO_STATE_STORE },
                { "log-level", required_argument, NULL, 'l' },
                { "log-format", required_argument, NULL, OPT_LOG_FORMAT },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:b:r:kl:hV", long_options, NULL)) != -1)
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case OPT_CHECK_CONFIG:
                        o->check_config = optarg;
                        break;
                case 'b':
                        o->bind = optarg;
                        break;
                case 'r':
                        o->runtime_dir = optarg;
                        break;
                case 'k':
                        o->keep_engines = true;
                        break;
                case OPT_RESET_STATE:
                        o->reset_state = true;
                        break;
                case OPT_NO_STATE_STORE:
                        o->no_state_store = true;
                        break;
                case 'l':
                        o->log_level = optarg;
                        break;
                case OPT_LOG_FORMAT:
                        if (ps_log_format_from_string(optarg, NULL) < 0) {
                                fprintf(stderr, "pool-managerd: invalid log format '%s': "
                                        "expected text or json\n", optarg);
                                return EXIT_USAGE;
                        }
                        o->log_format = optarg;
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

/* Lower layers report through the sink; here events become log lines and
 * metrics. */
static void on_event(const ps_event *event, void *userdata) {
        manager *m = userdata;

        if (event->type != PS_EVENT_HTTP_REQUEST)
                m->events_seen++;
        ps_metrics_observe(m->metrics, event);
        ps_logger_log_event(m->log, event);
        pm_cloud_on_event(m->cloud, event);
        pm_state_on_event(&m->state, m->registry, event);
        if (event->type != PS_EVENT_HTTP_REQUEST)
                pm_notify_update(m->notify, m->registry);
}

static void on_all_stopped(int rc, const char *message, void *userdata) {
        manager *m = userdata;

        (void) rc;
        ps_log(m->log, PS_LOG_INFO, message);
        event_base_loopexit(m->base, NULL);
}

/* Deregistered and the etcd lease revoked: now the engines. */
/*
 * The loop. With epoll, changes to a descriptor's events within one turn
 * are batched into one epoll_ctl call (evhttp re-arms a connection's read
 * and write events on every request: without it that is a syscall each).
 *
 * Three priorities: 0 for what must run first (the state store's fallback
 * commit timer), 1 for everything else (the default), 2 for the state
 * store's commit, which libevent runs only once no more important callback
 * is active: the end of the turn (docs/architecture.md). After 10 ms of
 * callbacks of priority 1 or lower the loop polls again.
 */
#define LOOP_PRIORITIES 3

static struct event_base *new_event_base(void) {
        struct event_config *cfg = event_config_new();
        struct timeval max_dispatch = { .tv_sec = 0, .tv_usec = 10000 };
        struct event_base *base;

        if (!cfg)
                return NULL;
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        event_config_set_max_dispatch_interval(cfg, &max_dispatch, -1, 1);
        base = event_base_new_with_config(cfg);
        event_config_free(cfg);
        if (base && event_base_priority_init(base, LOOP_PRIORITIES) < 0) {
                event_base_free(base);
                return NULL;
        }
        return base;
}

/* GET /v2/node: the cloud parts (a home node: its profile) and the
 * starts the node itself failed. */
static json_t *node_status(void *userdata) {
        manager *m = userdata;
        json_t *status = m->cloud ? pm_cloud_status(m->cloud) : json_pack("{s:s}", "profile", "home");

        if (status && json_object_set_new(status, "node_errors", ps_metrics_node_errors(m->metrics)) < 0) {
                json_decref(status);
                return NULL;
        }
        return status;
}

static void on_cloud_stopped(int rc, const char *message, void *userdata) {
        manager *m = userdata;

        (void) rc;
        (void) message;
        if (m->config->shutdown == PS_SHUTDOWN_KEEP) {
                /* Leaves the loop after the callbacks already due have run;
                 * engines keep running for a later daemon. */
                event_base_loopexit(m->base, NULL);
                return;
        }
        ps_registry_stop_all(m->registry, on_all_stopped, m);
}

static void on_signal(evutil_socket_t sig, short what, void *userdata) {
        manager *m = userdata;
        size_t dropped;

        (void) what;
        if (m->stopping) {
                ps_log(m->log, PS_LOG_WARN, "second signal: exiting without waiting for engines",
                       PS_FIELD_STR("signal", signal_name((int) sig)));
                event_base_loopbreak(m->base);
                return;
        }
        m->stopping = true;
        pm_notify_stopping(m->notify);
        pa_server_set_stopping(m->server);
        ps_log(m->log, PS_LOG_INFO, "shutting down", PS_FIELD_STR("signal", signal_name((int) sig)),
               PS_FIELD_STR("engines", m->config->shutdown == PS_SHUTDOWN_KEEP ? "keep" : "stop"));
        /* The configured pools not started yet never are: an engine
         * started now would only be stopped again, or outlive us. */
        m->registering = pm_register_free(m->registering);
        dropped = ps_preload_queue_cancel(m->preloads, PS_E_CONFLICT, "the daemon is shutting down");
        if (dropped)
                ps_log(m->log, PS_LOG_INFO, "configured replicas not started: shutting down",
                       PS_FIELD_INT("replicas", (int64_t) dropped));
        pm_cloud_stop(m->cloud, on_cloud_stopped, m);
}

/* What a reload changed: {"added": [ids], "removed": [...], "changed":
 * [...], "unchanged": [...]}; NULL on OOM. */
static json_t *diff_json(const ps_config *old, const ps_config *next) {
        ps_config_diff *diff = NULL;
        json_t *out = json_object();

        if (!out || ps_config_diff_compute(old, next, &diff) != 0) {
                json_decref(out);
                return NULL;
        }
        for (int c = 0; c < PS_POOL_CHANGE_MAX; c++)
                json_object_set_new(out, ps_pool_change_to_string((ps_pool_change) c), json_array());
        for (size_t i = 0; i < diff->n_pools; i++)
                json_array_append_new(json_object_get(out, ps_pool_change_to_string(diff->pools[i].change)),
                                      json_string(diff->pools[i].pool_id));
        ps_config_diff_free(diff);
        return out;
}

/*
 * The file again, for SIGHUP and POST /v2/config/reload; a bad one
 * changes nothing. 0 with *ret (may be NULL: not wanted) what changed;
 * PS_E_CONFLICT without a file or while stopping, PS_E_INVALID when the
 * file was refused, -ENOMEM; err says why.
 */
static int reload_config(void *userdata, json_t **ret, char *err, size_t errlen) {
        manager *m = userdata;
        ps_config *next = NULL, **retired;
        json_t *changes = NULL;

        if (m->stopping)
                return snprintf(err, errlen, "the daemon is shutting down"), PS_E_CONFLICT;
        if (m->starting)
                return snprintf(err, errlen, "the daemon is starting: the configured pools are "
                                "being registered"), PS_E_CONFLICT;
        if (!m->config_path) {
                ps_log(m->log, PS_LOG_WARN, "configuration reload: no configuration file to reload");
                return snprintf(err, errlen, "the daemon runs without --config: there is no "
                                "configuration file to reload"), PS_E_CONFLICT;
        }
        /* The GPUs are the ones the monitor keeps sampling (the first
         * config's): a reload never waits on a CUDA probe. */
        if (ps_config_reload(m->config_path, m->n_retired ? m->retired[0]->inventory
                                                          : m->config->inventory,
                             NULL, NULL, &next, err, errlen) != 0 ||
            (ret && !(changes = diff_json(m->config, next)) && snprintf(err, errlen, "out of memory")) ||
            ps_registry_apply_config(m->registry, m->config, next, err, errlen) != 0) {
                ps_log(m->log, PS_LOG_ERROR, "configuration reload rejected; keeping the running state",
                       PS_FIELD_STR("config", m->config_path), PS_FIELD_STR("error", err));
                ps_config_free(next);
                json_decref(changes);
                ps_metrics_config_loaded(m->metrics, false, ps_clock_wall_ms(ps_clock_system()));
                return PS_E_INVALID;
        }
        /* Only pools change on a reload: what to do with engines on exit
         * (--keep-engines among it) stays what the daemon started with. */
        next->shutdown = m->config->shutdown;
        /* The API and the context borrow the old one until exit. */
        retired = realloc(m->retired, (m->n_retired + 1) * sizeof(*retired));
        if (!retired) {
                ps_config_free(next);
                json_decref(changes);
                return snprintf(err, errlen, "out of memory"), -ENOMEM;
        }
        m->retired = retired;
        m->retired[m->n_retired++] = m->config;
        m->config = next;
        /* What requests are checked against (allowlist, policies,
         * gpu.require), what preflight reads, which pools are scraped. The
         * inventory stays the one the GPU monitor keeps current. */
        pa_server_set_config(m->server, next);
        m->preflight.config = next;
        m->preflight.inventory = m->retired[0]->inventory;
        if (m->engine_metrics)
                ps_engine_metrics_configure(m->engine_metrics, next);
        ps_log(m->log, PS_LOG_INFO, "configuration reloaded", PS_FIELD_STR("config", m->config_path),
               PS_FIELD_INT("pools", (int64_t) next->n_pools));
        ps_metrics_config_loaded(m->metrics, true, ps_clock_wall_ms(ps_clock_system()));
        if (ret)
                *ret = changes;
        else
                json_decref(changes);
        return 0;
}

/* SIGHUP: reload_config(), logged there; the service manager hears of
 * the reload and its end. */
static void on_reload_config(evutil_socket_t sig, short what, void *userdata) {
        manager *m = userdata;
        char err[512];

        (void) sig;
        (void) what;
        pm_notify_reloading(m->notify);
        (void) reload_config(m, NULL, err, sizeof(err));
        pm_notify_reloaded(m->notify, m->registry);
}

static void on_preloaded(int rc, const char *message, void *userdata) {
        manager *m = userdata;

        m->preloads_pending--;
        /* Dropped or stopped by the shutdown: nothing failed, nothing
         * comes up, and no drain resumes now. */
        if (m->stopping)
                return;
        if (rc != 0)
                ps_log(m->log, PS_LOG_WARN, "configured pool not ready; its restart policy retries",
                       PS_FIELD_STR("error", message));
        if (m->preloads_pending == 0 && m->preloads_started) {
                ps_log(m->log, PS_LOG_INFO, "serve-time preloads finished");
                pm_notify_started(m->notify, m->registry);
                /* The pools are up (or given up on): drains go on. */
                pm_state_resume_drains(&m->state, m->registry, m->log);
        }
}

/* A start that cannot go on: the loop ends, run() exits with status. */
static void start_fail(manager *m, int status) {
        m->start_failed = status;
        event_base_loopbreak(m->base);
}

/*
 * Every configured replica is registered: restore their restart policy
 * state, reconcile the engines a previous daemon left, queue their starts
 * (a batch of engines per loop turn, so no preload waits for another),
 * hold the leases again, then the cloud services, and the API serves.
 */
static void finish_start(manager *m) {
        const char *pool_id;
        ps_replica *r;

        /* Before any start: a crash loop stays bounded across restarts. */
        pm_state_restore_policy(&m->state, m->registry, m->log);
        m->preloads = ps_preload_queue_new(m->base, m->registry, 0);
        if (ps_reconcile_start(&m->ctx, m->registry, m->state.store, 0, &m->reconcile) < 0 ||
            !m->preloads) {
                ps_log(m->log, PS_LOG_ERROR, "out of memory");
                start_fail(m, EXIT_FAILURE);
                return;
        }
        for (size_t p = 0; p < m->config->n_pools; p++) {
                pool_id = m->config->pools[p].id;
                for (size_t i = 0; (r = ps_registry_replica_at(m->registry, pool_id, i)); i++) {
                        if (ps_preload_queue_add(m->preloads, pool_id, ps_replica_id(r),
                                                 on_preloaded, m) < 0) {
                                ps_log(m->log, PS_LOG_ERROR, "out of memory");
                                start_fail(m, EXIT_FAILURE);
                                return;
                        }
                        m->preloads_pending++;
                }
        }
        /* Before the API serves a change: leases held again; drains go on
         * once the configured pools have answered. */
        pm_state_restore(&m->state, m->registry, m->log);
        m->preloads_started = true;
        if (m->preloads_pending == 0)
                pm_state_resume_drains(&m->state, m->registry, m->log);
        if (pm_cloud_start(&m->ctx, m->registry, m->config, m->metrics, m->log, PM_VERSION,
                           &m->cloud) != 0) {
                start_fail(m, EXIT_FAILURE);
                return;
        }
        if (m->preloads_pending == 0)
                pm_notify_started(m->notify, m->registry);
        else
                pm_notify_preloading(m->notify);
        m->starting = false;
        pa_server_set_starting(m->server, false);
}

static void on_registered(int rc, const char *message, void *userdata) {
        manager *m = userdata;

        if (rc != 0) {
                ps_log(m->log, PS_LOG_ERROR, message);
                start_fail(m, EXIT_USAGE);
                return;
        }
        if (!m->stopping)
                finish_start(m);
}

/*
 * Registers the configured replicas -- a batch per loop turn, so that
 * /health answers between two at a thousand pools -- then finishes the
 * start. Until then every route but /health answers 503. 0, or
 * EXIT_USAGE when the replicas cannot be listed.
 */
static int start_configured(manager *m) {
        char err[512];

        m->starting = true;
        pa_server_set_starting(m->server, true);
        if (pm_register_start(m->base, m->registry, m->config, on_registered, m,
                              &m->registering, err, sizeof(err)) != 0) {
                ps_log(m->log, PS_LOG_ERROR, err);
                return EXIT_USAGE;
        }
        return 0;
}

/* 1,000 pools need more descriptors than the usual soft limit of 1,024. */
static void raise_nofile(ps_logger *log) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rlim_t was = rl.rlim_cur;

                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
                        ps_log(log, PS_LOG_DEBUG, "raised the descriptor limit",
                               PS_FIELD_INT("from", was), PS_FIELD_INT("to", rl.rlim_cur));
        }
}

static void manager_done(manager *m) {
        m->notify = pm_notify_free(m->notify);
        m->cloud = pm_cloud_free(m->cloud);
        /* Tearing the registry down is no change to record. */
        pm_state_freeze(&m->state);
        m->server = pa_server_free(m->server);
        m->gpu_monitor = ps_gpu_monitor_free(m->gpu_monitor);
        m->engine_metrics = ps_engine_metrics_free(m->engine_metrics);
        m->preloads = ps_preload_queue_free(m->preloads);
        m->registering = pm_register_free(m->registering);
        m->registry = ps_registry_free(m->registry);
        m->reconcile = ps_reconcile_free(m->reconcile);
        m->prober = ps_prober_free(m->prober);
        if (m->sigterm)
                event_free(m->sigterm);
        if (m->sigint)
                event_free(m->sigint);
        if (m->sighup)
                event_free(m->sighup);
        for (size_t i = 0; i < m->n_retired; i++)
                ps_config_free(m->retired[i]);
        free(m->retired);
        if (m->base)
                event_base_free(m->base);
        pm_state_close(&m->state);
        m->metrics = ps_metrics_free(m->metrics);
        m->config = ps_config_free(m->config);
        ps_libevent_log_to(NULL);
        m->log = ps_logger_free(m->log);
        m->lock_fd = pm_lock_release(m->lock_fd);
}

/*
 * POOL_MANAGERD_RUNTIME_DIR names the handoff files' own directory (the
 * seed's meaning). Handoff files one level down say it was set the old
 * way, as a root with engines/ below it: they are not read from there.
 */
/* The runtime directory was made again before a spawn: the API socket
 * that lived in it is bound again. */
static void on_runtime_dir_recreated(void *userdata) {
        manager *m = userdata;
        pa_error perr = { 0 };
        char err[512];

        /* The lock lived in the directory too. */
        m->lock_fd = pm_lock_release(m->lock_fd);
        m->lock_fd = pm_lock_take(m->config->runtime_dir, err, sizeof(err));
        if (m->lock_fd < 0)
                ps_log(m->log, PS_LOG_ERROR, "cannot lock the runtime directory again",
                       PS_FIELD_STR("error", err));
        else
                ps_log(m->log, PS_LOG_INFO, "runtime directory locked again",
                       PS_FIELD_STR("runtime_dir", m->config->runtime_dir));
        if (!m->server)
                return;
        if (pa_server_rebind_socket(m->server, &perr) < 0)
                ps_log(m->log, PS_LOG_ERROR, "cannot listen on the API socket again",
                       PS_FIELD_STR("error", perr.msg));
        else if (pa_server_socket_path(m->server))
                ps_log(m->log, PS_LOG_INFO, "listening on the API socket again",
                       PS_FIELD_STR("socket", pa_server_socket_path(m->server)));
}

static void warn_old_handoff_layout(ps_logger *log, const ps_config *config,
                                    const char *handoff_dir) {
        char pattern[PATH_MAX + 32];
        glob_t g;

        if (!config->handoff_dir ||
            strcmp(config->handoff_dir_source, "POOL_MANAGERD_RUNTIME_DIR") != 0)
                return;
        snprintf(pattern, sizeof(pattern), "%s/engines/*.json", handoff_dir);
        if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0 && g.gl_pathc > 0)
                ps_log(log, PS_LOG_WARN, "POOL_MANAGERD_RUNTIME_DIR names the directory holding "
                       "the handoff files themselves; files in its engines/ subdirectory are not read",
                       PS_FIELD_STR("handoff_dir", handoff_dir),
                       PS_FIELD_INT("ignored_files", (int64_t) g.gl_pathc),
                       PS_FIELD_STR("first", g.gl_pathv[0]));
        globfree(&g);
}

/* The log level: the flag, else POOL_MANAGERD_LOG_LEVEL. */
static int set_log_level(manager *m, const options *o) {
        const char *level_str = o->log_level ? o->log_level : getenv("POOL_MANAGERD_LOG_LEVEL");
        ps_log_level level = DEFAULT_LOG_LEVEL;

        if (level_str && *level_str && ps_log_level_from_string(level_str, &level) < 0) {
                ps_log(m->log, PS_LOG_ERROR, "invalid log level: expected debug, info, warn, error or critical",
                       PS_FIELD_STR("value", level_str),
                       PS_FIELD_STR("source", o->log_level ? "flag" : "POOL_MANAGERD_LOG_LEVEL"));
                return EXIT_USAGE;
        }
        ps_logger_set_level(m->log, level);
        return 0;
}

/*
 * The configuration in effect: flags > environment > file > defaults,
 * the token and cloud settings resolved, the API's addresses and the
 * handoff directory worked out. 0 or EXIT_USAGE, said in the log.
 */
static int configure(manager *m, const options *o, pa_server_config *sc) {
        char err[512];
        pa_error perr;

        /* The address parser says most precisely what is wrong with one. */
        if (o->bind && pa_bind_addr_parse(o->bind, &sc->bind, &perr) < 0) {
                ps_log(m->log, PS_LOG_ERROR, perr.msg, PS_FIELD_STR("source", "flag"));
                return EXIT_USAGE;
        }
        if (ps_config_load(o->config, NULL, NULL, &m->config, err, sizeof(err)) != 0 ||
            (o->bind && ps_config_set_bind(m->config, o->bind, "flag", err, sizeof(err)) != 0) ||
            (o->runtime_dir &&
             ps_config_set_runtime_dir(m->config, o->runtime_dir, "flag", err, sizeof(err)) != 0) ||
            /* the token: LLORCH_API_TOKEN > api.token_file > cloud.token_file */
            ps_config_resolve_cloud(m->config, NULL, err, sizeof(err)) != 0 ||
            ps_config_resolve_token(m->config, err, sizeof(err)) != 0) {
                ps_log(m->log, PS_LOG_ERROR, err, PS_FIELD_STR("config", o->config));
                return EXIT_USAGE;
        }
        if (o->keep_engines)
                m->config->shutdown = PS_SHUTDOWN_KEEP;
        if (pa_bind_addr_parse(m->config->bind, &sc->bind, &perr) < 0) {
                ps_log(m->log, PS_LOG_ERROR, perr.msg, PS_FIELD_STR("source", m->config->bind_source));
                return EXIT_USAGE;
        }
        /* After the runtime directory is final (flags included). */
        if (ps_config_api_socket(m->config, NULL, NULL, m->socket_path, sizeof(m->socket_path),
                                 err, sizeof(err)) != 0) {
                ps_log(m->log, PS_LOG_ERROR, err, PS_FIELD_STR("runtime_dir", m->config->runtime_dir));
                return EXIT_USAGE;
        }
        if (ps_config_handoff_dir(m->config, m->handoff_dir, sizeof(m->handoff_dir)) != 0) {
                ps_log(m->log, PS_LOG_ERROR, "the handoff directory's path is too long",
                       PS_FIELD_STR("runtime_dir", m->config->runtime_dir));
                return EXIT_USAGE;
        }
        return 0;
}

static void log_starting(manager *m, const options *o) {
        ps_log(m->log, PS_LOG_INFO, "starting", PS_FIELD_STR("version", PM_VERSION),
               PS_FIELD_INT("pid", getpid()), PS_FIELD_STR("config", o->config),
               PS_FIELD_STR("profile", ps_profile_to_string(m->config->profile)),
               PS_FIELD_STR("runtime_dir", m->config->runtime_dir),
               PS_FIELD_STR("runtime_dir_source", m->config->runtime_dir_source),
               PS_FIELD_STR("handoff_dir", m->handoff_dir),
               PS_FIELD_STR("handoff_dir_source", m->config->handoff_dir ? m->config->handoff_dir_source
                                                                       : "runtime_dir"),
               PS_FIELD_STR("gpu_backend", ps_gpu_backend_to_string(m->config->gpu.backend)),
               PS_FIELD_INT("gpus", ps_inventory_count(m->config->inventory)));
        warn_old_handoff_layout(m->log, m->config, m->handoff_dir);
        if (ps_inventory_problem(m->config->inventory))
                ps_log(m->log, PS_LOG_WARN, "no CUDA device in use: pools that need a GPU will not start",
                       PS_FIELD_STR("reason", ps_inventory_problem(m->config->inventory)));
}

/* The loop, its signals, and the registry with what feeds it. 0 or -1. */
static int start_services(manager *m, const options *o) {
        m->base = new_event_base();
        m->metrics = ps_metrics_new();
        m->notify = m->base ? pm_notify_new(m->base, m->log) : NULL;
        if (!m->base || !m->metrics || !m->notify || ps_metrics_set_version(m->metrics, PM_VERSION) < 0 ||
            ps_metrics_add_collector(m->metrics, ps_metrics_process_collect, NULL) < 0) {
                ps_log(m->log, PS_LOG_ERROR, "cannot create the event loop");
                return -1;
        }
        ps_metrics_config_loaded(m->metrics, true, ps_clock_wall_ms(ps_clock_system()));
        /* Before the socket opens: once "listening" is logged, a signal
         * must reach on_signal(), not the default action. */
        m->sigterm = evsignal_new(m->base, SIGTERM, on_signal, m);
        m->sigint = evsignal_new(m->base, SIGINT, on_signal, m);
        m->sighup = evsignal_new(m->base, SIGHUP, on_reload_config, m);
        m->config_path = o->config;
        if (!m->sigterm || !m->sigint || !m->sighup || evsignal_add(m->sigterm, NULL) < 0 ||
            evsignal_add(m->sigint, NULL) < 0 || evsignal_add(m->sighup, NULL) < 0) {
                ps_log(m->log, PS_LOG_ERROR, "cannot watch SIGTERM, SIGINT and SIGHUP");
                return -1;
        }

        m->prober = ps_prober_new(m->base);
        m->ctx = (ps_context) {
                .base = m->base,
                .sink = { .fn = on_event, .userdata = m },
                .prober = m->prober,
                .runtime_dir = m->config->runtime_dir,
                .handoff_dir = m->handoff_dir,
                .engine_user = m->config->engines_user,
                .engine_env_pass = m->config->engines_env_pass,
                .n_engine_env_pass = m->config->n_engines_env_pass,
                .engine_log_max_bytes = m->config->engines_log_max_bytes,
                .seed = (uint64_t) getpid() ^ (uint64_t) time(NULL),
                .preflight = ps_preflight_spec,
                .preflight_userdata = &m->preflight,
                .runtime_dir_recreated = on_runtime_dir_recreated,
                .runtime_dir_userdata = m,
        };
        m->preflight = (ps_preflight_source) { .config = m->config };
        m->registry = m->prober ? ps_registry_new(&m->ctx) : NULL;
        if (!m->registry) {
                ps_log(m->log, PS_LOG_ERROR, "cannot set up supervision");
                return -1;
        }

        /* Engines' own metrics, for pools that ask (engine_metrics). */
        m->engine_metrics = ps_engine_metrics_new(&m->ctx, m->registry, NULL);
        if (!m->engine_metrics || ps_engine_metrics_configure(m->engine_metrics, m->config) < 0 ||
            ps_engine_metrics_start(m->engine_metrics) < 0) {
                ps_log(m->log, PS_LOG_ERROR, "cannot set up engine metrics");
                return -1;
        }
        if (m->config->gpu.backend == PS_GPU_BACKEND_AUTO ||
            m->config->gpu.backend == PS_GPU_BACKEND_CUDA) {
                ps_cuda_options co = { .timeout_ms = m->config->gpu.probe_timeout_ms };

                m->gpu_monitor = ps_gpu_monitor_new(m->base, m->config->inventory, m->registry, &co,
                                                    m->config->gpu.sample_interval_ms, m->ctx.sink);
                if (!m->gpu_monitor || ps_gpu_monitor_start(m->gpu_monitor) < 0) {
                        ps_log(m->log, PS_LOG_ERROR, "cannot set up GPU sampling");
                        return -1;
                }
        }
        return 0;
}

/* The API on TCP and the socket, then the "listening" line. 0 or -1. */
static int start_api(manager *m, pa_server_config *sc) {
        char address[PA_BIND_ADDR_STRING_MAX];
        pa_error perr;

        sc->events = m->ctx.sink;
        sc->quiet_requests = !ps_logger_enabled(m->log, PS_LOG_DEBUG);
        sc->backend = (pa_backend) {
                .registry = m->registry,
                .inventory = m->config->inventory,
                .config = m->config,
                .metrics = m->metrics,
                .engine_metrics = m->engine_metrics,
                .events_seen = &m->events_seen,
                .node_status = node_status,
                .node_userdata = m,
                .reload_config = reload_config,
                .reload_userdata = m,
        };
        sc->api_token = m->config->cloud.api_token;
        sc->socket_path = m->socket_path;
        sc->socket_group = m->config->api_socket_group;
        m->server = pa_server_new(m->base, sc, &perr);
        if (!m->server) {
                ps_log(m->log, PS_LOG_ERROR, perr.msg,
                       PS_FIELD_STR("address", pa_bind_addr_to_string(&sc->bind, address, sizeof(address))),
                       PS_FIELD_STR("socket", m->socket_path[0] ? m->socket_path : NULL),
                       PS_FIELD_STR("error", strerror(-perr.error)));
                return -1;
        }
        /* Where changes may come from: the socket, and TCP with the token. */
        ps_log(m->log, PS_LOG_INFO, "listening",
               PS_FIELD_STR("address", pa_bind_addr_to_string(pa_server_address(m->server),
                                                              address, sizeof(address))),
               PS_FIELD_INT("port", pa_server_port(m->server)),
               PS_FIELD_STR("source", m->config->bind_source),
               PS_FIELD_STR("socket", pa_server_socket_path(m->server)),
               PS_FIELD_STR("tcp_access", m->config->cloud.api_token && m->config->cloud.api_token[0]
                                                  ? "token" : "read-only"));
        return 0;
}

static int run(const options *o) {
        manager m = { .base = NULL, .lock_fd = -1 };
        pa_server_config sc = { .clock = NULL };
        ps_log_format format;
        char err[512];
        int ret = EXIT_FAILURE;

        m.log = ps_logger_new(stderr, DEFAULT_LOG_LEVEL, NULL);
        if (!m.log) {
                fputs("pool-managerd: out of memory\n", stderr);
                return EXIT_FAILURE;
        }
        if (o->log_format)
                (void) ps_log_format_from_string(o->log_format, &format);
        else
                format = ps_log_format_default(STDERR_FILENO, getenv("JOURNAL_STREAM"));
        ps_logger_set_format(m.log, format);
        ps_libevent_log_to(m.log);    /* libevent's own messages, as JSON */
        if ((ret = set_log_level(&m, o)) != 0)
                goto out;
        if (o->check_config) {
                ret = pm_check_config(o->check_config);
                goto out;
        }
        if ((ret = configure(&m, o, &sc)) != 0)
                goto out;
        ret = EXIT_FAILURE;
        log_starting(&m, o);
        /* engines number devices as nvidia-smi and the probe do */
        setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", 0);
        raise_nofile(m.log);
        /* Made when missing, and ours alone (like sshd's StrictModes). */
        if (ps_runtime_dirs_check(m.config, err, sizeof(err)) < 0) {
                ps_log(m.log, PS_LOG_ERROR, "cannot use the runtime directory",
                       PS_FIELD_STR("runtime_dir", m.config->runtime_dir),
                       PS_FIELD_STR("error", err));
                goto out;
        }
        /* One daemon per runtime directory: before anything in it is
         * touched (the socket, engine and handoff files). */
        m.lock_fd = pm_lock_take(m.config->runtime_dir, err, sizeof(err));
        if (m.lock_fd < 0) {
                ps_log(m.log, PS_LOG_ERROR, err, PS_FIELD_STR("runtime_dir", m.config->runtime_dir));
                goto out;
        }
        if (start_services(&m, o) < 0 ||
            (!o->no_state_store &&
             pm_state_open(&m.state, m.base, m.config->runtime_dir, o->reset_state, m.log) < 0) ||
            start_api(&m, &sc) < 0)
                goto out;
        if ((ret = start_configured(&m)) != 0)
                goto out;
        ret = EXIT_FAILURE;
        /* A small node is registered (or refused) before the loop runs. */
        if (!m.start_failed && event_base_dispatch(m.base) < 0) {
                ps_log(m.log, PS_LOG_ERROR, "event loop failed");
                goto out;
        }
        if (m.start_failed) {
                ret = m.start_failed;
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
        options o = { .config = NULL };
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
