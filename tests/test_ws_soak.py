"""Soak: 1,000 WebSocket sessions with mixed endings leave the proxy's
threads, descriptors and memory where they were, and each is recorded."""

from __future__ import annotations

import os
import resource
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import wait_until

ENDINGS = ["echo", "close:4000", "drop-after:1", "invalid-frame", "client-drop"]


def _fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


def _rss_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _session(port: int, number: int) -> str:
    ending = ENDINGS[number % len(ENDINGS)]
    mode = "echo" if ending == "client-drop" else ending
    with connect(f"ws://127.0.0.1:{port}/v1/responses?soak={number}",
                 additional_headers={"x-fake-mode": mode}, open_timeout=30) as ws:
        ws.send(f"hello {number}")
        try:
            ws.recv(timeout=30)
            if ending == "client-drop":
                ws.socket.close()  # no close frame: a TCP drop
                return ending
            if ending != "echo":
                ws.recv(timeout=30)  # the close (or drop) arrives
        except ConnectionClosed:
            pass
    return ending


@pytest.mark.slow
def test_thousand_sessions_with_mixed_endings_leave_nothing_behind(fake, proxy):
    _session(proxy.port, 0)  # warm up: the first session allocates what every later one reuses
    proxy.wait_lines(lambda ls: any(l["kind"] == "connection" for l in ls), 30, "the warm-up line")
    threads, fds, rss = threading.active_count(), _fds(), _rss_mb()
    with ThreadPoolExecutor(16) as pool:
        endings = list(pool.map(lambda n: _session(proxy.port, n), range(1, 1001)))
    assert sorted(set(endings)) == sorted(ENDINGS)
    lines = proxy.wait_lines(lambda ls: sum(l["kind"] == "connection" for l in ls) >= 1001, 120,
                             "a line per session")
    assert sum(l["kind"] == "connection" for l in lines) == 1001
    wait_until(lambda: threading.active_count() <= threads, 60, "the sessions' threads to end")
    wait_until(lambda: _fds() <= fds + 2, 60, "the sessions' descriptors to close")  # + pooled upstreams
    grown = _rss_mb() - rss
    print(f"1,000 sessions: RSS grew {grown:.1f} MiB; threads {threading.active_count()} (was {threads}), "
          f"fds {_fds()} (was {fds})")
    assert grown < 64
