/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>

#include "pool-domain/crash.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- class names and families ---------------------------------------- */

static void test_crash_class_strings_are_the_metric_labels(void **state) {
        (void) state;
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_GRACEFUL), "graceful");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_EXIT_CODE), "exit_code");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_SIGNAL), "signal");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_CUDA_ERROR), "cuda_error");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_DRIVER_ERROR), "driver_error");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_VRAM_OOM), "vram_oom");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_HOST_OOM), "host_oom");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_HEALTH_TIMEOUT), "health_timeout");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_STARTUP_TIMEOUT), "startup_timeout");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_STALL_TIMEOUT), "stall_timeout");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_PREFLIGHT), "preflight");
        assert_string_equal(pd_crash_class_to_string(PD_CRASH_NODE_ERROR), "node_error");
}

/* ---- node errors ------------------------------------------------------- */

static void test_node_errors_are_the_nodes_not_the_engines(void **state) {
        static const struct {
                int err;
                bool in_runtime_dir;
                const char *kind;       /* NULL: not a node error */
        } cases[] = {
                { EMFILE, false, "fd_limit" },
                { ENFILE, false, "fd_limit" },
                { EAGAIN, false, "process_limit" },
                { ENOSPC, false, "disk_full" },
                { EDQUOT, true, "disk_full" },
                { ENOMEM, false, "memory" },
                { EROFS, false, "runtime_dir" },
                { EACCES, true, "runtime_dir" },
                { ENOENT, true, "runtime_dir" },
                { ENOTDIR, true, "runtime_dir" },
                { EPERM, true, "runtime_dir" },
                /* the engine's own: a missing or unexecutable binary */
                { ENOENT, false, NULL },
                { EACCES, false, NULL },
                { ENOEXEC, false, NULL },
                { EINVAL, false, NULL },
        };

        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                pd_node_error_kind kind = PD_NODE_ERROR_KIND_MAX;
                bool node = pd_node_error_classify(cases[i].err, cases[i].in_runtime_dir, &kind);

                if (!cases[i].kind) {
                        assert_false(node);
                        assert_int_equal(kind, PD_NODE_ERROR_KIND_MAX);
                        continue;
                }
                assert_true(node);
                assert_string_equal(pd_node_error_kind_to_string(kind), cases[i].kind);
        }
        assert_null(pd_node_error_kind_to_string(PD_NODE_ERROR_KIND_MAX));
        assert_true(pd_node_error_classify(EMFILE, false, NULL));
}

static void test_crash_class_to_string_out_of_range_is_null(void **state) {
        (void) state;
        assert_null(pd_crash_class_to_string(PD_CRASH_CLASS_MAX));
        assert_null(pd_crash_class_to_string((pd_crash_class) -1));
}

static void test_crash_class_from_string_round_trips(void **state) {
        (void) state;
        for (int i = 0; i < PD_CRASH_CLASS_MAX; i++) {
                pd_crash_class cls = PD_CRASH_CLASS_MAX;

                assert_int_equal(pd_crash_class_from_string(pd_crash_class_to_string((pd_crash_class) i), &cls), 0);
                assert_int_equal(cls, i);
        }
}

static void test_crash_class_from_string_refuses_unknown_names(void **state) {
        static const char *const bad[] = { "", "oom", "GRACEFUL", "vram_oom ", "cuda", "none" };
        pd_crash_class cls = PD_CRASH_SIGNAL;

        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                assert_int_equal(pd_crash_class_from_string(bad[i], &cls), PD_E_INVALID);
        assert_int_equal(pd_crash_class_from_string(NULL, &cls), PD_E_INVALID);
        /* Refusal leaves the output alone. */
        assert_int_equal(cls, PD_CRASH_SIGNAL);
}

static void test_crash_family_gpu_is_cuda_driver_and_vram_oom(void **state) {
        (void) state;
        for (int i = 0; i < PD_CRASH_CLASS_MAX; i++) {
                bool gpu = i == PD_CRASH_CUDA_ERROR || i == PD_CRASH_DRIVER_ERROR ||
                           i == PD_CRASH_VRAM_OOM;

                assert_int_equal(pd_crash_class_family((pd_crash_class) i),
                                 gpu ? PD_CRASH_FAMILY_GPU : PD_CRASH_FAMILY_GENERAL);
        }
        assert_int_equal(pd_crash_class_family(PD_CRASH_HOST_OOM), PD_CRASH_FAMILY_GENERAL);
}

static void test_crash_family_strings(void **state) {
        (void) state;
        assert_string_equal(pd_crash_family_to_string(PD_CRASH_FAMILY_GENERAL), "general");
        assert_string_equal(pd_crash_family_to_string(PD_CRASH_FAMILY_GPU), "gpu");
        assert_null(pd_crash_family_to_string(PD_CRASH_FAMILY_MAX));
}

/* ---- signal names ------------------------------------------------------ */

static void test_signal_name_covers_standard_signals(void **state) {
        static const struct {
                int signo;
                const char *name;
        } table[] = {
                { SIGHUP, "SIGHUP" },   { SIGINT, "SIGINT" },   { SIGQUIT, "SIGQUIT" },
                { SIGILL, "SIGILL" },   { SIGTRAP, "SIGTRAP" }, { SIGABRT, "SIGABRT" },
                { SIGBUS, "SIGBUS" },   { SIGFPE, "SIGFPE" },   { SIGKILL, "SIGKILL" },
                { SIGUSR1, "SIGUSR1" }, { SIGSEGV, "SIGSEGV" }, { SIGUSR2, "SIGUSR2" },
                { SIGPIPE, "SIGPIPE" }, { SIGALRM, "SIGALRM" }, { SIGTERM, "SIGTERM" },
                { SIGCHLD, "SIGCHLD" }, { SIGCONT, "SIGCONT" }, { SIGSTOP, "SIGSTOP" },
                { SIGTSTP, "SIGTSTP" }, { SIGTTIN, "SIGTTIN" }, { SIGTTOU, "SIGTTOU" },
                { SIGURG, "SIGURG" },   { SIGXCPU, "SIGXCPU" }, { SIGXFSZ, "SIGXFSZ" },
                { SIGVTALRM, "SIGVTALRM" }, { SIGPROF, "SIGPROF" }, { SIGWINCH, "SIGWINCH" },
                { SIGSYS, "SIGSYS" },
        };

        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(table); i++)
                assert_string_equal(pd_signal_name(table[i].signo), table[i].name);
        /* The numbers every Linux architecture shares. */
        assert_string_equal(pd_signal_name(9), "SIGKILL");
        assert_string_equal(pd_signal_name(11), "SIGSEGV");
        assert_string_equal(pd_signal_name(15), "SIGTERM");
}

static void test_signal_name_unknown_number_is_null(void **state) {
        (void) state;
        assert_null(pd_signal_name(0));
        assert_null(pd_signal_name(-1));
        assert_null(pd_signal_name(77));
        assert_null(pd_signal_name(SIGRTMIN));
}

/* ---- classification ---------------------------------------------------- */

static pd_exit exited_with(int code) {
        return (pd_exit) { .exited = true, .code = code };
}

static pd_exit killed_by(int signo) {
        return (pd_exit) { .exited = false, .signo = signo };
}

static void assert_classified(const pd_exit *e, pd_crash_class evidence, bool host_oom,
                              pd_crash_class cls, bool is_crash, const char *reason) {
        pd_crash c;

        memset(&c, 0xa5, sizeof(c));
        pd_crash_classify(e, evidence, host_oom, &c);
        assert_string_equal(pd_crash_class_to_string(c.cls), pd_crash_class_to_string(cls));
        assert_int_equal(c.is_crash, is_crash);
        assert_string_equal(c.reason, reason);
}

static void test_classify_requested_stop_is_never_a_crash(void **state) {
        pd_exit e = killed_by(SIGKILL);

        (void) state;
        e.requested = true;
        /* Not even with OOM evidence and the OOM killer in the picture. */
        assert_classified(&e, PD_CRASH_VRAM_OOM, true, PD_CRASH_GRACEFUL, false, "stopped on request");
        e = exited_with(1);
        e.requested = true;
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_GRACEFUL, false, "stopped on request");
        e = (pd_exit) { .status_unknown = true, .requested = true };
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_GRACEFUL, false, "stopped on request");
}

static void test_classify_exit_zero_is_graceful(void **state) {
        pd_exit e = exited_with(0);

        (void) state;
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_GRACEFUL, false, "exited with code 0");
}

static void test_classify_exit_zero_beats_host_oom_and_log_evidence(void **state) {
        pd_exit e = exited_with(0);

        (void) state;
        assert_classified(&e, PD_CRASH_CUDA_ERROR, true, PD_CRASH_GRACEFUL, false, "exited with code 0");
}

static void test_classify_host_oom_beats_log_evidence(void **state) {
        pd_exit e = killed_by(SIGKILL);

        (void) state;
        assert_classified(&e, PD_CRASH_VRAM_OOM, true, PD_CRASH_HOST_OOM, true,
                          "host out of memory: kernel OOM killer (killed by SIGKILL)");
}

static void test_classify_vram_oom_evidence_names_exit(void **state) {
        pd_exit e = exited_with(1);

        (void) state;
        assert_classified(&e, PD_CRASH_VRAM_OOM, false, PD_CRASH_VRAM_OOM, true,
                          "CUDA out of memory (exited with code 1)");
}

static void test_classify_driver_error_evidence_beats_signal(void **state) {
        pd_exit e = killed_by(SIGABRT);

        (void) state;
        assert_classified(&e, PD_CRASH_DRIVER_ERROR, false, PD_CRASH_DRIVER_ERROR, true,
                          "GPU driver error (killed by SIGABRT)");
}

static void test_classify_cuda_error_evidence_beats_signal(void **state) {
        pd_exit e = killed_by(SIGSEGV);

        (void) state;
        assert_classified(&e, PD_CRASH_CUDA_ERROR, false, PD_CRASH_CUDA_ERROR, true,
                          "CUDA error (killed by SIGSEGV)");
}

static void test_classify_ignores_non_gpu_evidence(void **state) {
        pd_exit e = exited_with(2);

        (void) state;
        assert_classified(&e, PD_CRASH_HEALTH_TIMEOUT, false, PD_CRASH_EXIT_CODE, true,
                          "exited with code 2");
        assert_classified(&e, PD_CRASH_GRACEFUL, false, PD_CRASH_EXIT_CODE, true,
                          "exited with code 2");
}

static void test_classify_signal_names_the_signal(void **state) {
        pd_exit e = killed_by(SIGSEGV);

        (void) state;
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_SIGNAL, true, "killed by SIGSEGV");
        e = killed_by(SIGKILL);
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_SIGNAL, true, "killed by SIGKILL");
}

static void test_classify_unknown_signal_number(void **state) {
        pd_exit e = killed_by(77);

        (void) state;
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_SIGNAL, true, "killed by signal 77");
}

static void test_classify_nonzero_exit_code(void **state) {
        pd_exit e = exited_with(1);

        (void) state;
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_EXIT_CODE, true, "exited with code 1");
        e = exited_with(255);
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_EXIT_CODE, true, "exited with code 255");
}

static void test_classify_status_unknown_is_exit_code_crash(void **state) {
        pd_exit e = { .status_unknown = true };

        (void) state;
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_EXIT_CODE, true,
                          "exited (status unknown: not our child)");
        /* Whatever stale code the struct holds is not trusted. */
        e = (pd_exit) { .status_unknown = true, .exited = true, .code = 0 };
        assert_classified(&e, PD_CRASH_CLASS_MAX, false, PD_CRASH_EXIT_CODE, true,
                          "exited (status unknown: not our child)");
}

static void test_classify_status_unknown_with_evidence_takes_evidence(void **state) {
        pd_exit e = { .status_unknown = true };

        (void) state;
        assert_classified(&e, PD_CRASH_VRAM_OOM, false, PD_CRASH_VRAM_OOM, true,
                          "CUDA out of memory (status unknown: not our child)");
        assert_classified(&e, PD_CRASH_CLASS_MAX, true, PD_CRASH_HOST_OOM, true,
                          "host out of memory: kernel OOM killer (status unknown: not our child)");
}

static void test_classify_null_exit_is_status_unknown(void **state) {
        (void) state;
        assert_classified(NULL, PD_CRASH_CLASS_MAX, false, PD_CRASH_EXIT_CODE, true,
                          "exited (status unknown: not our child)");
        pd_crash_classify(NULL, PD_CRASH_CLASS_MAX, false, NULL);
}

/* ---- log scanning ------------------------------------------------------ */

static void assert_scan(const char *line, pd_crash_class expect) {
        pd_crash_class got = PD_CRASH_CLASS_MAX;

        if (!pd_crash_scan_line(line, strlen(line), &got))
                fail_msg("not recognised: %s", line);
        if (got != expect)
                fail_msg("%s instead of %s: %s", pd_crash_class_to_string(got),
                         pd_crash_class_to_string(expect), line);
}

static void assert_scan_ignores(const char *line) {
        pd_crash_class got = PD_CRASH_SIGNAL;

        if (pd_crash_scan_line(line, strlen(line), &got))
                fail_msg("false positive (%s): %s", pd_crash_class_to_string(got), line);
        assert_int_equal(got, PD_CRASH_SIGNAL);
}

static void test_scan_finds_llamacpp_vram_oom(void **state) {
        (void) state;
        assert_scan("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on device 0: "
                    "cudaMalloc failed: out of memory", PD_CRASH_VRAM_OOM);
        assert_scan("0.01.204.113 E ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB "
                    "on device 0: cudaMalloc failed: out of memory", PD_CRASH_VRAM_OOM);
        assert_scan("alloc_tensor_range: failed to allocate CUDA0 buffer of size 9437184000",
                    PD_CRASH_VRAM_OOM);
        assert_scan("CUDA error: out of memory", PD_CRASH_VRAM_OOM);
}

static void test_scan_finds_pytorch_vllm_vram_oom(void **state) {
        (void) state;
        assert_scan("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has "
                    "a total capacity of 23.64 GiB of which 3.06 MiB is free.", PD_CRASH_VRAM_OOM);
        assert_scan("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB",
                    PD_CRASH_VRAM_OOM);
        assert_scan("ValueError: No available memory for the cache blocks. Try increasing "
                    "`gpu_memory_utilization` when initializing the engine.", PD_CRASH_VRAM_OOM);
}

static void test_scan_finds_cuda_api_oom_names(void **state) {
        (void) state;
        assert_scan("RuntimeError: CUDA driver error: CUDA_ERROR_OUT_OF_MEMORY", PD_CRASH_VRAM_OOM);
        assert_scan("CUDA_ERROR_OUT_OF_MEMORY", PD_CRASH_VRAM_OOM);
        assert_scan("cudaErrorMemoryAllocation", PD_CRASH_VRAM_OOM);
        assert_scan("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
                    PD_CRASH_VRAM_OOM);
}

static void test_scan_finds_driver_mismatch(void **state) {
        (void) state;
        assert_scan("Failed to initialize NVML: Driver/library version mismatch", PD_CRASH_DRIVER_ERROR);
        assert_scan("ggml_cuda_init: failed to initialize CUDA: CUDA driver version is insufficient "
                    "for CUDA runtime version", PD_CRASH_DRIVER_ERROR);
        assert_scan("CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", PD_CRASH_DRIVER_ERROR);
        assert_scan("RuntimeError: CUDA driver initialization failed: CUDA_ERROR_INSUFFICIENT_DRIVER",
                    PD_CRASH_DRIVER_ERROR);
}

static void test_scan_finds_missing_or_lost_device(void **state) {
        (void) state;
        assert_scan("ggml_cuda_init: failed to initialize CUDA: no CUDA-capable device is detected",
                    PD_CRASH_DRIVER_ERROR);
        assert_scan("NVRM: Xid (PCI:0000:3b:00): 79, pid=4242, name=llama-server, GPU has fallen off the bus.",
                    PD_CRASH_DRIVER_ERROR);
        assert_scan("GPU has fallen off the bus", PD_CRASH_DRIVER_ERROR);
        assert_scan("NVRM: Xid (PCI:0000:01:00): 13, Graphics SM Warp Exception", PD_CRASH_DRIVER_ERROR);
        assert_scan("RuntimeError: CUDA error: CUDA_ERROR_NO_DEVICE", PD_CRASH_DRIVER_ERROR);
        assert_scan("vk::DeviceLostError: device lost", PD_CRASH_DRIVER_ERROR);
        assert_scan("CUDA_ERROR_DEVICE_UNAVAILABLE", PD_CRASH_DRIVER_ERROR);
        assert_scan("CUDA error: CUDA-capable device(s) is/are busy or unavailable", PD_CRASH_DRIVER_ERROR);
        assert_scan("RuntimeError: CUDA error: uncorrectable ECC error encountered", PD_CRASH_DRIVER_ERROR);
}

static void test_scan_finds_llamacpp_cuda_errors(void **state) {
        (void) state;
        assert_scan("CUDA error: an illegal memory access was encountered", PD_CRASH_CUDA_ERROR);
        assert_scan("/src/llama.cpp/ggml/src/ggml-cuda/ggml-cuda.cu:84: CUDA error", PD_CRASH_CUDA_ERROR);
        assert_scan("#4  0x00007f3a9c2b1d45 in ggml_cuda_error(char const*, char const*, char const*, int, "
                    "char const*) () from libggml-cuda.so", PD_CRASH_CUDA_ERROR);
}

static void test_scan_finds_cuda_api_error_names(void **state) {
        (void) state;
        assert_scan("CUDA_ERROR_LAUNCH_FAILED", PD_CRASH_CUDA_ERROR);
        assert_scan("Exception: cudaErrorIllegalAddress: an illegal memory access", PD_CRASH_CUDA_ERROR);
        assert_scan("RuntimeError: CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling "
                    "`cublasGemmEx( handle, opa, opb, m, n, k, &falpha, a, CUDA_R_16F, lda, b, "
                    "CUDA_R_16F, ldb, &fbeta, c, CUDA_R_16F, ldc, CUDA_R_32F, CUBLAS_GEMM_DEFAULT_TENSOR_OP)`",
                    PD_CRASH_CUDA_ERROR);
        assert_scan("RuntimeError: CUDA error: device-side assert triggered", PD_CRASH_CUDA_ERROR);
}

static void test_scan_oom_beats_driver_beats_cuda_error(void **state) {
        (void) state;
        assert_scan("CUDA error: out of memory (after Driver/library version mismatch)", PD_CRASH_VRAM_OOM);
        assert_scan("CUDA error: no CUDA-capable device is detected", PD_CRASH_DRIVER_ERROR);
        assert_scan("CUDA_ERROR_LAUNCH_FAILED then GPU has fallen off the bus", PD_CRASH_DRIVER_ERROR);
        assert_scan("cudaErrorIllegalAddress, cudaErrorMemoryAllocation", PD_CRASH_VRAM_OOM);
}

static void test_scan_is_case_insensitive(void **state) {
        (void) state;
        assert_scan("cuda ERROR: OUT OF MEMORY", PD_CRASH_VRAM_OOM);
        assert_scan("FAILED TO INITIALIZE NVML: DRIVER/LIBRARY VERSION MISMATCH", PD_CRASH_DRIVER_ERROR);
        assert_scan("cuda_error_launch_failed", PD_CRASH_CUDA_ERROR);
}

static void test_scan_ignores_ordinary_engine_lines(void **state) {
        static const char *const lines[] = {
                "0.00.089.421 I srv  llama_server: listening on http://127.0.0.1:18181",
                "llama_server: model loaded",
                "srv  update_slots: all slots are idle",
                "KV cache memory: 512 MiB",
                "llama_kv_cache:      CUDA0 KV buffer size =  1024.00 MiB",
                "llama_context:      CUDA0 compute buffer size =   164.01 MiB",
                "ggml_cuda_init: found 1 CUDA devices:",
                "  Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9, VMM: yes",
                "load_tensors: offloaded 33/33 layers to GPU",
                "  current device: 0, in function ggml_backend_cuda_synchronize at ggml-cuda.cu:2563",
                ("INFO 05-02 10:00:00 worker.py:249] Memory profiling takes 4.21 seconds; "
                 "total_gpu_memory (79.10GiB) x gpu_memory_utilization (0.90) = 71.19GiB"),
                "I0502 cublas handle created: CUBLAS_STATUS_SUCCESS",
                ("INFO 05-02 10:00:31 model_runner.py:1014] CUDA graphs can take additional 1~3 GiB "
                 "memory per GPU. If you are running out of memory, consider decreasing "
                 "`gpu_memory_utilization` or enforcing eager mode."),
                ("INFO 05-02 10:00:31 model_runner.py:1404] If out-of-memory error occurs during "
                 "cudagraph capture, consider decreasing `gpu_memory_utilization` or switching to eager mode."),
                "",
        };

        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(lines); i++)
                assert_scan_ignores(lines[i]);
}

static void test_scan_host_out_of_memory_is_not_vram(void **state) {
        (void) state;
        assert_scan_ignores("terminate called after throwing an instance of 'std::bad_alloc'");
        assert_scan_ignores("  what():  std::bad_alloc");
        assert_scan_ignores("out of memory");
        assert_scan_ignores("mmap failed: Cannot allocate memory (out of memory)");
        /* ggml falls back to pageable memory and keeps running. */
        assert_scan_ignores("ggml_cuda_host_malloc: failed to allocate 512.00 MiB of pinned memory: "
                            "out of memory");
}

static void test_scan_reads_only_len_bytes(void **state) {
        /* No terminator: the scanner must not read past len. */
        const char line[] = { 'o', 'k', ' ', 'C', 'U', 'D', 'A', ' ', 'e', 'r', 'r', 'o', 'r' };
        pd_crash_class got = PD_CRASH_CLASS_MAX;

        (void) state;
        assert_true(pd_crash_scan_line(line, sizeof(line), &got));
        assert_int_equal(got, PD_CRASH_CUDA_ERROR);
        assert_false(pd_crash_scan_line(line, sizeof(line) - 1, &got));
        assert_false(pd_crash_scan_line("CUDA error: out of memory", 0, &got));
        assert_false(pd_crash_scan_line(NULL, 10, &got));
        /* "CUDA error: out of memory" cut before "out": a plain CUDA error. */
        assert_true(pd_crash_scan_line("CUDA error: out of memory", 11, &got));
        assert_int_equal(got, PD_CRASH_CUDA_ERROR);
}

static void test_scan_accepts_null_out(void **state) {
        (void) state;
        assert_true(pd_crash_scan_line("CUDA error: out of memory", 25, NULL));
}

/* ---- evidence ---------------------------------------------------------- */

static void test_evidence_merge_keeps_most_severe(void **state) {
        (void) state;
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_CLASS_MAX, PD_CRASH_CUDA_ERROR), PD_CRASH_CUDA_ERROR);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_CUDA_ERROR, PD_CRASH_DRIVER_ERROR), PD_CRASH_DRIVER_ERROR);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_DRIVER_ERROR, PD_CRASH_VRAM_OOM), PD_CRASH_VRAM_OOM);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_VRAM_OOM, PD_CRASH_CUDA_ERROR), PD_CRASH_VRAM_OOM);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_VRAM_OOM, PD_CRASH_DRIVER_ERROR), PD_CRASH_VRAM_OOM);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_DRIVER_ERROR, PD_CRASH_CUDA_ERROR), PD_CRASH_DRIVER_ERROR);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_CUDA_ERROR, PD_CRASH_CLASS_MAX), PD_CRASH_CUDA_ERROR);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_CLASS_MAX, PD_CRASH_CLASS_MAX), PD_CRASH_CLASS_MAX);
}

static void test_evidence_merge_ranks_other_classes_below_gpu(void **state) {
        (void) state;
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_SIGNAL, PD_CRASH_CUDA_ERROR), PD_CRASH_CUDA_ERROR);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_CUDA_ERROR, PD_CRASH_HOST_OOM), PD_CRASH_CUDA_ERROR);
        assert_int_equal(pd_crash_evidence_merge(PD_CRASH_CLASS_MAX, PD_CRASH_SIGNAL), PD_CRASH_CLASS_MAX);
}

static void test_evidence_from_a_log_feeds_classify(void **state) {
        static const char *const log[] = {
                "0.00.089.421 I srv  llama_server: model loaded",
                "CUDA error: an illegal memory access was encountered",
                ("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on device 0: "
                 "cudaMalloc failed: out of memory"),
                "CUDA error: an illegal memory access was encountered",
        };
        pd_crash_class evidence = PD_CRASH_CLASS_MAX, cls;
        pd_exit e = killed_by(SIGABRT);

        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(log); i++)
                if (pd_crash_scan_line(log[i], strlen(log[i]), &cls))
                        evidence = pd_crash_evidence_merge(evidence, cls);
        assert_classified(&e, evidence, false, PD_CRASH_VRAM_OOM, true,
                          "CUDA out of memory (killed by SIGABRT)");
}

/* ---- host OOM ---------------------------------------------------------- */

static void test_memory_events_reads_oom_kill(void **state) {
        static const char sample[] = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        uint64_t v = 99;

        (void) state;
        assert_int_equal(pd_memory_events_oom_kill(sample, strlen(sample), &v, NULL), 0);
        assert_true(v == 2);
}

static void test_memory_events_oom_group_kill_is_not_oom_kill(void **state) {
        static const char before[] = "low 0\nhigh 0\nmax 0\noom 0\noom_group_kill 5\noom_kill 3\n";
        static const char only_group[] = "low 0\nhigh 0\nmax 0\noom 4\noom_group_kill 4\n";
        pd_error err;
        uint64_t v = 99;

        (void) state;
        assert_int_equal(pd_memory_events_oom_kill(before, strlen(before), &v, NULL), 0);
        assert_true(v == 3);
        v = 99;
        assert_int_equal(pd_memory_events_oom_kill(only_group, strlen(only_group), &v, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "memory.events: no oom_kill line");
        assert_true(v == 99);
}

static void test_memory_events_without_trailing_newline(void **state) {
        static const char sample[] = "low 0\nhigh 0\nmax 0\noom 7\noom_kill 7";
        uint64_t v = 0;

        (void) state;
        assert_int_equal(pd_memory_events_oom_kill(sample, strlen(sample), &v, NULL), 0);
        assert_true(v == 7);
}

static void test_memory_events_missing_key(void **state) {
        /* Kernels before 4.13 have no oom_kill line. */
        static const char old_kernel[] = "low 0\nhigh 0\nmax 3\noom 1\n";
        pd_error err;
        uint64_t v = 99;

        (void) state;
        assert_int_equal(pd_memory_events_oom_kill(old_kernel, strlen(old_kernel), &v, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "memory.events: no oom_kill line");
        assert_int_equal(pd_memory_events_oom_kill("", 0, &v, &err), PD_E_INVALID);
        assert_int_equal(pd_memory_events_oom_kill(NULL, 0, &v, &err), PD_E_INVALID);
        assert_true(v == 99);
}

static void test_memory_events_garbage_number(void **state) {
        static const char *const bad[] = {
                "oom_kill x\n", "oom_kill 12abc\n", "oom_kill \n", "oom_kill -1\n",
                "oom 0\noom_kill 1 2\n", "oom_kill 0x10\n",
        };
        pd_error err;
        uint64_t v = 99;

        (void) state;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                err.msg[0] = '\0';
                assert_int_equal(pd_memory_events_oom_kill(bad[i], strlen(bad[i]), &v, &err), PD_E_INVALID);
                assert_string_equal(err.msg, "memory.events: oom_kill value is not a decimal number");
        }
        assert_true(v == 99);
}

static void test_memory_events_64_bit_limits(void **state) {
        static const char max[] = "oom_kill 18446744073709551615\n";
        static const char over[] = "oom_kill 18446744073709551616\n";
        pd_error err;
        uint64_t v = 0;

        (void) state;
        assert_int_equal(pd_memory_events_oom_kill(max, strlen(max), &v, NULL), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(pd_memory_events_oom_kill(over, strlen(over), &v, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "memory.events: oom_kill value does not fit in 64 bits");
}

static void test_memory_events_reads_only_len_bytes(void **state) {
        static const char sample[] = "oom 1\noom_kill 12\n";
        uint64_t v = 0;

        (void) state;
        /* Cut inside the number: "oom_kill 1". */
        assert_int_equal(pd_memory_events_oom_kill(sample, strlen("oom 1\noom_kill 1"), &v, NULL), 0);
        assert_true(v == 1);
        /* Cut before the key. */
        assert_int_equal(pd_memory_events_oom_kill(sample, strlen("oom 1\n"), &v, NULL), PD_E_INVALID);
}

static void test_host_oom_needs_sigkill_and_a_rising_counter(void **state) {
        pd_exit e = killed_by(SIGKILL);
        pd_exit term = killed_by(SIGTERM);
        pd_exit code = exited_with(137);
        pd_exit adopted = { .status_unknown = true, .signo = SIGKILL };

        (void) state;
        assert_true(pd_crash_is_host_oom(&e, 2, 3));
        assert_false(pd_crash_is_host_oom(&e, 3, 3));
        assert_false(pd_crash_is_host_oom(&term, 2, 3));
        /* A shell's 128+9 is not a signal we saw. */
        assert_false(pd_crash_is_host_oom(&code, 2, 3));
        assert_false(pd_crash_is_host_oom(&adopted, 2, 3));
        assert_false(pd_crash_is_host_oom(NULL, 2, 3));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_node_errors_are_the_nodes_not_the_engines),
                cmocka_unit_test(test_crash_class_strings_are_the_metric_labels),
                cmocka_unit_test(test_crash_class_to_string_out_of_range_is_null),
                cmocka_unit_test(test_crash_class_from_string_round_trips),
                cmocka_unit_test(test_crash_class_from_string_refuses_unknown_names),
                cmocka_unit_test(test_crash_family_gpu_is_cuda_driver_and_vram_oom),
                cmocka_unit_test(test_crash_family_strings),
                cmocka_unit_test(test_signal_name_covers_standard_signals),
                cmocka_unit_test(test_signal_name_unknown_number_is_null),
                cmocka_unit_test(test_classify_requested_stop_is_never_a_crash),
                cmocka_unit_test(test_classify_exit_zero_is_graceful),
                cmocka_unit_test(test_classify_exit_zero_beats_host_oom_and_log_evidence),
                cmocka_unit_test(test_classify_host_oom_beats_log_evidence),
                cmocka_unit_test(test_classify_vram_oom_evidence_names_exit),
                cmocka_unit_test(test_classify_driver_error_evidence_beats_signal),
                cmocka_unit_test(test_classify_cuda_error_evidence_beats_signal),
                cmocka_unit_test(test_classify_ignores_non_gpu_evidence),
                cmocka_unit_test(test_classify_signal_names_the_signal),
                cmocka_unit_test(test_classify_unknown_signal_number),
                cmocka_unit_test(test_classify_nonzero_exit_code),
                cmocka_unit_test(test_classify_status_unknown_is_exit_code_crash),
                cmocka_unit_test(test_classify_status_unknown_with_evidence_takes_evidence),
                cmocka_unit_test(test_classify_null_exit_is_status_unknown),
                cmocka_unit_test(test_scan_finds_llamacpp_vram_oom),
                cmocka_unit_test(test_scan_finds_pytorch_vllm_vram_oom),
                cmocka_unit_test(test_scan_finds_cuda_api_oom_names),
                cmocka_unit_test(test_scan_finds_driver_mismatch),
                cmocka_unit_test(test_scan_finds_missing_or_lost_device),
                cmocka_unit_test(test_scan_finds_llamacpp_cuda_errors),
                cmocka_unit_test(test_scan_finds_cuda_api_error_names),
                cmocka_unit_test(test_scan_oom_beats_driver_beats_cuda_error),
                cmocka_unit_test(test_scan_is_case_insensitive),
                cmocka_unit_test(test_scan_ignores_ordinary_engine_lines),
                cmocka_unit_test(test_scan_host_out_of_memory_is_not_vram),
                cmocka_unit_test(test_scan_reads_only_len_bytes),
                cmocka_unit_test(test_scan_accepts_null_out),
                cmocka_unit_test(test_evidence_merge_keeps_most_severe),
                cmocka_unit_test(test_evidence_merge_ranks_other_classes_below_gpu),
                cmocka_unit_test(test_evidence_from_a_log_feeds_classify),
                cmocka_unit_test(test_memory_events_reads_oom_kill),
                cmocka_unit_test(test_memory_events_oom_group_kill_is_not_oom_kill),
                cmocka_unit_test(test_memory_events_without_trailing_newline),
                cmocka_unit_test(test_memory_events_missing_key),
                cmocka_unit_test(test_memory_events_garbage_number),
                cmocka_unit_test(test_memory_events_64_bit_limits),
                cmocka_unit_test(test_memory_events_reads_only_len_bytes),
                cmocka_unit_test(test_host_oom_needs_sigkill_and_a_rising_counter),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
