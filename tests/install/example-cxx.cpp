// SPDX-License-Identifier: MIT
// pool-domain from C++: the umbrella header, linked against the installed
// library. Without extern "C" in the headers the calls below would look
// for C++-mangled names and the link would fail.
#include <pool-domain/pool-domain.h>

#include <cstdio>
#include <cstring>
#include <string>

int main() {
        pd_policy policy;
        pd_error err;

        pd_policy_init(&policy);
        policy.backoff.jitter = 0;
        if (pd_policy_validate(&policy, &err) != 0) {
                std::fprintf(stderr, "%s\n", err.msg);
                return 1;
        }
        std::string version = pd_version();
        if (version != PD_VERSION_STRING)
                return 1;
        pd_crash_class cls;
        const char line[] = "CUDA error: an illegal memory access was encountered";
        if (!pd_crash_scan_line(line, std::strlen(line), &cls))
                return 1;
        std::printf("pool-domain %s (%d.%d.%d) from C++: %s, %s, %lld ms\n", version.c_str(),
                    PD_VERSION_MAJOR, PD_VERSION_MINOR, PD_VERSION_PATCH,
                    pd_crash_class_to_string(cls), pd_strerror(PD_E_NO_SLOT),
                    static_cast<long long>(pd_backoff_delay(&policy.backoff, 2, PD_CRASH_EXIT_CODE, nullptr)));
        return 0;
}
