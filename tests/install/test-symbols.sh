#!/bin/sh
# Every symbol a library defines for others carries its layer's prefix
# (pd_ for the installed pool-domain, ps_ for pool-services, pa_ for
# pool-api), so linking them next to other code collides with nothing.
# Sanitizer builds add their own instrumentation symbols.
#   test-symbols.sh LIBRARY PREFIX
set -eu
lib=$1
prefix=$2
command -v nm >/dev/null || { echo "nm is missing (binutils)" >&2; exit 1; }
all=$(nm --defined-only --extern-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u)
[ -n "$all" ] || { echo "$lib defines no symbols" >&2; exit 1; }
bad=$(printf '%s\n' "$all" | grep -v -e "^$prefix" -e '^__odr_asan' -e '^__asan' -e '^__ubsan' || true)
if [ -n "$bad" ]; then
        echo "symbols of $lib without the $prefix prefix:" >&2
        printf '  %s\n' $bad >&2
        exit 1
fi
echo "$(printf '%s\n' "$all" | grep -c "^$prefix") symbols, all $prefix"
