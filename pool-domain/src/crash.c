/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pool-domain/crash.h"
#include "text-out.h"

static const char *const crash_class_table[PD_CRASH_CLASS_MAX] = {
        [PD_CRASH_GRACEFUL]        = "graceful",
        [PD_CRASH_EXIT_CODE]       = "exit_code",
        [PD_CRASH_SIGNAL]          = "signal",
        [PD_CRASH_CUDA_ERROR]      = "cuda_error",
        [PD_CRASH_DRIVER_ERROR]    = "driver_error",
        [PD_CRASH_VRAM_OOM]        = "vram_oom",
        [PD_CRASH_HOST_OOM]        = "host_oom",
        [PD_CRASH_HEALTH_TIMEOUT]  = "health_timeout",
        [PD_CRASH_STARTUP_TIMEOUT] = "startup_timeout",
        [PD_CRASH_STALL_TIMEOUT]   = "stall_timeout",
        [PD_CRASH_PREFLIGHT]       = "preflight",
        [PD_CRASH_NODE_ERROR]      = "node_error",
};

static const char *const crash_family_table[PD_CRASH_FAMILY_MAX] = {
        [PD_CRASH_FAMILY_GENERAL] = "general",
        [PD_CRASH_FAMILY_GPU]     = "gpu",
};

const char *pd_crash_class_to_string(pd_crash_class cls) {
        if ((unsigned) cls >= PD_CRASH_CLASS_MAX)
                return NULL;
        return crash_class_table[cls];
}

int pd_crash_class_from_string(const char *name, pd_crash_class *out) {
        if (!name)
                return PD_E_INVALID;
        for (unsigned i = 0; i < PD_CRASH_CLASS_MAX; i++)
                if (strcmp(name, crash_class_table[i]) == 0) {
                        if (out)
                                *out = (pd_crash_class) i;
                        return 0;
                }
        return PD_E_INVALID;
}

pd_crash_family pd_crash_class_family(pd_crash_class cls) {
        switch (cls) {
        case PD_CRASH_CUDA_ERROR:
        case PD_CRASH_DRIVER_ERROR:
        case PD_CRASH_VRAM_OOM:
                return PD_CRASH_FAMILY_GPU;
        case PD_CRASH_GRACEFUL:
        case PD_CRASH_EXIT_CODE:
        case PD_CRASH_SIGNAL:
        case PD_CRASH_HOST_OOM:
        case PD_CRASH_HEALTH_TIMEOUT:
        case PD_CRASH_STARTUP_TIMEOUT:
        case PD_CRASH_STALL_TIMEOUT:
        case PD_CRASH_PREFLIGHT:
        case PD_CRASH_NODE_ERROR:
        case PD_CRASH_CLASS_MAX:
                break;
        }
        return PD_CRASH_FAMILY_GENERAL;
}

const char *pd_crash_family_to_string(pd_crash_family family) {
        if ((unsigned) family >= PD_CRASH_FAMILY_MAX)
                return NULL;
        return crash_family_table[family];
}

static const char *const node_error_kind_table[PD_NODE_ERROR_KIND_MAX] = {
        [PD_NODE_ERROR_FD_LIMIT]      = "fd_limit",
        [PD_NODE_ERROR_PROCESS_LIMIT] = "process_limit",
        [PD_NODE_ERROR_DISK_FULL]     = "disk_full",
        [PD_NODE_ERROR_MEMORY]        = "memory",
        [PD_NODE_ERROR_RUNTIME_DIR]   = "runtime_dir",
};

const char *pd_node_error_kind_to_string(pd_node_error_kind kind) {
        return (unsigned) kind < PD_NODE_ERROR_KIND_MAX ? node_error_kind_table[kind] : NULL;
}

bool pd_node_error_classify(int err, bool in_runtime_dir, pd_node_error_kind *out) {
        pd_node_error_kind kind;

        switch (err) {
        case EMFILE:
        case ENFILE:
                kind = PD_NODE_ERROR_FD_LIMIT;
                break;
        case EAGAIN:
                kind = PD_NODE_ERROR_PROCESS_LIMIT;
                break;
        case ENOSPC:
        case EDQUOT:
                kind = PD_NODE_ERROR_DISK_FULL;
                break;
        case ENOMEM:
                kind = PD_NODE_ERROR_MEMORY;
                break;
        case EROFS:
                kind = PD_NODE_ERROR_RUNTIME_DIR;
                break;
        default:
                if (!in_runtime_dir)
                        return false;
                kind = PD_NODE_ERROR_RUNTIME_DIR;
                break;
        }
        if (out)
                *out = kind;
        return true;
}

const char *pd_signal_name(int signo) {
        /* The constants, not numbers: SIGBUS is 7 on x86 and arm64 but 10
         * on MIPS and SPARC. */
        switch (signo) {
        case SIGHUP:    return "SIGHUP";
        case SIGINT:    return "SIGINT";
        case SIGQUIT:   return "SIGQUIT";
        case SIGILL:    return "SIGILL";
        case SIGTRAP:   return "SIGTRAP";
        case SIGABRT:   return "SIGABRT";
        case SIGBUS:    return "SIGBUS";
        case SIGFPE:    return "SIGFPE";
        case SIGKILL:   return "SIGKILL";
        case SIGUSR1:   return "SIGUSR1";
        case SIGSEGV:   return "SIGSEGV";
        case SIGUSR2:   return "SIGUSR2";
        case SIGPIPE:   return "SIGPIPE";
        case SIGALRM:   return "SIGALRM";
        case SIGTERM:   return "SIGTERM";
#ifdef SIGSTKFLT
        case SIGSTKFLT: return "SIGSTKFLT";
#endif
        case SIGCHLD:   return "SIGCHLD";
        case SIGCONT:   return "SIGCONT";
        case SIGSTOP:   return "SIGSTOP";
        case SIGTSTP:   return "SIGTSTP";
        case SIGTTIN:   return "SIGTTIN";
        case SIGTTOU:   return "SIGTTOU";
        case SIGURG:    return "SIGURG";
        case SIGXCPU:   return "SIGXCPU";
        case SIGXFSZ:   return "SIGXFSZ";
        case SIGVTALRM: return "SIGVTALRM";
        case SIGPROF:   return "SIGPROF";
        case SIGWINCH:  return "SIGWINCH";
#ifdef SIGIO
        case SIGIO:     return "SIGIO";
#endif
#ifdef SIGPWR
        case SIGPWR:    return "SIGPWR";
#endif
        case SIGSYS:    return "SIGSYS";
        default:        return NULL;
        }
}

static void crash_reason_set(pd_crash *out, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void crash_reason_set(pd_crash *out, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vsnprintf(out->reason, sizeof(out->reason), fmt, ap) < 0)
                out->reason[0] = '\0';
        va_end(ap);
}

static int crash_evidence_rank(pd_crash_class cls) {
        switch (cls) {
        case PD_CRASH_VRAM_OOM:
                return 3;
        case PD_CRASH_DRIVER_ERROR:
                return 2;
        case PD_CRASH_CUDA_ERROR:
                return 1;
        case PD_CRASH_GRACEFUL:
        case PD_CRASH_EXIT_CODE:
        case PD_CRASH_SIGNAL:
        case PD_CRASH_HOST_OOM:
        case PD_CRASH_HEALTH_TIMEOUT:
        case PD_CRASH_STARTUP_TIMEOUT:
        case PD_CRASH_STALL_TIMEOUT:
        case PD_CRASH_PREFLIGHT:
        case PD_CRASH_NODE_ERROR:
        case PD_CRASH_CLASS_MAX:
                break;
        }
        return 0;
}

static const char *crash_evidence_text(pd_crash_class cls) {
        switch (cls) {
        case PD_CRASH_VRAM_OOM:
                return "CUDA out of memory";
        case PD_CRASH_DRIVER_ERROR:
                return "GPU driver error";
        case PD_CRASH_CUDA_ERROR:
                return "CUDA error";
        case PD_CRASH_GRACEFUL:
        case PD_CRASH_EXIT_CODE:
        case PD_CRASH_SIGNAL:
        case PD_CRASH_HOST_OOM:
        case PD_CRASH_HEALTH_TIMEOUT:
        case PD_CRASH_STARTUP_TIMEOUT:
        case PD_CRASH_STALL_TIMEOUT:
        case PD_CRASH_PREFLIGHT:
        case PD_CRASH_NODE_ERROR:
        case PD_CRASH_CLASS_MAX:
                break;
        }
        return NULL;
}

pd_crash_class pd_crash_evidence_merge(pd_crash_class have, pd_crash_class seen) {
        return crash_evidence_rank(seen) > crash_evidence_rank(have) ? seen : have;
}

/* "killed by SIGSEGV", "exited with code 1", ...: what the process itself
 * did, before any log evidence is put in front of it. */
static void crash_describe_exit(const pd_exit *e, char *buf, size_t size) {
        const char *name;

        if (e->status_unknown)
                snprintf(buf, size, "status unknown: not our child");
        else if (e->exited)
                snprintf(buf, size, "exited with code %d", e->code);
        else if ((name = pd_signal_name(e->signo)))
                snprintf(buf, size, "killed by %s", name);
        else
                snprintf(buf, size, "killed by signal %d", e->signo);
}

void pd_crash_classify(const pd_exit *exit, pd_crash_class log_evidence,
                       bool host_oom_killed, pd_crash *out) {
        static const pd_exit unknown = { .status_unknown = true };
        const pd_exit *e = exit ? exit : &unknown;
        const char *evidence;
        char how[64];

        if (!out)
                return;

        if (e->requested) {
                out->cls = PD_CRASH_GRACEFUL;
                out->is_crash = false;
                crash_reason_set(out, "stopped on request");
                return;
        }

        if (!e->status_unknown && e->exited && e->code == 0) {
                out->cls = PD_CRASH_GRACEFUL;
                out->is_crash = false;
                crash_reason_set(out, "exited with code 0");
                return;
        }

        out->is_crash = true;
        crash_describe_exit(e, how, sizeof(how));

        if (host_oom_killed) {
                out->cls = PD_CRASH_HOST_OOM;
                crash_reason_set(out, "host out of memory: kernel OOM killer (%s)", how);
                return;
        }

        evidence = crash_evidence_text(log_evidence);
        if (evidence) {
                out->cls = log_evidence;
                crash_reason_set(out, "%s (%s)", evidence, how);
                return;
        }

        if (e->status_unknown) {
                /* An adopted engine cannot be waited on: we know it died,
                 * not how, so it counts as an ordinary non-zero exit. */
                out->cls = PD_CRASH_EXIT_CODE;
                crash_reason_set(out, "exited (%s)", how);
                return;
        }

        out->cls = e->exited ? PD_CRASH_EXIT_CODE : PD_CRASH_SIGNAL;
        crash_reason_set(out, "%s", how);
}

static bool crash_line_has_any(const char *line, size_t len,
                               const char *const *needles) {
        for (; *needles; needles++)
                if (pd_text_has_nocase(line, len, *needles))
                        return true;
        return false;
}

/* Each list is lowercase. They come from logs of llama.cpp (ggml-cuda),
 * PyTorch/vLLM, the CUDA runtime and driver API error names, and the
 * kernel's NVRM messages. */

/* Out-of-memory phrases that are VRAM only when the line also says CUDA or
 * GPU: "out of memory" alone is as likely to be the host (std::bad_alloc,
 * malloc). */
static const char *const vram_oom_phrases[] = {
        "out of memory",
        "outofmemory",          /* torch.OutOfMemoryError */
        NULL,
};

static const char *const gpu_context[] = {
        "cuda",
        "cublas",
        "cudnn",
        "gpu",
        "vram",
        NULL,
};

/* Unambiguous on their own. */
static const char *const vram_oom_names[] = {
        "cuda_error_out_of_memory",
        "cudaerrormemoryallocation",
        "cublas_status_alloc_failed",
        "cudnn_status_alloc_failed",
        "failed to allocate cuda",      /* ggml: "failed to allocate CUDA0 buffer" */
        "no available memory for the cache blocks",     /* vLLM KV cache */
        NULL,
};

/* ggml_cuda_host_malloc warns "failed to allocate ... of pinned memory: out
 * of memory" and carries on: that is page-locked host memory, and the
 * engine keeps running. */
static const char *const host_memory_context[] = {
        "pinned memory",
        "cudamallochost",
        NULL,
};

/* Start-up advice that mentions running out of memory without it having
 * happened (vLLM's CUDA graph warning). */
static const char *const oom_advice[] = {
        "if you are running out of memory",
        "to avoid out of memory",
        NULL,
};

static const char *const driver_error_names[] = {
        "driver/library version mismatch",
        "driver version is insufficient",
        "failed to initialize nvml",
        "cuda_error_system_driver_mismatch",
        "cudaerrorsystemdrivermismatch",
        "cuda_error_insufficient_driver",
        "cudaerrorinsufficientdriver",
        "no cuda-capable device is detected",
        "cuda_error_no_device",
        "cudaerrornodevice",
        "fallen off the bus",
        "nvrm: xid",
        "device lost",
        "device_lost",
        "cuda_error_device_unavailable",
        "cudaerrordevicesunavailable",
        "busy or unavailable",
        "uncorrectable ecc",
        "cuda_error_ecc_uncorrectable",
        "cudaerroreccuncorrectable",
        "cuda_error_system_not_ready",
        "cudaerrorsystemnotready",
        NULL,
};

static const char *const cuda_error_names[] = {
        "cuda error",           /* ggml: "CUDA error: an illegal memory access ..." */
        "ggml_cuda_error",
        "cuda_error_",          /* driver API: CUDA_ERROR_LAUNCH_FAILED, ... */
        "cudaerror",            /* runtime API: cudaErrorIllegalAddress, ... */
        "illegal memory access",
        "device-side assert",   /* PyTorch */
        NULL,
};

/* Library status names that are errors unless they say success. */
static bool crash_line_has_failed_status(const char *line, size_t len) {
        return (pd_text_has_nocase(line, len, "cublas_status_") &&
                !pd_text_has_nocase(line, len, "cublas_status_success")) ||
               (pd_text_has_nocase(line, len, "cudnn_status_") &&
                !pd_text_has_nocase(line, len, "cudnn_status_success"));
}

bool pd_crash_scan_line(const char *line, size_t len, pd_crash_class *out) {
        pd_crash_class found;

        if (!line || len == 0)
                return false;

        /* Most telling first: a line such as "CUDA error: out of memory"
         * is both an OOM and a CUDA error, and the OOM is what an operator
         * can act on. */
        if (crash_line_has_any(line, len, vram_oom_names) ||
            (crash_line_has_any(line, len, vram_oom_phrases) &&
             crash_line_has_any(line, len, gpu_context) &&
             !crash_line_has_any(line, len, host_memory_context) &&
             !crash_line_has_any(line, len, oom_advice)))
                found = PD_CRASH_VRAM_OOM;
        else if (crash_line_has_any(line, len, driver_error_names))
                found = PD_CRASH_DRIVER_ERROR;
        else if (crash_line_has_any(line, len, cuda_error_names) ||
                 crash_line_has_failed_status(line, len))
                found = PD_CRASH_CUDA_ERROR;
        else
                return false;

        if (out)
                *out = found;
        return true;
}

static bool crash_is_space(char c) {
        return c == ' ' || c == '\t';
}

int pd_memory_events_oom_kill(const char *text, size_t len, uint64_t *out,
                              pd_error *err) {
        static const char key[] = "oom_kill";
        const size_t key_len = sizeof(key) - 1;
        size_t pos = 0;

        if (!text)
                return pd_error_set(err, "memory.events: no text");

        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t end = nl ? (size_t) (nl - text) : len;
                size_t p = pos;

                /* Compare whole keys: "oom_group_kill" and any later key
                 * that merely starts with "oom_kill" are other counters. */
                if (end - pos > key_len && memcmp(text + pos, key, key_len) == 0 &&
                    crash_is_space(text[pos + key_len])) {
                        uint64_t v = 0;
                        size_t digits = 0;

                        p += key_len;
                        while (p < end && crash_is_space(text[p]))
                                p++;
                        for (; p < end && text[p] >= '0' && text[p] <= '9'; p++, digits++) {
                                unsigned d = (unsigned) (text[p] - '0');

                                if (v > (UINT64_MAX - d) / 10)
                                        return pd_error_set(err, "memory.events: oom_kill value does not fit in 64 bits");
                                v = v * 10 + d;
                        }
                        while (p < end && crash_is_space(text[p]))
                                p++;
                        if (digits == 0 || p != end)
                                return pd_error_set(err, "memory.events: oom_kill value is not a decimal number");
                        if (out)
                                *out = v;
                        return 0;
                }
                pos = end + 1;
        }

        return pd_error_set(err, "memory.events: no oom_kill line");
}

bool pd_crash_is_host_oom(const pd_exit *exit, uint64_t oom_kill_before,
                          uint64_t oom_kill_after) {
        if (!exit || exit->status_unknown || exit->exited)
                return false;
        return exit->signo == SIGKILL && oom_kill_after > oom_kill_before;
}
