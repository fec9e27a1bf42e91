#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of the control API with real engines: the daemon
binary, a config written per scenario, and the fake engine as the engine.

    api.py DAEMON VERSION FAKE_ENGINE SCENARIO

Waits are event-based (log lines, HTTP answers) with generous bounds; a
poll of the API appears only where the API is what is being waited on.
"""

import http.client
import json
import re
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Daemon, Failure, check, check_error, json_body  # noqa: E402

FAKE_ENGINE = None
READY_TIMEOUT = 60.0


def free_port():
    """A port nothing listens on now (the kernel's pick, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A daemon on a config of its own, in a temporary directory."""

    def __init__(self, pools=(), require=False, devices=2, log_level="info", extra=None,
                 args=(), start=True, env=None):
        self.dir = tempfile.mkdtemp(prefix="pm-api-")
        self.model = os.path.join(self.dir, "tiny.gguf")
        with open(self.model, "wb") as f:
            f.write(b"GGUF" + b"\0" * 60)
        fake = [{"index": i, "uuid": "GPU-test-%04d" % i, "name": "Test GPU %d" % i,
                 "compute_capability": "8.9", "vram_total_bytes": 24 << 30,
                 "vram_free_bytes": 23 << 30} for i in range(devices)]
        config = {
            "bind": "127.0.0.1:0",
            "runtime_dir": os.path.join(self.dir, "run"),
            "engines": {"allow": [FAKE_ENGINE]},
            # the model files the scenarios make, all in this directory
            "models": {"allow": [os.path.realpath(self.dir) + "/"]},
            "gpu": {"backend": "fake", "require": require, "devices": fake},
            "defaults": {"health": {"startup_timeout_ms": 4000},
                         "backoff": {"initial_ms": 200, "max_ms": 400},
                         # fake engines without --metrics show no
                         # in-flight count: a short wait before SIGTERM
                         "reload": {"retire_grace_ms": 200},
                         "stop_grace_ms": 3000},
            "pools": list(pools),
        }
        config.update(extra or {})
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.daemon = Daemon("--config", self.config_path, "--log-level", log_level, *args,
                             env=e2e.clean_env(**(env or {}))) if start else None

    def __enter__(self):
        self.daemon.__enter__()
        self.daemon.wait_listening()
        return self

    def __exit__(self, *exc):
        if self.daemon:
            self.daemon.__exit__(*exc)
        self.kill_engines()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill_engines(self):
        """A scenario that failed left the daemon killed and its engines
        running: end them by their PID files, so no engine outlives a test."""
        engines = os.path.join(self.dir, "run")
        for name in os.listdir(engines) if os.path.isdir(engines) else ():
            if not name.endswith(".pid"):
                continue
            try:
                with open(os.path.join(engines, name)) as f:
                    os.killpg(int(f.read().split()[0]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass

    def request(self, method, path, body=None, headers=None, via=None):
        """Changes go through the daemon's socket, reads over TCP, unless
        via says "tcp" or "unix" (e2e.Daemon.request)."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return self.daemon.request(method, path, body, headers, via)

    def get(self, path, want=200, headers=None):
        return json_body(*self.request("GET", path, headers=headers), want)

    def prepared(self, pool_id=None, port=None, flags=(), **fields):
        port = port or free_port()
        body = {"binary_path": FAKE_ENGINE, "port": port,
                "flags": ["--port", str(port), *flags], "model_path": self.model,
                "engine": "llamacpp", "engine_version": "fake-1"}
        if pool_id:
            body["pool_id"] = pool_id
        body.update(fields)
        return body

    def preload(self, pool_id, body, want=200, headers=None):
        return json_body(*self.request("POST", "/v2/pools/%s/preload" % pool_id, body, headers),
                         want)

    def wait_pool(self, pool_id, pred, what, timeout=READY_TIMEOUT, headers=None):
        """Polls GET /v2/pools/{id} (the API is what is under test) until
        pred(status, body) holds."""
        deadline = time.monotonic() + timeout
        while True:
            status, _, data = self.request("GET", "/v2/pools/%s" % pool_id, headers=headers)
            body = json.loads(data) if data else None
            if pred(status, body):
                return body
            if time.monotonic() > deadline:
                raise Failure("timed out waiting for %s: last %d %r" % (what, status, body))
            time.sleep(0.05)

    def stop(self):
        rc = self.daemon.stop()
        check(rc == 0, "exit status %d; stderr:\n%s" % (rc, self.daemon._stderr_so_far()))
        e2e.check_log_lines(self.daemon.lines)


def pid_alive(pid):
    """Running: not gone, and not a zombie waiting for a parent (an engine a
    daemon adopted is reaped by init, which may take its time)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def config_pool(pool_id, port, *flags, replicas=1, slots=2, mask="0"):
    return {"id": pool_id, "engine": "llamacpp", "engine_version": "fake-1",
            "binary": FAKE_ENGINE,
            "args": ["--host", "{host}", "--port", "{port}", "--parallel", "{slots}", *flags],
            "port": port, "replicas": replicas, "slots": slots, "device_mask": mask}


# --- scenarios ---------------------------------------------------------------

SNAPSHOT_KEYS = {"pool_id", "state", "live", "ready", "draining", "last_error", "engine",
                 "engine_version", "model_id", "model_digest", "device_mask", "slots_total",
                 "slots_free", "active_leases", "restart_count", "crash_count", "backoff_ms",
                 "next_restart_at", "breaker", "replicas", "devices", "pid", "url", "restarts_in_window"}


def scenario_pools():
    """Configured pools are listed and looked up under every alias."""
    a, b = free_port(), free_port()
    with Node([config_pool("alpha", a, "--announce"), config_pool("beta", b, mask="1")]) as n:
        for pool in ("alpha", "beta"):
            n.wait_pool(pool, lambda s, body: s == 200 and body["ready"], pool + " ready")
        listing = n.get("/v2/pools")
        check(set(listing) == {"pools"}, "list is wrapped: %r" % listing)
        check([p["pool_id"] for p in listing["pools"]] == ["alpha", "beta"],
              "pools in config order: %r" % listing)
        snap = n.get("/v2/pools/alpha")
        check(SNAPSHOT_KEYS <= set(snap), "missing keys %r" % (SNAPSHOT_KEYS - set(snap)))
        check(snap["state"] == "ready" and snap["live"] and not snap["draining"], repr(snap))
        check(snap["url"] == "http://127.0.0.1:%d" % a, "url %r" % snap["url"])
        check(snap["slots_total"] == 2 and snap["slots_free"] == 2, repr(snap))
        check(snap["breaker"]["state"] == "closed", repr(snap["breaker"]))
        check(pid_alive(snap["pid"]) and snap["replicas"][0]["pid"] == snap["pid"], repr(snap))
        beta = n.get("/v2/pools/beta")
        check(beta["device_mask"] == "1", "beta's mask")
        check([d["uuid"] for d in beta["devices"]] == ["GPU-test-0001"], "beta's devices %r" % beta["devices"])
        check(beta["tensor_split"] is None, "a one-GPU pool has no split: %r" % beta["tensor_split"])
        for alias in ("/pools/alpha/status", "/v2/pools/alpha/health"):
            other = n.get(alias)
            check(other["pool_id"] == "alpha" and other["pid"] == snap["pid"], alias)
        check_error(*n.request("GET", "/v2/pools/nope"), 404, "POOL_NOT_FOUND",
                    "pool nope not found")
        check_error(*n.request("GET", "/pools/nope/status"), 404, "POOL_NOT_FOUND")
        body = check_error(*n.request("GET", "/v2/pools/-bad"), 400, "BAD_REQUEST")
        check("pool id" in body["error"], body["error"])
        n.stop()


def scenario_preload():
    """A PreparedEngine preloads a new pool; the answer comes once ready."""
    with Node() as n:
        body = n.prepared(flags=["--load-ms", "300"])
        got = n.preload("p1", body)
        check(set(got) == {"pool_id", "replica_id", "pid", "handoff_path"}, repr(got))
        check(got["pool_id"] == "p1" and got["replica_id"] == "r0", repr(got))
        check(pid_alive(got["pid"]), "engine pid %d not alive" % got["pid"])
        with open(got["handoff_path"]) as f:
            handoff = json.load(f)
        check(handoff["pool_id"] == "p1" and handoff["managed_by"] == "pool-managerd", repr(handoff))
        snap = n.get("/v2/pools/p1")
        check(snap["ready"] and snap["pid"] == got["pid"], repr(snap))
        check(snap["engine_version"] == "fake-1" and snap["model_id"] == "tiny.gguf", repr(snap))
        # Preloading it again is a conflict; the engine is untouched.
        err = check_error(*n.request("POST", "/v2/pools/p1/preload", json.dumps(body)), 409,
                          "CONFLICT")
        check("already running" in err["error"], err["error"])
        check(n.get("/v2/pools/p1")["pid"] == got["pid"], "the engine was replaced")
        # A new replica id adds a replica; the seed alias works too.
        second = n.prepared(replica_id="r1")
        got2 = json_body(*n.request("POST", "/pools/p1/preload", json.dumps(second)), 200)
        check(got2["replica_id"] == "r1" and got2["pid"] != got["pid"], repr(got2))
        check(len(n.get("/v2/pools/p1")["replicas"]) == 2, "two replicas")
        n.stop()
        check(not pid_alive(got["pid"]) and not pid_alive(got2["pid"]),
              "engines still run after SIGTERM")


def scenario_preload_envelope():
    """The llama-orch orchestrator wraps the PreparedEngine:
    {"prepared": {...}}, on both paths; the flat form still works; the
    envelope takes no other field, and its "prepared" must be an object."""
    with Node() as n:
        got = json_body(*n.request("POST", "/pools/e1/preload", {"prepared": n.prepared()}), 200)
        check(got["pool_id"] == "e1" and got["replica_id"] == "r0" and pid_alive(got["pid"]),
              repr(got))
        check(os.path.isfile(got["handoff_path"]), "no handoff file %r" % got["handoff_path"])
        got = json_body(*n.request("POST", "/v2/pools/e2/preload",
                                   {"prepared": n.prepared(pool_id="e2", replica_id="a")}), 200)
        check(got["pool_id"] == "e2" and got["replica_id"] == "a", repr(got))
        flat = json_body(*n.request("POST", "/pools/e3/preload", n.prepared()), 200)
        check(flat["pool_id"] == "e3", repr(flat))
        for pool in ("e1", "e2", "e3"):
            check(n.get("/v2/pools/" + pool)["ready"], pool + " not ready")
        good = n.prepared()
        cases = [
            ({"prepared": good, "port": 1}, "INVALID_FIELD", 'unknown field "port"'),
            ({"port": 1, "prepared": good}, "INVALID_FIELD", '"prepared" has no other field'),
            ({"prepared": "x"}, "INVALID_FIELD", "prepared: must be an object"),
            ({"prepared": None}, "INVALID_FIELD", "prepared: must be an object"),
            ({"prepared": [good]}, "INVALID_FIELD", "prepared: must be an object"),
            ({"prepared": {}}, "INVALID_FIELD", "is required"),
            ({"prepared": dict(good, port="8080")}, "INVALID_FIELD", "port: must be an integer"),
            ({"prepared": dict(good, pool_id="other")}, "INVALID_FIELD", "differs"),
            ({"prepared": dict(good, colour="blue")}, "INVALID_FIELD", 'unknown field "colour"'),
            ({"prepared": {"prepared": good}}, "INVALID_FIELD", 'unknown field "prepared"'),
            (b'{"prepared": {}, "prepared": {}}', "INVALID_JSON", "duplicate"),
        ]
        for path in ("/pools/bad/preload", "/v2/pools/bad/preload"):
            for body, code, words in cases:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                err = check_error(*n.request("POST", path, raw), 400, code)
                check(words in err["error"], "%s %r: error %r does not mention %r"
                      % (path, raw[:80], err["error"], words))
        err = check_error(*n.request("POST", "/pools/bad/preload",
                                     {"prepared": dict(good, binary_path="/bin/sh")}), 403,
                          "BINARY_NOT_ALLOWED")
        check("/bin/sh" in err["error"], err["error"])
        # Without a token TCP is read-only, wrapped or not.
        e2e.check_read_only(*n.request("POST", "/pools/bad/preload", {"prepared": good}, via="tcp"),
                            n.daemon.socket)
        check(sorted(p["pool_id"] for p in n.get("/v2/pools")["pools"]) == ["e1", "e2", "e3"],
              "a refused preload registered a pool")
        n.stop()


def scenario_preload_nonblocking():
    """While a slow preload waits, every other request is answered."""
    with Node() as n:
        result = {}

        def slow():
            result["reply"] = n.request("POST", "/v2/pools/slow/preload",
                                        n.prepared(flags=["--load-ms", "2500"]))

        t = threading.Thread(target=slow)
        t.start()
        n.daemon.wait_for(lambda o: o.get("msg") == "engine spawned" and o.get("pool_id") == "slow",
                          "the slow engine spawned")
        answered = 0
        while t.is_alive() and answered < 5:
            json_body(*n.request("GET", "/health"), 200)
            json_body(*n.request("GET", "/v2/pools"), 200)
            answered += 1
        check(answered == 5 and t.is_alive(),
              "the preload finished before the other requests were answered")
        t.join(READY_TIMEOUT)
        check(not t.is_alive(), "the preload never answered")
        got = json_body(*result["reply"], 200)
        check(got["pool_id"] == "slow", repr(got))
        n.stop()


def scenario_preload_failures():
    """An engine that dies, or never becomes healthy, fails its preload."""
    with Node() as n:
        dies = n.prepared(flags=["--exit-after-ms", "0", "--exit-code", "3"])
        err = check_error(*n.request("POST", "/v2/pools/dies/preload", json.dumps(dies)), 500,
                          "PRELOAD_FAILED")
        check(err["error"].startswith("preload failed:") and "3" in err["error"], err["error"])
        stuck = n.prepared(flags=["--never-ready"])
        reply = n.request("POST", "/v2/pools/stuck/preload", json.dumps(stuck))
        err = check_error(*reply, 500, "HEALTH_CHECK_FAILED")
        check(err["error"].startswith("health check failed:"), err["error"])
        snap = n.get("/v2/pools/stuck")
        check(not snap["ready"] and snap["last_error"], repr(snap))
        n.stop()


def scenario_preload_cause():
    """A failed load's last_error names the cause llama-server logged, not its generic
    last line, and without the log prefix."""
    with Node() as n:
        cut = n.prepared(flags=["--fail-load"])
        check_error(*n.request("POST", "/v2/pools/cut/preload", json.dumps(cut)), 500,
                    "PRELOAD_FAILED")
        err = n.get("/v2/pools/cut")["last_error"] or ""
        want = ("llama_model_load: error loading model: tensor 'blk.3.ffn_up.weight' data is "
                "not within the file bounds, model is corrupted or incomplete")
        check(err == "exited with code 1: " + want, repr(err))
        # the engine's failure, not the node's
        node = n.get("/v2/node")
        check(node.get("node_errors") == {"fd_limit": 0, "process_limit": 0, "disk_full": 0,
                                          "memory": 0, "runtime_dir": 0}, repr(node))
        n.stop()


def scenario_preload_bad_input():
    """Every bad PreparedEngine gets the right status and names the problem."""
    with Node(require=True, devices=1) as n:
        good = n.prepared()
        missing_model = os.path.join(n.dir, "absent.gguf")
        cases = [
            (b"{not json", 400, "INVALID_JSON", "malformed JSON"),
            (b"", 400, "INVALID_JSON", "empty"),
            (b"[1, 2]", 400, "INVALID_JSON", "JSON object"),
            (b'{"port": 1, "port": 2}', 400, "INVALID_JSON", "duplicate"),
            (dict(good, port="8080"), 400, "INVALID_FIELD", "port: must be an integer"),
            (dict(good, port=70000), 400, "INVALID_FIELD", "port: must be between"),
            ({k: v for k, v in good.items() if k != "port"}, 400, "INVALID_FIELD", "port: is required"),
            ({k: v for k, v in good.items() if k != "binary_path"}, 400, "INVALID_FIELD",
             "binary_path: is required"),
            (dict(good, flags="--port"), 400, "INVALID_FIELD", "flags: must be an array"),
            (dict(good, flags=[1]), 400, "INVALID_FIELD", "flags[0]"),
            (dict(good, slots=0), 400, "INVALID_FIELD", "slots"),
            (dict(good, pool_id="other"), 400, "INVALID_FIELD", "differs"),
            (dict(good, replica_id="../x"), 400, "INVALID_FIELD", "replica_id"),
            (dict(good, colour="blue"), 400, "INVALID_FIELD", 'unknown field "colour"'),
            (dict(good, env={"CUDA_VISIBLE_DEVICES": "1"}), 400, "INVALID_FIELD", "device_mask"),
            (dict(good, env={"A": 1}), 400, "INVALID_FIELD", "env.A"),
            (dict(good, model_path=missing_model), 400, "INVALID_FIELD", "No such file"),
            (dict(good, model_path="relative.gguf"), 400, "INVALID_FIELD", "absolute"),
            (dict(good, device_mask="7"), 400, "INVALID_FIELD", "7"),
            (dict(good, binary_path="/bin/sh"), 403, "BINARY_NOT_ALLOWED", "/bin/sh"),
            (dict(good, model_path="/usr/share/models/x.gguf"), 403, "MODEL_NOT_ALLOWED",
             "/usr/share/models/x.gguf"),
            # malformed before it is compared with the allowlist
            (dict(good, binary_path=FAKE_ENGINE + "/../fake-engine"), 400, "INVALID_FIELD", ".."),
            (dict(good, device_mask="none"), 503, "GPU_ONLY", "GPU-only enforcement:"),
        ]
        for body, status, code, words in cases:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            err = check_error(*n.request("POST", "/v2/pools/bad/preload", raw), status, code)
            check(words in err["error"], "%r: error %r does not mention %r"
                  % (raw[:80], err["error"], words))
        check_error(*n.request("POST", "/v2/pools/b%20d/preload", json.dumps(good)), 400,
                    "BAD_REQUEST")
        # None of it left a pool behind, and the daemon serves on.
        check(n.get("/v2/pools") == {"pools": []}, "a refused preload registered a pool")
        n.stop()


def scenario_gpu_only_no_devices():
    with Node(require=True, devices=0, extra={"gpu": {"backend": "none", "require": True}}) as n:
        err = check_error(*n.request("POST", "/v2/pools/g/preload", json.dumps(n.prepared())), 503,
                          "GPU_ONLY")
        check(err["error"].startswith("GPU-only enforcement:") and "no GPU" in err["error"],
              err["error"])
        n.stop()


def scenario_restart_and_breaker():
    with Node() as n:
        first = n.preload("r", n.prepared())
        snap = json_body(*n.request("POST", "/v2/pools/r/restart"), 202)
        check(snap["pool_id"] == "r", repr(snap))
        after = n.wait_pool("r", lambda s, b: b["ready"] and b["pid"] not in (0, first["pid"]),
                            "the restarted engine ready")
        check(after["restart_count"] >= 1 and after["crash_count"] == 0, repr(after))
        check(not pid_alive(first["pid"]), "the old engine still runs")
        snap = json_body(*n.request("POST", "/v2/pools/r/breaker/reset"), 200)
        check(snap["breaker"] == {"state": "closed", "failures": 0, "opens": 0,
                                  "open_until": None}, repr(snap["breaker"]))
        for path in ("/v2/pools/none/restart", "/v2/pools/none/breaker/reset"):
            check_error(*n.request("POST", path), 404, "POOL_NOT_FOUND")
        check_error(*n.request("GET", "/v2/pools/r/restart"), 405, "METHOD_NOT_ALLOWED")
        n.stop()


def scenario_breaker_open_restart():
    """With the breaker open, restart still gives one try; reset closes it."""
    crash = ["--load-ms", "2000", "--exit-after-ms", "50", "--exit-code", "1"]
    extra = {"defaults": {"breaker": {"threshold": 2, "open_ms": 600000},
                          "backoff": {"initial_ms": 50, "max_ms": 50},
                          "health": {"startup_timeout_ms": 4000}}}
    with Node(extra=extra) as n:
        check_error(*n.request("POST", "/v2/pools/c/preload", json.dumps(n.prepared(flags=crash))),
                    500, "PRELOAD_FAILED")
        n.wait_pool("c", lambda s, b: b["breaker"]["state"] == "open", "the breaker open")
        err = check_error(*n.request("POST", "/v2/pools/c/preload",
                                     json.dumps(n.prepared(flags=crash, engine_version="fake-9"))),
                          409, "BREAKER_OPEN")
        check("breaker" in err["error"], err["error"])
        check(n.get("/v2/pools/c")["engine_version"] == "fake-1",
              "a refused preload changed what the replica runs")
        before = n.get("/v2/pools/c")["crash_count"]
        json_body(*n.request("POST", "/v2/pools/c/restart"), 202)
        n.wait_pool("c", lambda s, b: b["crash_count"] > before, "the one restart to crash")
        check(n.get("/v2/pools/c")["breaker"]["state"] == "open", "restart closed the breaker")
        snap = json_body(*n.request("POST", "/v2/pools/c/breaker/reset"), 200)
        check(snap["breaker"]["failures"] == 0, repr(snap["breaker"]))
        n.stop()


def scenario_delete():
    with Node() as n:
        got = n.preload("gone", n.prepared())
        body = json_body(*n.request("DELETE", "/v2/pools/gone"), 202)
        check(body == {"pool_id": "gone", "state": "removing"}, repr(body))
        n.wait_pool("gone", lambda s, b: s == 404, "the pool forgotten")
        check(not pid_alive(got["pid"]), "the engine survived DELETE")
        check(not os.path.exists(got["handoff_path"]), "the handoff file survived DELETE")
        check_error(*n.request("DELETE", "/v2/pools/gone"), 404, "POOL_NOT_FOUND")
        # The id is free again.
        n.preload("gone", n.prepared())
        n.stop()


def scenario_delete_pending_preload():
    """DELETE while a preload waits: the preload is answered, not lost."""
    with Node() as n:
        result = {}

        def slow():
            result["reply"] = n.request("POST", "/v2/pools/d/preload",
                                        n.prepared(flags=["--never-ready"]))

        t = threading.Thread(target=slow)
        t.start()
        n.daemon.wait_for(lambda o: o.get("msg") == "engine spawned" and o.get("pool_id") == "d",
                          "the engine spawned")
        json_body(*n.request("DELETE", "/v2/pools/d"), 202)
        t.join(READY_TIMEOUT)
        check(not t.is_alive(), "the preload was never answered")
        status, _, data = result["reply"]
        check(status >= 500, "preload answered %d %r" % (status, data))
        n.wait_pool("d", lambda s, b: s == 404, "the pool forgotten")
        n.stop()


def scenario_shutdown_pending_preload():
    with Node() as n:
        result = {}

        def slow():
            try:
                result["reply"] = n.request("POST", "/v2/pools/s/preload",
                                            n.prepared(flags=["--never-ready"]))
            except Exception as e:  # the connection may close instead
                result["error"] = e

        t = threading.Thread(target=slow)
        t.start()
        n.daemon.wait_for(lambda o: o.get("msg") == "engine spawned", "the engine spawned")
        n.stop()
        t.join(READY_TIMEOUT)
        check(not t.is_alive(), "the waiting client hangs after shutdown")
        if "reply" in result:
            check(result["reply"][0] >= 500, "answered %r" % (result["reply"],))


def scenario_shutdown_refuses_changes():
    """While SIGTERM stops the engines (one ignores SIGTERM, so it takes
    its grace), a preload is refused with 503 instead of starting an
    engine the shutdown would then wait for forever; GETs still answer."""
    with Node() as n:
        n.preload("slow", n.prepared(flags=["--ignore-sigterm"]))
        n.daemon.proc.send_signal(signal.SIGTERM)
        n.daemon.wait_for(lambda o: o.get("msg") == "shutting down", "shutting down")
        check_error(*n.request("POST", "/v2/pools/late/preload", n.prepared()), 503,
                    "SERVICE_UNAVAILABLE", "the daemon is shutting down")
        # Over TCP without a token the read-only answer comes first.
        check_error(*n.request("POST", "/v2/pools/late/preload", n.prepared(), via="tcp"), 403,
                    "READ_ONLY")
        json_body(*n.request("GET", "/health"), 200)
        # The status query is a read: still answered.
        got = json_body(*n.request("POST", "/pools/slow/status", {}), 200)
        check(got["pool_id"] == "slow", repr(got))
        rc = n.daemon.finish()
        check(rc == 0, "exit status %d; stderr:\n%s" % (rc, n.daemon._stderr_so_far()))
        e2e.check_log_lines(n.daemon.lines)

def scenario_shutdown_during_start():
    """SIGTERM while 200 configured pools are still started a batch per
    loop turn: the starts not yet made are dropped, no engine is spawned
    after "shutting down", the daemon exits 0 within the usual time, and
    no engine it spawned outlives it."""
    ports = set()
    while len(ports) < 200:     # each pool's range is port..port+1 (a surge)
        port = free_port()
        if not ports & {port - 1, port, port + 1}:
            ports.add(port)
    pools = [config_pool("q%03d" % i, port, mask="none") for i, port in enumerate(sorted(ports))]
    with Node(pools, extra={"gpu": {"backend": "none", "require": False}}) as n:
        n.daemon.proc.send_signal(signal.SIGTERM)
        rc = n.daemon.finish()
        check(rc == 0, "exit status %d; stderr:\n%s" % (rc, n.daemon._stderr_so_far()))
        objs = n.daemon.log_objects()
        msgs = [o.get("msg") for o in objs]
        check("shutting down" in msgs, "no shutdown line")
        after = msgs[msgs.index("shutting down"):]
        check("engine spawned" not in after,
              "%d engines spawned after \"shutting down\"" % after.count("engine spawned"))
        spawned = [o["pid"] for o in objs if o.get("msg") == "engine spawned"]
        check(len(spawned) < len(pools), "every pool was started before the signal was seen")
        deadline = time.monotonic() + 5
        while any(pid_alive(p) for p in spawned) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = [p for p in spawned if pid_alive(p)]
        check(not alive, "engines outlived the daemon: %r" % alive)
        check(not any(o.get("msg") == "configured pool not ready; its restart policy retries"
                      for o in objs), "the dropped starts were logged as failures")


def scenario_devices():
    with Node(devices=2) as n:
        body = n.get("/v2/devices")
        check(body["backend"] == "fake" and len(body["devices"]) == 2, repr(body))
        d0 = body["devices"][0]
        for key in ("index", "uuid", "name", "compute_capability", "vram_total_bytes",
                    "vram_free_bytes"):
            check(key in d0, "device lacks %s: %r" % (key, d0))
        check(d0["uuid"] == "GPU-test-0000" and d0["vram_total_bytes"] == 24 << 30, repr(d0))
        n.stop()


class Stranger(threading.Thread):
    """Another program on a pool's port: answers 200 to everything."""

    def __init__(self):
        super().__init__(daemon=True)
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.server.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.server.requests = 0
        self.port = self.server.server_address[1]

    def run(self):
        self.server.serve_forever(poll_interval=0.05)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def scenario_port_taken():
    """A pool whose port another program holds and answers 200 on never
    becomes ready: its start fails, naming the holder, and no URL served by
    the stranger is handed out."""
    stranger = Stranger()
    stranger.start()
    try:
        with Node() as n:
            err = check_error(*n.request("POST", "/v2/pools/taken/preload",
                                         json.dumps(n.prepared(port=stranger.port))),
                              500, "PRELOAD_FAILED")
            want = "port %d on 127.0.0.1 is in use by pid %d (" % (stranger.port, os.getpid())
            check(want in err["error"], "%r does not name the holder (%r)" % (err["error"], want))
            snap = n.get("/v2/pools/taken")
            check(not snap["ready"] and want in (snap["last_error"] or ""), repr(snap))
            check(n.get("/v1/replicasets")["replicasets"] == [],
                  "a replica on a stranger's port is advertised")
            check(stranger.server.requests == 0,
                  "the stranger was probed %d times" % stranger.server.requests)
            n.stop()
    finally:
        stranger.close()


def scenario_replicasets():
    with Node() as n:
        n.preload("up", n.prepared())
        check_error(*n.request("POST", "/v2/pools/down/preload",
                               json.dumps(n.prepared(flags=["--exit-after-ms", "0",
                                                            "--exit-code", "1"]))),
                    500, "PRELOAD_FAILED")
        sets = n.get("/v1/replicasets")
        check(set(sets) == {"replicasets"}, repr(sets))
        check([(r["pool_id"], r["replica_id"]) for r in sets["replicasets"]] == [("up", "r0")],
              "only ready replicas are advertised: %r" % sets)
        item = sets["replicasets"][0]
        for key in ("url", "slots_total", "slots_free", "engine_version", "model_digest",
                    "device_mask"):
            check(key in item, "replicaset lacks %s" % key)
        every = n.get("/v1/replicasets?all=true")["replicasets"]
        check(sorted(r["pool_id"] for r in every) == ["down", "up"], repr(every))
        check(all("state" in r for r in every), "all=true shows states")
        check_error(*n.request("GET", "/v1/replicasets?all=maybe"), 400, "BAD_REQUEST")
        n.stop()


def scenario_metrics():
    with Node() as n:
        n.preload("m", n.prepared())
        status, headers, data = n.request("GET", "/metrics")
        check(status == 200, "metrics %d" % status)
        check(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
              headers.get("Content-Type"))
        text = data.decode()
        check('pool_managerd_build_info{version="%s"} 1' % e2e.VERSION in text, "build_info")
        check('pool_id="m"' in text, "no series for the pool")
        check("# TYPE pool_managerd_" in text, "no TYPE lines")
        promtool = shutil.which("promtool")
        if promtool:
            import subprocess
            p = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True)
            check(p.returncode == 0, "promtool: %s" % p.stdout.decode() + p.stderr.decode())
        n.stop()


def scenario_correlation_id():
    """The id is echoed and carried by the log lines the request causes."""
    with Node(log_level="debug") as n:
        headers = {"X-Correlation-Id": "req-42"}
        status, rh, data = n.request("POST", "/v2/pools/c1/preload", n.prepared(), headers)
        json_body(status, rh, data, 200)
        check(rh.get("X-Correlation-Id") == "req-42", "not echoed: %r" % rh.get("X-Correlation-Id"))
        status, rh, _ = n.request("GET", "/v2/pools/nope", headers={"X-Correlation-Id": "e-1"})
        check(status == 404 and rh.get("X-Correlation-Id") == "e-1", "not echoed on errors")
        n.stop()
        caused = [o for o in n.daemon.log_objects() if o.get("correlation_id") == "req-42"]
        msgs = {o["msg"] for o in caused}
        check({"request", "engine spawned", "ready"} <= msgs,
              "lines carrying the id: %r" % sorted(msgs))
        later = [o for o in n.daemon.log_objects()
                 if o.get("msg") == "stopping" and o.get("correlation_id") == "req-42"]
        check(not later, "the shutdown lines carry the preload's id")


def scenario_requests_logged_once():
    """Each request is logged once, with the status it got, also when its
    answer waited (a preload until the engine is ready; a lease until the
    state store committed it)."""
    with Node(log_level="debug") as n:
        n.preload("once", n.prepared())
        lease = json_body(*n.request("POST", "/v2/pools/once/leases"), 201)
        status, _, _ = n.request("DELETE", "/v2/pools/once/leases/%s" % lease["lease_id"])
        check(status == 204, "release: %d" % status)
        n.get("/v2/pools/once")
        n.stop()
        lines = [o for o in n.daemon.log_objects() if o.get("msg") == "request"]
        for method, path, want in (("POST", "/v2/pools/once/preload", 200),
                                   ("POST", "/v2/pools/once/leases", 201),
                                   ("DELETE", "/v2/pools/once/leases/%s" % lease["lease_id"], 204),
                                   ("GET", "/v2/pools/once", 200)):
            got = [o.get("status") for o in lines if o.get("method") == method and o.get("path") == path]
            check(got == [want], "%s %s logged %r" % (method, path, got))


def scenario_methods_and_routes():
    with Node() as n:
        status, headers, data = n.request("PUT", "/v2/pools/x")
        check_error(status, headers, data, 405, "METHOD_NOT_ALLOWED")
        check(headers.get("Allow") == "GET, HEAD, DELETE", "Allow %r" % headers.get("Allow"))
        check_error(*n.request("GET", "/v2/pools/x/preload"), 405, "METHOD_NOT_ALLOWED")
        check_error(*n.request("GET", "/v3/pools"), 404, "NOT_FOUND")
        n.stop()


def scenario_serve_time_preload():
    """Configured pools start together and are never ready before their
    engine answers."""
    a, b = free_port(), free_port()
    pools = [config_pool("one", a, "--load-ms", "1500"), config_pool("two", b, "--load-ms", "1500", mask="1")]
    with Node(pools) as n:
        d = n.daemon
        d.wait_for(lambda o: o.get("msg") == "engine spawned" and o.get("pool_id") == "one", "one spawned")
        d.wait_for(lambda o: o.get("msg") == "engine spawned" and o.get("pool_id") == "two", "two spawned")
        # Both were spawned before either became ready: they load in parallel.
        check(not any(o.get("msg") == "ready" for o in d.log_objects()),
              "a pool became ready before the other was started")
        snap = n.get("/v2/pools/one")
        check(not snap["ready"] and snap["state"] == "preloading", "ready while loading: %r" % snap)
        check(n.get("/v1/replicasets") == {"replicasets": []}, "a loading replica is advertised")
        for pool in ("one", "two"):
            n.wait_pool(pool, lambda s, body: body["ready"], pool + " ready")
        d.wait_for(lambda o: o.get("msg") == "serve-time preloads finished", "preloads finished")
        n.stop()


def scenario_shutdown_stops_engines():
    with Node([config_pool("s", free_port(), "--announce")]) as n:
        pid = n.wait_pool("s", lambda s, body: body["ready"], "ready")["pid"]
        n.stop()
        check(not pid_alive(pid), "the engine survived SIGTERM")
        check(not os.listdir(os.path.join(n.dir, "run", "engines")) if os.path.isdir(
            os.path.join(n.dir, "run", "engines")) else True, "handoff files left behind")


def scenario_keep_engines():
    """--keep-engines leaves the engine running; the next daemon on the same
    config adopts it (same pid, ready, nothing spawned) and stops it on
    SIGTERM."""
    with Node([config_pool("k", free_port())], args=["--keep-engines"]) as n:
        pid = n.wait_pool("k", lambda s, body: body["ready"], "ready")["pid"]
        n.stop()
        try:
            check(pid_alive(pid), "--keep-engines: the engine was stopped")
            n.daemon = Daemon("--config", n.config_path, env=e2e.clean_env())
            n.daemon.wait_listening()
            adopted = n.daemon.wait_for(lambda o: o.get("msg") in ("engine adopted", "engine spawned"),
                                        "the engine taken over")
            check(adopted["msg"] == "engine adopted" and adopted["pid"] == pid, repr(adopted))
            snap = n.wait_pool("k", lambda s, body: body["ready"], "ready again")
            check(snap["pid"] == pid and snap["restart_count"] == 0, repr(snap))
            n.stop()
            check(not pid_alive(pid), "the adopted engine survived SIGTERM")
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def scenario_keep_engines_after_sighup():
    """--keep-engines still holds after SIGHUP re-read the file (which
    says nothing about shutdown): the engine outlives the daemon."""
    with Node([config_pool("k", free_port())], args=["--keep-engines"]) as n:
        pid = n.wait_pool("k", lambda s, body: body["ready"], "ready")["pid"]
        try:
            n.daemon.proc.send_signal(signal.SIGHUP)
            n.daemon.wait_for(lambda o: o.get("msg") == "configuration reloaded", "the reload")
            n.stop()
            check(pid_alive(pid), "--keep-engines was forgotten after SIGHUP: the engine was stopped")
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

def scenario_check_config():
    import subprocess
    n = Node([config_pool("ok", free_port())], start=False)
    try:
        p = subprocess.run([e2e.DAEMON, "--check-config", n.config_path], capture_output=True,
                           timeout=30, env=e2e.clean_env())
        check(p.returncode == 0, "a valid config: status %d %r" % (p.returncode, p.stderr))
        bad = dict(json.load(open(n.config_path)))
        bad["pools"] = [dict(bad["pools"][0], device_mask="GPU7"), dict(bad["pools"][0], id="x", colour=1)]
        for pools, words in ((bad["pools"][:1], "pools[0].device_mask: GPU7 is not a known device"),
                             (bad["pools"][1:], "colour")):
            with open(n.config_path, "w") as f:
                json.dump(dict(bad, pools=pools), f)
            p = subprocess.run([e2e.DAEMON, "--check-config", n.config_path], capture_output=True,
                               timeout=30, env=e2e.clean_env())
            out = p.stdout.decode() + p.stderr.decode()
            check(p.returncode == 2 and words in out, "status %d, output %r" % (p.returncode, out))
    finally:
        shutil.rmtree(n.dir, ignore_errors=True)


def check_config_output(mutate, text=None):
    """--check-config on a Node's config changed by mutate (or on text):
    (exit status, stdout, stderr)."""
    import subprocess
    n = Node([config_pool("ok", free_port())], start=False)
    try:
        if text is None:
            with open(n.config_path) as f:
                doc = json.load(f)
            mutate(n, doc)
            text = json.dumps(doc, indent=2)
        with open(n.config_path, "w") as f:
            f.write(text)
        p = subprocess.run([e2e.DAEMON, "--check-config", n.config_path], capture_output=True,
                           timeout=30, env=e2e.clean_env())
        return p.returncode, p.stdout.decode(), p.stderr.decode().replace(n.config_path, "FILE")
    finally:
        shutil.rmtree(n.dir, ignore_errors=True)


def expect_check_error(mutate, *lines, text=None):
    rc, out, err = check_config_output(mutate, text)
    check(rc == 2, "exit status %d, stdout %r, stderr %r" % (rc, out, err))
    for line in lines:
        check(line in err.splitlines(), "no line %r in:\n%s" % (line, err))
    return err


def scenario_check_config_missing_binary():
    """An allowed binary that does not exist, and one that cannot run."""
    def mutate(n, doc):
        plain = os.path.join(n.dir, "not-executable")
        open(plain, "w").close()
        doc["engines"]["allow"] += ["/nonexistent/engine", plain]
        doc["pools"] = [dict(doc["pools"][0], binary="/nonexistent/engine"),
                        dict(doc["pools"][0], id="b", port=free_port(), binary=plain, device_mask="1")]
    err = expect_check_error(mutate, "FILE: pools[0].binary: /nonexistent/engine: No such file or directory")
    check("FILE: pools[1].binary: " in err and "is not executable" in err, err)


def scenario_check_config_missing_model():
    def mutate(n, doc):
        doc["pools"][0]["model_path"] = os.path.join(n.dir, "missing.gguf")
        doc["pools"].append(dict(doc["pools"][0], id="b", port=free_port(), device_mask="1",
                                 model_path="/etc/hostname"))
    err = expect_check_error(mutate)
    check(re.search(r"^FILE: pools\[0\]\.model_path: .*missing\.gguf: No such file or directory$",
                    err, re.M), err)
    check(re.search(r"^FILE: pools\[1\]\.model_path: /etc/hostname is not in models\.allow", err, re.M),
          err)


def scenario_check_config_vram():
    """64 GiB on a 24 GiB GPU is an error; more than is free (23 GiB) but
    less than the total only a warning."""
    def too_big(n, doc):
        doc["pools"][0]["vram_required_bytes"] = 64 << 30
    err = expect_check_error(too_big)
    check(re.search(r"^FILE: pools\[0\]: insufficient VRAM: need 64\.\d GiB.* on GPU0", err, re.M), err)

    def tight(n, doc):
        doc["pools"][0]["vram_required_bytes"] = (23 << 30) + (1 << 29)
        doc["gpu"]["headroom_bytes"] = 0
    rc, out, err = check_config_output(tight)
    check(rc == 0 and "ok (1 pools" in out and "FILE: warning: pools[0]: insufficient VRAM" in err,
          "status %d, %r, %r" % (rc, out, err))


def scenario_check_config_bind():
    """A non-loopback bind without a token: a start refuses it, so does the check."""
    def mutate(n, doc):
        doc["bind"] = "0.0.0.0:%d" % free_port()
    err = expect_check_error(mutate)
    check(re.search(r"^FILE: bind: 0\.0\.0\.0:\d+ is not a loopback address, and there is no API token",
                    err, re.M), err)

    def with_token(n, doc):
        token = os.path.join(n.dir, "token")
        with open(token, "w") as f:
            f.write("s3cret-token-0123456789abcdef\n")
        os.chmod(token, 0o600)
        doc["bind"] = "0.0.0.0:%d" % free_port()
        doc["api"] = {"token_file": token}
    rc, out, err = check_config_output(with_token)
    check(rc == 0, "with a token: status %d, %r" % (rc, err))


def scenario_check_config_all_errors():
    """Every error in one run, a did-you-mean for a near key, and the
    count at the end."""
    def mutate(n, doc):
        good = doc["pools"][0]
        doc["pools"] = [dict(good, port=0), dict(good, id="b", port=free_port(), device_mask="GPU7", slot=2),
                        dict(good, id="c", port=free_port(), device_mask="1", binary="/usr/bin/env")]
        doc["gpu"]["headroom_byte"] = 1
    expect_check_error(mutate,
                       "FILE: gpu.headroom_byte: unknown key (did you mean \"headroom_bytes\"?)",
                       "FILE: pools[0].port: must be 1..65535, got 0",
                       "FILE: pools[1].slot: unknown key (did you mean \"slots\"?)",
                       "FILE: pools[1].device_mask: GPU7 is not a known device",
                       "FILE: pools[2].binary: /usr/bin/env is not in engines.allow",
                       "FILE: 5 errors")


def scenario_check_config_syntax():
    expect_check_error(None, "FILE:3:13: unexpected token near ','",
                       text='{\n  "bind": "127.0.0.1:0",\n  "pools": [,]\n}\n')


def engine_log(n, pool_id, replica="r0"):
    return os.path.join(n.dir, "run", "engine-%s_%s.log" % (pool_id, replica))


def append_lines(path, lines):
    with open(path, "a") as f:
        f.write("".join(l + "\n" for l in lines))


class LogFollower:
    """GET .../logs?follow=true over the daemon's socket, read as it comes."""

    def __init__(self, n, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(READY_TIMEOUT)
        self.sock.connect(n.daemon.socket)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
        self.data = b""

    def wait_for(self, text, what):
        """Reads until text is in what came (chunk framing included)."""
        while text.encode() not in self.data:
            try:
                got = self.sock.recv(65536)
            except socket.timeout:
                raise Failure("timed out waiting for %s; got %r" % (what, self.data[-500:]))
            if not got:
                raise Failure("the daemon closed the follow before %s; got %r" % (what, self.data[-500:]))
            self.data += got

    def close(self):
        self.sock.close()


def scenario_logs_tail():
    with Node() as n:
        n.preload("p", n.prepared())
        log = engine_log(n, "p")
        append_lines(log, ["line-%d" % i for i in range(150)])
        path = "/v2/pools/p/replicas/r0/logs"
        status, headers, data = n.request("GET", path + "?tail=3", via="unix")
        check(status == 200 and headers.get("Content-Type", "").startswith("text/plain"),
              "%d %r" % (status, headers))
        check(data == b"line-147\nline-148\nline-149\n", repr(data))
        status, _, data = n.request("GET", path, via="unix")
        lines = data.decode().splitlines()
        check(status == 200 and len(lines) == 100 and lines[-1] == "line-149"
              and lines[0] == "line-50", "default tail: %d %r" % (status, lines[:3]))
        check(n.request("GET", path + "?tail=0", via="unix")[2] == b"", "tail=0")
        status, headers, data = n.request("HEAD", path + "?tail=3&follow=true", via="unix")
        check(status == 200 and data == b"" and headers.get("Content-Length") == "27",
              "HEAD: %d %r %r" % (status, headers, data))
        check_error(*n.request("GET", path + "?tail=10001", via="unix"), 400, "BAD_REQUEST")
        check_error(*n.request("GET", path + "?tail=x", via="unix"), 400, "BAD_REQUEST")
        check_error(*n.request("GET", path + "?follow=maybe", via="unix"), 400, "BAD_REQUEST")
        check_error(*n.request("GET", "/v2/pools/p/replicas/r9/logs", via="unix"), 404, "NOT_FOUND")
        check_error(*n.request("GET", "/v2/pools/nope/replicas/r0/logs", via="unix"), 404,
                    "POOL_NOT_FOUND")
        n.stop()


def scenario_logs_follow():
    """Lines written after the request arrive; a copy-then-truncate
    rotation is followed."""
    with Node() as n:
        n.preload("p", n.prepared())
        log = engine_log(n, "p")
        append_lines(log, ["before-1", "before-2"])
        f = LogFollower(n, "/v2/pools/p/replicas/r0/logs?tail=1&follow=true")
        try:
            f.wait_for("before-2\n", "the tail")
            check(b"200 OK" in f.data and b"chunked" in f.data.lower(), repr(f.data[:300]))
            check(b"before-1" not in f.data, "tail=1 sent more: %r" % f.data)
            append_lines(log, ["after-%d" % i for i in range(3)])
            f.wait_for("after-2\n", "lines written after the request")
            # logrotate's copytruncate: the live file is cut to 0
            shutil.copy(log, log + ".1")
            os.truncate(log, 0)
            append_lines(log, ["rotated-1"])
            f.wait_for("rotated-1\n", "a line after the rotation")
        finally:
            f.close()
        # a follow still open when the daemon stops ends with it
        g = LogFollower(n, "/v2/pools/p/replicas/r0/logs?tail=1&follow=true")
        try:
            g.wait_for("rotated-1\n", "the tail")
            n.stop()
            try:
                while g.sock.recv(65536):
                    pass
            except socket.timeout:
                raise Failure("the follow outlived the daemon")
        finally:
            g.close()


def daemon_fds(n):
    return len(os.listdir("/proc/%d/fd" % n.daemon.proc.pid))


def wait_fds(n, pred, what):
    deadline = time.monotonic() + READY_TIMEOUT
    while not pred(daemon_fds(n)):
        if time.monotonic() > deadline:
            raise Failure("timed out waiting for %s: %d fds" % (what, daemon_fds(n)))
        time.sleep(0.05)


def scenario_logs_follow_gone():
    """A client that leaves a quiet engine's follow frees everything at
    once: the daemon's descriptors come back to what they were."""
    with Node() as n:
        n.preload("p", n.prepared())
        append_lines(engine_log(n, "p"), ["only line"])
        n.get("/v2/pools/p")
        before = daemon_fds(n)
        followers = [LogFollower(n, "/v2/pools/p/replicas/r0/logs?follow=true") for _ in range(3)]
        for f in followers:
            f.wait_for("only line\n", "the tail")
        check(daemon_fds(n) >= before + 3, "%d fds with three followers, %d before"
              % (daemon_fds(n), before))
        for f in followers:
            f.close()
        wait_fds(n, lambda fds: fds <= before, "the followers' descriptors to close (%d before)" % before)
        n.stop()


def scenario_logs_slow_client():
    """A follower whose client does not read is cut off once 1 MiB waits
    for it, not buffered without bound."""
    with Node() as n:
        n.preload("p", n.prepared())
        log = engine_log(n, "p")
        append_lines(log, ["first"])
        n.get("/v2/pools/p")
        before = daemon_fds(n)
        f = LogFollower(n, "/v2/pools/p/replicas/r0/logs?follow=true")
        try:
            f.wait_for("first\n", "the tail")
            check(daemon_fds(n) > before, "no descriptor for the follower")
            line = "x" * 1000
            for _ in range(64):            # 64 MiB, far more than socket buffers hold
                append_lines(log, [line] * 1024)
                if daemon_fds(n) <= before:
                    break
            wait_fds(n, lambda fds: fds <= before, "the slow client to be cut off")
        finally:
            f.close()
        n.stop()


def scenario_logs_access():
    """Engine logs are not for an open TCP listener: 403 without a token
    (the socket serves them), 401 without the token when there is one."""
    with Node() as n:
        n.preload("p", n.prepared())
        path = "/v2/pools/p/replicas/r0/logs"
        err = check_error(*n.request("GET", path, via="tcp"), 403, "READ_ONLY")
        check("Unix socket" in err["error"], err["error"])
        check_error(*n.request("GET", path + "?follow=true", via="tcp"), 403, "READ_ONLY")
        check(n.request("GET", path, via="unix")[0] == 200, "socket")
        n.stop()
    token = "e2e-t0ken"
    with Node(env={"LLORCH_API_TOKEN": token}) as n:
        n.preload("p", n.prepared())
        check_error(*n.request("GET", path, via="tcp"), 401, "UNAUTHORIZED")
        check(n.request("GET", path, headers={"Authorization": "Bearer " + token}, via="tcp")[0] == 200,
              "TCP with the token")
        n.stop()


def scenario_leases():
    with Node() as n:
        n.preload("l", n.prepared(slots=2, flags=["--parallel", "2"]))
        path = "/v2/pools/l/leases"
        first = json_body(*n.request("POST", path), 201)
        check(set(first) >= {"lease_id", "replica_id", "url", "expires_at"}, repr(first))
        check(len(first["lease_id"]) == 32 and first["replica_id"] == "r0", repr(first))
        check(first["expires_at"] > time.time() * 1000 + 500_000, "default TTL is 10 min: %r" % first)
        second = json_body(*n.request("POST", path, {"ttl_ms": 60000}), 201)
        check(second["lease_id"] != first["lease_id"], "a lease id handed out twice")
        err = check_error(*n.request("POST", path), 429, "NO_FREE_SLOT")
        check("no free slot" in err["error"], err["error"])
        snap = n.get("/v2/pools/l")
        check(snap["active_leases"] == 2 and snap["slots_free"] == 0, repr(snap))
        renewed = json_body(*n.request("POST", "%s/%s/renew" % (path, second["lease_id"]),
                                       {"ttl_ms": 120000}), 200)
        check(renewed["expires_at"] > second["expires_at"], "renew did not extend: %r" % renewed)
        status, _, data = n.request("DELETE", "%s/%s" % (path, first["lease_id"]))
        check(status == 204 and data == b"", "release: %d %r" % (status, data))
        check_error(*n.request("DELETE", "%s/%s" % (path, first["lease_id"])), 404, "LEASE_NOT_FOUND")
        check_error(*n.request("POST", "%s/%s/renew" % (path, first["lease_id"])), 404, "LEASE_NOT_FOUND")
        check_error(*n.request("DELETE", "%s/not-a-lease" % path), 400, "BAD_REQUEST")
        check_error(*n.request("POST", path, {"ttl_ms": "long"}), 400, "INVALID_FIELD")
        check_error(*n.request("POST", path, {"ttl_ms": 0}), 400, "INVALID_FIELD")
        check_error(*n.request("POST", path, b"{oops"), 400, "INVALID_JSON")
        check_error(*n.request("POST", "/v2/pools/nope/leases"), 404, "POOL_NOT_FOUND")
        snap = n.get("/v2/pools/l")
        check(snap["active_leases"] == 1 and snap["slots_free"] == 1, repr(snap))
        # A short lease expires by itself.
        json_body(*n.request("POST", path, {"ttl_ms": 200}), 201)
        n.wait_pool("l", lambda s, b: b["active_leases"] == 1, "the short lease to expire")
        metrics = n.request("GET", "/metrics")[2].decode()
        check("pool_managerd_leases_expired_total" in metrics, "no expiry counter")
        n.stop()


def scenario_lease_not_ready():
    with Node() as n:
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=n.request("POST", "/v2/pools/nr/preload", n.prepared(flags=["--never-ready"]))))
        t.start()
        n.daemon.wait_for(lambda o: o.get("msg") == "engine spawned", "the engine spawned")
        check_error(*n.request("POST", "/v2/pools/nr/leases"), 503, "NOT_READY")
        json_body(*n.request("DELETE", "/v2/pools/nr"), 202)
        t.join(READY_TIMEOUT)
        n.stop()


def scenario_drain():
    """Draining refuses new leases at once and stops the engine when the
    last lease ends."""
    with Node() as n:
        got = n.preload("d", n.prepared(slots=2))
        lease = json_body(*n.request("POST", "/v2/pools/d/leases"), 201)
        info = json_body(*n.request("POST", "/v2/pools/d/drain", {"deadline_ms": 60000}), 202)
        check(info["pool_id"] == "d" and info["draining"] and info["active_leases"] == 1, repr(info))
        again = json_body(*n.request("POST", "/v2/pools/d/drain", {"deadline_ms": 5}), 202)
        check(again["already_running"] and again["deadline_at"] == info["deadline_at"], repr(again))
        check(n.get("/v2/pools/d")["draining"], "not draining")
        err = check_error(*n.request("POST", "/v2/pools/d/leases"), 409, "POOL_DRAINING")
        check("pool d is draining" in err["error"], err["error"])
        check(pid_alive(got["pid"]), "the engine stopped while a lease was held")
        warn = n.daemon.wait_for(lambda o: o.get("level") == "warn" and o.get("pool_id") == "d"
                                 and "active_leases" in o, "a warning with the lease count")
        check(warn["active_leases"] == 1, "warning %r" % warn)
        status, _, _ = n.request("DELETE", "/v2/pools/d/leases/%s" % lease["lease_id"])
        check(status == 204, "release %d" % status)
        snap = n.wait_pool("d", lambda s, b: not b["live"] and not b["draining"], "drained")
        check(not snap["ready"] and not pid_alive(got["pid"]), repr(snap))
        check(not os.path.exists(got["handoff_path"]), "handoff left after drain")
        check_error(*n.request("POST", "/v2/pools/d/drain", {}), 409, "CONFLICT")
        check_error(*n.request("POST", "/v2/pools/d/drain", {"deadline_ms": -1}), 400, "INVALID_FIELD")
        check_error(*n.request("POST", "/v2/pools/d/drain", {"deadline": 1}), 400, "INVALID_FIELD")
        metrics = n.request("GET", "/metrics")[2].decode()
        check('pool_managerd_drains_total{pool_id="d"' in metrics, "no drain outcome metric")
        n.stop()


def scenario_drain_deadline():
    with Node() as n:
        got = n.preload("dd", n.prepared())
        json_body(*n.request("POST", "/v2/pools/dd/leases"), 201)
        json_body(*n.request("POST", "/v2/pools/dd/drain", {"deadline_ms": 300}), 202)
        done = n.daemon.wait_for(lambda o: o.get("pool_id") == "dd" and o.get("msg") == "drain finished",
                                 "the drain outcome line")
        check(done["force_stopped"] in (True, "true") and int(done.get("leases_left", 0)) == 1,
              repr(done))
        snap = n.wait_pool("dd", lambda s, b: not b["live"], "stopped")
        check(snap["active_leases"] == 0 and not pid_alive(got["pid"]), repr(snap))
        n.stop()


def scenario_preflight():
    """Not enough free VRAM fails the preload fast, spawning nothing."""
    gpu = {"backend": "fake", "require": True, "headroom_bytes": 512 << 20,
           "devices": [{"index": 0, "uuid": "GPU-small", "name": "Small", "compute_capability": "8.6",
                        "vram_total_bytes": 2 << 30, "vram_free_bytes": 1 << 30}]}
    with Node(extra={"gpu": gpu}) as n:
        big = os.path.join(n.dir, "big.gguf")
        with open(big, "wb") as f:
            f.truncate(4 << 30)           # sparse: the size is what counts
        body = n.prepared(model_path=big)
        err = check_error(*n.request("POST", "/v2/pools/big/preload", json.dumps(body)), 503,
                          "PREFLIGHT_FAILED")
        check("insufficient VRAM: need" in err["error"] and "on GPU0" in err["error"], err["error"])
        check(not any(o.get("msg") == "engine spawned" for o in n.daemon.log_objects()),
              "an engine was spawned")
        snap = n.get("/v2/pools/big")
        check(not snap["ready"] and "insufficient VRAM" in (snap["last_error"] or ""), repr(snap))
        n.stop()
        check(not any(o.get("msg") == "engine spawned" for o in n.daemon.log_objects()),
              "an engine was spawned")


def scenario_split():
    """split auto on unequal GPUs: planned from VRAM, shown, passed on."""
    gpu = {"backend": "fake", "require": True, "headroom_bytes": 0,
           "devices": [{"index": 0, "uuid": "GPU-big", "name": "Big", "compute_capability": "8.9",
                        "vram_total_bytes": 24 << 30, "vram_free_bytes": 24 << 30},
                       {"index": 1, "uuid": "GPU-small", "name": "Small", "compute_capability": "8.6",
                        "vram_total_bytes": 12 << 30, "vram_free_bytes": 12 << 30}]}
    pool = config_pool("sp", free_port(), "--tensor-split", "{tensor_split}", mask="0,1")
    pool["split"] = "auto"
    with Node([pool], extra={"gpu": gpu}) as n:
        snap = n.wait_pool("sp", lambda s, b: b["ready"], "ready")
        check(snap["tensor_split"] == "0.6667,0.3333", "split %r" % snap["tensor_split"])
        check([d["index"] for d in snap["devices"]] == [0, 1], repr(snap["devices"]))
        with open("/proc/%d/cmdline" % snap["pid"], "rb") as f:
            argv = f.read().split(b"\0")
        check(b"0.6667,0.3333" in argv, "the engine's argv lacks the split: %r" % argv)
        n.stop()


def scenario_auth():
    """With a token, every route but /health and /metrics needs it."""
    token = "s3cret-token"
    with Node(env={"LLORCH_API_TOKEN": token}, extra={"bind": "0.0.0.0:0"}) as n:
        for path in ("/v2/pools", "/v2/pools/x", "/v2/devices", "/nope", "/v2/node"):
            status, headers, data = n.request("GET", path)
            check_error(status, headers, data, 401, "UNAUTHORIZED")
            check(headers.get("WWW-Authenticate", "").startswith("Bearer"), "no WWW-Authenticate")
        for value in ("Bearer wrong", "Bearer " + token + "x", "Bearer " + token[:-1], token,
                      "Basic " + token, "Bearer"):
            check_error(*n.request("GET", "/v2/pools", headers={"Authorization": value}), 401,
                        "UNAUTHORIZED")
        good = {"Authorization": "Bearer " + token}
        check(json_body(*n.request("GET", "/v2/pools", headers=good), 200) == {"pools": []}, "pools")
        check_error(*n.request("POST", "/v2/pools/x/preload", b"{}", via="tcp"), 401, "UNAUTHORIZED")
        json_body(*n.request("GET", "/health"), 200)
        check(n.request("GET", "/metrics")[0] == 200, "/metrics needs no token")
        node = json_body(*n.request("GET", "/v2/node", headers=good), 200)
        check(node.get("profile") == "home", repr(node))
        # The token never reaches the log.
        n.stop()
        check(not any(token in line for line in n.daemon.lines), "the token was logged")


def scenario_engine_metrics():
    """One scrape of the node carries the engine's own metrics, relabelled,
    and the snapshot its smoothed throughput."""
    pool = config_pool("em", free_port(), "--metrics")
    pool["engine_metrics"] = True
    with Node([pool]) as n:
        n.wait_pool("em", lambda s, b: b["ready"], "ready")
        deadline = time.monotonic() + 60
        while True:
            text = n.request("GET", "/metrics")[2].decode()
            lines = [l for l in text.splitlines() if l.startswith("llamacpp_") and 'pool_id="em"' in l]
            if lines:
                break
            check(time.monotonic() < deadline, "no engine metrics after 60 s")
            time.sleep(0.2)
        check(all('replica_id="r0"' in l for l in lines), "not relabelled: %r" % lines[:3])
        promtool = shutil.which("promtool")
        if promtool:
            import subprocess
            p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
            check(p.returncode == 0, "promtool: %s" % (p.stdout.decode() + p.stderr.decode()))
        snap = n.wait_pool("em", lambda s, b: b.get("perf_tokens_per_s"), "perf hints", timeout=60)
        check(40 <= snap["perf_tokens_per_s"] <= 160, "tokens/s %r (the fake engine makes 80)"
              % snap["perf_tokens_per_s"])
        n.stop()


def scenario_reload():
    """Reload to another model answers 200 once the new engine is ready;
    a model that is already running is a no-op; bad requests are 400."""
    with Node() as n:
        first = n.preload("rl", n.prepared(flags=["-m", n.model]))
        other = os.path.join(n.dir, "other.gguf")
        shutil.copy(n.model, other)
        got = json_body(*n.request("POST", "/v2/pools/rl/reload",
                                   {"model_path": other, "engine_version": "fake-2"}), 200)
        check(got["ok"] and got["strategy"] == "drain-first" and got["model_id"] == "other.gguf", repr(got))
        snap = n.get("/v2/pools/rl")
        check(snap["ready"] and snap["engine_version"] == "fake-2" and snap["pid"] != first["pid"], repr(snap))
        again = json_body(*n.request("POST", "/v2/pools/rl/reload",
                                     {"model_path": other, "engine_version": "fake-2"}), 200)
        check(again["noop"], "reloading what runs is not a no-op: %r" % again)
        for body, words in (({}, "exactly one"), ({"model_path": other, "strategy": "yolo"}, "strategy"),
                            ({"model_path": other, "flags": "x"}, "flags"), ({"model_path": 1}, "model_path"),
                            ({"model_path": other, "color": 1}, "unknown field")):
            err = check_error(*n.request("POST", "/v2/pools/rl/reload", body), 400, "INVALID_FIELD")
            check(words in err["error"], "%r: %r" % (body, err["error"]))
        err = check_error(*n.request("POST", "/v2/pools/rl/reload",
                                     {"model_path": os.path.join(n.dir, "missing.gguf")}), 422, "STAGE_FAILED")
        check(n.get("/v2/pools/rl")["ready"], "a failed staging touched the pool")
        check_error(*n.request("POST", "/v2/pools/none/reload", {"model_path": other}), 404, "POOL_NOT_FOUND")
        err = check_error(*n.request("POST", "/v2/pools/rl/reload", {"model_path": "/etc/hostname"}),
                          403, "MODEL_NOT_ALLOWED")
        check("/etc/hostname" in err["error"], err["error"])
        n.stop()


def scenario_reload_new_model_ref():
    """The llama-orch reload body, {"new_model_ref": ...}, is a model_ref;
    exactly one of model_path, model_ref and new_model_ref is taken."""
    with Node() as n:
        first = n.preload("nr", n.prepared())
        got = json_body(*n.request("POST", "/v2/pools/nr/reload", {"new_model_ref": "org/tiny-2"}), 200)
        check(got["ok"] and not got["noop"] and got["model_id"] == "org/tiny-2", repr(got))
        snap = n.get("/v2/pools/nr")
        check(snap["ready"] and snap["model_id"] == "org/tiny-2" and snap["pid"] != first["pid"],
              repr(snap))
        again = json_body(*n.request("POST", "/v2/pools/nr/reload", {"new_model_ref": "org/tiny-2"}),
                          200)
        check(again["noop"], "the same reference again is not a no-op: %r" % again)
        # model_ref is the same thing under our name
        same = json_body(*n.request("POST", "/v2/pools/nr/reload", {"model_ref": "org/tiny-2"}), 200)
        check(same["noop"], repr(same))
        other = os.path.join(n.dir, "other.gguf")
        shutil.copy(n.model, other)
        three = "exactly one of model_path, model_ref and new_model_ref"
        for body, words in (({}, three),
                            ({"new_model_ref": None}, three),
                            ({"new_model_ref": "a", "model_ref": "b"}, three),
                            ({"new_model_ref": "a", "model_path": other}, three),
                            ({"new_model_ref": "a", "model_ref": "b", "model_path": other}, three),
                            ({"new_model_ref": 1}, "new_model_ref: must be a non-empty string"),
                            ({"new_model_ref": ""}, "new_model_ref: must be a non-empty string"),
                            ({"new_model_ref": "a b"}, "new_model_ref: must be a reference without spaces"),
                            ({"new_model_ref": "a", "sha256": "0" * 64}, "sha256"),
                            ({"new_model_ref": "a", "colour": 1}, 'unknown field "colour"')):
            err = check_error(*n.request("POST", "/v2/pools/nr/reload", body), 400, "INVALID_FIELD")
            check(words in err["error"], "%r: %r" % (body, err["error"]))
        check(n.get("/v2/pools/nr")["model_id"] == "org/tiny-2", "a refused reload changed the pool")
        check_error(*n.request("POST", "/v2/pools/none/reload", {"new_model_ref": "x"}), 404,
                    "POOL_NOT_FOUND")
        n.stop()


MOVING = ("uptime_s", "last_heartbeat", "perf_tokens_per_s", "first_token_ms")


def stable(snap):
    """A snapshot without what moves by itself (uptime, heartbeats, what
    the engines' metrics say)."""
    out = {k: v for k, v in snap.items() if k not in MOVING}
    out["replicas"] = [{k: v for k, v in rep.items() if k not in MOVING} for rep in snap["replicas"]]
    return out


def scenario_status_post():
    """POST /pools/{id}/status (the llama-orch orchestrator's status query, body
    {}) and POST /v2/pools/{id}/status answer the GET snapshot; a read,
    open over TCP without a token; the methods of the paths are right."""
    with Node() as n:
        n.preload("p", n.prepared(slots=3))
        lease = json_body(*n.request("POST", "/v2/pools/p/leases"), 201)
        want = n.get("/v2/pools/p")
        for path in ("/pools/p/status", "/v2/pools/p/status"):
            for body in ({}, b"", {"verbose": True, "pool_id": "ignored"}, b"  {}  "):
                for via in ("tcp", "unix"):
                    got = json_body(*n.request("POST", path, body, via=via), 200)
                    check(stable(got) == stable(want), "POST %s %r via %s: %r, GET says %r"
                          % (path, body, via, got, want))
            # what llama-orch's PoolStatus needs, exactly typed
            check(isinstance(got["pool_id"], str) and got["pool_id"] == "p", repr(got))
            for key in ("live", "ready"):
                check(got[key] is True, "%s: %r" % (key, got[key]))
            for key, value in (("active_leases", 1), ("slots_total", 3), ("slots_free", 2)):
                check(type(got[key]) is int and got[key] == value and -2**31 <= got[key] < 2**31,
                      "%s: %r" % (key, got[key]))
            json_body(*n.request("GET", path), 200)
            status, headers, data = n.request("HEAD", path)
            check(status == 200 and data == b"", "HEAD %s: %d %r" % (path, status, data))
            status, headers, data = n.request("PUT", path, {})
            check_error(status, headers, data, 405, "METHOD_NOT_ALLOWED")
            check(headers.get("Allow") == "GET, HEAD, POST", "Allow %r" % headers.get("Allow"))
            for body, code in ((b"{not json", "INVALID_JSON"), (b"[1]", "INVALID_JSON"),
                               (b'"x"', "INVALID_JSON"), (b'{"a": 1, "a": 2}', "INVALID_JSON")):
                check_error(*n.request("POST", path, body), 400, code)
        # The answer follows changes at once.
        n.request("DELETE", "/v2/pools/p/leases/%s" % lease["lease_id"])
        got = json_body(*n.request("POST", "/pools/p/status", {}), 200)
        check(got["active_leases"] == 0 and got["slots_free"] == 3, repr(got))
        check_error(*n.request("POST", "/pools/nope/status", {}), 404, "POOL_NOT_FOUND",
                    "pool nope not found")
        check_error(*n.request("POST", "/v2/pools/nope/status", {}), 404, "POOL_NOT_FOUND")
        check_error(*n.request("POST", "/pools/-bad/status", {}), 400, "BAD_REQUEST")
        check_error(*n.request("POST", "/pools/p/status/x", {}), 404, "NOT_FOUND")
        # Not a change: no socket line for it, nothing counted as one.
        n.stop()
        lines = [o for o in n.daemon.log_objects() if o.get("msg") == SOCKET_LINE
                 and o.get("method") == "POST" and o.get("path", "").endswith("/status")]
        check(not lines, "status queries logged as changes: %r" % lines[:2])


def scenario_snapshot_fresh():
    """A polled snapshot (served from cache) shows a crash at once."""
    with Node() as n:
        got = n.preload("f", n.prepared())
        for _ in range(3):
            check(n.get("/v2/pools/f")["ready"], "not ready")
        os.kill(got["pid"], signal.SIGKILL)
        n.daemon.wait_for(lambda o: o.get("msg") == "engine exited" and o.get("pool_id") == "f",
                          "the exit noticed")
        snap = n.get("/v2/pools/f")
        check(not snap["ready"] and snap["crash_count"] == 1, "stale snapshot after a crash: %r" % snap)
        check(not n.get("/v2/pools")["pools"][0]["ready"], "stale list after a crash")
        n.stop()


def scenario_stale_pid_file():
    """A PID file naming another program is not adopted, and that program
    is left alone."""
    import subprocess
    other = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        n = Node([config_pool("st", free_port())], start=False)
        run = os.path.join(n.dir, "run")
        os.makedirs(run)
        with open(os.path.join(run, "st_r0.pid"), "w") as f:
            f.write("%d\n" % other.pid)
        n.daemon = Daemon("--config", n.config_path, env=e2e.clean_env())
        with n:
            started = n.daemon.wait_for(lambda o: o.get("msg") in ("engine adopted", "engine spawned"),
                                        "the engine started")
            check(started["msg"] == "engine spawned" and started["pid"] != other.pid, repr(started))
            n.wait_pool("st", lambda s, b: b["ready"], "ready")
            n.stop()
            check(other.poll() is None, "the unrelated process was killed")
    finally:
        other.kill()
        other.wait()


def scenario_driver_error_spreads():
    """A driver error in one engine's output restarts every pool on that
    GPU, and no other."""
    a = config_pool("da", free_port(), mask="0")
    b = config_pool("db", free_port(), mask="0")
    c = config_pool("dc", free_port(), mask="1")
    a["shared_devices"] = b["shared_devices"] = True
    with Node([a, b, c]) as n:
        pids = {p: n.wait_pool(p, lambda s, body: body["ready"], p + " ready")["pid"]
                for p in ("da", "db", "dc")}
        with open(os.path.join(n.dir, "run", "engine-da_r0.log"), "a") as f:
            f.write("NVRM: Xid (PCI:0000:01:00): 79, GPU has fallen off the bus.\n")
        n.daemon.wait_for(lambda o: o.get("msg") == "driver error on a shared GPU: restarting"
                          and o.get("pool_id") == "db", "the shared pool reset")
        for p in ("da", "db"):
            n.wait_pool(p, lambda s, body: body["ready"] and body["pid"] != pids[p],
                        p + " restarted and ready")
        check(n.get("/v2/pools/db")["replicas"][0]["driver_resets"] == 1, "db's reset is not counted")
        dc = n.get("/v2/pools/dc")
        check(dc["pid"] == pids["dc"] and dc["restart_count"] == 0, "the pool on GPU1 was touched: %r" % dc)
        check(n.get("/v2/pools/da")["crash_count"] >= 1, "the failing engine's crash is not counted")
        n.stop()


def scenario_client_gone_before_answer():
    """A client that hangs up while its preload waits costs nothing: the
    answer is dropped and the daemon serves on."""
    with Node() as n:
        body = json.dumps(n.prepared(flags=["--load-ms", "800"])).encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(n.daemon.socket)
        sock.sendall(b"POST /v2/pools/gone/preload HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body)
        n.daemon.wait_for(lambda o: o.get("msg") == "engine spawned", "the engine spawned")
        sock.close()
        n.wait_pool("gone", lambda s, b: b["ready"], "ready anyway")
        json_body(*n.request("GET", "/health"), 200)
        n.stop()


def scenario_keep_engines_pending_reload():
    """--keep-engines with a reload still waiting (its drain holds for a
    lease): the daemon exits cleanly, the waiting request is let go, and
    the engine is left running."""
    with Node(args=["--keep-engines"]) as n:
        pid = n.preload("k", n.prepared())["pid"]
        try:
            json_body(*n.request("POST", "/v2/pools/k/leases"), 201)
            result = {}

            def reload():
                try:
                    result["reply"] = n.request("POST", "/v2/pools/k/reload",
                                                {"model_path": n.model, "engine_version": "fake-2",
                                                 "drain_deadline_ms": 60000})
                except (OSError, http.client.HTTPException) as e:
                    result["error"] = e

            t = threading.Thread(target=reload)
            t.start()
            n.daemon.wait_for(lambda o: o.get("msg") == "state changed" and o.get("state") == "reloading",
                              "the reload waiting for its drain")
            n.stop()   # exit status 0: nothing leaked (sanitizer builds check)
            t.join(READY_TIMEOUT)
            check(not t.is_alive(), "the waiting reload hangs after shutdown")
            if "reply" in result:
                check(result["reply"][0] >= 500, "answered %r" % (result["reply"],))
            check(pid_alive(pid), "--keep-engines: the engine was stopped")
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- who may change things (docs/api.md, "Access") ------------------------------

SOCKET_LINE = "change requested through the API socket"
ROOT_LINE = "starting an engine as root: engines.user is not set"
LEASE = "0123456789abcdef0123456789abcdef"

# Every changing route, with a body where it takes one.
CHANGES = [
    ("POST", "/v2/pools/p/preload", "prepared"),
    ("POST", "/pools/p/preload", "prepared"),
    ("POST", "/v2/pools/p/leases", None),
    ("POST", "/v2/pools/p/leases/%s/renew" % LEASE, None),
    ("DELETE", "/v2/pools/p/leases/%s" % LEASE, None),
    ("POST", "/v2/pools/p/breaker/reset", None),
    ("POST", "/v2/pools/p/restart", None),
    ("POST", "/v2/pools/p/drain", {"deadline_ms": 1000}),
    ("POST", "/v2/pools/p/reload", "reload"),
    ("DELETE", "/v2/pools/p", None),
]

# Read-only routes (GET also as HEAD), and the POST status query.
READS = ["/v2/pools", "/v2/pools/p", "/pools/p/status", "/v2/pools/p/status", "/v2/pools/p/health",
         "/v2/devices", "/v2/node", "/v1/replicasets", "/v1/replicasets?all=true"]
STATUS_POSTS = ["/v2/pools/p/status", "/pools/p/status"]
PUBLIC = ["/health", "/metrics", "/ready"]


def change_body(n, body):
    if body == "prepared":
        return n.prepared()
    if body == "reload":
        return {"model_path": n.model, "engine_version": "fake-2"}
    return body


def unchanged(n, before, headers=None):
    """The pool p is as it was: same engine, no lease, not draining."""
    snap = n.get("/v2/pools/p", headers=headers)
    check(snap["pid"] == before["pid"] and snap["restart_count"] == before["restart_count"]
          and snap["active_leases"] == 0 and not snap["draining"]
          and snap["engine_version"] == before["engine_version"]
          and len(snap["replicas"]) == len(before["replicas"]),
          "a refused request changed the pool: %r" % snap)
    check([p["pool_id"] for p in n.get("/v2/pools", headers=headers)["pools"]] == ["p"],
          "a refused request added a pool")


def walk_changes(n, send, what, headers=None):
    """Every changing route once, answered as it should be; send(method,
    path, body) -> (status, headers, data). headers: for the polls."""
    other = os.path.join(n.dir, "other.gguf")
    shutil.copy(n.model, other)

    def ok(method, path, body, want):
        status, _, data = send(method, path, body)
        check(status == want, "%s: %s %s answered %d, expected %d: %r"
              % (what, method, path, status, want, data[:300]))
        return json.loads(data) if data else None

    ok("POST", "/v2/pools/q/preload", n.prepared(), 200)
    ok("POST", "/pools/q2/preload", n.prepared(), 200)
    lease = ok("POST", "/v2/pools/q/leases", {"ttl_ms": 60000}, 201)
    ok("POST", "/v2/pools/q/leases/%s/renew" % lease["lease_id"], None, 200)
    ok("DELETE", "/v2/pools/q/leases/%s" % lease["lease_id"], None, 204)
    ok("POST", "/v2/pools/q/breaker/reset", None, 200)
    pid = n.get("/v2/pools/q", headers=headers)["pid"]
    ok("POST", "/v2/pools/q/restart", None, 202)
    n.wait_pool("q", lambda s, b: s == 200 and b["ready"] and b["pid"] not in (0, pid),
                "q restarted", headers=headers)
    got = ok("POST", "/v2/pools/q/reload", {"model_path": other, "engine_version": "fake-2"}, 200)
    check(got["ok"] and got["model_id"] == "other.gguf", "%s: reload %r" % (what, got))
    ok("POST", "/v2/pools/q2/drain", {"deadline_ms": 1000}, 202)
    ok("DELETE", "/v2/pools/q2", None, 202)
    n.wait_pool("q2", lambda s, b: s == 404, "q2 forgotten", headers=headers)
    return 10   # changing requests sent


def socket_lines(n):
    return [o for o in n.daemon.log_objects() if o.get("msg") == SOCKET_LINE]


def scenario_access_tcp_read_only():
    """No token: over TCP /health, /metrics and every read answer; every
    change is 403 READ_ONLY (after 404/405), naming the socket and the
    token settings, and changes nothing. Through the socket all of it works."""
    with Node() as n:
        listening = [o for o in n.daemon.log_objects() if o.get("msg") == "listening"][0]
        check(listening.get("tcp_access") == "read-only", repr(listening))
        n.preload("p", n.prepared())
        before = n.get("/v2/pools/p")
        for path in PUBLIC + READS:
            for method in ("GET", "HEAD"):
                status, _, data = n.request(method, path, via="tcp")
                # /ready may not exist (404): it is never refused
                check(status == 200 or (path == "/ready" and status not in (401, 403)),
                      "TCP %s %s: %d %r" % (method, path, status, data[:200]))
        for path in STATUS_POSTS:
            status, _, data = n.request("POST", path, {}, via="tcp")
            check(status not in (401, 403), "TCP POST %s is read-only: %d %r" % (path, status, data[:200]))
        for method, path, body in CHANGES:
            e2e.check_read_only(*n.request(method, path, change_body(n, body), via="tcp"), n.daemon.socket)
        # Route first: an unknown route is 404, a wrong method 405.
        check_error(*n.request("POST", "/v2/nope", {}, via="tcp"), 404, "NOT_FOUND")
        check_error(*n.request("PUT", "/v2/pools/p", {}, via="tcp"), 405, "METHOD_NOT_ALLOWED")
        unchanged(n, before)
        sent = walk_changes(n, lambda m, p, b: n.request(m, p, b, via="unix"), "socket")
        n.stop()
        lines = socket_lines(n)
        # the first preload of p, then the walk
        check(len(lines) == sent + 1 and all(o["uid"] == os.geteuid() and o["level"] == "info"
                                             for o in lines),
              "%d socket lines for %d changes: %r" % (len(lines), sent + 1, lines[:3]))


def scenario_access_tcp_token():
    """A token: over TCP only /health, /metrics (and /ready) answer without
    it; reads and changes need it (401, before routing), and with it every
    change works over TCP. The socket needs none."""
    token = "e2e-t0ken"
    good = {"Authorization": "Bearer " + token}
    with Node(env={"LLORCH_API_TOKEN": token}) as n:
        listening = [o for o in n.daemon.log_objects() if o.get("msg") == "listening"][0]
        check(listening.get("tcp_access") == "token", repr(listening))
        n.preload("p", n.prepared())
        before = n.get("/v2/pools/p", headers=good)
        for path in PUBLIC:
            status, _, data = n.request("GET", path, via="tcp")
            check(status not in (401, 403), "TCP GET %s without the token: %d" % (path, status))
        for path in READS:
            for method in ("GET", "HEAD"):
                status, headers, data = n.request(method, path, via="tcp")
                check(status == 401, "TCP %s %s without the token: %d" % (method, path, status))
                check(n.request(method, path, headers=good, via="tcp")[0] == 200,
                      "TCP %s %s with the token" % (method, path))
        for path in STATUS_POSTS:
            check_error(*n.request("POST", path, {}, via="tcp"), 401, "UNAUTHORIZED")
            check(n.request("POST", path, {}, headers=good, via="tcp")[0] not in (401, 403),
                  "POST %s with the token" % path)
        for method, path, body in CHANGES:
            for headers in (None, {"Authorization": "Bearer wrong"}):
                check_error(*n.request(method, path, change_body(n, body), headers=headers, via="tcp"),
                            401, "UNAUTHORIZED")
        check_error(*n.request("POST", "/v2/nope", {}, via="tcp"), 401, "UNAUTHORIZED")
        unchanged(n, before, headers=good)
        walk_changes(n, lambda m, p, b: n.request(m, p, b, headers=good, via="tcp"), "TCP with the token",
                     headers=good)
        n.stop()
        # only the preload of p came through the socket
        check(len(socket_lines(n)) == 1, "TCP changes logged as socket changes: %r" % socket_lines(n))
        check(not any(token in line for line in n.daemon.lines), "the token was logged")


def scenario_access_socket():
    """With a token configured the socket still takes every route without
    one, whatever Authorization header comes along."""
    token = "e2e-t0ken"
    with Node(env={"LLORCH_API_TOKEN": token}) as n:
        bogus = {"Authorization": "Bearer not-the-token"}
        json_body(*n.request("POST", "/v2/pools/p/preload", n.prepared(), via="unix"), 200)
        for path in ["/health", "/metrics"] + READS:
            check(n.request("GET", path, via="unix")[0] == 200, "GET %s on the socket" % path)
        sent = walk_changes(n, lambda m, p, b: n.request(m, p, b, headers=bogus, via="unix"), "socket",
                            headers={"Authorization": "Bearer " + token})
        for path in STATUS_POSTS:
            check(n.request("POST", path, {}, via="unix")[0] not in (401, 403), "POST %s" % path)
        n.stop()
        lines = socket_lines(n)
        check(len(lines) == sent + 1, "%d socket lines for %d changes" % (len(lines), sent + 1))


def scenario_token_file():
    """api.token_file gives the home profile a token; LLORCH_API_TOKEN wins
    over it; a missing file, or one others may read, is a start error."""
    keep = tempfile.mkdtemp(prefix="pm-tok-")
    try:
        path = os.path.join(keep, "token")
        with open(path, "w") as f:
            f.write("from-the-file\n")
        os.chmod(path, 0o600)
        with Node(extra={"api": {"token_file": path}}) as n:
            check_error(*n.request("GET", "/v2/pools", via="tcp"), 401, "UNAUTHORIZED")
            json_body(*n.request("GET", "/v2/pools", headers={"Authorization": "Bearer from-the-file"},
                                 via="tcp"), 200)
            check_error(*n.request("POST", "/v2/pools/x/leases", headers={"Authorization":
                                   "Bearer from-the-file"}, via="tcp"), 404, "POOL_NOT_FOUND")
            check_error(*n.request("POST", "/v2/pools/x/leases", via="unix"), 404, "POOL_NOT_FOUND")
            n.stop()
            check(not any("from-the-file" in line for line in n.daemon.lines), "the token was logged")
        with Node(extra={"api": {"token_file": path}}, env={"LLORCH_API_TOKEN": "from-env"}) as n:
            check_error(*n.request("GET", "/v2/pools", headers={"Authorization": "Bearer from-the-file"},
                                   via="tcp"), 401, "UNAUTHORIZED")
            json_body(*n.request("GET", "/v2/pools", headers={"Authorization": "Bearer from-env"},
                                 via="tcp"), 200)
            n.stop()
        n = Node(extra={"api": {"token_file": os.path.join(keep, "missing")}}, start=False)
        try:
            objs = e2e.refused_start("--config", n.config_path, want_rc=2)
            check(any("api.token_file" in o["msg"] for o in objs if o["level"] == "error"),
                  "no error naming api.token_file: %r" % objs)
        finally:
            shutil.rmtree(n.dir, ignore_errors=True)
        # A token others may read is refused, with the way out.
        os.chmod(path, 0o644)
        n = Node(extra={"api": {"token_file": path}}, start=False)
        try:
            objs = e2e.refused_start("--config", n.config_path, want_rc=2)
            want = "is open to others (mode 0644): chmod 600 %s" % path
            check(any(want in o["msg"] for o in objs if o["level"] == "error"),
                  "no error saying %r: %r" % (want, objs))
        finally:
            shutil.rmtree(n.dir, ignore_errors=True)
    finally:
        shutil.rmtree(keep, ignore_errors=True)


def scenario_root_engine_warnings():
    """As root without engines.user: a warning at start, and one on every
    request that starts an engine (preload, restart, breaker reset,
    reload), none on others."""
    with Node() as n:
        root = os.geteuid() == 0
        start = [o for o in n.daemon.log_objects() if o.get("level") == "warn"
                 and "engines.user" in o.get("msg", "")]
        check(bool(start) == root, "start warnings %r (root: %s)" % (start, root))
        headers = {"X-Correlation-Id": "root-1"}
        n.preload("w", n.prepared(), headers=headers)
        lease = json_body(*n.request("POST", "/v2/pools/w/leases"), 201)
        json_body(*n.request("POST", "/v2/pools/w/restart"), 202)
        n.wait_pool("w", lambda s, b: b["ready"] and b["restart_count"] >= 1, "restarted")
        n.request("DELETE", "/v2/pools/w/leases/%s" % lease["lease_id"])
        json_body(*n.request("POST", "/v2/pools/w/breaker/reset"), 200)
        other = os.path.join(n.dir, "other.gguf")
        shutil.copy(n.model, other)
        json_body(*n.request("POST", "/v2/pools/w/reload", {"model_path": other}), 200)
        n.get("/v2/pools/w")
        check_error(*n.request("POST", "/v2/pools/none/restart"), 404, "POOL_NOT_FOUND")
        n.stop()
        lines = [o for o in n.daemon.log_objects() if o.get("msg") == ROOT_LINE]
        if not root:
            check(not lines, "warnings though not root: %r" % lines)
            return
        paths = [o.get("path") for o in lines]
        check(paths == ["/v2/pools/w/preload", "/v2/pools/w/restart", "/v2/pools/w/breaker/reset",
                        "/v2/pools/w/reload"], "warned for %r" % paths)
        check(all(o["level"] == "warn" for o in lines), repr(lines))
        check(lines[0].get("correlation_id") == "root-1", "no correlation id: %r" % lines[0])


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    global FAKE_ENGINE
    if len(argv) != 5 or argv[4] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION FAKE_ENGINE SCENARIO\nscenarios: %s\n"
                         % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    e2e.DAEMON, e2e.VERSION = argv[1], argv[2]
    FAKE_ENGINE = os.path.realpath(argv[3])
    name = argv[4]
    return e2e.run_scenario(SCENARIOS, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
