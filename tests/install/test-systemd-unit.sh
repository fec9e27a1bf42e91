#!/bin/sh
# systemd-analyze verify on the unit meson configured, its ExecStart
# pointed at the built binary, its man: links at the built man pages.
# Any output on stderr fails the test, not only the exit status: verify
# reports most problems as warnings.
#
# usage: test-systemd-unit.sh UNIT BINARY [MAN_PAGE...]
set -eu

unit=$(realpath "$1")
binary=$(realpath "$2")
shift 2

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

sed -e "s|^ExecStart=[^ ]*pool-managerd |ExecStart=$binary |" "$unit" >"$root/pool-managerd.service"
grep -q "^ExecStart=$binary " "$root/pool-managerd.service" || {
        echo "ExecStart was not pointed at $binary" >&2
        exit 1
}

man=--man=no
if [ $# -gt 0 ]; then
        man=--man=yes
        for page; do
                section=${page##*.}
                mkdir -p "$root/man/man$section"
                cp "$page" "$root/man/man$section/"
        done
        export MANPATH="$root/man"
fi

# verify reads the unit's directory too: nothing else lies there.
rc=0
(cd "$root" && systemd-analyze verify "$man" "$root/pool-managerd.service") \
        >"$root/out" 2>"$root/err" || rc=$?
cat "$root/out"
if [ "$rc" -ne 0 ] || [ -s "$root/err" ]; then
        cat "$root/err" >&2
        echo "systemd-analyze verify: exit status $rc, $(wc -l <"$root/err") lines on stderr" >&2
        exit 1
fi

# What the daemon and its engines rely on (docs/systemd.md).
for want in Type=notify NotifyAccess=main WatchdogSec=30s Restart=on-failure \
        'ExecReload=/bin/kill -HUP $MAINPID' StateDirectory=pool-managerd \
        RuntimeDirectory=pool-managerd KillMode=process OOMPolicy=continue \
        User=pool-managerd Group=pool-managerd; do
        grep -qxF "$want" "$root/pool-managerd.service" || {
                echo "the unit lacks $want" >&2
                exit 1
        }
done
# /dev/nvidia* must stay reachable.
for banned in PrivateDevices DevicePolicy DeviceAllow ProtectClock MemoryDenyWriteExecute; do
        if grep -q "^$banned=" "$root/pool-managerd.service"; then
                echo "the unit sets $banned=, which breaks engines (docs/systemd.md)" >&2
                exit 1
        fi
done
echo "ok: systemd-analyze verify is silent"
