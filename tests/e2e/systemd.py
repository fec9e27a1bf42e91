#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios of the daemon under a service manager
(docs/systemd.md): the notification protocol spoken to $NOTIFY_SOCKET,
and log lines with a priority prefix when stderr is the journal.

    systemd.py DAEMON VERSION FAKE_ENGINE SCENARIO

The test plays systemd: it binds the datagram socket and reads what the
daemon sends, in order.
"""

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import e2e  # noqa: E402
from api import Node, config_pool, free_port, pid_alive  # noqa: E402
from e2e import check  # noqa: E402

WAIT = 60.0


class Manager:
    """The service manager's end of $NOTIFY_SOCKET: every datagram, in
    order, as a dict of its assignments."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="pm-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "pm-notify-%d-%s" % (os.getpid(), os.path.basename(self.dir))
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
        self.messages = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            text = data.decode()
            msg = dict(line.split("=", 1) for line in text.split("\n") if line)
            self._queue.put(msg)

    def next(self, pred, what, timeout=WAIT):
        """The next message for which pred holds; the ones before it are
        kept in self.messages too."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise e2e.Failure("no %s from the daemon; got %r" % (what, self.messages))
            try:
                msg = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.messages.append(msg)
            if pred(msg):
                return msg

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def not_watchdog(msg):
    return "WATCHDOG" not in msg


def scenario_notify():
    """READY=1 after the configured pool answered (EXTEND_TIMEOUT_USEC
    until then), STATUS= kept current, the watchdog, RELOADING=1 and
    READY=1 around SIGHUP, STOPPING=1 on SIGTERM; engines do not inherit
    the variables."""
    m = Manager()
    pool = config_pool("n", free_port(), "--load-ms", "1500")
    try:
        with Node([pool], env={"NOTIFY_SOCKET": m.address, "WATCHDOG_USEC": "400000"}) as n:
            ready = m.next(lambda msg: "READY" in msg, "READY=1")
            check(ready == {"READY": "1", "STATUS": "1/1 pools ready"}, repr(ready))
            before = m.messages[:-1]
            extend = [msg for msg in before if "EXTEND_TIMEOUT_USEC" in msg]
            check(extend and int(extend[0]["EXTEND_TIMEOUT_USEC"]) > 0,
                  "no EXTEND_TIMEOUT_USEC while the preload loaded: %r" % before)
            snap = n.get("/v2/pools/n")
            check(snap["ready"], "READY=1 before the pool was: %r" % snap)
            n.daemon.wait_for(lambda o: o.get("msg") == "serve-time preloads finished",
                              "preloads finished")
            for _ in range(2):
                m.next(lambda msg: msg == {"WATCHDOG": "1"}, "WATCHDOG=1")

            pid = snap["pid"]
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
            for name in (b"NOTIFY_SOCKET=", b"WATCHDOG_USEC="):
                check(not any(e.startswith(name) for e in env), "the engine inherited %r" % name)

            # The pool goes down and comes back: STATUS follows.
            os.kill(pid, signal.SIGKILL)
            m.next(lambda msg: msg.get("STATUS") == "0/1 pools ready", "STATUS=0/1")
            m.next(lambda msg: msg.get("STATUS") == "1/1 pools ready", "STATUS=1/1 again")
            pid = n.get("/v2/pools/n")["pid"]

            t0 = time.monotonic()
            n.daemon.proc.send_signal(signal.SIGHUP)
            reloading = m.next(lambda msg: "RELOADING" in msg, "RELOADING=1")
            t1 = time.monotonic()
            usec = int(reloading.get("MONOTONIC_USEC", "0"))
            check(t0 * 1e6 <= usec <= t1 * 1e6,
                  "MONOTONIC_USEC %d is not CLOCK_MONOTONIC between %f and %f" % (usec, t0, t1))
            again = m.next(not_watchdog, "READY=1 after the reload")
            check(again == {"READY": "1", "STATUS": "1/1 pools ready"}, repr(again))

            n.daemon.proc.send_signal(signal.SIGTERM)
            stopping = m.next(not_watchdog, "STOPPING=1")
            check(stopping.get("STOPPING") == "1", repr(stopping))
            rc = n.daemon.finish()
            check(rc == 0, "exit status %d" % rc)
            check(not pid_alive(pid), "the engine survived SIGTERM")
            late = [msg for msg in m.messages[m.messages.index(stopping):] if "READY" in msg]
            check(not late, "READY=1 after STOPPING=1: %r" % late)
    finally:
        m.close()


def scenario_notify_abstract():
    """An abstract socket ('@name'); no pools: READY=1 at once, 0/0."""
    m = Manager(abstract=True)
    try:
        with Node([], env={"NOTIFY_SOCKET": m.address}) as n:
            ready = m.next(lambda msg: "READY" in msg, "READY=1")
            check(ready == {"READY": "1", "STATUS": "0/0 pools ready"}, repr(ready))
            check(not any("EXTEND_TIMEOUT_USEC" in msg for msg in m.messages),
                  "EXTEND_TIMEOUT_USEC with nothing to load: %r" % m.messages)
            n.stop()
            check(m.next(lambda msg: True, "STOPPING=1") == {"STOPPING": "1", "STATUS": "stopping"},
                  repr(m.messages))
    finally:
        m.close()


def scenario_notify_bad_socket():
    """An unusable NOTIFY_SOCKET is named in a warning; the daemon runs."""
    with Node([], env={"NOTIFY_SOCKET": "relative/notify"}) as n:
        # said before "listening", which the Node waited for
        warns = [o for o in n.daemon.log_objects() if "NOTIFY_SOCKET" in o.get("msg", "")]
        check(len(warns) == 1, "no single warning: %r" % n.daemon.lines)
        check(warns[0]["level"] == "warn" and warns[0].get("NOTIFY_SOCKET") == "relative/notify",
              repr(warns[0]))
        n.stop()


def metric(n, name):
    status, _, data = n.request("GET", "/metrics", via="tcp")
    check(status == 200, "GET /metrics: %d" % status)
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise e2e.Failure("no %s in the scrape" % name)


def scenario_config_reload_metrics():
    """A rejected SIGHUP reload shows in the gauges (and READY=1 still
    follows RELOADING=1); the next good one sets them back."""
    m = Manager()
    try:
        with Node([], env={"NOTIFY_SOCKET": m.address}) as n:
            m.next(lambda msg: "READY" in msg, "READY=1")
            ok = "pool_managerd_config_last_reload_successful"
            at = "pool_managerd_config_last_reload_success_timestamp_seconds"
            check(metric(n, ok) == 1, "the start's load is not successful")
            started = metric(n, at)
            check(abs(started - time.time()) < 3600, "start time %r" % started)
            with open(n.config_path) as f:
                good = f.read()
            with open(n.config_path, "w") as f:
                f.write("{ not json")
            n.daemon.proc.send_signal(signal.SIGHUP)
            n.daemon.wait_for(lambda o: o.get("msg", "").startswith("configuration reload rejected"),
                              "the rejection")
            m.next(lambda msg: "RELOADING" in msg, "RELOADING=1")
            m.next(lambda msg: "READY" in msg, "READY=1 after a rejected reload")
            check(metric(n, ok) == 0, "a rejected reload counts as successful")
            check(metric(n, at) == started, "a rejected reload moved the success time")
            with open(n.config_path, "w") as f:
                f.write(good)
            n.daemon.proc.send_signal(signal.SIGHUP)
            n.daemon.wait_for(lambda o: o.get("msg") == "configuration reloaded", "the reload")
            check(metric(n, ok) == 1, "a good reload does not count")
            check(metric(n, at) >= started, "the success time went back")
            n.stop()
    finally:
        m.close()


def series(n, name, **labels):
    """The value of one series of the scrape; None when it is not there."""
    want = "%s{%s}" % (name, ",".join('%s="%s"' % kv for kv in labels.items()))
    status, _, data = n.request("GET", "/metrics", via="tcp")
    check(status == 200, "GET /metrics: %d" % status)
    for line in data.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[1])
    return None


def scenario_manual_restart_metrics():
    """An operator's restart counts in manual_restarts_total, not in
    restarts_scheduled_total; a crash counts the other way round; an
    engine that exits 0 is never a crash."""
    with Node() as n:
        first = n.preload("r", n.prepared())
        e2e.json_body(*n.request("POST", "/v2/pools/r/restart"), 202)
        after = n.wait_pool("r", lambda s, b: b["ready"] and b["pid"] not in (0, first["pid"]),
                            "the restarted engine ready")
        check(series(n, "pool_managerd_manual_restarts_total", pool_id="r") == 1, "manual restart not counted")
        check(series(n, "pool_managerd_restarts_scheduled_total", pool_id="r") == 0,
              "a manual restart counted as one after a failure")
        os.kill(after["pid"], signal.SIGKILL)
        n.wait_pool("r", lambda s, b: b["ready"] and b["pid"] not in (0, after["pid"]), "ready after the crash")
        check(series(n, "pool_managerd_restarts_scheduled_total", pool_id="r") == 1, "the crash's restart")
        check(series(n, "pool_managerd_manual_restarts_total", pool_id="r") == 1, "the crash counted as manual")
        check(series(n, "pool_managerd_engine_crashes_total", pool_id="r", reason="signal") == 1, "the crash")
        check(series(n, "pool_managerd_engine_crashes_total", pool_id="r", reason="graceful") is None,
              "a graceful series exists")
        n.stop()


PRIORITY = {"debug": "<7>", "info": "<6>", "warn": "<4>", "error": "<3>", "critical": "<2>"}
LINE_RE = re.compile(r"^(<[0-7]>)?(\{.*\})$")


def run_logged(args, journal):
    """The daemon with stderr in a file, JOURNAL_STREAM naming that file
    (journal) or another one; until its "listening" line, then SIGTERM.
    Returns the lines."""
    d = tempfile.mkdtemp(prefix="pm-journal-")
    try:
        path = os.path.join(d, "stderr")
        with open(path, "w") as err, open(os.path.join(d, "other"), "w") as other:
            st = os.fstat((err if journal else other).fileno())
            env = e2e.clean_env(JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
            p = subprocess.Popen([e2e.DAEMON, *args, "--runtime-dir", os.path.join(d, "run")],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.monotonic() + WAIT
            while not re.search(r'"listening"| info  listening ', open(path).read()):
                check(p.poll() is None, "the daemon exited: " + open(path).read())
                check(time.monotonic() < deadline, "no listening line: " + open(path).read())
                time.sleep(0.05)
            p.send_signal(signal.SIGTERM)
            check(p.wait(timeout=e2e.EXIT_TIMEOUT) == 0, "exit status")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        with open(path) as f:
            return f.read().splitlines()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def scenario_journal_prefix():
    """Each line starts with its level's priority when stderr is the
    journal, and with the JSON object otherwise."""
    lines = run_logged(["--bind", "127.0.0.1:0", "--log-level", "debug", "--log-format", "json"],
                       journal=True)
    levels = set()
    for line in lines:
        m = LINE_RE.match(line)
        check(m and m.group(1), "no priority prefix: %r" % line)
        level = json.loads(m.group(2))["level"]
        check(m.group(1) == PRIORITY[level], "%s for a %s line" % (m.group(1), level))
        levels.add(level)
    check({"debug", "info"} <= levels, "levels seen: %r" % levels)
    # the journal's default format is text, after the same prefixes
    for line in run_logged(["--bind", "127.0.0.1:0"], journal=True):
        m = re.match(r"^(<[0-7]>)\S+ (\w+) ", line)
        check(m and m.group(1) == PRIORITY[m.group(2)], "text line without its priority: %r" % line)
    for line in run_logged(["--bind", "127.0.0.1:0"], journal=False):
        check(line.startswith("{"), "a prefix though stderr is not the journal: %r" % line)


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
