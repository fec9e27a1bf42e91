/* SPDX-License-Identifier: MIT */
/*
 * Performance hints: generation speed and time to first token, smoothed
 * over successive scrapes of one engine. Only counters' deltas are used,
 * so what an engine did before we first saw it does not count.
 */
#include <math.h>

#include "pool-services/observe/engine-metrics.h"

enum {
        C_LLAMA_TOKENS,           /* llamacpp_tokens_predicted_total          */
        C_LLAMA_SECONDS,          /* llamacpp_tokens_predicted_seconds_total  */
        C_VLLM_TOKENS,            /* vllm_generation_tokens_total             */
        C_TTFT_SUM,               /* vllm_time_to_first_token_seconds_sum     */
        C_TTFT_COUNT,             /* vllm_time_to_first_token_seconds_count   */
        C_MAX,
};

static const char *const counter_names[C_MAX] = {
        [C_LLAMA_TOKENS] = "llamacpp_tokens_predicted_total",
        [C_LLAMA_SECONDS] = "llamacpp_tokens_predicted_seconds_total",
        [C_VLLM_TOKENS] = "vllm_generation_tokens_total",
        [C_TTFT_SUM] = "vllm_time_to_first_token_seconds_sum",
        [C_TTFT_COUNT] = "vllm_time_to_first_token_seconds_count",
};

_Static_assert(C_MAX <= sizeof(((ps_perf_hints *) 0)->prev) / sizeof(double),
               "ps_perf_hints keeps every counter");

/* One scrape's counters and their growth since the previous one. */
typedef struct reading {
        bool has[C_MAX];
        double cur[C_MAX], d[C_MAX];
        bool delta_ok;            /* a previous scrape, earlier, no counter back */
        double dt_ms;
} reading;

void ps_perf_hints_init(ps_perf_hints *h, double alpha) {
        *h = (ps_perf_hints) { .alpha = (alpha > 0 && alpha <= 1) ? alpha : PS_ENGINE_METRICS_ALPHA };
}

static void ewma(double alpha, bool *have, double *value, double sample) {
        if (!isfinite(sample) || sample < 0)
                return;
        *value = *have ? alpha * sample + (1 - alpha) * *value : sample;
        *have = true;
}

static void reading_take(reading *rd, const ps_perf_hints *h, const ps_engine_scrape *s,
                         int64_t now_ms) {
        rd->delta_ok = h->prev_valid && now_ms > h->prev_ms;
        rd->dt_ms = rd->delta_ok ? (double) (now_ms - h->prev_ms) : 0;
        for (int i = 0; i < C_MAX; i++) {
                rd->has[i] = ps_engine_scrape_value(s, counter_names[i], &rd->cur[i]) &&
                             isfinite(rd->cur[i]);
                rd->d[i] = 0;
                if (rd->has[i] && rd->delta_ok && h->prev_has[i]) {
                        rd->d[i] = rd->cur[i] - h->prev[i];
                        if (rd->d[i] < 0)       /* a counter went back: restarted */
                                rd->delta_ok = false;
                }
        }
}

/* Whether counter i grew, with a previous value to grow from. */
static bool grew(const reading *rd, const ps_perf_hints *h, int i) {
        return rd->delta_ok && h->prev_has[i] && rd->d[i] > 0;
}

/* llama-server's time spent generating, else vLLM's tokens over wall
 * time, else llama-server's own gauge when it is not 0. */
static void observe_tokens_per_s(ps_perf_hints *h, const reading *rd,
                                 const ps_engine_scrape *s) {
        double gauge;

        if (rd->has[C_LLAMA_TOKENS] && rd->has[C_LLAMA_SECONDS]) {
                if (grew(rd, h, C_LLAMA_TOKENS) && grew(rd, h, C_LLAMA_SECONDS))
                        ewma(h->alpha, &h->have_tokens_per_s, &h->tokens_per_s,
                             rd->d[C_LLAMA_TOKENS] / rd->d[C_LLAMA_SECONDS]);
        } else if (rd->has[C_VLLM_TOKENS]) {
                if (grew(rd, h, C_VLLM_TOKENS))
                        ewma(h->alpha, &h->have_tokens_per_s, &h->tokens_per_s,
                             rd->d[C_VLLM_TOKENS] * 1000.0 / rd->dt_ms);
        } else if (ps_engine_scrape_value(s, "llamacpp_predicted_tokens_seconds", &gauge) &&
                   gauge > 0) {
                ewma(h->alpha, &h->have_tokens_per_s, &h->tokens_per_s, gauge);
        }
}

static void observe_first_token_ms(ps_perf_hints *h, const reading *rd) {
        if (rd->has[C_TTFT_SUM] && rd->has[C_TTFT_COUNT] && rd->delta_ok &&
            h->prev_has[C_TTFT_SUM] && grew(rd, h, C_TTFT_COUNT))
                ewma(h->alpha, &h->have_first_token_ms, &h->first_token_ms,
                     rd->d[C_TTFT_SUM] / rd->d[C_TTFT_COUNT] * 1000.0);
}

void ps_perf_hints_observe(ps_perf_hints *h, const ps_engine_scrape *s, int64_t now_ms) {
        reading rd;

        reading_take(&rd, h, s, now_ms);
        observe_tokens_per_s(h, &rd, s);
        observe_first_token_ms(h, &rd);
        for (int i = 0; i < C_MAX; i++) {
                h->prev_has[i] = rd.has[i];
                h->prev[i] = rd.has[i] ? rd.cur[i] : 0;
        }
        h->prev_ms = now_ms;
        h->prev_valid = true;
}

bool ps_perf_hints_tokens_per_s(const ps_perf_hints *h, double *ret) {
        if (!h || !h->have_tokens_per_s)
                return false;
        *ret = h->tokens_per_s;
        return true;
}

bool ps_perf_hints_first_token_ms(const ps_perf_hints *h, double *ret) {
        if (!h || !h->have_first_token_ms)
                return false;
        *ret = h->first_token_ms;
        return true;
}
