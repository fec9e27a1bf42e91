#!/bin/sh
# meson install into a scratch root (DESTDIR): the daemon, the CLI and its
# completion, the unit and its account, the example configuration, the man
# pages, and pool-domain with its headers and .pc (docs/install.md).
#
# usage: test-install-tree.sh BUILD_DIR
set -eu

build_dir=$1
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

meson install -C "$build_dir" --destdir "$root" --quiet >"$root/install.log" 2>&1 || {
        cat "$root/install.log" >&2
        echo "meson install failed" >&2
        exit 1
}
option() {
        meson introspect "$build_dir" --buildoptions | /usr/bin/python3 -c \
                'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]][0])' "$1"
}
prefix=$(option prefix)
sysconfdir=$(option sysconfdir)
case $sysconfdir in /*) ;; *) sysconfdir=$prefix/$sysconfdir ;; esac
top=$root$prefix
(cd "$root" && find . -type f | sort)

fail() {
        echo "$*" >&2
        exit 1
}
one() { # the single file named $1 under the root, or fail
        found=$(find "$root" -name "$1" -type f)
        [ -n "$found" ] || fail "$1 was not installed"
        [ "$(echo "$found" | wc -l)" -eq 1 ] || fail "$1 installed twice: $found"
        echo "$found"
}

[ -x "$top/sbin/pool-managerd" ] || fail "no executable $prefix/sbin/pool-managerd"
"$top/sbin/pool-managerd" --version >/dev/null || fail "the installed daemon does not run"
[ -x "$top/bin/pool-managerctl" ] || fail "no executable $prefix/bin/pool-managerctl"
"$top/bin/pool-managerctl" --version >/dev/null || fail "the installed CLI does not run"
completion=$(find "$root" -path "*bash-completion/completions/pool-managerctl" | head -1)
[ -n "$completion" ] || fail "no bash completion for pool-managerctl"

unit=$(one pool-managerd.service)
case $unit in
*/lib/systemd/system/pool-managerd.service) ;;
*) fail "the unit is not in a systemd unit directory: $unit" ;;
esac
grep -qxF "ExecStart=$prefix/sbin/pool-managerd --config $sysconfdir/pool-managerd/pool-managerd.json \$POOL_MANAGERD_OPTS" "$unit" ||
        fail "the unit's ExecStart is not the installed binary: $(grep ExecStart= "$unit")"
grep -q '@[a-z]*@' "$unit" && fail "a placeholder left in the unit: $(grep '@[a-z]*@' "$unit")"

sysusers=$(one pool-managerd.conf)
case $sysusers in */sysusers.d/pool-managerd.conf) ;; *) fail "sysusers.d file at $sysusers" ;; esac

example=$top/share/doc/pool-managerd/pool-managerd.json.example
[ -f "$example" ] || fail "no example configuration under share/doc/pool-managerd"
/usr/bin/python3 -m json.tool "$example" >/dev/null || fail "the example is not JSON"

for page in man8/pool-managerd.8 man5/pool-managerd.json.5 man1/pool-managerctl.1; do
        [ -s "$top/share/man/$page" ] || fail "man page $page not installed"
        grep -q '^\.TH' "$top/share/man/$page" || fail "$page is not a man page"
done

pc=$(one pool-domain.pc)
lib=$(one libpool-domain.a)
[ "$(dirname "$(dirname "$pc")")" = "$(dirname "$lib")" ] || fail "pool-domain.pc not beside the library"
[ -f "$top/include/pool-domain/lifecycle.h" ] || fail "pool-domain headers not installed"

# Nothing of the other layers or the tests leaks into the tree.
if find "$root" -name '*pool-services*' -o -name '*pool-api*' -o -name 'fake-*' | grep -q .; then
        fail "internal files installed: $(find "$root" -name '*pool-services*' -o -name '*pool-api*' -o -name 'fake-*')"
fi
echo "ok: the installed tree"
