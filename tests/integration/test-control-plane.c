/* SPDX-License-Identifier: MIT */
/*
 * Registration and heartbeats against the control-plane double in
 * tests/helpers (a real HTTP server in a child process), which records
 * every request and can be told to answer errors, 404 or slowly. The test
 * runs the loop until the client's state shows the outcome, within
 * generous deadlines; nothing sleeps for a fixed time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "pool-services/cloud/handoff-doc.h"
#include "pool-services/cloud/control-plane.h"
#include "harness.h"

#define WAIT_MS 30000

typedef struct fx {
        th_node node;
        ps_control_plane *cp;
        pid_t fake;
        int port;
        char url[64];
        bool stopped, stop_ok;
        char stop_message[256];
} fx;

/* ---- the double ------------------------------------------------------------ */

static void fake_start(fx *f, int port, const char *token) {
        const char *script = getenv("FAKE_CONTROL_PLANE");
        char port_arg[16], line[32];
        int fds[2];
        ssize_t n;
        size_t got = 0;

        assert_non_null(script);
        assert_int_equal(pipe(fds), 0);
        snprintf(port_arg, sizeof(port_arg), "%d", port);
        f->fake = fork();
        assert_true(f->fake >= 0);
        if (f->fake == 0) {
                dup2(fds[1], 1);
                close(fds[0]);
                close(fds[1]);
                /* the node's own (short) interval, not the seed's fixed 10 s */
                if (token)
                        execl("/usr/bin/python3", "python3", script, "--port", port_arg,
                              "--next-heartbeat-ms", "none", "--token", token, (char *) NULL);
                else
                        execl("/usr/bin/python3", "python3", script, "--port", port_arg,
                              "--next-heartbeat-ms", "none", (char *) NULL);
                _exit(127);
        }
        close(fds[1]);
        while (got < sizeof(line) - 1 && (n = read(fds[0], line + got, 1)) == 1 && line[got] != '\n')
                got++;
        close(fds[0]);
        line[got] = '\0';
        f->port = atoi(line);
        assert_true(f->port > 0);
        snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->port);
}

static void fake_stop(fx *f) {
        if (f->fake <= 0)
                return;
        kill(f->fake, SIGKILL);
        waitpid(f->fake, NULL, 0);
        f->fake = 0;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *userdata) {
        FILE *out = userdata;

        return fwrite(data, size, nmemb, out);
}

/* A blocking request to the double's control paths: tests may block. */
static json_t *fake_call(fx *f, const char *method, const char *path, const char *body) {
        char url[128], *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        CURL *c = curl_easy_init();
        json_t *doc;

        snprintf(url, sizeof(url), "%s%s", f->url, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_cleanup(c);
        fclose(out);
        doc = json_loads(text, 0, NULL);
        free(text);
        assert_non_null(doc);
        return doc;
}

static void fake_mode(fx *f, const char *mode) {
        json_decref(fake_call(f, "POST", "/_fake/mode", mode));
}

/* The recorded requests whose method and path match; a new array. */
static json_t *recorded(fx *f, const char *method, const char *path) {
        json_t *doc = fake_call(f, "GET", "/_fake/requests", NULL), *out = json_array(), *r;
        size_t i;

        json_array_foreach(json_object_get(doc, "requests"), i, r)
                if ((!method || strcmp(json_string_value(json_object_get(r, "method")), method) == 0) &&
                    (!path || strcmp(json_string_value(json_object_get(r, "path")), path) == 0))
                        json_array_append(out, r);
        json_decref(doc);
        return out;
}

/* ---- fixture ------------------------------------------------------------------ */

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));
        json_t *handoff;
        char err[256];

        assert_non_null(f);
        th_node_init(&f->node, &(th_node_options) { .name = "cp", .seed = 7 });
        /* One ready pool to report. */
        handoff = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:s}", "pool_id", "llama", "replica_id", "r0",
                            "engine", "llamacpp", "engine_version", "b6000", "slots_total", 4,
                            "slots_free", 3, "url", "http://127.0.0.1:1");
        assert_int_equal(ps_registry_register_ready_from_handoff(f->node.reg, handoff, err, sizeof(err)), 0);
        json_decref(handoff);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        ps_control_plane_free(f->cp);
        fake_stop(f);
        th_node_clear(&f->node);
        free(f);
        return 0;
}

static ps_control_plane_config config(fx *f) {
        return (ps_control_plane_config) {
                .url = f->url,
                .node_id = "node-1",
                .address = "http://10.1.2.3:9200",
                .version = "1.2.3",
                .heartbeat_interval_ms = 200,
                .retry_initial_ms = 50,
                .register_on_startup = true,
        };
}

static void start(fx *f, const ps_control_plane_config *cfg) {
        char err[256];

        assert_int_equal(ps_control_plane_new(&f->node.ctx, f->node.reg, cfg, &f->cp, err, sizeof(err)), 0);
        assert_int_equal(ps_control_plane_start(f->cp), 0);
}

static bool loop_until(fx *f, th_cond *cond, const void *arg) {
        return th_loop_until(f->node.base, cond, f, arg, WAIT_MS);
}

static json_int_t status_int(fx *f, const char *key) {
        json_t *s = ps_control_plane_status(f->cp);
        json_int_t v = json_integer_value(json_object_get(s, key));

        json_decref(s);
        return v;
}

static bool heartbeats_at_least(void *fixture, const void *arg) {
        fx *f = fixture;

        return status_int(f, "heartbeats") >= *(const int *) arg;
}

static bool failures_at_least(void *fixture, const void *arg) {
        fx *f = fixture;

        return status_int(f, "consecutive_failures") >= *(const int *) arg;
}

static bool registered(void *fixture, const void *arg) {
        fx *f = fixture;

        (void) arg;
        return ps_control_plane_registered(f->cp);
}

static bool reregistered(void *fixture, const void *arg) {
        fx *f = fixture;

        (void) arg;
        return status_int(f, "reregistrations") >= 1 && ps_control_plane_registered(f->cp);
}

static bool stopped(void *fixture, const void *arg) {
        fx *f = fixture;

        (void) arg;
        return f->stopped;
}

static void on_stopped(int rc, const char *message, void *userdata) {
        fx *f = userdata;

        f->stopped = true;
        f->stop_ok = rc == 0;
        snprintf(f->stop_message, sizeof(f->stop_message), "%s", message);
}

/* ---- tests ------------------------------------------------------------------------ */

static void registers_then_heartbeats_with_pool_state(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *regs, *beats, *body, *pool, *caps;
        int two = 2;

        fake_start(f, 0, NULL);
        cfg = config(f);
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &two));
        assert_string_equal(ps_control_plane_state(f->cp), "registered");

        regs = recorded(f, "POST", "/v2/nodes/register");
        assert_int_equal(json_array_size(regs), 1);
        body = json_object_get(json_array_get(regs, 0), "body");
        assert_string_equal(json_string_value(json_object_get(body, "node_id")), "node-1");
        /* machine_id defaults to the node id */
        assert_string_equal(json_string_value(json_object_get(body, "machine_id")), "node-1");
        assert_string_equal(json_string_value(json_object_get(body, "address")), "http://10.1.2.3:9200");
        assert_string_equal(json_string_value(json_object_get(body, "version")), "1.2.3");
        assert_string_equal(json_string_value(json_array_get(json_object_get(body, "pools"), 0)), "llama");
        caps = json_object_get(body, "capabilities");
        assert_true(json_is_array(json_object_get(caps, "gpus")));
        assert_true(json_integer_value(json_object_get(caps, "cpu_cores")) >= 1);
        assert_true(json_integer_value(json_object_get(caps, "ram_total_bytes")) > 0);
        /* No token configured: no Authorization header. */
        assert_true(json_is_null(json_object_get(json_array_get(regs, 0), "authorization")));

        beats = recorded(f, "POST", "/v2/nodes/node-1/heartbeat");
        assert_true(json_array_size(beats) >= 2);
        body = json_object_get(json_array_get(beats, 0), "body");
        /* RFC 3339 UTC with milliseconds, as the seed's reader wants it */
        {
                const char *ts = json_string_value(json_object_get(body, "timestamp"));
                int y, mo, d, h, mi, sec, ms;
                char z = 0;

                assert_non_null(ts);
                assert_int_equal(strlen(ts), 24);
                assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi,
                                        &sec, &ms, &z), 8);
                assert_int_equal(z, 'Z');
                assert_true(y >= 2020);
        }
        assert_true(json_integer_value(json_object_get(body, "timestamp_ms")) > 1600000000000LL);
        pool = json_array_get(json_object_get(body, "pools"), 0);
        assert_string_equal(json_string_value(json_object_get(pool, "pool_id")), "llama");
        assert_true(json_is_true(json_object_get(pool, "ready")));
        assert_true(json_is_false(json_object_get(pool, "draining")));
        assert_int_equal(json_integer_value(json_object_get(pool, "slots_total")), 4);
        assert_int_equal(json_integer_value(json_object_get(pool, "slots_free")), 3);
        assert_true(json_is_integer(json_object_get(pool, "vram_free_bytes")));
        assert_string_equal(json_string_value(json_object_get(pool, "engine")), "llamacpp");
        json_decref(regs);
        json_decref(beats);
}

static void heartbeat_reports_a_pool_going_unready(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *beats, *last;
        int one = 1, more;

        fake_start(f, 0, NULL);
        cfg = config(f);
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        assert_int_equal(ps_registry_unregister_handoff(f->node.reg, "llama", "r0"), 0);
        more = (int) status_int(f, "heartbeats") + 2;
        assert_true(loop_until(f, heartbeats_at_least, &more));
        beats = recorded(f, "POST", "/v2/nodes/node-1/heartbeat");
        last = json_array_get(json_object_get(json_object_get(
                json_array_get(beats, json_array_size(beats) - 1), "body"), "pools"), 0);
        assert_true(json_is_false(json_object_get(last, "ready")));
        json_decref(beats);
}

static void token_is_sent_as_bearer(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *all, *r;
        size_t i;
        int one = 1;

        fake_start(f, 0, "s3cret-token");
        cfg = config(f);
        cfg.token = "s3cret-token";
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        all = recorded(f, NULL, NULL);
        assert_true(json_array_size(all) >= 2);
        json_array_foreach(all, i, r)
                assert_string_equal(json_string_value(json_object_get(r, "authorization")),
                                    "Bearer s3cret-token");
        json_decref(all);
        /* Never in the status. */
        {
                json_t *s = ps_control_plane_status(f->cp);
                char *text = json_dumps(s, 0);

                assert_null(strstr(text, "s3cret"));
                free(text);
                json_decref(s);
        }
}

static void wrong_token_is_an_error_with_the_status(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *s;
        int two = 2;

        fake_start(f, 0, "right");
        cfg = config(f);
        cfg.token = "wrong";
        start(f, &cfg);
        assert_true(loop_until(f, failures_at_least, &two));
        s = ps_control_plane_status(f->cp);
        assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")), "HTTP 401"));
        assert_string_equal(json_string_value(json_object_get(s, "state")), "retrying");
        assert_false(json_is_true(json_object_get(s, "registered")));
        json_decref(s);
}

static void next_heartbeat_ms_in_the_reply_is_honoured(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        int five = 5;

        fake_start(f, 0, NULL);
        fake_mode(f, "{\"next_heartbeat_ms\": 20}");
        cfg = config(f);
        /* Without the reply's hint the second heartbeat would come after
         * an hour: five within the deadline means the hint was followed. */
        cfg.heartbeat_interval_ms = 3600 * 1000;
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &five));
}

static void errors_are_retried_with_a_capped_backoff_then_recover(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *s;
        int four = 4;

        fake_start(f, 0, NULL);
        fake_mode(f, "{\"status\": 503}");
        cfg = config(f);
        start(f, &cfg);
        assert_true(loop_until(f, failures_at_least, &four));
        s = ps_control_plane_status(f->cp);
        assert_string_equal(json_string_value(json_object_get(s, "state")), "retrying");
        assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")), "HTTP 503"));
        assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")),
                               "control plane says 503"));
        /* The next attempt is never further than one interval away (plus
         * the jitter of the capped delay, 10 %). */
        assert_true(json_integer_value(json_object_get(s, "next_attempt_at")) -
                    json_integer_value(json_object_get(s, "last_error_at")) <= 220);
        json_decref(s);

        fake_mode(f, "{\"status\": 0}");
        assert_true(loop_until(f, registered, NULL));
        assert_int_equal(status_int(f, "consecutive_failures"), 0);
}

static void slow_control_plane_times_out_without_stalling_the_loop(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *s;
        unsigned ticks;
        int two = 2;

        fake_start(f, 0, NULL);
        fake_mode(f, "{\"delay_ms\": 5000}");
        cfg = config(f);
        cfg.request_timeout_ms = 300;
        ticks = f->node.ticks;
        start(f, &cfg);
        assert_true(loop_until(f, failures_at_least, &two));
        /* The loop kept turning while requests hung. */
        assert_true(f->node.ticks > ticks + 5);
        s = ps_control_plane_status(f->cp);
        assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")), "timed out"));
        json_decref(s);
        fake_mode(f, "{\"delay_ms\": 0}");
        assert_true(loop_until(f, registered, NULL));
}

static void down_control_plane_is_retried_until_it_is_back(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *s;
        int port, one = 1, three = 3;

        fake_start(f, 0, NULL);
        cfg = config(f);
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        port = f->port;
        fake_stop(f);
        assert_true(loop_until(f, failures_at_least, &three));
        s = ps_control_plane_status(f->cp);
        assert_non_null(strstr(json_string_value(json_object_get(s, "last_error")), "refused"));
        json_decref(s);
        /* Back on the same port, with no memory of the node: the next
         * heartbeat is answered 404 and the node registers again. */
        fake_start(f, port, NULL);
        assert_true(loop_until(f, reregistered, NULL));
}

static void heartbeat_404_registers_again(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *all;
        int one = 1;

        fake_start(f, 0, NULL);
        cfg = config(f);
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        json_decref(fake_call(f, "POST", "/_fake/forget", NULL));
        assert_true(loop_until(f, reregistered, NULL));
        all = recorded(f, "POST", "/v2/nodes/register");
        assert_int_equal(json_array_size(all), 2);
        json_decref(all);
}

static void without_register_on_startup_it_heartbeats_first(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *all;

        fake_start(f, 0, NULL);
        cfg = config(f);
        cfg.register_on_startup = false;
        start(f, &cfg);
        assert_true(loop_until(f, reregistered, NULL));
        all = recorded(f, "POST", NULL);
        assert_string_equal(json_string_value(json_object_get(json_array_get(all, 0), "path")),
                            "/v2/nodes/node-1/heartbeat");
        assert_string_equal(json_string_value(json_object_get(json_array_get(all, 1), "path")),
                            "/v2/nodes/register");
        json_decref(all);
}

static void stop_deregisters(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        json_t *dels;
        int one = 1;

        fake_start(f, 0, "tok");
        cfg = config(f);
        cfg.token = "tok";
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        ps_control_plane_stop(f->cp, 5000, on_stopped, f);
        assert_true(loop_until(f, stopped, NULL));
        assert_true(f->stop_ok);
        assert_string_equal(ps_control_plane_state(f->cp), "deregistered");
        dels = recorded(f, "DELETE", "/v2/nodes/node-1");
        assert_int_equal(json_array_size(dels), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(dels, 0), "authorization")),
                            "Bearer tok");
        json_decref(dels);
}

static void stop_with_the_control_plane_hanging_is_bounded(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        int one = 1;

        fake_start(f, 0, NULL);
        cfg = config(f);
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        fake_mode(f, "{\"delay_ms\": 60000}");
        ps_control_plane_stop(f->cp, 300, on_stopped, f);
        assert_true(loop_until(f, stopped, NULL));
        assert_false(f->stop_ok);
        assert_string_equal(ps_control_plane_state(f->cp), "stopped");
}

static void never_registered_stops_at_once(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;

        fake_start(f, 0, NULL);
        fake_mode(f, "{\"status\": 500}");
        cfg = config(f);
        start(f, &cfg);
        ps_control_plane_stop(f->cp, 300, on_stopped, f);
        assert_true(f->stopped);
        assert_true(f->stop_ok);
}

static void metrics_show_state_and_counts(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        char *text;
        int one = 1;

        fake_start(f, 0, NULL);
        cfg = config(f);
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        text = ps_control_plane_render_metrics(f->cp);
        assert_non_null(strstr(text, "\npool_managerd_control_plane_registered 1\n"));
        assert_non_null(strstr(text, "pool_managerd_control_plane_requests_total"
                                     "{request=\"register\",result=\"ok\"} 1\n"));
        assert_non_null(strstr(text, "# TYPE pool_managerd_control_plane_reregistrations_total counter\n"));
        /* promtool (scripts/deps installs it) accepts the families. */
        {
                FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");

                assert_non_null(p);
                fputs(text, p);
                assert_int_equal(pclose(p), 0);
        }
        free(text);
}

static void missing_settings_are_named(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg = { .url = "http://127.0.0.1:1", .node_id = "n",
                                        .heartbeat_interval_ms = 1000 };
        ps_control_plane *cp = NULL;
        char err[256];

        assert_int_equal(ps_control_plane_new(&f->node.ctx, f->node.reg, &cfg, &cp, err, sizeof(err)),
                         PS_E_INVALID);
        assert_non_null(strstr(err, "address"));
        cfg.address = "http://10.0.0.1:9200";
        cfg.url = "";
        assert_int_equal(ps_control_plane_new(&f->node.ctx, f->node.reg, &cfg, &cp, err, sizeof(err)),
                         PS_E_INVALID);
        assert_non_null(strstr(err, "url"));
        assert_null(cp);
}

/* Every recorded request of that method and path was answered status. */
static void all_answered(fx *f, const char *method, const char *path, int status) {
        json_t *list = recorded(f, method, path), *r;
        size_t i;

        assert_true(json_array_size(list) >= 1);
        json_array_foreach(list, i, r)
                if (json_integer_value(json_object_get(r, "status")) != status)
                        fail_msg("%s %s answered %d, not %d: %s", method, path,
                                 (int) json_integer_value(json_object_get(r, "status")), status,
                                 json_dumps(json_object_get(r, "body"), JSON_COMPACT));
        json_decref(list);
}

static void a_node_with_gpus_passes_the_strict_readers(void **state) {
        static const ps_gpu_device gpus[] = {
                { .index = 0, .uuid = "GPU-a", .name = "NVIDIA H100", .cc_major = 9,
                  .vram_total_bytes = 85899345920ULL, .vram_free_bytes = 85000000000ULL },
                { .index = 1, .uuid = "GPU-b", .name = "NVIDIA L4", .cc_major = 8, .cc_minor = 9,
                  .vram_total_bytes = 24000000000ULL, .vram_free_bytes = 23000000000ULL },
        };
        fx *f = *state;
        ps_control_plane_config cfg;
        ps_inventory *inv = NULL;
        json_t *regs, *gpu;
        int three = 3;

        assert_int_equal(ps_inventory_new(PS_GPU_BACKEND_FAKE, gpus, 2, &inv, NULL, 0), 0);
        fake_start(f, 0, NULL);
        cfg = config(f);
        cfg.inventory = inv;
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &three));
        /* the double answers 422 to anything its types would not read */
        all_answered(f, "POST", "/v2/nodes/register", 200);
        all_answered(f, "POST", "/v2/nodes/node-1/heartbeat", 200);
        regs = recorded(f, "POST", "/v2/nodes/register");
        gpu = json_array_get(json_object_get(json_object_get(json_object_get(
                json_array_get(regs, 0), "body"), "capabilities"), "gpus"), 1);
        assert_int_equal(json_integer_value(json_object_get(gpu, "device_id")), 1);
        assert_string_equal(json_string_value(json_object_get(gpu, "compute_capability")), "8.9");
        json_decref(regs);
        ps_control_plane_free(f->cp);
        f->cp = NULL;
        ps_inventory_free(inv);
}

static void first_heartbeat_follows_registration(void **state) {
        fx *f = *state;
        ps_control_plane_config cfg;
        int one = 1;

        fake_start(f, 0, NULL);
        cfg = config(f);
        /* an hour between heartbeats: one within the wait means the first
         * was sent right after registering */
        cfg.heartbeat_interval_ms = 3600 * 1000;
        start(f, &cfg);
        assert_true(loop_until(f, heartbeats_at_least, &one));
        all_answered(f, "POST", "/v2/nodes/node-1/heartbeat", 200);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
                T(registers_then_heartbeats_with_pool_state),
                T(a_node_with_gpus_passes_the_strict_readers),
                T(first_heartbeat_follows_registration),
                T(heartbeat_reports_a_pool_going_unready),
                T(token_is_sent_as_bearer),
                T(wrong_token_is_an_error_with_the_status),
                T(next_heartbeat_ms_in_the_reply_is_honoured),
                T(errors_are_retried_with_a_capped_backoff_then_recover),
                T(slow_control_plane_times_out_without_stalling_the_loop),
                T(down_control_plane_is_retried_until_it_is_back),
                T(heartbeat_404_registers_again),
                T(without_register_on_startup_it_heartbeats_first),
                T(stop_deregisters),
                T(stop_with_the_control_plane_hanging_is_bounded),
                T(never_registered_stops_at_once),
                T(metrics_show_state_and_counts),
                T(missing_settings_are_named),
#undef T
        };

        return cmocka_run_group_tests_name("control plane", tests, NULL, NULL);
}
