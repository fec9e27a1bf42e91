/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "supervise/stage.h"
#include "pool-services/base/digest.h"

#define STAGE_DETAIL_MAX 512
#define READ_CHUNK (1 << 20)

struct stage_job {
        char *path;
        char want[65];                 /* "" when no digest was given */
        pthread_t thread;
        bool started, joined;
        atomic_bool cancel;
        int pipe_fd[2];
        struct event *ready;
        stage_done_fn done;
        void *userdata;
        /* written by the thread, read after the join */
        stage_result result;
        char detail[STAGE_DETAIL_MAX];
};

static void finish(stage_job *job, stage_result result, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void finish(stage_job *job, stage_result result, const char *fmt, ...) {
        va_list ap;

        job->result = result;
        va_start(ap, fmt);
        vsnprintf(job->detail, sizeof(job->detail), fmt, ap);
        va_end(ap);
}

static void check(stage_job *job) {
        struct stat st;
        ps_sha256 ctx;
        char got[65];
        unsigned char *buf;
        ssize_t n;
        int fd;

        /* O_NONBLOCK: a FIFO planted as a model must not hang the check
         * (it is refused below as not a regular file). */
        fd = open(job->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                finish(job, STAGE_UNUSABLE, "model %s: %s", job->path, strerror(errno));
                return;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                finish(job, STAGE_UNUSABLE, "model %s: not a regular file", job->path);
                close(fd);
                return;
        }
        if (!job->want[0]) {
                finish(job, STAGE_OK, "model %s: readable", job->path);
                close(fd);
                return;
        }
        buf = malloc(READ_CHUNK);
        if (!buf) {
                finish(job, STAGE_UNUSABLE, "model %s: out of memory for hashing", job->path);
                close(fd);
                return;
        }
        ps_sha256_init(&ctx);
        while ((n = read(fd, buf, READ_CHUNK)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        finish(job, STAGE_UNUSABLE, "model %s: %s", job->path, strerror(errno));
                        goto out;
                }
                if (atomic_load(&job->cancel)) {
                        finish(job, STAGE_UNUSABLE, "model %s: staging cancelled", job->path);
                        goto out;
                }
                ps_sha256_update(&ctx, buf, (size_t) n);
        }
        ps_sha256_final_hex(&ctx, got);
        if (strcasecmp(got, job->want) == 0)
                finish(job, STAGE_OK, "model %s: sha256 verified", job->path);
        else
                finish(job, STAGE_MISMATCH, "model %s: sha256 mismatch: expected %s, got %s",
                       job->path, job->want, got);
out:
        free(buf);
        close(fd);
}

static void *work(void *arg) {
        stage_job *job = arg;
        char one = 1;

        check(job);
        /* the pipe has room for one byte; nothing else writes to it */
        while (write(job->pipe_fd[1], &one, 1) < 0 && errno == EINTR)
                ;
        return NULL;
}

static void on_ready(evutil_socket_t fd, short what, void *userdata) {
        stage_job *job = userdata;
        char byte, detail[STAGE_DETAIL_MAX];
        stage_result result;

        (void) what;
        if (read(fd, &byte, 1) != 1)
                return;
        pthread_join(job->thread, NULL);
        job->joined = true;
        result = job->result;
        memcpy(detail, job->detail, sizeof(detail));
        /* may free the job */
        job->done(result, detail, job->userdata);
}

stage_job *ps_stage_job_free(stage_job *job) {
        if (!job)
                return NULL;
        if (job->started && !job->joined) {
                atomic_store(&job->cancel, true);
                pthread_join(job->thread, NULL);
        }
        if (job->ready)
                event_free(job->ready);
        for (int i = 0; i < 2; i++)
                if (job->pipe_fd[i] >= 0)
                        close(job->pipe_fd[i]);
        free(job->path);
        free(job);
        return NULL;
}

int ps_stage_job_start(struct event_base *base, const char *path, const char *sha256_hex,
                    stage_done_fn done, void *userdata, stage_job **ret) {
        stage_job *job;
        int rc;

        if (!base || !path || !done || !ret)
                return -EINVAL;
        job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        job->pipe_fd[0] = job->pipe_fd[1] = -1;
        atomic_init(&job->cancel, false);
        job->done = done;
        job->userdata = userdata;
        job->path = strdup(path);
        if (sha256_hex)
                snprintf(job->want, sizeof(job->want), "%s", sha256_hex);
        if (!job->path) {
                ps_stage_job_free(job);
                return -ENOMEM;
        }
        if (pipe2(job->pipe_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
                rc = -errno;
                ps_stage_job_free(job);
                return rc;
        }
        job->ready = event_new(base, job->pipe_fd[0], EV_READ, on_ready, job);
        if (!job->ready || event_add(job->ready, NULL) < 0) {
                ps_stage_job_free(job);
                return -ENOMEM;
        }
        rc = pthread_create(&job->thread, NULL, work, job);
        if (rc != 0) {
                ps_stage_job_free(job);
                return -rc;
        }
        job->started = true;
        *ret = job;
        return 0;
}
