/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool-services/base/clock.h"
#include "pool-services/base/event.h"
#include "pool-services/base/log.h"

/* 2026-11-24T12:00:00.123Z */
#define PINNED_MS INT64_C(1795521600123)
#define PINNED_TS "2026-11-24T12:00:00.123Z"

typedef struct capture {
        int64_t now_ms;
        ps_clock clock;
        char *buf;
        size_t len;
        FILE *out;
        ps_logger *log;
} capture;

static int64_t pinned_ms(void *userdata) {
        return *(const int64_t *) userdata;
}

static int capture_setup(void **state) {
        capture *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        c->now_ms = PINNED_MS;
        c->clock = (ps_clock) { .wall_ms = pinned_ms, .mono_ms = pinned_ms, .userdata = &c->now_ms };
        c->out = open_memstream(&c->buf, &c->len);
        assert_non_null(c->out);
        c->log = ps_logger_new(c->out, PS_LOG_DEBUG, &c->clock);
        assert_non_null(c->log);
        *state = c;
        return 0;
}

static int capture_teardown(void **state) {
        capture *c = *state;

        assert_null(ps_logger_free(c->log));
        fclose(c->out);
        free(c->buf);
        free(c);
        return 0;
}

/* Everything written so far; the memstream buffer is valid after fflush. */
static const char *output(capture *c) {
        assert_int_equal(fflush(c->out), 0);
        return c->buf;
}

static void test_exact_line_with_pinned_clock(void **state) {
        capture *c = *state;

        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "listening",
                                PS_FIELD_STR("address", "127.0.0.1:9200"),
                                PS_FIELD_INT("port", 9200)),
                         0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"info\",\"msg\":\"listening\","
                            "\"address\":\"127.0.0.1:9200\",\"port\":9200}\n");
}

static void test_line_without_fields(void **state) {
        capture *c = *state;

        assert_int_equal(ps_log(c->log, PS_LOG_CRITICAL, "stopped"), 0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"critical\",\"msg\":\"stopped\"}\n");
}

static void test_structured_fields_in_order(void **state) {
        capture *c = *state;

        assert_int_equal(ps_log(c->log, PS_LOG_WARN, "restart scheduled",
                                PS_FIELD_STR("pool_id", "llama-7b"),
                                PS_FIELD_STR("replica_id", "r0"),
                                PS_FIELD_INT("restart_count", 3),
                                PS_FIELD_INT("backoff_ms", -1),
                                PS_FIELD_INT("next_restart_at", INT64_MAX),
                                PS_FIELD_STR("correlation_id", "abc-123")),
                         0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"warn\",\"msg\":\"restart scheduled\","
                            "\"pool_id\":\"llama-7b\",\"replica_id\":\"r0\",\"restart_count\":3,"
                            "\"backoff_ms\":-1,\"next_restart_at\":9223372036854775807,"
                            "\"correlation_id\":\"abc-123\"}\n");
}

static void test_escaping_quotes_newlines_controls(void **state) {
        capture *c = *state;
        const char *out;

        assert_int_equal(ps_log(c->log, PS_LOG_ERROR, "engine said \"boom\"\nsecond line\t\\ end",
                                PS_FIELD_STR("last_error", "\"CUDA\r\nerror\"\x01")),
                         0);
        out = output(c);
        assert_string_equal(out,
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"error\","
                            "\"msg\":\"engine said \\\"boom\\\"\\nsecond line\\t\\\\ end\","
                            "\"last_error\":\"\\\"CUDA\\r\\nerror\\\"\\u0001\"}\n");
        /* One line: the only newline is the terminator. */
        assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
}

static void test_invalid_utf8_is_replaced_not_dropped(void **state) {
        capture *c = *state;

        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "bad \xff byte",
                                PS_FIELD_STR("path", "/\xc3\x28/\xe2\x82\xac/\xed\xa0\x80")),
                         0);
        /* \xc3\x28 is a broken pair, \xe2\x82\xac a valid euro sign,
         * \xed\xa0\x80 an encoded surrogate (three invalid bytes). */
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"info\","
                            "\"msg\":\"bad \xef\xbf\xbd byte\","
                            "\"path\":\"/\xef\xbf\xbd(/\xe2\x82\xac/"
                            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}\n");
}

static void test_null_string_field_is_left_out(void **state) {
        capture *c = *state;
        const char *absent = NULL;

        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "request",
                                PS_FIELD_STR("correlation_id", absent),
                                PS_FIELD_INT("status", 200)),
                         0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"info\",\"msg\":\"request\","
                            "\"status\":200}\n");
}

static void test_reserved_keys_cannot_be_overwritten(void **state) {
        capture *c = *state;

        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "real",
                                PS_FIELD_STR("ts", "fake"), PS_FIELD_STR("level", "critical"),
                                PS_FIELD_STR("msg", "fake"), PS_FIELD_INT("n", 1)),
                         0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"info\",\"msg\":\"real\",\"n\":1}\n");
}

static void test_level_filtering(void **state) {
        capture *c = *state;

        ps_logger_set_level(c->log, PS_LOG_WARN);
        assert_int_equal(ps_logger_get_level(c->log), PS_LOG_WARN);
        assert_false(ps_logger_enabled(c->log, PS_LOG_DEBUG));
        assert_false(ps_logger_enabled(c->log, PS_LOG_INFO));
        assert_true(ps_logger_enabled(c->log, PS_LOG_WARN));
        assert_true(ps_logger_enabled(c->log, PS_LOG_CRITICAL));

        assert_int_equal(ps_log(c->log, PS_LOG_DEBUG, "dropped"), 0);
        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "dropped"), 0);
        assert_string_equal(output(c), "");

        assert_int_equal(ps_log(c->log, PS_LOG_WARN, "kept"), 0);
        assert_int_equal(ps_log(c->log, PS_LOG_ERROR, "kept"), 0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"warn\",\"msg\":\"kept\"}\n"
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"error\",\"msg\":\"kept\"}\n");

        ps_logger_set_level(c->log, PS_LOG_DEBUG);
        assert_int_equal(ps_log(c->log, PS_LOG_DEBUG, "now kept"), 0);
        assert_non_null(strstr(output(c), "\"level\":\"debug\",\"msg\":\"now kept\""));

        /* An out-of-range level neither logs nor changes the minimum. */
        ps_logger_set_level(c->log, PS_LOG_LEVEL_MAX);
        assert_int_equal(ps_logger_get_level(c->log), PS_LOG_DEBUG);
        assert_int_equal(ps_log(c->log, PS_LOG_LEVEL_MAX, "bad"), -EINVAL);
}

static void test_timestamp_millisecond_padding_and_epoch(void **state) {
        capture *c = *state;

        c->now_ms = INT64_C(1795521600007);
        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "a"), 0);
        c->now_ms = 0;
        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "b"), 0);
        c->now_ms = -1;   /* floor, not truncation, before 1970 */
        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "c"), 0);
        assert_string_equal(output(c),
                            "{\"ts\":\"2026-11-24T12:00:00.007Z\",\"level\":\"info\",\"msg\":\"a\"}\n"
                            "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"level\":\"info\",\"msg\":\"b\"}\n"
                            "{\"ts\":\"1969-12-31T23:59:59.999Z\",\"level\":\"info\",\"msg\":\"c\"}\n");
}

static void test_long_line_is_whole(void **state) {
        capture *c = *state;
        size_t n = 5000;
        char *big = malloc(n + 1);
        const char *out;

        assert_non_null(big);
        memset(big, 'x', n);
        big[n] = '\0';
        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "big", PS_FIELD_STR("blob", big)), 0);
        out = output(c);
        assert_int_equal(strlen(out),
                         strlen("{\"ts\":\"" PINNED_TS "\",\"level\":\"info\",\"msg\":\"big\",\"blob\":\"\"}\n") + n);
        assert_non_null(strstr(out, big));
        free(big);
}

static void test_level_names(void **state) {
        static const char *const names[] = { "debug", "info", "warn", "error", "critical" };
        ps_log_level level = PS_LOG_INFO;

        (void) state;
        for (unsigned i = 0; i < PS_LOG_LEVEL_MAX; i++) {
                assert_string_equal(ps_log_level_to_string((ps_log_level) i), names[i]);
                assert_int_equal(ps_log_level_from_string(names[i], &level), 0);
                assert_int_equal(level, i);
        }
        assert_null(ps_log_level_to_string(PS_LOG_LEVEL_MAX));
        level = PS_LOG_INFO;
        assert_int_equal(ps_log_level_from_string("warning", &level), -EINVAL);
        assert_int_equal(ps_log_level_from_string("INFO", &level), -EINVAL);
        assert_int_equal(ps_log_level_from_string(NULL, &level), -EINVAL);
        assert_int_equal(level, PS_LOG_INFO);
}

static void test_null_logger_and_bad_arguments(void **state) {
        (void) state;
        assert_null(ps_logger_free(NULL));
        assert_null(ps_logger_new(NULL, PS_LOG_INFO, NULL));
        assert_null(ps_logger_new(stderr, PS_LOG_LEVEL_MAX, NULL));
        assert_int_equal(ps_log(NULL, PS_LOG_ERROR, "nowhere"), 0);
        assert_false(ps_logger_enabled(NULL, PS_LOG_CRITICAL));
}

static void test_write_failure_is_reported(void **state) {
        FILE *f = fopen("/dev/null", "r");
        ps_logger *log;

        (void) state;
        assert_non_null(f);
        log = ps_logger_new(f, PS_LOG_INFO, NULL);
        assert_non_null(log);
        assert_true(ps_log(log, PS_LOG_INFO, "cannot be written") < 0);
        ps_logger_free(log);
        fclose(f);
}

static void test_event_becomes_log_line(void **state) {
        capture *c = *state;
        const ps_field fields[] = {
                PS_FIELD_STR("method", "GET"),
                PS_FIELD_INT("status", 404),
        };
        const ps_event http = {
                .type = PS_EVENT_HTTP_REQUEST,
                .level = PS_LOG_DEBUG,
                .message = "request",
                .fields = fields,
                .n_fields = 2,
        };
        const ps_event generic = {
                .type = PS_EVENT_GENERIC,
                .level = PS_LOG_INFO,
                .pool_id = "llama-7b",
                .replica_id = "r1",
                .message = "ready",
        };
        size_t before;

        assert_int_equal(ps_logger_log_event(c->log, &http), 0);
        assert_int_equal(ps_logger_log_event(c->log, &generic), 0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"debug\",\"msg\":\"request\","
                            "\"event\":\"http_request\",\"method\":\"GET\",\"status\":404}\n"
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"info\",\"msg\":\"ready\","
                            "\"pool_id\":\"llama-7b\",\"replica_id\":\"r1\"}\n");

        /* The logger's level applies to events too. */
        before = strlen(output(c));
        ps_logger_set_level(c->log, PS_LOG_INFO);
        assert_int_equal(ps_logger_log_event(c->log, &http), 0);
        assert_int_equal(strlen(output(c)), before);
}

static void test_json_fields_keep_their_types(void **state) {
        capture *c = *state;

        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "request finished",
                                PS_FIELD_BOOL("ok", true), PS_FIELD_BOOL("noop", false),
                                PS_FIELD_INT("duration_ms", 1900),
                                PS_FIELD_BOOL_IF("force_stopped", false, true),
                                PS_FIELD_BOOL_IF("forced", true, false)),
                         0);
        assert_string_equal(output(c),
                            "{\"ts\":\"" PINNED_TS "\",\"level\":\"info\",\"msg\":\"request finished\","
                            "\"ok\":true,\"noop\":false,\"duration_ms\":1900,\"forced\":false}\n");
}

static void test_text_line(void **state) {
        capture *c = *state;
        const ps_field fields[] = {
                PS_FIELD_STR("signal", "SIGKILL"),
                PS_FIELD_INT("restart_in_ms", 1900),
                PS_FIELD_BOOL("expected", false),
                PS_FIELD_STR("reason", "killed by \"oom\" killer"),
                PS_FIELD_STR("empty", ""),
                PS_FIELD_STR("missing", NULL),
        };
        const ps_event ev = {
                .type = PS_EVENT_ENGINE_FAILED,
                .level = PS_LOG_WARN,
                .pool_id = "qwen",
                .replica_id = "r0",
                .message = "crashed: killed by SIGKILL",
                .fields = fields,
                .n_fields = sizeof(fields) / sizeof(fields[0]),
        };

        ps_logger_set_format(c->log, PS_LOG_FORMAT_TEXT);
        assert_int_equal(ps_logger_log_event(c->log, &ev), 0);
        assert_int_equal(ps_log(c->log, PS_LOG_CRITICAL, "two\nlines", PS_FIELD_STR("path", "a=b"),
                                PS_FIELD_STR("pool_id", "p"), PS_FIELD_STR("tab", "x\ty")),
                         0);
        assert_int_equal(ps_log(c->log, PS_LOG_INFO, "listening"), 0);
        assert_string_equal(output(c),
                            PINNED_TS " warn  pool=qwen replica=r0 crashed: killed by SIGKILL"
                            " event=engine_failed signal=SIGKILL restart_in_ms=1900 expected=false"
                            " reason=\"killed by \\\"oom\\\" killer\" empty=\"\"\n"
                            PINNED_TS " critical pool=p two\\nlines path=\"a=b\" tab=\"x\\ty\"\n"
                            PINNED_TS " info  listening\n");
}

static void test_format_names_and_default(void **state) {
        char journal[64];
        ps_log_format f = PS_LOG_FORMAT_MAX;
        struct stat st;
        int fd;

        (void) state;
        assert_int_equal(ps_log_format_from_string("text", &f), 0);
        assert_int_equal(f, PS_LOG_FORMAT_TEXT);
        assert_int_equal(ps_log_format_from_string("json", &f), 0);
        assert_int_equal(f, PS_LOG_FORMAT_JSON);
        assert_int_equal(ps_log_format_from_string("yaml", &f), -EINVAL);
        assert_int_equal(ps_log_format_from_string(NULL, &f), -EINVAL);
        assert_string_equal(ps_log_format_to_string(PS_LOG_FORMAT_TEXT), "text");
        assert_null(ps_log_format_to_string(PS_LOG_FORMAT_MAX));

        /* A file is not a terminal: JSON, unless the journal names it. */
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(ps_log_format_default(fd, NULL), PS_LOG_FORMAT_JSON);
        snprintf(journal, sizeof(journal), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        assert_int_equal(ps_log_format_default(fd, journal), PS_LOG_FORMAT_TEXT);
        snprintf(journal, sizeof(journal), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino + 1);
        assert_int_equal(ps_log_format_default(fd, journal), PS_LOG_FORMAT_JSON);
        assert_int_equal(ps_log_format_default(fd, "garbage"), PS_LOG_FORMAT_JSON);
        close(fd);
}

typedef struct seen {
        unsigned calls;
        ps_event_type type;
        const char *message;
} seen;

static void record_event(const ps_event *event, void *userdata) {
        seen *s = userdata;

        s->calls++;
        s->type = event->type;
        s->message = event->message;
}

static void test_event_sink_emit(void **state) {
        seen s = { .calls = 0 };
        const ps_event_sink sink = { .fn = record_event, .userdata = &s };
        const ps_event_sink drop = { .fn = NULL };
        const ps_event ev = { .type = PS_EVENT_HTTP_REQUEST, .level = PS_LOG_DEBUG, .message = "request" };

        (void) state;
        ps_event_emit(&sink, &ev);
        assert_int_equal(s.calls, 1);
        assert_int_equal(s.type, PS_EVENT_HTTP_REQUEST);
        assert_string_equal(s.message, "request");

        ps_event_emit(&drop, &ev);
        ps_event_emit(NULL, &ev);
        ps_event_emit(&sink, NULL);
        assert_int_equal(s.calls, 1);

        assert_string_equal(ps_event_type_to_string(PS_EVENT_GENERIC), "generic");
        assert_string_equal(ps_event_type_to_string(PS_EVENT_HTTP_REQUEST), "http_request");
        assert_null(ps_event_type_to_string(PS_EVENT_TYPE_MAX));
}

static void test_system_clock_is_sane(void **state) {
        int64_t a, b;

        (void) state;
        /* After 2020 and before 2100: it is a wall clock in milliseconds. */
        a = ps_clock_wall_ms(NULL);
        assert_true(a > INT64_C(1577836800000) && a < INT64_C(4102444800000));
        a = ps_clock_mono_ms(ps_clock_system());
        b = ps_clock_mono_ms(NULL);
        assert_true(b >= a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_exact_line_with_pinned_clock, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_line_without_fields, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_structured_fields_in_order, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_escaping_quotes_newlines_controls, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_invalid_utf8_is_replaced_not_dropped, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_null_string_field_is_left_out, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_reserved_keys_cannot_be_overwritten, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_level_filtering, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_timestamp_millisecond_padding_and_epoch, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_long_line_is_whole, capture_setup, capture_teardown),
                cmocka_unit_test(test_level_names),
                cmocka_unit_test(test_null_logger_and_bad_arguments),
                cmocka_unit_test(test_write_failure_is_reported),
                cmocka_unit_test_setup_teardown(test_event_becomes_log_line, capture_setup, capture_teardown),
                cmocka_unit_test(test_event_sink_emit),
                cmocka_unit_test_setup_teardown(test_json_fields_keep_their_types, capture_setup, capture_teardown),
                cmocka_unit_test_setup_teardown(test_text_line, capture_setup, capture_teardown),
                cmocka_unit_test(test_format_names_and_default),
                cmocka_unit_test(test_system_clock_is_sane),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
