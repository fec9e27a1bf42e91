/* SPDX-License-Identifier: MIT */
/*
 * libevent's own warnings reach our JSON log: an fd epoll cannot watch (a
 * regular file) makes libevent warn when the loop applies the change.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "pool-services/base/libevent-log.h"

static void on_nothing(evutil_socket_t fd, short what, void *userdata) {
        (void) fd;
        (void) what;
        (void) userdata;
}

static void test_libevent_warning_is_a_json_line(void **state) {
        FILE *out = tmpfile();
        ps_logger *log = ps_logger_new(out, PS_LOG_DEBUG, NULL);
        struct event_config *cfg = event_config_new();
        struct event_base *base;
        struct event *ev;
        char line[2048];
        bool found = false;
        int fd;

        (void) state;
        assert_non_null(out);
        assert_non_null(log);
        assert_non_null(cfg);
        assert_int_equal(event_config_require_features(cfg, EV_FEATURE_O1), 0);
        base = event_base_new_with_config(cfg);
        event_config_free(cfg);
        assert_non_null(base);
        assert_string_equal(event_base_get_method(base), "epoll");
        fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);

        ps_libevent_log_to(log);
        ev = event_new(base, fd, EV_READ | EV_PERSIST, on_nothing, NULL);
        assert_non_null(ev);
        (void) event_add(ev, NULL);
        (void) event_base_loop(base, EVLOOP_NONBLOCK);
        ps_libevent_log_to(NULL);

        rewind(out);
        while (fgets(line, sizeof(line), out)) {
                json_t *o = json_loads(line, 0, NULL);

                assert_non_null(o);   /* every line is JSON */
                if (strcmp(json_string_value(json_object_get(o, "source")), "libevent") == 0 &&
                    strstr(json_string_value(json_object_get(o, "msg")), "Epoll") &&
                    strcmp(json_string_value(json_object_get(o, "level")), "warn") == 0)
                        found = true;
                json_decref(o);
        }
        assert_true(found);
        event_free(ev);
        event_base_free(base);
        close(fd);
        ps_logger_free(log);
        fclose(out);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_libevent_warning_is_a_json_line),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
