/* SPDX-License-Identifier: MIT */
/*
 * A supervised replica: the glue between the pure lifecycle machine in
 * pool-domain and the world. What happens (spawned, probe answered, pidfd
 * fired, log line written, timer expired, operator asked) becomes a
 * pd_event; pd_lifecycle_step() answers with actions; this file carries
 * them out. Events produced while actions run are queued, so the machine
 * is never re-entered.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/policy-private.h"
#include "supervise/replica-private.h"
#include "pool-services/placement/inventory.h"
#include "pool-domain/cause.h"
#include "pool-domain/crash.h"
#include "pool-domain/lease.h"
#include "pool-services/base/fs.h"
#include "pool-services/supervise/handoff.h"
#include "pool-services/base/hash.h"

static void run(ps_replica *r);

/* ---- time ------------------------------------------------------------- */

static int64_t mono_now(const ps_replica *r) {
        return ps_clock_mono_ms(r->ctx->clock);
}

static int64_t wall_now(const ps_replica *r) {
        return ps_clock_wall_ms(r->ctx->clock);
}

/* The lifecycle counts in monotonic time; people read wall time. */
static int64_t mono_to_wall(const ps_replica *r, int64_t at_mono) {
        if (at_mono == 0)
                return 0;
        return wall_now(r) + (at_mono - mono_now(r));
}

static struct timeval ms_to_tv(int64_t ms) {
        if (ms < 0)
                ms = 0;
        return (struct timeval) { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

static const pd_policy *policy(const ps_replica *r) {
        return ps_policy_domain(r->policy);
}

/* ---- reporting -------------------------------------------------------- */

static void emit(ps_replica *r, ps_event_type type, ps_log_level level, const char *message,
                 const ps_field *fields, size_t n_fields) {
        ps_event ev = {
                .type = type,
                .level = level,
                .pool_id = r->pool_id,
                .replica_id = r->replica_id,
                .correlation_id = r->correlation_id,
                .message = message,
                .fields = fields,
                .n_fields = n_fields,
        };
        ps_event_emit(&r->ctx->sink, &ev);
}

#define EMIT(r, type, level, message, ...)                                    \
        do {                                                                     \
                const ps_field f_[] = { __VA_ARGS__ };                           \
                emit((r), (type), (level), (message), f_, sizeof(f_) / sizeof(f_[0])); \
        } while (0)

static const char *engine_version(const ps_replica *r) {
        return r->current ? r->current->engine_version : NULL;
}

/* ---- queue -------------------------------------------------------------- */

/* The queue starts small and doubles up to REPLICA_QUEUE_MAX: most
 * replicas never hold more than a few events at once, and a node may run
 * a thousand of them. */
static bool queue_grow(ps_replica *r) {
        unsigned cap = r->q_cap ? r->q_cap * 2 : 4;
        queued_event *q;

        if (cap > REPLICA_QUEUE_MAX)
                return false;
        q = malloc(cap * sizeof(*q));
        if (!q)
                return false;
        for (unsigned i = 0; i < r->q_len; i++)
                q[i] = r->queue[(r->q_head + i) % r->q_cap];
        free(r->queue);
        r->queue = q;
        r->q_cap = cap;
        r->q_head = 0;
        return true;
}

static void enqueue(ps_replica *r, const pd_event *ev) {
        queued_event *q;

        if (r->q_len == r->q_cap && !queue_grow(r)) {
                /* Cannot happen with the machine's bounded fan-out; losing an
                 * event silently would be worse than saying so. */
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "event queue full: event dropped",
                     PS_FIELD_STR("event", pd_event_type_to_string(ev->type)));
                return;
        }
        q = &r->queue[(r->q_head + r->q_len++) % r->q_cap];
        q->ev = *ev;
        q->detail[0] = '\0';
        if (ev->detail)
                snprintf(q->detail, sizeof(q->detail), "%s", ev->detail);
        q->ev.detail = q->detail[0] ? q->detail : NULL;
}

int ps_replica_feed(ps_replica *r, const pd_event *ev) {
        enqueue(r, ev);
        run(r);
        return 0;
}

void ps_replica_kick(ps_replica *r) {
        run(r);
}

static void feed_simple(ps_replica *r, pd_event_type type, pd_instance_id id,
                        const char *detail) {
        pd_event ev = { .type = type, .instance = id, .detail = detail };

        enqueue(r, &ev);
}

/* ---- leases ------------------------------------------------------------- */

uint32_t ps_replica_slots(const ps_replica *r) {
        return r->current->slots;
}

uint32_t ps_replica_leases(const ps_replica *r) {
        return pd_sat_add_u32(r->inst[PD_INSTANCE_PRIMARY].leases,
                              r->inst[PD_INSTANCE_SURGE].leases);
}

uint32_t ps_replica_inst_leases(const ps_replica *r, pd_instance_id inst) {
        return r->inst[inst].leases;
}

int ps_replica_lease_add(ps_replica *r, pd_instance_id inst) {
        pd_slots slots = { .total = r->current->slots, .leased = r->inst[inst].leases };

        if (pd_slots_acquire(&slots) != 0)
                return PS_E_NO_SLOT;
        r->inst[inst].leases = slots.leased;
        return 0;
}

void ps_replica_lease_remove(ps_replica *r, pd_instance_id inst) {
        if (r->inst[inst].leases > 0)
                r->inst[inst].leases--;
}

uint32_t ps_replica_take_leases_dropped(ps_replica *r) {
        uint32_t n = r->leases_dropped;

        r->leases_dropped = 0;
        return n;
}

/* Ends the leases held on one engine instance by force (drain deadline,
 * engine gone); they count as dropped. */
static void drop_leases(ps_replica *r, pd_instance_id inst) {
        uint32_t counted = r->inst[inst].leases;
        const ps_field fields[] = {
                PS_FIELD_STR("lease", "dropped"),
                PS_FIELD_STR("reason", NULL),
                PS_FIELD_INT("leases", counted),
        };
        ps_event ev = {
                .type = PS_EVENT_LEASE,
                .level = PS_LOG_WARN,
                .pool_id = r->pool_id,
                .replica_id = r->replica_id,
                .message = "leases ended by force",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        if (r->owner.drop_leases)
                r->owner.drop_leases(r, inst, r->owner.userdata);
        r->inst[inst].leases = 0;
        if (counted == 0)
                return;
        r->leases_dropped = pd_sat_add_u32(r->leases_dropped, counted);
        ps_event_emit(&r->ctx->sink, &ev);
}

/* ---- probes ------------------------------------------------------------- */

static void probe_send(replica_inst *in);

static bool inst_ready(const replica_inst *in) {
        return in->owner->lc.inst[in->id].ready_at_ms != 0;
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

static int64_t loading_probe_delay(replica_inst *in, int64_t now) {
        int64_t delay = in->probe_delay_ms;

        if (in->probe_delay_ms < LOAD_FAST_INTERVAL_MS)
                in->probe_delay_ms = in->probe_delay_ms * 2 > LOAD_FAST_INTERVAL_MS ?
                                     LOAD_FAST_INTERVAL_MS : in->probe_delay_ms * 2;
        else if (now - in->probe_started_ms >= LOAD_FAST_PHASE_MS)
                in->probe_delay_ms = LOAD_SLOW_INTERVAL_MS;
        return delay;
}

static void probe_schedule(replica_inst *in, int64_t delay_ms) {
        struct timeval tv = ms_to_tv(delay_ms);

        evtimer_add(in->probe_timer, &tv);
}

/*
 * Once ready, probes keep their cadence: the next is due one interval
 * after the previous was sent, however long its answer took, so a hung
 * engine is caught after failure_threshold x interval (plus at most one
 * timeout), not threshold x (interval + timeout).
 */
static int64_t steady_delay(replica_inst *in) {
        int64_t due = in->last_probe_ms + policy(in->owner)->health.interval_ms - mono_now(in->owner);

        return due > 0 ? due : 0;
}

static const ps_engine_spec *probed_spec(const replica_inst *in) {
        const ps_replica *r = in->owner;

        return in->id == PD_INSTANCE_SURGE && r->staged ? r->staged : r->current;
}

/*
 * A first 200 counts once the engine is seen holding the socket that
 * answered (health.verify_listener): another program on the port answers
 * too. Until then the engine is not ready, and last_error says who
 * listens. When it cannot be told (no sock_diag), the 200 counts.
 */
static bool listener_verified(replica_inst *in) {
        ps_replica *r = in->owner;
        const ps_engine_spec *spec = probed_spec(in);
        char why[PD_ACTION_TEXT_MAX];
        int rc;

        if (!ps_policy_verify_listener(r->policy))
                return true;
        rc = ps_engine_serves(in->engine, spec->host ? spec->host : "127.0.0.1", spec->port,
                              why, sizeof(why));
        if (rc != -EADDRNOTAVAIL && rc != -ESRCH)
                return true;
        if (strcmp(r->lc.last_error, why) != 0) {
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN, "health probe not counted",
                     PS_FIELD_STR("error", why));
                snprintf(r->lc.last_error, sizeof(r->lc.last_error), "%s", why);
                r->lc.last_error_cls = PD_CRASH_CLASS_MAX;
                r->lc.last_error_at_ms = mono_now(r);
        }
        return false;
}

static void on_probe(ps_probe_result result, long http_status, const char *detail,
                     void *userdata) {
        replica_inst *in = userdata;
        ps_replica *r = in->owner;
        const pd_policy *p = policy(r);
        int64_t now = mono_now(r);
        pd_event_type type;

        in->probe = NULL;
        if (!in->probing)
                return;

        if (!inst_ready(in)) {
                /* Loading: a changing answer is progress; 200 is readiness. */
                if (http_status != in->last_http_status) {
                        in->last_http_status = http_status;
                        in->last_progress_ms = now;
                }
                if (result == PS_PROBE_OK && listener_verified(in)) {
                        feed_simple(r, PD_EV_PROBE_OK, in->id, NULL);
                        run(r);
                        /* ready now: the steady schedule takes over */
                        if (in->probing && !in->probe && !evtimer_pending(in->probe_timer, NULL))
                                probe_schedule(in, steady_delay(in));
                        return;
                }
                if (p->health.stall_timeout_ms > 0 &&
                    now - in->last_progress_ms >= p->health.stall_timeout_ms) {
                        char why[REPLICA_DETAIL_MAX];

                        snprintf(why, sizeof(why), "no output and no change in health answer for %lld ms",
                                 (long long) (now - in->last_progress_ms));
                        in->last_progress_ms = now;
                        feed_simple(r, PD_EV_STALL, in->id, why);
                        run(r);
                        if (!in->probing)
                                return;
                }
                if (in->probe_again) {
                        in->probe_again = false;
                        probe_send(in);
                        return;
                }
                probe_schedule(in, loading_probe_delay(in, now));
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
        if (type != PD_EV_PROBE_OK)
                EMIT(r, PS_EVENT_PROBE_FAILED, PS_LOG_WARN, "health probe failed",
                     PS_FIELD_STR("detail", detail),
                     PS_FIELD_INT("consecutive", r->lc.inst[in->id].probe_failures + 1));
        feed_simple(r, type, in->id, detail);
        run(r);
        if (in->probing && !in->probe && !evtimer_pending(in->probe_timer, NULL))
                probe_schedule(in, steady_delay(in));
}

static void probe_send(replica_inst *in) {
        ps_replica *r = in->owner;
        const ps_engine_spec *spec = probed_spec(in);
        const pd_policy *p = policy(r);
        char url[512];
        int64_t timeout = p->health.timeout_ms > 0 ? p->health.timeout_ms : 1000;
        int rc;

        if (in->probe) {
                in->probe_again = true;
                return;
        }
        ps_engine_spec_url(spec, url, sizeof(url) - 256);
        strncat(url, ps_policy_health_path(r->policy), sizeof(url) - strlen(url) - 1);
        in->last_probe_ms = mono_now(r);
        rc = ps_prober_get(r->ctx->prober, url, timeout, on_probe, in, &in->probe);
        if (rc < 0) {
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "cannot start health probe",
                     PS_FIELD_STR("url", url), PS_FIELD_STR("error", strerror(-rc)));
                probe_schedule(in, p->health.interval_ms);
        }
}

static void on_probe_timer(evutil_socket_t fd, short what, void *userdata) {
        replica_inst *in = userdata;

        (void) fd;
        (void) what;
        if (in->probing)
                probe_send(in);
}

static void probe_start(replica_inst *in) {
        in->probing = true;
        in->probe_again = false;
        in->probe_delay_ms = 5;
        in->probe_started_ms = mono_now(in->owner);
        in->last_http_status = -1;
        in->last_progress_ms = mono_now(in->owner);
        evtimer_del(in->probe_timer);
        probe_send(in);
}

static void probe_stop(replica_inst *in) {
        in->probing = false;
        in->probe_again = false;
        evtimer_del(in->probe_timer);
        if (in->probe) {
                ps_probe_cancel(in->probe);
                in->probe = NULL;
        }
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

/* The GPUs the replica's engine runs on; false when it names none. */
static bool gpu_mask(const ps_replica *r, ps_device_mask *m) {
        const char *text = ps_replica_device_mask(r);

        return text && ps_inventory_parse_mask(NULL, text, m, NULL, 0) == 0 && !m->none;
}

void ps_replica_share_trouble(ps_replica *r, const ps_replica *from, const char *why) {
        ps_device_mask theirs, mine;

        if (r == from || r->lc.external || !ps_replica_engine_running(r) ||
            !gpu_mask(from, &theirs) || !gpu_mask(r, &mine) ||
            !ps_device_mask_overlaps(&theirs, &mine, NULL))
                return;
        EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "driver error on a shared GPU: restarting",
             PS_FIELD_STR("from_pool", from->pool_id),
             PS_FIELD_STR("from_replica", from->replica_id),
             PS_FIELD_STR("line", why));
        ps_replica_driver_reset(r, why);
}

/*
 * A driver error is the device's, not one engine's (the GPU fell off the
 * bus, the driver and library disagree): the owner resets every other
 * replica with one of its GPUs, which restarts with backoff once it can.
 */
static void spread_driver_trouble(ps_replica *r, const char *why) {
        ps_device_mask m;

        if (r->owner.device_trouble && gpu_mask(r, &m))
                r->owner.device_trouble(r, why, r->owner.userdata);
}

static void on_log_line(const char *line, size_t len, void *userdata) {
        replica_inst *in = userdata;
        ps_replica *r = in->owner;
        pd_crash_class cls;
        int64_t now = mono_now(r);

        if (len == 0)
                return;
        snprintf(in->last_line, sizeof(in->last_line), "%.*s", (int) len, line);
        in->last_progress_ms = now;
        if (pd_crash_scan_line(line, len, &cls)) {
                pd_event ev = { .type = PD_EV_LOG_ERROR, .instance = in->id, .cls = cls,
                                .detail = in->last_line };

                EMIT(r, PS_EVENT_ENGINE_LOG_ERROR, cls == PD_CRASH_VRAM_OOM ? PS_LOG_WARN : PS_LOG_ERROR,
                     "engine reported an error",
                     PS_FIELD_STR("class", pd_crash_class_to_string(cls)),
                     PS_FIELD_STR("line", in->last_line));
                /* Before r's own step, which may end with r freed. */
                if (cls == PD_CRASH_DRIVER_ERROR)
                        spread_driver_trouble(r, in->last_line);
                enqueue(r, &ev);
                run(r);
                return;
        }
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
static void exit_cause(replica_inst *in, const ps_engine *engine, char *buf, size_t size) {
        char line[REPLICA_DETAIL_MAX] = "";
        pd_log_line one;

        if (ps_logtail_cause(in->tail, buf, size) && buf[0])
                return;
        if (ps_engine_last_log_line(engine, line, sizeof(line)) < 0 || !line[0])
                snprintf(line, sizeof(line), "%s", in->last_line);
        one = (pd_log_line) { .text = line, .len = strlen(line) };
        pd_log_cause_pick(&one, 1, buf, size);
}

static void on_engine_exit(ps_engine *engine, const ps_exit_status *st, void *userdata) {
        replica_inst *in = userdata;
        ps_replica *r = in->owner;
        pd_event ev = { .type = PD_EV_EXITED, .instance = in->id };
        uint64_t oom_after = 0;
        char detail[REPLICA_DETAIL_MAX] = "";
        int64_t uptime_ms = wall_now(r) - in->started_wall_ms;

        if (in->tail)
                ps_logtail_drain(in->tail);   /* the last words come first */
        exit_cause(in, engine, detail, sizeof(detail));
        in->tail = ps_logtail_free(in->tail);
        probe_stop(in);
        in->engine = NULL;
        in->dead = engine;
        ps_replica_note_engine(r, PS_ENGINE_GONE, in->id, NULL, NULL);

        r->last_exit_known = true;
        r->last_exit = *st;
        r->last_uptime_ms = uptime_ms;
        ev.exit = (pd_exit) { .exited = st->exited, .code = st->code, .signo = st->signo,
                              .status_unknown = st->status_unknown };
        if (in->oom_known && read_oom_kill(&oom_after) &&
            pd_crash_is_host_oom(&ev.exit, in->oom_kill_before, oom_after))
                ev.cls = PD_CRASH_HOST_OOM;
        ev.detail = detail[0] ? detail : NULL;

        EMIT(r, PS_EVENT_ENGINE_EXITED, r->lc.inst[in->id].exit_expected ? PS_LOG_INFO : PS_LOG_ERROR, "engine exited",
             PS_FIELD_INT("pid", ps_engine_pid(engine)),
             PS_FIELD_STR("engine_version", engine_version(r)),
             st->exited ? PS_FIELD_INT("exit_code", st->code) : PS_FIELD_STR("exit_code", NULL),
             st->exited ? PS_FIELD_STR("signal", NULL) : PS_FIELD_STR("signal", pd_signal_name(st->signo)),
             PS_FIELD_INT("uptime_s", uptime_ms / 1000),
             PS_FIELD_STR("last_line", ev.detail),
             PS_FIELD_STR("expected", r->lc.inst[in->id].exit_expected ? "true" : "false"));

        if (ev.cls == PD_CRASH_HOST_OOM) {
                /* evidence for the classifier: the kernel killed it */
                pd_event hint = { .type = PD_EV_LOG_ERROR, .instance = in->id,
                                  .cls = PD_CRASH_HOST_OOM };
                enqueue(r, &hint);
        }
        ev.cls = PD_CRASH_CLASS_MAX;
        enqueue(r, &ev);
        run(r);
}

/* ---- actions -------------------------------------------------------------- */

/*
 * A start that failed: the node's fault (descriptors, disk, memory, the
 * runtime directory) is fed as a node error, retried on its own schedule
 * and never counted as a crash; anything else is the engine's spawn
 * failure. rc is the negative errno.
 */
static void spawn_failed(ps_replica *r, unsigned instance, int rc, const char *binary,
                         const char *message, const char *err) {
        pd_event ev = { .type = PD_EV_SPAWN_FAILED, .instance = instance, .detail = err };
        pd_node_error_kind kind;
        /* no binary: the failure is the runtime directory's */
        bool node = pd_node_error_classify(-rc, binary == NULL, &kind);

        EMIT(r, PS_EVENT_SPAWN_FAILED, PS_LOG_ERROR, message, PS_FIELD_STR("error", err),
             PS_FIELD_STR("binary", binary),
             PS_FIELD_STR("node_error", node ? pd_node_error_kind_to_string(kind) : NULL));
        if (node)
                ev.cls = PD_CRASH_NODE_ERROR;
        enqueue(r, &ev);
}

/*
 * The runtime directory was deleted while the daemon ran (a tmp cleaner,
 * an operator): make it again, ours alone, rather than fail the start, and
 * say what was lost with it. A directory that fails the check, or that the
 * daemon cannot write in, fails the start as a node error. 0, or -1 with
 * the failure fed.
 */
static int runtime_dir_ready(ps_replica *r, unsigned instance) {
        char err[512];
        bool recreated = false;
        int rc;

        rc = ps_private_dir_again(r->ctx->runtime_dir, &recreated, err, sizeof(err));
        if (rc == 0 && faccessat(AT_FDCWD, r->ctx->runtime_dir, W_OK | X_OK, AT_EACCESS) < 0) {
                rc = -errno;
                snprintf(err, sizeof(err), "runtime directory %s is not writable: %s",
                         r->ctx->runtime_dir, strerror(-rc));
        }
        if (rc < 0) {
                spawn_failed(r, instance, rc, NULL, "cannot use the runtime directory", err);
                return -1;
        }
        if (recreated) {
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN,
                     "runtime directory was gone and has been made again: the PID files, engine "
                     "logs, handoff files and API socket in it were lost",
                     PS_FIELD_STR("runtime_dir", r->ctx->runtime_dir));
                if (r->ctx->runtime_dir_recreated)
                        r->ctx->runtime_dir_recreated(r->ctx->runtime_dir_userdata);
        }
        return 0;
}

static void act_spawn(ps_replica *r, const pd_action *a) {
        replica_inst *in = &r->inst[a->instance];
        const ps_engine_spec *spec = a->spec == PD_SPEC_STAGED && r->staged ? r->staged : r->current;
        ps_engine_options opts = {
                .runtime_dir = r->ctx->runtime_dir,
                .run_as_user = r->ctx->engine_user,
                .env_pass = r->ctx->engine_env_pass,
                .n_env_pass = r->ctx->n_engine_env_pass,
        };
        char err[REPLICA_DETAIL_MAX] = "";
        char surge_pid[PATH_MAX], surge_log[PATH_MAX];
        int rc;

        in->dead = ps_engine_free(in->dead);
        in->tail = ps_logtail_free(in->tail);
        in->last_line[0] = '\0';
        if (spec->port != r->home_port) {
                /* An engine on the spare port (a surge reload) must not
                 * clobber the files of the one on the home port: the files
                 * follow the port, so the two never share them. */
                snprintf(surge_pid, sizeof(surge_pid), "%s_%s.surge.pid", spec->pool_id, spec->replica_id);
                snprintf(surge_log, sizeof(surge_log), "engine-%s_%s.surge.log", spec->pool_id,
                         spec->replica_id);
                opts.pid_name = surge_pid;
                opts.log_name = surge_log;
        }
        /* The first start of a replica takes over an engine a previous
         * daemon left running, before preflight counts its VRAM as taken:
         * the one the state store recorded, else the one its PID file
         * names. */
        if (!r->started_once && (r->ctx->engine_recorded || spec->port == r->home_port)) {
                ps_engine_identity id;

                r->started_once = true;
                if (!r->ctx->engine_recorded)
                        rc = ps_engine_adopt(r->ctx->base, spec, &opts, on_engine_exit, in,
                                             &in->engine, err, sizeof(err));
                else if (r->ctx->engine_recorded(r, &id, r->ctx->engine_userdata) == 0)
                        rc = ps_engine_adopt_recorded(r->ctx->base, spec, &opts, &id, on_engine_exit,
                                                      in, &in->engine, err, sizeof(err));
                else
                        rc = -ENOENT;
                if (rc == 0) {
                        ps_replica_note_engine(r, PS_ENGINE_UP, a->instance, in->engine, spec);
                        in->started_wall_ms = wall_now(r);
                        in->tail = ps_logtail_new(r->ctx->base, ps_engine_log_path(in->engine),
                                                  ps_engine_log_start(in->engine), on_log_line, in);
                        EMIT(r, PS_EVENT_ENGINE_SPAWNED, PS_LOG_INFO, "engine adopted",
                             PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
                             PS_FIELD_STR("engine", spec->engine),
                             PS_FIELD_STR("engine_version", spec->engine_version),
                             PS_FIELD_STR("device_mask", spec->device_mask),
                             PS_FIELD_STR("model_id", spec->model_id));
                        feed_simple(r, PD_EV_SPAWNED, a->instance, NULL);
                        return;
                }
                /* A PID file naming someone else's process (another user's,
                 * or through a symlink) is not ours to take over: say so. */
                if (rc == -EPERM || rc == -ESTALE)
                        EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN, "engine not adopted",
                             PS_FIELD_STR("error", err));
                err[0] = '\0';
        }
        rc = r->ctx->preflight ? r->ctx->preflight(spec, r->ctx->preflight_userdata, err,
                                                   sizeof(err)) : 0;
        if (rc != 0) {
                /* The refusal's own code goes back to whoever waits for
                 * the start; a check that broke is a refusal too. */
                pd_event ev = { .type = PD_EV_PREFLIGHT_FAILED, .instance = a->instance,
                                .refusal = rc > 0 ? rc : PS_E_PREFLIGHT, .detail = err };

                EMIT(r, PS_EVENT_SPAWN_FAILED, PS_LOG_ERROR, "preflight refused the start",
                     PS_FIELD_STR("error", err), PS_FIELD_STR("device_mask", spec->device_mask));
                enqueue(r, &ev);
                return;
        }
        if (runtime_dir_ready(r, a->instance) < 0)
                return;
        in->oom_known = read_oom_kill(&in->oom_kill_before);
        ps_replica_note_engine(r, PS_ENGINE_STARTING, a->instance, NULL, spec);
        rc = ps_engine_spawn(r->ctx->base, spec, &opts, on_engine_exit, in, &in->engine,
                             err, sizeof(err));
        if (rc < 0) {
                spawn_failed(r, a->instance, rc, spec->binary_path, "engine spawn failed", err);
                return;
        }
        in->started_wall_ms = wall_now(r);
        ps_replica_note_engine(r, PS_ENGINE_UP, a->instance, in->engine, spec);
        in->tail = ps_logtail_new(r->ctx->base, ps_engine_log_path(in->engine),
                                  ps_engine_log_start(in->engine), on_log_line, in);
        if (!in->tail)
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_WARN, "cannot follow engine log; CUDA errors in it go unnoticed",
                     PS_FIELD_STR("path", ps_engine_log_path(in->engine)),
                     PS_FIELD_STR("error", strerror(errno)));
        EMIT(r, PS_EVENT_ENGINE_SPAWNED, PS_LOG_INFO, "engine spawned",
             PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
             PS_FIELD_STR("engine", spec->engine),
             PS_FIELD_STR("engine_version", spec->engine_version),
             PS_FIELD_STR("device_mask", spec->device_mask),
             PS_FIELD_STR("model_id", spec->model_id),
             PS_FIELD_INT("restart_count", r->lc.restart_count));
        feed_simple(r, PD_EV_SPAWNED, a->instance, NULL);
}

static void act_signal(ps_replica *r, const pd_action *a, int signo) {
        replica_inst *in = &r->inst[a->instance];

        if (!in->engine)
                return;
        EMIT(r, PS_EVENT_GENERIC, signo == SIGKILL ? PS_LOG_WARN : PS_LOG_INFO,
             signo == SIGKILL ? "stop grace over: killing engine" : "stopping engine",
             PS_FIELD_INT("pid", ps_engine_pid(in->engine)),
             PS_FIELD_STR("signal", pd_signal_name(signo)));
        (void) ps_engine_signal(in->engine, signo);
}

static void act_timer(ps_replica *r, const pd_action *a) {
        replica_timer *t = &r->timers[a->timer][a->instance];
        struct timeval tv;

        if (a->type == PD_ACT_TIMER_CANCEL) {
                evtimer_del(t->ev);
                return;
        }
        tv = ms_to_tv(a->at_ms - mono_now(r));
        evtimer_add(t->ev, &tv);
}

static void act_write_handoff(ps_replica *r) {
        ps_handoff h = {
                .spec = r->current,
                .pid = r->inst[PD_INSTANCE_PRIMARY].engine ?
                       ps_engine_pid(r->inst[PD_INSTANCE_PRIMARY].engine) : 0,
                .slots_free = pd_sat_sub_u32(r->current->slots,
                                             r->inst[PD_INSTANCE_PRIMARY].leases),
        };
        char err[REPLICA_DETAIL_MAX];

        if (ps_handoff_write(ps_handoff_dir(r->ctx, (char[PATH_MAX]) { "" }, PATH_MAX), &h,
                             err, sizeof(err)) < 0)
                EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "cannot write handoff", PS_FIELD_STR("error", err));
}

static void act_stage(ps_replica *r) {
        char why[REPLICA_DETAIL_MAX];
        pd_event ev = { .type = PD_EV_RELOAD_STAGED, .ok = true };

        if (!r->staged) {
                ev.ok = false;
                ev.detail = "nothing staged";
        } else if (r->staged->model_path && access(r->staged->model_path, R_OK) < 0) {
                snprintf(why, sizeof(why), "model %s: %s", r->staged->model_path, strerror(errno));
                ev.ok = false;
                ev.detail = why;
        }
        enqueue(r, &ev);
}

/* The surge engine becomes the primary. Every callback (exit, log lines,
 * probe timer) holds a pointer to the slot, not to its contents, so each
 * is pointed at the slot its engine moves to; a probe in flight is
 * cancelled and sent again. */
static void swap_inst(ps_replica *r) {
        replica_inst tmp;

        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                evtimer_del(r->inst[i].probe_timer);
                if (r->inst[i].probe) {
                        ps_probe_cancel(r->inst[i].probe);
                        r->inst[i].probe = NULL;
                }
        }
        tmp = r->inst[PD_INSTANCE_PRIMARY];
        r->inst[PD_INSTANCE_PRIMARY] = r->inst[PD_INSTANCE_SURGE];
        r->inst[PD_INSTANCE_SURGE] = tmp;
        /* The surge engine serves from now on: the replica's ready_at is
         * its, not the moment the old one has finished retiring. */
        r->ready_wall_ms = wall_now(r);
        r->promoted = true;
        ps_replica_note_engine(r, PS_ENGINE_SWAPPED, PD_INSTANCE_PRIMARY, NULL, NULL);
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                replica_inst *in = &r->inst[i];

                in->id = (pd_instance_id) i;
                event_assign(in->probe_timer, r->ctx->base, -1, 0, on_probe_timer, in);
                if (in->engine)
                        ps_engine_set_userdata(in->engine, in);
                if (in->tail)
                        ps_logtail_set_userdata(in->tail, in);
                if (in->probing)
                        probe_schedule(in, policy(r)->health.interval_ms);
        }
}

static void act_alert(ps_replica *r, const pd_action *a) {
        ps_log_level level = PS_LOG_WARN;

        switch (a->alert) {
        case PD_ALERT_STORM:
                level = PS_LOG_CRITICAL;
                break;
        case PD_ALERT_BREAKER_OPENED:
                level = PS_LOG_ERROR;
                break;
        case PD_ALERT_BREAKER_CLOSED:
                level = PS_LOG_INFO;
                break;
        case PD_ALERT_STORM_WARNING:
        case PD_ALERT_THROTTLED:
        case PD_ALERT_MAX:
                break;
        }
        EMIT(r, PS_EVENT_ALERT, level, a->text,
             PS_FIELD_STR("alert", pd_alert_to_string(a->alert)),
             PS_FIELD_STR("class", a->cls < PD_CRASH_CLASS_MAX ? pd_crash_class_to_string(a->cls) : NULL),
             PS_FIELD_STR("storm", a->alert == PD_ALERT_STORM ? pd_storm_kind_to_string(a->storm_kind) : NULL),
             PS_FIELD_STR("hint", a->alert == PD_ALERT_STORM ? pd_storm_kind_hint(a->storm_kind) : NULL),
             PS_FIELD_INT("restart_count", r->lc.restart_count),
             PS_FIELD_INT("crash_count", r->lc.crash_count));
}

/* One line per change of a circuit's state. Generic, not an alert: the
 * alerts breaker_opened and breaker_closed are what metrics count. */
static void act_breaker_transition(ps_replica *r, const pd_action *a) {
        EMIT(r, PS_EVENT_GENERIC, a->breaker_to == PD_BREAKER_OPEN ? PS_LOG_WARN : PS_LOG_INFO,
             "breaker transition",
             PS_FIELD_STR("old_state", pd_breaker_state_to_string(a->breaker_from)),
             PS_FIELD_STR("new_state", pd_breaker_state_to_string(a->breaker_to)),
             PS_FIELD_INT("failure_count", a->failures),
             PS_FIELD_STR("circuit", pd_crash_family_to_string(a->circuit)));
}

typedef struct reply_out {
        pending_reply to;
        int rc;
        char text[PD_ACTION_TEXT_MAX];
} reply_out;

/* What the machine's answer means to whoever waits: 0 or the PS_E_* of
 * ps_done_fn. A stop that came first fails a preload like any start that
 * did not come up, and makes a drain or reload impossible. */
static int reply_code(pd_reply reply, pd_outcome outcome, int refusal) {
        switch (outcome) {
        case PD_OUTCOME_OK:
                return 0;
        case PD_OUTCOME_PREFLIGHT:
                return refusal > 0 ? refusal : PS_E_PREFLIGHT;
        case PD_OUTCOME_STARTUP_TIMEOUT:
                return PS_E_HEALTH_CHECK;
        case PD_OUTCOME_SPAWN_FAILED:
        case PD_OUTCOME_CRASHED:
                return PS_E_START_FAILED;
        case PD_OUTCOME_STAGE_FAILED:
                return PS_E_STAGE_FAILED;
        case PD_OUTCOME_DRAIN_TIMEOUT:
                return PS_E_DRAIN_TIMEOUT;
        case PD_OUTCOME_ROLLED_BACK:
                return PS_E_RELOAD_FAILED;
        case PD_OUTCOME_ROLLBACK_FAILED:
                return PS_E_ROLLBACK_FAILED;
        case PD_OUTCOME_ENGINE_FAILED:
                return PS_E_ENGINE_FAILED;
        case PD_OUTCOME_STOPPED:
        case PD_OUTCOME_MAX:
                break;
        }
        return reply == PD_REPLY_PRELOAD ? PS_E_START_FAILED : PS_E_CONFLICT;
}

static void execute(ps_replica *r, const pd_action *a, reply_out *replies, size_t *n_replies) {
        replica_inst *in = &r->inst[a->instance];
        bool ok;

        switch (a->type) {
        case PD_ACT_SPAWN:
                act_spawn(r, a);
                break;
        case PD_ACT_PROBE_START:
                probe_start(in);
                break;
        case PD_ACT_PROBE_STOP:
                probe_stop(in);
                break;
        case PD_ACT_SIGNAL_TERM:
                act_signal(r, a, SIGTERM);
                break;
        case PD_ACT_SIGNAL_KILL:
                act_signal(r, a, SIGKILL);
                break;
        case PD_ACT_TIMER_ARM:
        case PD_ACT_TIMER_CANCEL:
                act_timer(r, a);
                break;
        case PD_ACT_WRITE_HANDOFF:
                act_write_handoff(r);
                break;
        case PD_ACT_REMOVE_HANDOFF:
                (void) ps_handoff_remove(ps_handoff_dir(r->ctx, (char[PATH_MAX]) { "" }, PATH_MAX),
                                         r->pool_id, r->replica_id);
                break;
        case PD_ACT_STAGE:
                act_stage(r);
                break;
        case PD_ACT_COMMIT_STAGED:
                if (r->staged) {
                        ps_engine_spec_free(r->current);
                        r->current = r->staged;
                        r->staged = NULL;
                }
                break;
        case PD_ACT_DISCARD_STAGED:
                r->staged = ps_engine_spec_free(r->staged);
                break;
        case PD_ACT_PROMOTE_SURGE:
                swap_inst(r);
                if (r->owner.leases_moved)
                        r->owner.leases_moved(r, r->owner.userdata);
                break;
        case PD_ACT_DROP_LEASES:
                drop_leases(r, a->instance);
                break;
        case PD_ACT_REPLY:
                ok = a->outcome == PD_OUTCOME_OK;
                EMIT(r, PS_EVENT_REQUEST_DONE, ok ? PS_LOG_INFO : PS_LOG_ERROR,
                     ok ? "request finished" : "request failed",
                     PS_FIELD_STR("request", pd_reply_to_string(a->reply)),
                     PS_FIELD_STR("ok", ok ? "true" : "false"),
                     PS_FIELD_STR("outcome", a->text),
                     PS_FIELD_STR("force_stopped", a->reply == PD_REPLY_DRAIN ?
                                  (a->force_stopped ? "true" : "false") : NULL));
                if (a->reply < PD_REPLY_MAX && r->pending[a->reply].fn && *n_replies < 4) {
                        reply_out *o = &replies[(*n_replies)++];

                        o->to = r->pending[a->reply];
                        o->rc = reply_code(a->reply, a->outcome, a->refusal);
                        snprintf(o->text, sizeof(o->text), "%s", a->text + a->reason_at);
                        r->pending[a->reply] = (pending_reply) { 0 };
                }
                break;
        case PD_ACT_ALERT:
                act_alert(r, a);
                break;
        case PD_ACT_BREAKER_TRANSITION:
                act_breaker_transition(r, a);
                break;
        case PD_ACTION_TYPE_MAX:
                break;
        }
}

/* One log line per decision an operator cares about. */
static void report_transition(ps_replica *r, pd_state before, unsigned crashes_before) {
        const pd_lifecycle *lc = &r->lc;

        /* A stable run sets crash_count back to 0: only a rise is a failure. */
        if (lc->crash_count > crashes_before) {
                /* One line with the whole decision: what happened, what
                 * it counts as, and what comes next. */
                bool exited = r->last_exit_known;
                const ps_exit_status *st = &r->last_exit;

                EMIT(r, PS_EVENT_ENGINE_FAILED, PS_LOG_ERROR, "engine failed",
                     PS_FIELD_STR("engine_version", engine_version(r)),
                     PS_FIELD_STR("class", pd_crash_class_to_string(lc->last_error_cls)),
                     PS_FIELD_STR("last_error", lc->last_error),
                     exited && st->exited ? PS_FIELD_INT("exit_code", st->code) : PS_FIELD_STR("exit_code", NULL),
                     exited && !st->exited ? PS_FIELD_STR("signal", pd_signal_name(st->signo))
                                           : PS_FIELD_STR("signal", NULL),
                     exited ? PS_FIELD_INT("uptime_s", r->last_uptime_ms / 1000) : PS_FIELD_STR("uptime_s", NULL),
                     PS_FIELD_INT("crash_count", lc->crash_count),
                     PS_FIELD_INT("restart_count", lc->restart_count),
                     PS_FIELD_STR("state", pd_state_to_string(lc->state)),
                     PS_FIELD_INT("backoff_ms", lc->backoff_ms),
                     lc->next_restart_at_ms ? PS_FIELD_INT("next_restart_at", mono_to_wall(r, lc->next_restart_at_ms))
                                            : PS_FIELD_STR("next_restart_at", NULL));
                r->last_exit_known = false;
        }
        if (lc->state == before)
                return;
        if (lc->state != PD_STATE_READY && lc->state != PD_STATE_RELOADING)
                r->promoted = false;   /* the surge did not end in ready */
        if (lc->state == PD_STATE_READY && r->inst[PD_INSTANCE_PRIMARY].engine) {
                if (!r->promoted)
                        r->ready_wall_ms = wall_now(r);
                r->promoted = false;
                r->last_heartbeat_wall_ms = wall_now(r);
                EMIT(r, PS_EVENT_READY, PS_LOG_INFO, "ready",
                     PS_FIELD_INT("pid", ps_engine_pid(r->inst[PD_INSTANCE_PRIMARY].engine)),
                     PS_FIELD_STR("engine_version", engine_version(r)),
                     PS_FIELD_STR("device_mask", r->current->device_mask),
                     PS_FIELD_INT("startup_ms", r->ready_wall_ms -
                                                r->inst[PD_INSTANCE_PRIMARY].started_wall_ms));
        } else if (lc->state == PD_STATE_BACKOFF) {
                EMIT(r, PS_EVENT_RESTART_SCHEDULED, PS_LOG_WARN, "restart scheduled",
                     PS_FIELD_STR("engine_version", engine_version(r)),
                     PS_FIELD_INT("backoff_ms", lc->backoff_ms),
                     PS_FIELD_INT("next_restart_at", mono_to_wall(r, lc->next_restart_at_ms)),
                     PS_FIELD_INT("crash_count", lc->crash_count),
                     PS_FIELD_INT("restart_count", lc->restart_count));
        } else if (lc->state == PD_STATE_FAILED) {
                EMIT(r, PS_EVENT_STATE_CHANGED, PS_LOG_ERROR, "state changed",
                     PS_FIELD_STR("from", pd_state_to_string(before)),
                     PS_FIELD_STR("state", pd_state_to_string(lc->state)),
                     PS_FIELD_STR("last_error", lc->last_error),
                     PS_FIELD_INT("crash_count", lc->crash_count),
                     PS_FIELD_INT("next_restart_at", mono_to_wall(r, lc->next_restart_at_ms)));
        } else {
                EMIT(r, PS_EVENT_STATE_CHANGED, PS_LOG_INFO, "state changed",
                     PS_FIELD_STR("from", pd_state_to_string(before)),
                     PS_FIELD_STR("state", pd_state_to_string(lc->state)));
        }
}

/*
 * What the leases mean for the machine once the queue is empty: an
 * instance it drains may have none left, and a stopped replica serves none
 * (a crashed engine's leases stay until then: the control plane may still
 * release them). Returns whether an event was queued.
 */
static bool queue_lease_events(ps_replica *r) {
        pd_instance_id id;

        if (r->lc.state == PD_STATE_STOPPED && ps_replica_leases(r) > 0)
                for (int i = 0; i < PD_INSTANCE_MAX; i++)
                        drop_leases(r, (pd_instance_id) i);
        if (!pd_lifecycle_awaits_leases(&r->lc, &id) || r->inst[id].leases > 0)
                return false;
        feed_simple(r, PD_EV_LEASES_ZERO, id, NULL);
        return true;
}

/*
 * Runs queued events through the machine until the queue is empty, then
 * answers the requests that finished. Answers go out last and nothing of r
 * is touched afterwards: a callback may free the replica.
 */
static void run(ps_replica *r) {
        reply_out replies[4];
        size_t n_replies = 0;
        pd_actions out;

        if (r->stepping)
                return;
        r->stepping = true;
        for (;;) {
                if (r->q_len == 0 && !queue_lease_events(r))
                        break;
                queued_event q = r->queue[r->q_head];
                pd_state before = r->lc.state;
                unsigned crashes = r->lc.crash_count;
                int rc;

                r->q_head = (r->q_head + 1) % r->q_cap;
                r->q_len--;
                q.ev.detail = q.detail[0] ? q.detail : NULL;
                rc = pd_lifecycle_step(&r->lc, policy(r), &q.ev, mono_now(r), &r->rng, &out);
                if (rc < 0)
                        EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "lifecycle refused an event",
                             PS_FIELD_STR("event", pd_event_type_to_string(q.ev.type)),
                             PS_FIELD_STR("error", strerror(-rc)));
                for (size_t i = 0; i < out.count; i++)
                        execute(r, &out.item[i], replies, &n_replies);
                report_transition(r, before, crashes);
        }
        r->stepping = false;
        /* What a request set in motion has played out. */
        if (r->correlation_id && (r->lc.state == PD_STATE_READY || r->lc.state == PD_STATE_FAILED ||
                                  r->lc.state == PD_STATE_STOPPED)) {
                free(r->correlation_id);
                r->correlation_id = NULL;
        }
        if (r->owner.settled)
                r->owner.settled(r, r->owner.userdata);
        for (size_t i = 0; i < n_replies; i++)
                replies[i].to.fn(replies[i].rc, replies[i].text, replies[i].to.userdata);
}

/* ---- timers ------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        replica_timer *t = userdata;
        pd_event ev = { .type = PD_EV_TIMER, .timer = t->timer, .instance = t->inst };

        (void) fd;
        (void) what;
        ps_replica_feed(t->owner, &ev);
}

/* ---- life of the record ------------------------------------------------ */

static uint64_t hash_ids(const char *a, const char *b) {
        return ps_fnv1a_str(ps_fnv1a_str(PS_FNV1A_INIT, a), b);
}

ps_replica *ps_replica_new(const ps_context *ctx, const ps_engine_spec *spec,
                           const ps_policy *pol, const ps_replica_owner *owner) {
        ps_replica *r = calloc(1, sizeof(*r));

        if (!r)
                return NULL;
        if (owner)
                r->owner = *owner;
        r->ctx = ctx;
        r->current = ps_engine_spec_copy(spec);
        r->policy = pol ? ps_policy_copy(pol) : ps_policy_new();
        r->pool_id = spec ? strdup(spec->pool_id) : NULL;
        r->home_port = spec ? spec->port : 0;
        r->replica_id = spec ? strdup(spec->replica_id) : NULL;
        if (!r->current || !r->policy || !r->pool_id || !r->replica_id)
                return ps_replica_free(r);
        pd_lifecycle_init(&r->lc);
        pd_rng_seed(&r->rng, ctx->seed ^ hash_ids(r->pool_id, r->replica_id));
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                replica_inst *in = &r->inst[i];

                in->owner = r;
                in->id = (pd_instance_id) i;
                in->probe_timer = evtimer_new(ctx->base, on_probe_timer, in);
                if (!in->probe_timer)
                        return ps_replica_free(r);
                for (int t = 0; t < PD_TIMER_MAX; t++) {
                        replica_timer *rt = &r->timers[t][i];

                        *rt = (replica_timer) { .owner = r, .timer = (pd_timer) t,
                                                .inst = (pd_instance_id) i };
                        rt->ev = evtimer_new(ctx->base, on_timer, rt);
                        if (!rt->ev)
                                return ps_replica_free(r);
                }
        }
        return r;
}

ps_replica *ps_replica_free(ps_replica *r) {
        if (!r)
                return NULL;
        /* Whoever waits for an answer gets one: the replica is gone. */
        for (int i = 0; i < PD_REPLY_MAX; i++) {
                pending_reply to = r->pending[i];

                r->pending[i] = (pending_reply) { 0 };
                if (to.fn)
                        to.fn(reply_code((pd_reply) i, PD_OUTCOME_STOPPED, 0),
                              "the replica was removed", to.userdata);
        }
        for (int i = 0; i < PD_INSTANCE_MAX; i++) {
                replica_inst *in = &r->inst[i];

                if (in->probe)
                        ps_probe_cancel(in->probe);
                if (in->probe_timer)
                        event_free(in->probe_timer);
                ps_logtail_free(in->tail);
                ps_engine_free(in->engine);   /* never kills: adoption */
                ps_engine_free(in->dead);
                for (int t = 0; t < PD_TIMER_MAX; t++)
                        if (r->timers[t][i].ev)
                                event_free(r->timers[t][i].ev);
        }
        ps_engine_spec_free(r->current);
        ps_engine_spec_free(r->staged);
        ps_policy_free(r->policy);
        free(r->pool_id);
        free(r->replica_id);
        free(r->correlation_id);
        free(r->queue);
        free(r->ext_url);
        free(r);
        return NULL;
}

bool ps_replica_engine_running(const ps_replica *r) {
        return r->inst[PD_INSTANCE_PRIMARY].engine || r->inst[PD_INSTANCE_SURGE].engine;
}

/* ---- operations --------------------------------------------------------- */

/* "pool <id> replica <id> <what>" into err; returns code. */
static int refuse(char *err, size_t errlen, int code, const char *what, const ps_replica *r) {
        if (err && errlen)
                snprintf(err, errlen, "pool %s replica %s %s", r->pool_id, r->replica_id, what);
        return code;
}

int ps_replica_preload(ps_replica *r, ps_done_fn done, void *userdata, char *err, size_t errlen) {
        return ps_replica_preload_spec(r, NULL, done, userdata, err, errlen);
}

int ps_replica_preload_spec(ps_replica *r, const ps_engine_spec *spec, ps_done_fn done,
                            void *userdata, char *err, size_t errlen) {
        ps_engine_spec *copy = NULL;
        pd_actions out;
        pd_event ev = { .type = PD_EV_PRELOAD };
        int rc;

        if (r->stepping)
                return -EBUSY;
        /* Try the transition first so a refusal leaves nothing pending. */
        {
                pd_lifecycle probe = r->lc;
                pd_rng rng = r->rng;

                rc = pd_lifecycle_step(&probe, policy(r), &ev, mono_now(r), &rng, &out);
        }
        if (rc == PD_E_BREAKER_OPEN)
                return refuse(err, errlen, PS_E_BREAKER_OPEN,
                              "cannot start: its circuit breaker is open", r);
        if (rc != 0)
                return refuse(err, errlen, PS_E_CONFLICT,
                              "is already running", r);
        /* Accepted: only now does the new spec replace the old one. */
        if (spec) {
                if (r->lc.external || ps_replica_engine_running(r))
                        return refuse(err, errlen, PS_E_CONFLICT, "is running", r);
                copy = ps_engine_spec_copy(spec);
                if (!copy)
                        return -ENOMEM;
                ps_engine_spec_free(r->current);
                r->current = copy;
        }
        r->pending[PD_REPLY_PRELOAD] = (pending_reply) { .fn = done, .userdata = userdata };
        return ps_replica_feed(r, &ev);
}

int ps_replica_set_correlation_id(ps_replica *r, const char *id) {
        char *copy = NULL;

        if (id && !(copy = strdup(id)))
                return -ENOMEM;
        free(r->correlation_id);
        r->correlation_id = copy;
        return 0;
}

int ps_replica_set_spec(ps_replica *r, const ps_engine_spec *spec, char *err, size_t errlen) {
        ps_engine_spec *copy;

        if (r->stepping || r->lc.external || ps_replica_engine_running(r) ||
            pd_lifecycle_live(&r->lc))
                return refuse(err, errlen, PS_E_CONFLICT, "is running", r);
        copy = ps_engine_spec_copy(spec);
        if (!copy)
                return -ENOMEM;
        ps_engine_spec_free(r->current);
        r->current = copy;
        return 0;
}

int ps_replica_stop(ps_replica *r, char *err, size_t errlen) {
        pd_event ev = { .type = PD_EV_STOP };

        if (!ps_replica_engine_running(r) && !r->lc.external &&
            (r->lc.state == PD_STATE_EMPTY || r->lc.state == PD_STATE_STOPPED))
                return refuse(err, errlen, PS_E_NOT_RUNNING,
                              "has no engine to stop", r);
        return ps_replica_feed(r, &ev);
}

int ps_replica_restart(ps_replica *r, char *err, size_t errlen) {
        pd_lifecycle probe = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;
        pd_event ev = { .type = PD_EV_RESTART };

        if (pd_lifecycle_step(&probe, policy(r), &ev, mono_now(r), &rng, &out) != 0)
                return refuse(err, errlen, PS_E_CONFLICT,
                              "cannot restart while draining, reloading or stopping", r);
        return ps_replica_feed(r, &ev);
}

int ps_replica_breaker_reset(ps_replica *r) {
        pd_event ev = { .type = PD_EV_BREAKER_RESET };

        return ps_replica_feed(r, &ev);
}

int ps_replica_driver_reset(ps_replica *r, const char *why) {
        pd_event ev = { .type = PD_EV_DRIVER_RESET, .detail = why };

        return ps_replica_feed(r, &ev);
}

const char *ps_replica_device_mask(const ps_replica *r) {
        return r->current ? r->current->device_mask : NULL;
}

const char *ps_replica_pool_id(const ps_replica *r) { return r->pool_id; }
const char *ps_replica_id(const ps_replica *r) { return r->replica_id; }
const char *ps_replica_state(const ps_replica *r) { return pd_state_to_string(r->lc.state); }
bool ps_replica_live(const ps_replica *r) { return pd_lifecycle_live(&r->lc); }
bool ps_replica_ready(const ps_replica *r) { return pd_lifecycle_ready(&r->lc); }
bool ps_replica_draining(const ps_replica *r) { return pd_lifecycle_draining(&r->lc); }
bool ps_replica_external(const ps_replica *r) { return r->lc.external; }
unsigned ps_replica_crash_count(const ps_replica *r) { return r->lc.crash_count; }
unsigned ps_replica_restart_count(const ps_replica *r) { return r->lc.restart_count; }

int ps_replica_pid(const ps_replica *r) {
        const ps_engine *e = r->inst[PD_INSTANCE_PRIMARY].engine;

        return e ? (int) ps_engine_pid(e) : 0;
}

int ps_replica_url(const ps_replica *r, char *buf, size_t len) {
        if (r->ext_url)
                return snprintf(buf, len, "%s", r->ext_url);
        return ps_engine_spec_url(r->current, buf, len);
}

void ps_replica_status_get(const ps_replica *r, ps_replica_status *out) {
        const pd_lifecycle *lc = &r->lc;
        const ps_engine_spec *s = r->current;
        const replica_inst *in = &r->inst[PD_INSTANCE_PRIMARY];
        const pd_breaker *gen = &lc->breakers.circuit[PD_CRASH_FAMILY_GENERAL];
        pd_breaker_state breaker = pd_breaker_set_state(&lc->breakers);
        int64_t started = in->engine ? in->started_wall_ms : 0;
        bool ready = pd_lifecycle_ready(lc);

        *out = (ps_replica_status) {
                .pool_id = r->pool_id,
                .replica_id = r->replica_id,
                .state = pd_state_to_string(lc->state),
                .live = pd_lifecycle_live(lc),
                .ready = ready,
                .draining = pd_lifecycle_draining(lc),
                .external = lc->external,
                .pid = ps_replica_pid(r),
                .port = s->port,
                .home_port = r->home_port,
                .engine = s->engine,
                .engine_version = s->engine_version,
                .model_id = s->model_id,
                .model_digest = s->model_digest,
                .device_mask = s->device_mask,
                .slots_total = s->slots,
                .active_leases = ps_replica_leases(r),
                .primary_leases = in->leases,
                .surge_leases = r->inst[PD_INSTANCE_SURGE].leases,
                .last_error = lc->last_error[0] ? lc->last_error : NULL,
                .last_error_class = lc->last_error_cls < PD_CRASH_CLASS_MAX ?
                                    pd_crash_class_to_string(lc->last_error_cls) : NULL,
                .last_error_at = mono_to_wall(r, lc->last_error_at_ms),
                .last_heartbeat = r->last_heartbeat_wall_ms,
                .restart_count = lc->restart_count,
                .crash_count = lc->crash_count,
                .restarts_in_window = pd_storm_in_window(&lc->storm, &policy(r)->storm, mono_now(r)),
                .driver_resets = lc->driver_resets,
                .backoff_ms = lc->backoff_ms,
                .next_restart_at = mono_to_wall(r, lc->next_restart_at_ms),
                .breaker = {
                        .state = pd_breaker_state_to_string(breaker),
                        .failures = gen->failures,
                        .opens = gen->opens,
                        .open_until = breaker == PD_BREAKER_OPEN ?
                                      mono_to_wall(r, pd_breaker_set_open_until(&lc->breakers)) : 0,
                },
                .started_at = started,
                .ready_at = ready ? r->ready_wall_ms : 0,
                .uptime_s = started ? (wall_now(r) - started) / 1000 : 0,
        };
        ps_replica_url(r, out->url, sizeof(out->url));
        if (ready)
                out->slots_free = r->has_slots_free ? r->ext_slots_free :
                                  pd_sat_sub_u32(s->slots, in->leases);
}

/* ---- for the pool ------------------------------------------------------- */

bool ps_replica_accepts(const ps_replica *r, const pd_event *ev) {
        pd_lifecycle trial = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;

        return pd_lifecycle_step(&trial, policy(r), ev, mono_now(r), &rng, &out) == 0;
}

int ps_replica_request(ps_replica *r, const pd_event *ev, pd_reply reply,
                       ps_done_fn fn, void *userdata) {
        pd_lifecycle trial = r->lc;
        pd_rng rng = r->rng;
        pd_actions out;
        int rc;

        if (r->stepping)
                return -EBUSY;
        if (reply <= PD_REPLY_NONE || reply >= PD_REPLY_MAX)
                return -EINVAL;
        rc = pd_lifecycle_step(&trial, policy(r), ev, mono_now(r), &rng, &out);
        if (rc != 0)
                return rc;
        r->pending[reply] = (pending_reply) { .fn = fn, .userdata = userdata };
        return ps_replica_feed(r, ev);
}

void ps_replica_forget_reply(ps_replica *r, pd_reply reply) {
        if (reply < PD_REPLY_MAX)
                r->pending[reply] = (pending_reply) { 0 };
}

const pd_lifecycle *ps_replica_lifecycle(const ps_replica *r) {
        return &r->lc;
}

const ps_engine_spec *ps_replica_spec(const ps_replica *r) {
        return r->current;
}

uint16_t ps_replica_home_port(const ps_replica *r) {
        return r->home_port;
}

int ps_replica_stage(ps_replica *r, const ps_engine_spec *spec) {
        ps_engine_spec *copy = NULL;

        if (spec && !(copy = ps_engine_spec_copy(spec)))
                return -ENOMEM;
        ps_engine_spec_free(r->staged);
        r->staged = copy;
        return 0;
}

const ps_policy *ps_replica_policy(const ps_replica *r) {
        return r->policy;
}

int ps_replica_set_policy(ps_replica *r, const ps_policy *pol) {
        ps_policy *copy = ps_policy_copy(pol);

        if (!copy)
                return -ENOMEM;
        ps_policy_free(r->policy);
        r->policy = copy;
        return 0;
}

static void set_str(char **at, const char *value) {
        if (!value)
                return;
        free(*at);
        *at = strdup(value);
}

int ps_replica_take_handoff(ps_replica *r, const ps_replica_handoff *h) {
        pd_event ev = { .type = PD_EV_HANDOFF_APPEARED };

        /* Seed semantics: what the handoff says is set, the rest stays
         * (but for the slots, below). */
        set_str(&r->current->engine_version, h->engine_version);
        set_str(&r->current->engine, h->engine);
        set_str(&r->current->device_mask, h->device_mask);
        set_str(&r->ext_url, h->url);
        set_str(&r->current->model_id, h->model_id);
        /* The slots are the file's, every time: absent ones are not kept. */
        r->current->slots = h->slots;
        r->has_slots_free = h->has_slots_free;
        r->ext_slots_free = h->slots_free;
        r->last_heartbeat_wall_ms = wall_now(r);
        r->ready_wall_ms = r->last_heartbeat_wall_ms;
        return ps_replica_feed(r, &ev);
}

/* ---- the policy's state, for the state store ------------------------------ */

static int64_t wall_to_mono(const ps_replica *r, int64_t at_wall) {
        if (at_wall == 0)
                return 0;
        return mono_now(r) + (at_wall - wall_now(r));
}

static void policy_times(const ps_replica *r, ps_replica_policy_state *st,
                         int64_t (*convert)(const ps_replica *r, int64_t at)) {
        for (unsigned i = 0; i < PD_CRASH_FAMILY_MAX; i++)
                st->breakers.circuit[i].open_until_ms = convert(r, st->breakers.circuit[i].open_until_ms);
        for (unsigned i = 0; i < st->storm.count && i < PD_STORM_LIMIT_MAX; i++) {
                pd_storm_entry *e = &st->storm.ring[(st->storm.head + i) % PD_STORM_LIMIT_MAX];

                e->at_ms = convert(r, e->at_ms);
        }
}

void ps_replica_policy_state_get(const ps_replica *r, ps_replica_policy_state *out) {
        *out = (ps_replica_policy_state) {
                .crash_count = r->lc.crash_count,
                .restart_count = r->lc.restart_count,
                .backoff_ms = r->lc.backoff_ms,
                .backoff = r->lc.backoff,
                .breakers = r->lc.breakers,
                .storm = r->lc.storm,
        };
        policy_times(r, out, mono_to_wall);
}

void ps_replica_policy_state_set(ps_replica *r, const ps_replica_policy_state *in) {
        ps_replica_policy_state st = *in;

        policy_times(r, &st, wall_to_mono);
        r->lc.crash_count = st.crash_count;
        r->lc.restart_count = st.restart_count;
        r->lc.backoff_ms = st.backoff_ms;
        r->lc.backoff = st.backoff;
        r->lc.breakers = st.breakers;
        r->lc.storm = st.storm;
}

/* ---- the engines' record (the daemon's state store) ----------------------- */

void ps_replica_note_engine(ps_replica *r, ps_engine_change what, unsigned instance,
                            const ps_engine *engine, const ps_engine_spec *spec) {
        if (r->ctx->engine_changed)
                r->ctx->engine_changed(r, what, instance, engine, spec, r->ctx->engine_userdata);
}
