/* SPDX-License-Identifier: MIT */
/*
 * last_error's text from an engine's last log lines: the cause, not the
 * generic goodbye that follows it, and without the engine's prefix. The
 * sequences are the ones llama-server and vLLM write on a failed start.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "pool-domain/cause.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static int pick(const char *const *text, size_t n, char *buf, size_t size) {
        pd_log_line lines[32];

        assert_true(n <= ARRAY_SIZE(lines));
        for (size_t i = 0; i < n; i++)
                lines[i] = (pd_log_line) { .text = text[i], .len = strlen(text[i]) };
        return pd_log_cause_pick(lines, n, buf, size);
}

#define PICK(arr, buf) pick((arr), ARRAY_SIZE(arr), (buf), sizeof(buf))

/* ---- prefixes ----------------------------------------------------------- */

static void body_is(const char *line, const char *want, bool want_error) {
        size_t len = 12345;
        bool error = !want_error;
        const char *body = pd_log_line_body(line, strlen(line), &len, &error);

        assert_int_equal(len, strlen(want));
        assert_memory_equal(body, want, len);
        assert_int_equal(error, want_error);
}

static void test_llama_prefix_is_stripped(void **state) {
        (void) state;
        body_is("0.00.013.368 E llama_model_load: error loading model: x",
                "llama_model_load: error loading model: x", true);
        body_is("12.59.999.001 I srv  load_model: loading model", "srv  load_model: loading model",
                false);
        body_is("0.00.001.000 W warn", "warn", false);
        body_is("E main: exiting due to HTTP server error", "main: exiting due to HTTP server error",
                true);
        body_is("  plain line with blanks \r\n", "plain line with blanks", false);
        /* not a prefix: left alone */
        body_is("0.00.013 E short stamp", "0.00.013 E short stamp", false);
        body_is("Error: bad", "Error: bad", false);
        body_is("EX not a level", "EX not a level", false);
        body_is("", "", false);
}

static void test_vllm_prefix_is_stripped(void **state) {
        (void) state;
        body_is("ERROR 12-06 10:00:00 [core.py:586] ValueError: no KV cache",
                "ValueError: no KV cache", true);
        body_is("INFO 12-06 10:00:00.123 [api_server.py:12] Starting", "Starting", false);
        body_is("CRITICAL 12-06 10:00:00 [x.py:1] dead", "dead", true);
        body_is("(EngineCore_0 pid=4242) ERROR 12-06 10:00:00 [core.py:7] boom", "boom", true);
        body_is("WARNING 12-06 10:00:00 [w.py:3] careful", "careful", false);
        body_is("ERRORS are everywhere", "ERRORS are everywhere", false);
}

/* ---- the choice ------------------------------------------------------- */

static void test_llama_corrupt_model_names_the_tensor(void **state) {
        /* build 9187 on a truncated GGUF: the cause twice (it tries twice),
         * generic failures after it, and the generic exit last */
        static const char *const log[] = {
                "0.00.000.512 I build: 9187 (0253fb21) with cc for x86_64-linux-gnu",
                "0.00.001.010 I srv    load_model: loading model '/models/cut.gguf'",
                "0.00.010.100 I llama_model_loader: loaded meta data with 31 key-value pairs",
                "0.00.012.300 E llama_model_load: error loading model: tensor 'blk.3.ffn_up.weight' "
                "data is not within the file bounds, model is corrupted or incomplete",
                "0.00.012.310 E llama_model_load_from_file_impl: failed to load model",
                "0.00.012.900 E llama_model_load: error loading model: tensor 'blk.3.ffn_up.weight' "
                "data is not within the file bounds, model is corrupted or incomplete",
                "0.00.012.910 E llama_model_load_from_file_impl: failed to load model",
                "0.00.013.001 E common_init_from_params: failed to load model '/models/cut.gguf'",
                "0.00.013.200 E srv    load_model: failed to load model, '/models/cut.gguf'",
                "0.00.013.368 E main: exiting due to model loading error",
        };
        char buf[256];

        (void) state;
        assert_int_equal(PICK(log, buf), 5);
        assert_string_equal(buf, "llama_model_load: error loading model: tensor 'blk.3.ffn_up.weight' "
                                 "data is not within the file bounds, model is corrupted or incomplete");
}

static void test_llama_port_in_use_names_the_bind(void **state) {
        static const char *const log[] = {
                "0.00.000.400 I build: 9187 (0253fb21) with cc for x86_64-linux-gnu",
                "0.00.000.900 I main: HTTP server is listening, hostname: 127.0.0.1, port: 8080",
                "0.00.001.000 E main: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080",
                "0.00.001.100 I srv    operator(): operator(): cleaning up before exit...",
                "0.00.001.200 E main: exiting due to HTTP server error",
        };
        char buf[256];

        (void) state;
        assert_int_equal(PICK(log, buf), 2);
        assert_string_equal(buf, "main: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080");
}

static void test_error_loading_model_beats_failed_to_load(void **state) {
        /* a cause the lists do not know: the line that carries it still wins */
        static const char *const log[] = {
                "0.00.012.300 E llama_model_load: error loading model: unsupported quantization 'q9'",
                "0.00.012.310 E llama_model_load_from_file_impl: failed to load model",
                "0.00.013.200 E srv    load_model: failed to load model, '/models/q9.gguf'",
                "0.00.013.368 E main: exiting due to model loading error",
        };
        static const char *const bare[] = {
                "0.00.013.200 E srv    load_model: failed to load model, '/models/q9.gguf'",
                "0.00.013.300 I srv    operator(): cleaning up before exit...",
                "0.00.013.368 E main: exiting due to model loading error",
        };
        char buf[256];

        (void) state;
        assert_int_equal(PICK(log, buf), 0);
        assert_string_equal(buf, "llama_model_load: error loading model: unsupported quantization 'q9'");
        assert_int_equal(PICK(bare, buf), 0);
        assert_string_equal(buf, "srv    load_model: failed to load model, '/models/q9.gguf'");
}

static void test_missing_model_and_cuda_lines_are_causes(void **state) {
        static const char *const gguf[] = {
                "0.00.001.010 I srv    load_model: loading model '/nope.gguf'",
                "0.00.001.020 E gguf_init_from_file: failed to open GGUF file '/nope.gguf'",
                "0.00.001.030 E llama_model_load: error loading model: llama_model_loader: failed "
                "to load model from /nope.gguf",
                "0.00.001.040 E main: exiting due to model loading error",
        };
        static const char *const cuda[] = {
                "0.00.501.000 I load_tensors: offloaded 33/33 layers to GPU",
                "CUDA error: an illegal memory access was encountered",
                "  current device: 0, in function ggml_backend_cuda_synchronize",
                "/src/ggml-cuda.cu:84: CUDA error",
                "0.00.501.900 E main: exiting due to model loading error",
        };
        char buf[256];

        (void) state;
        assert_int_equal(PICK(gguf, buf), 1);
        assert_string_equal(buf, "gguf_init_from_file: failed to open GGUF file '/nope.gguf'");
        /* the line that says which CUDA error, not ggml's abort after it */
        assert_int_equal(PICK(cuda, buf), 1);
        assert_string_equal(buf, "CUDA error: an illegal memory access was encountered");
}

static void test_vllm_value_error_beats_the_final_runtime_error(void **state) {
        static const char *const log[] = {
                "INFO 12-06 10:00:00 [core.py:60] Initializing a V1 LLM engine",
                "(EngineCore_0 pid=7) ERROR 12-06 10:00:09 [core.py:586] EngineCore failed to start.",
                "(EngineCore_0 pid=7) ERROR 12-06 10:00:09 [core.py:586] Traceback (most recent call last):",
                "(EngineCore_0 pid=7) ERROR 12-06 10:00:09 [core.py:586]     raise ValueError(",
                "(EngineCore_0 pid=7) ERROR 12-06 10:00:09 [core.py:586] ValueError: To serve at least "
                "one request with max seq len (32768), 4.00 GiB KV cache is needed",
                "Traceback (most recent call last):",
                "  File \"/usr/bin/vllm\", line 8, in <module>",
                "RuntimeError: Engine core initialization failed. See root cause above. Failed core "
                "proc(s): {}",
        };
        static const char *const oom[] = {
                "ERROR 12-06 10:00:09 [core.py:586] Traceback (most recent call last):",
                "ERROR 12-06 10:00:09 [core.py:586] torch.OutOfMemoryError: CUDA out of memory. "
                "Tried to allocate 2.00 GiB.",
                "RuntimeError: Engine core initialization failed. See root cause above.",
        };
        char buf[512];

        (void) state;
        assert_int_equal(PICK(log, buf), 4);
        assert_string_equal(buf, "ValueError: To serve at least one request with max seq len (32768), "
                                 "4.00 GiB KV cache is needed");
        assert_int_equal(PICK(oom, buf), 1);
        assert_string_equal(buf, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.");
}

static void test_without_a_cause_the_last_error_line_then_the_last_line(void **state) {
        static const char *const errors[] = {
                "0.00.001.000 I srv  init: starting",
                "0.00.001.100 E srv  init: the template is not supported",
                "0.00.001.200 I srv  operator(): cleaning up before exit...",
                "0.00.001.300 E main: exiting due to an unknown problem",
                "",
        };
        static const char *const plain[] = {
                "0.00.001.000 I srv  init: starting",
                "0.00.001.200 I srv  operator(): cleaning up before exit...",
                "   ",
        };
        static const char *const only_generic[] = {
                "0.00.001.300 E main: exiting due to model loading error",
        };
        char buf[256];

        (void) state;
        assert_int_equal(PICK(errors, buf), 1);
        assert_string_equal(buf, "srv  init: the template is not supported");
        assert_int_equal(PICK(plain, buf), 1);
        assert_string_equal(buf, "srv  operator(): cleaning up before exit...");
        /* nothing better: the generic line is still better than nothing */
        assert_int_equal(PICK(only_generic, buf), 0);
        assert_string_equal(buf, "main: exiting due to model loading error");
}

static void test_blank_or_no_lines_choose_nothing(void **state) {
        static const char *const blank[] = { "", "  ", "\r" };
        char buf[16] = "junk";

        (void) state;
        assert_int_equal(PICK(blank, buf), -1);
        assert_string_equal(buf, "");
        assert_int_equal(pd_log_cause_pick(NULL, 0, buf, sizeof(buf)), -1);
        assert_int_equal(pick(blank, 0, buf, sizeof(buf)), -1);
}

static void test_long_cause_is_cut_to_the_buffer(void **state) {
        static const char *const log[] = { "0.00.000.001 E ValueError: 0123456789abcdef" };
        char buf[16];

        (void) state;
        assert_int_equal(PICK(log, buf), 0);
        assert_string_equal(buf, "ValueError: 012");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_llama_prefix_is_stripped),
                cmocka_unit_test(test_vllm_prefix_is_stripped),
                cmocka_unit_test(test_llama_corrupt_model_names_the_tensor),
                cmocka_unit_test(test_llama_port_in_use_names_the_bind),
                cmocka_unit_test(test_error_loading_model_beats_failed_to_load),
                cmocka_unit_test(test_missing_model_and_cuda_lines_are_causes),
                cmocka_unit_test(test_vllm_value_error_beats_the_final_runtime_error),
                cmocka_unit_test(test_without_a_cause_the_last_error_line_then_the_last_line),
                cmocka_unit_test(test_blank_or_no_lines_choose_nothing),
                cmocka_unit_test(test_long_cause_is_cut_to_the_buffer),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
