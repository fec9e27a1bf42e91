#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Chaos: a scripted workload on the fake engine while the daemon is killed
with SIGKILL at random moments and started again on the same config
(docs/reliability.md, "Chaos").

    chaos.py DAEMON VERSION FAKE_ENGINE [--kills N] [--seed S] [--budget-s T]

Pools: "a" (one replica) is drained with a lease held and a far deadline;
"b" (two replicas) has its leases churned by several clients; "c" is
reloaded, surge or drain-first, between two models; "d" comes and goes by
SIGHUP with a changed config. After every restart the invariants are
checked and printed; any violation fails the run. The seed is printed
first: --seed replays a run.
"""

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import api  # noqa: E402
import e2e  # noqa: E402
from api import Node, config_pool, pid_alive  # noqa: E402
from e2e import Daemon  # noqa: E402

TTL_MS = 600000
DRAIN_MS = 600000


def port_block(rng, n=40):
    for _ in range(500):
        base = rng.randint(20000, 30000)
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
    raise SystemExit("no free port block")


def engines_of(run):
    """Our engine processes (the fake engine, cwd the runtime dir): pid -> port."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or not pid_alive(int(name)):
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
            cwd = os.path.realpath(os.readlink("/proc/%s/cwd" % name))
        except OSError:
            continue
        if argv[0] == api.FAKE_ENGINE and cwd == os.path.realpath(run):
            out[int(name)] = int(argv[argv.index("--port") + 1])
    return out


class Workload:
    def __init__(self, n, rng, base):
        self.n, self.rng, self.base = n, rng, base
        self.lock = threading.Lock()
        self.held = {}          # lease id -> pool: granted, not released
        self.uncertain = set()  # a release the kill may have cut
        self.granted = []       # every id ever granted
        self.drain = None       # the acknowledged drain of "a": deadline_at
        self.done = {"leases": 0, "releases": 0, "reloads": 0, "sighups": 0}
        self.stop = threading.Event()
        self.models = [n.model, os.path.join(n.dir, "other.gguf")]
        with open(n.model, "rb") as f, open(self.models[1], "wb") as g:
            g.write(f.read())

    def call(self, method, path, body=None):
        try:
            status, _, raw = self.n.request(method, path, body)
            return status, json.loads(raw) if raw else None
        except Exception:
            return None, None

    def client(self):
        while not self.stop.is_set():
            if self.rng.random() < 0.6:
                status, body = self.call("POST", "/v2/pools/b/leases", {"ttl_ms": TTL_MS})
                if status == 201:
                    with self.lock:
                        self.held[body["lease_id"]] = "b"
                        self.granted.append(body["lease_id"])
                        self.done["leases"] += 1
            else:
                with self.lock:
                    ids = sorted(i for i in self.held if i not in self.uncertain)
                if ids:
                    lid = self.rng.choice(ids)
                    with self.lock:
                        self.uncertain.add(lid)
                    status, _ = self.call("DELETE", "/v2/pools/b/leases/%s" % lid)
                    with self.lock:
                        if status == 204:
                            self.held.pop(lid, None)
                            self.uncertain.discard(lid)
                            self.done["releases"] += 1
                        elif status is not None:
                            self.uncertain.discard(lid)
            time.sleep(self.rng.uniform(0.01, 0.1))

    def reloads(self):
        while not self.stop.is_set():
            model = self.rng.choice(self.models)
            strategy = self.rng.choice(["surge", "drain-first"])
            status, _ = self.call("POST", "/v2/pools/c/reload", {"model_path": model, "strategy": strategy})
            if status == 200:
                with self.lock:
                    self.done["reloads"] += 1
            time.sleep(self.rng.uniform(0.05, 0.4))

    def start(self):
        self.stop.clear()
        if self.drain is None:
            status, body = self.call("POST", "/v2/pools/a/leases", {"ttl_ms": TTL_MS})
            if status == 201:
                with self.lock:
                    self.held[body["lease_id"]] = "a"
                    self.granted.append(body["lease_id"])
                status, body = self.call("POST", "/v2/pools/a/drain", {"deadline_ms": DRAIN_MS})
                if status == 202:
                    self.drain = body["deadline_at"]
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(3)]
        self.threads.append(threading.Thread(target=self.reloads, daemon=True))
        for t in self.threads:
            t.start()

    def halt(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def log_of(d):
    """Every line the daemon wrote so far (those waits consumed and not)."""
    out = [l if isinstance(l, str) else json.dumps(l) for l in d.lines]
    try:
        while True:
            line = d._queue.get_nowait()
            if line is None:
                break
            out.append(line)
            d.lines.append(line)
    except Exception:
        pass
    return out


def sighup_toggle(n, w):
    with open(n.config_path) as f:
        config = json.load(f)
    if any(p["id"] == "d" for p in config["pools"]):
        config["pools"] = [p for p in config["pools"] if p["id"] != "d"]
    else:
        config["pools"].append(config_pool("d", w.base + 30, mask="3"))
    tmp = n.config_path + ".new"
    with open(tmp, "w") as f:
        json.dump(config, f)
    os.rename(tmp, n.config_path)
    n.daemon.proc.send_signal(signal.SIGHUP)
    w.done["sighups"] += 1


def expected(n):
    with open(n.config_path) as f:
        config = json.load(f)
    return {p["id"]: p for p in config["pools"]}


def check_invariants(n, w, run, deadline):
    """Waits for the node to settle (until deadline), then returns the
    violations found (empty: all hold)."""
    want = expected(n)
    problems = []
    while True:
        problems = []
        engines = engines_of(run)
        by_pool = {}
        ports = {}
        for pid_ in want:
            p = want[pid_]
            for r in range(p.get("replicas", 1)):
                ports[p["port"] + r] = (pid_, r)
                if pid_ == "c":
                    ports[p["port"] + 1] = (pid_, r)
        for pid, port in engines.items():
            if port not in ports:
                problems.append("engine pid %d on port %d belongs to no configured replica" % (pid, port))
            else:
                by_pool.setdefault(ports[port], []).append(pid)
        for pool, p in want.items():
            for r in range(p.get("replicas", 1)):
                got = by_pool.get((pool, r), [])
                if len(got) != 1:
                    problems.append("%s/r%d has %d engines %r" % (pool, r, len(got), got))
            status, snap = w.call("GET", "/v2/pools/%s" % pool)
            if status != 200:
                problems.append("pool %s: GET %r" % (pool, status))
                continue
            draining = pool == "a" and w.drain is not None
            if not snap["ready"] and not (draining and snap["live"]):
                problems.append("pool %s is not ready (%s)" % (pool, snap["state"]))
            if not 0 <= snap["slots_free"] <= snap["slots_total"]:
                problems.append("pool %s slots %r/%r" % (pool, snap["slots_free"], snap["slots_total"]))
            # the configured engine names no model (None) until a reload
            # has finished on one of the two
            if pool == "c" and snap["model_id"] not in (None, "tiny.gguf", "other.gguf"):
                problems.append("pool c on model %r" % snap["model_id"])
            if pool == "a" and w.drain is not None and not snap["draining"]:
                problems.append("pool a no longer draining")
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # Once settled: the state that must have survived.
    if w.drain is not None:
        status, body = w.call("POST", "/v2/pools/a/drain", {"deadline_ms": 5})
        if status != 202 or not body.get("already_running") or body.get("deadline_at") != w.drain:
            problems.append("drain of a: %r %r, deadline was %r" % (status, body, w.drain))
    with w.lock:
        # A release the kill cut: either answer is right; learn which.
        for lid in sorted(w.uncertain):
            status, _ = w.call("POST", "/v2/pools/%s/leases/%s/renew" % (w.held[lid], lid))
            if status == 404:
                w.held.pop(lid, None)
        w.uncertain.clear()
        held = dict(w.held)
        granted = list(w.granted)
    for lid, pool in held.items():
        status, _ = w.call("POST", "/v2/pools/%s/leases/%s/renew" % (pool, lid))
        if status != 200:
            problems.append("lease %s on %s lost (renew %r)" % (lid, pool, status))
    if len(set(granted)) != len(granted):
        problems.append("a lease id was granted twice")
    return problems


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("daemon")
    ap.add_argument("version")
    ap.add_argument("fake_engine")
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--budget-s", type=float, default=50.0)
    ap.add_argument("--log", default=None, help="the daemons' logs go here")
    o = ap.parse_args(argv[1:])
    e2e.DAEMON, e2e.VERSION = o.daemon, o.version
    api.FAKE_ENGINE = os.path.realpath(o.fake_engine)
    seed = o.seed if o.seed is not None else random.SystemRandom().randrange(1 << 32)
    print("chaos seed %d (replay: --seed %d)" % (seed, seed), flush=True)
    rng = random.Random(seed)
    base = port_block(rng)
    pools = [config_pool("a", base, "--load-ms", "50"),
             config_pool("b", base + 10, "--load-ms", "50", replicas=2, slots=4, mask="1"),
             config_pool("c", base + 20, "--load-ms", "%d" % rng.choice([50, 400, 1200]), mask="2")]
    start = time.monotonic()
    logf = open(o.log, "w") if o.log else None
    kills = violations = 0
    reconcile_ms = []
    n = Node(pools, devices=4, extra={"defaults": {"health": {"startup_timeout_ms": 8000},
                                        "backoff": {"initial_ms": 100, "max_ms": 200},
                                        "stop_grace_ms": 1000}})
    run = os.path.join(n.dir, "run")
    try:
        n.__enter__()
        for p in ("a", "b", "c"):
            n.wait_pool(p, lambda s, b: b["ready"], p + " ready")
        w = Workload(n, rng, base)
        while kills < o.kills and time.monotonic() - start < o.budget_s:
            w.start()
            t_end = time.monotonic() + rng.uniform(0.2, 2.0)
            while time.monotonic() < t_end:
                if rng.random() < 0.15:
                    sighup_toggle(n, w)
                time.sleep(rng.uniform(0.05, 0.3))
            n.daemon.proc.send_signal(signal.SIGKILL)
            n.daemon.proc.wait(10)
            kills += 1
            w.halt()
            n.daemon.__exit__(None, None, None)
            time.sleep(0.05)
            previous = log_of(n.daemon)
            if logf:
                logf.write("# ---- daemon %d, killed\n%s\n" % (kills, "\n".join(previous)))
            t0 = time.monotonic()
            n.daemon = Daemon("--config", n.config_path, env=e2e.clean_env())
            n.daemon.wait_listening()
            problems = check_invariants(n, w, run, time.monotonic() + 30)
            took = int((time.monotonic() - t0) * 1000)
            reconcile_ms.append(took)
            violations += len(problems)
            if logf:
                logf.write("# ---- daemon %d after the restart%s\n%s\n" % (
                    kills + 1, ": VIOLATIONS " + "; ".join(problems) if problems else "",
                    "\n".join(log_of(n.daemon))))
                logf.flush()
            print("kill %d: %s, settled in %d ms%s" % (
                kills, "ok" if not problems else "%d violations" % len(problems), took,
                "".join("\n  - " + p for p in problems)), flush=True)
        rc = n.daemon.stop()
        if rc != 0:
            violations += 1
            print("the last daemon exited with status %d (a sanitizer report?):\n%s"
                  % (rc, "\n".join(log_of(n.daemon)[-40:])), flush=True)
    finally:
        n.__exit__(None, None, None)
        for pid in engines_of(run):
            os.kill(pid, signal.SIGKILL)
    reconcile_ms.sort()
    if reconcile_ms:
        print("chaos: %d kills survived, %d violations; settle time median %d ms, max %d ms; "
              "workload: %s; seed %d"
              % (kills, violations, reconcile_ms[len(reconcile_ms) // 2], reconcile_ms[-1],
                 ", ".join("%d %s" % (v, k) for k, v in sorted(w.done.items())), seed))
    return 1 if violations or not kills else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
