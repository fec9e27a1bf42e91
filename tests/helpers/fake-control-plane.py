#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A control-plane double for tests: it accepts node registrations,
heartbeats and deregistrations the way the llama-orch orchestrator does --
as strictly as its types read them -- records every request, and can be told
to misbehave.

    fake-control-plane.py [--port N] [--token T] [--next-heartbeat-ms N|none]

Prints the port it listens on (127.0.0.1) as the first line of stdout.

    POST   /v2/nodes/register          200 {"success": true, "message", "node_id"};
                                       the node is known
    POST   /v2/nodes/{id}/heartbeat    200 {"success": true, "next_heartbeat_ms": 10000},
                                       or 404 when the node is not known
    DELETE /v2/nodes/{id}              204, or 404 when it was not known

Bodies are checked like the orchestrator's serde types: unknown fields are
ignored, optional fields may be absent or null, every other field must be
present, non-null and exactly typed (u32/u64 are non-negative integers in
range, never booleans or reals; the heartbeat timestamp is an RFC 3339
string). Anything else is answered 422 with the path of the first bad field,
e.g. {"error": "capabilities.gpus[0].device_id: missing field"}.

With --token, those need "Authorization: Bearer T" (401 with an empty body
otherwise). Control (never recorded):

    GET  /_fake/requests   {"requests": [{method, path, authorization, body, status}]}
    POST /_fake/reset      forget the recorded requests
    POST /_fake/forget     forget every node (its next heartbeat gets 404)
    POST /_fake/mode       {"status": 503, "delay_ms": 0, "next_heartbeat_ms": 10000}
                           status 0 answers normally; delay_ms holds each
                           answer back (a slow control plane)
"""

import re
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
requests = []
nodes = set()
mode = {"status": 0, "delay_ms": 0, "next_heartbeat_ms": 10000}
token = None


U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class Invalid(Exception):
    pass


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check(v, kind, where):
    if kind == "string":
        ok = isinstance(v, str)
    elif kind == "bool":
        ok = isinstance(v, bool)
    elif kind == "u32":
        ok = _is_int(v) and 0 <= v <= U32_MAX
    elif kind == "u64":
        ok = _is_int(v) and 0 <= v <= U64_MAX
    elif kind == "rfc3339":
        ok = isinstance(v, str) and RFC3339_RE.match(v) is not None
    elif isinstance(kind, list):           # [element kind]
        if not isinstance(v, list):
            raise Invalid("%s: invalid type: expected a sequence" % where)
        for i, e in enumerate(v):
            _check(e, kind[0], "%s[%d]" % (where, i))
        return
    elif isinstance(kind, dict):           # a struct
        if not isinstance(v, dict):
            raise Invalid("%s: invalid type: expected struct" % where)
        for name, sub in kind.items():
            optional = name.endswith("?")
            name = name.rstrip("?")
            path = "%s.%s" % (where, name) if where else name
            if name not in v or (optional and v[name] is None):
                if optional:
                    continue
                raise Invalid("%s: missing field" % path)
            _check(v[name], sub, path)
        return
    else:
        raise AssertionError(kind)
    if not ok:
        raise Invalid("%s: invalid type: expected %s, got %s" % (where, kind, json.dumps(v)))


# The orchestrator's request types (fields ending in "?" are Option<_>).
REGISTER = {
    "node_id": "string", "machine_id": "string", "address": "string", "pools": ["string"],
    "capabilities": {
        "gpus": [{"device_id": "u32", "name": "string", "vram_total_bytes": "u64",
                  "compute_capability": "string"}],
        "cpu_cores?": "u32", "ram_total_bytes?": "u64",
    },
    "version?": "string",
}
HEARTBEAT = {
    "timestamp": "rfc3339",
    "pools": [{"pool_id": "string", "ready": "bool", "draining": "bool", "slots_free": "u32",
               "slots_total": "u32", "vram_free_bytes": "u64", "engine?": "string"}],
}


def validate(body, schema):
    """None when body reads as the schema, else the error of the first bad field."""
    try:
        _check(body, schema, "")
    except Invalid as e:
        return str(e)
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, doc=None):
        body = b"" if doc is None else json.dumps(doc).encode()
        try:
            self.send_response(status)
            if doc is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass              # the client gave up (a timeout): fine

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return {"unparsable": raw.decode(errors="replace")}

    def control(self, body):
        global requests, nodes
        with lock:
            if self.path == "/_fake/requests":
                return self.reply(200, {"requests": list(requests)})
            if self.path == "/_fake/reset":
                requests = []
                return self.reply(200, {})
            if self.path == "/_fake/forget":
                nodes = set()
                return self.reply(200, {})
            if self.path == "/_fake/mode":
                mode.update(body or {})
                return self.reply(200, dict(mode))
        return self.reply(404, {"error": "unknown control path"})

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/_fake/"):
            return self.control(body)
        with lock:
            requests.append({
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "body": body,
                "at": time.time(),
                "status": None,
            })
            self.record = requests[-1]
            status = mode["status"]
            delay = mode["delay_ms"]
            next_ms = mode["next_heartbeat_ms"]
        if delay:
            time.sleep(delay / 1000.0)
        if token is not None and self.headers.get("Authorization") != "Bearer " + token:
            return self.answer(401)
        if status:
            return self.answer(status, {"error": "control plane says %d" % status})
        parts = self.path.strip("/").split("/")
        if self.command == "POST" and parts == ["v2", "nodes", "register"]:
            bad = validate(body, REGISTER)
            if bad:
                return self.answer(422, {"error": bad})
            with lock:
                nodes.add(body["node_id"])
            return self.answer(200, {"success": True, "message": "node registered",
                                     "node_id": body["node_id"]})
        if self.command == "POST" and len(parts) == 4 and parts[:2] == ["v2", "nodes"] \
                and parts[3] == "heartbeat":
            with lock:
                known = parts[2] in nodes
            if not known:
                return self.answer(404, {"error": "node %s not registered" % parts[2]})
            bad = validate(body, HEARTBEAT)
            if bad:
                return self.answer(422, {"error": bad})
            doc = {"success": True}
            if next_ms is not None:
                doc["next_heartbeat_ms"] = next_ms
            return self.answer(200, doc)
        if self.command == "DELETE" and len(parts) == 3 and parts[:2] == ["v2", "nodes"]:
            with lock:
                known = parts[2] in nodes
                nodes.discard(parts[2])
            return self.answer(204 if known else 404)
        return self.answer(404, {"error": "no route"})

    def answer(self, status, doc=None):
        """Replies, and records the status beside the request."""
        with lock:
            if getattr(self, "record", None) is not None:
                self.record["status"] = status
        return self.reply(status, doc)

    do_GET = do_POST = do_DELETE = do_PUT = handle_any


def main():
    global token
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token")
    ap.add_argument("--next-heartbeat-ms", default="10000",
                    help="the heartbeat reply's next_heartbeat_ms, as the seed's "
                         "(10000); none: left out, so the node keeps its own interval")
    args = ap.parse_args()
    token = args.token
    mode["next_heartbeat_ms"] = None if args.next_heartbeat_ms == "none" else int(args.next_heartbeat_ms)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
