/* SPDX-License-Identifier: MIT */
/*
 * The parent's side of CUDA discovery: fork the probe child, watch its
 * pipe, its pidfd and a timeout on the event loop, and read its answer.
 * The child's side is cuda-probe.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/errfmt.h"
#include "base/reap.h"
#include "placement/cuda-private.h"
#include "pool-services/placement/inventory.h"

#define DEFAULT_LIBRARY "libcuda.so.1"
#define DEFAULT_NVML_LIBRARY "libnvidia-ml.so.1"
/* 64 devices of a few hundred bytes each; more is not an answer. */
#define ANSWER_MAX (256 * 1024)
/* The fd the answer leaves the child on once everything else is closed. */
#define CHILD_ANSWER_FD 3

static const char *const status_names[PS_CUDA_STATUS_MAX] = {
        [PS_CUDA_OK] = "ok",
        [PS_CUDA_NO_DEVICES] = "no_devices",
        [PS_CUDA_NO_LIBRARY] = "no_library",
        [PS_CUDA_MISSING_SYMBOL] = "missing_symbol",
        [PS_CUDA_VERSION_MISMATCH] = "version_mismatch",
        [PS_CUDA_INIT_FAILED] = "init_failed",
        [PS_CUDA_CALL_FAILED] = "call_failed",
        [PS_CUDA_TIMEOUT] = "timeout",
        [PS_CUDA_CRASHED] = "crashed",
        [PS_CUDA_PROBE_FAILED] = "probe_failed",
};

const char *ps_cuda_status_to_string(ps_cuda_status s) {
        return (unsigned) s < PS_CUDA_STATUS_MAX ? status_names[s] : NULL;
}

static bool status_from_string(const char *name, ps_cuda_status *ret) {
        for (unsigned i = 0; name && i < PS_CUDA_STATUS_MAX; i++)
                if (strcmp(status_names[i], name) == 0) {
                        *ret = (ps_cuda_status) i;
                        return true;
                }
        return false;
}

void ps_cuda_result_clear(ps_cuda_result *r) {
        if (!r)
                return;
        free(r->devices);
        *r = (ps_cuda_result) { .status = PS_CUDA_PROBE_FAILED };
}

static void set_failure(ps_cuda_result *r, ps_cuda_status status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_failure(ps_cuda_result *r, ps_cuda_status status, const char *fmt, ...) {
        va_list ap;

        free(r->devices);
        *r = (ps_cuda_result) { .status = status };
        va_start(ap, fmt);
        vsnprintf(r->message, sizeof(r->message), fmt, ap);
        va_end(ap);
}

static int parse_device(const json_t *j, ps_gpu_device *d, char *why, size_t len) {
        const char *uuid = NULL, *name = NULL, *bus = NULL;
        json_int_t index = -1, major = 0, minor = 0, total = -1, free_bytes = -1;
        json_error_t jerr;

        if (json_unpack_ex((json_t *) j, &jerr, JSON_STRICT,
                           "{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I}",
                           "index", &index, "uuid", &uuid, "name", &name, "pci_bus_id", &bus,
                           "cc_major", &major, "cc_minor", &minor,
                           "vram_total_bytes", &total, "vram_free_bytes", &free_bytes) < 0)
                return ps_errf(why, len, PS_E_INVALID, "%s", jerr.text);
        if (index < 0 || index >= PS_DEVICES_MAX || total < 0 || free_bytes < 0 ||
            free_bytes > total || major < 0 || major > 100 || minor < 0 || minor > 100)
                return ps_errf(why, len, PS_E_INVALID, "device %" JSON_INTEGER_FORMAT
                               ": a number is out of range", index);
        *d = (ps_gpu_device) {
                .index = (int) index,
                .cc_major = (int) major,
                .cc_minor = (int) minor,
                .vram_total_bytes = (uint64_t) total,
                .vram_free_bytes = (uint64_t) free_bytes,
        };
        snprintf(d->uuid, sizeof(d->uuid), "%s", uuid);
        snprintf(d->name, sizeof(d->name), "%s", name);
        snprintf(d->pci_bus_id, sizeof(d->pci_bus_id), "%s", bus);
        return 0;
}

int ps_cuda_answer_parse(const char *text, size_t len, ps_cuda_result *r) {
        json_t *doc, *devices;
        json_error_t jerr;
        ps_cuda_status status;
        const char *name, *source;
        char why[256];
        int rc = PS_E_INVALID;

        ps_cuda_result_clear(r);
        doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
                set_failure(r, PS_CUDA_PROBE_FAILED, "the CUDA probe's answer is not JSON: %s",
                            jerr.text);
                return PS_E_INVALID;
        }
        name = json_string_value(json_object_get(doc, "status"));
        if (!status_from_string(name, &status)) {
                set_failure(r, PS_CUDA_PROBE_FAILED, "the CUDA probe's answer has no valid status");
                goto out;
        }
        if (status != PS_CUDA_OK) {
                const char *msg = json_string_value(json_object_get(doc, "message"));

                set_failure(r, status, "%s", msg ? msg : ps_cuda_status_to_string(status));
                rc = 0;
                goto out;
        }
        devices = json_object_get(doc, "devices");
        source = json_string_value(json_object_get(doc, "free_source"));
        if (!json_is_array(devices) || json_array_size(devices) == 0 ||
            json_array_size(devices) > PS_DEVICES_MAX) {
                set_failure(r, PS_CUDA_PROBE_FAILED, "the CUDA probe's answer lists no devices");
                goto out;
        }
        r->devices = calloc(json_array_size(devices), sizeof(*r->devices));
        if (!r->devices) {
                rc = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < json_array_size(devices); i++) {
                if (parse_device(json_array_get(devices, i), &r->devices[i], why, sizeof(why))) {
                        set_failure(r, PS_CUDA_PROBE_FAILED, "the CUDA probe's answer: devices[%zu]: %s",
                                    i, why);
                        goto out;
                }
                r->n_devices = i + 1;
        }
        r->status = PS_CUDA_OK;
        r->driver_version = (int) json_integer_value(json_object_get(doc, "driver_version"));
        r->free_source = source && strcmp(source, "nvml") == 0 ? "nvml" : "cuda";
        rc = 0;
out:
        json_decref(doc);
        return rc;
}

/* ---- the probe on the loop --------------------------------------------- */

struct ps_cuda_probe {
        struct event_base *base;
        pid_t pid;                /* 0 once reaped */
        int pidfd;
        int out_fd;               /* the answer's read end */
        struct event *out_ev, *exit_ev, *timer;
        char *buf;
        size_t len, cap;
        bool overflow;
        bool timed_out;
        int64_t timeout_ms;
        ps_cuda_done_fn done;
        void *userdata;
};

static void safe_close(int *fd) {
        if (*fd >= 0) {
                close(*fd);
                *fd = -1;
        }
}

static _Noreturn void child_main(int out_fd, const char *library, const char *nvml_library) {
        static const int reset[] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD };
        json_t *answer;

        /* Nothing of the daemon's may reach the driver: its sockets stay
         * with the parent, its signal handlers are not ours to run. */
        for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
                signal(reset[i], SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (out_fd != CHILD_ANSWER_FD) {
                if (dup2(out_fd, CHILD_ANSWER_FD) < 0)
                        _exit(127);
        }
        close_range(CHILD_ANSWER_FD + 1, ~0U, 0);

        answer = ps_cuda_probe_run(library, nvml_library);
        if (!answer || json_dumpfd(answer, CHILD_ANSWER_FD, JSON_COMPACT) < 0)
                _exit(1);
        /* No atexit handlers, no flushing of the parent's stdio buffers. */
        _exit(0);
}

static void read_answer(ps_cuda_probe *p) {
        for (;;) {
                ssize_t n;

                if (p->cap - p->len < 4096) {
                        size_t cap = p->cap ? p->cap * 2 : 8192;
                        char *buf;

                        if (cap > ANSWER_MAX + 1) {
                                char sink[4096];

                                /* keep draining so the child does not block */
                                p->overflow = true;
                                n = read(p->out_fd, sink, sizeof(sink));
                                if (n > 0 || (n < 0 && errno == EINTR))
                                        continue;
                                return;
                        }
                        buf = realloc(p->buf, cap);
                        if (!buf) {
                                p->overflow = true;
                                return;
                        }
                        p->buf = buf;
                        p->cap = cap;
                }
                n = read(p->out_fd, p->buf + p->len, p->cap - p->len - 1);
                if (n > 0) {
                        p->len += (size_t) n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n == 0 && p->out_ev) {
                        /* EOF: nothing more will come */
                        event_del(p->out_ev);
                }
                return;
        }
}

static void on_answer(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        read_answer(userdata);
}

static void on_timeout(evutil_socket_t fd, short what, void *userdata) {
        ps_cuda_probe *p = userdata;

        (void) fd;
        (void) what;
        p->timed_out = true;
        /* The pidfd fires once it is dead; that finishes the probe. */
        if (p->pid > 0)
                kill(p->pid, SIGKILL);
}

static void finish(ps_cuda_probe *p, const siginfo_t *si) {
        ps_cuda_result r = { .status = PS_CUDA_PROBE_FAILED };

        read_answer(p);
        if (p->timed_out) {
                set_failure(&r, PS_CUDA_TIMEOUT, "the CUDA probe did not answer within %lld ms "
                            "and was killed: the driver may be hung",
                            (long long) p->timeout_ms);
        } else if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED) {
                const char *abbrev = sigabbrev_np(si->si_status);

                if (abbrev)
                        set_failure(&r, PS_CUDA_CRASHED, "the CUDA probe crashed: killed by SIG%s",
                                    abbrev);
                else
                        set_failure(&r, PS_CUDA_CRASHED, "the CUDA probe crashed: killed by signal %d",
                                    si->si_status);
        } else if (p->overflow) {
                set_failure(&r, PS_CUDA_PROBE_FAILED, "the CUDA probe's answer is too long");
        } else if (p->len == 0) {
                set_failure(&r, PS_CUDA_PROBE_FAILED, "the CUDA probe exited with code %d "
                            "without an answer", si->si_status);
        } else if (ps_cuda_answer_parse(p->buf, p->len, &r) < 0) {
                set_failure(&r, PS_CUDA_PROBE_FAILED, "out of memory reading the CUDA probe");
        }
        p->done(&r, p->userdata);   /* may free p */
        ps_cuda_result_clear(&r);
}

static void on_exit_ev(evutil_socket_t fd, short what, void *userdata) {
        ps_cuda_probe *p = userdata;
        siginfo_t si;

        (void) fd;
        (void) what;
        memset(&si, 0, sizeof(si));
        if (waitid(P_PID, (id_t) p->pid, &si, WEXITED | WNOHANG) < 0) {
                if (errno == EINTR)
                        return;
                si.si_code = CLD_EXITED;
                si.si_status = 127;
        } else if (si.si_pid == 0) {
                return;        /* not yet */
        }
        p->pid = 0;
        event_del(p->exit_ev);
        event_del(p->timer);
        finish(p, &si);
}

int ps_cuda_probe_start(struct event_base *base, const ps_cuda_options *o,
                        ps_cuda_done_fn done, void *userdata, ps_cuda_probe **ret) {
        const char *library = o && o->library ? o->library : DEFAULT_LIBRARY;
        const char *nvml = o && o->nvml_library ? o->nvml_library : DEFAULT_NVML_LIBRARY;
        ps_cuda_probe *p;
        int fds[2], r;
        pid_t pid;

        if (!base || !done || !ret)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->base = base;
        p->pidfd = p->out_fd = -1;
        p->done = done;
        p->userdata = userdata;
        p->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : PS_CUDA_TIMEOUT_MS_DEFAULT;

        if (pipe2(fds, O_CLOEXEC) < 0) {
                r = -errno;
                free(p);
                return r;
        }
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(fds[0]);
                close(fds[1]);
                free(p);
                return r;
        }
        if (pid == 0) {
                close(fds[0]);
                child_main(fds[1], library, nvml);
        }
        close(fds[1]);
        p->pid = pid;
        p->out_fd = fds[0];
        p->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (p->pidfd < 0 || fcntl(p->out_fd, F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                ps_cuda_probe_free(p);
                return r;
        }
        p->out_ev = event_new(base, p->out_fd, EV_READ | EV_PERSIST, on_answer, p);
        p->exit_ev = event_new(base, p->pidfd, EV_READ | EV_PERSIST, on_exit_ev, p);
        p->timer = evtimer_new(base, on_timeout, p);
        if (!p->out_ev || !p->exit_ev || !p->timer) {
                ps_cuda_probe_free(p);
                return -ENOMEM;
        }
        struct timeval tv = { .tv_sec = p->timeout_ms / 1000,
                              .tv_usec = (suseconds_t) (p->timeout_ms % 1000) * 1000 };
        if (event_add(p->out_ev, NULL) < 0 || event_add(p->exit_ev, NULL) < 0 ||
            evtimer_add(p->timer, &tv) < 0) {
                ps_cuda_probe_free(p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

ps_cuda_probe *ps_cuda_probe_free(ps_cuda_probe *p) {
        if (!p)
                return NULL;
        if (p->pid > 0) {
                /* A probe hung in the driver dies only once it leaves the
                 * kernel: reaped from the loop then, never waited for. */
                kill(p->pid, SIGKILL);
                ps_reap_when_gone(p->base, p->pid, p->pidfd);
                p->pidfd = -1;
        }
        if (p->out_ev)
                event_free(p->out_ev);
        if (p->exit_ev)
                event_free(p->exit_ev);
        if (p->timer)
                event_free(p->timer);
        safe_close(&p->out_fd);
        safe_close(&p->pidfd);
        free(p->buf);
        free(p);
        return NULL;
}

/* ---- waiting for one --------------------------------------------------- */

typedef struct sync_wait {
        ps_cuda_result *ret;
        struct event_base *base;
        bool done;
} sync_wait;

static void on_sync_done(const ps_cuda_result *result, void *userdata) {
        sync_wait *w = userdata;

        *w->ret = *result;
        w->ret->devices = NULL;
        w->ret->n_devices = 0;
        if (result->n_devices > 0) {
                w->ret->devices = calloc(result->n_devices, sizeof(*result->devices));
                if (w->ret->devices) {
                        memcpy(w->ret->devices, result->devices,
                               result->n_devices * sizeof(*result->devices));
                        w->ret->n_devices = result->n_devices;
                } else {
                        set_failure(w->ret, PS_CUDA_PROBE_FAILED, "out of memory");
                }
        }
        w->done = true;
        event_base_loopbreak(w->base);
}

int ps_cuda_discover(const ps_cuda_options *o, ps_cuda_result *ret) {
        ps_cuda_result r = { .status = PS_CUDA_PROBE_FAILED };
        sync_wait w = { .ret = &r };
        ps_cuda_probe *p = NULL;
        int rc;

        if (!ret)
                return -EINVAL;
        w.base = event_base_new();
        if (!w.base)
                return -ENOMEM;
        rc = ps_cuda_probe_start(w.base, o, on_sync_done, &w, &p);
        while (rc == 0 && !w.done)
                if (event_base_dispatch(w.base) < 0)
                        rc = -EIO;
        /* The private loop ends here: a child still stuck in the driver is
         * left as a zombie (reaped if already gone), never waited for. */
        if (p)
                p->base = NULL;
        ps_cuda_probe_free(p);
        event_base_free(w.base);
        if (rc < 0) {
                ps_cuda_result_clear(&r);
                return rc;
        }
        *ret = r;
        return 0;
}
