/* SPDX-License-Identifier: MIT */
/*
 * The node's own gauges: the GPU inventory's health, the configuration's
 * last reload, and (a collector) the standard process_* families of the
 * process itself (CPU, memory, descriptors, start time), read from /proc
 * at scrape time.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "observe/metrics-private.h"

void ps_metrics_config_loaded(ps_metrics *m, bool ok, int64_t wall_ms) {
        if (!m)
                return;
        m->config_known = true;
        m->config_ok = ok;
        if (ok)
                m->config_ok_wall_ms = wall_ms;
}

/* 1 when the devices document says "ok"; nothing without a document. */
static void render_gpu_inventory(ps_strbuf *o, const json_t *devices) {
        const char *status = json_string_value(json_object_get(devices, "status"));

        if (!status)
                return;
        ps_expo_header(o, "pool_managerd_gpu_inventory_ok", "gauge",
                       "1 when the GPU inventory was read and every device answers, 0 when the "
                       "probe fails or finds no device.");
        ps_expo_series(o, "pool_managerd_gpu_inventory_ok", "", NULL, 0);
        ps_expo_u64_line(o, strcmp(status, "ok") == 0);
}

static void render_config(ps_strbuf *o, const ps_metrics *m) {
        if (!m->config_known)
                return;
        ps_expo_header(o, "pool_managerd_config_last_reload_successful", "gauge",
                       "1 when the last load of the configuration file (the start, or SIGHUP) "
                       "was applied, 0 when it was rejected.");
        ps_expo_series(o, "pool_managerd_config_last_reload_successful", "", NULL, 0);
        ps_expo_u64_line(o, m->config_ok);
        ps_expo_header(o, "pool_managerd_config_last_reload_success_timestamp_seconds", "gauge",
                       "When the configuration was last loaded successfully, in seconds since the epoch.");
        ps_expo_series(o, "pool_managerd_config_last_reload_success_timestamp_seconds", "", NULL, 0);
        ps_expo_ms_line(o, m->config_ok_wall_ms);
}

/* /proc/self/stat's utime+stime, starttime (clock ticks) and rss (pages). */
static int read_stat(uint64_t *cpu_ticks, uint64_t *start_ticks, uint64_t *rss_pages) {
        char buf[1024], *p;
        unsigned long long utime, stime, start;
        long long rss;
        FILE *f = fopen("/proc/self/stat", "re");
        size_t n;

        if (!f)
                return -errno;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* the command may hold spaces and parentheses: fields follow the last ')' */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                                "%*d %*d %*d %llu %*u %lld", &utime, &stime, &start, &rss) != 4)
                return -EINVAL;
        *cpu_ticks = utime + stime;
        *start_ticks = start;
        *rss_pages = rss > 0 ? (uint64_t) rss : 0;
        return 0;
}

/* The boot time, seconds since the epoch (/proc/stat's btime). */
static int read_btime(uint64_t *out) {
        char line[256];
        unsigned long long v;
        FILE *f = fopen("/proc/stat", "re");
        int r = -ENOENT;

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "btime %llu", &v) == 1) {
                        *out = v;
                        r = 0;
                        break;
                }
        fclose(f);
        return r;
}

static int count_fds(uint64_t *out) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        uint64_t n = 0;

        if (!d)
                return -errno;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        *out = n > 0 ? n - 1 : 0;   /* not the directory's own descriptor */
        return 0;
}

static void gauge(ps_strbuf *o, const char *name, const char *type, const char *help,
                  int64_t value_ms) {
        ps_expo_header(o, name, type, help);
        ps_expo_series(o, name, "", NULL, 0);
        ps_expo_ms_line(o, value_ms);
}

static void render_process(ps_strbuf *o) {
        long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        uint64_t cpu = 0, start = 0, rss = 0, btime = 0, fds = 0;
        struct rlimit rl;

        if (tick > 0 && page > 0 && read_stat(&cpu, &start, &rss) == 0) {
                gauge(o, "process_cpu_seconds_total", "counter",
                      "Total user and system CPU time spent in seconds.",
                      (int64_t) (cpu * 1000 / (uint64_t) tick));
                ps_expo_header(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
                ps_expo_series(o, "process_resident_memory_bytes", "", NULL, 0);
                ps_expo_u64_line(o, rss * (uint64_t) page);
                if (read_btime(&btime) == 0)
                        gauge(o, "process_start_time_seconds", "gauge",
                              "Start time of the process since unix epoch in seconds.",
                              (int64_t) (btime * 1000 + start * 1000 / (uint64_t) tick));
        }
        if (count_fds(&fds) == 0) {
                ps_expo_header(o, "process_open_fds", "gauge", "Number of open file descriptors.");
                ps_expo_series(o, "process_open_fds", "", NULL, 0);
                ps_expo_u64_line(o, fds);
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                ps_expo_header(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
                ps_expo_series(o, "process_max_fds", "", NULL, 0);
                if (rl.rlim_cur == RLIM_INFINITY)
                        ps_strbuf_str(o, "+Inf\n");
                else
                        ps_expo_u64_line(o, (uint64_t) rl.rlim_cur);
        }
}

void ps_metrics_render_node(ps_strbuf *o, const ps_metrics *m, const json_t *devices) {
        render_gpu_inventory(o, devices);
        render_config(o, m);
}

char *ps_metrics_process_collect(void *userdata) {
        ps_strbuf o = { 0 };

        (void) userdata;
        ps_strbuf_reserve(&o, 1024);
        render_process(&o);
        if (o.oom) {
                free(o.s);
                return NULL;
        }
        return o.s ? o.s : strdup("");
}
