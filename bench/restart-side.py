#!/usr/bin/python3
"""Crash-to-replacement latency of pool-managerd, supervisord and s6, side
by side (bench/restart-side runs it; docs/benchmarks.md has the method).

Each supervises bench/stamp, which appends "PID MONO_NS" to a file the
moment it starts. One round: wait for the engine to settle, read
CLOCK_MONOTONIC, kill -9 the engine, wait for the next stamp; the figure is
stamp minus kill time, so the polling of the file adds nothing to it.

usage: restart-side.py DAEMON STAMP TMPDIR [ROUNDS] [SUPERVISORS...]
environment: SETTLE (seconds between a replacement and the next kill, 1.1)
"""
import json, os, signal, socket, subprocess, sys, time

daemon, stamp, tmp = sys.argv[1:4]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 50
which = sys.argv[5:] or ["pool-managerd", "supervisord", "s6"]
# Between a replacement and the next kill: above the 1 s under which
# supervisors throttle a service that dies young.
SETTLE = float(os.environ.get("SETTLE", "1.1"))


def stamps(path):
    try:
        with open(path) as f:
            return [tuple(int(x) for x in l.split()) for l in f if l.endswith("\n")]
    except FileNotFoundError:
        return []


def wait_stamp(path, count, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = stamps(path)
        if len(s) > count:
            return s[count]
        time.sleep(0.0002)
    raise SystemExit("no new stamp in %s after %.0f s" % (path, timeout))


def measure(path, n):
    lat = []
    wait_stamp(path, 0)
    time.sleep(0.5)
    for _ in range(n):
        s = stamps(path)
        pid = s[-1][0]
        t0 = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        _, t1 = wait_stamp(path, len(s))
        lat.append((t1 - t0) / 1e6)
        time.sleep(SETTLE)
    return lat


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pool_managerd(path, n):
    d = os.path.join(tmp, "pmd")
    os.makedirs(d)
    port = free_port()
    cfg = {
        "gpu": {"backend": "none", "require": False},
        "defaults": {"health": {"interval_ms": 1000},
                     "backoff": {"initial_ms": 0, "jitter": 0},
                     "breaker": {"threshold": 1000000},
                     "storm": {"limit": 64, "window_ms": 1, "burst_window_ms": 1,
                               "warn_above": 63}},
        "pools": [{"id": "stamp", "engine": "llamacpp", "engine_version": "bench",
                   "binary": stamp, "args": ["--port", "{port}"], "port": port,
                   "device_mask": "none", "slots": 1, "env": {"STAMP_FILE": path}}],
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(d, "daemon.log"), "w") as log:
        p = subprocess.Popen([daemon, "--config", os.path.join(d, "config.json"),
                              "--bind", "127.0.0.1:%d" % free_port(),
                              "--runtime-dir", os.path.join(d, "runtime")], stderr=log)
    try:
        return measure(path, n)
    finally:
        p.terminate()
        p.wait()


def run_supervisord(path, n):
    d = os.path.join(tmp, "supervisord")
    os.makedirs(d)
    conf = os.path.join(d, "supervisord.conf")
    with open(conf, "w") as f:
        f.write("[supervisord]\nnodaemon=true\nlogfile=%s/supervisord.log\npidfile=%s/pid\n"
                "[program:stamp]\ncommand=%s\nenvironment=STAMP_FILE=\"%s\"\n"
                "autorestart=true\nstartsecs=0\nstartretries=1000000\n"
                "stdout_logfile=NONE\nstderr_logfile=NONE\n" % (d, d, stamp, path))
    p = subprocess.Popen(["supervisord", "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        return measure(path, n)
    finally:
        p.terminate()
        p.wait()


def run_s6(path, n):
    d = os.path.join(tmp, "s6")
    svc = os.path.join(d, "scan", "stamp")
    os.makedirs(svc)
    run = os.path.join(svc, "run")
    with open(run, "w") as f:
        f.write("#!/usr/bin/execlineb -P\nexport STAMP_FILE %s\n%s\n" % (path, stamp))
    os.chmod(run, 0o755)
    p = subprocess.Popen(["s6-svscan", os.path.join(d, "scan")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        return measure(path, n)
    finally:
        subprocess.run(["s6-svc", "-dx", svc], check=False)
        p.terminate()
        p.wait()
        last = stamps(path)
        if last:   # the last engine, by its PID, should s6 have left it
            try:
                os.kill(last[-1][0], signal.SIGKILL)
            except ProcessLookupError:
                pass


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


RUN = {"pool-managerd": run_pool_managerd, "supervisord": run_supervisord, "s6": run_s6}
for name in which:
    path = os.path.join(tmp, name + ".stamps")
    lat = RUN[name](path, rounds)
    print("%-14s n=%-4d p50=%.3f ms  p90=%.3f ms  p99=%.3f ms  max=%.3f ms"
          % (name, len(lat), pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), max(lat)),
          flush=True)
