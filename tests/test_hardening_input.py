"""Bad input h11 lets through, answered per RFC 9112 / RFC 6455 without bothering upstream."""

from __future__ import annotations

import select
import socket

import pytest

from ccxray.errors import ClientProtocolError
from ccxray.requestcheck import ChunkSizeWatcher, check_version, has_length_and_chunking, ws_handshake_problem

from .test_http_proxy import MSG, raw_exchange


def statuses(raw: bytes) -> list[int]:
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


# -- pure checks ---------------------------------------------------------------------

def test_check_version():
    check_version(b"1.1")
    check_version(b"1.0")
    with pytest.raises(ClientProtocolError) as info:
        check_version(b"2.0")
    assert info.value.status_hint == 505


def test_length_and_chunking():
    assert has_length_and_chunking([("Content-Length", "5"), ("Transfer-Encoding", "chunked")])
    assert not has_length_and_chunking([("Content-Length", "5")])
    assert not has_length_and_chunking([("transfer-encoding", "chunked")])


GOOD_KEY = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
V13 = ("Sec-WebSocket-Version", "13")


@pytest.mark.parametrize("headers,ok", [
    ([GOOD_KEY, V13], True),
    ([V13], False),
    ([("Sec-WebSocket-Key", ""), V13], False),
    ([("Sec-WebSocket-Key", "not base64!"), V13], False),
    ([("Sec-WebSocket-Key", "c2hvcnQ="), V13], False),  # base64 of 5 bytes
    ([("Sec-WebSocket-Key", "ü"), V13], False),
    ([GOOD_KEY, GOOD_KEY, V13], False),
    ([GOOD_KEY, ("Sec-WebSocket-Version", "8")], False),
    ([GOOD_KEY], False),
    ([GOOD_KEY, V13, ("Sec-WebSocket-Version", "8")], False),
])
def test_ws_handshake_problem(headers, ok):
    assert (ws_handshake_problem(headers) is None) is ok


def _feed_all(watcher: ChunkSizeWatcher, data: bytes, step: int) -> None:
    for i in range(0, len(data), step):
        watcher.feed(data[i:i + step])


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_chunk_watcher_follows_valid_framing(step):
    body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n" + b"99999999999999999999\r\n"  # next request's bytes
    _feed_all(ChunkSizeWatcher(100), body, step)


@pytest.mark.parametrize("step", [1, 1000])
@pytest.mark.parametrize("size,status", [(b"99999999999999999999", 400), (b"65", 413), (b"0000000000000000065", 400)])
def test_chunk_watcher_refuses_huge_sizes(step, size, status):
    with pytest.raises(ClientProtocolError) as info:
        _feed_all(ChunkSizeWatcher(100), b"5\r\nhello\r\n" + size + b"\r\nxx", step)
    assert info.value.status_hint == status


def test_chunk_watcher_leaves_malformed_lines_to_h11():
    ChunkSizeWatcher(10).feed(b"zz\r\n" + b"f" * 100 + b"\r\n")
    ChunkSizeWatcher(10).feed(b"a" * 5000)


# -- through a real proxy ----------------------------------------------------------------

def _head(proxy_port: int, first: str, *lines: str) -> bytes:
    return ("\r\n".join([first, f"Host: 127.0.0.1:{proxy_port}", *lines]) + "\r\n\r\n").encode()


def test_length_plus_chunking_is_answered_then_closed(fake, proxy):
    smuggled = _head(proxy.port, "POST /v1/messages HTTP/1.1", "Content-Length: 5", "Transfer-Encoding: chunked")
    body = b"%x\r\n" % len(MSG) + MSG + b"\r\n0\r\n\r\n"
    pipelined = _head(proxy.port, "GET /v1/models HTTP/1.1")
    raw = raw_exchange(proxy.port, smuggled + body + pipelined)
    assert statuses(raw) == [200]  # the pipelined request is never read: the connection closed
    assert [e["target"] for e in fake.seen] == ["/v1/messages"]


def test_impossible_chunk_size_gets_400_at_once(fake, proxy):
    head = _head(proxy.port, "POST /v1/messages HTTP/1.1", "Transfer-Encoding: chunked")
    raw = raw_exchange(proxy.port, head + b"99999999999999999999\r\nabc", timeout=30)
    assert statuses(raw) == [400]
    assert fake.seen == []


def test_http2_preface_gets_505(fake, proxy):
    raw = raw_exchange(proxy.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert statuses(raw) == [505]
    assert fake.seen == [] and proxy.lines() == []


@pytest.mark.parametrize("key,version", [
    ("", "13"), ("not-base64!!", "13"), ("c2hvcnQ=", "13"), (None, "13"),
    ("dGhlIHNhbXBsZSBub25jZQ==", "8"), ("dGhlIHNhbXBsZSBub25jZQ==", None),
])
def test_invalid_websocket_handshake_gets_400_without_upstream(fake, proxy, key, version):
    lines = ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    raw = raw_exchange(proxy.port, _head(proxy.port, "GET /v1/responses HTTP/1.1", *lines))
    assert statuses(raw) == [400]
    assert fake.seen == [] and fake.connection_count == 0


def test_body_trickled_past_the_overall_deadline_gets_408(fake, make_proxy):
    """One byte at a time keeps each read short, but the whole body has a deadline."""
    proxy = make_proxy(CCXRAY_BODY_TIMEOUT_MS="300")  # the per-read timeout stays at its 600 s default
    head = _head(proxy.port, "POST /v1/messages HTTP/1.1", "Content-Length: 100000")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(head)
        answered = False
        for _ in range(3000):  # each round waits up to 0.1 s for the answer before the next byte
            sock.sendall(b"x")
            if select.select([sock], [], [], 0.1)[0]:
                answered = True
                break
        assert answered, "the proxy kept waiting for a trickled body"
        raw = sock.recv(65536)
    assert statuses(raw) == [408]
    assert fake.seen == []
