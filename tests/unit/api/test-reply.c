/* SPDX-License-Identifier: MIT */
/*
 * The one table where a pool-services outcome meets an HTTP status: every
 * PS_E_* has its code, and a code its status.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "pool-services/base/errors.h"
#include "request-private.h"

static void test_every_services_outcome_has_its_code(void **state) {
        static const struct {
                int rc;
                pa_code code;
                int status;
        } table[] = {
                { PS_E_INVALID, PA_CODE_INVALID_FIELD, 400 },
                { PS_E_NOT_FOUND, PA_CODE_POOL_NOT_FOUND, 404 },
                { PS_E_EXISTS, PA_CODE_CONFLICT, 409 },
                { PS_E_CONFLICT, PA_CODE_CONFLICT, 409 },
                { PS_E_BREAKER_OPEN, PA_CODE_BREAKER_OPEN, 409 },
                { PS_E_NOT_RUNNING, PA_CODE_NOT_RUNNING, 409 },
                { PS_E_DRAINING, PA_CODE_DRAINING, 409 },
                { PS_E_NOT_READY, PA_CODE_NOT_READY, 503 },
                { PS_E_NO_SLOT, PA_CODE_NO_FREE_SLOT, 429 },
                { PS_E_DRAIN_TIMEOUT, PA_CODE_DRAIN_TIMEOUT, 409 },
                { PS_E_STAGE_FAILED, PA_CODE_STAGE_FAILED, 422 },
                { PS_E_RELOAD_FAILED, PA_CODE_RELOAD_FAILED, 500 },
                { PS_E_FORBIDDEN, PA_CODE_BINARY_NOT_ALLOWED, 403 },
                { PS_E_GPU_ONLY, PA_CODE_GPU_ONLY, 503 },
                { PS_E_PREFLIGHT, PA_CODE_PREFLIGHT_FAILED, 503 },
                { PS_E_MODEL_FORBIDDEN, PA_CODE_MODEL_NOT_ALLOWED, 403 },
                { PS_E_START_FAILED, PA_CODE_PRELOAD_FAILED, 500 },
                { PS_E_HEALTH_CHECK, PA_CODE_HEALTH_CHECK_FAILED, 500 },
                { PS_E_ROLLBACK_FAILED, PA_CODE_RELOAD_FAILED, 500 },
                { PS_E_ENGINE_FAILED, PA_CODE_RELOAD_FAILED, 500 },
        };

        (void) state;
        /* the table above names every code there is */
        assert_int_equal(sizeof(table) / sizeof(table[0]), PS_E_ENGINE_FAILED);
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                pa_code code = pa_code_from_services(table[i].rc);

                if (code != table[i].code || pa_code_to_status(code) != table[i].status)
                        fail_msg("PS_E %d: %s %d, want %s %d", table[i].rc, pa_code_to_string(code),
                                 pa_code_to_status(code), pa_code_to_string(table[i].code),
                                 table[i].status);
        }
        assert_int_equal(pa_code_from_services(-EIO), PA_CODE_INTERNAL);
        assert_int_equal(pa_code_from_services(0), PA_CODE_INTERNAL);
        assert_int_equal(pa_code_from_services(PS_E_ENGINE_FAILED + 1), PA_CODE_INTERNAL);
}

static void test_codes_have_names_and_statuses(void **state) {
        (void) state;
        for (int i = 0; i < PA_CODE_MAX; i++) {
                assert_non_null(pa_code_to_string((pa_code) i));
                assert_true(pa_code_to_status((pa_code) i) >= 400);
        }
        assert_null(pa_code_to_string(PA_CODE_MAX));
        assert_int_equal(pa_code_to_status(PA_CODE_MAX), 500);
        assert_string_equal(pa_code_to_string(PA_CODE_HEALTH_CHECK_FAILED), "HEALTH_CHECK_FAILED");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_services_outcome_has_its_code),
                cmocka_unit_test(test_codes_have_names_and_statuses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
