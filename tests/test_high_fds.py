"""Descriptors above 1023 on both legs (client and upstream) for HTTP, SSE and
WebSocket: ``select.select`` refuses them, the proxy's waits must not.

The test process raises its soft fd limit and fills every descriptor below
1024 with duplicates of /dev/null before the fake upstream and the proxy
start, so every socket created afterwards lands above 1023; all is undone
after the test.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
from typing import Iterator

import pytest
from websockets.sync.client import connect

from .conftest import wait_until

FD_SETSIZE = 1024


@pytest.fixture
def high_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if want < FD_SETSIZE + 256:
        pytest.skip(f"the hard fd limit ({hard}) leaves no room above {FD_SETSIZE}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    burned: list[int] = []
    base = os.open(os.devnull, os.O_RDONLY)
    try:
        while True:
            fd = os.dup(base)
            if fd >= FD_SETSIZE:
                os.close(fd)
                break
            burned.append(fd)
        yield
    finally:
        for fd in burned:
            os.close(fd)
        os.close(base)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _proxy_fds(proxy) -> tuple[list[int], list[int]]:
    """Descriptors of the proxy's client connections and idle upstream connections."""
    app = proxy.server.app
    clients = [entry.sock.fileno() for entry in list(app._conns)]
    upstream = [conn.sock.fileno() for stack in list(app.pool._idle.values()) for conn in stack]
    return clients, upstream


def test_http_and_sse_with_descriptors_above_1023(high_fds, fake, proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        plain = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}).encode()
        conn.request("POST", "/v1/messages", body=plain, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["type"] == "message"
        assert conn.sock.fileno() >= FD_SETSIZE
        # The client may read the answer before the relay has put its upstream
        # connection back in the pool: wait for it instead of racing it.
        def both_seen() -> tuple[list[int], list[int]] | None:
            clients, upstream = _proxy_fds(proxy)
            return (clients, upstream) if clients and upstream else None
        clients, upstream = wait_until(both_seen, what="a client and a pooled upstream connection")
        assert min(clients) >= FD_SETSIZE
        assert min(upstream) >= FD_SETSIZE
        stream = json.dumps({"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 5, "messages": []}).encode()
        conn.request("POST", "/v1/messages", body=stream,
                     headers={"content-type": "application/json", "x-fake-mode": "sse:30"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
        assert body.count(b"data: ") == 30
    finally:
        conn.close()
    lines = proxy.lines(2)
    assert [l["status"] for l in lines] == [200, 200] and lines[1]["isSSE"] is True
    assert not any(l.get("error") for l in lines)


def test_websocket_with_descriptors_above_1023(high_fds, fake, proxy):
    create = {"type": "response.create", "model": "gpt-5.5",
              "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
    with connect(f"ws://127.0.0.1:{proxy.port}/v1/responses") as ws:
        assert ws.socket.fileno() >= FD_SETSIZE
        ws.send(json.dumps(create))
        events = []
        while not events or events[-1]["type"] not in ("response.completed", "response.failed", "error"):
            events.append(json.loads(ws.recv(timeout=10)))
        clients, _ = _proxy_fds(proxy)
        assert clients and min(clients) >= FD_SETSIZE
    assert events[-1]["type"] == "response.completed"
    lines = proxy.lines(2)
    (conn_line,) = [l for l in lines if l["kind"] == "connection"]
    assert conn_line["status"] == 101 and conn_line["close"]["code"] == 1000
    assert conn_line["frameCounts"]["upstreamToClient"] == len(events)

