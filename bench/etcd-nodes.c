/* SPDX-License-Identifier: MIT */
/*
 * etcd-nodes: NODES simulated nodes in one process, on one event loop,
 * each publishing into one etcd the way the daemon does: its own
 * ps_etcd publisher (its own curl multi handle and connection, its own
 * lease, its node key and POOLS pool keys from its own registry), the
 * lease kept alive every TTL / 3.
 *
 * usage: etcd-nodes ENDPOINT NODES [--pools K] [--ttl-ms MS] [--window-s S]
 *                   [--settle-s S] [--churn 0|1] [--prefix P]
 *
 *   --pools     pool keys per node (3)
 *   --ttl-ms    lease TTL (15000, so a keepalive every 5 s)
 *   --window-s  measured seconds (30)
 *   --settle-s  at most this long for every node to publish every key (120)
 *   --churn     1: every node changes one pool's slots_free once per
 *               keepalive period, at its own moment, so each heartbeat
 *               period also carries a put; 0: keepalives alone (1)
 *   --prefix    key prefix ("/bench/")
 *
 * The nodes start spread evenly over one keepalive period (a fleet does
 * not boot in one millisecond). Once every node has published all its
 * keys, one more keepalive period passes, then the window opens: the
 * program prints "window start" and "window end" as it opens and closes
 * (a driver samples etcd's /proc then), and finally one JSON line:
 * keepalive and put counts and latencies (sent to answered, in ms), the
 * gap between two renewals of a lease, leases lost, the keys etcd holds
 * under the prefix after the window, this process's CPU time per node
 * per heartbeat, and how often each request failed with which error
 * (over the whole run, settling included).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "pool-services/cloud/handoff-doc.h"
#include "pool-services/cloud/etcd.h"
#include "pool-services/pool/registry.h"

enum { REQ_GRANT, REQ_KEEPALIVE, REQ_PUT, REQ_OTHER, REQ_KINDS };

typedef struct samples {
        double *v;
        size_t n, cap;
} samples;

struct bench;

typedef struct node {
        struct bench *b;
        char id[32];
        ps_registry *reg;
        ps_etcd *etcd;
        struct event *start, *churn;
        int64_t sent_us;          /* a publisher has one request in flight */
        int64_t renewed_us;       /* last grant or keepalive answered */
        unsigned puts_ok;
        unsigned slots;
        bool published;
} node;

typedef struct bench {
        struct event_base *base;
        ps_context ctx;
        char runtime[64];
        const char *endpoint, *prefix;
        node *nodes;
        unsigned n, pools;
        int64_t ttl_ms, keepalive_ms, window_s, settle_s;
        bool churn;

        unsigned published;
        int64_t started_us, published_us;
        struct event *phase;
        bool measuring, window_done;
        int64_t window_us;
        struct rusage ru0, ru1;

        uint64_t ok[REQ_KINDS], failed[REQ_KINDS];
        uint64_t lost, lost_total, grants_total;
        samples lat[REQ_KINDS], gaps;
        json_t *errors;           /* "request: error" -> how often, all run long */
} bench;

static int64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void samples_add(samples *s, double v) {
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 1024;
                double *n = realloc(s->v, cap * sizeof(*n));

                if (!n) {
                        fprintf(stderr, "out of memory\n");
                        exit(1);
                }
                s->v = n;
                s->cap = cap;
        }
        s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

/* {n, p50, p99, max} in ms; nulls without samples. */
static json_t *summary(samples *s) {
        if (s->n == 0)
                return json_pack("{s:i, s:n, s:n, s:n}", "n", 0, "p50", "p99", "max");
        qsort(s->v, s->n, sizeof(*s->v), cmp_double);
        return json_pack("{s:I, s:f, s:f, s:f}", "n", (json_int_t) s->n,
                         "p50", s->v[(s->n - 1) * 50 / 100],
                         "p99", s->v[(s->n - 1) * 99 / 100],
                         "max", s->v[s->n - 1]);
}

static int kind_of(const char *request) {
        if (strcmp(request, "grant") == 0)
                return REQ_GRANT;
        if (strcmp(request, "keepalive") == 0)
                return REQ_KEEPALIVE;
        if (strcmp(request, "put") == 0)
                return REQ_PUT;
        return REQ_OTHER;
}

static void on_trace(const char *request, ps_etcd_trace_what what, void *userdata) {
        node *n = userdata;
        bench *b = n->b;
        int kind = kind_of(request);
        int64_t t = now_us();

        if (what == PS_ETCD_SENT) {
                n->sent_us = t;
                return;
        }
        if (b->measuring) {
                if (what == PS_ETCD_OK)
                        b->ok[kind]++;
                else
                        b->failed[kind]++;
                samples_add(&b->lat[kind], (double) (t - n->sent_us) / 1000.0);
        }
        if (what != PS_ETCD_OK)
                return;
        if (kind == REQ_GRANT || kind == REQ_KEEPALIVE) {
                if (b->measuring && n->renewed_us)
                        samples_add(&b->gaps, (double) (t - n->renewed_us) / 1000.0);
                n->renewed_us = t;
                b->grants_total += kind == REQ_GRANT;
        }
        if (kind == REQ_PUT && ++n->puts_ok == 1 + b->pools && !n->published) {
                n->published = true;
                if (++b->published == b->n)
                        b->published_us = t;
        }
}

static void on_event(const ps_event *ev, void *userdata) {
        bench *b = userdata;
        const char *request = "", *error = NULL;
        char key[512];

        if (ev->message && strncmp(ev->message, "etcd lease lost", 15) == 0) {
                b->lost_total++;
                if (b->measuring)
                        b->lost++;
        }
        if (!ev->message || strcmp(ev->message, "etcd request failed") != 0)
                return;
        for (size_t i = 0; i < ev->n_fields; i++) {
                if (ev->fields[i].type != PS_FIELD_TYPE_STRING)
                        continue;
                if (strcmp(ev->fields[i].key, "request") == 0)
                        request = ev->fields[i].str;
                else if (strcmp(ev->fields[i].key, "error") == 0)
                        error = ev->fields[i].str;
        }
        snprintf(key, sizeof(key), "%s: %s", request, error ? error : "?");
        json_object_set_new(b->errors, key, json_integer(json_integer_value(
                                    json_object_get(b->errors, key)) + 1));
}

static int set_pool(node *n, unsigned pool, unsigned slots_free) {
        char id[32], err[256];
        json_t *doc;
        int r;

        snprintf(id, sizeof(id), "pool-%u", pool);
        doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:s}",
                        "pool_id", id, "replica_id", "r0", "engine", "vllm",
                        "engine_version", "0.6.1", "url", "http://10.0.0.1:8000",
                        "slots_total", 4, "slots_free", (int) slots_free, "device_mask", "none");
        if (!doc)
                return -ENOMEM;
        r = ps_registry_register_ready_from_handoff(n->reg, doc, err, sizeof(err));
        json_decref(doc);
        if (r != 0)
                fprintf(stderr, "%s: %s\n", id, r > 0 ? err : strerror(-r));
        return r;
}

static void on_churn(evutil_socket_t fd, short what, void *userdata) {
        node *n = userdata;

        (void) fd;
        (void) what;
        n->slots = (n->slots + 1) % 5;
        if (set_pool(n, 0, n->slots) == 0)
                ps_etcd_poke(n->etcd);
}

static void on_start(evutil_socket_t fd, short what, void *userdata) {
        node *n = userdata;
        struct timeval tv = { n->b->keepalive_ms / 1000, (n->b->keepalive_ms % 1000) * 1000 };

        (void) fd;
        (void) what;
        if (ps_etcd_start(n->etcd) != 0) {
                fprintf(stderr, "%s: cannot start\n", n->id);
                exit(1);
        }
        /* The first change one period after the start, then every period. */
        if (n->churn)
                event_add(n->churn, &tv);
}

static void arm(struct event *ev, int64_t ms) {
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

        event_add(ev, &tv);
}

/* Settling: every node publishes; then one quiet keepalive period; then
 * the window; then the loop ends. */
static void on_phase(evutil_socket_t fd, short what, void *userdata) {
        bench *b = userdata;
        int64_t t = now_us();

        (void) fd;
        (void) what;
        if (b->measuring) {
                getrusage(RUSAGE_SELF, &b->ru1);
                b->window_us = t - b->window_us;
                b->measuring = false;
                b->window_done = true;
                printf("window end\n");
                fflush(stdout);
                event_base_loopexit(b->base, NULL);
                return;
        }
        if (b->published < b->n && t - b->started_us < b->settle_s * 1000000) {
                arm(b->phase, 250);
                return;
        }
        if (b->published == b->n && t - b->published_us < b->keepalive_ms * 1000) {
                arm(b->phase, b->keepalive_ms - (t - b->published_us) / 1000 + 1);
                return;
        }
        b->measuring = true;
        b->window_us = t;
        getrusage(RUSAGE_SELF, &b->ru0);
        printf("window start\n");
        fflush(stdout);
        arm(b->phase, b->window_s * 1000);
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
        json_t **out = userdata;

        *out = json_loadb(data, size * n, 0, NULL);
        return size * n;
}

/* How many keys etcd holds under prefix+sub: a blocking range request,
 * made after the window while the loop is not running. -1 on error. */
static long long count_keys(const bench *b, const char *sub) {
        char key[256], end[256], url[512];
        char *k, *e, *body = NULL;
        json_t *reply = NULL, *req;
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        CURL *c = curl_easy_init();
        long long count = -1;

        snprintf(key, sizeof(key), "%s%s/", b->prefix, sub);
        snprintf(end, sizeof(end), "%s%s0", b->prefix, sub);   /* '0' follows '/' */
        snprintf(url, sizeof(url), "%s/v3/kv/range", b->endpoint);
        k = ps_etcd_base64(key);
        e = ps_etcd_base64(end);
        req = k && e ? json_pack("{s:s, s:s, s:b}", "key", k, "range_end", e, "count_only", 1) :
                       NULL;
        if (req)
                body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        if (c && h && body) {
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
                curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
                if (curl_easy_perform(c) == CURLE_OK && reply) {
                        json_t *v = json_object_get(reply, "count");

                        count = json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) :
                                json_is_integer(v) ? json_integer_value(v) : 0;
                }
        }
        json_decref(reply);
        free(body);
        free(k);
        free(e);
        curl_slist_free_all(h);
        if (c)
                curl_easy_cleanup(c);
        return count;
}

static double tv_s(struct timeval tv) {
        return (double) tv.tv_sec + (double) tv.tv_usec / 1e6;
}

static int64_t int_arg(const char *s, const char *what, int64_t min) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min) {
                fprintf(stderr, "%s: want an integer >= %" PRId64 ", got '%s'\n", what, min, s);
                exit(2);
        }
        return v;
}

static void usage(void) {
        fprintf(stderr, "usage: etcd-nodes ENDPOINT NODES [--pools K] [--ttl-ms MS] "
                        "[--window-s S] [--settle-s S] [--churn 0|1] [--prefix P]\n");
        exit(2);
}

/* Each node holds three descriptors (its connection and its curl multi
 * handle's wakeup socket pair): raise the limit to fit, as far as allowed. */
static void raise_fd_limit(unsigned nodes) {
        rlim_t want = (rlim_t) nodes * 3 + 64;
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
                return;
        if (rl.rlim_max < want) {
                struct rlimit more = { want, want };

                if (setrlimit(RLIMIT_NOFILE, &more) == 0)
                        return;
                fprintf(stderr, "warning: at most %llu open files: too few for %u nodes\n",
                        (unsigned long long) rl.rlim_max, nodes);
        }
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv) {
        bench b = {
                .prefix = "/bench/", .pools = 3, .ttl_ms = 15000, .window_s = 30,
                .settle_s = 120, .churn = true,
        };
        const char *endpoints[1];
        double cpu_s, renewals;
        long long node_keys, pool_keys;
        json_t *out;
        char *text;
        long rss_kb = 0;
        FILE *f;

        if (argc < 3)
                usage();
        b.endpoint = argv[1];
        b.n = (unsigned) int_arg(argv[2], "NODES", 1);
        for (int i = 3; i < argc; i += 2) {
                if (i + 1 >= argc)
                        usage();
                if (strcmp(argv[i], "--pools") == 0)
                        b.pools = (unsigned) int_arg(argv[i + 1], "--pools", 0);
                else if (strcmp(argv[i], "--ttl-ms") == 0)
                        b.ttl_ms = int_arg(argv[i + 1], "--ttl-ms", 3000);
                else if (strcmp(argv[i], "--window-s") == 0)
                        b.window_s = int_arg(argv[i + 1], "--window-s", 1);
                else if (strcmp(argv[i], "--settle-s") == 0)
                        b.settle_s = int_arg(argv[i + 1], "--settle-s", 1);
                else if (strcmp(argv[i], "--churn") == 0)
                        b.churn = int_arg(argv[i + 1], "--churn", 0) != 0;
                else if (strcmp(argv[i], "--prefix") == 0 && argv[i + 1][0] == '/')
                        b.prefix = argv[i + 1];
                else
                        usage();
        }
        b.keepalive_ms = b.ttl_ms / 3;   /* as ps_etcd derives it */
        raise_fd_limit(b.n);
        curl_global_init(CURL_GLOBAL_DEFAULT);

        snprintf(b.runtime, sizeof(b.runtime), "/tmp/etcd-nodes-XXXXXX");
        b.base = event_base_new();
        if (!b.base || !mkdtemp(b.runtime)) {
                perror("setup");
                return 1;
        }
        b.ctx = (ps_context) {
                .base = b.base, .sink = { on_event, &b }, .runtime_dir = b.runtime,
                .engine_user = "nobody", .seed = 42,
        };
        b.nodes = calloc(b.n, sizeof(*b.nodes));
        b.phase = evtimer_new(b.base, on_phase, &b);
        b.errors = json_object();
        if (!b.nodes || !b.phase || !b.errors) {
                fprintf(stderr, "out of memory\n");
                return 1;
        }
        endpoints[0] = b.endpoint;
        for (unsigned i = 0; i < b.n; i++) {
                node *n = &b.nodes[i];
                char err[256];
                int r;

                n->b = &b;
                n->slots = 2;
                snprintf(n->id, sizeof(n->id), "bench-%05u", i);
                n->reg = ps_registry_new(&b.ctx);
                if (!n->reg)
                        return 1;
                for (unsigned p = 0; p < b.pools; p++)
                        if (set_pool(n, p, 2) != 0)
                                return 1;
                r = ps_etcd_new(&b.ctx, n->reg, &(ps_etcd_config) {
                                .endpoints = endpoints, .n_endpoints = 1, .prefix = b.prefix,
                                .ttl_ms = b.ttl_ms, .node_id = n->id,
                                .address = "http://10.0.0.1:9200", .version = "bench",
                                .trace = on_trace, .trace_userdata = n,
                        }, &n->etcd, err, sizeof(err));
                if (r != 0) {
                        fprintf(stderr, "%s: %s\n", n->id, r > 0 ? err : strerror(-r));
                        return 1;
                }
                n->start = evtimer_new(b.base, on_start, n);
                n->churn = b.churn ? event_new(b.base, -1, EV_PERSIST, on_churn, n) : NULL;
                if (!n->start || (b.churn && !n->churn))
                        return 1;
                arm(n->start, b.keepalive_ms * i / b.n);
        }
        b.started_us = now_us();
        arm(b.phase, b.keepalive_ms);
        event_base_dispatch(b.base);

        node_keys = count_keys(&b, "nodes");
        pool_keys = count_keys(&b, "pools");
        cpu_s = tv_s(b.ru1.ru_utime) + tv_s(b.ru1.ru_stime) -
                tv_s(b.ru0.ru_utime) - tv_s(b.ru0.ru_stime);
        renewals = (double) b.ok[REQ_KEEPALIVE];
        f = fopen("/proc/self/status", "r");
        if (f) {
                char line[256];

                while (fgets(line, sizeof(line), f))
                        if (sscanf(line, "VmRSS: %ld", &rss_kb) == 1)
                                break;
                fclose(f);
        }
        out = json_pack("{s:i, s:i, s:I, s:I, s:b, s:f, s:i, s:o*, "
                        "s:{s:I, s:I, s:o}, s:{s:I, s:I, s:o}, s:{s:I, s:I, s:o}, "
                        "s:o, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:i}, "
                        "s:{s:f, s:f, s:f, s:f}, s:i, s:O}",
                        "nodes", (int) b.n, "pools", (int) b.pools,
                        "ttl_ms", (json_int_t) b.ttl_ms, "keepalive_ms", (json_int_t) b.keepalive_ms,
                        "churn", b.churn, "window_s", (double) b.window_us / 1e6,
                        "published", (int) b.published,
                        "settle_s", b.published == b.n ?
                                json_real((double) (b.published_us - b.started_us) / 1e6) : NULL,
                        "keepalive", "ok", (json_int_t) b.ok[REQ_KEEPALIVE],
                                     "failed", (json_int_t) b.failed[REQ_KEEPALIVE],
                                     "ms", summary(&b.lat[REQ_KEEPALIVE]),
                        "put", "ok", (json_int_t) b.ok[REQ_PUT], "failed", (json_int_t) b.failed[REQ_PUT],
                               "ms", summary(&b.lat[REQ_PUT]),
                        "grant", "ok", (json_int_t) b.ok[REQ_GRANT],
                                 "failed", (json_int_t) b.failed[REQ_GRANT],
                                 "ms", summary(&b.lat[REQ_GRANT]),
                        "renewal_gap_ms", summary(&b.gaps),
                        "leases", "lost_in_window", (json_int_t) b.lost,
                                  "lost_total", (json_int_t) b.lost_total,
                                  "grants_total", (json_int_t) b.grants_total,
                        "keys", "nodes", (json_int_t) node_keys, "pools", (json_int_t) pool_keys,
                                "expected_pools", (int) (b.n * b.pools),
                        "cpu", "seconds", cpu_s,
                               "percent", b.window_us ? 100.0 * cpu_s * 1e6 / (double) b.window_us : 0.0,
                               "us_per_node_heartbeat", renewals > 0 ? cpu_s * 1e6 / renewals : 0.0,
                               "us_per_node_second", b.window_us ?
                                       cpu_s * 1e6 / b.n / ((double) b.window_us / 1e6) : 0.0,
                        "rss_kb", (int) rss_kb, "errors", b.errors);
        text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(out);

        for (unsigned i = 0; i < b.n; i++) {
                node *n = &b.nodes[i];

                ps_etcd_free(n->etcd);
                ps_registry_free(n->reg);
                event_free(n->start);
                if (n->churn)
                        event_free(n->churn);
        }
        for (int k = 0; k < REQ_KINDS; k++)
                free(b.lat[k].v);
        free(b.gaps.v);
        json_decref(b.errors);
        free(b.nodes);
        event_free(b.phase);
        event_base_free(b.base);
        rmdir(b.runtime);
        curl_global_cleanup();
        return 0;
}
