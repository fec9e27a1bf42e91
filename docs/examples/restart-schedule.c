/* SPDX-License-Identifier: MIT */
/*
 * restart-schedule: prints the restart delays a policy gives a crash loop.
 *
 * Builds against an installed pool-domain:
 *
 *     cc restart-schedule.c $(pkg-config --cflags --libs pool-domain) \
 *        -o restart-schedule
 *     ./restart-schedule [crashes] [initial_ms] [max_ms]
 */
#include <stdio.h>
#include <stdlib.h>

#include <pool-domain/backoff.h>
#include <pool-domain/policy.h>

int main(int argc, char **argv) {
        pd_policy policy;
        pd_error err;
        int crashes = argc > 1 ? atoi(argv[1]) : 10;

        pd_policy_init(&policy);
        policy.backoff.jitter = 0;
        if (argc > 2)
                policy.backoff.initial_ms = atoll(argv[2]);
        if (argc > 3)
                policy.backoff.max_ms = atoll(argv[3]);
        if (pd_policy_validate(&policy, &err) != 0) {
                fprintf(stderr, "restart-schedule: %s\n", err.msg);
                return 2;
        }
        for (int n = 1; n <= crashes; n++)
                printf("crash %d: %lld ms (cuda_error: %lld ms)\n", n,
                       (long long) pd_backoff_delay(&policy.backoff, (unsigned) n,
                                                    PD_CRASH_EXIT_CODE, NULL),
                       (long long) pd_backoff_delay(&policy.backoff, (unsigned) n,
                                                    PD_CRASH_CUDA_ERROR, NULL));
        return 0;
}
