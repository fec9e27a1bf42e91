/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "pool-domain/ids.h"

/* Expects `id` to be refused with exactly `msg`. */
static void assert_id_refused(const char *id, const char *msg) {
        pd_error err = { .msg = "untouched" };

        assert_int_equal(pd_id_validate(id, "pool id", &err), PD_E_INVALID);
        assert_string_equal(err.msg, msg);
        assert_false(pd_id_is_valid(id));
}

static void test_id_accepts_ordinary_ids(void **state) {
        static const char *const ok[] = {
                "llama-7b", "a", "A.b_c-9", "0", "r0", "Qwen2.5-7B-Instruct",
                "pool_with_underscores", "a..", "9-",
        };
        pd_error err = { .msg = "" };

        (void) state;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                assert_int_equal(pd_id_validate(ok[i], "pool id", &err), 0);
                assert_true(pd_id_is_valid(ok[i]));
        }
        /* Success leaves the error alone. */
        assert_string_equal(err.msg, "");
}

static void test_id_accepts_exactly_64_characters(void **state) {
        char id[PD_ID_MAX + 1];

        (void) state;
        memset(id, 'a', PD_ID_MAX);
        id[PD_ID_MAX] = '\0';
        assert_int_equal(pd_id_validate(id, "pool id", NULL), 0);
        assert_true(pd_id_is_valid(id));
}

static void test_id_refuses_65_characters(void **state) {
        char id[PD_ID_MAX + 2];

        (void) state;
        memset(id, 'a', PD_ID_MAX + 1);
        id[PD_ID_MAX + 1] = '\0';
        assert_id_refused(id, "pool id: longer than 64 characters");
}

static void test_id_refuses_null(void **state) {
        (void) state;
        assert_id_refused(NULL, "pool id: missing");
}

static void test_id_refuses_empty(void **state) {
        (void) state;
        assert_id_refused("", "pool id: empty");
}

static void test_id_refuses_leading_punctuation(void **state) {
        (void) state;
        assert_id_refused(".hidden", "pool id \".hidden\": must start with a letter or digit, not '.'");
        assert_id_refused("_x", "pool id \"_x\": must start with a letter or digit, not '_'");
        assert_id_refused("-rf", "pool id \"-rf\": must start with a letter or digit, not '-'");
}

static void test_id_refuses_dot_dot(void **state) {
        (void) state;
        assert_id_refused("..", "pool id \"..\": must start with a letter or digit, not '.'");
        assert_id_refused(".", "pool id \".\": must start with a letter or digit, not '.'");
}

static void test_id_refuses_slash_naming_position(void **state) {
        (void) state;
        assert_id_refused("a/b",
                          "pool id \"a/b\": character '/' at position 1 is not allowed (letters, digits, '.', '_', '-')");
        assert_id_refused("a/../../etc",
                          "pool id \"a/../../etc\": character '/' at position 1 is not allowed (letters, digits, '.', '_', '-')");
}

static void test_id_refuses_space(void **state) {
        (void) state;
        assert_id_refused("a b",
                          "pool id \"a b\": character ' ' at position 1 is not allowed (letters, digits, '.', '_', '-')");
}

static void test_id_refuses_percent_encoding(void **state) {
        (void) state;
        assert_id_refused("%2F", "pool id \"%2F\": must start with a letter or digit, not '%'");
        assert_id_refused("a%2Fb",
                          "pool id \"a%2Fb\": character '%' at position 1 is not allowed (letters, digits, '.', '_', '-')");
}

static void test_id_escapes_non_ascii_and_control_bytes(void **state) {
        (void) state;
        /* "é" in UTF-8 is c3 a9. */
        assert_id_refused("caf\xc3\xa9",
                          "pool id \"caf\\xc3\\xa9\": character '\\xc3' at position 3 is not allowed (letters, digits, '.', '_', '-')");
        assert_id_refused("a\nb",
                          "pool id \"a\\x0ab\": character '\\x0a' at position 1 is not allowed (letters, digits, '.', '_', '-')");
        assert_id_refused("\x7f",
                          "pool id \"\\x7f\": must start with a letter or digit, not '\\x7f'");
}

static void test_id_escapes_quotes_in_message(void **state) {
        (void) state;
        assert_id_refused("a\"b",
                          "pool id \"a\\x22b\": character '\"' at position 1 is not allowed (letters, digits, '.', '_', '-')");
        assert_id_refused("a'b",
                          "pool id \"a'b\": character '\\x27' at position 1 is not allowed (letters, digits, '.', '_', '-')");
}

static void test_id_message_starts_with_what(void **state) {
        pd_error err;

        (void) state;
        assert_int_equal(pd_id_validate("r/0", "replica id", &err), PD_E_INVALID);
        assert_true(strncmp(err.msg, "replica id \"r/0\"", 16) == 0);
        assert_int_equal(pd_id_validate("", NULL, &err), PD_E_INVALID);
        assert_string_equal(err.msg, "id: empty");
}

static void test_id_refuses_without_error_struct(void **state) {
        (void) state;
        assert_int_equal(pd_id_validate("a/b", "pool id", NULL), PD_E_INVALID);
        assert_int_equal(pd_id_validate(NULL, "pool id", NULL), PD_E_INVALID);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_id_accepts_ordinary_ids),
                cmocka_unit_test(test_id_accepts_exactly_64_characters),
                cmocka_unit_test(test_id_refuses_65_characters),
                cmocka_unit_test(test_id_refuses_null),
                cmocka_unit_test(test_id_refuses_empty),
                cmocka_unit_test(test_id_refuses_leading_punctuation),
                cmocka_unit_test(test_id_refuses_dot_dot),
                cmocka_unit_test(test_id_refuses_slash_naming_position),
                cmocka_unit_test(test_id_refuses_space),
                cmocka_unit_test(test_id_refuses_percent_encoding),
                cmocka_unit_test(test_id_escapes_non_ascii_and_control_bytes),
                cmocka_unit_test(test_id_escapes_quotes_in_message),
                cmocka_unit_test(test_id_message_starts_with_what),
                cmocka_unit_test(test_id_refuses_without_error_struct),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
