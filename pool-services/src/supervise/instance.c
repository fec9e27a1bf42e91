/* SPDX-License-Identifier: MIT */
/*
 * One engine instance of a replica: the process, its log tail, its health
 * watch. What happens to it goes up through the replica's table
 * (supervise/instance.h); the replica decides what it means.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/policy-private.h"
#include "supervise/idle.h"
#include "supervise/instance.h"
#include "pool-domain/cause.h"
#include "pool-domain/crash.h"
#include "pool-services/base/fs.h"
#include "pool-services/supervise/logtail.h"
#include "pool-services/supervise/probe.h"

struct ps_instance {
        const ps_context *ctx;
        const ps_policy *policy;    /* the replica's                       */
        ps_instance_ops ops;
        void *userdata;
        pd_instance_id id;
        ps_engine *engine;          /* NULL when none runs                 */
        ps_engine *dead;            /* exited; freed at the next spawn     */
        ps_logtail *tail;
        ps_probe *probe;            /* in flight, or NULL                  */
        struct event *probe_timer;
        bool probing;
        bool probe_again;           /* a kick arrived while one was in flight */
        int64_t probe_delay_ms;     /* loading schedule: 5, 10, 20, 25..., 50 */
        int64_t probe_started_ms;   /* when probing of this engine began    */
        int64_t last_probe_ms;
        int64_t last_progress_ms;   /* for the stall timeout               */
        long last_http_status;
        bool oom_known;
        uint64_t oom_kill_before;
        int64_t started_wall_ms;
        char last_line[PS_INSTANCE_LINE_MAX];
        ps_idle_watch *idle;        /* leaving service: waiting for the
                                       requests it still runs            */
        bool idle_reached;          /* ... they are done: it may stop     */
        uint16_t port;              /* where this engine listens          */
        char url[320];              /* where this engine listens: the spec
                                       it was started from, not the
                                       replica's current one             */
};

static int64_t mono_now(const ps_instance *in) {
        return ps_clock_mono_ms(in->ctx->clock);
}

static int64_t wall_now(const ps_instance *in) {
        return ps_clock_wall_ms(in->ctx->clock);
}

static const pd_policy *policy(const ps_instance *in) {
        return ps_policy_domain(in->policy);
}

#define EMIT(in, type, level, message, ...)                                    \
        do {                                                                     \
                const ps_field f_[] = { __VA_ARGS__ };                           \
                (in)->ops.emit((in), (type), (level), (message), f_,             \
                               sizeof(f_) / sizeof(f_[0]), (in)->userdata);      \
        } while (0)

/* ---- probes ------------------------------------------------------------- */

static void probe_send(ps_instance *in);

static bool inst_ready(const ps_instance *in) {
        return in->ops.ready(in, in->userdata);
}

/*
 * While an engine loads: 5, 10, 20 ms, then every 25 ms for the first
 * second (most small models come up within it, and a quick look costs the
 * engine nothing), then every 50 ms -- 20 probes per second for as long as a
 * big model takes. Output from the engine triggers probes besides these.
 */
#define LOAD_FAST_PHASE_MS 1000
#define LOAD_FAST_INTERVAL_MS 25
#define LOAD_SLOW_INTERVAL_MS 50

static int64_t loading_probe_delay(ps_instance *in, int64_t now) {
        int64_t delay = in->probe_delay_ms;

        if (in->probe_delay_ms < LOAD_FAST_INTERVAL_MS)
                in->probe_delay_ms = in->probe_delay_ms * 2 > LOAD_FAST_INTERVAL_MS ?
                                     LOAD_FAST_INTERVAL_MS : in->probe_delay_ms * 2;
        else if (now - in->probe_started_ms >= LOAD_FAST_PHASE_MS)
                in->probe_delay_ms = LOAD_SLOW_INTERVAL_MS;
        return delay;
}

static struct timeval ms_to_tv(int64_t ms) {
        if (ms < 0)
                ms = 0;
        return (struct timeval) { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

static void probe_schedule(ps_instance *in, int64_t delay_ms) {
        struct timeval tv = ms_to_tv(delay_ms);

        evtimer_add(in->probe_timer, &tv);
}

/*
 * Once ready, probes keep their cadence: the next is due one interval
 * after the previous was sent, however long its answer took, so a hung
 * engine is caught after failure_threshold x interval (plus at most one
 * timeout), not threshold x (interval + timeout).
 */
static int64_t steady_delay(ps_instance *in) {
        int64_t due = in->last_probe_ms + policy(in)->health.interval_ms - mono_now(in);

        return due > 0 ? due : 0;
}

/*
 * A first 200 counts once the engine is seen holding the socket that
 * answered (health.verify_listener): another program on the port answers
 * too. Until then the engine is not ready, and last_error says who
 * listens. When it cannot be told (no sock_diag), the 200 counts.
 */
static bool listener_verified(ps_instance *in) {
        const char *host;
        char why[PD_ACTION_TEXT_MAX];
        int rc;

        if (!ps_policy_verify_listener(in->policy))
                return true;
        host = in->ops.probe_host(in, in->userdata);
        rc = ps_engine_serves(in->engine, host ? host : "127.0.0.1", in->port, why, sizeof(why));
        if (rc != -EADDRNOTAVAIL && rc != -ESRCH)
                return true;
        in->ops.probe_not_counted(in, why, in->userdata);
        return false;
}

/* The next steady probe, unless one is already on its way. */
static void probe_keep_cadence(ps_instance *in) {
        if (in->probing && !in->probe && !evtimer_pending(in->probe_timer, NULL))
                probe_schedule(in, steady_delay(in));
}

/* Loading: a changing answer is progress; 200 is readiness. */
static void on_loading_probe(ps_instance *in, ps_probe_result result, long http_status) {
        const pd_policy *p = policy(in);
        int64_t now = mono_now(in);

        if (http_status != in->last_http_status) {
                in->last_http_status = http_status;
                in->last_progress_ms = now;
        }
        if (result == PS_PROBE_OK && listener_verified(in)) {
                in->ops.probe_result(in, PD_EV_PROBE_OK, NULL, in->userdata);
                /* ready now: the steady schedule takes over */
                probe_keep_cadence(in);
                return;
        }
        if (p->health.stall_timeout_ms > 0 &&
            now - in->last_progress_ms >= p->health.stall_timeout_ms) {
                char why[PS_INSTANCE_LINE_MAX];

                snprintf(why, sizeof(why), "no output and no change in health answer for %lld ms",
                         (long long) (now - in->last_progress_ms));
                in->last_progress_ms = now;
                in->ops.probe_result(in, PD_EV_STALL, why, in->userdata);
                if (!in->probing)
                        return;
        }
        if (in->probe_again) {
                in->probe_again = false;
                probe_send(in);
                return;
        }
        probe_schedule(in, loading_probe_delay(in, now));
}

static void on_probe(ps_probe_result result, long http_status, const char *detail,
                     void *userdata) {
        ps_instance *in = userdata;
        pd_event_type type;

        in->probe = NULL;
        if (!in->probing)
                return;
        if (!inst_ready(in)) {
                on_loading_probe(in, result, http_status);
                return;
        }
        switch (result) {
        case PS_PROBE_OK:
                type = PD_EV_PROBE_OK;
                break;
        case PS_PROBE_TIMEOUT:
                type = PD_EV_PROBE_TIMEOUT;
                break;
        case PS_PROBE_FAILED:
        case PS_PROBE_RESULT_MAX:
        default:
                type = PD_EV_PROBE_FAILED;
                break;
        }
        in->ops.probe_result(in, type, detail, in->userdata);
        probe_keep_cadence(in);
}

static void probe_send(ps_instance *in) {
        const pd_policy *p = policy(in);
        char url[512];
        int64_t timeout = p->health.timeout_ms > 0 ? p->health.timeout_ms : 1000;
        int rc;

        if (in->probe) {
                in->probe_again = true;
                return;
        }
        /* The engine is probed where it listens: a drain-first reload may
         * start it on another port than the spec it replaces. */
        snprintf(url, sizeof(url), "%s%s", in->url, ps_policy_health_path(in->policy));
        in->last_probe_ms = mono_now(in);
        rc = ps_prober_get(in->ctx->prober, url, timeout, on_probe, in, &in->probe);
        if (rc < 0) {
                EMIT(in, PS_EVENT_GENERIC, PS_LOG_ERROR, "cannot start health probe",
                     PS_FIELD_STR("url", url), PS_FIELD_STR("error", strerror(-rc)));
                probe_schedule(in, p->health.interval_ms);
        }
}

static void on_probe_timer(evutil_socket_t fd, short what, void *userdata) {
        ps_instance *in = userdata;

        (void) fd;
        (void) what;
        if (in->probing)
                probe_send(in);
}

void ps_instance_probe_start(ps_instance *in) {
        in->probing = true;
        in->probe_again = false;
        in->probe_delay_ms = 5;
        in->probe_started_ms = mono_now(in);
        in->last_http_status = -1;
        in->last_progress_ms = mono_now(in);
        evtimer_del(in->probe_timer);
        probe_send(in);
}

static void probe_cancel(ps_instance *in) {
        evtimer_del(in->probe_timer);
        if (in->probe) {
                ps_probe_cancel(in->probe);
                in->probe = NULL;
        }
}

void ps_instance_probe_stop(ps_instance *in) {
        in->probing = false;
        in->probe_again = false;
        probe_cancel(in);
}

void ps_instance_probe_restart(ps_instance *in) {
        probe_cancel(in);
        if (in->probing)
                probe_schedule(in, policy(in)->health.interval_ms);
}

/* ---- leaving service ------------------------------------------------------ */

static void on_idle(ps_idle_how how, const char *detail, void *userdata) {
        ps_instance *in = userdata;

        /* detail belongs to the watch: said before the watch goes */
        EMIT(in, PS_EVENT_GENERIC, PS_LOG_INFO, how == PS_IDLE_COUNTED ?
             "engine has no request in flight" : "engine shows no in-flight count: retire grace over",
             PS_FIELD_INT("pid", in->engine ? ps_engine_pid(in->engine) : 0),
             PS_FIELD_STR("detail", detail));
        in->idle = ps_idle_watch_free(in->idle);
        in->idle_reached = true;
        in->ops.idle(in, in->userdata);
}

bool ps_instance_idle_reached(ps_instance *in) {
        ps_idle_options o = {
                .url = in->url,
                .poll_ms = policy(in)->health.interval_ms,
                .timeout_ms = policy(in)->health.timeout_ms,
                .grace_ms = ps_policy_retire_grace_ms(in->policy),
        };

        if (!in->idle_reached && !in->idle) {
                in->idle = ps_idle_watch_new(in->ctx->base, in->ctx->prober, &o, on_idle, in);
                in->idle_reached = !in->idle;
        }
        return in->idle_reached;
}

void ps_instance_idle_forget(ps_instance *in) {
        in->idle = ps_idle_watch_free(in->idle);
        in->idle_reached = false;
}

/* ---- engine output and exit ----------------------------------------- */

/* Engines that announce readiness in their output (llama-server, vLLM via
 * uvicorn) get probed at once instead of at the next tick. */
static bool announces_listening(const char *line, size_t len) {
        static const char *const marks[] = {
                "listening on", "server is listening", "Uvicorn running on",
                "Application startup complete", "HTTP server listening",
        };
        for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
                if (memmem(line, len, marks[i], strlen(marks[i])))
                        return true;
        return false;
}

static void on_log_line(const char *line, size_t len, void *userdata) {
        ps_instance *in = userdata;
        int64_t now = mono_now(in);

        if (len == 0)
                return;
        snprintf(in->last_line, sizeof(in->last_line), "%.*s", (int) len, line);
        in->last_progress_ms = now;
        if (in->ops.log_line(in, line, len, in->userdata))
                return;
        if (in->probing && !inst_ready(in) &&
            (announces_listening(line, len) || now - in->last_probe_ms >= 50)) {
                evtimer_del(in->probe_timer);
                probe_send(in);
        }
}

/* The kernel's OOM-kill counter of our cgroup (cgroup v2), if there is one.
 * Engines live in the daemon's cgroup, so a rise while one ran and a
 * SIGKILL death together mean the OOM killer took it. */
static bool read_oom_kill(uint64_t *out) {
        char cg[512], path[600], text[1024];
        ssize_t n;
        int fd;
        FILE *f;

        f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return false;
        /* cgroup v2 has exactly one line: "0::/path" */
        if (!fgets(cg, sizeof(cg), f) || strncmp(cg, "0::", 3) != 0) {
                fclose(f);
                return false;
        }
        fclose(f);
        cg[strcspn(cg, "\n")] = '\0';
        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.events", cg + 3);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = read(fd, text, sizeof(text) - 1);
        close(fd);
        if (n <= 0)
                return false;
        return pd_memory_events_oom_kill(text, (size_t) n, out, NULL) == 0;
}

/* Why the engine ended, in its own words: the cause among its last lines
 * (the tail keeps them), else the log's last line, without the prefix. */
static void exit_cause(ps_instance *in, const ps_engine *engine, char *buf, size_t size) {
        char line[PS_INSTANCE_LINE_MAX] = "";
        pd_log_line one;

        if (ps_logtail_cause(in->tail, buf, size) && buf[0])
                return;
        if (ps_engine_last_log_line(engine, line, sizeof(line)) < 0 || !line[0])
                snprintf(line, sizeof(line), "%s", in->last_line);
        one = (pd_log_line) { .text = line, .len = strlen(line) };
        pd_log_cause_pick(&one, 1, buf, size);
}

static void on_engine_exit(ps_engine *engine, const ps_exit_status *st, void *userdata) {
        ps_instance *in = userdata;
        pd_exit exit = { .exited = st->exited, .code = st->code, .signo = st->signo,
                         .status_unknown = st->status_unknown };
        uint64_t oom_after = 0;
        char detail[PS_INSTANCE_LINE_MAX] = "";
        ps_instance_exit how = { .status = st, .uptime_ms = wall_now(in) - in->started_wall_ms };

        if (in->tail)
                ps_logtail_drain(in->tail);   /* the last words come first */
        exit_cause(in, engine, detail, sizeof(detail));
        in->tail = ps_logtail_free(in->tail);
        ps_instance_probe_stop(in);
        in->engine = NULL;
        in->dead = engine;

        how.pid = (int) ps_engine_pid(engine);
        how.cause = detail[0] ? detail : NULL;
        how.host_oom = in->oom_known && read_oom_kill(&oom_after) &&
                       pd_crash_is_host_oom(&exit, in->oom_kill_before, oom_after);
        in->ops.exited(in, &how, in->userdata);
}

/* ---- spawn ---------------------------------------------------------------- */

/*
 * A start that failed: the node's fault (descriptors, disk, memory, the
 * runtime directory) is reported as a node error, retried on its own
 * schedule and never counted as a crash; anything else is the engine's
 * spawn failure. rc is the negative errno.
 */
static void spawn_failed(ps_instance *in, int rc, const char *binary, const char *message,
                         const char *err) {
        pd_node_error_kind kind;
        /* no binary: the failure is the runtime directory's */
        bool node = pd_node_error_classify(-rc, binary == NULL, &kind);

        EMIT(in, PS_EVENT_SPAWN_FAILED, PS_LOG_ERROR, message, PS_FIELD_STR("error", err),
             PS_FIELD_STR("binary", binary),
             PS_FIELD_STR("node_error", node ? pd_node_error_kind_to_string(kind) : NULL));
        in->ops.spawn_failed(in, node, err, in->userdata);
}

/*
 * The runtime directory was deleted while the daemon ran (a tmp cleaner,
 * an operator): make it again, ours alone, rather than fail the start, and
 * say what was lost with it. A directory that fails the check, or that the
 * daemon cannot write in, fails the start as a node error. 0, or -1 with
 * the failure reported.
 */
static int runtime_dir_ready(ps_instance *in) {
        const ps_context *ctx = in->ctx;
        char err[512];
        bool recreated = false;
        int rc;

        rc = ps_private_dir_again(ctx->runtime_dir, &recreated, err, sizeof(err));
        if (rc == 0 && faccessat(AT_FDCWD, ctx->runtime_dir, W_OK | X_OK, AT_EACCESS) < 0) {
                rc = -errno;
                snprintf(err, sizeof(err), "runtime directory %s is not writable: %s",
                         ctx->runtime_dir, strerror(-rc));
        }
        if (rc < 0) {
                spawn_failed(in, rc, NULL, "cannot use the runtime directory", err);
                return -1;
        }
        if (recreated) {
                EMIT(in, PS_EVENT_GENERIC, PS_LOG_WARN,
                     "runtime directory was gone and has been made again: the PID files, engine "
                     "logs, handoff files and API socket in it were lost",
                     PS_FIELD_STR("runtime_dir", ctx->runtime_dir));
                if (ctx->runtime_dir_recreated)
                        ctx->runtime_dir_recreated(ctx->runtime_dir_userdata);
        }
        return 0;
}

static void on_log_rotated(int rc, const char *path, void *userdata) {
        ps_instance *in = userdata;

        if (rc < 0)
                EMIT(in, PS_EVENT_GENERIC, PS_LOG_WARN, "cannot rotate engine log",
                     PS_FIELD_STR("path", path), PS_FIELD_STR("error", strerror(-rc)));
}

/* The engine's log, followed and capped at engines.log_max_bytes. */
static void follow_log(ps_instance *in) {
        in->tail = ps_logtail_new(in->ctx->base, ps_engine_log_path(in->engine),
                                  ps_engine_log_start(in->engine), on_log_line, in);
        ps_logtail_set_max_bytes(in->tail, in->ctx->engine_log_max_bytes, on_log_rotated);
}

/* The first start of a replica takes over an engine a previous daemon left
 * running, before preflight counts its VRAM as taken. true: adopted. */
static bool try_adopt(ps_instance *in, const ps_instance_start *how, const ps_engine_options *opts) {
        const ps_engine_spec *spec = how->spec;
        char err[PS_INSTANCE_LINE_MAX] = "";
        int rc;

        /* The state store's record names the engine (pid and start time);
         * without a store, its PID file does. */
        if (how->recorded)
                rc = ps_engine_adopt_recorded(in->ctx->base, spec, opts, how->recorded, on_engine_exit,
                                              in, &in->engine, err, sizeof(err));
        else if (how->recorded_only)
                rc = -ENOENT;
        else
                rc = ps_engine_adopt(in->ctx->base, spec, opts, on_engine_exit, in, &in->engine,
                                     err, sizeof(err));
        if (rc == 0) {
                in->started_wall_ms = wall_now(in);
                follow_log(in);
                EMIT(in, PS_EVENT_ENGINE_SPAWNED, PS_LOG_INFO, "engine adopted",
                     PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
                     PS_FIELD_STR("engine", spec->engine),
                     PS_FIELD_STR("engine_version", spec->engine_version),
                     PS_FIELD_STR("device_mask", spec->device_mask),
                     PS_FIELD_STR("model_id", spec->model_id));
                in->ops.spawned(in, in->userdata);
                return true;
        }
        /* A PID file naming someone else's process (another user's,
         * or through a symlink), or a record whose pid now names another
         * process, is not ours to take over: say so. */
        if (rc == -EPERM || rc == -ESTALE)
                EMIT(in, PS_EVENT_GENERIC, PS_LOG_WARN, "engine not adopted",
                     PS_FIELD_STR("error", err));
        return false;
}

void ps_instance_spawn(ps_instance *in, const ps_instance_start *how) {
        const ps_context *ctx = in->ctx;
        const ps_engine_spec *spec = how->spec;
        ps_engine_options opts = {
                .runtime_dir = ctx->runtime_dir,
                .run_as_user = ctx->engine_user,
                .env_pass = ctx->engine_env_pass,
                .n_env_pass = ctx->n_engine_env_pass,
                .pid_name = how->pid_name,
                .log_name = how->log_name,
        };
        char err[PS_INSTANCE_LINE_MAX] = "";
        int rc;

        in->dead = ps_engine_free(in->dead);
        in->tail = ps_logtail_free(in->tail);
        in->last_line[0] = '\0';
        ps_engine_spec_url(spec, in->url, sizeof(in->url));
        in->port = spec->port;
        if (how->adopt && try_adopt(in, how, &opts))
                return;
        rc = ctx->preflight ? ctx->preflight(spec, ctx->preflight_userdata, err, sizeof(err)) : 0;
        if (rc != 0) {
                /* The refusal's own code goes back to whoever waits for
                 * the start; a check that broke is a refusal too. */
                EMIT(in, PS_EVENT_SPAWN_FAILED, PS_LOG_ERROR, "preflight refused the start",
                     PS_FIELD_STR("error", err), PS_FIELD_STR("device_mask", spec->device_mask));
                in->ops.preflight_failed(in, rc > 0 ? rc : PS_E_PREFLIGHT, err, in->userdata);
                return;
        }
        if (runtime_dir_ready(in) < 0)
                return;
        in->oom_known = read_oom_kill(&in->oom_kill_before);
        if (in->ops.starting)
                in->ops.starting(in, in->userdata);
        rc = ps_engine_spawn(ctx->base, spec, &opts, on_engine_exit, in, &in->engine,
                             err, sizeof(err));
        if (rc < 0) {
                spawn_failed(in, rc, spec->binary_path, "engine spawn failed", err);
                return;
        }
        in->started_wall_ms = wall_now(in);
        follow_log(in);
        if (!in->tail)
                EMIT(in, PS_EVENT_GENERIC, PS_LOG_WARN, "cannot follow engine log; CUDA errors in it go unnoticed",
                     PS_FIELD_STR("path", ps_engine_log_path(in->engine)),
                     PS_FIELD_STR("error", strerror(errno)));
        EMIT(in, PS_EVENT_ENGINE_SPAWNED, PS_LOG_INFO, "engine spawned",
             PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
             PS_FIELD_STR("engine", spec->engine),
             PS_FIELD_STR("engine_version", spec->engine_version),
             PS_FIELD_STR("device_mask", spec->device_mask),
             PS_FIELD_STR("model_id", spec->model_id),
             PS_FIELD_INT("restart_count", how->restart_count));
        in->ops.spawned(in, in->userdata);
}

void ps_instance_signal(ps_instance *in, int signo) {
        if (!in->engine)
                return;
        EMIT(in, PS_EVENT_GENERIC, signo == SIGKILL ? PS_LOG_WARN : PS_LOG_INFO,
             signo == SIGKILL ? "stop grace over: killing engine" : "stopping engine",
             PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
             PS_FIELD_STR("signal", pd_signal_name(signo)));
        (void) ps_engine_signal(in->engine, signo);
}

/* ---- life of the record ------------------------------------------------ */

ps_instance *ps_instance_new(const ps_context *ctx, pd_instance_id id, const ps_policy *policy,
                             const ps_instance_ops *ops, void *userdata) {
        ps_instance *in = calloc(1, sizeof(*in));

        if (!in)
                return NULL;
        in->ctx = ctx;
        in->id = id;
        in->policy = policy;
        in->ops = *ops;
        in->userdata = userdata;
        in->probe_timer = evtimer_new(ctx->base, on_probe_timer, in);
        if (!in->probe_timer)
                return ps_instance_free(in);
        return in;
}

ps_instance *ps_instance_free(ps_instance *in) {
        if (!in)
                return NULL;
        if (in->probe)
                ps_probe_cancel(in->probe);
        ps_idle_watch_free(in->idle);
        if (in->probe_timer)
                event_free(in->probe_timer);
        ps_logtail_free(in->tail);
        ps_engine_free(in->engine);   /* never kills: adoption */
        ps_engine_free(in->dead);
        free(in);
        return NULL;
}

pd_instance_id ps_instance_id(const ps_instance *in) { return in->id; }
void ps_instance_set_id(ps_instance *in, pd_instance_id id) { in->id = id; }
void ps_instance_set_policy(ps_instance *in, const ps_policy *policy) { in->policy = policy; }
bool ps_instance_running(const ps_instance *in) { return in->engine != NULL; }
int64_t ps_instance_started_wall_ms(const ps_instance *in) { return in->started_wall_ms; }
const char *ps_instance_url(const ps_instance *in) { return in->url; }
const char *ps_instance_last_line(const ps_instance *in) { return in->last_line; }

int ps_instance_pid(const ps_instance *in) {
        return in->engine ? (int) ps_engine_pid(in->engine) : 0;
}

const char *ps_instance_log_path(const ps_instance *in) {
        const ps_engine *e = in->engine ? in->engine : in->dead;

        return e ? ps_engine_log_path(e) : NULL;
}

const ps_engine *ps_instance_engine(const ps_instance *in) {
        return in->engine;
}
