/* SPDX-License-Identifier: MIT */
/* pd_strerror() and pd_error_code_to_string() know every code; the version
 * macros agree with the library. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <pool-domain/pool-domain.h>

static void test_every_code_has_a_sentence(void **state) {
        (void) state;
        assert_string_equal(pd_strerror(0), "success");
        for (int rc = 1; rc < PD_E_MAX; rc++) {
                assert_string_not_equal(pd_strerror(rc), "unknown error code");
                assert_string_not_equal(pd_error_code_to_string(rc), "unknown");
                for (int other = 1; other < rc; other++)
                        assert_string_not_equal(pd_strerror(rc), pd_strerror(other));
        }
        assert_string_equal(pd_strerror(PD_E_MAX), "unknown error code");
        assert_string_equal(pd_strerror(-ENOMEM), strerror(ENOMEM));
        assert_string_equal(pd_strerror(PD_E_BREAKER_OPEN), "circuit breaker open: restart refused");
}

static void test_version(void **state) {
        char built[32];

        (void) state;
        snprintf(built, sizeof(built), "%d.%d.%d", PD_VERSION_MAJOR, PD_VERSION_MINOR,
                 PD_VERSION_PATCH);
        assert_string_equal(built, PD_VERSION_STRING);
        assert_string_equal(pd_version(), PD_VERSION_STRING);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_code_has_a_sentence),
                cmocka_unit_test(test_version),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
