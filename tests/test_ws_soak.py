"""Soak: 1,000 WebSocket sessions with mixed endings (either side closing,
either side dropping TCP, either side breaking the protocol, upstream
refusing the upgrade) leave the proxy's threads, descriptors and memory
where they were, and each is recorded with its outcome."""

from __future__ import annotations

import os
import resource
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .conftest import wait_until

ENDINGS = ["echo", "close:4000", "drop-after:1", "invalid-frame", "client-drop", "client-violation", "refuse:429"]
CLIENT_SIDE = {"client-drop": "echo", "client-violation": "echo"}  # the fake upstream just echoes
RESERVED_OPCODE_FRAME = b"\x83\x80\x00\x00\x00\x00"  # masked, empty, opcode 3: a protocol violation


def _fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


def _rss_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _session(port: int, number: int) -> str:
    ending = ENDINGS[number % len(ENDINGS)]
    try:
        ws = connect(f"ws://127.0.0.1:{port}/v1/responses?soak={number}",
                     additional_headers={"x-fake-mode": CLIENT_SIDE.get(ending, ending)}, open_timeout=30)
    except InvalidStatus as exc:
        assert ending == "refuse:429" and exc.response.status_code == 429, exc
        return ending
    with ws:
        ws.send(f"hello {number}")
        try:
            ws.recv(timeout=30)
            if ending == "client-drop":
                ws.socket.close()  # no close frame: a TCP drop
                return ending
            if ending == "client-violation":
                ws.socket.sendall(RESERVED_OPCODE_FRAME)
            if ending != "echo":
                ws.recv(timeout=30)  # the close (or drop) arrives
        except ConnectionClosed as exc:
            if ending == "client-violation":
                assert exc.rcvd is not None and exc.rcvd.code == 1002, exc
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
    connections = [l for l in lines if l["kind"] == "connection"]
    assert len(connections) == 1001
    statuses = {ENDINGS[int(l["url"].rsplit("=", 1)[1]) % len(ENDINGS)]: l["status"] for l in connections[1:]}
    assert statuses["refuse:429"] == 429 and statuses["echo"] == 101, statuses
    wait_until(lambda: threading.active_count() <= threads, 60, "the sessions' threads to end")
    wait_until(lambda: _fds() <= fds + 2, 60, "the sessions' descriptors to close")  # + pooled upstreams
    grown = _rss_mb() - rss
    print(f"1,000 sessions: RSS grew {grown:.1f} MiB; threads {threading.active_count()} (was {threads}), "
          f"fds {_fds()} (was {fds})")
    assert grown < 64
