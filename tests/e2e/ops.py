#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of the operations that change a pool under load --
drain, reload (drain-first and surge, rollback, drain timeout, no-op,
sha256) and the configuration reload on SIGHUP -- and a concurrency test of
leases over HTTP while a drain and a reload run.

    ops.py DAEMON VERSION FAKE_ENGINE SCENARIO

Built on api.py's Node (a daemon on its own config with the fake engine).
Waits are event-based (log lines, HTTP answers) or polls of the API where
the API is what is under test; every bound is generous, and no assertion
depends on how fast the machine is.
"""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import e2e  # noqa: E402
from api import Node, config_pool, pid_alive  # noqa: E402
from e2e import Failure, check, check_error, json_body  # noqa: E402

WAIT = 60.0


# --- helpers -----------------------------------------------------------------

def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n):
    """A base port with n consecutive ports nothing uses now: replica i
    listens on base + i and a surge engine on base + replicas + i. Below
    the kernel's ephemeral range, so that the many client connections of a
    test cannot take one of them as their local port before the engine
    binds it."""
    low, high = ephemeral_range()
    if low - n > 2048:
        lo, hi = max(1024, low - 12000), low - n
    else:
        lo, hi = high + 1, 65535 - n
    for _ in range(500):
        base = random.randint(lo, hi)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()
    raise Failure("no %d consecutive free ports" % n)


def wait_until(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise Failure("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)


METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(n):
    """/metrics as {(name, frozenset(labels)): value}."""
    status, _, data = n.request("GET", "/metrics")
    check(status == 200, "/metrics answered %d" % status)
    out = {}
    for line in data.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        check(m is not None, "unparsable metrics line %r" % line)
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(values, name, **labels):
    """One series' value; 0 when the series does not exist."""
    return values.get((name, frozenset(labels.items())), 0.0)


def lease_counts(n, pool_id):
    values = metrics(n)
    return {kind: int(metric(values, "pool_managerd_leases_%s_total" % kind, pool_id=pool_id))
            for kind in ("granted", "released", "expired", "dropped")}


def copy_model(n, name):
    path = os.path.join(n.dir, name)
    shutil.copy(n.model, path)
    return path


def write_model(n, name, payload):
    path = os.path.join(n.dir, name)
    with open(path, "wb") as f:
        f.write(b"GGUF" + payload)
    return path


def replica_view(snap):
    return [(r["replica_id"], r["device_mask"]) for r in snap["replicas"]]


def spawned(n, pool_id, timeout=WAIT, **fields):
    """The next "engine spawned" line of the pool (with these fields)."""
    return n.daemon.wait_for(
        lambda o: o.get("msg") == "engine spawned" and o.get("pool_id") == pool_id
        and all(o.get(k) == v for k, v in fields.items()),
        "an engine of %s spawned with %r" % (pool_id, fields), timeout)


class Poller(threading.Thread):
    """GET /v2/pools/{id} in a loop until stopped; keeps every snapshot and
    every non-200 answer."""

    def __init__(self, n, pool_id):
        super().__init__(daemon=True)
        self.n, self.pool_id = n, pool_id
        self.snaps, self.bad = [], []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                status, _, data = self.n.request("GET", "/v2/pools/%s" % self.pool_id)
            except OSError as e:
                self.bad.append(("error", repr(e)))
                return
            if status != 200:
                self.bad.append((status, data[:200]))
                continue
            self.snaps.append(json.loads(data))

    def stop(self):
        self.halt.set()
        self.join(WAIT)
        check(not self.is_alive(), "the poller did not stop")


def check_slots(snap):
    """Slot arithmetic of one snapshot: nothing negative, free slots within
    the total. Leases held are within the slots of the engines that hold
    them: during a surge the old engine keeps its own leases beside the new
    one's, so a replica that is reloading may hold up to twice its slots."""
    where = "%s: %r" % (snap["pool_id"], {k: snap[k] for k in
                                           ("state", "slots_total", "slots_free", "active_leases")})
    check(0 <= snap["slots_free"] <= snap["slots_total"], "pool slots_free out of range " + where)
    check(snap["active_leases"] >= 0, "negative active_leases " + where)
    for r in snap["replicas"]:
        rwhere = "%s/%s: %r" % (snap["pool_id"], r["replica_id"], r)
        check(0 <= r["slots_free"] <= r["slots_total"], "replica slots_free out of range " + rwhere)
        retiring = r["retiring_leases"]
        limit = r["slots_total"] * (2 if r["state"] == "reloading" or retiring else 1)
        check(0 <= r["active_leases"] <= limit, "replica active_leases out of range " + rwhere)
        check(0 <= retiring <= min(r["active_leases"], r["slots_total"]),
              "replica retiring_leases out of range " + rwhere)
        if r["ready"] and r["state"] != "reloading":
            check(r["slots_free"] + r["active_leases"] - retiring == r["slots_total"],
                  "free + leased != total " + rwhere)


# --- scenarios -----------------------------------------------------------------

def scenario_drain_force_stop():
    """Leases that never end: at the deadline the engine is force-stopped,
    the leases are dropped and counted, files are removed."""
    with Node() as n:
        got = n.preload("fs", n.prepared(slots=3, flags=["--parallel", "3"]))
        leases = [json_body(*n.request("POST", "/v2/pools/fs/leases"), 201) for _ in range(2)]
        pid_file = os.path.join(n.dir, "run", "fs_r0.pid")
        check(os.path.exists(pid_file) and os.path.exists(got["handoff_path"]),
              "no PID or handoff file while running")
        info = json_body(*n.request("POST", "/v2/pools/fs/drain", {"deadline_ms": 800}), 202)
        check(info["active_leases"] == 2 and info["deadline_at"] - info["started_at"] == 800, repr(info))
        # Held leases may still be renewed while the drain waits.
        json_body(*n.request("POST", "/v2/pools/fs/leases/%s/renew" % leases[0]["lease_id"]), 200)
        done = n.daemon.wait_for(lambda o: o.get("pool_id") == "fs" and o.get("msg") == "drain finished",
                                 "the drain outcome", WAIT)
        check(done["force_stopped"] in (True, "true") and int(done["leases_left"]) == 2, repr(done))
        snap = n.wait_pool("fs", lambda s, b: not b["live"] and not b["draining"], "stopped")
        check(not snap["ready"] and snap["active_leases"] == 0 and snap["slots_free"] == 0, repr(snap))
        wait_until(lambda: not pid_alive(got["pid"]), "the engine to be gone")
        check(not os.path.exists(got["handoff_path"]), "handoff left after a forced drain")
        check(not os.path.exists(pid_file), "PID file left after a forced drain")
        # The dropped leases are gone: their holders get a clear 404.
        for lease in leases:
            check_error(*n.request("DELETE", "/v2/pools/fs/leases/%s" % lease["lease_id"]), 404,
                        "LEASE_NOT_FOUND")
        values = metrics(n)
        check(metric(values, "pool_managerd_drains_total", pool_id="fs", outcome="force_stopped") == 1,
              "drains_total{force_stopped} is not 1")
        check(metric(values, "pool_managerd_drains_total", pool_id="fs", outcome="drained") == 0,
              "a forced drain counted as drained")
        check(metric(values, "pool_managerd_leases_dropped_total", pool_id="fs") == 2, "dropped != 2")
        check(metric(values, "pool_managerd_request_duration_seconds_count", pool_id="fs",
                     request="drain") == 1, "drain duration not observed")
        n.stop()


def scenario_reload_rollback():
    """A new engine that never gets healthy is killed and the old spec
    restored: the pool serves the old model, ready, same ids and mask."""
    port = free_ports(4)
    pool = dict(config_pool("rb", port, "-m", "{model_path}", replicas=2, slots=2, mask="0,1"),
                model_path="tiny.gguf")        # Node's model, next to the config
    with Node([pool]) as n:
        before = n.wait_pool("rb", lambda s, b: b["ready"] and all(r["ready"] for r in b["replicas"]),
                             "both replicas ready")
        other = copy_model(n, "other.gguf")
        flags = ["--host", "{host}", "--port", "{port}", "--parallel", "{slots}", "-m", "{model_path}",
                 "--never-ready"]
        err = check_error(*n.request("POST", "/v2/pools/rb/reload",
                                     {"model_path": other, "engine_version": "fake-9", "flags": flags}),
                          500, "RELOAD_FAILED")
        check("health check failed" in err["error"] and "rolled back" in err["error"], err["error"])
        bad = spawned(n, "rb", engine_version="fake-9")
        check(not pid_alive(bad["pid"]), "the failed engine %d still runs" % bad["pid"])
        snap = n.wait_pool("rb", lambda s, b: b["ready"] and all(r["ready"] for r in b["replicas"]),
                           "ready after the rollback")
        check(snap["engine_version"] == before["engine_version"] == "fake-1", repr(snap))
        check(snap["model_id"] == before["model_id"] == "tiny" and snap["device_mask"] == "0,1", repr(snap))
        check(replica_view(snap) == replica_view(before) == [("r0", "0,1"), ("r1", "0,1")],
              "replicas changed: %r" % replica_view(snap))
        for r in snap["replicas"]:
            check(r["engine_version"] == "fake-1" and pid_alive(r["pid"]), repr(r))
            with open("/proc/%d/cmdline" % r["pid"], "rb") as f:
                argv = f.read().split(b"\0")
            check(b"--never-ready" not in argv and n.model.encode() in argv and other.encode() not in argv,
                  "the restored engine does not run the old spec: %r" % argv)
        # Replica r1 was never touched; r0 serves the old spec again.
        check(snap["replicas"][1]["pid"] == before["replicas"][1]["pid"], "r1 was restarted")
        check(not snap["draining"] and snap["slots_free"] == 4, repr(snap))
        json_body(*n.request("POST", "/v2/pools/rb/leases"), 201)
        values = metrics(n)
        check(metric(values, "pool_managerd_reload_failures_total", pool_id="rb", reason="health") == 1,
              "reload_failures_total{health} is not 1")
        check(metric(values, "pool_managerd_reloads_total", pool_id="rb", outcome="failure") == 1,
              "reloads_total{failure} is not 1")
        # A reload is not a crash.
        check(snap["crash_count"] == 0 and snap["breaker"]["state"] == "closed", repr(snap))
        n.stop()


def scenario_reload_drain_timeout():
    """A lease held past the reload's drain deadline aborts the reload
    before anything is stopped."""
    with Node() as n:
        got = n.preload("dt", n.prepared(slots=2, flags=["-m", n.model, "--parallel", "2"]))
        lease = json_body(*n.request("POST", "/v2/pools/dt/leases"), 201)
        other = copy_model(n, "other.gguf")
        err = check_error(*n.request("POST", "/v2/pools/dt/reload",
                                     {"model_path": other, "drain_deadline_ms": 300}), 409, "DRAIN_TIMEOUT")
        check("drain timeout" in err["error"], err["error"])
        snap = n.get("/v2/pools/dt")
        check(snap["ready"] and snap["pid"] == got["pid"] and pid_alive(got["pid"]), repr(snap))
        check(snap["model_id"] == "tiny.gguf" and not snap["draining"], repr(snap))
        check(snap["replicas"][0]["restart_count"] == 0, "the engine was restarted")
        # The lease survived and the pool takes new ones again.
        check(snap["active_leases"] == 1, repr(snap))
        json_body(*n.request("POST", "/v2/pools/dt/leases/%s/renew" % lease["lease_id"]), 200)
        second = json_body(*n.request("POST", "/v2/pools/dt/leases"), 201)
        for held in (lease, second):
            status, _, _ = n.request("DELETE", "/v2/pools/dt/leases/%s" % held["lease_id"])
            check(status == 204, "release %d" % status)
        with open(got["handoff_path"]) as f:
            handoff = json.load(f)
        check(handoff["pid"] == got["pid"] and handoff["model"]["id"] == "tiny.gguf", repr(handoff))
        values = metrics(n)
        check(metric(values, "pool_managerd_reload_failures_total", pool_id="dt",
                     reason="drain_timeout") == 1, "reload_failures_total{drain_timeout} is not 1")
        # Without the lease the same reload goes through.
        ok = json_body(*n.request("POST", "/v2/pools/dt/reload", {"model_path": other}), 200)
        check(ok["ok"] and not ok["noop"] and ok["model_id"] == "other.gguf", repr(ok))
        check(not pid_alive(got["pid"]), "the old engine still runs after the reload")
        n.stop()


def scenario_reload_idempotent():
    """Reloading to what runs touches nothing, even with leases held."""
    with Node() as n:
        got = n.preload("id", n.prepared(flags=["-m", n.model], engine_version="fake-1"))
        lease = json_body(*n.request("POST", "/v2/pools/id/leases"), 201)
        before = n.get("/v2/pools/id")
        for body in ({"model_path": n.model}, {"model_path": n.model, "engine_version": "fake-1"},
                     {"model_path": n.model, "strategy": "surge", "drain_deadline_ms": 1}):
            again = json_body(*n.request("POST", "/v2/pools/id/reload", body), 200)
            check(again["ok"] and again["noop"] and again["model_id"] == "tiny.gguf", repr(again))
            check(again["error"] is None, repr(again))
        snap = n.get("/v2/pools/id")
        check(snap["pid"] == got["pid"] and pid_alive(got["pid"]), "pid changed: %r" % snap)
        r0, b0 = snap["replicas"][0], before["replicas"][0]
        check(r0["started_at"] == b0["started_at"] and r0["ready_at"] == b0["ready_at"],
              "the engine was restarted: %r" % r0)
        check(snap["active_leases"] == 1 and snap["ready"], repr(snap))
        status, _, _ = n.request("DELETE", "/v2/pools/id/leases/%s" % lease["lease_id"])
        check(status == 204, "the lease did not survive the no-op: %d" % status)
        values = metrics(n)
        check(metric(values, "pool_managerd_reloads_total", pool_id="id", outcome="failure") == 0,
              "a no-op counted as a failure")
        n.stop()
        check(sum(1 for o in n.daemon.log_objects() if o.get("msg") == "engine spawned") == 1,
              "a no-op reload spawned an engine")


def scenario_reload_surge():
    """Surge: the new engine starts beside the old one; the pool is ready
    in every snapshot taken during the reload; the old engine goes."""
    with Node() as n:
        port = free_ports(2)
        got = n.preload("sg", n.prepared(port=port, slots=2,
                                         flags=["-m", n.model, "--parallel", "2", "--load-ms", "500"]))
        other = copy_model(n, "other.gguf")
        poller = Poller(n, "sg")
        poller.start()
        wait_until(lambda: len(poller.snaps) >= 3, "the first snapshots")
        lease = json_body(*n.request("POST", "/v2/pools/sg/leases"), 201)
        check(lease["url"] == "http://127.0.0.1:%d" % port, repr(lease))
        res = json_body(*n.request("POST", "/v2/pools/sg/reload",
                                   {"model_path": other, "engine_version": "fake-2",
                                    "strategy": "surge"}), 200)
        check(res["ok"] and res["strategy"] == "surge" and not res["noop"], repr(res))
        check(res["previous"] == {"model_id": "tiny.gguf", "engine_version": "fake-1"}, repr(res))
        # New leases go to the new engine, on the spare port.
        new_lease = json_body(*n.request("POST", "/v2/pools/sg/leases"), 201)
        check(new_lease["url"] == "http://127.0.0.1:%d" % (port + 1), repr(new_lease))
        # The old engine waits for its lease, then stops.
        check(pid_alive(got["pid"]), "the old engine stopped with a lease held")
        retired_at = int(time.time() * 1000)
        status, _, _ = n.request("DELETE", "/v2/pools/sg/leases/%s" % lease["lease_id"])
        check(status == 204, "releasing the old engine's lease: %d" % status)
        wait_until(lambda: not pid_alive(got["pid"]), "the old engine to stop")
        snap = n.wait_pool("sg", lambda s, b: b["state"] == "ready", "the reload to settle")
        poller.stop()
        check(not poller.bad, "non-200 snapshots during the surge: %r" % poller.bad[:3])
        check(len(poller.snaps) >= 10, "too few snapshots: %d" % len(poller.snaps))
        unready = [s for s in poller.snaps if not s["ready"]]
        check(not unready, "the pool was not ready during a surge: %r" % (unready[:1],))
        for s in poller.snaps:
            check_slots(s)
        check(any(r["state"] == "reloading" for s in poller.snaps for r in s["replicas"]),
              "never saw the reload: %r" % sorted({r["state"] for s in poller.snaps for r in s["replicas"]}))
        check(snap["pid"] not in (0, got["pid"]) and pid_alive(snap["pid"]), repr(snap))
        check(snap["engine_version"] == "fake-2" and snap["model_id"] == "other.gguf", repr(snap))
        check(snap["url"] == "http://127.0.0.1:%d" % (port + 1) and snap["active_leases"] == 1, repr(snap))
        check([r["replica_id"] for r in snap["replicas"]] == ["r0"], repr(snap["replicas"]))
        # ready_at is when the new engine took over: after it started, and
        # before its predecessor had retired (the lease released above).
        rep = snap["replicas"][0]
        check(rep["started_at"] <= rep["ready_at"] <= retired_at, "ready_at %r, started_at %r, retired %r"
              % (rep["ready_at"], rep["started_at"], retired_at))
        with open(got["handoff_path"]) as f:
            handoff = json.load(f)
        check(handoff["pid"] == snap["pid"] and handoff["model"]["id"] == "other.gguf"
              and handoff["url"] == snap["url"], repr(handoff))
        # The files follow the port: the engine on the spare port has the
        # surge PID file, the old one's is gone with it (the daemon removes
        # it when the engine's pidfd says it exited, which may be a moment
        # after the process is gone).
        run = os.path.join(n.dir, "run")

        def pid_file(name):
            try:
                with open(os.path.join(run, name)) as f:
                    return int(f.read().split()[0])
            except FileNotFoundError:
                return None
        wait_until(lambda: pid_file("sg_r0.pid") is None, "the old engine's PID file to go",
                   timeout=5)
        check(pid_file("sg_r0.surge.pid") == snap["pid"] and pid_file("sg_r0.pid") is None,
              "PID files after the surge: %r" % sorted(os.listdir(run)))
        # The next surge goes back to the home port.
        status, _, _ = n.request("DELETE", "/v2/pools/sg/leases/%s" % new_lease["lease_id"])
        check(status == 204, "release %d" % status)
        back = json_body(*n.request("POST", "/v2/pools/sg/reload",
                                    {"model_path": n.model, "strategy": "surge"}), 200)
        check(back["ok"] and back["model_id"] == "tiny.gguf", repr(back))
        lease3 = json_body(*n.request("POST", "/v2/pools/sg/leases"), 201)
        check(lease3["url"] == "http://127.0.0.1:%d" % port, repr(lease3))
        home = n.wait_pool("sg", lambda s, b: b["state"] == "ready" and b["pid"] != snap["pid"],
                           "the second surge to settle")
        wait_until(lambda: not pid_alive(snap["pid"]), "the first surge's engine to stop")
        wait_until(lambda: pid_file("sg_r0.surge.pid") is None, "the stopped engine's PID file to go",
                   timeout=5)
        check(pid_file("sg_r0.pid") == home["pid"] and pid_file("sg_r0.surge.pid") is None,
              "PID files after the surge back: %r" % sorted(os.listdir(run)))
        n.stop()


def scenario_reload_surge_in_flight():
    """A client that routes by /v1/replicasets holds no lease: a request it
    sent to the old engine before a surge is answered. The old engine
    (llama-server-like: a completion in flight at SIGTERM gets no answer)
    is stopped only once its /metrics says nothing is in flight; the
    replica is ready on the new engine meanwhile."""
    with Node() as n:
        port = free_ports(2)
        got = n.preload("sf", n.prepared(port=port, slots=2,
                                         flags=["-m", n.model, "--parallel", "2", "--metrics",
                                                "--completion-ms", "1500"]))
        other = copy_model(n, "other.gguf")
        answer = {}

        def complete():
            try:
                answer["status"] = e2e.http_request(
                    port, "POST", "/completion", json.dumps({"prompt": "hi", "stream": False}))[0]
            except Exception as exc:  # a reset is what is tested against
                answer["error"] = repr(exc)
        client = threading.Thread(target=complete)
        client.start()

        def in_flight():
            data = e2e.http_request(port, "GET", "/metrics")[2].decode()
            return "llamacpp:requests_processing 1" in data
        wait_until(in_flight, "the completion to run on the old engine")
        res = json_body(*n.request("POST", "/v2/pools/sf/reload",
                                   {"model_path": other, "strategy": "surge"}), 200)
        check(res["ok"] and res["strategy"] == "surge", repr(res))
        snap = json_body(*n.request("GET", "/v2/pools/sf"), 200)
        check(snap["replicas"][0]["state"] == "ready" and snap["pid"] != got["pid"], repr(snap))
        check(pid_alive(got["pid"]), "the old engine was stopped with a request in flight")
        client.join(10)
        check(answer.get("status") == 200, "the request in flight: %r" % answer)
        wait_until(lambda: not pid_alive(got["pid"]), "the old engine to stop once idle")
        n.stop()


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def has_arg(argv, flag, value):
    return any(a == flag and b == value for a, b in zip(argv, argv[1:]))


def scenario_reload_surge_argv():
    """A surge moves the engine's port variable and nothing else: an
    argument that equals the port stays as it was (a configured pool's
    "-c <port>", an API preload's "--ctx-size <port>"), braces in an API
    preload's flags stay literal, and a PreparedEngine whose flags give no
    "--port <port>" reloads drain-first, saying why."""
    cfg_port, api_port, np_port = free_ports(2), free_ports(2), free_ports(2)
    pool = dict(config_pool("cs", cfg_port, "-c", str(cfg_port), "--alias", "{{port}}"),
                model_path="tiny.gguf")
    with Node([pool]) as n:
        other = copy_model(n, "other.gguf")

        # a configured pool: "-c <port>" is a literal, {port} the variable
        first = n.wait_pool("cs", lambda s, b: b["ready"], "cs ready")
        argv = cmdline(first["pid"])
        check(has_arg(argv, "-c", str(cfg_port)) and has_arg(argv, "--port", str(cfg_port))
              and has_arg(argv, "--alias", "{port}"), repr(argv))
        res = json_body(*n.request("POST", "/v2/pools/cs/reload",
                                   {"model_path": other, "strategy": "surge"}), 200)
        check(res["ok"] and res["strategy"] == "surge" and res["surge_fallback"] is None, repr(res))
        snap = n.wait_pool("cs", lambda s, b: b["ready"] and b["pid"] != first["pid"], "cs surged")
        argv = cmdline(snap["pid"])
        check(has_arg(argv, "--port", str(cfg_port + 1)) and has_arg(argv, "-c", str(cfg_port))
              and has_arg(argv, "--alias", "{port}"), "the surge engine's argv: %r" % argv)

        # an API preload: flags are literal, --port <port> the variable
        got = n.preload("ap", n.prepared(port=api_port, flags=[
            "--ctx-size", str(api_port), "-m", n.model, "--alias", "{port}{{"]))
        argv = cmdline(got["pid"])
        check(has_arg(argv, "--alias", "{port}{{") and has_arg(argv, "--ctx-size", str(api_port)),
              repr(argv))
        res = json_body(*n.request("POST", "/v2/pools/ap/reload",
                                   {"model_path": other, "strategy": "surge"}), 200)
        check(res["ok"] and res["strategy"] == "surge", repr(res))
        snap = n.wait_pool("ap", lambda s, b: b["ready"] and b["pid"] != got["pid"], "ap surged")
        argv = cmdline(snap["pid"])
        check(has_arg(argv, "--port", str(api_port + 1)) and has_arg(argv, "--ctx-size", str(api_port))
              and has_arg(argv, "-m", other) and has_arg(argv, "--alias", "{port}{{"),
              "the surge engine's argv: %r" % argv)

        # "--port 0<port>" names the engine's port, but is not the spec's
        body = n.prepared(port=np_port)
        body["flags"] = ["--port", "0%d" % np_port]
        got = n.preload("np", body)
        res = json_body(*n.request("POST", "/v2/pools/np/reload",
                                   {"model_path": other, "strategy": "surge"}), 200)
        check(res["ok"] and res["strategy"] == "drain-first"
              and "no port variable" in (res["surge_fallback"] or ""), repr(res))
        snap = n.wait_pool("np", lambda s, b: b["ready"] and b["pid"] != got["pid"], "np reloaded")
        check(snap["url"] == "http://127.0.0.1:%d" % np_port, repr(snap))
        check(has_arg(cmdline(snap["pid"]), "--port", "0%d" % np_port), repr(cmdline(snap["pid"])))
        n.stop()


def scenario_reload_surge_rollback():
    """A surge that fails on its second replica restores the first one too
    -- once the first one's old engine has served its last lease -- so the
    pool ends on one model, and stays ready throughout."""
    port = free_ports(4)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port + 3))      # replica r1's spare port: its surge fails
    blocker.listen()
    pool = dict(config_pool("sr", port, "-m", "{model_path}", replicas=2, slots=2),
                model_path="tiny.gguf")        # Node's model, next to the config
    try:
        with Node([pool]) as n:
            before = n.wait_pool("sr", lambda s, b: s == 200 and all(r["ready"] for r in b["replicas"]),
                                 "both replicas ready")
            lease = json_body(*n.request("POST", "/v2/pools/sr/leases"), 201)
            check(lease["replica_id"] == "r0", "ties go to the first replica: %r" % lease)
            other = copy_model(n, "other.gguf")
            poller = Poller(n, "sr")
            poller.start()
            result = {}
            t = threading.Thread(target=lambda: result.update(reply=n.request(
                "POST", "/v2/pools/sr/reload", {"model_path": other, "strategy": "surge"})))
            t.start()
            n.daemon.wait_for(lambda o: o.get("pool_id") == "sr" and o.get("replica_id") == "r1"
                              and o.get("request") == "reload" and o.get("ok") is False,
                              "replica r1's surge to fail")
            # r0 serves the new model (ready) while its old engine keeps the
            # lease; the restore of r0 waits for that engine to leave.
            check(t.is_alive(), "the reload answered before r0 was restored")
            r0 = n.get("/v2/pools/sr")["replicas"][0]
            check(r0["state"] == "ready" and r0["model_id"] == "other.gguf"
                  and r0["retiring_leases"] == 1, repr(r0))
            status, _, _ = n.request("DELETE", "/v2/pools/sr/leases/%s" % lease["lease_id"])
            check(status == 204, "releasing the old engine's lease: %d" % status)
            t.join(WAIT)
            check(not t.is_alive(), "the reload never answered")
            err = check_error(*result["reply"], 500, "RELOAD_FAILED")
            # the spare port is taken before the engine starts: its start
            # fails and names the holder
            check("port %d on 127.0.0.1 is in use by pid %d" % (port + 3, os.getpid())
                  in err["error"] and "could not be restored" not in err["error"]
                  and "restoring" not in err["error"], err["error"])
            snap = n.wait_pool("sr", lambda s, b: all(r["state"] == "ready" for r in b["replicas"]),
                               "the rollback to settle")
            poller.stop()
            check(not poller.bad, "non-200 snapshots: %r" % poller.bad[:3])
            check(all(s["ready"] for s in poller.snaps), "the pool was unready during the surge")
            for s in poller.snaps:
                check_slots(s)
            for r, b in zip(snap["replicas"], before["replicas"]):
                check(r["model_id"] == "tiny" and r["url"] == b["url"] and pid_alive(r["pid"]),
                      "replica %s not back on the old model at home: %r" % (r["replica_id"], r))
            check(snap["replicas"][1]["pid"] == before["replicas"][1]["pid"], "r1 was restarted")
            wait_until(lambda: not pid_alive(before["replicas"][0]["pid"]), "r0's first engine to stop")
            values = metrics(n)
            # r1's new engine could not even start (its port taken): counted
            # with the class of starts that never happened
            check(metric(values, "pool_managerd_reload_failures_total", pool_id="sr", reason="preflight") == 1,
                  "reload_failures_total{preflight} is not 1")
            n.stop()
    finally:
        blocker.close()


def scenario_reload_sha256():
    """sha256 verified before anything is touched: a match reloads, a
    mismatch is a 422 and the engine keeps running."""
    with Node() as n:
        got = n.preload("sh", n.prepared(flags=["-m", n.model]))
        good = write_model(n, "good.gguf", os.urandom(256 << 10))
        with open(good, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        wrong = "0" * 64 if digest != "0" * 64 else "1" * 64
        for sha, words in ((wrong, "sha256"), ("sha256:" + wrong, "sha256")):
            err = check_error(*n.request("POST", "/v2/pools/sh/reload",
                                         {"model_path": good, "sha256": sha}), 422, "STAGE_FAILED")
            check(words in err["error"] and digest in err["error"], err["error"])
        err = check_error(*n.request("POST", "/v2/pools/sh/reload",
                                     {"model_path": good, "sha256": "abc"}), 400, "INVALID_FIELD")
        check("sha256" in err["error"], err["error"])
        snap = n.get("/v2/pools/sh")
        check(snap["pid"] == got["pid"] and snap["ready"] and snap["model_id"] == "tiny.gguf", repr(snap))
        check(snap["replicas"][0]["restart_count"] == 0 and not snap["draining"], repr(snap))
        values = metrics(n)
        check(metric(values, "pool_managerd_reload_failures_total", pool_id="sh", reason="checksum") == 2,
              "reload_failures_total{checksum} is not 2")
        ok = json_body(*n.request("POST", "/v2/pools/sh/reload",
                                  {"model_path": good, "sha256": "sha256:" + digest.upper()}), 200)
        check(ok["ok"] and ok["model_id"] == "good.gguf", repr(ok))
        snap = n.get("/v2/pools/sh")
        check(snap["pid"] != got["pid"] and snap["ready"], repr(snap))
        check((snap["model_digest"] or "").endswith(digest), "model_digest %r" % snap["model_digest"])
        with open("/proc/%d/cmdline" % snap["pid"], "rb") as f:
            check(good.encode() in f.read().split(b"\0"), "the new engine does not get the new model")
        n.stop()


def config_reload_line(o):
    return o.get("msg", "").startswith(("configuration reloaded", "configuration reload rejected"))


def scenario_sighup():
    """SIGHUP: added pools start, removed ones stop and go, changed ones
    reload, unchanged ones keep their engines; a bad file changes nothing."""
    ports = {name: free_ports(2) for name in ("keep", "change", "gone", "added")}
    pools = [config_pool("keep", ports["keep"], mask="0"), config_pool("change", ports["change"], mask="1"),
             config_pool("gone", ports["gone"], mask="2")]
    with Node(pools, devices=4) as n:
        for p in ("keep", "change", "gone"):
            n.wait_pool(p, lambda s, b: s == 200 and b["ready"], p + " ready")
        keep_pid = n.get("/v2/pools/keep")["pid"]
        gone_pid = n.get("/v2/pools/gone")["pid"]
        change_pid = n.get("/v2/pools/change")["pid"]
        with open(n.config_path) as f:
            original = json.load(f)

        def rewrite(doc):
            tmp = n.config_path + ".new"
            with open(tmp, "w") as f:
                f.write(doc if isinstance(doc, str) else json.dumps(doc))
            os.rename(tmp, n.config_path)

        changed = dict(original)
        changed["pools"] = [config_pool("keep", ports["keep"], mask="0"),
                            dict(config_pool("change", ports["change"], mask="1"), engine_version="fake-2"),
                            config_pool("added", ports["added"], slots=3, mask="3")]
        rewrite(changed)
        n.daemon.proc.send_signal(signal.SIGHUP)
        line = n.daemon.wait_for(config_reload_line, "the configuration reload line")
        check(line["msg"] == "configuration reloaded" and line.get("pools") == 3, repr(line))
        added = n.wait_pool("added", lambda s, b: s == 200 and b["ready"], "added ready")
        check(added["slots_total"] == 3, repr(added))
        n.wait_pool("gone", lambda s, b: s == 404, "the removed pool forgotten")
        wait_until(lambda: not pid_alive(gone_pid), "the removed pool's engine to stop")
        change = n.wait_pool("change", lambda s, b: s == 200 and b["ready"]
                             and b["engine_version"] == "fake-2", "the changed pool reloaded")
        check(change["pid"] != change_pid and not pid_alive(change_pid), repr(change))
        keep = n.get("/v2/pools/keep")
        check(keep["pid"] == keep_pid and keep["ready"], "the unchanged pool was touched: %r" % keep)
        check(keep["replicas"][0]["restart_count"] == 0, repr(keep))
        listing = [p["pool_id"] for p in n.get("/v2/pools")["pools"]]
        check(sorted(listing) == ["added", "change", "keep"], "pools %r" % listing)

        # Invalid files: nothing changes.
        state = {p: n.get("/v2/pools/" + p)["pid"] for p in listing}
        bad_mask = dict(changed, pools=[dict(config_pool("keep", ports["keep"]), device_mask="GPU7")])
        for doc, words in (("{not json", "config"), (bad_mask, "GPU7"),
                           (dict(changed, pools=[dict(config_pool("x", 1), colour=1)]), "colour")):
            rewrite(doc)
            n.daemon.proc.send_signal(signal.SIGHUP)
            line = n.daemon.wait_for(config_reload_line, "the configuration reload line")
            check(line["msg"].startswith("configuration reload rejected") and line["level"] == "error",
                  "a bad file was taken: %r" % line)
            check(words in line.get("error", ""), "the reason %r does not name %r" % (line, words))
            now = {p["pool_id"]: p for p in n.get("/v2/pools")["pools"]}
            check(sorted(now) == sorted(state), "pools changed: %r" % sorted(now))
            for p, pid in state.items():
                check(now[p]["pid"] == pid and now[p]["ready"], "%s changed: %r" % (p, now[p]))
        n.stop()


def scenario_concurrency():
    """16 clients lease, renew and release on a pool of 2 replicas x 4
    slots while another pool drains and the leased pool reloads (surge).
    Every lease is accounted for; no 5xx; no id twice; slots in range."""
    base = free_ports(6)    # busy: 2 replicas and 2 spare ports; side: 1 and 1
    pools = [config_pool("busy", base, replicas=2, slots=4),
             config_pool("side", base + 4, slots=2, mask="1")]
    with Node(pools) as n:
        for p in ("busy", "side"):
            n.wait_pool(p, lambda s, b: s == 200 and b["ready"] and all(r["ready"] for r in b["replicas"]),
                        p + " ready")
        other = copy_model(n, "other.gguf")
        lock = threading.Lock()
        seen_ids = set()
        stats = {"granted": 0, "released": 0, "renewed": 0, "abandoned": 0, "refused": 0}
        problems = []
        held = []                      # leases the clients keep at the end
        halt = threading.Event()

        def note(what):
            with lock:
                problems.append(what)

        def call(method, path, body=None):
            try:
                status, headers, data = n.request(method, path, body)
            except OSError as e:
                note("%s %s: %r" % (method, path, e))
                halt.set()
                return 0, {}, b""
            if status >= 500:
                note("%s %s: %d %r" % (method, path, status, data[:200]))
            return status, headers, data

        def acquire(ttl_ms):
            status, headers, data = call("POST", "/v2/pools/busy/leases", {"ttl_ms": ttl_ms})
            if status == 201:
                lease = json.loads(data)
                with lock:
                    if lease["lease_id"] in seen_ids:
                        problems.append("lease id %s handed out twice" % lease["lease_id"])
                    seen_ids.add(lease["lease_id"])
                    stats["granted"] += 1
                return lease
            if status in (429,):
                with lock:
                    stats["refused"] += 1
            else:
                note("acquire: %d %r" % (status, data[:200]))
            return None

        def client(k):
            i = 0
            while not halt.is_set():
                i += 1
                if i % 11 == k % 11:
                    # Abandoned: left to expire.
                    if acquire(150):
                        with lock:
                            stats["abandoned"] += 1
                    continue
                lease = acquire(60000)
                if not lease:
                    time.sleep(0.01)
                    continue
                if i % 3 == 0:
                    status, _, data = call("POST", "/v2/pools/busy/leases/%s/renew" % lease["lease_id"],
                                           {"ttl_ms": 60000})
                    if status != 200:
                        note("renew: %d %r" % (status, data[:200]))
                    else:
                        with lock:
                            stats["renewed"] += 1
                status, _, data = call("DELETE", "/v2/pools/busy/leases/%s" % lease["lease_id"])
                if status == 204:
                    with lock:
                        stats["released"] += 1
                else:
                    note("release: %d %r" % (status, data[:200]))

        poller = Poller(n, "busy")
        side_poller = Poller(n, "side")
        workers = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(16)]
        for t in workers + [poller, side_poller]:
            t.start()
        wait_until(lambda: stats["released"] >= 100, "the clients to get going")

        # The side pool: one lease released during the drain, one never.
        side = [json_body(*n.request("POST", "/v2/pools/side/leases"), 201) for _ in range(2)]
        json_body(*n.request("POST", "/v2/pools/side/drain", {"deadline_ms": 3000}), 202)
        check_error(*n.request("POST", "/v2/pools/side/leases"), 409, "POOL_DRAINING")
        status, _, _ = n.request("DELETE", "/v2/pools/side/leases/%s" % side[0]["lease_id"])
        check(status == 204, "releasing a lease of the draining pool: %d" % status)

        # Meanwhile the busy pool reloads, surge.
        before = n.get("/v2/pools/busy")
        res = json_body(*n.request("POST", "/v2/pools/busy/reload",
                                   {"model_path": other, "engine_version": "fake-2", "strategy": "surge"}),
                        200)
        check(res["ok"] and res["strategy"] == "surge", repr(res))
        n.daemon.wait_for(lambda o: o.get("pool_id") == "side" and o.get("msg") == "drain finished",
                          "the side pool's drain outcome", WAIT)
        mark = stats["released"]
        wait_until(lambda: stats["released"] >= mark + 100, "more leases after the reload")
        halt.set()
        for t in workers:
            t.join(WAIT)
            check(not t.is_alive(), "a client hung")
        # Old engines go once their leases end; short leases expire.
        for r in before["replicas"]:
            wait_until(lambda: not pid_alive(r["pid"]), "the old engine of %s to stop" % r["replica_id"])
        n.wait_pool("busy", lambda s, b: b["state"] == "ready" and b["active_leases"] == 0,
                    "the abandoned leases to expire")
        # Then 16 clients at once each try to keep one lease: exactly the
        # 8 slots are granted, the rest refused.
        refused_before = stats["refused"]
        final = [threading.Thread(target=lambda: held.append((acquire(600000) or {}).get("lease_id")))
                 for _ in range(16)]
        for t in final:
            t.start()
        for t in final:
            t.join(WAIT)
        held = [h for h in held if h]
        check(len(held) == 8 and stats["refused"] - refused_before == 8,
              "16 clients on 8 free slots: %d granted, %d refused" % (len(held), stats["refused"] - refused_before))
        snap = n.get("/v2/pools/busy")
        check(snap["active_leases"] == len(held), "active_leases %d, clients hold %d"
              % (snap["active_leases"], len(held)))
        poller.stop()
        side_poller.stop()

        check(not problems, "%d problems, first: %r" % (len(problems), problems[:5]))
        check(not poller.bad and not side_poller.bad,
              "non-200 snapshots: %r" % (poller.bad + side_poller.bad)[:3])
        for s in poller.snaps + side_poller.snaps:
            check_slots(s)
        check(all(s["ready"] for s in poller.snaps), "busy was unready during the surge")
        check(snap["engine_version"] == "fake-2" and len(held) == 8 and snap["slots_free"] == 0,
              "after: %d held, %r" % (len(held), snap))

        busy = lease_counts(n, "busy")
        print("clients: %r; metrics: %r; snapshots: %d; most leases seen on one replica: %d"
              % (stats, busy, len(poller.snaps),
                 max(r["active_leases"] for s in poller.snaps for r in s["replicas"])))
        check(busy["granted"] == stats["granted"] == len(seen_ids),
              "granted: metric %d, clients %d" % (busy["granted"], stats["granted"]))
        check(busy["released"] == stats["released"],
              "released: metric %d, clients %d" % (busy["released"], stats["released"]))
        check(busy["expired"] + busy["dropped"] == stats["abandoned"],
              "expired %d + dropped %d != abandoned %d" % (busy["expired"], busy["dropped"], stats["abandoned"]))
        check(busy["granted"] == busy["released"] + busy["expired"] + busy["dropped"] + snap["active_leases"],
              "busy leases unaccounted: %r, active %d" % (busy, snap["active_leases"]))
        side_counts = lease_counts(n, "side")
        check(side_counts == {"granted": 2, "released": 1, "expired": 0, "dropped": 1},
              "side: %r" % side_counts)
        side_snap = n.get("/v2/pools/side")
        check(side_snap["active_leases"] == 0 and not side_snap["live"], repr(side_snap))
        for lease_id in held:
            status, _, _ = n.request("DELETE", "/v2/pools/busy/leases/%s" % lease_id)
            check(status == 204, "a held lease could not be released: %d" % status)
        check(n.get("/v2/pools/busy")["active_leases"] == 0, "leases left after releasing all")
        n.stop()


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    if len(argv) != 5 or argv[4] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION FAKE_ENGINE SCENARIO\nscenarios: %s\n"
                         % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    e2e.DAEMON, e2e.VERSION = argv[1], argv[2]
    api.FAKE_ENGINE = os.path.realpath(argv[3])
    name = argv[4]
    return e2e.run_scenario(SCENARIOS, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
