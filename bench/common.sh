# Shared by the shell benchmarks: a release build, a scratch directory,
# and starting and stopping the daemon. Sourced, not run.

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
PY=/usr/bin/python3

bench_build() {
        [ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
        meson compile -C build-bench >/dev/null
        daemon=$root/build-bench/pool-managerd/pool-managerd
        fake_engine=$root/build-bench/tests/helpers/fake-engine
}

need() {   # need PROGRAM DEBIAN-PACKAGE
        command -v "$1" >/dev/null 2>&1 && return 0
        echo "$1 not found: apt-get install -y $2 (bench/DEPS lists what the benchmarks need)" >&2
        exit 1
}

tmp=$(mktemp -d /tmp/pm-bench-XXXXXX)
daemon_pid=
cleanup() {
        [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
        [ -f "$tmp/nginx.pid" ] && kill -QUIT "$(cat "$tmp/nginx.pid")" 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# daemon_start CONFIG BIND LOG: runs the daemon in the background and
# waits (a blocking read of its log, no polling) until every configured
# preload has been answered, or it has started listening when there are
# none. Sets daemon_pid and ready_ms (milliseconds from exec to then), and
# api_socket: changes go through it (curl --unix-socket "$api_socket"
# http://localhost/...), as the TCP API is read-only without a token
# (LLORCH_API_TOKEN in the environment gives the daemon one).
daemon_start() {
        config=$1 bind=$2 log=$3 pools=$4
        api_socket=$tmp/runtime/api.sock
        : >"$log"
        t0=$(now_ms)
        # shellcheck disable=SC2086 # DAEMON_ARGS: extra flags, one word each
        "$daemon" --config "$config" --bind "$bind" --runtime-dir "$tmp/runtime" ${DAEMON_ARGS:-} \
                2>"$log" &
        daemon_pid=$!
        if [ "$pools" -eq 0 ]; then
                want='"msg":"listening"'
        else
                want='"msg":"serve-time preloads finished"'
        fi
        rm -f "$tmp/log.fifo"
        mkfifo "$tmp/log.fifo"
        tail -n +1 -f --pid="$daemon_pid" "$log" >"$tmp/log.fifo" &
        tail_pid=$!
        found=0
        timeout 900 grep -q -m1 -F "$want" <"$tmp/log.fifo" || found=1
        kill "$tail_pid" 2>/dev/null || true
        wait "$tail_pid" 2>/dev/null || true
        if [ "$found" -ne 0 ]; then
                echo "the daemon did not get ready; its log:" >&2
                tail -n 20 "$log" >&2
                exit 1
        fi
        ready_ms=$(( $(now_ms) - t0 ))
        if grep -q '"msg":"configured pool not ready' "$log"; then
                echo "a configured pool failed to start; its log:" >&2
                grep -m3 '"level":"warn"\|"level":"error"' "$log" >&2
                exit 1
        fi
}

daemon_stop() {
        kill -TERM "$daemon_pid"
        wait "$daemon_pid" || true
        daemon_pid=
}
