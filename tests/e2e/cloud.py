#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of the cloud profile: the daemon registers with a
control-plane double (tests/helpers/fake-control-plane.py, which checks
bodies as strictly as the llama-orch orchestrator's types and records every
request with the status it answered), publishes into a real etcd (Debian
package etcd-server), follows handoff files an external provisioner
writes, and writes its own that the llama-orch reader can parse.

    cloud.py DAEMON VERSION FAKE_CONTROL_PLANE FAKE_ENGINE SCENARIO

Each daemon gets a runtime directory of its own (--runtime-dir) and
POOL_MANAGERD_RUNTIME_DIR names its handoff directory, the directory
holding the handoff files themselves, as llama-orch means it.

Waits poll a condition with a generous deadline; none is a fixed sleep
that a slow machine could lose a race against.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import Daemon, Failure, check  # noqa: E402

WAIT = 30.0
FAKE_CP = None
FAKE_ENGINE = None
ETCD = "/usr/bin/etcd"
U32_MAX = (1 << 32) - 1


def wait_until(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url, doc, timeout=10):
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


class FakeControlPlane:
    """next_heartbeat_ms "none": heartbeat replies leave it out, so the
    node keeps its own interval (by default the double answers 10000, as
    the orchestrator does)."""

    def __init__(self, port=0, token=None, next_heartbeat_ms=None):
        args = ["/usr/bin/python3", FAKE_CP, "--port", str(port)]
        if token:
            args += ["--token", token]
        if next_heartbeat_ms is not None:
            args += ["--next-heartbeat-ms", str(next_heartbeat_ms)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.port = int(self.proc.stdout.readline())
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, path, doc=None):
        if doc is None and path == "/_fake/requests":
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return json.loads(resp.read())
        return post_json(self.url + path, doc or {})

    def requests(self, method=None, path=None):
        return [r for r in self.call("/_fake/requests")["requests"]
                if (method is None or r["method"] == method) and (path is None or r["path"] == path)]

    def check_all_ok(self):
        """Every registration and heartbeat was answered 200: the node
        stayed registered and no body was refused (422). Returns them."""
        def answered():
            rs = [r for r in self.requests("POST")
                  if r["path"] == "/v2/nodes/register" or r["path"].endswith("/heartbeat")]
            return rs if all(r["status"] is not None for r in rs) else None
        rs = wait_until(answered, "every request to be answered")
        check(any(r["path"] == "/v2/nodes/register" for r in rs), "no registration")
        check(any(r["path"].endswith("/heartbeat") for r in rs), "no heartbeat")
        bad = [(r["path"], r["status"], r["body"]) for r in rs if r["status"] != 200]
        check(not bad, "requests not answered 200: %r" % bad[:3])
        return rs

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class Etcd:
    """A real etcd on loopback, random ports, a temporary data dir."""

    def __init__(self, workdir):
        self.data = os.path.join(workdir, "etcd-data")
        self.client = free_port()
        self.peer = free_port()
        self.url = "http://127.0.0.1:%d" % self.client
        self.proc = None
        self.log = open(os.path.join(workdir, "etcd.log"), "ab")
        self.start()

    def start(self):
        peer = "http://127.0.0.1:%d" % self.peer
        self.proc = subprocess.Popen(
            [ETCD, "--name", "e2e", "--data-dir", self.data,
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "e2e=" + peer],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        wait_until(self.healthy, "etcd to answer")

    def healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except OSError:
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def range(self, prefix):
        """{key: parsed value} of every key under prefix."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        doc = post_json(self.url + "/v3/kv/range",
                        {"key": base64.b64encode(prefix.encode()).decode(),
                         "range_end": base64.b64encode(end.encode()).decode()})
        return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
                for kv in doc.get("kvs", [])}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        self.log.close()


def handoff_dir(runtime):
    """The handoff directory the scenarios give the daemon (its
    POOL_MANAGERD_RUNTIME_DIR), below its runtime directory."""
    return os.path.join(runtime, "handoffs")


def cloud_env(runtime, cp_url, **extra):
    env = e2e.clean_env()
    for k in ("ORCHESTRATORD_URL", "LLORCH_API_TOKEN", "ORCHESTRATORD_REGISTER_ON_STARTUP"):
        env.pop(k, None)
    env.update({
        "POOL_MANAGERD_CLOUD_PROFILE": "true",
        "POOL_MANAGERD_ADDRESS": "http://10.9.8.7:9200",
        "POOL_MANAGERD_NODE_ID": "node-e2e",
        "ORCHESTRATORD_URL": cp_url,
        "POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS": "1",
        "POOL_MANAGERD_RUNTIME_DIR": handoff_dir(runtime),
        "POOL_MANAGERD_WATCH_INTERVAL_MS": "500",
    })
    env.update(extra)
    return env


def cloud_daemon(runtime, *args, env):
    """The daemon with runtime as its runtime directory."""
    return Daemon("--bind", "127.0.0.1:0", "--runtime-dir", runtime, *args, env=env)


def write_config(directory, doc):
    path = os.path.join(directory, "config-%d.json" % len(os.listdir(directory)))
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def fake_gpus(n):
    return [{"index": i, "uuid": "GPU-e2e-%04d" % i, "name": "Test GPU %d" % i,
             "compute_capability": "8.9", "vram_total_bytes": 24 << 30,
             "vram_free_bytes": 23 << 30} for i in range(n)]


def handoff(pool, replica="r0", slots_free=2):
    return {"pool_id": pool, "replica_id": replica, "engine": "vllm",
            "engine_version": "0.6.1", "url": "http://10.9.8.7:8000",
            "slots_total": 4, "slots_free": slots_free, "device_mask": "none",
            "model": {"id": "m", "path": "/m"}}


def seed_handoff(pool, port, slots=3):
    """As the llama-orch provisioner writes one: "slots", no slots_total or
    slots_free, and fields its reader ignores."""
    return {"pool_id": pool, "replica_id": "r0", "engine": "llamacpp",
            "engine_version": "b6000-cuda", "url": "http://127.0.0.1:%d" % port,
            "device_mask": "GPU0", "slots": slots, "provisioning_mode": "source",
            "model": {"path": "/models/tiny.gguf"},
            "flags": ["--parallel", str(slots), "--ctx-size", "4096"], "pid": 4242}


def write_handoff(runtime, name, doc):
    d = handoff_dir(runtime)
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = os.path.join(d, "." + name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.chmod(tmp, 0o644)
    os.rename(tmp, os.path.join(d, name))


def remove_handoff(runtime, name):
    os.unlink(os.path.join(handoff_dir(runtime), name))


def _is_u32(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U32_MAX


def seed_handoff_errors(doc):
    """What the llama-orch reader of handoff files would refuse, as its
    types read them: pool_id, replica_id, engine, engine_version and url
    present and strings (a null engine is no string); slots, pid (Option of
    u32) absent, null or a non-negative integer; device_mask (Option of
    String) absent, null or a string. Other fields are ignored."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    errors = []
    for key in ("pool_id", "replica_id", "engine", "engine_version", "url"):
        if key not in doc:
            errors.append("%s: missing field" % key)
        elif not isinstance(doc[key], str):
            errors.append("%s: expected a string, got %s" % (key, json.dumps(doc[key])))
    for key in ("slots", "pid"):
        if doc.get(key) is not None and not _is_u32(doc[key]):
            errors.append("%s: expected u32, got %s" % (key, json.dumps(doc[key])))
    if doc.get("device_mask") is not None and not isinstance(doc["device_mask"], str):
        errors.append("device_mask: expected a string, got %s" % json.dumps(doc["device_mask"]))
    return errors


def check_seed_readable(doc, what):
    errors = seed_handoff_errors(doc)
    check(not errors, "%s does not parse as llama-orch reads it: %s; %r" % (what, errors, doc))


def last_pools(cp):
    beats = cp.requests("POST", "/v2/nodes/node-e2e/heartbeat")
    if not beats:
        return None
    return {p["pool_id"]: p for p in beats[-1]["body"]["pools"]}


def log_said(msg):
    return lambda o: o.get("msg") == msg


# ---- scenarios ------------------------------------------------------------------

def scenario_cloud_missing_settings():
    with tempfile.TemporaryDirectory() as runtime:
        for unset, needle in (("POOL_MANAGERD_ADDRESS", "node address"),
                              ("ORCHESTRATORD_URL", "control-plane URL")):
            env = cloud_env(runtime, "http://127.0.0.1:1")
            del env[unset]
            with cloud_daemon(runtime, env=env) as d:
                rc = d.finish()
                check(rc == 2, "exit status %r, expected 2" % rc)
                errors = [o["msg"] for o in d.log_objects() if o.get("level") == "error"]
                check(any(needle in m and unset in m for m in errors),
                      "no error naming %s: %r" % (unset, errors))


def register_heartbeat_deregister(gpus):
    """Registration, heartbeats following a provisioner's handoff, and
    deregistration, with gpus (fake) devices: every registration and
    heartbeat is answered 200 by the strict double."""
    with tempfile.TemporaryDirectory() as runtime, \
            FakeControlPlane(token="e2e-tok", next_heartbeat_ms="none") as cp:
        env = cloud_env(runtime, cp.url, LLORCH_API_TOKEN="e2e-tok")
        gpu = {"backend": "fake", "devices": fake_gpus(gpus)} if gpus else {"backend": "none"}
        config = write_config(runtime, {"gpu": gpu})
        with cloud_daemon(runtime, "--config", config, env=env) as d:
            d.wait_listening()
            regs = wait_until(lambda: cp.requests("POST", "/v2/nodes/register"), "a registration")
            body = regs[0]["body"]
            check(body["node_id"] == "node-e2e", "node_id %r" % body["node_id"])
            check(body["machine_id"] == "node-e2e", "machine_id defaults to the node id: %r" % body)
            check(body["address"] == "http://10.9.8.7:9200", "address %r" % body["address"])
            check(body["version"] == e2e.VERSION, "version %r" % body["version"])
            caps = body["capabilities"]
            check(isinstance(caps["gpus"], list) and caps["cpu_cores"] >= 1
                  and caps.get("ram_total_bytes", 0) > 0, "capabilities %r" % caps)
            check(len(caps["gpus"]) == gpus, "%d gpus registered, expected %d: %r"
                  % (len(caps["gpus"]), gpus, caps["gpus"]))
            check(sorted(g["device_id"] for g in caps["gpus"]) == list(range(gpus)),
                  "device ids %r" % caps["gpus"])

            # Real pool state: a provisioner's handoff makes a ready pool...
            write_handoff(runtime, "ext.json", handoff("ext-pool"))
            wait_until(lambda: (last_pools(cp) or {}).get("ext-pool", {}).get("ready") is True,
                       "a heartbeat with ext-pool ready")
            p = last_pools(cp)["ext-pool"]
            check(p["slots_total"] == 4 and p["slots_free"] == 2 and p["engine"] == "vllm"
                  and p["draining"] is False and "vram_free_bytes" in p, "pool entry %r" % p)
            # ... and removing it makes it unready.
            remove_handoff(runtime, "ext.json")
            wait_until(lambda: (last_pools(cp) or {}).get("ext-pool", {}).get("ready") is False,
                       "a heartbeat with ext-pool unready")

            rc = d.stop()
            check(rc == 0, "exit status %r" % rc)
        dels = cp.requests("DELETE", "/v2/nodes/node-e2e")
        check(len(dels) == 1, "expected one DELETE, got %r" % dels)
        every = cp.requests()
        check(all(r["authorization"] == "Bearer e2e-tok" for r in every),
              "a request without the token: %r" % [r for r in every if r["authorization"] != "Bearer e2e-tok"])
        rs = cp.check_all_ok()
        print("%d registrations and heartbeats, all answered 200 (%d gpus)" % (len(rs), gpus))


def scenario_cloud_register_heartbeat_deregister():
    register_heartbeat_deregister(0)


def scenario_cloud_register_heartbeat_fake_gpus():
    register_heartbeat_deregister(2)


def scenario_cloud_node_id_defaults_to_hostname():
    host = socket.gethostname()
    with tempfile.TemporaryDirectory() as runtime, FakeControlPlane() as cp:
        env = cloud_env(runtime, cp.url)
        del env["POOL_MANAGERD_NODE_ID"]
        with cloud_daemon(runtime, env=env) as d:
            d.wait_listening()
            regs = wait_until(lambda: cp.requests("POST", "/v2/nodes/register"), "a registration")
            check(regs[0]["body"]["node_id"] == host, "node_id %r, host %r"
                  % (regs[0]["body"]["node_id"], host))
            check(regs[0]["authorization"] is None, "a token was sent though none is set")
            check(d.stop() == 0, "unclean exit")


def scenario_cloud_control_plane_down_and_back():
    port = free_port()
    with tempfile.TemporaryDirectory() as runtime:
        env = cloud_env(runtime, "http://127.0.0.1:%d" % port)
        with cloud_daemon(runtime, env=env) as d:
            d.wait_listening()
            # Nothing listens: the daemon keeps serving and says why.
            failure = d.wait_for(log_said("control plane request failed"), "a failed registration")
            check("refused" in failure.get("error", "") and failure.get("request") == "register",
                  "the failure line does not say what failed: %r" % failure)
            e2e.json_body(*d.request("GET", "/health"), 200)

            with FakeControlPlane(port=port) as cp:
                wait_until(lambda: cp.requests("POST", "/v2/nodes/register"), "a registration once up")
                wait_until(lambda: cp.requests("POST", "/v2/nodes/node-e2e/heartbeat"), "a heartbeat")
                d.wait_for(log_said("control plane reachable again"), "the recovery log line")
            # Back again, without memory of the node: 404, then registers again.
            with FakeControlPlane(port=port) as cp:
                wait_until(lambda: cp.requests("POST", "/v2/nodes/register"),
                           "a registration after the 404")
                first = cp.requests()[0]
                check(first["path"] == "/v2/nodes/node-e2e/heartbeat",
                      "the first request to the restarted control plane was %r" % first["path"])
                d.wait_for(log_said("control plane does not know this node: registering again"),
                           "the re-registration log line")
                check(d.stop() == 0, "unclean exit")


def etcd_config(runtime, etcd, ttl_ms):
    path = os.path.join(runtime, "cloud.json")
    with open(path, "w") as f:
        json.dump({"cloud": {"etcd": {"endpoints": [etcd.url], "prefix": "/fleet/",
                                      "ttl_ms": ttl_ms}}}, f)
    return path


def scenario_cloud_etcd():
    work = tempfile.mkdtemp()
    try:
        runtime = os.path.join(work, "rt")
        with Etcd(work) as etcd, FakeControlPlane() as cp:
            config = etcd_config(work, etcd, 3000)
            env = cloud_env(runtime, cp.url)
            with cloud_daemon(runtime, "--config", config, env=env) as d:
                d.wait_listening()
                node = wait_until(lambda: etcd.range("/fleet/").get("/fleet/nodes/node-e2e"),
                                  "the node key")
                check(node["address"] == "http://10.9.8.7:9200", "node value %r" % node)

                key = "/fleet/pools/node-e2e/ext-pool"
                write_handoff(runtime, "ext.json", handoff("ext-pool"))
                wait_until(lambda: etcd.range("/fleet/").get(key, {}).get("ready") is True,
                           "the pool key, ready")
                # It follows the pool's state.
                write_handoff(runtime, "ext.json", handoff("ext-pool", slots_free=1))
                wait_until(lambda: etcd.range("/fleet/").get(key, {}).get("slots_free") == 1,
                           "the pool key with one free slot")
                remove_handoff(runtime, "ext.json")
                wait_until(lambda: etcd.range("/fleet/").get(key, {}).get("ready") is False,
                           "the pool key, unready")

                # etcd restarts with its data gone: the lease is lost, a new
                # one is granted and every key is put again.
                etcd.kill()
                shutil.rmtree(etcd.data)
                etcd.start()
                check(etcd.range("/fleet/") == {}, "keys survived the wiped data dir?")
                wait_until(lambda: key in etcd.range("/fleet/") and
                           "/fleet/nodes/node-e2e" in etcd.range("/fleet/"),
                           "the keys after the etcd restart")
                write_handoff(runtime, "ext.json", handoff("ext-pool"))
                wait_until(lambda: etcd.range("/fleet/").get(key, {}).get("ready") is True,
                           "the pool key following state after the restart")
                d.wait_for(log_said("etcd lease lost: granting a new one and publishing again"),
                           "the lost lease in the log")

                # kill -9: nothing revokes the lease; the keys go with its TTL.
                d.proc.send_signal(signal.SIGKILL)
                d.finish()
                killed = time.monotonic()
                check(key in etcd.range("/fleet/"), "the keys went before the lease ran out")
                wait_until(lambda: etcd.range("/fleet/") == {}, "the keys to expire")
                took = time.monotonic() - killed
                print("keys gone %.1f s after kill -9 (TTL 3 s)" % took)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scenario_cloud_etcd_clean_shutdown_revokes():
    work = tempfile.mkdtemp()
    try:
        runtime = os.path.join(work, "rt")
        with Etcd(work) as etcd, FakeControlPlane() as cp:
            # A TTL far beyond the test: only a revocation removes the keys.
            config = etcd_config(work, etcd, 600000)
            with cloud_daemon(runtime, "--config", config, env=cloud_env(runtime, cp.url)) as d:
                d.wait_listening()
                wait_until(lambda: "/fleet/nodes/node-e2e" in etcd.range("/fleet/"), "the node key")
                check(d.stop() == 0, "unclean exit")
            check(etcd.range("/fleet/") == {}, "keys left after a clean shutdown: %r"
                  % etcd.range("/fleet/"))
            check(len(cp.requests("DELETE", "/v2/nodes/node-e2e")) == 1, "no deregistration")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scenario_cloud_seed_handoff():
    """A handoff file as the llama-orch provisioner writes it ("slots", no
    slots_total, fields its reader ignores) in POOL_MANAGERD_RUNTIME_DIR
    makes a placeable pool: ready with the slots it gives, in the API, in
    /v1/replicasets and in heartbeats."""
    port = free_port()
    with tempfile.TemporaryDirectory() as runtime, \
            FakeControlPlane(next_heartbeat_ms="none") as cp:
        with cloud_daemon(runtime, env=cloud_env(runtime, cp.url)) as d:
            d.wait_listening()
            write_handoff(runtime, "seed-pool.json", seed_handoff("seed-pool", port, slots=3))
            wait_until(lambda: (last_pools(cp) or {}).get("seed-pool", {}).get("ready") is True,
                       "a heartbeat with seed-pool ready")
            p = last_pools(cp)["seed-pool"]
            check(p["slots_total"] == 3 and p["slots_free"] == 3 and p["engine"] == "llamacpp",
                  "heartbeat entry %r" % p)
            check(not any(o.get("msg") == "handoff ignored" for o in d.log_objects()),
                  "the file was refused: %r" % [o for o in d.log_objects()
                                                if o.get("msg") == "handoff ignored"])

            snap = e2e.json_body(*d.request("GET", "/v2/pools/seed-pool"), 200)
            check(snap["ready"] and snap["slots_total"] == 3 and snap["slots_free"] == 3
                  and snap["engine_version"] == "b6000-cuda" and snap["device_mask"] == "GPU0",
                  "pool %r" % snap)
            sets = e2e.json_body(*d.request("GET", "/v1/replicasets"), 200)["replicasets"]
            mine = [r for r in sets if r["pool_id"] == "seed-pool"]
            check(len(mine) == 1 and mine[0]["replica_id"] == "r0"
                  and mine[0]["url"] == "http://127.0.0.1:%d" % port
                  and mine[0]["slots_total"] == 3 and mine[0]["slots_free"] == 3,
                  "replicasets %r" % sets)

            # Placeable: three leases, then no free slot.
            for _ in range(3):
                lease = e2e.json_body(*d.request("POST", "/v2/pools/seed-pool/leases"), 201)
                check(lease["url"] == "http://127.0.0.1:%d" % port, "lease %r" % lease)
            status, _, data = d.request("POST", "/v2/pools/seed-pool/leases")
            check(status == 429, "a fourth lease: %d %r" % (status, data))
            check(d.stop() == 0, "unclean exit")
        cp.check_all_ok()


def own_handoff_file(runtime, pool_id, replica_id="r0"):
    return os.path.join(handoff_dir(runtime), "%s_%s.json" % (pool_id, replica_id))


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def scenario_cloud_own_handoff_seed_readable():
    """The daemon's own handoff files -- a configured pool's, and a preload
    naming neither engine nor engine_version -- land in the handoff
    directory (POOL_MANAGERD_RUNTIME_DIR) and parse as the llama-orch
    reader reads them."""
    with tempfile.TemporaryDirectory() as runtime, \
            FakeControlPlane(next_heartbeat_ms="none") as cp:
        # The fake engine under llama.cpp's binary name: the engine is inferred from it.
        llama_server = os.path.join(runtime, "bin", "llama-server")
        os.makedirs(os.path.dirname(llama_server))
        shutil.copy(FAKE_ENGINE, llama_server)
        os.chmod(llama_server, 0o755)
        model = os.path.join(runtime, "tiny.gguf")
        with open(model, "wb") as f:
            f.write(b"GGUF" + b"\0" * 60)
        cfg_port, api_port = free_port(), free_port()
        config = write_config(runtime, {
            "gpu": {"backend": "fake", "devices": fake_gpus(1)},
            "engines": {"allow": [os.path.realpath(FAKE_ENGINE), os.path.realpath(llama_server)]},
            "models": {"allow": [os.path.realpath(runtime) + "/"]},
            "defaults": {"health": {"startup_timeout_ms": 10000}},
            "pools": [{"id": "cfg", "engine": "llamacpp", "engine_version": "fake-1",
                       "binary": os.path.realpath(FAKE_ENGINE),
                       "args": ["--host", "{host}", "--port", "{port}", "--parallel", "{slots}"],
                       "port": cfg_port, "replicas": 1, "slots": 2, "device_mask": "0"}],
        })
        with cloud_daemon(runtime, "--config", config, env=cloud_env(runtime, cp.url)) as d:
            d.wait_listening()
            try:
                # A configured pool writes its file once its engine is healthy.
                path = own_handoff_file(runtime, "cfg")
                doc = wait_until(lambda: read_json(path), "the configured pool's handoff file")
                check_seed_readable(doc, path)
                check(doc["engine"] == "llamacpp" and doc["engine_version"] == "fake-1"
                      and doc["slots"] == 2 and doc["slots_total"] == 2
                      and doc["managed_by"] == "pool-managerd", "handoff %r" % doc)
                check(not os.path.exists(os.path.join(runtime, "engines")),
                      "a handoff directory below the runtime directory was made too")

                # A preload that names no engine and no engine_version.
                got = e2e.json_body(*d.request("POST", "/v2/pools/bare/preload", json.dumps({
                    "binary_path": os.path.realpath(llama_server), "port": api_port,
                    "flags": ["--port", str(api_port)], "model_path": model})), 200)
                path = own_handoff_file(runtime, "bare")
                check(got.get("handoff_path") == path,
                      "the preload answer names %r, not %r" % (got.get("handoff_path"), path))
                doc = read_json(path)
                check(doc is not None, "no handoff file at %s" % path)
                check_seed_readable(doc, path)
                check(doc["engine"] == "llamacpp" and doc["engine_version"] == "unknown"
                      and doc["slots"] == doc["slots_total"] >= 1, "handoff %r" % doc)
                # The watcher leaves the daemon's own files alone.
                check(not any(o.get("msg") == "handoff ignored" for o in d.log_objects()),
                      "an own file was processed: %r" % d.lines)
                wait_until(lambda: {"cfg", "bare"} <= set(last_pools(cp) or {}),
                           "a heartbeat with both pools")
                check(d.stop() == 0, "unclean exit")
            finally:
                if d.proc.poll() is None:
                    d.proc.kill()
                for name in os.listdir(runtime):
                    if name.endswith(".pid"):
                        try:
                            with open(os.path.join(runtime, name)) as f:
                                os.killpg(int(f.read().split()[0]), signal.SIGKILL)
                        except (OSError, ValueError, IndexError):
                            pass
        check(not os.path.exists(own_handoff_file(runtime, "cfg")),
              "the handoff file outlived its engine")
        cp.check_all_ok()


def scenario_cloud_first_heartbeat_after_register():
    """With a 60 s heartbeat interval and a control plane that names no
    next_heartbeat_ms, the first heartbeat still follows the registration
    at once: waited for (within 30 s), not timed."""
    with tempfile.TemporaryDirectory() as runtime, \
            FakeControlPlane(next_heartbeat_ms="none") as cp:
        env = cloud_env(runtime, cp.url, POOL_MANAGERD_HEARTBEAT_INTERVAL_SECS="60")
        with cloud_daemon(runtime, env=env) as d:
            d.wait_listening()
            started = time.monotonic()

            def heartbeat_after_register():
                rs = cp.requests("POST")
                regs = [i for i, r in enumerate(rs) if r["path"] == "/v2/nodes/register"
                        and r["status"] == 200]
                return regs and [r for r in rs[regs[0] + 1:]
                                 if r["path"] == "/v2/nodes/node-e2e/heartbeat"
                                 and r["status"] is not None]
            beats = wait_until(heartbeat_after_register, "the first heartbeat after registering",
                               timeout=30.0)
            print("first heartbeat %.2f s after the daemon listened" % (time.monotonic() - started))
            check(beats[0]["status"] == 200, "the first heartbeat was answered %r: %r"
                  % (beats[0]["status"], beats[0]["body"]))
            check(d.stop() == 0, "unclean exit")
        cp.check_all_ok()


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    global FAKE_CP, FAKE_ENGINE
    if len(argv) != 6 or argv[5] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION FAKE_CONTROL_PLANE FAKE_ENGINE SCENARIO\n"
                         "scenarios: %s\n" % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    e2e.DAEMON, e2e.VERSION, FAKE_CP, FAKE_ENGINE, name = argv[1:6]
    return e2e.run_scenario(SCENARIOS, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
