/* SPDX-License-Identifier: MIT */
/*
 * Following a log file with inotify on the event loop: the test writes to a
 * real file and runs the loop until the lines arrive, within a generous
 * deadline; nothing sleeps for a fixed time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "pool-services/supervise/logtail.h"
#include "harness.h"

#define MAX_LINES 64
#define LINE_CAP (16 * 1024)

typedef struct fx {
        struct event_base *base;
        char dir[64];
        char path[128];
        char *lines[MAX_LINES];
        size_t lens[MAX_LINES];
        size_t n;
        ps_logtail *free_me;      /* freed from inside the callback */
        size_t counted;           /* lines seen by on_count */
        char last[64];            /* the last of them, cut */
        int rotations, rotate_rc; /* what on_rotate heard */
} fx;

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        th_tmpdir(f->dir, sizeof(f->dir), "logtail");
        snprintf(f->path, sizeof(f->path), "%s/engine-p_r0.log", f->dir);
        f->base = event_base_new();
        assert_non_null(f->base);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        for (size_t i = 0; i < f->n; i++)
                free(f->lines[i]);
        event_base_free(f->base);
        th_rmtree(f->dir);
        free(f);
        return 0;
}

static void on_line(const char *line, size_t len, void *userdata) {
        fx *f = userdata;

        assert_true(len <= LINE_CAP);
        assert_null(memchr(line, '\n', len));
        assert_true(f->n < MAX_LINES);
        f->lines[f->n] = malloc(len + 1);
        memcpy(f->lines[f->n], line, len);
        f->lines[f->n][len] = '\0';
        f->lens[f->n] = len;
        f->n++;
        if (f->free_me)
                f->free_me = ps_logtail_free(f->free_me);
}

static bool loop_until(fx *f, th_cond *cond, const void *arg) {
        return th_loop_until(f->base, cond, f, arg, TH_WAIT_MS);
}

static bool have_lines(void *fixture, const void *arg) {
        const fx *f = fixture;

        return f->n >= *(const size_t *) arg;
}

static void wait_lines(fx *f, size_t n) {
        assert_true(loop_until(f, have_lines, &n));
        assert_int_equal(f->n, n);
}

typedef struct offset_at {
        const ps_logtail *tail;
        int64_t offset;
} offset_at;

static bool reached_offset(void *fixture, const void *arg) {
        const offset_at *o = arg;

        (void) fixture;
        return ps_logtail_offset(o->tail) >= o->offset;
}

/* Runs the loop until the tail has read up to `offset`: everything written
 * so far has been looked at. */
static void wait_offset(fx *f, const ps_logtail *tail, int64_t offset) {
        offset_at o = { tail, offset };

        assert_true(loop_until(f, reached_offset, &o));
        assert_int_equal(ps_logtail_offset(tail), offset);
}

static int open_writer(const char *path) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

        assert_true(fd >= 0);
        return fd;
}

static void put(int fd, const char *text) {
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
}

static void test_pieces_become_whole_lines(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);

        assert_non_null(t);
        put(fd, "hel");
        wait_offset(f, t, 3);
        assert_int_equal(f->n, 0);            /* a partial line waits */
        put(fd, "lo\nwor");
        wait_lines(f, 1);
        assert_string_equal(f->lines[0], "hello");
        put(fd, "ld\n\nthird\nfourth");
        wait_lines(f, 4);
        assert_string_equal(f->lines[1], "world");
        assert_string_equal(f->lines[2], "");
        assert_string_equal(f->lines[3], "third");
        wait_offset(f, t, 25);
        assert_int_equal(f->n, 4);            /* "fourth" still waits */
        put(fd, "\n");
        wait_lines(f, 5);
        assert_string_equal(f->lines[4], "fourth");
        close(fd);
        ps_logtail_free(t);
}

static void test_offset_skips_old_content(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t;

        put(fd, "old one\nold two\nnew before\n");
        t = ps_logtail_new(f->base, f->path, 16, on_line, f);
        assert_non_null(t);
        assert_int_equal(f->n, 0);            /* nothing inside new() */
        assert_int_equal(ps_logtail_offset(t), 16);
        /* already there when the tail started: read without another write */
        wait_lines(f, 1);
        assert_string_equal(f->lines[0], "new before");
        put(fd, "new after\n");
        wait_lines(f, 2);
        assert_string_equal(f->lines[1], "new after");
        close(fd);
        ps_logtail_free(t);
}

static void test_drain_reads_now(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);

        assert_non_null(t);
        put(fd, "last words\n");
        ps_logtail_drain(t);                  /* no loop run */
        assert_int_equal(f->n, 1);
        assert_string_equal(f->lines[0], "last words");
        assert_int_equal(ps_logtail_offset(t), 11);
        close(fd);
        ps_logtail_free(t);
        ps_logtail_drain(NULL);
        assert_null(ps_logtail_free(NULL));
}

static void test_truncation_restarts(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);

        assert_non_null(t);
        put(fd, "first line\nsecond line\n");
        wait_lines(f, 2);
        assert_int_equal(ftruncate(fd, 0), 0);  /* copytruncate */
        put(fd, "after\n");
        wait_lines(f, 3);
        assert_string_equal(f->lines[2], "after");
        assert_int_equal(ps_logtail_offset(t), 6);
        close(fd);
        ps_logtail_free(t);
}

static void test_rotation_by_rename(void **state) {
        fx *f = *state;
        char rotated[PATH_MAX + 2];
        int fd = open_writer(f->path), fd2;
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);

        assert_non_null(t);
        put(fd, "one\n");
        wait_lines(f, 1);
        snprintf(rotated, sizeof(rotated), "%s.1", f->path);
        assert_int_equal(rename(f->path, rotated), 0);
        /* still written to the old file until the new one appears */
        put(fd, "late\npartial");
        wait_lines(f, 2);
        assert_string_equal(f->lines[1], "late");
        fd2 = open_writer(f->path);
        put(fd2, "two\n");
        /* the old file's unfinished line is handed over as it is */
        wait_lines(f, 4);
        assert_string_equal(f->lines[2], "partial");
        assert_string_equal(f->lines[3], "two");
        put(fd, "lost\n");                      /* the old file is left */
        put(fd2, "three\n");
        wait_lines(f, 5);
        assert_string_equal(f->lines[4], "three");
        close(fd);
        close(fd2);
        ps_logtail_free(t);
}

static void test_rotation_by_delete(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);

        assert_non_null(t);
        put(fd, "one\n");
        wait_lines(f, 1);
        close(fd);
        assert_int_equal(unlink(f->path), 0);
        fd = open_writer(f->path);
        put(fd, "two\n");
        wait_lines(f, 2);
        assert_string_equal(f->lines[1], "two");
        put(fd, "three\n");
        wait_lines(f, 3);
        assert_string_equal(f->lines[2], "three");
        close(fd);
        ps_logtail_free(t);
}

static void test_file_appears_later(void **state) {
        fx *f = *state;
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);
        int fd;

        assert_non_null(t);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        fd = open_writer(f->path);
        put(fd, "hello\n");
        wait_lines(f, 1);
        assert_string_equal(f->lines[0], "hello");
        close(fd);
        ps_logtail_free(t);
}

static void test_long_line_in_pieces(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);
        char chunk[4096];
        size_t total = 0;

        assert_non_null(t);
        memset(chunk, 'x', sizeof(chunk));
        for (int i = 0; i < 10; i++) {         /* 40 KiB, written in 4 KiB */
                assert_int_equal(write(fd, chunk, sizeof(chunk)), (ssize_t) sizeof(chunk));
                if (i == 4)
                        event_base_loop(f->base, EVLOOP_NONBLOCK);
        }
        put(fd, "\nafter\n");
        wait_lines(f, 4);
        assert_int_equal(f->lens[0], LINE_CAP);
        assert_int_equal(f->lens[1], LINE_CAP);
        assert_int_equal(f->lens[2], 40 * 1024 - 2 * LINE_CAP);
        for (size_t i = 0; i < 3; i++) {
                for (size_t j = 0; j < f->lens[i]; j++)
                        assert_int_equal(f->lines[i][j], 'x');
                total += f->lens[i];
        }
        assert_int_equal(total, 40 * 1024);
        assert_string_equal(f->lines[3], "after");
        close(fd);
        ps_logtail_free(t);
}

static void test_exactly_the_cap(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);
        char *line = malloc(LINE_CAP);

        assert_non_null(t);
        memset(line, 'y', LINE_CAP);
        assert_int_equal(write(fd, line, LINE_CAP), LINE_CAP);
        wait_offset(f, t, LINE_CAP);
        put(fd, "\nnext\n");
        wait_lines(f, 2);
        /* a full buffer whose newline comes later is still one line */
        assert_int_equal(f->lens[0], LINE_CAP);
        assert_string_equal(f->lines[1], "next");
        free(line);
        close(fd);
        ps_logtail_free(t);
}

static void test_two_tails_one_file(void **state) {
        fx *f = *state;
        fx other = { .base = f->base };
        int fd = open_writer(f->path);
        ps_logtail *a = ps_logtail_new(f->base, f->path, 0, on_line, f);
        ps_logtail *b = ps_logtail_new(f->base, f->path, 0, on_line, &other);

        assert_non_null(a);
        assert_non_null(b);
        put(fd, "both\n");
        wait_lines(f, 1);
        assert_true(loop_until(&other, have_lines, &(size_t) { 1 }));
        /* the shared watch outlives one of its holders */
        ps_logtail_free(b);
        put(fd, "only a\n");
        wait_lines(f, 2);
        assert_string_equal(f->lines[1], "only a");
        assert_int_equal(other.n, 1);
        free(other.lines[0]);
        close(fd);
        ps_logtail_free(a);
}

static void test_free_inside_callback(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_line, f);

        assert_non_null(t);
        f->free_me = t;
        put(fd, "one\ntwo\nthree\n");
        wait_lines(f, 1);
        /* freed after the first line: no more calls, no use after free */
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        assert_int_equal(f->n, 1);
        assert_null(f->free_me);
        close(fd);
}

/* More tails than the default 128 inotify instances a user may have. */
static void test_many_tails(void **state) {
        fx *f = *state;
        enum { N = 200 };
        ps_logtail *t[N];
        char path[PATH_MAX + 16];
        int fd;

        for (int i = 0; i < N; i++) {
                snprintf(path, sizeof(path), "%s/engine-p_r%d.log", f->dir, i);
                close(open_writer(path));
                t[i] = ps_logtail_new(f->base, path, 0, on_line, f);
                assert_non_null(t[i]);
        }
        snprintf(path, sizeof(path), "%s/engine-p_r%d.log", f->dir, 150);
        fd = open_writer(path);
        put(fd, "from 150\n");
        wait_lines(f, 1);
        assert_string_equal(f->lines[0], "from 150");
        close(fd);
        for (int i = 0; i < N; i++)
                ps_logtail_free(t[i]);
}

/* For floods: counts lines and keeps the last one's start. */
static void on_count(const char *line, size_t len, void *userdata) {
        fx *f = userdata;

        assert_true(len <= LINE_CAP);
        f->counted++;
        snprintf(f->last, sizeof(f->last), "%.*s", (int) (len < 63 ? len : 63), line);
}

static void write_filler(int fd, size_t bytes, char fill, bool lines) {
        char chunk[64 * 1024];

        memset(chunk, fill, sizeof(chunk));
        if (lines)
                for (size_t i = 1023; i < sizeof(chunk); i += 1024)
                        chunk[i] = '\n';
        for (size_t done = 0; done < bytes; done += sizeof(chunk))
                assert_int_equal(write(fd, chunk, sizeof(chunk)), (ssize_t) sizeof(chunk));
}

typedef struct turns {
        const ps_logtail *tail;
        int64_t until;
        int64_t prev;
        int64_t max_step;         /* the most one turn of the loop read */
        unsigned n;
} turns;

/* Called once per turn of the loop by th_loop_until. */
static bool count_turn(void *fixture, const void *arg) {
        turns *t = (turns *) arg;
        int64_t now = ps_logtail_offset(t->tail);

        (void) fixture;
        if (now - t->prev > t->max_step)
                t->max_step = now - t->prev;
        t->prev = now;
        t->n++;
        return now >= t->until;
}

/* 8 MiB without a newline: read over many turns of the loop, a bounded
 * amount each, in pieces of the line cap; the loop serves other events in
 * between. */
static void test_flood_is_read_over_turns(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_count, f);
        turns tr = { .tail = t, .until = 8 * 1024 * 1024 + 5 };

        assert_non_null(t);
        write_filler(fd, 8 * 1024 * 1024, 'x', false);
        put(fd, "\nend\n");
        assert_true(loop_until(f, count_turn, &tr));
        assert_true(tr.max_step <= 64 * 1024);
        assert_true(tr.n >= 8 * 1024 / 64);
        assert_int_equal(f->counted, 8 * 1024 * 1024 / LINE_CAP + 1);
        assert_string_equal(f->last, "end");
        close(fd);
        ps_logtail_free(t);
}

/* An exit with megabytes unread: the drain reads the last lines only. */
static void test_drain_of_a_flood_reads_the_end(void **state) {
        fx *f = *state;
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_count, f);

        assert_non_null(t);
        write_filler(fd, 8 * 1024 * 1024, 'y', true);
        put(fd, "CUDA error: out of memory\n");
        ps_logtail_drain(t);                  /* no loop run */
        assert_int_equal(ps_logtail_offset(t), 8 * 1024 * 1024 + 26);
        assert_true(f->counted <= 64 + 1);
        assert_string_equal(f->last, "CUDA error: out of memory");
        close(fd);
        ps_logtail_free(t);
}

static void on_rotate(int rc, const char *path, void *userdata) {
        fx *f = userdata;

        assert_string_equal(path, f->path);
        f->rotations++;
        f->rotate_rc = rc;
}

static bool rotated_once(void *fixture, const void *arg) {
        (void) arg;
        return ((const fx *) fixture)->rotations > 0;
}

static int64_t file_size(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 ? (int64_t) st.st_size : -1;
}

/* Above the cap the file is copied to .1 and cut to 0 in place; the
 * writer goes on with its descriptor and the follower with the lines. */
static void check_rotation(fx *f, size_t bytes, int64_t cap) {
        int fd = open_writer(f->path);
        ps_logtail *t = ps_logtail_new(f->base, f->path, 0, on_count, f);
        char old[sizeof(f->path) + 2];

        assert_non_null(t);
        snprintf(old, sizeof(old), "%s.1", f->path);
        ps_logtail_set_max_bytes(t, cap, on_rotate);
        write_filler(fd, bytes, 'z', true);
        assert_true(loop_until(f, rotated_once, NULL));
        assert_int_equal(f->rotate_rc, 0);
        assert_int_equal(f->counted, bytes / 1024);
        assert_int_equal(file_size(old), (int64_t) bytes);
        assert_int_equal(file_size(f->path), 0);
        put(fd, "after\n");
        wait_offset(f, t, 6);
        assert_int_equal(f->counted, bytes / 1024 + 1);
        assert_string_equal(f->last, "after");
        assert_int_equal(f->rotations, 1);
        close(fd);
        ps_logtail_free(t);
}

static void test_rotation_at_the_cap(void **state) {
        check_rotation(*state, 64 * 1024, 4096);
}

static void test_rotation_of_megabytes_over_turns(void **state) {
        check_rotation(*state, 3 * 1024 * 1024, 1024 * 1024);
}

static void test_unwatchable(void **state) {
        fx *f = *state;

        errno = 0;
        assert_null(ps_logtail_new(f->base, "/nonexistent/dir/x.log", 0, on_line, f));
        assert_int_equal(errno, ENOENT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(test_pieces_become_whole_lines),
                T(test_offset_skips_old_content),
                T(test_drain_reads_now),
                T(test_truncation_restarts),
                T(test_rotation_by_rename),
                T(test_rotation_by_delete),
                T(test_file_appears_later),
                T(test_long_line_in_pieces),
                T(test_exactly_the_cap),
                T(test_two_tails_one_file),
                T(test_free_inside_callback),
                T(test_many_tails),
                T(test_unwatchable),
                T(test_flood_is_read_over_turns),
                T(test_drain_of_a_flood_reads_the_end),
                T(test_rotation_at_the_cap),
                T(test_rotation_of_megabytes_over_turns),
#undef T
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
