#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of the node's durable state (docs/reliability.md):
the runtime directory's lock, and leases and drains that survive a
daemon killed with SIGKILL.

    state.py DAEMON VERSION FAKE_ENGINE SCENARIO
"""

import glob
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import e2e  # noqa: E402
from api import Node, config_pool, free_port, pid_alive  # noqa: E402
from e2e import Daemon, check, check_error, json_body  # noqa: E402


def tree(path):
    """Every file under path: its content's hash and its mtime."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if name.startswith("state.db") or name == "lock" or name == "api.sock":
                continue
            st = os.lstat(p)
            with open(p, "rb") as f:
                out[p] = (hashlib.sha256(f.read()).hexdigest(), st.st_mtime_ns)
    return out


def open_files(pid):
    """What a process's descriptors point at."""
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.add(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return out


def refused_start(n, *args, words):
    """A daemon on n's config that must exit 1 before listening, saying words."""
    p = subprocess.run([e2e.DAEMON, "--config", n.config_path, *args], capture_output=True,
                       timeout=e2e.EXIT_TIMEOUT, env=e2e.clean_env(), stdin=subprocess.DEVNULL)
    err = p.stderr.decode()
    check(p.returncode == 1, "exit status %d, expected 1; stderr:\n%s" % (p.returncode, err))
    check(words in err, "%r not said; stderr:\n%s" % (words, err))
    check('"msg":"listening"' not in err, "the refused daemon listened:\n%s" % err)


def restart(n):
    """The same config again, after the first daemon was killed."""
    n.daemon.__exit__(None, None, None)
    n.daemon = Daemon("--config", n.config_path, env=e2e.clean_env())
    n.daemon.wait_listening()


def kill9(n):
    n.daemon.proc.send_signal(signal.SIGKILL)
    n.daemon.proc.wait(e2e.EXIT_TIMEOUT)


def scenario_second_daemon_refused():
    """A second daemon on a runtime directory in use exits 1 naming the
    first one's pid, and leaves its engine, PID and handoff files alone."""
    with Node([config_pool("s", free_port())]) as n:
        snap = n.wait_pool("s", lambda s, b: b["ready"], "ready")
        run = os.path.join(n.dir, "run")
        before = tree(run)
        check(any(p.endswith(".pid") for p in before) and
              any("/engines/" in p for p in before), "no engine files to guard: %r" % before)
        refused_start(n, words="runtime directory %s is in use by pool-managerd pid %d"
                      % (run, n.daemon.proc.pid))
        check(tree(run) == before, "the refused daemon touched the runtime directory")
        # The daemon holds the lock and the state store open; its engine
        # inherited neither.
        lock = os.path.join(os.path.realpath(run), "lock")
        check(lock in open_files(n.daemon.proc.pid), "the daemon does not hold %s" % lock)
        inherited = [p for p in open_files(snap["pid"]) if p == lock or "state.db" in p]
        check(not inherited, "the engine inherited %r" % inherited)
        check(pid_alive(snap["pid"]), "the engine died")
        check(n.get("/v2/pools/s")["ready"], "the first daemon's pool is no longer ready")
        n.stop()


def scenario_runtime_dir_recreated_relocked():
    """The runtime directory deleted while the daemon runs is made again
    before the next spawn, and the lock is taken again in it: a second
    daemon is still refused."""
    token = "relock-token"
    auth = {"Authorization": "Bearer " + token}
    with Node(env={"LLORCH_API_TOKEN": token}) as n:
        run = os.path.join(n.dir, "run")
        shutil.rmtree(run)
        json_body(*n.request("POST", "/v2/pools/again/preload", n.prepared(), headers=auth), 200)
        n.daemon.wait_for(lambda o: o.get("msg") == "runtime directory locked again",
                          "the lock taken again")
        with open(os.path.join(run, "lock")) as f:
            check(f.read().strip() == str(n.daemon.proc.pid), "the lock file does not name the daemon")
        refused_start(n, words="runtime directory %s is in use by pool-managerd pid %d"
                      % (run, n.daemon.proc.pid))
        n.stop()


def scenario_restart_keeps_leases():
    """kill -9 with both slots leased: after the restart the same ids are
    held (a third lease is refused), release works, and a freed slot can be
    leased again."""
    with Node([config_pool("l", free_port(), slots=2)]) as n:
        pid = n.wait_pool("l", lambda s, b: b["ready"], "ready")["pid"]
        path = "/v2/pools/l/leases"
        first = json_body(*n.request("POST", path, {"ttl_ms": 600000}), 201)
        second = json_body(*n.request("POST", path, {"ttl_ms": 600000}), 201)
        kill9(n)
        try:
            restart(n)
            restored = n.daemon.wait_for(lambda o: o.get("msg") == "state restored", "state restored")
            check(restored["leases"] == 2, repr(restored))
            snap = n.wait_pool("l", lambda s, b: b["ready"], "ready again")
            check(snap["pid"] == pid and snap["active_leases"] == 2, repr(snap))
            check_error(*n.request("POST", path), 429, "NO_FREE_SLOT")
            renewed = json_body(*n.request("POST", "%s/%s/renew" % (path, first["lease_id"])), 200)
            check(renewed["lease_id"] == first["lease_id"], repr(renewed))
            status, _, _ = n.request("DELETE", "%s/%s" % (path, second["lease_id"]))
            check(status == 204, "release of a restored lease: %d" % status)
            third = json_body(*n.request("POST", path), 201)
            check(third["lease_id"] not in (first["lease_id"], second["lease_id"]), repr(third))
            check_error(*n.request("POST", path), 429, "NO_FREE_SLOT")
            node = n.get("/v2/node")["state_store"]
            check(node["path"] == os.path.join(n.dir, "run", "state.db") and
                  node["schema_version"] >= 1 and node["commits"] >= 1 and
                  isinstance(node["last_commit_at"], int) and node["size_bytes"] > 0, repr(node))
            n.stop()
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def scenario_restart_keeps_drain():
    """kill -9 with a lease held and a drain waiting for it: after the
    restart the pool drains again with the same deadline, and releasing
    the same lease id ends the drain."""
    with Node([config_pool("d", free_port())]) as n:
        pid = n.wait_pool("d", lambda s, b: b["ready"], "ready")["pid"]
        lease = json_body(*n.request("POST", "/v2/pools/d/leases"), 201)
        info = json_body(*n.request("POST", "/v2/pools/d/drain", {"deadline_ms": 600000}), 202)
        kill9(n)
        try:
            restart(n)
            resumed = n.daemon.wait_for(lambda o: o.get("msg") == "drain resumed", "drain resumed")
            check(resumed["deadline_at"] == info["deadline_at"], repr(resumed))
            snap = n.wait_pool("d", lambda s, b: b["draining"], "draining again")
            check(snap["pid"] == pid and snap["active_leases"] == 1, repr(snap))
            again = json_body(*n.request("POST", "/v2/pools/d/drain", {"deadline_ms": 5}), 202)
            check(again["already_running"] and again["deadline_at"] == info["deadline_at"], repr(again))
            check_error(*n.request("POST", "/v2/pools/d/leases"), 409, "POOL_DRAINING")
            status, _, _ = n.request("DELETE", "/v2/pools/d/leases/%s" % lease["lease_id"])
            check(status == 204, "release of the restored lease: %d" % status)
            n.wait_pool("d", lambda s, b: not b["live"] and not b["draining"], "drained")
            check(not pid_alive(pid), "the engine outlived the drain")
            n.stop()
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def scenario_config_drain_not_kept():
    """A drain the configuration ordered (SIGHUP removed the pool; a held
    lease keeps it draining) is not kept across kill -9: the file the next
    daemon reads has the pool again, and the pool serves."""
    with Node([config_pool("d", free_port()), config_pool("k", free_port(), mask="1")]) as n:
        n.wait_pool("d", lambda s, b: b["ready"], "ready")
        json_body(*n.request("POST", "/v2/pools/d/leases"), 201)
        with open(n.config_path) as f:
            full = json.load(f)
        without = dict(full, pools=[p for p in full["pools"] if p["id"] != "d"])
        with open(n.config_path, "w") as f:
            json.dump(without, f)
        n.daemon.proc.send_signal(signal.SIGHUP)
        n.wait_pool("d", lambda s, b: b["draining"], "d draining for its removal")
        n.wait_pool("k", lambda s, b: b["ready"], "k ready")
        # the commit of that turn is on disk before the next request's answer
        n.request("GET", "/v2/pools/k")
        kill9(n)
        with open(n.config_path, "w") as f:
            json.dump(full, f)
        restart(n)
        n.daemon.wait_for(lambda o: o.get("msg") == "serve-time preloads finished", "preloads")
        snap = n.wait_pool("d", lambda s, b: b["ready"], "d ready again")
        check(not snap["draining"], repr(snap))
        check(not any(o.get("msg") == "drain resumed" for o in n.daemon.log_objects()),
              "a drain of the old configuration resumed")
        n.stop()


def scenario_no_state_store():
    """--no-state-store: no state.db, /v2/node says so, leases work; after
    kill -9 they are gone (404), and the engine is taken over by its PID
    file as before the store."""
    with Node([config_pool("m", free_port())], args=("--no-state-store",)) as n:
        pid = n.wait_pool("m", lambda s, b: b["ready"], "ready")["pid"]
        lease = json_body(*n.request("POST", "/v2/pools/m/leases"), 201)
        check(not os.path.exists(os.path.join(n.dir, "run", "state.db")), "a state.db was made")
        check(n.get("/v2/node")["state_store"] is None, repr(n.get("/v2/node")))
        kill9(n)
        n.daemon.__exit__(None, None, None)
        n.daemon = Daemon("--config", n.config_path, "--no-state-store", env=e2e.clean_env())
        n.daemon.wait_listening()
        snap = n.wait_pool("m", lambda s, b: b["ready"], "ready again")
        check(snap["pid"] == pid, "the engine was not adopted: %r" % snap)
        status, _, _ = n.request("DELETE", "/v2/pools/m/leases/%s" % lease["lease_id"])
        check(status == 404, "a lease survived without a store: %d" % status)
        n.stop()


def scenario_restart_adopts_script_engine():
    """An engine that is a "#!" script (vLLM's console script is one) runs
    through its interpreter, as "/bin/sh /dev/fd/N ARGS": after kill -9 the
    next daemon adopts it all the same -- the same pid, no second engine
    -- and stops it on its way out."""
    keep = tempfile.mkdtemp(prefix="pm-script-")
    script = os.path.join(keep, "engine")
    with open(script, "w") as f:
        # no exec: the shell stays the engine's process, the fake engine
        # its child in the same session
        f.write("#!/bin/sh\n%s \"$@\"\n" % api.FAKE_ENGINE)
    os.chmod(script, 0o755)
    pool = dict(config_pool("sh", free_port()), binary=script)
    pid = None
    try:
        with Node([pool], extra={"engines": {"allow": [script]}}) as n:
            pid = n.wait_pool("sh", lambda s, b: b["ready"], "ready")["pid"]
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            check(argv[0] == b"/bin/sh" and argv[1].startswith(b"/dev/fd/"),
                  "not run as a script: %r" % argv)
            kill9(n)
            restart(n)
            snap = n.wait_pool("sh", lambda s, b: b["ready"], "ready again")
            check(snap["pid"] == pid, "the script engine was not adopted: %r" % snap)
            done = n.daemon.wait_for(lambda o: o.get("msg") == "engines reconciled",
                                     "the engines reconciled")
            check(done["to_adopt"] == 1, "not adopted at start: %r" % done)
            n.stop()
            check(not any(o.get("msg") == "engine spawned" for o in n.daemon.log_objects()),
                  "a second engine was started")
            check(not pid_alive(pid), "the adopted script engine outlived the daemon")
    finally:
        if pid and pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(keep, ignore_errors=True)


def scenario_restart_keeps_breaker():
    """kill -9 during a crash loop: the next daemon starts with the failure
    and restart counts and the breaker it had, so the first crash after
    the restart leaves the breaker open, with no restart (a fresh daemon
    would restart once before its breaker opened)."""
    crash = ("--load-ms", "2000", "--exit-after-ms", "50", "--exit-code", "1")
    extra = {"defaults": {"breaker": {"threshold": 2, "open_ms": 600000},
                          "backoff": {"initial_ms": 50, "max_ms": 50},
                          "health": {"startup_timeout_ms": 4000}}}
    with Node([config_pool("c", free_port(), *crash)], extra=extra) as n:
        before = n.wait_pool("c", lambda s, b: b["breaker"]["state"] == "open", "the breaker open")
        check(before["crash_count"] >= 2 and before["breaker"]["opens"] >= 1, repr(before))
        kill9(n)
        restart(n)
        restored = n.daemon.wait_for(lambda o: o.get("msg") == "restart policy state restored",
                                     "the policy state restored")
        check(restored["replicas"] == 1, repr(restored))
        after = n.wait_pool("c", lambda s, b: b["breaker"]["state"] == "open" and
                            b["crash_count"] > before["crash_count"], "the breaker open again")
        check(after["restart_count"] == before["restart_count"], "restarted again: %r" % after)
        check(after["breaker"]["failures"] > before["breaker"]["failures"] and
              after["breaker"]["opens"] >= before["breaker"]["opens"], repr(after["breaker"]))
        n.stop()


def scenario_corrupt_state():
    """A corrupt state.db is refused with the way out; --reset-state moves
    it aside and starts empty."""
    n = Node(start=False)
    try:
        run = os.path.join(n.dir, "run")
        os.makedirs(run, mode=0o700)
        db = os.path.join(run, "state.db")
        fd = os.open(db, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"this is not a database, " * 400)
        os.close(fd)
        refused_start(n, words="is corrupt")
        check(os.path.exists(db) and not glob.glob(db + ".corrupt-*"), "refused, yet moved")
        n.daemon = Daemon("--config", n.config_path, "--reset-state", env=e2e.clean_env())
        n.daemon.wait_listening()
        moved = glob.glob(db + ".corrupt-*")
        check(len(moved) == 1, "moved aside: %r" % moved)
        check(n.get("/v2/node")["state_store"]["schema_version"] >= 1, "no schema")
        n.stop()
    finally:
        n.__exit__(None, None, None)


def scenario_newer_schema():
    """A state store written by a newer pool-managerd is refused."""
    n = Node(start=False)
    try:
        run = os.path.join(n.dir, "run")
        os.makedirs(run, mode=0o700)
        db = os.path.join(run, "state.db")
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
        con = sqlite3.connect(db)
        con.execute("PRAGMA user_version=999")
        con.commit()
        con.close()
        refused_start(n, words="has schema version 999, newer than")
    finally:
        n.__exit__(None, None, None)


# --- engines after a restart ------------------------------------------------

def wait_until(pred, what, timeout=20):
    import time
    end = time.monotonic() + timeout
    while not pred():
        check(time.monotonic() < end, "timed out waiting for " + what)
        time.sleep(0.05)


def free_port_pair():
    """A port p with p + 1 free too: the home and the spare port of a surge."""
    import socket
    for _ in range(200):
        p = free_port()
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            pass
        finally:
            s.close()
    raise AssertionError("no two free ports in a row")


def engines_of(run):
    """Live processes whose command line runs the fake engine with a port
    of this test's, by pid (what an orphan would be)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or not pid_alive(int(name)):
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace") == api.FAKE_ENGINE:
            try:
                cwd = os.readlink("/proc/%s/cwd" % name)
            except OSError:
                cwd = ""
            if os.path.realpath(cwd) == os.path.realpath(run):
                out[int(name)] = [a.decode(errors="replace") for a in argv]
    return out


def other_model(n):
    other = os.path.join(n.dir, "other.gguf")
    shutil.copy(n.model, other)
    return other


def after_restart_one_engine(n, pool, port_choices):
    """The pool ready again on exactly one engine of ours, which serves it."""
    snap = n.wait_pool(pool, lambda s, b: b["ready"], "ready after the restart")
    run = os.path.join(n.dir, "run")
    wait_until(lambda: len(engines_of(run)) == 1, "exactly one engine left: %r" % engines_of(run))
    pids = list(engines_of(run))
    check(pids == [snap["pid"]], "the engine %r is not the pool's %r" % (pids, snap["pid"]))
    check(snap["url"] in ["http://127.0.0.1:%d" % p for p in port_choices], repr(snap))
    return snap


def reload_then_kill(strategy):
    port = free_port_pair()
    with Node([config_pool("rk", port, "--load-ms", "200")]) as n:
        first = n.wait_pool("rk", lambda s, b: b["ready"], "ready")
        got = json_body(*n.request("POST", "/v2/pools/rk/reload",
                                   {"model_path": other_model(n), "engine_version": "fake-2",
                                    "strategy": strategy}), 200)
        check(got["ok"] and got["strategy"] == strategy, repr(got))
        reloaded = n.wait_pool("rk", lambda s, b: b["ready"] and b["pid"] != first["pid"] and
                               not pid_alive(first["pid"]), "the reloaded engine alone")
        kill9(n)
        try:
            restart(n)
            snap = after_restart_one_engine(n, "rk", (port, port + 1))
            check(snap["pid"] == reloaded["pid"] and snap["model_id"] == "other.gguf" and
                  snap["engine_version"] == "fake-2", "not the reloaded engine: %r" % snap)
            check(snap["url"] == reloaded["url"], repr(snap))
            n.stop()
            check(not engines_of(os.path.join(n.dir, "run")), "an engine outlived the daemon")
        finally:
            for pid in engines_of(os.path.join(n.dir, "run")):
                os.kill(pid, signal.SIGKILL)


def scenario_drain_first_reload_adopted():
    """A drain-first reload, then kill -9: the next daemon adopts the
    reloaded engine (same pid, the new model), starts no second one."""
    reload_then_kill("drain-first")


def scenario_surge_reload_adopted():
    """A surge reload, then kill -9: the engine on the spare port, with
    the new model, is adopted; nothing else runs."""
    reload_then_kill("surge")


def scenario_killed_during_surge():
    """kill -9 while the surge engine loads: after the restart exactly one
    engine serves the pool (the old one, on its spec) and no orphan stays."""
    import threading
    port = free_port_pair()
    with Node([config_pool("ks", port, "--load-ms", "3000")]) as n:
        first = n.wait_pool("ks", lambda s, b: b["ready"], "ready", timeout=30)
        run = os.path.join(n.dir, "run")
        reply = {}

        def reload():
            try:
                reply["r"] = n.request("POST", "/v2/pools/ks/reload",
                                       {"model_path": other_model(n), "strategy": "surge"})
            except Exception as e:  # the daemon dies under the request
                reply["e"] = e
        t = threading.Thread(target=reload, daemon=True)
        t.start()
        wait_until(lambda: len(engines_of(run)) == 2, "the surge engine started")
        surge = [p for p in engines_of(run) if p != first["pid"]]
        kill9(n)
        t.join(10)
        try:
            restart(n)
            n.daemon.wait_for(lambda o: o.get("msg") == "stopping an engine no longer wanted" and
                              o.get("pid") == surge[0], "the surge engine stopped")
            snap = after_restart_one_engine(n, "ks", (port,))
            check(snap["pid"] == first["pid"] and snap["model_id"] == first["model_id"], repr(snap))
            check(not pid_alive(surge[0]), "the surge engine is still alive")
            n.stop()
        finally:
            for pid in engines_of(run):
                os.kill(pid, signal.SIGKILL)


def scenario_reused_pid_not_signalled():
    """A recorded engine whose pid another process holds now (its start
    time differs) is never signalled: the record goes, the process lives."""
    port = free_port()
    with Node([config_pool("rp", port)]) as n:
        snap = n.wait_pool("rp", lambda s, b: b["ready"], "ready")
        kill9(n)
        os.kill(snap["pid"], signal.SIGKILL)
        wait_until(lambda: not pid_alive(snap["pid"]), "the engine gone")
        other = subprocess.Popen(["sleep", "600"])
        try:
            db = os.path.join(n.dir, "run", "state.db")
            con = sqlite3.connect(db)
            # The record names the bystander's pid, as if the pid had been
            # reused; its start time is the dead engine's.
            changed = con.execute("UPDATE engines SET pid = ? WHERE pool = 'rp'", (other.pid,)).rowcount
            con.commit()
            con.close()
            check(changed == 1, "no engine record to point at the bystander")
            restart(n)
            said = n.daemon.wait_for(lambda o: "another process now" in o.get("msg", ""),
                                     "the reused pid noticed")
            check(said["pid"] == other.pid, repr(said))
            again = n.wait_pool("rp", lambda s, b: b["ready"], "a new engine ready")
            check(again["pid"] != other.pid, repr(again))
            check(other.poll() is None, "the bystander was signalled: %r" % other.returncode)
            n.stop()
        finally:
            other.kill()
            other.wait()


def scenario_removed_pool_engine_stopped():
    """A pool removed from the config while the daemon was down: its engine
    is stopped at start, with a line naming it."""
    keep, gone = free_port(), free_port()
    with Node([config_pool("keep", keep), config_pool("gone", gone, mask="1")]) as n:
        n.wait_pool("keep", lambda s, b: b["ready"], "keep ready")
        victim = n.wait_pool("gone", lambda s, b: b["ready"], "gone ready")["pid"]
        kept = n.get("/v2/pools/keep")["pid"]
        kill9(n)
        try:
            with open(n.config_path) as f:
                config = json.load(f)
            config["pools"] = [p for p in config["pools"] if p["id"] == "keep"]
            with open(n.config_path, "w") as f:
                json.dump(config, f)
            restart(n)
            said = n.daemon.wait_for(lambda o: o.get("msg") == "stopping an engine no longer wanted",
                                     "the removed pool's engine stopped")
            check(said["pid"] == victim and said["pool_id"] == "gone", repr(said))
            wait_until(lambda: not pid_alive(victim), "the removed pool's engine to exit")
            snap = n.wait_pool("keep", lambda s, b: b["ready"], "keep ready again")
            check(snap["pid"] == kept, "the kept pool's engine was not adopted: %r" % snap)
            n.stop()
        finally:
            for pid in (victim, kept):
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    if len(argv) != 5 or argv[4] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION FAKE_ENGINE SCENARIO\nscenarios: %s\n"
                         % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    e2e.DAEMON, e2e.VERSION = argv[1], argv[2]
    api.FAKE_ENGINE = os.path.realpath(argv[3])
    return e2e.run_scenario(SCENARIOS, argv[4])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
