/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "pool-api/bind-addr.h"

static void assert_parses(const char *input, int family, uint16_t port, const char *canonical,
                          bool loopback) {
        char buf[PA_BIND_ADDR_STRING_MAX];
        pa_error err = { .msg = "" };
        pa_bind_addr a;

        assert_int_equal(pa_bind_addr_parse(input, &a, &err), 0);
        assert_int_equal(a.sa.ss_family, family);
        assert_int_equal(pa_bind_addr_port(&a), port);
        assert_string_equal(pa_bind_addr_to_string(&a, buf, sizeof(buf)), canonical);
        assert_int_equal(pa_bind_addr_is_loopback(&a), loopback);
}

/* Refused with -EINVAL, a message containing `needle`, and ret untouched. */
static void assert_refused(const char *input, const char *needle) {
        pa_error err = { .msg = "" };
        pa_bind_addr a, before;

        memset(&a, 0xa5, sizeof(a));
        before = a;
        assert_int_equal(pa_bind_addr_parse(input, &a, &err), -EINVAL);
        assert_int_equal(err.error, -EINVAL);
        if (!strstr(err.msg, needle))
                fail_msg("'%s': message \"%s\" does not contain \"%s\"", input, err.msg, needle);
        assert_memory_equal(&a, &before, sizeof(a));
}

static void test_valid_ipv4(void **state) {
        (void) state;
        assert_parses("127.0.0.1:9200", AF_INET, 9200, "127.0.0.1:9200", true);
        assert_parses("127.0.0.1:0", AF_INET, 0, "127.0.0.1:0", true);
        assert_parses("127.1.2.3:65535", AF_INET, 65535, "127.1.2.3:65535", true);
        assert_parses("127.0.0.1:1", AF_INET, 1, "127.0.0.1:1", true);
        /* Valid syntax, but not loopback: pa_server_new() refuses these. */
        assert_parses("0.0.0.0:9200", AF_INET, 9200, "0.0.0.0:9200", false);
        assert_parses("10.0.0.1:80", AF_INET, 80, "10.0.0.1:80", false);
        assert_parses("128.0.0.1:80", AF_INET, 80, "128.0.0.1:80", false);
}

static void test_valid_ipv6(void **state) {
        (void) state;
        assert_parses("[::1]:9200", AF_INET6, 9200, "[::1]:9200", true);
        assert_parses("[0:0:0:0:0:0:0:1]:0", AF_INET6, 0, "[::1]:0", true);
        assert_parses("[::ffff:127.0.0.1]:9200", AF_INET6, 9200, "[::ffff:127.0.0.1]:9200", true);
        assert_parses("[::]:9200", AF_INET6, 9200, "[::]:9200", false);
        assert_parses("[::ffff:10.0.0.1]:1", AF_INET6, 1, "[::ffff:10.0.0.1]:1", false);
        assert_parses("[2001:db8::1]:443", AF_INET6, 443, "[2001:db8::1]:443", false);
}

static void test_missing_parts(void **state) {
        (void) state;
        assert_refused("", "empty");
        assert_refused(NULL, "empty");
        assert_refused("127.0.0.1", "has no port");
        assert_refused("127.0.0.1:", "has no port");
        assert_refused(":9200", "has no host");
        assert_refused("[]:9200", "has no host");
        assert_refused("[::1]", "no ':PORT' after ']'");
        assert_refused("[::1]9200", "no ':PORT' after ']'");
        assert_refused("[::1:9200", "no ']'");
}

static void test_bad_ports(void **state) {
        (void) state;
        assert_refused("127.0.0.1:65536", "out of range");
        assert_refused("127.0.0.1:99999999999999999999", "out of range");
        assert_refused("127.0.0.1:-1", "not a decimal number");
        assert_refused("127.0.0.1:+80", "not a decimal number");
        assert_refused("127.0.0.1:80x", "not a decimal number");
        assert_refused("127.0.0.1: 80", "not a decimal number");
        assert_refused("127.0.0.1:0x50", "not a decimal number");
        assert_refused("127.0.0.1:080", "leading zero");
        assert_refused("127.0.0.1:00", "leading zero");
}

static void test_bad_hosts(void **state) {
        (void) state;
        assert_refused("localhost:9200", "not a numeric IPv4 address");
        assert_refused("256.0.0.1:80", "not a numeric IPv4 address");
        assert_refused("127.1:80", "not a numeric IPv4 address");
        assert_refused("0177.0.0.1:80", "not a numeric IPv4 address");
        assert_refused(" 127.0.0.1:80", "not a numeric IPv4 address");
        assert_refused("::1:9200", "must be in brackets");
        assert_refused("::1", "must be in brackets");
        assert_refused("[127.0.0.1]:80", "not an IPv6 address");
        assert_refused("[fe80::1%eth0]:80", "not an IPv6 address");
        assert_refused("[::1]]:80", "no ':PORT' after ']'");
}

static void test_message_names_input(void **state) {
        pa_error err = { .msg = "" };
        pa_bind_addr a;

        (void) state;
        assert_int_equal(pa_bind_addr_parse("localhost:9200", &a, &err), -EINVAL);
        assert_string_equal(err.msg,
                            "bind address 'localhost:9200': host 'localhost' is not a numeric IPv4 "
                            "address (names are not resolved; use 127.0.0.1 or [::1])");
        /* A NULL error struct is allowed. */
        assert_int_equal(pa_bind_addr_parse("nope", &a, NULL), -EINVAL);
}

static void test_from_sockaddr(void **state) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(4242),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct sockaddr_un_like { sa_family_t family; char path[8]; } other = { .family = AF_UNIX };
        char buf[PA_BIND_ADDR_STRING_MAX];
        pa_bind_addr a;

        (void) state;
        assert_int_equal(pa_bind_addr_from_sockaddr((struct sockaddr *) &sin, sizeof(sin), &a), 0);
        assert_string_equal(pa_bind_addr_to_string(&a, buf, sizeof(buf)), "127.0.0.1:4242");
        assert_int_equal(pa_bind_addr_from_sockaddr((struct sockaddr *) &sin, 4, &a), -EAFNOSUPPORT);
        assert_int_equal(pa_bind_addr_from_sockaddr((struct sockaddr *) &other, sizeof(other), &a),
                         -EAFNOSUPPORT);
        /* Too small a buffer gives "?", never a cut address. */
        assert_string_equal(pa_bind_addr_to_string(&a, buf, 5), "?");
        assert_false(pa_bind_addr_is_loopback(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_ipv4),
                cmocka_unit_test(test_valid_ipv6),
                cmocka_unit_test(test_missing_parts),
                cmocka_unit_test(test_bad_ports),
                cmocka_unit_test(test_bad_hosts),
                cmocka_unit_test(test_message_names_input),
                cmocka_unit_test(test_from_sockaddr),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
