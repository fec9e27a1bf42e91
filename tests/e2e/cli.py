#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of pool-managerctl: the CLI binary against a daemon
on a demo-like config (two pools of the fake engine on fake GPUs).

    cli.py DAEMON VERSION FAKE_ENGINE CTL SCENARIO

Every command is run with --json (parsed) and without (the table's or the
listing's text checked); exit statuses 0/1/2/3 as docs/cli.md states them.
"""

import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import e2e  # noqa: E402
from api import Node, config_pool, free_port  # noqa: E402
from e2e import Failure, check, json_body  # noqa: E402

CTL = None
SNAPSHOT = api.SNAPSHOT_KEYS | {"tensor_split"}
HEADER = ["POOL", "REPLICA", "STATE", "PID", "UPTIME", "RESTARTS", "SLOTS", "DEVICES", "MODEL",
          "LAST ERROR"]


def ctl_env(**extra):
    env = {k: v for k, v in e2e.clean_env().items() if k not in ("NO_COLOR",)}
    env.update(extra)
    return env


def ctl(*args, sock=None, env=None, user=None, group=None, binary=None, cwd=None):
    """Runs the CLI; (exit status, stdout, stderr)."""
    env = ctl_env(**(env or {}))
    if sock:
        env["POOL_MANAGERD_SOCKET"] = sock
    kw = {"user": user, "group": group, "extra_groups": []} if user is not None else {}
    p = subprocess.run([binary or CTL, *args], env=env, capture_output=True, cwd=cwd,
                       timeout=e2e.HTTP_TIMEOUT, **kw)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ok_json(*args, sock):
    rc, out, err = ctl("--json", *args, sock=sock)
    check(rc == 0, "%r: exit %d: %s" % (args, rc, err))
    return json.loads(out)


def refused(want_code, *args, sock, want_rc=1):
    """The daemon said no: exit 1, its error on stderr, its JSON on stdout."""
    rc, out, err = ctl("--json", *args, sock=sock)
    check(rc == want_rc, "%r: exit %d, expected %d: %s" % (args, rc, want_rc, err))
    body = json.loads(out)
    check(body.get("code") == want_code, "%r: %r, expected %s" % (args, body, want_code))
    check(want_code in err and body["error"] in err, "%r: stderr %r" % (args, err))
    return body


def usage_failed(*args, want=None):
    """Exit 2, one line naming the problem and one hint, not the help."""
    rc, out, err = ctl(*args, sock="/nonexistent/api.sock")
    lines = err.strip().split("\n")
    check(rc == 2, "%r: exit %d, expected 2: %r" % (args, rc, err))
    check(len(lines) == 2 and "--help" in lines[1] and "Commands:" not in err and out == "",
          "%r: %r" % (args, err))
    if want:
        check(want in lines[0], "%r: %r lacks %r" % (args, lines[0], want))


def demo_node(*pools, **kw):
    """Two pools like the demo's, on a fake two-GPU node."""
    pools = pools or (config_pool("llama-7b", free_port(), mask="0"),
                      config_pool("qwen-0.5b", free_port(), slots=4, mask="1"))
    return Node(pools, **kw)


def wait_ready(n, *ids, headers=None):
    for pool_id in ids:
        n.wait_pool(pool_id, lambda s, b: s == 200 and b["ready"], pool_id + " ready",
                    headers=headers)


def free_pair():
    """A port whose next one is free too (a surge reload starts its second
    engine on port + 1)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                pass


def table(text):
    """The header's columns (split where two spaces or more part them, so
    LAST ERROR stays one) and the rows, split on blanks."""
    lines = text.rstrip("\n").split("\n")
    header = [c for c in lines[0].split("  ") if c.strip()]
    return [c.strip() for c in header], [line.split() for line in lines[1:]]


# --- scenarios ---------------------------------------------------------------

def scenario_status():
    """status: one row per replica with the snapshot's values; --json is
    GET /v2/pools; no colour when stdout is not a terminal."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        got = ok_json("status", sock=sock)
        check([p["pool_id"] for p in got["pools"]] == ["llama-7b", "qwen-0.5b"], repr(got))
        rc, out, err = ctl("status", sock=sock)
        check(rc == 0 and err == "", "exit %d: %s" % (rc, err))
        check("\033[" not in out, "colour without a terminal: %r" % out)
        header, rows = table(out)
        check(header == HEADER, "header %r" % header)
        check(len(rows) == 2, "rows %r" % rows)
        for row, pool_id, slots, mask in ((rows[0], "llama-7b", "0/2", "0"),
                                          (rows[1], "qwen-0.5b", "0/4", "1")):
            snap = n.get("/v2/pools/" + pool_id)
            rep = snap["replicas"][0]
            check(row[:4] == [pool_id, "r0", "ready", str(rep["pid"])], repr(row))
            check(row[4][-1] in "smhd" and row[5] == str(rep["restart_count"]), repr(row))
            check(row[6:9] == [slots, mask, rep["model_id"] or "-"], repr(row))
            check(row[9:] == ["-"], "last error %r" % row[9:])
        n.stop()


def scenario_show_devices_node():
    """show POOL, devices and node, readable and as JSON."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        snap = ok_json("show", "qwen-0.5b", sock=sock)
        check(snap["pool_id"] == "qwen-0.5b" and [d["index"] for d in snap["devices"]] == [1],
              repr(snap))
        rc, out, _ = ctl("show", "qwen-0.5b", sock=sock)
        check(rc == 0 and out.startswith("pool qwen-0.5b: ready\n"), out)
        for needle in ("replica r0: ready", "device 1:", "slots_total", "started_at",
                       "UTC", "Test GPU 1"):
            check(needle in out, "show lacks %r:\n%s" % (needle, out))
        devices = ok_json("devices", sock=sock)
        check(devices["backend"] == "fake" and len(devices["devices"]) == 2, repr(devices))
        rc, out, _ = ctl("devices", sock=sock)
        header, rows = table(out.split("\n", 1)[1])
        check(rc == 0 and out.startswith("backend: fake\n"), out)
        check(header == ["INDEX", "NAME", "CC", "VRAM USED", "VRAM TOTAL", "UUID"], repr(header))
        check([r[0] for r in rows] == ["0", "1"] and rows[1][-1] == "GPU-test-0001", repr(rows))
        node = ok_json("node", sock=sock)
        check(node["profile"] == "home" and "state_store" in node, repr(node))
        rc, out, _ = ctl("node", sock=sock)
        check(rc == 0 and "profile              home" in out and "state_store:" in out, out)
        refused("POOL_NOT_FOUND", "show", "nope", sock=sock)
        n.stop()


def scenario_logs():
    """logs POOL prints the engine's last lines (-n), -f keeps printing the
    lines written afterwards; an unknown replica exits 1 with the daemon's
    error."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        log = api.engine_log(n, "qwen-0.5b")
        api.append_lines(log, ["cli-line-%d" % i for i in range(5)])
        rc, out, err = ctl("logs", "qwen-0.5b", "-n", "2", sock=sock)
        check(rc == 0 and out == "cli-line-3\ncli-line-4\n", "logs -n 2: %d %r %r" % (rc, out, err))
        rc, _, err = ctl("logs", "qwen-0.5b", "--replica", "r9", sock=sock)
        check(rc == 1 and "r9" in err, "an unknown replica: %d %r" % (rc, err))
        rc, _, err = ctl("logs", "qwen-0.5b", "-n", "x", sock=sock)
        check(rc == 2, "-n x: %d %r" % (rc, err))
        env = ctl_env(POOL_MANAGERD_SOCKET=sock)
        p = subprocess.Popen([CTL, "logs", "qwen-0.5b", "-n", "1", "-f"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            check(p.stdout.readline() == b"cli-line-4\n", "the tail of -f")
            api.append_lines(log, ["cli-after"])
            check(p.stdout.readline() == b"cli-after\n", "a line written after -f started")
        finally:
            p.kill()
            p.wait()
        n.stop()


def scenario_leases():
    """leases POOL lists the leases held, oldest first, with both times."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        check(ok_json("leases", "qwen-0.5b", sock=sock) == {"pool_id": "qwen-0.5b", "leases": []},
              "a pool without leases")
        a = json_body(*n.request("POST", "/v2/pools/qwen-0.5b/leases", {"ttl_ms": 60000}), 201)
        b = json_body(*n.request("POST", "/v2/pools/qwen-0.5b/leases"), 201)
        json_body(*n.request("POST", "/v2/pools/llama-7b/leases"), 201)
        got = ok_json("leases", "qwen-0.5b", sock=sock)["leases"]
        # oldest grant first; within one millisecond, by id
        check([(g["granted_at"], g["lease_id"]) for g in got] ==
              sorted((g["granted_at"], g["lease_id"]) for g in got), repr(got))
        by_id = {g["lease_id"]: g for g in got}
        check(sorted(by_id) == sorted([a["lease_id"], b["lease_id"]]), repr(got))
        for want in (a, b):
            g = by_id[want["lease_id"]]
            check(g["replica_id"] == "r0" and g["url"] == want["url"] and
                  g["expires_at"] == want["expires_at"], repr(g))
        check(by_id[a["lease_id"]]["expires_at"] - by_id[a["lease_id"]]["granted_at"] == 60000,
              repr(got))
        # the same over TCP: a read
        listed = n.get("/v2/pools/qwen-0.5b/leases")
        check(listed["leases"] == got, repr(listed))
        rc, out, _ = ctl("leases", "qwen-0.5b", sock=sock)
        header, rows = table(out)
        check(rc == 0 and header == ["LEASE", "REPLICA", "GRANTED", "EXPIRES"], repr(header))
        check([r[0] for r in rows] == [g["lease_id"] for g in got] and rows[0][1] == "r0",
              repr(rows))
        check(n.request("DELETE", "/v2/pools/qwen-0.5b/leases/" + a["lease_id"])[0] == 204,
              "release")
        got = ok_json("leases", "qwen-0.5b", sock=sock)["leases"]
        check([g["lease_id"] for g in got] == [b["lease_id"]], repr(got))
        refused("POOL_NOT_FOUND", "leases", "nope", sock=sock)
        n.stop()


def scenario_stop_start():
    """stop drains and stops; /ready leaves the stopped pool out; start
    brings a configured pool back (409 while it runs, 404 for an id the
    configuration lacks)."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        refused("CONFLICT", "start", "llama-7b", sock=sock)
        refused("POOL_NOT_FOUND", "start", "nope", sock=sock)
        drain = ok_json("stop", "llama-7b", "--now", sock=sock)
        check(drain["draining"] and drain["deadline_at"] == drain["started_at"], repr(drain))
        n.wait_pool("llama-7b", lambda s, b: b["state"] == "stopped", "llama-7b stopped")
        ready = json_body(*n.request("GET", "/ready"), 200)
        check(ready == {"ready": True, "pools": 2, "missing": []}, repr(ready))
        rc, out, _ = ctl("start", "llama-7b", sock=sock)
        check(rc == 0 and out.startswith("pool llama-7b: starting (preloading)"),
              "exit %d: %r" % (rc, out))
        wait_ready(n, "llama-7b")
        refused("CONFLICT", "start", "llama-7b", sock=sock)
        # a removed pool of the configuration comes back too
        json_body(*n.request("DELETE", "/v2/pools/qwen-0.5b"), 202)
        n.wait_pool("qwen-0.5b", lambda s, b: s == 404, "qwen-0.5b gone")
        check(json_body(*n.request("GET", "/ready"), 200)["missing"] == [], "removed pool awaited")
        snap = ok_json("start", "qwen-0.5b", sock=sock)
        check(SNAPSHOT <= set(snap) and snap["state"] == "preloading" and not snap["ready"],
              repr(snap))
        wait_ready(n, "qwen-0.5b")
        # a deadline: drains until the lease ends
        lease = json_body(*n.request("POST", "/v2/pools/qwen-0.5b/leases"), 201)
        drain = ok_json("stop", "qwen-0.5b", "--deadline", "600000", sock=sock)
        check(drain["deadline_at"] - drain["started_at"] == 600000 and drain["active_leases"] == 1,
              repr(drain))
        check(n.request("DELETE", "/v2/pools/qwen-0.5b/leases/" + lease["lease_id"])[0] == 204,
              "release")
        n.wait_pool("qwen-0.5b", lambda s, b: b["state"] == "stopped", "qwen-0.5b stopped")
        n.stop()


def scenario_restart_breaker():
    """restart and breaker-reset answer the snapshot GET /v2/pools/{id}
    answers (devices and tensor_split included); the pool goes through
    backoff and preloading to ready."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        before = n.get("/v2/pools/qwen-0.5b")
        snap = ok_json("restart", "qwen-0.5b", sock=sock)
        check(SNAPSHOT <= set(snap), "restart answer lacks %r" % (SNAPSHOT - set(snap)))
        check([d["index"] for d in snap["devices"]] == [1] and snap["tensor_split"] is None,
              repr(snap))
        check(not snap["ready"] and snap["state"] in ("backoff", "stopping", "preloading"),
              repr(snap["state"]))
        n.wait_pool("qwen-0.5b", lambda s, b: b["ready"] and b["pid"] != before["pid"],
                    "the restarted engine ready")
        rc, out, _ = ctl("restart", "llama-7b", sock=sock)
        check(rc == 0 and "restarting" in out, out)
        wait_ready(n, "llama-7b")
        snap = ok_json("breaker-reset", "qwen-0.5b", sock=sock)
        check(SNAPSHOT <= set(snap) and snap["breaker"]["state"] == "closed", repr(snap))
        rc, out, _ = ctl("breaker-reset", "llama-7b", sock=sock)
        check(rc == 0 and out.startswith("pool llama-7b: breaker closed"), out)
        refused("POOL_NOT_FOUND", "restart", "nope", sock=sock)
        n.stop()


def scenario_reload():
    """reload POOL --model PATH [--surge]: the answer of POST .../reload."""
    with demo_node(config_pool("llama-7b", free_port(), mask="0"),
                   config_pool("qwen-0.5b", free_pair(), slots=4, mask="1")) as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        other = os.path.join(n.dir, "other.gguf")
        shutil.copy(n.model, other)
        got = ok_json("reload", "qwen-0.5b", "--model", other, "--surge", sock=sock)
        check(got["ok"] and got["model_id"] == "other.gguf" and got["strategy"] == "surge",
              repr(got))
        # a relative path is the working directory's
        rc, out, err = ctl("reload", "llama-7b", "--model", "./tiny.gguf", sock=sock, cwd=n.dir)
        check(rc == 0 and out.startswith("pool llama-7b reloaded to tiny.gguf (drain-first"),
              out + err)
        check(n.get("/v2/pools/llama-7b")["model_id"] == "tiny.gguf", "not reloaded")
        refused("STAGE_FAILED", "reload", "llama-7b", "--model", other, "--sha256", "0" * 64,
                sock=sock)
        usage_failed("reload", "llama-7b", want="--model")
        n.stop()


def scenario_reload_config():
    """reload-config answers the pools added, removed, changed; a bad file
    changes nothing (422); a daemon without --config answers 409."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        sock = n.daemon.socket
        with open(n.config_path) as f:
            config = json.load(f)
        config["pools"] = [config["pools"][1], config_pool("mistral", free_port(), mask="0")]
        config["pools"][0]["slots"] = 3
        with open(n.config_path, "w") as f:
            json.dump(config, f)
        got = ok_json("reload-config", sock=sock)
        check(got == {"added": ["mistral"], "removed": ["llama-7b"], "changed": ["qwen-0.5b"],
                      "unchanged": []}, repr(got))
        wait_ready(n, "mistral")
        n.wait_pool("llama-7b", lambda s, b: s == 404, "llama-7b removed")
        rc, out, _ = ctl("reload-config", sock=sock)
        check(rc == 0 and "unchanged  qwen-0.5b mistral" in out, out)
        config["pools"][1]["device_mask"] = "GPU7"
        with open(n.config_path, "w") as f:
            json.dump(config, f)
        body = refused("CONFIG_INVALID", "reload-config", sock=sock)
        check("GPU7" in body["error"], repr(body))
        check(n.get("/v2/pools/mistral")["device_mask"] == "0", "a refused file changed a pool")
        n.stop()
    with e2e.Daemon("--bind", "127.0.0.1:0") as d:
        d.wait_listening()
        body = refused("CONFLICT", "reload-config", sock=d.socket)
        check("--config" in body["error"], repr(body))
        check(d.stop() == 0, "exit status")


def scenario_usage():
    """Usage errors exit 2 with one line and a hint; --help states the
    exit statuses."""
    rc, out, _ = ctl("--help")
    check(rc == 0 and "Exit status: 0" in out and "reload-config" in out, out)
    rc, out, _ = ctl("--version")
    check(rc == 0 and out == "pool-managerctl %s\n" % e2e.VERSION, out)
    usage_failed(want="no command")
    usage_failed("bogus", want="unknown command 'bogus'")
    usage_failed("show", want="which pool")
    usage_failed("show", "a b", want="'a b' is not a pool id")
    usage_failed("stop", "../x", want="is not a pool id")
    usage_failed("status", "extra", want="unexpected argument 'extra'")
    usage_failed("status", "--now", want="status does not take --now")
    usage_failed("stop", "p", "--now", "--deadline", "5", want="exclude")
    usage_failed("stop", "p", "--deadline", "soon", want="--deadline soon")
    usage_failed("status", "--bogus")
    usage_failed("status", "--socket", "/a", "--url", "http://127.0.0.1:1", want="exclude")
    usage_failed("status", "--url", "ftp://x", want="http://")
    usage_failed("status", "--token-file", "/etc/hostname", want="needs --url")


def scenario_unreachable():
    """No daemon: exit 3 naming the socket (missing, nobody listening, or
    not ours to open: the hint names its group) or the URL."""
    base = tempfile.mkdtemp(prefix="pm-cli-")
    try:
        missing = os.path.join(base, "api.sock")
        rc, out, err = ctl("status", sock=missing)
        check(rc == 3 and missing in err and "running" in err and out == "", err)
        rc, _, err = ctl("--socket", missing, "restart", "p")
        check(rc == 3 and missing in err, err)
        # a socket file nobody accepts on
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(missing)
        s.close()
        rc, _, err = ctl("status", sock=missing)
        check(rc == 3 and missing in err, err)
        os.unlink(missing)
        rc, _, err = ctl("--url", "http://127.0.0.1:%d" % free_port(), "status")
        check(rc == 3 and "cannot reach" in err, err)
        unreadable_socket(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def unreadable_socket(base):
    """EACCES: as root, the CLI runs as nobody outside the socket's group;
    else the socket is made mode 0000 (a socket's owner needs write
    permission to connect too)."""
    os.chmod(base, 0o755)
    path = os.path.join(base, "locked.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    try:
        kw = {}
        if os.geteuid() == 0:
            import pwd
            nobody = pwd.getpwnam("nobody")
            group = next(g for g in grp.getgrall() if g.gr_gid not in (0, nobody.pw_gid))
            os.chown(path, 0, group.gr_gid)
            os.chmod(path, 0o660)
            binary = os.path.join(base, "pool-managerctl")
            shutil.copy(CTL, binary)
            os.chmod(binary, 0o755)
            kw = {"user": nobody.pw_uid, "group": nobody.pw_gid, "binary": binary}
            want = group.gr_name
        else:
            os.chmod(path, 0)
            want = grp.getgrgid(os.getegid()).gr_name
        rc, _, err = ctl("status", sock=path, **kw)
        check(rc == 3 and "Permission denied" in err and path in err, "exit %d: %r" % (rc, err))
        check("group %s" % want in err, "the hint does not name group %s: %r" % (want, err))
    finally:
        listener.close()


def scenario_url_token():
    """--url: reads work without a token; a change over TCP without one is
    403 READ_ONLY (exit 1); with a token (file, POOL_MANAGERD_TOKEN,
    LLORCH_API_TOKEN) it works, a wrong one is 401."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        url = "http://127.0.0.1:%d" % n.daemon.port
        rc, out, _ = ctl("--url", url, "--json", "status")
        check(rc == 0 and len(json.loads(out)["pools"]) == 2, out)
        rc, out, err = ctl("--url", url, "--json", "restart", "qwen-0.5b")
        check(rc == 1 and json.loads(out)["code"] == "READ_ONLY" and "socket" in err, err)
        n.stop()
    token = "cli-token-0123456789"
    with demo_node(env={"LLORCH_API_TOKEN": token}) as n:
        wait_ready(n, "llama-7b", "qwen-0.5b", headers={"Authorization": "Bearer " + token})
        url = "http://127.0.0.1:%d/" % n.daemon.port
        path = os.path.join(n.dir, "token")
        with open(path, "w") as f:
            f.write(token + "\n")
        rc, _, err = ctl("--url", url, "--token-file", path, "breaker-reset", "qwen-0.5b")
        check(rc == 0, err)
        for var in ("POOL_MANAGERD_TOKEN", "LLORCH_API_TOKEN"):
            rc, _, err = ctl("--url", url, "show", "qwen-0.5b", env={var: token})
            check(rc == 0, "%s: %s" % (var, err))
        rc, out, err = ctl("--url", url, "--json", "status", env={"POOL_MANAGERD_TOKEN": "wrong"})
        check(rc == 1 and json.loads(out)["code"] == "UNAUTHORIZED" and
              "POOL_MANAGERD_TOKEN" in err, err)
        n.stop()


def scenario_bash_completion():
    """The completion offers the commands, then the pools `status --json`
    names."""
    with demo_node() as n:
        wait_ready(n, "llama-7b", "qwen-0.5b")
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                              "contrib", "bash-completion", "pool-managerctl")
        bindir = tempfile.mkdtemp(prefix="pm-cli-")
        try:
            os.symlink(CTL, os.path.join(bindir, "pool-managerctl"))
            script = ('source "$1"; COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); '
                      '_pool_managerctl; printf "%%s\\n" "${COMPREPLY[@]}"')

            def complete(words):
                env = ctl_env(PATH=bindir + ":/usr/bin:/bin",
                              POOL_MANAGERD_SOCKET=n.daemon.socket)
                p = subprocess.run(["/bin/bash", "--norc", "-c", script % words, "x", source],
                                   env=env, capture_output=True, timeout=e2e.HTTP_TIMEOUT)
                check(p.returncode == 0, p.stderr.decode())
                return p.stdout.decode().split()

            check(complete("pool-managerctl re") == ["restart", "reload", "reload-config"],
                  repr(complete("pool-managerctl re")))
            check(complete("pool-managerctl stop ''") == ["llama-7b", "qwen-0.5b"],
                  repr(complete("pool-managerctl stop ''")))
            check(complete("pool-managerctl --json show q") == ["qwen-0.5b"], "show q")
            check(complete("pool-managerctl stop qwen-0.5b --") == ["--json", "--now", "--deadline"],
                  repr(complete("pool-managerctl stop qwen-0.5b --")))
        finally:
            shutil.rmtree(bindir, ignore_errors=True)
        n.stop()


def scenario_ready_after_failure():
    """/ready leaves out a pool an operator stopped, not one that stopped
    by itself: with restart "never", a failed engine stays stopped and
    /ready names it until it is started again."""
    crash = config_pool("crash", free_port(), "--exit-after-ms", "300", "--exit-code", "1",
                        mask="1")
    crash["policy"] = {"restart": "never"}
    with demo_node(config_pool("steady", free_port()), crash) as n:
        wait_ready(n, "steady")
        n.wait_pool("crash", lambda s, b: b["state"] == "stopped" and b["last_error"],
                    "crash stopped by its failure")
        status, _, data = n.request("GET", "/ready")
        check(status == 503 and json.loads(data)["missing"] == ["crash"], data)
        rc, out, _ = ctl("status", sock=n.daemon.socket)
        row = next(r for r in table(out)[1] if r[0] == "crash")
        check(row[2] == "stopped" and row[3] == "-" and row[4] == "-" and
              row[9] != "-", "the failure's row: %r" % row)
        # a stop has nothing to stop; a start brings it back
        refused("CONFLICT", "stop", "crash", sock=n.daemon.socket)
        snap = ok_json("start", "crash", sock=n.daemon.socket)
        check(snap["state"] == "preloading", repr(snap))
        n.stop()


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    global CTL
    if len(argv) != 6 or argv[5] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION FAKE_ENGINE CTL SCENARIO\nscenarios: %s\n"
                         % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    e2e.DAEMON, e2e.VERSION = argv[1], argv[2]
    api.FAKE_ENGINE = os.path.realpath(argv[3])
    CTL = os.path.realpath(argv[4])
    return e2e.run_scenario(SCENARIOS, argv[5])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Failure as e:
        print("FAIL: %s" % e)
        sys.exit(1)
