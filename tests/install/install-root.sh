# Sourced by the install tests that build against pool-domain as a program
# outside this tree would: installs the build into a scratch root (removed
# on exit) and points pkg-config at it. Sets root, cflags and libs.
#   . install-root.sh BUILD_DIR (as $build_dir)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

meson install -C "$build_dir" --destdir "$root" --quiet >"$root/install.log" 2>&1 || {
        cat "$root/install.log" >&2
        echo "meson install failed" >&2
        exit 1
}
pc=$(find "$root" -name pool-domain.pc | head -n 1)
[ -n "$pc" ] || { echo "pool-domain.pc was not installed" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$root
cflags=$(pkg-config --cflags pool-domain)
libs=$(pkg-config --libs --static pool-domain)
