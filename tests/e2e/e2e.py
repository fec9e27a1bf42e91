#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios: the pool-managerd binary over HTTP, as an operator
uses it. Standard library only; run with /usr/bin/python3.

    e2e.py DAEMON VERSION SCENARIO

Each scenario is its own meson test (tests/e2e/meson.build). Waits are
event-based: the daemon is ready when its "listening" log line appears on
stderr, which also carries the port it bound (the tests ask for port 0)
and the path of its Unix socket. Every daemon gets a runtime directory of
its own (so a socket of its own) unless the scenario names one. Requests
that change something go through the socket, as an operator's would;
reads go over TCP (Daemon.request's via= picks explicitly).
Every bound below is generous so that sanitizer builds pass too; none is a
sleep that a slow machine could lose a race against.
"""

import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

START_TIMEOUT = 30.0      # until "listening" appears
EXIT_TIMEOUT = 30.0       # from a signal (or a refused start) to exit
HTTP_TIMEOUT = 30.0       # one request

MAX_BODY = 1 << 20
LEVELS = {"debug", "info", "warn", "error", "critical"}
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

SKIP = 77                 # meson's exit status for a skipped test
READ_METHODS = ("GET", "HEAD")

DAEMON = None
VERSION = None


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def clean_env(**extra):
    """The daemon's environment: the test runner's settings for it removed,
    so a developer's shell cannot change what a scenario sees."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POOL_MANAGERD_") and k not in (
               "LLORCH_API_TOKEN", "STATE_DIRECTORY", "RUNTIME_DIRECTORY")}
    env.update(extra)
    return env


def names_runtime_dir(args, env):
    """Whether the command line, the environment or the config file says
    where the runtime directory is."""
    if "--runtime-dir" in args or "-r" in args or env.get("STATE_DIRECTORY"):
        return True
    for flag in ("--config", "-c", "--check-config"):
        if flag in args:
            i = args.index(flag)
            if flag == "--check-config":
                return True
            try:
                with open(args[i + 1]) as f:
                    return "runtime_dir" in json.load(f)
            except (IndexError, OSError, ValueError):
                return True
    return False


def parse_log_line(line):
    """The JSON object on one stderr line, or None when it is not one."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def check_log_lines(lines):
    """Every stderr line is a JSON object with ts, level and msg."""
    check(lines, "the daemon wrote no log line at all")
    for line in lines:
        obj = parse_log_line(line)
        check(obj is not None, "stderr line is not a JSON object: %r" % line)
        check(isinstance(obj.get("ts"), str) and TS_RE.match(obj["ts"]),
              "bad or missing ts in %r" % line)
        check(obj.get("level") in LEVELS, "bad or missing level in %r" % line)
        check(isinstance(obj.get("msg"), str) and obj["msg"], "bad or missing msg in %r" % line)


class Daemon:
    """One pool-managerd process, its stderr read line by line on a thread
    so that a wait is a queue get with a deadline."""

    def __init__(self, *args, env=None):
        env = env if env is not None else clean_env()
        # Its own runtime directory, so its own socket, unless one is named.
        self.own_dir = None
        if not names_runtime_dir(args, env):
            self.own_dir = tempfile.mkdtemp(prefix="pm-e2e-")
            args = (*args, "--runtime-dir", self.own_dir)
        self.args = [DAEMON, *args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env)
        self.lines = []
        self._queue = queue.Queue()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = None
        self.socket = None        # the API socket's path, from "listening"

    def _read(self):
        for raw in self.proc.stderr:
            self._queue.put(raw.decode("utf-8", errors="replace").rstrip("\n"))
        self._queue.put(None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if exc[0] is not None:
            # a failed scenario shows what the daemon said last (a
            # sanitizer's report included)
            self._reader.join(5)
            while not self._queue.empty():
                line = self._queue.get()
                if line is not None:
                    self.lines.append(line)
            sys.stderr.write("daemon stderr (last lines):\n%s\n" % "\n".join(self.lines[-120:]))
        self.proc.stderr.close()
        if self.own_dir:
            shutil.rmtree(self.own_dir, ignore_errors=True)

    def _stderr_so_far(self):
        return "\n".join(self.lines[-20:])

    def wait_for(self, pred, what, timeout=START_TIMEOUT):
        """The first log object for which pred is true, reading lines as
        they come; fails at EOF or after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure("timed out after %.0f s waiting for %s; stderr:\n%s"
                              % (timeout, what, self._stderr_so_far()))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._eof = True
                raise Failure("the daemon closed stderr (exit status %s) before %s; stderr:\n%s"
                              % (self.proc.poll(), what, self._stderr_so_far()))
            self.lines.append(line)
            obj = parse_log_line(line)
            if obj is not None and pred(obj):
                return obj

    def wait_listening(self):
        obj = self.wait_for(lambda o: o.get("msg") == "listening", 'the "listening" line')
        address = obj.get("address", "")
        check(address.rpartition(":")[2].isdigit(), "listening line has no usable address: %r" % obj)
        self.port = int(address.rpartition(":")[2])
        check(self.port == obj.get("port"), "address and port disagree in %r" % obj)
        check(self.port != 0, "the daemon reports port 0")
        self.socket = obj.get("socket")
        return obj

    def finish(self, timeout=EXIT_TIMEOUT):
        """Waits for the exit, collects the remaining stderr lines and
        returns the exit status."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("the daemon did not exit within %.0f s; stderr:\n%s"
                          % (timeout, self._stderr_so_far()))
        # stderr is at EOF once the process is gone (nothing else holds it).
        self._reader.join(timeout)
        while not self._eof:
            line = self._queue.get(timeout=timeout)
            if line is None:
                self._eof = True
            else:
                self.lines.append(line)
        return rc

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.finish()

    def log_objects(self):
        return [o for o in map(parse_log_line, self.lines) if o is not None]

    def request(self, method, path, body=None, headers=None, via=None):
        """via "tcp" or "unix"; None: changes through the socket (when
        there is one and no Authorization header is sent), reads over TCP."""
        if via is None:
            changing = method not in READ_METHODS
            token = any(k.lower() == "authorization" for k in (headers or {}))
            via = "unix" if changing and self.socket and not token else "tcp"
        if via == "unix":
            check(self.socket, "the daemon has no API socket")
            return http_request(None, method, path, body, headers, unix=self.socket)
        return http_request(self.port, method, path, body, headers)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix-domain socket: curl --unix-socket PATH http://localhost/..."""

    def __init__(self, path, timeout=HTTP_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def http_request(port, method, path, body=None, headers=None, host="127.0.0.1", unix=None):
    if unix:
        conn = UnixHTTPConnection(unix)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def json_body(status, headers, data, want_status):
    check(status == want_status, "expected HTTP %d, got %d: %r" % (want_status, status, data[:300]))
    ctype = headers.get("Content-Type", "")
    check(ctype.startswith("application/json"), "Content-Type is %r, not application/json" % ctype)
    try:
        return json.loads(data)
    except ValueError:
        raise Failure("body is not JSON: %r" % data[:300])


def check_error(status, headers, data, want_status, want_code, want_error=None):
    body = json_body(status, headers, data, want_status)
    check(set(body) == {"error", "code"}, "error body must be exactly {error, code}: %r" % body)
    check(body["code"] == want_code, "code %r, expected %r" % (body["code"], want_code))
    check(isinstance(body["error"], str) and body["error"], "empty error message: %r" % body)
    if want_error is not None:
        check(body["error"] == want_error, "error %r, expected %r" % (body["error"], want_error))
    return body


def running_daemon(*extra):
    d = Daemon("--bind", "127.0.0.1:0", *extra)
    d.wait_listening()
    return d


def stop_cleanly(d, sig=signal.SIGTERM):
    rc = d.stop(sig)
    check(rc == 0, "exit status %d after %s, expected 0; stderr:\n%s"
          % (rc, sig.name, d._stderr_so_far()))
    check_log_lines(d.lines)


def refused_start(*args, env=None, want_rc=1):
    """Runs a daemon that must not start; returns its log objects."""
    with Daemon(*args, env=env) as d:
        rc = d.finish()
        check(rc == want_rc, "%s: exit status %d, expected %d; stderr:\n%s"
              % (" ".join(args), rc, want_rc, d._stderr_so_far()))
        check_log_lines(d.lines)
        check(not any(o.get("msg") == "listening" for o in d.log_objects()),
              "%s: the daemon said it was listening" % " ".join(args))
        return d.log_objects()


# --- scenarios ---------------------------------------------------------------

def scenario_health():
    with running_daemon() as d:
        body = json_body(*d.request("GET", "/health"), 200)
        check(body == {"status": "ok", "version": VERSION},
              "health body %r, expected status ok and version %s" % (body, VERSION))
        # HEAD answers like GET, without the body.
        status, headers, data = d.request("HEAD", "/health")
        check(status == 200 and data == b"", "HEAD /health: %d %r" % (status, data))
        check(headers.get("Content-Type", "").startswith("application/json"), "HEAD Content-Type")
        # On one connection: HEAD sends no body (or the next answer would
        # start inside it), and says the length GET would send.
        with socket.create_connection(("127.0.0.1", d.port), timeout=HTTP_TIMEOUT) as s:
            s.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200 "), "HEAD on a kept-alive connection: %r" % data)
        check(rest.startswith(b"HTTP/1.1 200 "), "HEAD sent a body: %r" % data)
        get_body = rest.partition(b"\r\n\r\n")[2]
        check(b"\r\ncontent-length: %d\r\n" % len(get_body) in head.lower() + b"\r\n",
              "HEAD's Content-Length is not GET's: %r" % data)
        stop_cleanly(d)


def scenario_version():
    p = subprocess.run([DAEMON, "--version"], capture_output=True, timeout=EXIT_TIMEOUT,
                       env=clean_env())
    check(p.returncode == 0, "--version exit status %d" % p.returncode)
    check(p.stdout.decode() == "pool-managerd %s\n" % VERSION, "--version printed %r" % p.stdout)
    p = subprocess.run([DAEMON, "-V"], capture_output=True, timeout=EXIT_TIMEOUT, env=clean_env())
    check(p.returncode == 0 and p.stdout == b"pool-managerd %s\n" % VERSION.encode(),
          "-V: status %d, output %r" % (p.returncode, p.stdout))


def scenario_help():
    p = subprocess.run([DAEMON, "--help"], capture_output=True, timeout=EXIT_TIMEOUT,
                       env=clean_env())
    out = p.stdout.decode()
    check(p.returncode == 0, "--help exit status %d" % p.returncode)
    check(out.startswith("Usage: pool-managerd"), "--help printed %r" % out[:200])
    for option in ("--bind", "--log-level", "--version", "--help", "POOL_MANAGERD_ADDR",
                   "--runtime-dir", "--unix-socket", "LLORCH_API_TOKEN"):
        check(option in out, "--help does not mention %s" % option)
    check(p.stderr == b"", "--help wrote to stderr: %r" % p.stderr)


def scenario_unknown_option():
    for args in (["--frobnicate"], ["-x"], ["stray-argument"], ["--bind"]):
        p = subprocess.run([DAEMON, *args], capture_output=True, timeout=EXIT_TIMEOUT,
                           env=clean_env())
        err = p.stderr.decode()
        check(p.returncode == 2, "%s: exit status %d, expected 2" % (args, p.returncode))
        check("Usage: pool-managerd" in err, "%s: no usage on stderr: %r" % (args, err))
        check(p.stdout == b"", "%s: wrote to stdout: %r" % (args, p.stdout))


def scenario_not_found():
    with running_daemon() as d:
        check_error(*d.request("GET", "/nope"), 404, "NOT_FOUND", "no route for GET /nope")
        check_error(*d.request("GET", "/health/"), 404, "NOT_FOUND")
        check_error(*d.request("GET", "/"), 404, "NOT_FOUND")
        check_error(*d.request("DELETE", "/v2/pools/x"), 404, "POOL_NOT_FOUND", "pool x not found")
        stop_cleanly(d)


def scenario_method_not_allowed():
    with running_daemon() as d:
        status, headers, data = d.request("POST", "/health", body=b"{}")
        check_error(status, headers, data, 405, "METHOD_NOT_ALLOWED",
                    "method POST not allowed on /health")
        check(headers.get("Allow") == "GET, HEAD", "Allow header %r, expected GET, HEAD" % headers.get("Allow"))
        stop_cleanly(d)


def scenario_patch_not_allowed():
    """evhttp answers methods it does not allow with an HTML 501; the daemon
    allows them all and gives a JSON 405."""
    with running_daemon() as d:
        for method in ("PATCH", "PUT", "DELETE", "OPTIONS"):
            status, headers, data = d.request(method, "/health", body=b"{}")
            check_error(status, headers, data, 405, "METHOD_NOT_ALLOWED",
                        "method %s not allowed on /health" % method)
            check(headers.get("Allow") == "GET, HEAD", "%s: Allow header %r" % (method, headers.get("Allow")))
        stop_cleanly(d)


def scenario_bad_path():
    with running_daemon() as d:
        for path, why in (("/he%2Flth", "encoded '/'"), ("/health%00", "NUL"),
                          ("/he%zzlth", "percent-escape"), ("/health%2", "percent-escape")):
            body = check_error(*d.request("GET", path), 400, "BAD_REQUEST")
            check(why in body["error"], "%s: error %r does not mention %s" % (path, body["error"], why))
        # Escapes that decode to ordinary characters are fine.
        json_body(*d.request("GET", "/%68ealth"), 200)
        stop_cleanly(d)


def scenario_body_too_large():
    """A body over 1 MiB gets 413. evhttp writes that reply itself, so its
    body is evhttp's HTML, not our JSON (libevent 2.1 has no hook for it);
    EVHTTP_SERVER_LINGERING_CLOSE makes the client see the 413 at all."""
    with running_daemon() as d:
        status, _, data = d.request("POST", "/health", body=b"x" * (MAX_BODY + 1),
                                    headers={"Content-Type": "application/json"})
        check(status == 413, "over-limit body: HTTP %d, expected 413: %r" % (status, data[:200]))
        # Exactly the limit is accepted and routed.
        check_error(*d.request("POST", "/health", body=b"x" * MAX_BODY), 405, "METHOD_NOT_ALLOWED")
        # And the daemon serves on.
        json_body(*d.request("GET", "/health"), 200)
        stop_cleanly(d)


def shutdown_on(sig):
    with running_daemon() as d:
        json_body(*d.request("GET", "/health"), 200)
        # An idle keep-alive connection must not hold the exit up.
        idle = socket.create_connection(("127.0.0.1", d.port), timeout=HTTP_TIMEOUT)
        try:
            stop_cleanly(d, sig)
        finally:
            idle.close()
        msgs = [o["msg"] for o in d.log_objects()]
        check("stopped" in msgs, "no \"stopped\" line: %r" % msgs)
        down = [o for o in d.log_objects() if o["msg"] == "shutting down"]
        check(len(down) == 1 and down[0].get("signal") == sig.name,
              "expected one \"shutting down\" line naming %s: %r" % (sig.name, down))
        check(msgs[-1] == "stopped", "\"stopped\" is not the last line: %r" % msgs)


def scenario_sigterm():
    shutdown_on(signal.SIGTERM)


def scenario_sigint():
    shutdown_on(signal.SIGINT)


def scenario_json_logs():
    """Every stderr line is a JSON object with ts, level and msg, request
    lines included; X-Correlation-Id is carried into the request line."""
    with running_daemon("--log-level", "debug") as d:
        d.request("GET", "/health", headers={"X-Correlation-Id": "req-42"})
        d.request("GET", "/nope\"quoted", headers={"X-Correlation-Id": "req-43"})
        line = d.wait_for(lambda o: o.get("msg") == "request" and o.get("correlation_id") == "req-43",
                          "the request line for req-43")
        check(line.get("level") == "debug", "request line is not debug: %r" % line)
        check(line.get("status") == 404 and line.get("method") == "GET",
              "request line misses status/method: %r" % line)
        check(line.get("path") == "/nope\"quoted", "request line path %r" % line.get("path"))
        status, headers, _ = d.request("GET", "/health", headers={"X-Correlation-Id": "req-44"})
        check(headers.get("X-Correlation-Id") == "req-44", "X-Correlation-Id not echoed")
        stop_cleanly(d)
        first = [o for o in d.log_objects() if o.get("correlation_id") == "req-42"]
        check(len(first) == 1 and first[0].get("status") == 200, "request line for req-42: %r" % first)


def scenario_quiet_by_default():
    """At the default level (info) requests are not logged."""
    with running_daemon() as d:
        d.request("GET", "/health")
        stop_cleanly(d)
        check(not any(o["msg"] == "request" for o in d.log_objects()),
              "request logged at the default level")


TEXT_LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info |warn |error|critical) \S")


def logs_to_file(*args, env):
    """Runs a daemon with stderr on a file until it listens, stops it, and
    returns its stderr lines and the file's (device, inode)."""
    runtime = tempfile.mkdtemp(prefix="pm-e2e-")
    try:
        with tempfile.TemporaryFile(dir=runtime) as f:
            st = os.fstat(f.fileno())
            env = dict(env)
            for k, v in env.items():
                env[k] = v.replace("DEV:INO", "%d:%d" % (st.st_dev, st.st_ino))
            proc = subprocess.Popen([DAEMON, "--bind", "127.0.0.1:0", "--runtime-dir", runtime,
                                     *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=f, env=env)
            deadline = time.monotonic() + START_TIMEOUT
            while b"listening" not in (f.seek(0) or f.read()):
                check(proc.poll() is None and time.monotonic() < deadline,
                      "the daemon did not start: %r" % (f.seek(0) or f.read()))
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            check(proc.wait(timeout=EXIT_TIMEOUT) == 0, "exit status after SIGTERM")
            f.seek(0)
            return f.read().decode().splitlines()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def scenario_text_logs():
    """--log-format text: one plain line per event; the systemd journal
    (JOURNAL_STREAM naming stderr) gets text without the flag, each line
    after its priority prefix; a pipe or file gets JSON, and the flag beats
    the journal."""
    journal = clean_env(JOURNAL_STREAM="DEV:INO")
    for args, env, want in ((("--log-format", "text"), clean_env(), "text"),
                            ((), journal, "text"),
                            ((), clean_env(JOURNAL_STREAM="1:2"), "json"),
                            (("--log-format", "json"), journal, "json")):
        lines = logs_to_file(*args, env=env)
        what = "%s %s" % (" ".join(args), env.get("JOURNAL_STREAM"))
        if env is journal:
            # the journal reads each line's priority from its prefix
            check(lines and all(re.match(r"<[0-7]>", l) for l in lines),
                  "%s: lines without a priority prefix: %r" % (what, lines))
            lines = [l[3:] for l in lines]
        if want == "json":
            check_log_lines(lines)
            continue
        check(lines and all(TEXT_LINE_RE.match(l) for l in lines),
              "%s: not text lines: %r" % (what, lines))
        listening = [l for l in lines if " listening " in l]
        check(len(listening) == 1 and re.search(r" port=\d+( |$)", listening[0])
              and " address=127.0.0.1:" in listening[0], "%s: %r" % (what, listening))
    with Daemon("--log-format", "yaml") as d:
        rc = d.finish()
        check(rc == 2 and any("invalid log format 'yaml'" in l for l in d.lines),
              "--log-format yaml: exit %d, %r" % (rc, d.lines))


def scenario_non_loopback():
    for bind, host in (("0.0.0.0:0", "0.0.0.0"), ("[::]:0", "[::]"),
                       ("192.0.2.1:9200", "192.0.2.1")):
        objs = refused_start("--bind", bind)
        want = "refusing to listen on %s: non-loopback binds need an API token" % host
        errors = [o for o in objs if o["level"] == "error"]
        check(any(o["msg"] == want for o in errors), "%s: no error %r in %r" % (bind, want, objs))


def scenario_bad_bind():
    for bind, why in (("localhost:9200", "numeric"), ("127.0.0.1", "expected HOST:PORT"),
                      ("127.0.0.1:65536", "out of range"), ("::1:9200", "brackets"),
                      ("", "empty")):
        objs = refused_start("--bind", bind, want_rc=2)
        check(any(o["level"] == "error" and why in o["msg"] for o in objs),
              "--bind %r: no error mentioning %r in %r" % (bind, why, objs))


def scenario_port_in_use():
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        address = "127.0.0.1:%d" % holder.getsockname()[1]
        objs = refused_start("--bind", address, want_rc=1)
        errors = [o for o in objs if o["level"] == "error"]
        check(any(address in o["msg"] and "Address already in use" in o["msg"] for o in errors),
              "no error naming %s and EADDRINUSE in %r" % (address, objs))
    finally:
        holder.close()


def scenario_env_addr():
    """POOL_MANAGERD_ADDR replaces the default; --bind beats it."""
    with Daemon(env=clean_env(POOL_MANAGERD_ADDR="127.0.0.1:0")) as d:
        obj = d.wait_listening()
        check(obj.get("source") == "POOL_MANAGERD_ADDR", "address source %r" % obj.get("source"))
        json_body(*d.request("GET", "/health"), 200)
        stop_cleanly(d)
    with Daemon("--bind", "127.0.0.1:0", env=clean_env(POOL_MANAGERD_ADDR="0.0.0.0:1")) as d:
        obj = d.wait_listening()
        check(obj.get("source") == "flag", "address source %r" % obj.get("source"))
        stop_cleanly(d)
    objs = refused_start(env=clean_env(POOL_MANAGERD_ADDR="0.0.0.0:0"))
    check(any("refusing to listen on 0.0.0.0" in o["msg"] for o in objs),
          "POOL_MANAGERD_ADDR=0.0.0.0:0 was not refused: %r" % objs)


def scenario_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        print("SKIP: no IPv6 loopback here (%s)" % e)
        sys.exit(SKIP)
    with Daemon("--bind", "[::1]:0") as d:
        obj = d.wait_listening()
        check(obj["address"].startswith("[::1]:"), "address %r" % obj["address"])
        json_body(*http_request(d.port, "GET", "/health", host="::1"), 200)
        stop_cleanly(d)


def libcuda_loadable(env):
    """Whether the dynamic loader finds libcuda.so.1 with this environment."""
    code = "import ctypes\ntry:\n    ctypes.CDLL('libcuda.so.1')\nexcept OSError:\n    raise SystemExit(1)\n"
    return subprocess.run(["/usr/bin/python3", "-c", code], env=env,
                          timeout=EXIT_TIMEOUT).returncode == 0


def scenario_no_cuda():
    """gpu.backend auto (the default) where libcuda.so.1 is absent: the
    daemon starts, serves, and says in one warning why it has no GPU."""
    env = clean_env()
    env.pop("LD_LIBRARY_PATH", None)
    with Daemon("--bind", "127.0.0.1:0", env=env) as d:
        d.wait_listening()
        starting = [o for o in d.log_objects() if o.get("msg") == "starting"]
        check(len(starting) == 1, "no single starting line: %r" % d.lines)
        if libcuda_loadable(env):
            # a machine with a driver: the probe ran and said what it found
            check(isinstance(starting[0].get("gpus"), int), "no gpus count: %r" % starting[0])
        else:
            check(starting[0].get("gpus") == 0, "gpus %r without libcuda.so.1" % starting[0])
            warn = [o for o in d.log_objects() if o.get("msg", "").startswith("no CUDA device")]
            check(len(warn) == 1 and warn[0].get("level") == "warn",
                  "no warning about the missing CUDA: %r" % d.lines)
            check(warn[0].get("reason", "").startswith("no CUDA: libcuda.so.1 not found"),
                  "reason %r does not name libcuda.so.1" % warn[0].get("reason"))
        body = json_body(*d.request("GET", "/health"), 200)
        check(body.get("status") == "ok", "health %r" % body)
        stop_cleanly(d)


def scenario_cuda_devices():
    """gpu.backend auto with a (fake) libcuda.so.1 showing two devices."""
    env = clean_env(LD_LIBRARY_PATH=os.environ["FAKE_CUDA_DIR"], FAKE_CUDA_DEVICES="2")
    with Daemon("--bind", "127.0.0.1:0", env=env) as d:
        d.wait_listening()
        starting = [o for o in d.log_objects() if o.get("msg") == "starting"]
        check(len(starting) == 1 and starting[0].get("gpus") == 2,
              "expected gpus 2 in the starting line: %r" % d.lines)
        check(not any(o.get("msg", "").startswith("no CUDA device") for o in d.log_objects()),
              "warned about CUDA although devices were found: %r" % d.lines)
        stop_cleanly(d)


def scenario_cuda_required():
    """gpu.backend cuda where the probe finds nothing: refused, with the reason."""
    cfg = os.path.join(os.environ.get("TMPDIR", "/tmp"), "pm-e2e-cuda-%d.json" % os.getpid())
    with open(cfg, "w") as f:
        json.dump({"gpu": {"backend": "cuda", "probe_timeout_ms": 20000}}, f)
    try:
        env = clean_env(LD_LIBRARY_PATH=os.environ["FAKE_CUDA_DIR"], FAKE_CUDA_INIT_ERROR="803")
        logs = refused_start("--config", cfg, "--bind", "127.0.0.1:0", env=env, want_rc=2)
        errors = [o for o in logs if o.get("level") == "error"]
        check(errors, "no error line")
        check("gpu: backend \"cuda\": cuInit failed: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (803)"
              in errors[0].get("msg", ""), "error %r" % errors[0])
    finally:
        os.unlink(cfg)


def scenario_check_config_gpus():
    """--check-config with gpu.backend auto checks masks against what the
    driver answers (the fake libcuda.so.1: two devices), and says when no
    driver answers that masks were checked against nothing."""
    tmp = tempfile.mkdtemp(prefix="pm-e2e-")
    try:
        cfg = os.path.join(tmp, "config.json")

        def check_config(mask, env):
            with open(cfg, "w") as f:
                json.dump({"gpu": {"backend": "auto"}, "engines": {"allow": ["/bin/true"]},
                           "pools": [{"id": "a", "engine": "llamacpp", "engine_version": "1",
                                      "binary": "/bin/true", "port": 18001, "device_mask": mask}]}, f)
            p = subprocess.run([DAEMON, "--check-config", cfg], capture_output=True, timeout=30,
                               env=env)
            return p.returncode, p.stderr.decode().replace(cfg, "FILE")

        cuda = clean_env(LD_LIBRARY_PATH=os.environ["FAKE_CUDA_DIR"], FAKE_CUDA_DEVICES="2")
        rc, err = check_config("1", cuda)
        check(rc == 0 and "warning" not in err, "mask 1 of two devices: %d %r" % (rc, err))
        rc, err = check_config("5", cuda)
        check(rc == 2 and "FILE: pools[0].device_mask: 5 is not a known device" in err.splitlines(),
              "mask 5 of two devices: %d %r" % (rc, err))
        env = clean_env()
        env.pop("LD_LIBRARY_PATH", None)
        if not libcuda_loadable(env):
            rc, err = check_config("5", env)
            check(rc == 0 and re.search(r"^FILE: warning: gpu: no CUDA: .*: device masks and VRAM "
                                        r"are checked against no devices$", err, re.M),
                  "no driver: %d %r" % (rc, err))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the API socket and the runtime directory ------------------------------------

SOCKET_LINE = "change requested through the API socket"


def write_config(directory, doc):
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def check_read_only(status, headers, data, socket_path=None):
    """403 READ_ONLY, saying where changes may come from instead."""
    body = check_error(status, headers, data, 403, "READ_ONLY")
    for words in ("api.token_file", "LLORCH_API_TOKEN") + ((socket_path,) if socket_path else ()):
        check(words in body["error"], "READ_ONLY message %r does not name %s" % (body["error"], words))
    return body


def scenario_socket():
    """<runtime_dir>/api.sock: mode 0660, the daemon's group, named in the
    listening line, every route without a token, each change logged with
    the caller's uid, removed on a clean exit. TCP stays read-only."""
    with running_daemon() as d:
        want = os.path.join(d.own_dir, "api.sock")
        check(d.socket == want, "socket %r, expected %r" % (d.socket, want))
        st = os.lstat(d.socket)
        check(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % d.socket)
        check(stat.S_IMODE(st.st_mode) == 0o660, "mode %o, expected 660" % stat.S_IMODE(st.st_mode))
        check(st.st_uid == os.geteuid() and st.st_gid == os.getegid(),
              "owner %d:%d, expected %d:%d" % (st.st_uid, st.st_gid, os.geteuid(), os.getegid()))
        listening = [o for o in d.log_objects() if o.get("msg") == "listening"][0]
        check(listening.get("tcp_access") == "read-only", "listening line %r" % listening)

        json_body(*d.request("GET", "/health", via="unix"), 200)
        json_body(*d.request("GET", "/v2/pools", via="unix"), 200)
        check_error(*d.request("DELETE", "/v2/pools/x", via="unix"), 404, "POOL_NOT_FOUND")
        line = d.wait_for(lambda o: o.get("msg") == SOCKET_LINE, "the change logged")
        check(line.get("level") == "info" and line.get("uid") == os.geteuid()
              and line.get("method") == "DELETE" and line.get("path") == "/v2/pools/x"
              and line.get("socket") == want, "socket line %r" % line)
        # A bogus token on the socket changes nothing: the listener decides.
        check_error(*d.request("DELETE", "/v2/pools/x", headers={"Authorization": "Bearer nope"},
                               via="unix"), 404, "POOL_NOT_FOUND")
        # Over TCP the same change is refused, and says where to go.
        check_read_only(*d.request("DELETE", "/v2/pools/x", via="tcp"), want)
        stop_cleanly(d)
        check(not os.path.lexists(want), "the socket outlived the daemon")
        lines = [o for o in d.log_objects() if o.get("msg") == SOCKET_LINE]
        check(len(lines) == 2, "one line per change through the socket, none for reads: %r" % lines)


def scenario_socket_live_daemon():
    """A second daemon on the same runtime directory does not take the
    first one's socket: the directory's lock refuses its start, naming the
    first daemon (docs/reliability.md)."""
    with running_daemon() as a:
        objs = refused_start("--bind", "127.0.0.1:0", "--runtime-dir", a.own_dir)
        errors = [o["msg"] for o in objs if o["level"] == "error"]
        want = "runtime directory %s is in use by pool-managerd pid %d" % (a.own_dir, a.proc.pid)
        check(want in errors, "no error %r: %r" % (want, errors))
        # Still the first daemon's, and it still answers there.
        json_body(*a.request("GET", "/health", via="unix"), 200)
        check_error(*a.request("DELETE", "/v2/pools/x", via="unix"), 404, "POOL_NOT_FOUND")
        stop_cleanly(a)


def scenario_socket_stale():
    """A socket left by a killed daemon is replaced; a file that is not a
    socket is left alone and the start refused."""
    d = tempfile.mkdtemp(prefix="pm-e2e-")
    try:
        path = os.path.join(d, "api.sock")
        left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        left.bind(path)
        left.close()                       # the file stays, nobody listens
        with Daemon("--bind", "127.0.0.1:0", "--runtime-dir", d) as dm:
            dm.wait_listening()
            check(dm.socket == path, "socket %r" % dm.socket)
            check_error(*dm.request("DELETE", "/v2/pools/x", via="unix"), 404, "POOL_NOT_FOUND")
            # kill -9: the socket stays behind; the next start takes it.
            dm.proc.kill()
            dm.finish()
        check(os.path.lexists(path), "no socket left after kill -9")
        with Daemon("--bind", "127.0.0.1:0", "--runtime-dir", d) as dm:
            dm.wait_listening()
            json_body(*dm.request("GET", "/health", via="unix"), 200)
            stop_cleanly(dm)
        with open(path, "w") as f:
            f.write("not a socket\n")
        objs = refused_start("--bind", "127.0.0.1:0", "--runtime-dir", d)
        check(any(path in o["msg"] and "not a socket" in o["msg"] for o in objs if o["level"] == "error"),
              "no error saying %s is not a socket: %r" % (path, objs))
        with open(path) as f:
            check(f.read() == "not a socket\n", "the file was changed")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def scenario_socket_path_too_long():
    """107 bytes is the most a socket path may have: one more is refused
    at start with the reason; exactly 107 works."""
    base = tempfile.mkdtemp(prefix="pm-e2e-")
    try:
        suffix = "/api.sock"
        for length, ok in ((108, False), (107, True)):
            rt = os.path.join(base, "d" * (length - len(suffix) - len(base) - 1))
            check(len(rt + suffix) == length, "test setup: %d" % len(rt + suffix))
            if not ok:
                objs = refused_start("--bind", "127.0.0.1:0", "--runtime-dir", rt, want_rc=2)
                check(any("107" in o["msg"] and "api.socket" in o["msg"]
                          for o in objs if o["level"] == "error"),
                      "no error about the 107-byte limit: %r" % objs)
                continue
            with Daemon("--bind", "127.0.0.1:0", "--runtime-dir", rt) as d:
                d.wait_listening()
                check(d.socket == rt + suffix, "socket %r" % d.socket)
                json_body(*d.request("GET", "/health", via="unix"), 200)
                stop_cleanly(d)
        # api.socket in the file: checked when the file is read.
        cfg = write_config(base, {"api": {"socket": "/" + "s" * 120}})
        objs = refused_start("--bind", "127.0.0.1:0", "--config", cfg, want_rc=2)
        check(any("api.socket" in o["msg"] for o in objs if o["level"] == "error"),
              "a 121-byte api.socket was not refused: %r" % objs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def scenario_socket_off():
    """api.socket "": no socket; the TCP listener stays read-only and says so."""
    base = tempfile.mkdtemp(prefix="pm-e2e-")
    try:
        rt = os.path.join(base, "run")
        cfg = write_config(base, {"runtime_dir": rt, "api": {"socket": ""}})
        with Daemon("--bind", "127.0.0.1:0", "--config", cfg) as d:
            d.wait_listening()
            check(d.socket is None, "a socket although api.socket is \"\": %r" % d.socket)
            check(not os.path.lexists(os.path.join(rt, "api.sock")), "api.sock exists")
            json_body(*d.request("GET", "/v2/pools"), 200)
            body = check_read_only(*d.request("DELETE", "/v2/pools/x"))
            check("api.socket" in body["error"], "message %r" % body["error"])
            stop_cleanly(d)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_as(uid, gid, code, *args):
    """Python code in a child process with only this uid and gid."""
    p = subprocess.run(["/usr/bin/python3", "-c", code, *args], user=uid, group=gid,
                       extra_groups=[], capture_output=True, timeout=HTTP_TIMEOUT)
    check(p.returncode == 0, "child as %d:%d failed: %r" % (uid, gid, p.stderr[-500:]))
    return p.stdout.decode().strip()


CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
s.sendall(b"DELETE /v2/pools/x HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\\r\\n")[0].decode())
"""


def scenario_socket_group():
    """api.socket_group: members of the group may use the socket, other
    users may not; the log names the caller's uid. An unknown group is a
    start error."""
    if os.geteuid() != 0:
        print("SKIP: needs root to act as other users")
        sys.exit(SKIP)
    import grp
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    gid = grp.getgrnam(group).gr_gid
    other_gid = next(g.gr_gid for g in grp.getgrall() if g.gr_gid not in (0, gid))
    base = tempfile.mkdtemp(prefix="pm-e2e-")
    try:
        os.chmod(base, 0o755)             # others may reach pub/, not run/
        pub = os.path.join(base, "pub")
        os.mkdir(pub, 0o755)
        sock = os.path.join(pub, "api.sock")
        cfg = write_config(base, {"runtime_dir": os.path.join(base, "run"),
                                  "api": {"socket": sock, "socket_group": group}})
        with Daemon("--bind", "127.0.0.1:0", "--config", cfg) as d:
            d.wait_listening()
            check(d.socket == sock, "socket %r" % d.socket)
            st = os.lstat(sock)
            check(st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o660,
                  "group %d mode %o, expected %d and 660" % (st.st_gid, stat.S_IMODE(st.st_mode), gid))
            out = run_as(nobody, gid, CLIENT, sock)
            check(out.startswith("HTTP/1.1 404"), "a member of %s: %r" % (group, out))
            line = d.wait_for(lambda o: o.get("msg") == SOCKET_LINE, "the change logged")
            check(line.get("uid") == nobody, "uid %r, expected %d" % (line.get("uid"), nobody))
            out = run_as(nobody, other_gid, CLIENT, sock)
            check(out == "EACCES", "a user outside %s got in: %r" % (group, out))
            stop_cleanly(d)
        cfg = write_config(base, {"runtime_dir": os.path.join(base, "run"),
                                  "api": {"socket_group": "no-such-group-e2e"}})
        objs = refused_start("--bind", "127.0.0.1:0", "--config", cfg, want_rc=1)
        check(any("no-such-group-e2e" in o["msg"] and "group" in o["msg"]
                  for o in objs if o["level"] == "error"),
              "no error naming the unknown group: %r" % objs)
        check(not os.path.lexists(os.path.join(base, "run", "api.sock")), "a socket was left")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def scenario_runtime_dir_flag():
    """--runtime-dir beats the file and STATE_DIRECTORY; the socket follows
    it. POOL_MANAGERD_RUNTIME_DIR names the handoff directory only (the
    llama-orch meaning) and never moves the runtime directory."""
    base = tempfile.mkdtemp(prefix="pm-e2e-")
    try:
        where = {k: os.path.join(base, k) for k in ("file", "env", "state", "sd-run", "flag")}
        cfg = write_config(base, {"runtime_dir": where["file"]})
        env = clean_env(POOL_MANAGERD_RUNTIME_DIR=where["env"], STATE_DIRECTORY=where["state"],
                        RUNTIME_DIRECTORY=where["sd-run"])
        with Daemon("--bind", "127.0.0.1:0", "--config", cfg, "--runtime-dir", where["flag"],
                    env=env) as d:
            d.wait_listening()
            starting = [o for o in d.log_objects() if o.get("msg") == "starting"][0]
            check(starting.get("runtime_dir") == where["flag"], "runtime_dir %r" % starting)
            check(starting.get("runtime_dir_source") == "flag", "source %r" % starting)
            check(starting.get("handoff_dir") == where["env"] and
                  starting.get("handoff_dir_source") == "POOL_MANAGERD_RUNTIME_DIR",
                  "handoff_dir %r" % starting)
            check(d.socket == os.path.join(where["flag"], "api.sock"), "socket %r" % d.socket)
            check(os.path.exists(d.socket), "no socket at %s" % d.socket)
            stop_cleanly(d)
        for k in ("file", "state", "sd-run"):
            check(not os.path.exists(where[k]), "%s was used although the flag was given" % where[k])
        check(not os.path.exists(os.path.join(where["env"], "api.sock")),
              "the socket went to the handoff directory")
        # Without the flag the file's runtime_dir holds; the variable still
        # names only the handoff directory.
        with Daemon("--bind", "127.0.0.1:0", "--config", cfg,
                    env=clean_env(POOL_MANAGERD_RUNTIME_DIR=where["env"])) as d:
            d.wait_listening()
            check(d.socket == os.path.join(where["file"], "api.sock"), "socket %r" % d.socket)
            stop_cleanly(d)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_scenario(scenarios, name):
    """Runs one scenario of a script: PASS or FAIL with the reason on
    stdout, and the exit status meson reads."""
    try:
        scenarios[name]()
    except Failure as e:
        print("FAIL %s: %s" % (name, e))
        return 1
    print("PASS %s" % name)
    return 0


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    global DAEMON, VERSION
    if len(argv) != 4 or argv[3] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION SCENARIO\nscenarios: %s\n"
                         % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    DAEMON, VERSION, name = argv[1], argv[2], argv[3]
    return run_scenario(SCENARIOS, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
