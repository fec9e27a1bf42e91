/* SPDX-License-Identifier: MIT */
/*
 * Writes a scrape to stdout for check-metrics.sh to hand to promtool.
 *
 *   metrics-sample rich    every family with series: several pools, one
 *                          of them gone from the registry, awkward label
 *                          values, histograms with observations, GPUs
 *   metrics-sample empty   a node with no pools and no GPUs
 *   metrics-sample engines rich, followed by engines' own metrics: the
 *                          recorded scrapes in $SCRAPE_FIXTURES relabelled
 *                          for several replicas, as the daemon appends them
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "pool-services/observe/engine-metrics.h"
#include "pool-services/base/event.h"
#include "pool-services/observe/metrics.h"
#include "observe-event.h"
#include "status-fixture.h"

#define EVENT OBSERVE_EVENT

/* The registry's status, in the shape of the API's snapshot
 * (status-fixture.h). */
static const char rich_snapshot[] =
        "{\"pools\": ["
        " {\"pool_id\": \"qwen-7b\", \"state\": \"ready\", \"live\": true, \"ready\": true,"
        "  \"draining\": false, \"slots_total\": 8, \"slots_free\": 5, \"active_leases\": 3,"
        "  \"restart_count\": 1, \"crash_count\": 2, \"backoff_ms\": 1500,"
        "  \"breaker\": {\"state\": \"closed\", \"failures\": 0, \"opens\": 0, \"open_until\": null},"
        "  \"replicas\": [{\"replica_id\": \"r1\", \"state\": \"ready\", \"crash_count\": 0,"
        "                  \"restarts_in_window\": 0},"
        "                 {\"replica_id\": \"r0\", \"state\": \"draining\", \"crash_count\": 2,"
        "                  \"restarts_in_window\": 1, \"driver_resets\": 1}]},"
        " {\"pool_id\": \"llama-70b\", \"state\": \"backoff\", \"live\": false, \"ready\": false,"
        "  \"draining\": false, \"slots_total\": 4, \"slots_free\": 0, \"active_leases\": 0,"
        "  \"restart_count\": 5, \"crash_count\": 6, \"backoff_ms\": 32000,"
        "  \"breaker\": {\"state\": \"open\", \"failures\": 5, \"opens\": 1, \"open_until\": 1795521660000},"
        "  \"replicas\": [{\"replica_id\": \"weird \\\"id\\\" \\\\ \\n\", \"state\": \"backoff\","
        "                  \"crash_count\": 6, \"restarts_in_window\": 5}]},"
        " {\"pool_id\": \"empty-pool\", \"state\": \"empty\", \"live\": false, \"ready\": false,"
        "  \"draining\": false, \"slots_total\": 0, \"slots_free\": 0, \"active_leases\": 0,"
        "  \"backoff_ms\": null, \"breaker\": null, \"replicas\": []}"
        "]}";

static const char rich_devices[] =
        "{\"backend\": \"fake\", \"devices\": ["
        " {\"index\": 1, \"uuid\": \"GPU-bbbb\", \"name\": \"NVIDIA \\\"Fake\\\" 24GB\","
        "  \"vram_total_bytes\": 25769803776, \"vram_free_bytes\": 1073741824},"
        " {\"index\": 0, \"uuid\": \"GPU-aaaa\", \"name\": \"NVIDIA Fake 80GB\","
        "  \"vram_total_bytes\": 85899345920, \"vram_free_bytes\": 42949672960}"
        "]}";

static void feed(ps_metrics *m) {
        EVENT(m, PS_EVENT_ENGINE_SPAWNED, "qwen-7b", "r0", PS_FIELD_INT("pid", 100));
        EVENT(m, PS_EVENT_READY, "qwen-7b", "r0", PS_FIELD_INT("startup_ms", 2300));
        EVENT(m, PS_EVENT_REQUEST_DONE, "qwen-7b", "r0", PS_FIELD_STR("request", "preload"),
              PS_FIELD_BOOL("ok", true), PS_FIELD_INT("duration_ms", 2400));
        EVENT(m, PS_EVENT_PROBE_FAILED, "qwen-7b", "r0", PS_FIELD_STR("detail", "timeout"));
        EVENT(m, PS_EVENT_ENGINE_LOG_ERROR, "qwen-7b", "r0", PS_FIELD_STR("class", "cuda_error"));
        EVENT(m, PS_EVENT_ENGINE_FAILED, "qwen-7b", "r0", PS_FIELD_STR("class", "signal"));
        EVENT(m, PS_EVENT_RESTART_SCHEDULED, "qwen-7b", "r0", PS_FIELD_INT("backoff_ms", 1500));
        EVENT(m, PS_EVENT_READY, "qwen-7b", "r1", PS_FIELD_INT("startup_ms", 900000));
        EVENT(m, PS_EVENT_REQUEST_DONE, "qwen-7b", NULL, PS_FIELD_STR("request", "drain"),
              PS_FIELD_BOOL("ok", false));
        EVENT(m, PS_EVENT_REQUEST_DONE, "qwen-7b", NULL, PS_FIELD_STR("request", "reload"),
              PS_FIELD_BOOL("ok", true), PS_FIELD_INT("duration_ms", 61000));

        for (int i = 0; i < 6; i++) {
                EVENT(m, PS_EVENT_SPAWN_FAILED, "llama-70b", "r0", PS_FIELD_STR("error", "ENOENT"));
                EVENT(m, PS_EVENT_ENGINE_FAILED, "llama-70b", "r0", PS_FIELD_STR("class", "vram_oom"));
        }
        EVENT(m, PS_EVENT_ALERT, "llama-70b", "r0", PS_FIELD_STR("alert", "storm_warning"));
        EVENT(m, PS_EVENT_ALERT, "llama-70b", "r0", PS_FIELD_STR("alert", "throttled"));
        EVENT(m, PS_EVENT_ALERT, "llama-70b", "r0", PS_FIELD_STR("alert", "storm"),
              PS_FIELD_STR("storm", "oom_storm"));
        /* a kind no release produces, to exercise escaping */
        EVENT(m, PS_EVENT_ALERT, "llama-70b", "r0", PS_FIELD_STR("alert", "storm"),
              PS_FIELD_STR("storm", "odd \"kind\" \\ with\nnewline"));
        EVENT(m, PS_EVENT_ALERT, "llama-70b", "r0", PS_FIELD_STR("alert", "breaker_opened"));

        /* a pool that was deleted: counters stay, gauges go */
        EVENT(m, PS_EVENT_ENGINE_FAILED, "retired", "r0", PS_FIELD_STR("class", "exit_code"));
        EVENT(m, PS_EVENT_REQUEST_DONE, "retired", "r0", PS_FIELD_STR("request", "preload"),
              PS_FIELD_BOOL("ok", false));
}

/* Two llama-server replicas, a vLLM one and an engine that breaks the
 * rules, merged as ps_engine_metrics_render() merges them. */
static int engines(void) {
        static const struct { const char *file, *pool, *replica; } replicas[] = {
                { "awkward.prom", "empty-pool", "r0" },
                { "llama-server.prom", "qwen-7b", "r0" },
                { "llama-server.prom", "qwen-7b", "r1" },
                { "vllm.prom", "vllm-8b", "r0" },
        };
        enum { N = sizeof(replicas) / sizeof(replicas[0]) };
        const char *dir = getenv("SCRAPE_FIXTURES");
        ps_engine_scrape *scrapes[N] = { 0 };
        struct evbuffer *out = evbuffer_new();
        int rc = 1;

        if (!dir || !out) {
                fprintf(stderr, "metrics-sample: SCRAPE_FIXTURES is not set\n");
                goto done;
        }
        for (size_t i = 0; i < N; i++) {
                char path[4096], *text = NULL;
                size_t len = 0;
                FILE *f;

                snprintf(path, sizeof(path), "%s/%s", dir, replicas[i].file);
                f = fopen(path, "rb");
                if (!f) {
                        fprintf(stderr, "metrics-sample: %s: cannot open\n", path);
                        goto done;
                }
                text = malloc(1 << 20);
                if (text)
                        len = fread(text, 1, 1 << 20, f);
                fclose(f);
                if (!text || ps_engine_metrics_relabel(text, len, replicas[i].pool, replicas[i].replica,
                                                       0, &scrapes[i], NULL) < 0) {
                        free(text);
                        fprintf(stderr, "metrics-sample: %s: relabel failed\n", path);
                        goto done;
                }
                free(text);
        }
        if (ps_engine_scrapes_render((const ps_engine_scrape *const *) scrapes, N, out) < 0)
                goto done;
        rc = fwrite(evbuffer_pullup(out, -1), 1, evbuffer_get_length(out), stdout) ==
             evbuffer_get_length(out) ? 0 : 1;
done:
        for (size_t i = 0; i < N; i++)
                ps_engine_scrape_free(scrapes[i]);
        if (out)
                evbuffer_free(out);
        return rc;
}

int main(int argc, char **argv) {
        json_t *snapshot = NULL, *devices = NULL;
        ps_registry_status *status;
        json_error_t error;
        ps_metrics *m;
        char *text;
        int rc = 1;

        if (argc != 2 || (strcmp(argv[1], "rich") != 0 && strcmp(argv[1], "empty") != 0 &&
                          strcmp(argv[1], "engines") != 0)) {
                fprintf(stderr, "usage: metrics-sample rich|empty|engines\n");
                return 2;
        }
        m = ps_metrics_new();
        if (!m || ps_metrics_set_version(m, "0.1.0-test") < 0) {
                fprintf(stderr, "metrics-sample: out of memory\n");
                goto out;
        }
        if (strcmp(argv[1], "empty") != 0) {
                snapshot = json_loads(rich_snapshot, JSON_REJECT_DUPLICATES, &error);
                devices = json_loads(rich_devices, JSON_REJECT_DUPLICATES, &error);
                if (!snapshot || !devices) {
                        fprintf(stderr, "metrics-sample: bad fixture: %s (line %d)\n", error.text, error.line);
                        goto out;
                }
                feed(m);
        } else {
                snapshot = json_pack("{s:[]}", "pools");
        }
        status = status_fixture(snapshot);
        text = ps_metrics_render(m, status, devices);
        status_fixture_free(status);
        if (!text) {
                fprintf(stderr, "metrics-sample: render failed\n");
                goto out;
        }
        fputs(text, stdout);
        free(text);
        rc = 0;
        if (strcmp(argv[1], "engines") == 0)
                rc = engines();
        if (fflush(stdout) != 0)
                rc = 1;
out:
        json_decref(snapshot);
        json_decref(devices);
        ps_metrics_free(m);
        return rc;
}
