/* SPDX-License-Identifier: MIT */
/*
 * Logging into the journal: when $JOURNAL_STREAM names the logger's
 * stream, each line starts with its syslog priority ("<6>{...}"), and
 * only then.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pool-services/base/log.h"

/* Every line written to f so far, from its start. */
static char *contents(FILE *f) {
        static char buf[8192];
        size_t n;

        assert_int_equal(fflush(f), 0);
        rewind(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        return buf;
}

/* A logger on a fresh file; JOURNAL_STREAM names it when named is true,
 * else another file. */
static ps_logger *logger_on(FILE *f, bool named) {
        struct stat st;
        char env[64];
        FILE *other = tmpfile();

        assert_non_null(other);
        assert_int_equal(fstat(fileno(named ? f : other), &st), 0);
        snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        assert_int_equal(setenv("JOURNAL_STREAM", env, 1), 0);
        fclose(other);
        return ps_logger_new(f, PS_LOG_DEBUG, NULL);
}

static void test_prefix_per_level(void **state) {
        static const struct { ps_log_level level; const char *prefix; } want[] = {
                { PS_LOG_DEBUG, "<7>{" }, { PS_LOG_INFO, "<6>{" }, { PS_LOG_WARN, "<4>{" },
                { PS_LOG_ERROR, "<3>{" }, { PS_LOG_CRITICAL, "<2>{" },
        };
        FILE *f = tmpfile();
        ps_logger *log;
        char *line;

        (void) state;
        assert_non_null(f);
        log = logger_on(f, true);
        assert_non_null(log);
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                assert_int_equal(ps_log(log, want[i].level, "a line", PS_FIELD_INT("i", i)), 0);
        line = contents(f);
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                char *end = strchr(line, '\n');

                assert_non_null(end);
                /* at the line's start only, and the JSON after it whole */
                assert_memory_equal(line, want[i].prefix, strlen(want[i].prefix));
                assert_null(memchr(line + 1, '<', (size_t) (end - line - 1)));
                assert_int_equal(end[-1], '}');
                line = end + 1;
        }
        assert_string_equal(line, "");
        ps_logger_free(log);
        fclose(f);
}

/* A long line goes through the heap buffer: the prefix is still there. */
static void test_prefix_long_line(void **state) {
        FILE *f = tmpfile();
        char big[3000];
        ps_logger *log;
        const char *out;

        (void) state;
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        assert_non_null(f);
        log = logger_on(f, true);
        assert_int_equal(ps_log(log, PS_LOG_ERROR, big), 0);
        out = contents(f);
        assert_memory_equal(out, "<3>{", 4);
        assert_non_null(strstr(out, big));
        assert_int_equal(out[strlen(out) - 1], '\n');
        ps_logger_free(log);
        fclose(f);
}

static void test_no_prefix_elsewhere(void **state) {
        FILE *f = tmpfile();
        ps_logger *log;

        (void) state;
        assert_non_null(f);
        log = logger_on(f, false);
        assert_int_equal(ps_log(log, PS_LOG_WARN, "not the journal"), 0);
        assert_memory_equal(contents(f), "{", 1);
        ps_logger_free(log);
        assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
        log = ps_logger_new(f, PS_LOG_DEBUG, NULL);
        assert_int_equal(ps_log(log, PS_LOG_WARN, "no journal at all"), 0);
        assert_null(strchr(contents(f), '<'));
        assert_int_equal(setenv("JOURNAL_STREAM", "garbage", 1), 0);
        ps_logger_free(log);
        log = ps_logger_new(f, PS_LOG_DEBUG, NULL);
        assert_int_equal(ps_log(log, PS_LOG_WARN, "a bad variable"), 0);
        assert_null(strchr(contents(f), '<'));
        ps_logger_free(log);
        fclose(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prefix_per_level),
                cmocka_unit_test(test_prefix_long_line),
                cmocka_unit_test(test_no_prefix_elsewhere),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
