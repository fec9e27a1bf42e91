/* SPDX-License-Identifier: MIT */
/*
 * supervise-latency: how fast supervision notices things, measured on the
 * real code path (registry, pidfd, probes, fake engine processes).
 *
 *   crash-unready   SIGKILL of a ready engine -> the registry says unready
 *   crash-respawn   SIGKILL of a ready engine -> replacement process spawned
 *                   (backoff 0)
 *   ready-announce  the engine can answer 200 -> the registry says ready,
 *                   for an engine that prints "listening on" when ready
 *   ready-silent    the same for an engine that prints nothing
 *   hang-detect     SIGSTOP of a ready engine -> the registry says unready
 *                   (default health policy: 1 s interval, 1 s timeout,
 *                   3 failures)
 *
 * usage: supervise-latency FAKE_ENGINE [ROUNDS]
 *
 * Prints one line per measurement with p50, p90, p99 and max in
 * milliseconds, plus the probes sent per second during a long load. Times
 * come from CLOCK_MONOTONIC, which the fake engine shares (it prints the
 * moment it starts answering 200 as "ready_mono_us=N").
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "pool-services/supervise/probe.h"
#include "pool-services/pool/registry.h"

typedef struct bench {
        struct event_base *base;
        ps_prober *prober;
        ps_registry *reg;
        ps_context ctx;
        char dir[64];
        const char *fake;
        int64_t exited_us;
        int64_t spawned_us;
        int64_t ready_us;
        int64_t unready_us;
        ps_replica *watch;        /* unready_us is set when it stops being ready */
        bool done;
} bench;

static int64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_event(const ps_event *ev, void *userdata) {
        bench *b = userdata;
        int64_t t = now_us();

        if (strcmp(ev->message, "engine exited") == 0 && b->exited_us == 0)
                b->exited_us = t;
        else if (strcmp(ev->message, "engine spawned") == 0 && b->spawned_us == 0)
                b->spawned_us = t;
        else if (strcmp(ev->message, "ready") == 0 && b->ready_us == 0)
                b->ready_us = t;
        if (b->watch && b->unready_us == 0 && !ps_replica_ready(b->watch))
                b->unready_us = t;
}

static void on_done(int rc, const char *text, void *userdata) {
        bench *b = userdata;

        (void) rc;
        (void) text;
        b->done = true;
}

/* Runs the loop for ms milliseconds: the engine settles into its steady
 * state (a real crash comes long after readiness, not within a tick). */
static void run_for(bench *b, int64_t ms) {
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        event_base_loopexit(b->base, &tv);
        event_base_dispatch(b->base);
}

static void run_until(bench *b, const int64_t *field, int64_t timeout_ms) {
        int64_t deadline = now_us() + timeout_ms * 1000;

        while (*field == 0 && now_us() < deadline)
                event_base_loop(b->base, EVLOOP_ONCE);
}

static uint16_t free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        uint16_t port = 0;

        if (fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *) &a, &len) == 0)
                port = ntohs(a.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

static ps_replica *add_engine(bench *b, const char *id, const char *policy_json,
                              const char *const *extra) {
        ps_engine_spec *s = ps_engine_spec_new();
        ps_policy *pol = ps_policy_new();
        ps_replica *r = NULL;
        json_t *doc = json_loads(policy_json, 0, NULL);
        char port[16], err[256];
        size_t n = 0;

        s->port = free_port();
        snprintf(port, sizeof(port), "%u", (unsigned) s->port);
        s->flags = calloc(16, sizeof(char *));
        s->flags[n++] = strdup("--port");
        s->flags[n++] = strdup(port);
        s->flags[n++] = strdup("--print-ready-time");
        for (size_t i = 0; extra && extra[i]; i++)
                s->flags[n++] = strdup(extra[i]);
        s->n_flags = n;
        s->binary_path = realpath(b->fake, NULL);
        s->host = strdup("127.0.0.1");
        s->pool_id = strdup(id);
        s->replica_id = strdup("r0");
        s->engine_version = strdup("bench");
        if (!doc || ps_policy_apply_json(pol, doc, "bench", err, sizeof(err)) != 0 ||
            ps_registry_add(b->reg, s, pol, &r, err, sizeof(err)) != 0) {
                fprintf(stderr, "supervise-latency: %s\n", err);
                exit(1);
        }
        json_decref(doc);
        ps_engine_spec_free(s);
        ps_policy_free(pol);
        return r;
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

        return x < y ? -1 : x > y;
}

static void report(const char *name, int64_t *us, size_t n) {
        if (n == 0) {
                printf("%-16s no samples\n", name);
                return;
        }
        qsort(us, n, sizeof(*us), cmp_i64);
        printf("%-16s n=%-4zu p50=%.3f ms  p90=%.3f ms  p99=%.3f ms  max=%.3f ms\n", name, n,
               us[n / 2] / 1000.0, us[n * 9 / 10] / 1000.0, us[n * 99 / 100] / 1000.0,
               us[n - 1] / 1000.0);
}

/* The moment the engine began answering 200, from its log. */
static int64_t engine_ready_us(const bench *b, const char *id) {
        char path[PATH_MAX], line[512];
        int64_t last = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/engine-%s_r0.log", b->dir, id);
        fp = fopen(path, "r");
        if (!fp)
                return 0;
        while (fgets(line, sizeof(line), fp)) {
                char *at = strstr(line, "ready_mono_us=");

                if (at)
                        last = strtoll(at + strlen("ready_mono_us="), NULL, 10);
        }
        fclose(fp);
        return last;
}

static void crash_rounds(bench *b, size_t rounds) {
        static const char *policy =
                "{\"health\": {\"interval_ms\": 1000}, \"backoff\": {\"initial_ms\": 0, \"jitter\": 0},"
                " \"breaker\": {\"threshold\": 1000000},"
                " \"storm\": {\"limit\": 64, \"window_ms\": 1, \"burst_window_ms\": 1, \"warn_above\": 63}}";
        int64_t *unready = calloc(rounds, sizeof(int64_t));
        int64_t *respawn = calloc(rounds, sizeof(int64_t));
        size_t n_unready = 0, n_respawn = 0;
        ps_replica *r = add_engine(b, "crash", policy, NULL);

        b->done = false;
        ps_replica_preload(r, on_done, b, NULL, 0);
        b->ready_us = 0;
        run_until(b, &b->ready_us, 10000);
        for (size_t i = 0; i < rounds; i++) {
                int pid = ps_replica_pid(r);
                int64_t t0;

                if (pid <= 0 || !ps_replica_ready(r))
                        break;
                run_for(b, 100);
                b->exited_us = b->spawned_us = b->ready_us = 0;
                t0 = now_us();
                kill(pid, SIGKILL);
                run_until(b, &b->exited_us, 5000);
                if (b->exited_us && !ps_replica_ready(r))
                        unready[n_unready++] = b->exited_us - t0;
                run_until(b, &b->spawned_us, 5000);
                if (b->spawned_us)
                        respawn[n_respawn++] = b->spawned_us - t0;
                run_until(b, &b->ready_us, 10000);
        }
        report("crash-unready", unready, n_unready);
        report("crash-respawn", respawn, n_respawn);
        free(unready);
        free(respawn);
}

/* A hung engine (stopped, its socket still open): how long until the
 * probes give up on it. */
static void hang_rounds(bench *b, size_t rounds) {
        static const char *policy = "{\"backoff\": {\"initial_ms\": 0, \"jitter\": 0}}";
        int64_t *detect = calloc(rounds, sizeof(int64_t));
        size_t n = 0;
        ps_replica *r = add_engine(b, "hang", policy, NULL);

        ps_replica_preload(r, on_done, b, NULL, 0);
        b->ready_us = 0;
        run_until(b, &b->ready_us, 10000);
        for (size_t i = 0; i < rounds; i++) {
                int pid = ps_replica_pid(r);
                int64_t t0;

                if (pid <= 0 || !ps_replica_ready(r))
                        break;
                /* at a random point of the probe cycle */
                run_for(b, 300 + (int64_t) (i * 137 % 700));
                b->unready_us = b->ready_us = 0;
                b->watch = r;
                t0 = now_us();
                kill(pid, SIGSTOP);
                run_until(b, &b->unready_us, 20000);
                if (b->unready_us)
                        detect[n++] = b->unready_us - t0;
                b->watch = NULL;
                kill(pid, SIGCONT);
                run_until(b, &b->ready_us, 20000);
        }
        report("hang-detect", detect, n);
        free(detect);
}

static void ready_rounds(bench *b, size_t rounds, bool announce) {
        static const char *policy = "{\"health\": {\"interval_ms\": 1000}}";
        const char *extra[] = { "--load-ms", "200", announce ? "--announce" : NULL, NULL };
        int64_t *overhead = calloc(rounds, sizeof(int64_t));
        size_t n = 0;
        char id[32];

        for (size_t i = 0; i < rounds; i++) {
                ps_replica *r;
                int64_t engine_us;
                char err[256];

                snprintf(id, sizeof(id), "ready%s%zu", announce ? "a" : "s", i);
                r = add_engine(b, id, policy, extra);
                b->ready_us = 0;
                b->done = false;
                ps_replica_preload(r, on_done, b, NULL, 0);
                run_until(b, &b->ready_us, 10000);
                engine_us = engine_ready_us(b, id);
                if (b->ready_us && engine_us && b->ready_us >= engine_us)
                        overhead[n++] = b->ready_us - engine_us;
                ps_replica_stop(r, err, sizeof(err));
        }
        report(announce ? "ready-announce" : "ready-silent", overhead, n);
        free(overhead);
}

/* Probes sent while an engine loads for load_ms. */
static unsigned probes_during_load(bench *b, const char *id, const char *load_ms) {
        static const char *policy = "{\"health\": {\"interval_ms\": 1000}}";
        const char *extra[] = { "--load-ms", load_ms, "--log-probes", NULL };
        ps_replica *r = add_engine(b, id, policy, extra);
        char path[PATH_MAX], line[512], err[256];
        unsigned probes = 0;
        FILE *fp;

        b->ready_us = 0;
        ps_replica_preload(r, on_done, b, NULL, 0);
        run_until(b, &b->ready_us, 30000);
        ps_replica_stop(r, err, sizeof(err));
        snprintf(path, sizeof(path), "%s/engine-%s_r0.log", b->dir, id);
        fp = fopen(path, "r");
        while (fp && fgets(line, sizeof(line), fp))
                if (strstr(line, "GET /health"))
                        probes++;
        if (fp)
                fclose(fp);
        return probes;
}

/* The probe rate of a long load: the total over 5 s, and the rate after the
 * fast first second, from the difference between a 5 s and a 10 s load. */
static void load_probe_rate(bench *b) {
        unsigned p5 = probes_during_load(b, "load5", "5000");
        unsigned p10 = probes_during_load(b, "load10", "10000");

        printf("%-16s %u probes during a 5 s load, %u during a 10 s load; "
               "steady rate %.1f per second\n", "load-probes", p5, p10, (p10 - p5) / 5.0);
}

static void on_stopped(int rc, const char *text, void *userdata) {
        on_done(rc, text, userdata);
}

int main(int argc, char **argv) {
        bench b = { 0 };
        size_t rounds = argc > 2 ? strtoul(argv[2], NULL, 10) : 50;
        char cmd[PATH_MAX + 16];

        if (argc < 2) {
                fprintf(stderr, "usage: supervise-latency FAKE_ENGINE [ROUNDS]\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        b.fake = argv[1];
        snprintf(b.dir, sizeof(b.dir), "/tmp/pm-bench-XXXXXX");
        if (!mkdtemp(b.dir))
                return 1;
        b.base = event_base_new();
        b.prober = ps_prober_new(b.base);
        b.ctx = (ps_context) { .base = b.base, .sink = { .fn = on_event, .userdata = &b },
                               .prober = b.prober, .runtime_dir = b.dir, .seed = 1 };
        b.reg = ps_registry_new(&b.ctx);

        crash_rounds(&b, rounds);
        ready_rounds(&b, rounds < 20 ? rounds : 20, true);
        ready_rounds(&b, rounds < 20 ? rounds : 20, false);
        load_probe_rate(&b);
        hang_rounds(&b, rounds < 5 ? rounds : 5);

        b.done = false;
        ps_registry_stop_all(b.reg, on_stopped, &b);
        while (!b.done)
                event_base_loop(b.base, EVLOOP_ONCE);
        ps_registry_free(b.reg);
        ps_prober_free(b.prober);
        event_base_free(b.base);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", b.dir);
        return system(cmd) == 0 ? 0 : 1;
}
