/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "base/sockdiag.h"
#define PS_ENGINE_PRIVATE_ALLOW
#include "supervise/engine-internal.h"

/* glibc 2.36 declares P_PIDFD inside enum idtype_t, so it cannot be tested
 * with #ifdef; the kernel's value is 3. */
#define ENGINE_P_PIDFD ((idtype_t) 3)

static void real_set_userdata(ps_engine *engine, void *userdata) {
        engine->userdata = userdata;
}

static pid_t real_pid(const ps_engine *engine) {
        return engine->pid;
}

static bool real_running(const ps_engine *engine) {
        return engine->running;
}

static const char *real_log_path(const ps_engine *engine) {
        return engine->log_path;
}

static const char *real_pid_path(const ps_engine *engine) {
        return engine->pid_path;
}

static int64_t real_log_start(const ps_engine *engine) {
        return engine->log_start;
}

static void on_pidfd(evutil_socket_t fd, short what, void *userdata) {
        ps_engine *engine = userdata;
        ps_exit_status st = { 0 };
        siginfo_t si;

        (void) fd;
        (void) what;
        memset(&si, 0, sizeof(si));
        if (waitid(ENGINE_P_PIDFD, (id_t) engine->pidfd, &si, WEXITED | WNOHANG) < 0) {
                if (errno == EINTR)
                        return;        /* persistent: the next loop pass retries */
                /* ECHILD: someone else reaped it; it is gone all the same */
                st.status_unknown = true;
        } else if (si.si_pid == 0) {
                return;                /* not yet */
        } else if (si.si_code == CLD_EXITED) {
                st.exited = true;
                st.code = si.si_status;
        } else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
                st.signo = si.si_status;
        } else {
                return;                /* stopped or continued: not an exit */
        }

        engine->running = false;
        event_del(engine->exit_ev);
        ps_engine_close_fd(&engine->pidfd);
        ps_engine_remove_pid_file(engine);
        /* Last: the callback may free the engine. */
        if (engine->on_exit)
                engine->on_exit(engine, &st, engine->userdata);
}

ps_engine *ps_engine_alloc(const char *log_path, const char *pid_path,
                           ps_engine_exit_fn on_exit, void *userdata) {
        ps_engine *engine = calloc(1, sizeof(*engine));

        if (!engine)
                return NULL;
        engine->pidfd = -1;
        engine->on_exit = on_exit;
        engine->userdata = userdata;
        engine->log_path = strdup(log_path);
        engine->pid_path = strdup(pid_path);
        if (!engine->log_path || !engine->pid_path)
                return ps_engine_real_free(engine);
        return engine;
}

int ps_engine_watch_exit(struct event_base *base, ps_engine *engine) {
        engine->exit_ev = event_new(base, engine->pidfd, EV_READ | EV_PERSIST, on_pidfd, engine);
        if (!engine->exit_ev || event_add(engine->exit_ev, NULL) < 0)
                return -ENOMEM;
        return 0;
}

static int group_kill(const ps_engine *engine, int signo) {
        /* Unreaped, so the pid cannot have been reused. */
        if (kill(-engine->pid, signo) == 0)
                return 0;
        if (errno != ESRCH)
                return -errno;
        /* The group is gone (the engine left it) but the process is not. */
        if (kill(engine->pid, signo) == 0)
                return 0;
        return -errno;
}

static int real_signal(ps_engine *engine, int signo) {
        int r;

        if (!engine->running)
                return -ESRCH;
        r = group_kill(engine, signo);
        /* A stopped process keeps SIGTERM pending until it runs again: wake
         * it, as systemd does, or the stop waits out the whole grace. */
        if (r == 0 && signo == SIGTERM)
                (void) group_kill(engine, SIGCONT);
        return r;
}

ps_engine *ps_engine_real_free(ps_engine *engine) {
        if (!engine)
                return NULL;
        if (engine->exit_ev)
                event_free(engine->exit_ev);
        ps_engine_close_fd(&engine->pidfd);
        free(engine->log_path);
        free(engine->pid_path);
        free(engine);
        return NULL;
}

static int real_serves(const ps_engine *engine, const char *host, uint16_t port, char *err,
                       size_t errlen) {
        if (!engine->running)
                return -ESRCH;
        return ps_sockdiag_session_serves(host, port, engine->pid, err, errlen);
}

/* ---- the seam ------------------------------------------------------------ */

static const ps_engine_ops real_ops = {
        .spawn = ps_engine_real_spawn,
        .adopt = ps_engine_real_adopt,
        .signal = real_signal,
        .free = ps_engine_real_free,
        .pid = real_pid,
        .running = real_running,
        .set_userdata = real_set_userdata,
        .log_path = real_log_path,
        .pid_path = real_pid_path,
        .log_start = real_log_start,
        .last_log_line = ps_engine_real_last_log_line,
        .serves = real_serves,
};

static const ps_engine_ops *engine_ops = &real_ops;

const ps_engine_ops *ps_engine_ops_real(void) {
        return &real_ops;
}

void ps_engine_ops_set(const ps_engine_ops *ops) {
        engine_ops = ops ? ops : &real_ops;
}

/* What the members may rely on: an err they can write to. */
static char *err_buffer(char *err, size_t *errlen) {
        static char dummy[1];

        if (!err || *errlen == 0) {
                *errlen = sizeof(dummy);
                err = dummy;
        }
        err[0] = '\0';
        return err;
}

int ps_engine_spawn(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen) {
        err = err_buffer(err, &errlen);
        return engine_ops->spawn(base, spec, opts, on_exit, userdata, ret, err, errlen);
}

int ps_engine_adopt(struct event_base *base, const ps_engine_spec *spec,
                    const ps_engine_options *opts, ps_engine_exit_fn on_exit,
                    void *userdata, ps_engine **ret, char *err, size_t errlen) {
        err = err_buffer(err, &errlen);
        return engine_ops->adopt(base, spec, opts, on_exit, userdata, ret, err, errlen);
}

int ps_engine_signal(ps_engine *engine, int signo) {
        return engine ? engine_ops->signal(engine, signo) : -ESRCH;
}

ps_engine *ps_engine_free(ps_engine *engine) {
        return engine ? engine_ops->free(engine) : NULL;
}

pid_t ps_engine_pid(const ps_engine *engine) {
        return engine ? engine_ops->pid(engine) : 0;
}

bool ps_engine_running(const ps_engine *engine) {
        return engine && engine_ops->running(engine);
}

void ps_engine_set_userdata(ps_engine *engine, void *userdata) {
        if (engine)
                engine_ops->set_userdata(engine, userdata);
}

const char *ps_engine_log_path(const ps_engine *engine) {
        return engine ? engine_ops->log_path(engine) : NULL;
}

const char *ps_engine_pid_path(const ps_engine *engine) {
        return engine ? engine_ops->pid_path(engine) : NULL;
}

int64_t ps_engine_log_start(const ps_engine *engine) {
        return engine ? engine_ops->log_start(engine) : 0;
}

int ps_engine_last_log_line(const ps_engine *engine, char *buf, size_t len) {
        if (!engine || !buf || len == 0)
                return -EINVAL;
        return engine_ops->last_log_line(engine, buf, len);
}

int ps_engine_serves(const ps_engine *engine, const char *host, uint16_t port, char *err,
                     size_t errlen) {
        err = err_buffer(err, &errlen);
        if (!engine || !host)
                return -EINVAL;
        return engine_ops->serves(engine, host, port, err, errlen);
}
