#!/bin/sh
# Installs the project into a scratch root, then builds against the
# installed pool-domain, through pkg-config alone: the examples of
# docs/examples (lifecycle-crash.c, classify-log.c) as C and as C++, a C++
# program using the umbrella header, and every installed header alone in
# C++ -- so the headers' extern "C" and version.h hold for outside users.
#
# usage: test-examples.sh BUILD_DIR SOURCE_ROOT [EXTRA_FLAGS...]
set -eu

build_dir=$1
src=$2
shift 2

. "$(dirname "$0")/install-root.sh"
# (with the sysroot already in front)
incdir=$(pkg-config --variable=includedir pool-domain)
CC=${CC:-cc}
CXX=${CXX:-g++}

fail() {
        echo "$*" >&2
        exit 1
}

# version.h was filled in.
grep -q '@' "$incdir/pool-domain/version.h" && fail "placeholders left in version.h"

# Every header alone, as C++ (and the umbrella header names them all).
for h in "$incdir"/pool-domain/*.h; do
        name=pool-domain/$(basename "$h")
        # shellcheck disable=SC2086
        echo "#include <$name>" | $CXX -std=c++17 -Wall -Wextra -Werror -pedantic $cflags \
                -x c++ -fsyntax-only - || fail "$name does not compile as C++"
        grep -q 'extern "C"' "$h" || [ "$name" = pool-domain/pool-domain.h ] ||
                fail "$name has no extern \"C\" guard"
        [ "$name" = pool-domain/pool-domain.h ] ||
                grep -q "include \"$name\"" "$incdir/pool-domain/pool-domain.h" ||
                fail "the umbrella header does not include $name"
done

# shellcheck disable=SC2086 # word splitting of the flag lists is intended
$CXX -std=c++17 -Wall -Wextra -Werror "$@" $cflags -x c++ "$src/tests/install/example-cxx.cpp" \
        -x none $libs -o "$root/example-cxx"
out=$("$root/example-cxx")
echo "$out"
echo "$out" | grep -q "from C++: cuda_error, no free slot: every slot is leased, 2000 ms$" ||
        fail "the C++ program printed: $out"

for lang in c c++; do
        if [ "$lang" = c ]; then
                compile="$CC -std=c11"
        else
                compile="$CXX -std=c++17"
        fi
        for ex in lifecycle-crash classify-log; do
                # shellcheck disable=SC2086
                $compile -Wall -Wextra -Werror "$@" $cflags -x "$lang" "$src/docs/examples/$ex.c" \
                        -x none $libs -o "$root/$ex" || fail "$ex does not build as $lang"
        done

        out=$("$root/lifecycle-crash") || fail "lifecycle-crash ($lang) failed: $out"
        echo "$out"
        # The documented backoff: 1000 ms after the first crash, then ready again.
        echo "$out" | grep -q '^t=3500  exited         -> backoff .*timer_arm(restart@4500)$' ||
                fail "lifecycle-crash ($lang): no restart at 4500"
        echo "$out" | grep -qx 'crash_count=1 backoff_ms=1000 last_error="killed by SIGSEGV"' ||
                fail "lifecycle-crash ($lang): the crash"
        echo "$out" | grep -qx 'restart_count=1 state=ready' || fail "lifecycle-crash ($lang): the restart"
        echo "$out" | grep -q 'refused: event not allowed in the current state$' ||
                fail "lifecycle-crash ($lang): pd_strerror"

        out=$("$root/classify-log" <"$src/tests/install/engine.log") || fail "classify-log ($lang) failed"
        echo "$out"
        echo "$out" | grep -qx 'vram_oom     CUDA error: out of memory' || fail "classify-log ($lang): the OOM line"
        echo "$out" | grep -qx 'evidence: vram_oom' || fail "classify-log ($lang): the evidence"
        echo "$out" | grep -qx 'last_error: CUDA error: out of memory' || fail "classify-log ($lang): the cause"
        echo "$out" | grep -q 'ggml_cuda_init' && fail "classify-log ($lang): an info line classified"
done
echo "ok: the examples and C++ built against the installed pool-domain"
