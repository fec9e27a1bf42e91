#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A control-plane double for tests: it accepts node registrations,
heartbeats and deregistrations the way a control plane does, records every
request, and can be told to misbehave.

    fake-control-plane.py [--port N] [--token T]

Prints the port it listens on (127.0.0.1) as the first line of stdout.

    POST   /v2/nodes/register          200 {"ok": true}; the node is known
    POST   /v2/nodes/{id}/heartbeat    200, or 404 when the node is not known
    DELETE /v2/nodes/{id}              204; the node is forgotten

With --token, those need "Authorization: Bearer T" (401 otherwise).
Control (never recorded):

    GET  /_fake/requests   {"requests": [{method, path, authorization, body}]}
    POST /_fake/reset      forget the recorded requests
    POST /_fake/forget     forget every node (its next heartbeat gets 404)
    POST /_fake/mode       {"status": 503, "delay_ms": 0, "next_heartbeat_ms": null}
                           status 0 answers normally; delay_ms holds each
                           answer back (a slow control plane)
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
requests = []
nodes = set()
mode = {"status": 0, "delay_ms": 0, "next_heartbeat_ms": None}
token = None


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
            })
            status = mode["status"]
            delay = mode["delay_ms"]
            next_ms = mode["next_heartbeat_ms"]
        if delay:
            time.sleep(delay / 1000.0)
        if token is not None and self.headers.get("Authorization") != "Bearer " + token:
            return self.reply(401, {"error": "missing or wrong token"})
        if status:
            return self.reply(status, {"error": "control plane says %d" % status})
        parts = self.path.strip("/").split("/")
        extra = {} if next_ms is None else {"next_heartbeat_ms": next_ms}
        if self.command == "POST" and parts == ["v2", "nodes", "register"]:
            with lock:
                nodes.add((body or {}).get("node_id"))
            return self.reply(200, dict(ok=True, **extra))
        if self.command == "POST" and len(parts) == 4 and parts[:2] == ["v2", "nodes"] \
                and parts[3] == "heartbeat":
            with lock:
                known = parts[2] in nodes
            if not known:
                return self.reply(404, {"error": "node %s not registered" % parts[2]})
            return self.reply(200, dict(ok=True, **extra))
        if self.command == "DELETE" and len(parts) == 3 and parts[:2] == ["v2", "nodes"]:
            with lock:
                known = parts[2] in nodes
                nodes.discard(parts[2])
            return self.reply(204 if known else 404)
        return self.reply(404, {"error": "no route"})

    do_GET = do_POST = do_DELETE = do_PUT = handle_any


def main():
    global token
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token")
    args = ap.parse_args()
    token = args.token
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
