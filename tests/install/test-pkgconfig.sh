#!/bin/sh
# Installs the project into a scratch root, then builds the example in
# docs/examples against pool-domain through pkg-config alone -- the way a
# C program outside this tree links it.
#
# usage: test-pkgconfig.sh BUILD_DIR EXAMPLE_SOURCE [EXTRA_CFLAGS...]
set -eu

build_dir=$1
example=$2
shift 2

. "$(dirname "$0")/install-root.sh"
echo "pkg-config: $cflags $libs"

# shellcheck disable=SC2086 # word splitting of the flag lists is intended
${CC:-cc} -std=c11 -Wall -Wextra -Werror "$@" $cflags "$example" $libs -o "$root/example"

out=$("$root/example" 8)
echo "$out"
# The documented backoff: 1000, 2000, 4000 ... capped at 60000 from the 7th crash;
# CUDA errors double the base.
echo "$out" | grep -qx 'crash 1: 1000 ms (cuda_error: 2000 ms)'
echo "$out" | grep -qx 'crash 4: 8000 ms (cuda_error: 16000 ms)'
echo "$out" | grep -qx 'crash 7: 60000 ms (cuda_error: 60000 ms)'
echo "$out" | grep -qx 'crash 8: 60000 ms (cuda_error: 60000 ms)'

# An invalid policy is refused with the field named.
if "$root/example" 3 -5 >/dev/null 2>"$root/err"; then
        echo "a negative initial delay was accepted" >&2
        exit 1
fi
grep -q 'initial_ms' "$root/err"
echo "ok: example built against the installed pool-domain"
