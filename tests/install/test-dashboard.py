#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""contrib/grafana/pool-managerd.json is valid JSON, and every metric its
queries name has a # TYPE line in a scrape of the daemon running the demo
configuration (docs/examples/demo.json, its engine pointed at the built
fake engine, its ports and runtime directory made unique).

    test-dashboard.py DAEMON FAKE_ENGINE DEMO_CONFIG DASHBOARD
"""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "rate", "irate", "increase", "delta", "histogram_quantile",
    "label_values", "offset", "bool", "topk", "bottomk", "abs", "clamp_min", "clamp_max", "time",
    "vector", "scalar", "instance", "le",
}


def queries(node):
    """Every PromQL string of the dashboard: targets' expr, and the
    templating's queries."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                yield v
            elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                yield v["query"]
            else:
                yield from queries(v)
    elif isinstance(node, list):
        for v in node:
            yield from queries(v)


def metric_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)      # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                 # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)                     # dashboard variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group(0)
        rest = expr[m.end():].lstrip()
        if word in PROMQL_WORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def family(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config(demo, fake_engine, directory):
    with open(demo) as f:
        config = json.load(f)
    base = os.path.dirname(os.path.abspath(demo))
    config["bind"] = "127.0.0.1:0"
    config["runtime_dir"] = os.path.join(directory, "run")
    for pool in config["pools"]:
        pool["binary"] = fake_engine
        pool["model_path"] = os.path.join(base, pool["model_path"])
        pool["port"] = free_port()
    path = os.path.join(directory, "demo.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def scrape(daemon, config):
    p = subprocess.Popen([daemon, "--config", config], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in p.stderr:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") == "listening":
                port = obj["port"]
                break
        if not port:
            raise SystemExit("the daemon did not listen (exit status %s)" % p.wait())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise SystemExit("GET /metrics: %d" % resp.status)
        return body
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    daemon, fake_engine, demo, dashboard = argv[1:]
    with open(dashboard) as f:
        dash = json.load(f)             # invalid JSON fails here
    for key in ("title", "uid", "panels"):
        if key not in dash:
            print("the dashboard has no %r" % key)
            return 1
    wanted = set()
    for q in queries(dash):
        wanted |= metric_names(q)
    if len(wanted) < 10:
        print("only %d metrics found in the dashboard's queries: %r" % (len(wanted), sorted(wanted)))
        return 1

    directory = tempfile.mkdtemp(prefix="pm-dashboard-")
    try:
        text = scrape(daemon, demo_config(demo, os.path.realpath(fake_engine), directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    typed = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    missing = sorted(n for n in wanted if family(n) not in typed)
    for n in missing:
        print("the dashboard queries %s, which the demo's scrape does not declare (# TYPE)" % n)
    if missing:
        return 1
    print("ok: %d metrics, each declared in the scrape" % len(wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
