#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The not-ready window of a reload, drain-first against surge: one pool
of the fake engine (--load-ms LOAD_MS), reloaded ROUNDS times with each
strategy between two model files, while a thread polls GET /v2/pools/{id}
on one keep-alive connection as fast as it answers. For each reload the
longest run of not-ready snapshots is measured from the last ready
snapshot before it to the first ready one after it (an upper bound; the
bound is tight to the poll interval, also reported).

    reload-window.py DAEMON FAKE_ENGINE [ROUNDS] [LOAD_MS]

Started by bench/reload-window, which builds the release build first.
"""

import http.client
import json
import os
import shutil
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import api  # noqa: E402
import e2e  # noqa: E402
from api import Node, config_pool  # noqa: E402


class Poller(threading.Thread):
    def __init__(self, port, pool_id):
        super().__init__(daemon=True)
        self.port, self.path = port, "/v2/pools/%s" % pool_id
        self.samples = []              # (monotonic seconds, ready)
        self.halt = threading.Event()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.halt.is_set():
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = json.loads(resp.read())
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            self.samples.append((time.monotonic(), bool(body.get("ready"))))
        conn.close()


def longest_gap(samples, t0, t1):
    """The longest not-ready run among samples in [t0, t1], in ms, measured
    from the ready sample before it to the ready sample after it."""
    window = [s for s in samples if t0 <= s[0] <= t1]
    longest, last_ready, gap_open = 0.0, None, False
    for t, ready in window:
        if ready:
            if last_ready is not None and gap_open:
                longest = max(longest, t - last_ready)
            last_ready, gap_open = t, False
        else:
            gap_open = True
    return longest * 1000


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    e2e.DAEMON = argv[1]
    api.FAKE_ENGINE = os.path.realpath(argv[2])
    rounds = int(argv[3]) if len(argv) > 3 else 5
    load_ms = int(argv[4]) if len(argv) > 4 else 500
    pool = dict(config_pool("rw", 19510, "-m", "{model_path}", "--load-ms", str(load_ms)),
                model_path="tiny.gguf")
    with Node([pool], extra={"defaults": {"health": {"startup_timeout_ms": 60000},
                                          "stop_grace_ms": 3000}}) as n:
        n.wait_pool("rw", lambda s, b: s == 200 and b["ready"], "ready", timeout=120)
        models = [n.model, os.path.join(n.dir, "other.gguf")]
        shutil.copy(n.model, models[1])
        poller = Poller(n.daemon.port, "rw")
        poller.start()
        results = {}
        k = 1
        for strategy in ("drain-first", "surge"):
            gaps, took = [], []
            for _ in range(rounds):
                t0 = time.monotonic()
                status, _, data = n.request("POST", "/v2/pools/rw/reload",
                                            {"model_path": models[k % 2], "strategy": strategy})
                if status != 200:
                    raise SystemExit("reload answered %d: %r" % (status, data[:300]))
                took.append((time.monotonic() - t0) * 1000)
                k += 1
                # Settled: the surge's old engine gone, ready again.
                n.wait_pool("rw", lambda s, b: b["state"] == "ready", "settled", timeout=120)
                time.sleep(0.2)        # ready samples after the reload close any gap
                gaps.append(longest_gap(poller.samples, t0, time.monotonic()))
            results[strategy] = (gaps, took)
        poller.halt.set()
        poller.join(30)
        times = [t for t, _ in poller.samples]
        interval = statistics.median(b - a for a, b in zip(times, times[1:])) * 1000
        n.stop()
    print("# reload-window: %d reloads per strategy, fake engine --load-ms %d, %d snapshots, "
          "median poll interval %.3f ms" % (rounds, load_ms, len(times), interval))
    for strategy, (gaps, took) in results.items():
        print("%-12s longest not-ready: median %8.1f ms  max %8.1f ms   reload answered in: median %7.1f ms"
              % (strategy, statistics.median(gaps), max(gaps), statistics.median(took)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
