/* SPDX-License-Identifier: MIT */
/*
 * What a replica's engine says and how it ends: log lines (errors the
 * crash classifier knows, readiness announcements, driver trouble shared
 * with the replicas on the same GPUs) and the exit, with the kernel's
 * OOM-kill evidence.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "lifecycle/replica-private.h"
#include "pool-domain/crash.h"
#include "pool-services/inventory.h"

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
        REPLICA_EMIT(r, PS_EVENT_GENERIC, PS_LOG_ERROR, "driver error on a shared GPU: restarting",
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

void ps_replica_on_log_line(const char *line, size_t len, void *userdata) {
        replica_inst *in = userdata;
        ps_replica *r = in->owner;
        pd_crash_class cls;
        int64_t now = ps_replica_mono_now(r);

        if (len == 0)
                return;
        snprintf(in->last_line, sizeof(in->last_line), "%.*s", (int) len, line);
        in->last_progress_ms = now;
        if (pd_crash_scan_line(line, len, &cls)) {
                pd_event ev = { .type = PD_EV_LOG_ERROR, .instance = in->id, .cls = cls,
                                .detail = in->last_line };

                REPLICA_EMIT(r, PS_EVENT_ENGINE_LOG_ERROR, cls == PD_CRASH_VRAM_OOM ? PS_LOG_WARN : PS_LOG_ERROR,
                             "engine reported an error",
                             PS_FIELD_STR("class", pd_crash_class_to_string(cls)),
                             PS_FIELD_STR("line", in->last_line));
                /* Before r's own step, which may end with r freed. */
                if (cls == PD_CRASH_DRIVER_ERROR)
                        spread_driver_trouble(r, in->last_line);
                ps_replica_enqueue(r, &ev);
                ps_replica_run(r);
                return;
        }
        if (in->probing && !ps_replica_inst_ready(in) &&
            (announces_listening(line, len) || now - in->last_probe_ms >= 50)) {
                evtimer_del(in->probe_timer);
                ps_replica_probe_send(in);
        }
}

/* The kernel's OOM-kill counter of our cgroup (cgroup v2), if there is one.
 * Engines live in the daemon's cgroup, so a rise while one ran and a
 * SIGKILL death together mean the OOM killer took it. */
bool ps_replica_read_oom_kill(uint64_t *out) {
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

void ps_replica_on_engine_exit(ps_engine *engine, const ps_exit_status *st, void *userdata) {
        replica_inst *in = userdata;
        ps_replica *r = in->owner;
        pd_event ev = { .type = PD_EV_EXITED, .instance = in->id };
        uint64_t oom_after = 0;
        char detail[REPLICA_DETAIL_MAX] = "";
        int64_t uptime_ms = ps_replica_wall_now(r) - in->started_wall_ms;

        if (in->tail)
                ps_logtail_drain(in->tail);   /* the last words come first */
        in->tail = ps_logtail_free(in->tail);
        ps_replica_probe_stop(in);
        in->engine = NULL;
        in->dead = engine;

        r->last_exit_known = true;
        r->last_exit = *st;
        r->last_uptime_ms = uptime_ms;
        ev.exit = (pd_exit) { .exited = st->exited, .code = st->code, .signo = st->signo,
                              .status_unknown = st->status_unknown };
        if (in->oom_known && ps_replica_read_oom_kill(&oom_after) &&
            pd_crash_is_host_oom(&ev.exit, in->oom_kill_before, oom_after))
                ev.cls = PD_CRASH_HOST_OOM;
        if (ps_engine_last_log_line(engine, detail, sizeof(detail)) < 0 || !detail[0])
                snprintf(detail, sizeof(detail), "%s", in->last_line);
        ev.detail = detail[0] ? detail : NULL;

        REPLICA_EMIT(r, PS_EVENT_ENGINE_EXITED,
                     r->lc.inst[in->id].exit_expected ? PS_LOG_INFO : PS_LOG_ERROR, "engine exited",
                     PS_FIELD_INT("pid", ps_engine_pid(engine)),
                     PS_FIELD_STR("engine_version", ps_replica_engine_version(r)),
                     st->exited ? PS_FIELD_INT("exit_code", st->code) : PS_FIELD_STR("exit_code", NULL),
                     st->exited ? PS_FIELD_STR("signal", NULL) : PS_FIELD_STR("signal", pd_signal_name(st->signo)),
                     PS_FIELD_INT("uptime_s", uptime_ms / 1000),
                     PS_FIELD_STR("last_line", ev.detail),
                     PS_FIELD_STR("expected", r->lc.inst[in->id].exit_expected ? "true" : "false"));

        if (ev.cls == PD_CRASH_HOST_OOM) {
                /* evidence for the classifier: the kernel killed it */
                pd_event hint = { .type = PD_EV_LOG_ERROR, .instance = in->id,
                                  .cls = PD_CRASH_HOST_OOM };
                ps_replica_enqueue(r, &hint);
        }
        ev.cls = PD_CRASH_CLASS_MAX;
        ps_replica_enqueue(r, &ev);
        ps_replica_run(r);
}
