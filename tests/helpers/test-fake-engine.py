#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Self-test of the fake engine (tests/helpers/fake-engine.c), the stand-in
for llama-server that the supervision tests and the demo run. Standard
library only; run with /usr/bin/python3.

    test-fake-engine.py FAKE_ENGINE

Prints TAP, one line per case. Each engine gets a port found by binding
port 0 first and writes its stderr to a file the test reads. Every wait is
a poll of the port, the process or the log with short retries up to a
generous deadline (sanitizer builds pass too); no case sleeps a fixed time
and hopes. The few bounds that are about time itself (an engine told to
load for 2 s must not be ready after 0.1 s) leave seconds of slack.
"""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ENGINE = None
START_TIMEOUT = 20.0      # until the port answers
EXIT_TIMEOUT = 20.0       # until an engine told to exit has exited
HTTP_TIMEOUT = 10.0       # one request
RETRY = 0.02              # between polls

LOADING = {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(deadline, what, probe):
    """Calls probe() until it returns something other than None."""
    end = time.monotonic() + deadline
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > end:
            raise Failure(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(RETRY)


def request(port, method, path, body=None, timeout=HTTP_TIMEOUT, headers=None):
    """(status, headers, body) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class Engine:
    """One fake-engine process, its stderr and stdout in files."""

    live = []

    def __init__(self, *args, env=None, port=None, model=None):
        self.port = port if port is not None else free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="fake-engine-test-")
        self.err_path = os.path.join(self.dir.name, "stderr")
        self.out_path = os.path.join(self.dir.name, "stdout")
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
        full_env.update(env or {})
        argv = [ENGINE, "--port", str(self.port), *args]
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=full_env)
        Engine.live.append(self)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def stderr(self):
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read()

    def wait_log(self, text, timeout=START_TIMEOUT):
        def probe():
            log = self.stderr()
            if text in log:
                return log
            if self.proc.poll() is not None and text not in self.stderr():
                raise Failure(f"engine exited ({self.proc.returncode}) before logging {text!r}")
            return None
        return until(timeout, repr(text), probe)

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"engine still running {timeout:.0f} s later") from None

    def request(self, method, path, **kw):
        return request(self.port, method, path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def json(self, method, path, **kw):
        status, headers, body = self.request(method, path, **kw)
        return status, json.loads(body)

    def wait_answer(self, path="/health", timeout=START_TIMEOUT):
        """The first answer once the port accepts connections."""
        def probe():
            if self.proc.poll() is not None:
                raise Failure(f"engine exited ({self.proc.returncode}) before answering:\n"
                              + self.stderr())
            try:
                return self.get(path)
            except (ConnectionRefusedError, ConnectionResetError):
                return None
        return until(timeout, f"an answer on {path}", probe)

    def wait_status(self, status, path="/health", timeout=START_TIMEOUT):
        def probe():
            got = self.wait_answer(path, timeout)
            return got if got[0] == status else None
        return until(timeout, f"{status} on {path}", probe)

    def close(self):
        """Kills the engine if it still runs; its files go."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


# ---- cases ---------------------------------------------------------------------


def case_loading_then_ready():
    """503 "Loading model" on every endpoint while loading, then 200"""
    e = Engine("--load-ms", "2000", "--announce")
    status, _, body = e.wait_answer()
    check(time.monotonic() - e.started < 1.5, "the engine took over 1.5 s to open its port")
    check(status == 503, f"first /health answer {status}, not 503")
    check(json.loads(body) == LOADING, f"loading body {body!r}")
    for method, path in (("GET", "/slots"), ("GET", "/props"), ("GET", "/metrics"),
                         ("POST", "/completion"), ("GET", "/nowhere")):
        status, doc = e.json(method, path, body=b"{}" if method == "POST" else None)
        check(status == 503 and doc == LOADING, f"{method} {path} while loading: {status} {doc}")
    check("listening on" not in e.stderr(), "announced before loading was done")
    status, _, body = e.wait_status(200)
    check(time.monotonic() - e.started >= 2.0, "ready before --load-ms had passed")
    check(json.loads(body) == {"status": "ok"}, f"ready body {body!r}")
    log = e.wait_log("starting the main loop")
    url = f"http://127.0.0.1:{e.port}"
    lines = [log.find("llama_server: model loaded"),
             log.find(f"llama_server: listening on {url}\n"),
             log.find(f"main: server is listening on {url} - starting the main loop")]
    check(-1 not in lines and lines == sorted(lines), f"announce lines missing or out of order:\n{log}")


def case_never_ready():
    """--never-ready stays 503; SIGTERM while loading kills by the default action"""
    e = Engine("--never-ready")
    check(e.wait_answer()[0] == 503, "first answer not 503")
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for path in ("/health", "/props"):
            status, doc = e.json("GET", path)
            check(status == 503 and doc == LOADING, f"{path}: {status} {doc}")
    e.proc.send_signal(signal.SIGTERM)
    rc = e.wait_exit()
    check(rc == -signal.SIGTERM, f"exit status {rc}, not killed by SIGTERM")


def case_endpoints():
    """/slots, /props, /metrics, /completion, 404, keep-alive and HTTP/1.0 when ready"""
    model = tempfile.NamedTemporaryFile(prefix="fake-model-", suffix=".gguf")
    with model:
        e = Engine("--parallel", "3", "-m", model.name)
        e.wait_status(200)
        status, slots = e.json("GET", "/slots")
        check(status == 200 and [s["id"] for s in slots] == [0, 1, 2], f"/slots: {slots}")
        check(all(s["is_processing"] is False for s in slots), f"/slots busy: {slots}")
        status, props = e.json("GET", "/props")
        check(status == 200 and props["total_slots"] == 3 and props["model_path"] == model.name,
              f"/props: {props}")
        # like llama-server without --metrics
        status, doc = e.json("GET", "/metrics")
        check(status == 501 and doc["error"]["type"] == "not_supported_error",
              f"/metrics without --metrics: {status} {doc}")
        t0 = time.monotonic()
        status, doc = e.json("POST", "/completion", body=b'{"prompt":"hi","n_predict":1}',
                             headers={"Content-Type": "application/json"})
        check(status == 200 and doc.get("content") == "fake", f"/completion: {status} {doc}")
        check(time.monotonic() - t0 >= 0.009, "completion answered in under 10 ms")
        status, doc = e.json("GET", "/nowhere")
        check(status == 404 and doc["error"]["code"] == 404, f"404: {status} {doc}")
        status, doc = e.json("POST", "/health")
        check(status == 404, f"POST /health: {status}")

        conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=HTTP_TIMEOUT)
        for _ in range(3):
            conn.request("GET", "/health")
            resp = conn.getresponse()
            check(resp.status == 200 and resp.getheader("Connection") == "keep-alive",
                  f"kept-alive request: {resp.status} {resp.getheaders()}")
            resp.read()
        conn.close()

        with socket.create_connection(("127.0.0.1", e.port), timeout=HTTP_TIMEOUT) as s:
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        check(reply.startswith(b"HTTP/1.1 200 ") and b"Connection: close\r\n" in reply
              and reply.endswith(b'{"status":"ok"}'), f"HTTP/1.0 reply {reply!r}")

        with socket.create_connection(("127.0.0.1", e.port), timeout=HTTP_TIMEOUT) as s:
            s.sendall(b"BROKEN\r\n\r\n")
            reply = s.recv(4096)
        check(reply.startswith(b"HTTP/1.1 400 "), f"malformed request: {reply!r}")
        check(e.proc.poll() is None, "engine died")
        check("request: POST /completion 127.0.0.1 200" in e.stderr(), "completion not logged")


def case_exit_code():
    """--exit-after-ms/--exit-code exits with that code"""
    e = Engine("--exit-after-ms", "200", "--exit-code", "7")
    check(e.wait_answer()[0] == 200, "not ready before exiting")
    rc = e.wait_exit()
    check(rc == 7, f"exit status {rc}, not 7")


def case_signal():
    """--signal-after-ms dies by SIGSEGV (and SIGABRT)"""
    for name, sig in (("SEGV", signal.SIGSEGV), ("SIGABRT", signal.SIGABRT)):
        e = Engine("--signal-after-ms", "200", "--signal", name)
        rc = e.wait_exit()
        check(rc == -sig, f"--signal {name}: exit status {rc}, not killed by {sig!r}:\n"
              + e.stderr())


def case_cuda_error():
    """--cuda-error-after-ms logs a CUDA error while /health stays 200"""
    e = Engine("--cuda-error-after-ms", "200")
    e.wait_status(200)
    log = e.wait_log("CUDA error: an illegal memory access was encountered")
    check("ggml_cuda" in log, "no ggml_cuda line")
    check(e.get("/health")[0] == 200, "/health not 200 after the CUDA error")
    check(e.proc.poll() is None, "engine exited after the CUDA error")


def case_cuda_oom():
    """--cuda-oom-after-ms logs cudaMalloc out of memory and exits 1"""
    e = Engine("--cuda-oom-after-ms", "200")
    rc = e.wait_exit()
    check(rc == 1, f"exit status {rc}, not 1")
    last = e.stderr().rstrip("\n").split("\n")[-1]
    check(last.endswith("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on "
                        "device 0: cudaMalloc failed: out of memory"), f"last line {last!r}")


def case_unhealthy():
    """--unhealthy-after-ms: /health 200, then 500 (other endpoints still 200)"""
    e = Engine("--unhealthy-after-ms", "1000")
    status = e.wait_answer()[0]
    if time.monotonic() - e.started < 0.9:
        check(status == 200, f"first /health answer {status}, not 200")
    status, _, body = e.wait_status(500)
    check(json.loads(body)["error"]["code"] == 500, f"500 body {body!r}")
    check(e.get("/props")[0] == 200, "/props not 200 while unhealthy")


def case_hang():
    """--hang-after-ms: connections are accepted but get no reply"""
    e = Engine("--hang-after-ms", "500")
    e.wait_status(200)

    def probe():
        try:
            e.get("/health", timeout=0.5)
            return None
        except socket.timeout:
            return True
    until(START_TIMEOUT, "/health to stop answering", probe)
    check(e.proc.poll() is None, "hung engine exited")


def case_slow_health():
    """--slow-health-ms delays /health without holding up other clients"""
    e = Engine("--slow-health-ms", "2000")
    e.wait_status(200, path="/props")
    stalled = socket.create_connection(("127.0.0.1", e.port), timeout=HTTP_TIMEOUT)
    slow = socket.create_connection(("127.0.0.1", e.port), timeout=HTTP_TIMEOUT)
    with stalled, slow:
        stalled.sendall(b"GET /hea")                    # and never the rest
        t0 = time.monotonic()
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        check(e.get("/props")[0] == 200, "/props not 200")
        readable, _, _ = select.select([slow], [], [], 0)
        check(not readable, "/health answered before /props (or /props took over 2 s)")
        reply = slow.recv(4096)
        check(time.monotonic() - t0 >= 2.0, "/health answered before --slow-health-ms")
        check(reply.startswith(b"HTTP/1.1 200 "), f"slow /health reply {reply!r}")


def case_ignore_sigterm():
    """--ignore-sigterm survives SIGTERM (SIGKILL ends it)"""
    e = Engine("--ignore-sigterm")
    e.wait_status(200)
    e.proc.send_signal(signal.SIGTERM)
    e.wait_log("received SIGTERM, ignoring it")
    check(e.get("/health")[0] == 200, "/health not 200 after SIGTERM")
    check(e.proc.poll() is None, "engine exited on SIGTERM")
    e.proc.kill()
    check(e.wait_exit() == -signal.SIGKILL, "not killed by SIGKILL")


def case_sigterm_idle():
    """SIGTERM when ready and idle exits 0, logging it"""
    e = Engine()
    e.wait_status(200)
    e.proc.send_signal(signal.SIGTERM)
    rc = e.wait_exit()
    check(rc == 0, f"exit status {rc}, not 0")
    check("received SIGTERM, shutting down" in e.stderr(), "shutdown not logged")


def case_sigterm_with_a_completion_in_flight():
    """SIGTERM with a completion in flight: it gets no answer (llama-server)"""
    e = Engine("--completion-ms", "3000")
    e.wait_status(200)
    sock = socket.create_connection(("127.0.0.1", e.port), timeout=5)
    body = b'{"prompt":"hi"}'
    sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    until(5, "the completion to run",
          lambda: True if e.json("GET", "/slots")[1][0]["is_processing"] else None)
    e.proc.send_signal(signal.SIGTERM)
    try:
        got = sock.recv(4096)
    except ConnectionResetError:
        got = b""
    sock.close()
    check(got == b"", f"answered after SIGTERM: {got[:80]!r}")
    check(e.wait_exit() == 0, "not exit 0 after SIGTERM")


def case_missing_model():
    """an unreadable model exits 1 at once with the GGUF line last"""
    e = Engine("-m", "/nonexistent/model.gguf", "--load-ms", "60000")
    rc = e.wait_exit()
    check(rc == 1, f"exit status {rc}, not 1")
    check(time.monotonic() - e.started < 5.0, "took over 5 s to fail")
    last = e.stderr().rstrip("\n").split("\n")[-1]
    check(last.endswith("gguf_init_from_file: failed to open GGUF file '/nonexistent/model.gguf'"),
          f"last line {last!r}")


def case_cuda_visible_devices():
    """the startup line echoes CUDA_VISIBLE_DEVICES (set, empty, unset)"""
    for env, want in (({"CUDA_VISIBLE_DEVICES": "1,0"}, "CUDA_VISIBLE_DEVICES=1,0\n"),
                      ({"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES=\n"),
                      ({}, "CUDA_VISIBLE_DEVICES unset\n")):
        Engine("--never-ready", env=env).wait_log(want)


def case_bad_options():
    """bad options print usage on stderr and exit 2, nothing on stdout"""
    for argv in (["--bogus", "--port", "1"], [], ["--port", "http"], ["--port", "1", "extra"],
                 ["--port", "1", "--load-ms", "-5"], ["--port", "1", "--exit-code", "3"],
                 ["--port", "1", "--signal-after-ms", "5", "--signal", "NOPE"]):
        run = subprocess.run([ENGINE, *argv], stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=EXIT_TIMEOUT)
        check(run.returncode == 2, f"{argv}: exit status {run.returncode}, not 2")
        check(b"usage: fake-engine" in run.stderr, f"{argv}: no usage on stderr")
        check(run.stdout == b"", f"{argv}: wrote to stdout: {run.stdout!r}")


def case_port_in_use():
    """a port in use exits 1 with llama-server's bind line"""
    a = Engine()
    a.wait_status(200)
    b = Engine(port=a.port)
    check(b.wait_exit() == 1, "second engine on the same port did not exit 1")
    check("couldn't bind HTTP server socket" in b.stderr(), "no bind error line")


def case_llama_args_and_pid_file():
    """llama-server's own flags are accepted; -np sets slots; --pid-file"""
    with tempfile.TemporaryDirectory(prefix="fake-engine-pid-") as tmp:
        pid_file = os.path.join(tmp, "engine.pid")
        e = Engine("-ngl", "99", "-ts", "3,1", "--metrics", "-c", "4096", "-np", "2",
                   "--flash-attn", "on", "--pid-file", pid_file)
        e.wait_status(200)
        with open(pid_file, encoding="ascii") as f:
            check(f.read() == f"{e.proc.pid}\n", "pid file content")
        check(os.listdir(tmp) == ["engine.pid"], f"leftovers beside the pid file: {os.listdir(tmp)}")
        check(e.json("GET", "/props")[1]["total_slots"] == 2, "-np 2 not applied")


def metrics_values(body):
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def case_metrics():
    """--metrics: llama-server's families, counters that grow, 80 tokens/s"""
    e = Engine("--metrics")
    e.wait_status(200)
    status, headers, body = e.get("/metrics")
    check(status == 200 and headers.get("Content-Type", "").startswith("text/plain"),
          f"/metrics: {status} {headers}")
    first = metrics_values(body)
    for name in ("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total",
                 "llamacpp:tokens_predicted_seconds_total", "llamacpp:predicted_tokens_seconds",
                 "llamacpp:requests_processing", "llamacpp:requests_deferred"):
        check(name in first, f"{name} missing from {body!r}")
    check(body.count(b"# HELP ") == body.count(b"# TYPE ") == len(first) == 12,
          f"not 12 families of one sample each: {body!r}")
    # counters move with time, never back; the speed is steady
    deadline = time.monotonic() + START_TIMEOUT
    later = first
    while later["llamacpp:tokens_predicted_total"] <= first["llamacpp:tokens_predicted_total"]:
        check(time.monotonic() < deadline, "tokens_predicted_total never grew")
        time.sleep(0.05)
        later = metrics_values(e.get("/metrics")[2])
    check(later["llamacpp:prompt_tokens_total"] >= first["llamacpp:prompt_tokens_total"],
          "prompt_tokens_total went back")
    speed = later["llamacpp:tokens_predicted_total"] / later["llamacpp:tokens_predicted_seconds_total"]
    check(abs(speed - 80) < 1e-6, f"generation speed {speed}, not 80 tokens/s")


def case_progress_and_ready_time():
    """--log-progress-ms while loading; --print-ready-time; --log-probes"""
    e = Engine("--load-ms", "1000", "--log-progress-ms", "100", "--print-ready-time",
               "--log-probes")
    before_us = time.monotonic_ns() // 1000
    until(START_TIMEOUT, "two progress lines",
          lambda: True if e.stderr().count("loading model tensors") >= 2 else None)
    e.wait_status(200)
    log = e.wait_log("ready_mono_us=")
    ready_us = int(log.split("ready_mono_us=")[1].split()[0])
    check(before_us - 1_000_000 < ready_us <= time.monotonic_ns() // 1000,
          f"ready_mono_us={ready_us} not on this CLOCK_MONOTONIC")
    e.wait_log("request: GET /health 127.0.0.1 200")
    check("listening on" not in e.stderr(), "announced without --announce")


def case_orphaned_with_dead_stderr():
    """keeps serving when its parent is gone and its stderr pipe has no reader"""
    port = free_port()
    parent = subprocess.Popen(["/bin/sh", "-c", '"$0" --port "$1" & echo $!', ENGINE, str(port)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    pid = int(parent.stdout.readline())
    parent.wait(EXIT_TIMEOUT)
    parent.stdout.close()
    parent.stderr.close()            # nobody reads the engine's stderr any more

    def alive():
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False
    try:
        def probe():
            try:
                return request(port, "GET", "/props")
            except (ConnectionRefusedError, ConnectionResetError):
                return None
        until(START_TIMEOUT, "the orphan to answer", probe)
        for _ in range(20):                          # each one logs a line to the dead pipe
            check(request(port, "GET", "/props")[0] == 200, "orphan stopped answering")
        check(alive(), "orphan died")
        os.kill(pid, signal.SIGTERM)
        until(EXIT_TIMEOUT, "the orphan to exit", lambda: True if not alive() else None)
    finally:
        if alive():
            os.kill(pid, signal.SIGKILL)


CASES = [
    case_loading_then_ready,
    case_never_ready,
    case_endpoints,
    case_exit_code,
    case_signal,
    case_cuda_error,
    case_cuda_oom,
    case_unhealthy,
    case_hang,
    case_slow_health,
    case_ignore_sigterm,
    case_sigterm_idle,
    case_sigterm_with_a_completion_in_flight,
    case_missing_model,
    case_cuda_visible_devices,
    case_bad_options,
    case_port_in_use,
    case_llama_args_and_pid_file,
    case_progress_and_ready_time,
    case_metrics,
    case_orphaned_with_dead_stderr,
]


def main(argv):
    global ENGINE
    if len(argv) != 2:
        print("usage: test-fake-engine.py FAKE_ENGINE", file=sys.stderr)
        return 2
    ENGINE = os.path.abspath(argv[1])
    failed = 0
    print(f"1..{len(CASES)}", flush=True)
    for i, case in enumerate(CASES, 1):
        name = case.__doc__.strip()
        Engine.live = []
        try:
            case()
            for e in Engine.live:
                check(e.stdout() == b"", f"engine wrote to stdout: {e.stdout()[:200]!r}")
            print(f"ok {i} - {name}", flush=True)
        except Exception as err:                # a failed case must not stop the others
            failed += 1
            print(f"not ok {i} - {name}", flush=True)
            what = str(err) if isinstance(err, Failure) else traceback.format_exc()
            for line in what.rstrip("\n").split("\n"):
                print(f"# {line}")
            for e in Engine.live:
                if os.path.exists(e.err_path):
                    print(f"# --- engine stderr (port {e.port}) ---")
                    for line in e.stderr().rstrip("\n").split("\n")[-15:]:
                        print(f"#   {line}")
            sys.stdout.flush()
        finally:
            for e in Engine.live:
                e.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
