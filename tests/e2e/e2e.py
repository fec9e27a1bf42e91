#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End-to-end scenarios: the pool-managerd binary over HTTP, as an operator
uses it. Standard library only; run with /usr/bin/python3.

    e2e.py DAEMON VERSION SCENARIO

Each scenario is its own meson test (tests/e2e/meson.build). Waits are
event-based: the daemon is ready when its "listening" log line appears on
stderr, which also carries the port it bound (the tests ask for port 0).
Every bound below is generous so that sanitizer builds pass too; none is a
sleep that a slow machine could lose a race against.
"""

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

START_TIMEOUT = 30.0      # until "listening" appears
EXIT_TIMEOUT = 30.0       # from a signal (or a refused start) to exit
HTTP_TIMEOUT = 30.0       # one request

MAX_BODY = 1 << 20
LEVELS = {"debug", "info", "warn", "error", "critical"}
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

SKIP = 77                 # meson's exit status for a skipped test

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOL_MANAGERD_")}
    env.update(extra)
    return env


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
        self.args = [DAEMON, *args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env if env is not None else clean_env())
        self.lines = []
        self._queue = queue.Queue()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = None

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
        self.proc.stderr.close()

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

    def request(self, method, path, body=None, headers=None):
        return http_request(self.port, method, path, body, headers)


def http_request(port, method, path, body=None, headers=None, host="127.0.0.1"):
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
    for option in ("--bind", "--log-level", "--version", "--help", "POOL_MANAGERD_ADDR"):
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


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): fn
             for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    global DAEMON, VERSION
    if len(argv) != 4 or argv[3] not in SCENARIOS:
        sys.stderr.write("usage: %s DAEMON VERSION SCENARIO\nscenarios: %s\n"
                         % (argv[0], " ".join(sorted(SCENARIOS))))
        return 2
    DAEMON, VERSION, name = argv[1], argv[2], argv[3]
    try:
        SCENARIOS[name]()
    except Failure as e:
        print("FAIL %s: %s" % (name, e))
        return 1
    print("PASS %s" % name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
