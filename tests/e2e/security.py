#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of the daemon under attack: each reproduces a way a
local user could once make the daemon do harm, and checks that it no longer
works (docs/security.md has the model).

    security.py DAEMON VERSION FAKE_ENGINE EVIL_PRELOAD SCENARIO

EVIL_PRELOAD is a library that leaves a file "ran" next to itself when it is
loaded (tests/helpers/evil-preload.c).
"""

import ctypes
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import e2e  # noqa: E402
from api import Node, config_pool, free_port  # noqa: E402
from e2e import Failure, check, check_error, json_body  # noqa: E402

EVIL = None


def evil_copy(where):
    """The evil library copied into where; (path, marker it would create)."""
    path = os.path.join(where, "evil.so")
    shutil.copy(EVIL, path)
    return path, os.path.join(where, "ran")


def scenario_env_ld_preload_refused():
    """A preload whose env asks for LD_PRELOAD is refused, and the library
    is never loaded: no code of the caller's runs as the daemon's user."""
    scratch = tempfile.mkdtemp(prefix="pm-evil-")
    try:
        lib, marker = evil_copy(scratch)
        # the library does what it would: proof that the check below can fail
        subprocess.run(["/bin/true"], env={"LD_PRELOAD": lib}, check=True)
        check(os.path.exists(marker), "the evil library did not run under LD_PRELOAD at all")
        os.unlink(marker)

        with Node() as n:
            for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "GCONV_PATH", "PYTHONPATH",
                         "NODE_OPTIONS", "VLLM_LOGGING_CONFIG_PATH"):
                body = n.prepared(env={name: lib})
                err = check_error(*n.request("POST", "/v2/pools/x/preload", body), 400,
                                  "INVALID_FIELD")
                check(name in err["error"], "%s: the error does not name it: %r" % (name, err))
            check_error(*n.request("GET", "/v2/pools/x"), 404, "POOL_NOT_FOUND")
            # an allowed tuning variable still works
            body = n.prepared(env={"LLAMA_ARG_THREADS": "2"})
            json_body(*n.request("POST", "/v2/pools/ok/preload", body), 200)
            n.stop()
        check(not os.path.exists(marker), "the evil library ran inside an engine")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def environ_of(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)


def scenario_engine_env_clean():
    """The daemon's secrets never reach an engine's environment."""
    secret = "s3cret-token-for-this-test"
    port = free_port()
    with Node([config_pool("p", port)],
              env={"LLORCH_API_TOKEN": secret, "DAEMON_ONLY_SETTING": "x", "LANG": "C.UTF-8"}) as n:
        snap = n.wait_pool("p", lambda s, b: s == 200 and b["ready"], "p ready",
                           headers={"Authorization": "Bearer " + secret})
        env = environ_of(snap["pid"])
        check(b"LLORCH_API_TOKEN" not in env, "the token is in the engine's environment")
        check(all(secret.encode() not in v for v in env.values()), "the token's value leaked")
        check(b"DAEMON_ONLY_SETTING" not in env, "a daemon variable leaked: %r" % env)
        check(env.get(b"CUDA_DEVICE_ORDER") == b"PCI_BUS_ID", repr(env))
        check(env.get(b"CUDA_VISIBLE_DEVICES") is not None, repr(env))
        check(env.get(b"LANG") == b"C.UTF-8" and b"PATH" in env and b"HOME" in env, repr(env))
        n.stop()


IN_OPEN, IN_ACCESS, IN_NONBLOCK = 0x20, 0x01, 0o4000


class Inotify:
    """An inotify watch through libc: what opened or read a file."""

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK)
        check(self.fd >= 0, "inotify_init1 failed")
        wd = self.libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN | IN_ACCESS)
        check(wd >= 0, "inotify_add_watch %s failed" % path)

    def events(self):
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        out, off = [], 0
        while off + 16 <= len(data):
            _, mask, _, length = struct.unpack_from("iIII", data, off)
            out.append(mask)
            off += 16 + length
        return out

    def close(self):
        os.close(self.fd)


def scenario_no_file_oracle():
    """A path outside models.allow gets one answer whether it exists or not,
    and the daemon never opens it: no digest, no existence oracle."""
    outside = tempfile.mkdtemp(prefix="pm-outside-")
    try:
        there = os.path.join(outside, "secret-1")
        missing = os.path.join(outside, "secret-2")
        with open(there, "wb") as f:
            f.write(b"not for the caller's eyes\n")
        port = free_port()
        with Node([config_pool("p", port)]) as n:
            n.wait_pool("p", lambda s, b: s == 200 and b["ready"], "p ready")
            watch = Inotify(there)
            try:
                answers = {}
                for path in (there, missing):
                    reload_body = {"model_path": path, "sha256": "0" * 64}
                    status, _, data = n.request("POST", "/v2/pools/p/reload", reload_body)
                    check(status == 403, "reload %s: %d %r" % (path, status, data))
                    preload = n.prepared(model_path=path)
                    pstatus, _, pdata = n.request("POST", "/v2/pools/q/preload", preload)
                    check(pstatus == 403, "preload %s: %d %r" % (path, pstatus, pdata))
                    answers[path] = (data.replace(path.encode(), b"PATH"),
                                     pdata.replace(path.encode(), b"PATH"))
                check(answers[there] == answers[missing],
                      "the answers differ: %r" % answers)
                err = json.loads(answers[there][0])
                check(err["code"] == "MODEL_NOT_ALLOWED" and "sha256" not in err["error"]
                      and "digest" not in err["error"], repr(err))
                check(watch.events() == [], "the daemon opened the file outside models.allow")
            finally:
                watch.close()
            n.stop()
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def scenario_fifo_model_refused():
    """A FIFO planted as a model inside models.allow is refused at once, not
    waited on for ever."""
    with Node() as n:
        n.preload("f", n.prepared(flags=["-m", n.model]))
        fifo = os.path.join(n.dir, "trap.gguf")
        os.mkfifo(fifo)
        err = check_error(*n.request("POST", "/v2/pools/f/reload",
                                     {"model_path": fifo, "sha256": "0" * 64}), 422, "STAGE_FAILED")
        check("not a regular file" in err["error"], repr(err))
        json_body(*n.request("GET", "/v2/pools/f"), 200)
        n.stop()


def scenario_bad_hosts_refused():
    """host is an IP address of this node; an API preload's is loopback."""
    with Node() as n:
        for host, words in (("10.1.2.3", "loopback"),
                            ("127.0.0.1:19400/health?x=", "IP address"),
                            ("example.com", "IP address"),
                            ("0.0.0.0", "0.0.0.0")):
            body = n.prepared(host=host)
            err = check_error(*n.request("POST", "/v2/pools/h/preload", body), 400, "INVALID_FIELD")
            check(err["error"].startswith("host: ") and words in err["error"],
                  "%s: %r" % (host, err))
        check_error(*n.request("GET", "/v2/pools/h"), 404, "POOL_NOT_FOUND")
        n.stop()


def scenario_log_symlink_refused():
    """A symlink planted at an engine's log path is not followed: the engine
    does not start, its output is not appended to the link's target, and
    the target's last line never shows as last_error."""
    target_dir = tempfile.mkdtemp(prefix="pm-target-")
    try:
        target = os.path.join(target_dir, "victim")
        with open(target, "w") as f:
            f.write("root:the last line of a file the caller may not read\n")
        before = open(target, "rb").read()
        port = free_port()
        n = Node([config_pool("p", port)], start=False)
        try:
            run = os.path.join(n.dir, "run")
            os.mkdir(run, 0o700)
            os.symlink(target, os.path.join(run, "engine-p_r0.log"))
            n.daemon = e2e.Daemon("--config", n.config_path, "--log-level", "info",
                                  env=e2e.clean_env())
            with n:
                n.daemon.wait_for(lambda o: o.get("pool_id") == "p" and "symbolic link" in
                                  json.dumps(o), "the start refused for the symlink")
                snap = n.get("/v2/pools/p")
                check(not snap["ready"], repr(snap))
                check("the last line" not in json.dumps(snap), "the target's line shows: %r" % snap)
                n.stop()
        finally:
            if n.daemon is None:
                shutil.rmtree(n.dir, ignore_errors=True)
        check(open(target, "rb").read() == before, "the symlink's target was written to")
    finally:
        shutil.rmtree(target_dir, ignore_errors=True)


def scenario_handoff_injection_refused():
    """A handoff file naming a pool the daemon supervises cannot add a
    replica to it or claim its leases; the refusal is counted."""
    port = free_port()
    with Node([config_pool("p", port, slots=2)],
              env={"POOL_MANAGERD_WATCH_INTERVAL_MS": "200"}) as n:
        n.wait_pool("p", lambda s, b: s == 200 and b["ready"], "p ready")
        engines = os.path.join(n.dir, "run", "engines")
        os.makedirs(engines, mode=0o700, exist_ok=True)
        tmp = os.path.join(engines, ".evil.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"pool_id": "p", "replica_id": "r9", "engine": "llamacpp",
                       "engine_version": "x", "url": "http://127.0.0.1:1",
                       "slots_total": 1000, "slots_free": 1000}, f)
        os.rename(tmp, os.path.join(engines, "p-r9.json"))
        n.daemon.wait_for(lambda o: o.get("msg") == "handoff ignored"
                          and o.get("reason") == "managed_pool", "the handoff refused")
        snap = n.get("/v2/pools/p")
        check(snap["slots_total"] == 2 and len(snap["replicas"]) == 1, repr(snap))
        status, _, data = n.request("GET", "/metrics")
        check(status == 200 and 'pool_managerd_handoff_refusals_total{reason="managed_pool"} 1'
              in data.decode(), "the refusal is not counted")
        # The other way round: a pool announced by a handoff file takes no
        # engine of ours, so its leases never mix the two.
        tmp = os.path.join(engines, ".ext.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"pool_id": "ext", "replica_id": "x0", "engine": "llamacpp",
                       "engine_version": "x", "url": "http://127.0.0.1:1", "slots": 2}, f)
        os.rename(tmp, os.path.join(engines, "ext-x0.json"))
        n.wait_pool("ext", lambda s, b: s == 200, "the handoff pool registered")
        err = check_error(*n.request("POST", "/v2/pools/ext/preload", n.prepared()), 409, "CONFLICT")
        check("handoff" in err["error"], repr(err))
        n.stop()


def scenario_runtime_dir_recreated():
    """The runtime directory deleted while the daemon runs is made again,
    ours alone, before the next spawn: the preload works, the loss is
    logged, and the API socket listens again."""
    token = "recreate-token"
    auth = {"Authorization": "Bearer " + token}
    with Node(env={"LLORCH_API_TOKEN": token}) as n:
        run = os.path.join(n.dir, "run")
        sock = n.daemon.socket
        check(sock and os.path.exists(sock), "no API socket at %r" % sock)
        shutil.rmtree(run)
        json_body(*n.request("POST", "/v2/pools/again/preload", n.prepared(), headers=auth), 200)
        n.daemon.wait_for(lambda o: "runtime directory was gone" in o.get("msg", ""),
                          "the loss logged")
        n.daemon.wait_for(lambda o: o.get("msg") == "listening on the API socket again",
                          "the socket bound again")
        st = os.stat(run)
        check(st.st_mode & 0o077 == 0, "the new runtime directory is mode %o" % st.st_mode)
        snap = json_body(*n.request("GET", "/v2/pools/again", via="unix"), 200)
        check(snap["ready"], repr(snap))
        json_body(*n.request("POST", "/v2/pools/again/restart", via="unix"), 202)
        n.stop()


def scenario_ready_route():
    """GET /ready: 503 naming the pools not ready yet, 200 once all are; no
    token needed even when one is configured."""
    token = "ready-token"
    port = free_port()
    with Node([config_pool("slow", port, "--load-ms", "1500")],
              env={"LLORCH_API_TOKEN": token}) as n:
        status, _, data = n.request("GET", "/ready", via="tcp")
        body = json.loads(data)
        check(status == 503 and body["missing"] == ["slow"] and body["pools"] == 1, repr(body))
        n.wait_pool("slow", lambda s, b: s == 200 and b["ready"], "slow ready",
                    headers={"Authorization": "Bearer " + token})
        body = json_body(*n.request("GET", "/ready", via="tcp"), 200)
        check(body["ready"] and body["missing"] == [], repr(body))
        n.stop()


def scenario_rebinding_host_refused():
    """Without a token the TCP API answers only requests addressed to an IP
    address or localhost: a page rebound to 127.0.0.1 reads nothing."""
    with Node() as n:
        for host in ("evil.example", "evil.example:9200", "127.0.0.1.nip.io"):
            check_error(*n.request("GET", "/v2/pools", headers={"Host": host}, via="tcp"),
                        400, "BAD_REQUEST")
        for host in ("127.0.0.1:%d" % n.daemon.port, "localhost", "[::1]:1"):
            json_body(*n.request("GET", "/v2/pools", headers={"Host": host}, via="tcp"), 200)
        n.stop()


def scenario_socket_dir_checked():
    """The socket's directory must be ours and not writable by others, or
    someone could swap the socket for a link between bind and chmod."""
    shared = tempfile.mkdtemp(prefix="pm-shared-")
    try:
        os.chmod(shared, 0o777)
        sock = os.path.join(shared, "api.sock")
        n = Node(extra={"api": {"socket": sock}}, start=False)
        try:
            d = e2e.Daemon("--config", n.config_path, env=e2e.clean_env())
            with d:
                rc = d.finish()
                check(rc != 0, "the daemon started with its socket in a 0777 directory")
                check(any("writable by group or others" in o.get("error", "") + o.get("msg", "")
                          for o in d.log_objects()), "no reason given:\n" + d._stderr_so_far())
            check(not os.path.exists(sock), "a socket was made in the shared directory")
        finally:
            shutil.rmtree(n.dir, ignore_errors=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def scenario_descriptor_exhaustion_pauses():
    """Connections that use up the daemon's descriptors make it pause
    accepting, once per second, instead of spinning; the episode is logged
    once, and its end; when they go, it serves again."""
    wrapper_dir = tempfile.mkdtemp(prefix="pm-limit-")
    conns = []
    try:
        wrapper = os.path.join(wrapper_dir, "pool-managerd")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec prlimit --nofile=64:64 %s \"$@\"\n" % os.path.abspath(e2e.DAEMON))
        os.chmod(wrapper, 0o755)
        saved, e2e.DAEMON = e2e.DAEMON, wrapper
        try:
            n = Node()
        finally:
            e2e.DAEMON = saved
        with n:
            for _ in range(80):
                s = socket.create_connection(("127.0.0.1", n.daemon.port), timeout=5)
                conns.append(s)
            n.daemon.wait_for(lambda o: o.get("msg") == "cannot accept API connections: pausing",
                              "the pause logged")
            # more pauses (one a second) while the descriptors stay taken:
            # checks that they are not logged again
            time.sleep(2.5)
            for s in conns:
                s.close()
            conns = []
            deadline = time.monotonic() + 30
            while True:
                try:
                    json_body(*n.request("GET", "/v2/pools", via="unix"), 200)
                    break
                except (Failure, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            pauses = [o for o in n.daemon.log_objects()
                      if o.get("msg") == "cannot accept API connections: pausing"]
            check(len(pauses) == 1, "%d pause lines: one per episode expected" % len(pauses))
            n.daemon.wait_for(lambda o: o.get("msg") == "accepting API connections again"
                              and o.get("pauses", 0) >= 2, "the end of the pauses logged")
            n.stop()
    finally:
        for s in conns:
            s.close()
        shutil.rmtree(wrapper_dir, ignore_errors=True)


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    global EVIL
    if len(argv) != 6 or argv[5] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION FAKE_ENGINE EVIL_PRELOAD SCENARIO\n"
                         "scenarios: %s\n" % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    e2e.DAEMON, e2e.VERSION = argv[1], argv[2]
    api.FAKE_ENGINE = os.path.realpath(argv[3])
    EVIL = os.path.realpath(argv[4])
    name = argv[5]
    return e2e.run_scenario(SCENARIOS, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
