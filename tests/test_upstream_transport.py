"""Upstream transport: TLS with verification, HTTPS_PROXY tunnels, pool reuse."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
import threading
from typing import Iterator

import pytest
import trustme
from websockets.sync.client import connect

from ccxray.config import Upstream
from ccxray.netio import MAX_IDLE_PER_ORIGIN, MAX_IDLE_TOTAL, UpstreamConn, UpstreamPool

from .netfixtures import ConnectProxy, TlsFront

MSG = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}).encode()


def post(port: int, path: str = "/v1/messages", headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=MSG, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_front(fake, ca) -> Iterator[TlsFront]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    with TlsFront(fake.port, ctx) as front:
        yield front


def test_https_upstream_verified_with_trusted_ca(fake, ca, tls_front, make_proxy, tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    proxy = make_proxy(ANTHROPIC_BASE_URL=f"https://localhost:{tls_front.port}")
    status, body = post(proxy.port)
    assert status == 200 and json.loads(body)["type"] == "message"
    assert {n.lower(): v for n, v in fake.seen[-1]["headers"]}["host"] == f"localhost:{tls_front.port}"


def test_https_upstream_with_untrusted_cert_is_502(tls_front, make_proxy, tmp_path, monkeypatch):
    other = trustme.CA()
    bundle = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    proxy = make_proxy(ANTHROPIC_BASE_URL=f"https://localhost:{tls_front.port}")
    status, body = post(proxy.port)
    assert status == 502 and b"TLS" in body


def test_wss_upstream(fake, ca, tls_front, make_proxy, tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    proxy = make_proxy(OPENAI_BASE_URL=f"https://localhost:{tls_front.port}/v1")
    with connect(f"ws://127.0.0.1:{proxy.port}/v1/responses", additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.send("over tls")
        assert ws.recv(timeout=10) == "over tls"


def test_https_proxy_tunnel_for_http_and_websocket(fake, make_proxy):
    with ConnectProxy() as tunnel:
        proxy = make_proxy(HTTPS_PROXY=f"http://user:pw@127.0.0.1:{tunnel.port}")
        assert post(proxy.port)[0] == 200
        with connect(f"ws://127.0.0.1:{proxy.port}/v1/responses", additional_headers={"x-fake-mode": "echo"}) as ws:
            ws.send("tunnelled")
            assert ws.recv(timeout=10) == "tunnelled"
        assert tunnel.targets == [f"127.0.0.1:{fake.port}", f"127.0.0.1:{fake.port}"]
        assert tunnel.auth[0] and tunnel.auth[0].startswith("Basic ")


def test_no_proxy_bypasses_tunnel(fake, make_proxy):
    with ConnectProxy() as tunnel:
        proxy = make_proxy(HTTPS_PROXY=f"http://127.0.0.1:{tunnel.port}", NO_PROXY="localhost,127.0.0.1")
        assert post(proxy.port)[0] == 200
        assert tunnel.targets == []


def test_dead_https_proxy_is_502(make_proxy):
    proxy = make_proxy(HTTPS_PROXY="http://127.0.0.1:9")
    status, body = post(proxy.port)
    assert status == 502 and b"HTTPS_PROXY" in body


def test_stale_pooled_connection_is_retried(fake, proxy):
    # close-after: the fake answers, then closes the kept-alive connection;
    # the next call must not fail on the dead pooled socket.
    assert post(proxy.port, headers={"x-fake-mode": "close-after"})[0] == 200
    for _ in range(3):
        assert post(proxy.port)[0] == 200
    assert len(proxy.lines(4)) == 4


def test_the_pool_keeps_the_sockets_of_a_burst_of_parallel_calls(fake):
    # an agent's 20 parallel calls, then 20 more: the second burst finds every socket again
    from ccxray.config import Upstream
    from ccxray.netio import MAX_IDLE_PER_ORIGIN, UpstreamPool

    upstream = Upstream("ANTHROPIC_BASE_URL", "http", "127.0.0.1", fake.port, "")
    pool = UpstreamPool(None, 5.0, 5.0)
    try:
        for _ in range(2):
            conns = [pool.acquire(upstream) for _ in range(20)]
            for conn in conns:
                pool.release(conn)
        assert MAX_IDLE_PER_ORIGIN >= 20 and sum(conn.reused for conn in conns) == 20
    finally:
        pool.close()


def test_the_pool_holds_no_more_idle_sockets_than_the_fd_reserve_counts(fake):
    from ccxray.config import Upstream
    from ccxray.netio import MAX_IDLE_PER_ORIGIN, MAX_IDLE_TOTAL, UpstreamPool

    origins = [Upstream("ANTHROPIC_BASE_URL", "http", "127.0.0.1", fake.port, f"/o{n}") for n in range(4)]
    pool = UpstreamPool(None, 5.0, 5.0)
    try:
        conns = [pool.acquire(up) for up in origins for _ in range(MAX_IDLE_PER_ORIGIN)]
        for conn in conns:
            pool.release(conn)
        assert sum(conn.sock.fileno() != -1 for conn in conns) == MAX_IDLE_TOTAL < len(conns)
    finally:
        pool.close()


RACE_ROUNDS = 30


def test_threads_releasing_at_once_keep_the_pool_within_its_caps():
    # no lock guards the pool: releases racing past a cap must take theirs back and close it.
    # A tiny switch interval makes the threads interleave inside release (at the default 5 ms
    # they never do, and a pool without its re-check passed)
    origins = [Upstream("ANTHROPIC_BASE_URL", "http", "127.0.0.1", 9, f"/o{n}") for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(RACE_ROUNDS):
            _race_releases(UpstreamPool(None, 5.0, 5.0), origins)
    finally:
        sys.setswitchinterval(interval)


def _race_releases(pool: UpstreamPool, origins: list[Upstream]) -> None:
    pairs = [socket.socketpair() for _ in range(160)]
    conns = [UpstreamConn(origins[n % 4], a) for n, (a, _) in enumerate(pairs)]
    start = threading.Barrier(8)

    def release(mine: list[UpstreamConn]) -> None:
        start.wait()
        for conn in mine:
            pool.release(conn)

    threads = [threading.Thread(target=release, args=(conns[n::8],)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pooled = [pool._take_idle(up) for up in origins for _ in range(MAX_IDLE_PER_ORIGIN + 1)]
        held = [conn for conn in pooled if conn is not None]
        open_ = [conn for conn in conns if conn.sock.fileno() != -1]
        assert 0 < len(held) <= MAX_IDLE_TOTAL and set(map(id, open_)) == set(map(id, held))
        assert all(sum(c.upstream == up for c in held) <= MAX_IDLE_PER_ORIGIN for up in origins)
    finally:
        pool.close()
        for conn in conns:
            conn.close()
        for _, b in pairs:
            b.close()


def test_a_body_past_the_recording_budget_over_tls(fake, ca, tls_front, make_proxy, tmp_path, monkeypatch):
    """Read into one buffer from a TLS socket (what TLS already decrypted is read before any wait)."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    proxy = make_proxy(ANTHROPIC_BASE_URL=f"https://localhost:{tls_front.port}", CCXRAY_RECORD_MAX_MB="1")
    status, body = post(proxy.port, headers={"x-fake-mode": "big:3000000"})
    assert status == 200 and len(body) == 3_000_000
    (line,) = proxy.lines(1)
    assert line["error"] is None and (proxy.logs / f"{line['id']}_res.body").read_bytes() == body
