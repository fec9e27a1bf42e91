/* SPDX-License-Identifier: MIT */
/*
 * classify-log: reads engine log lines on stdin, prints the crash class of
 * each line that names one (CUDA errors, driver errors, out of memory),
 * and at the end the line pool-managerd would show as the engine's
 * last_error, without its prefix.
 *
 * Builds against an installed pool-domain (C or C++):
 *
 *     cc classify-log.c $(pkg-config --cflags --libs pool-domain) -o classify-log
 *     ./classify-log < engine.log
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pool-domain/pool-domain.h>

#define LINES_MAX 64

int main(void) {
        static char text[LINES_MAX][512];
        pd_log_line lines[LINES_MAX];
        pd_crash_class worst = PD_CRASH_CLASS_MAX;
        size_t n = 0;
        char cause[256];

        while (n < LINES_MAX && fgets(text[n], sizeof(text[n]), stdin)) {
                size_t len = strcspn(text[n], "\n");
                size_t body_len;
                bool error;
                const char *body = pd_log_line_body(text[n], len, &body_len, &error);
                pd_crash_class cls;

                if (pd_crash_scan_line(text[n], len, &cls)) {
                        printf("%-12s %.*s\n", pd_crash_class_to_string(cls), (int) body_len, body);
                        worst = pd_crash_evidence_merge(worst, cls);
                } else if (error) {
                        printf("%-12s %.*s\n", "error", (int) body_len, body);
                }
                lines[n].text = text[n];
                lines[n].len = len;
                n++;
        }
        if (pd_log_cause_pick(lines, n, cause, sizeof(cause)) < 0) {
                fprintf(stderr, "classify-log: no line to explain anything\n");
                return 1;
        }
        printf("evidence: %s\n", worst == PD_CRASH_CLASS_MAX ? "none" : pd_crash_class_to_string(worst));
        printf("last_error: %s\n", cause);
        return 0;
}
