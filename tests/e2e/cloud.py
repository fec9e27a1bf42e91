#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of the cloud profile: the daemon registers with a
control-plane double (tests/helpers/fake-control-plane.py, which records
every request), publishes into a real etcd (Debian package etcd-server),
and follows handoff files an external provisioner writes.

    cloud.py DAEMON VERSION FAKE_CONTROL_PLANE SCENARIO

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
ETCD = "/usr/bin/etcd"


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
    def __init__(self, port=0, token=None):
        args = ["/usr/bin/python3", FAKE_CP, "--port", str(port)]
        if token:
            args += ["--token", token]
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
        "POOL_MANAGERD_RUNTIME_DIR": runtime,
        "POOL_MANAGERD_WATCH_INTERVAL_MS": "500",
    })
    env.update(extra)
    return env


def handoff(pool, replica="r0", slots_free=2):
    return {"pool_id": pool, "replica_id": replica, "engine": "vllm",
            "engine_version": "0.6.1", "url": "http://10.9.8.7:8000",
            "slots_total": 4, "slots_free": slots_free, "device_mask": "none",
            "model": {"id": "m", "path": "/m"}}


def write_handoff(runtime, name, doc):
    d = os.path.join(runtime, "engines")
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "." + name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, os.path.join(d, name))


def remove_handoff(runtime, name):
    os.unlink(os.path.join(runtime, "engines", name))


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
            with Daemon("--bind", "127.0.0.1:0", env=env) as d:
                rc = d.finish()
                check(rc == 2, "exit status %r, expected 2" % rc)
                errors = [o["msg"] for o in d.log_objects() if o.get("level") == "error"]
                check(any(needle in m and unset in m for m in errors),
                      "no error naming %s: %r" % (unset, errors))


def scenario_cloud_register_heartbeat_deregister():
    with tempfile.TemporaryDirectory() as runtime, FakeControlPlane(token="e2e-tok") as cp:
        env = cloud_env(runtime, cp.url, LLORCH_API_TOKEN="e2e-tok")
        with Daemon("--bind", "127.0.0.1:0", env=env) as d:
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


def scenario_cloud_node_id_defaults_to_hostname():
    host = socket.gethostname()
    with tempfile.TemporaryDirectory() as runtime, FakeControlPlane() as cp:
        env = cloud_env(runtime, cp.url)
        del env["POOL_MANAGERD_NODE_ID"]
        with Daemon("--bind", "127.0.0.1:0", env=env) as d:
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
        with Daemon("--bind", "127.0.0.1:0", env=env) as d:
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
            with Daemon("--bind", "127.0.0.1:0", "--config", config, env=env) as d:
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
            with Daemon("--bind", "127.0.0.1:0", "--config", config,
                        env=cloud_env(runtime, cp.url)) as d:
                d.wait_listening()
                wait_until(lambda: "/fleet/nodes/node-e2e" in etcd.range("/fleet/"), "the node key")
                check(d.stop() == 0, "unclean exit")
            check(etcd.range("/fleet/") == {}, "keys left after a clean shutdown: %r"
                  % etcd.range("/fleet/"))
            check(len(cp.requests("DELETE", "/v2/nodes/node-e2e")) == 1, "no deregistration")
    finally:
        shutil.rmtree(work, ignore_errors=True)


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    global FAKE_CP
    if len(argv) != 5 or argv[4] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION FAKE_CONTROL_PLANE SCENARIO\nscenarios: %s\n"
                         % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    e2e.DAEMON, e2e.VERSION, FAKE_CP, name = argv[1], argv[2], argv[3], argv[4]
    try:
        SCENARIOS[name]()
    except Failure as e:
        print("FAIL %s: %s" % (name, e))
        return 1
    print("PASS %s" % name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
