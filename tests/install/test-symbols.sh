#!/bin/sh
# Every symbol the installed pool-domain library defines for its users
# carries the pd_ prefix, so linking it next to other code collides with
# nothing. Sanitizer builds add their own instrumentation symbols.
#   test-symbols.sh LIBRARY
set -eu
lib=$1
command -v nm >/dev/null || { echo "nm is missing (binutils)" >&2; exit 1; }
all=$(nm --defined-only --extern-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u)
[ -n "$all" ] || { echo "$lib defines no symbols" >&2; exit 1; }
bad=$(printf '%s\n' "$all" | grep -v -e '^pd_' -e '^__odr_asan' -e '^__asan' -e '^__ubsan' || true)
if [ -n "$bad" ]; then
        echo "symbols of $lib without the pd_ prefix:" >&2
        printf '  %s\n' $bad >&2
        exit 1
fi
echo "$(printf '%s\n' "$all" | grep -c '^pd_') symbols, all pd_"
