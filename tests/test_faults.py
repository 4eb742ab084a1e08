"""Faults: bad input gets a clear error and loses nothing.

A malformed request gets a 4xx, a broken upstream a 502/504 (or, once the
answer has started, a closed connection), a WebSocket peer that breaks RFC
6455 gets 1002/1007 while the other side gets 1011, a broken log line is
skipped, a recorder that cannot write is reported once; and throughout the
proxy keeps serving everyone else and logs no traceback. Ends with a short
run of ``tools/fuzz.py`` with a fixed seed.

Everything runs on 127.0.0.1; waits are on conditions with deadlines.
Some tests pin bugs that this suite and its fuzz harness found; their
docstrings say what used to go wrong.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tools import fuzz

from .conftest import ROOT, wait_until

MSG = fuzz.MSG
RNG = random.Random(6455)  # masking keys only; frames are judged by content


# ---------------------------------------------------------------- helpers


@pytest.fixture
def proxy_log() -> Iterator[fuzz.ErrorLog]:
    """ccxray log records at ERROR or with a traceback (the fake upstream's kept apart)."""
    handler = fuzz.ErrorLog()
    logger = logging.getLogger("ccxray")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def assert_no_tracebacks(log: fuzz.ErrorLog) -> None:
    assert not log.proxy, f"the proxy logged errors: {log.proxy}\n{log.first_traceback}"


class SteadyClient:
    """A well-behaved agent calling through the proxy in a loop while faults happen."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-client")

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            problem = fuzz.http_health(self.port, number, timeout_s=10)
            if problem:
                self.failures.append(problem)
            else:
                self.ok.append(number)
            number += 1
            self._stop.wait(0.005)

    def more(self, count: int = 2) -> None:
        """Wait until ``count`` more calls have succeeded (it keeps being served)."""
        target = len(self.ok) + count
        wait_until(lambda: len(self.ok) >= target or self.failures, 10, f"{count} more steady calls")
        assert not self.failures, self.failures

    def __enter__(self) -> "SteadyClient":
        self._thread.start()
        wait_until(lambda: self.ok or self.failures, 10, "the first steady call")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def assert_recorded(proxy: Any, numbers: list[int]) -> None:
    """Each steady call has exactly one good index line (written just after its last byte: wait)."""
    wait_until(lambda: not fuzz.missing_health_lines(proxy.logs, numbers, []), 10, "every steady call's line")


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the proxy closes; a reset counts as a close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the proxy may answer and close before reading everything
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def statuses(raw: bytes) -> list[int]:
    """Status codes of the responses in ``raw`` (bodies here are short JSON)."""
    return [int(m.group(1)) for m in STATUS_LINE.finditer(raw)]


def error_body(raw: bytes) -> dict[str, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert length, head
    return json.loads(body[:int(length.group(1))])  # type: ignore[no-any-return]


def post(port: int, path: str = "/v1/messages", headers: dict[str, str] | None = None,
         body: bytes = MSG) -> tuple[int, bytes | Exception]:
    """(status, body) of one call; the body is the exception if it came incomplete."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        try:
            return resp.status, resp.read()
        except (http.client.IncompleteRead, ConnectionError) as exc:
            return resp.status, exc
    finally:
        conn.close()


def one_line(proxy: Any, url: str) -> dict[str, Any]:
    """The single index line of ``url`` (waits for it, then checks there is no second)."""
    proxy.wait_lines(lambda ls: any(l.get("url") == url for l in ls), what=f"the line of {url}")
    matching = [l for l in proxy.lines() if l.get("url") == url]
    assert len(matching) == 1, matching
    return matching[0]


# ---------------------------------------------------------------- malformed requests

H = b"Host: x\r\n"
CLIENT_FAULTS = {
    # name: (raw request, status the proxy must answer)
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "request line without version": (b"GET /v1/models\r\n\r\n", 400),
    "bad HTTP version": (b"GET /v1/models HTTP/x.y\r\n" + H + b"\r\n", 400),
    "NUL in target": (b"GET /v1/mo\x00dels HTTP/1.1\r\n" + H + b"\r\n", 400),
    "space in header name": (b"GET /v1/models HTTP/1.1\r\n" + H + b"Bad Name: v\r\n\r\n", 400),
    "header line without colon": (b"GET /v1/models HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    "NUL in header value": (b"GET /v1/models HTTP/1.1\r\n" + H + b"X-V: a\x00b\r\n\r\n", 400),
    "missing Host": (b"GET /v1/models HTTP/1.1\r\n\r\n", 400),
    "conflicting Content-Length": (b"POST /v1/messages HTTP/1.1\r\n" + H
                                   + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "non-numeric Content-Length": (b"POST /v1/messages HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400),
    "negative Content-Length": (b"POST /v1/messages HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    "bad chunk size": (b"POST /v1/messages HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", 400),
    "chunk longer than its size": (b"POST /v1/messages HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                                   b"3\r\nhelloXX\r\n0\r\n\r\n", 400),
    # RFC 9112 6.1: a transfer coding the server does not understand is a 501.
    "unknown transfer coding": (b"POST /v1/messages HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n{}", 501),
    "head over the limit": (b"GET /v1/models HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431),
    "body over cap (Content-Length)": (b"POST /v1/messages HTTP/1.1\r\n" + H + b"Content-Length: 20000\r\n\r\n"
                                       + b"x" * 20000, 413),
    "body over cap (chunked)": (b"POST /v1/messages HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                                + (b"fa0\r\n" + b"x" * 4000 + b"\r\n") * 4 + b"0\r\n\r\n", 413),
    "head never finished": (b"GET /v1/models HTTP/1.1\r\n" + H + b"X-Slow: ", 408),
    "upgrade on a path that is not a WebSocket gate": (
        b"GET /v1/messages HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + fuzz.WS_KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n", 404),
}
FAULT_ENV = {"CCXRAY_MAX_BODY_MB": "0.01", "CCXRAY_HEADER_TIMEOUT_MS": "300", "CCXRAY_ALLOWED_HOSTS": "x"}


@pytest.mark.parametrize("name", list(CLIENT_FAULTS))
def test_malformed_request_gets_its_4xx_while_others_are_served(name, fake, make_proxy, proxy_log):
    data, status = CLIENT_FAULTS[name]
    proxy = make_proxy(**FAULT_ENV)
    with SteadyClient(proxy.port) as steady:
        raw = raw_exchange(proxy.port, data)
        assert statuses(raw)[:1] == [status], raw[:200]
        assert error_body(raw)["error"] == "proxy_error"
        assert statuses(raw_exchange(proxy.port, data)) == [status]  # and again: nothing was left behind
        steady.more()
    assert not steady.failures
    assert_recorded(proxy, steady.ok)
    assert_no_tracebacks(proxy_log)


def test_all_faults_at_once_while_others_are_served(fake, make_proxy, proxy_log):
    """Every malformed request on its own connection, all at the same time."""
    proxy = make_proxy(**FAULT_ENV)
    results: dict[str, bytes] = {}

    def fault(name: str) -> None:
        results[name] = raw_exchange(proxy.port, CLIENT_FAULTS[name][0])

    with SteadyClient(proxy.port) as steady:
        threads = [threading.Thread(target=fault, args=(name,), name=f"fault-{i}")
                   for i, name in enumerate(CLIENT_FAULTS)]
        for t in threads:
            t.start()
        steady.more()
        for t in threads:
            t.join()
        steady.more()
    got = {name: statuses(raw)[:1] for name, raw in results.items()}
    assert got == {name: [status] for name, (_, status) in CLIENT_FAULTS.items()}
    assert_recorded(proxy, steady.ok)
    assert_no_tracebacks(proxy_log)


def test_garbage_pipelined_after_a_valid_request(fake, make_proxy, proxy_log):
    proxy = make_proxy(CCXRAY_ALLOWED_HOSTS="x")
    valid = (b"POST /v1/messages?first HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(MSG)) + MSG
    raw = raw_exchange(proxy.port, valid + b"GARBAGE\r\n\r\n")
    assert statuses(raw) == [200, 400]
    line = one_line(proxy, "/v1/messages?first")
    assert line["status"] == 200 and line["error"] is None
    assert_no_tracebacks(proxy_log)


@pytest.mark.parametrize("after", [b"GARBAGE\r\n\r\n", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: "])
def test_error_after_a_pipelined_head_request_gets_its_4xx(after, fake, make_proxy, proxy_log):
    """An error answer after a pipelined HEAD keeps its body (it was framed as a HEAD answer: traceback)."""
    proxy = make_proxy(CCXRAY_HEADER_TIMEOUT_MS="300", CCXRAY_ALLOWED_HOSTS="x")
    head = b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % proxy.port
    raw = raw_exchange(proxy.port, head + after)
    assert statuses(raw) == [200, 400 if after.startswith(b"GARBAGE") else 408], raw
    assert_no_tracebacks(proxy_log)


def test_head_over_64_kib_gets_431(fake, make_proxy, proxy_log):
    """A 64-128 KiB head that arrives in two reads is over the cap too (h11 measures only incomplete heads)."""
    proxy = make_proxy(CCXRAY_KEEPALIVE_TIMEOUT_MS="200")
    for size in (70_000, 100_000, 125_000):
        data = (b"GET /_api/sessions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Big: " % proxy.port
                + b"a" * size + b"\r\n\r\n")
        assert statuses(raw_exchange(proxy.port, data))[:1] == [431], size


def test_dashboard_query_with_a_superscript_digit_gets_an_answer(proxy, proxy_log):
    """?limit=² passes str.isdigit() but not int(): it must not reach the connection's catch-all."""
    data = b"GET /_api/entries?limit=%%C2%%B2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % proxy.port
    assert statuses(raw_exchange(proxy.port, data)) in ([200], [400])
    assert_no_tracebacks(proxy_log)


# ---------------------------------------------------------------- broken upstreams


@pytest.mark.parametrize("mode,stream,status", [
    ("drop-mid-stream", False, 200),
    ("drop-mid-stream", True, 200),
    ("stall", False, 504),
    ("stall-body", False, 200),
    ("stall-body", True, 200),
])
def test_broken_fake_upstream(mode, stream, status, fake, make_proxy, proxy_log):
    proxy = make_proxy(CCXRAY_READ_TIMEOUT_MS="300")
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    url = f"/v1/messages?{mode}-{stream}"
    got, answer = post(proxy.port, url, {"x-fake-mode": mode}, body)
    assert got == status
    if status == 200:
        assert isinstance(answer, Exception), "a cut answer must never look complete"
    else:
        assert json.loads(answer)["error"] == "proxy_error"  # type: ignore[arg-type]
    line = one_line(proxy, url)
    assert line["status"] == status and line["error"]
    assert post(proxy.port, "/v1/messages?after")[0] == 200  # and the next call goes through
    assert_no_tracebacks(proxy_log)


class ScriptedUpstream:
    """A tiny raw-socket upstream: reads each request, writes ``answer``, then closes or resets."""

    def __init__(self, answer: bytes, reset: bool = False) -> None:
        self.answer = answer
        self.reset = reset
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._loop, name="scripted-upstream")

    def __enter__(self) -> "ScriptedUpstream":
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._wake_w.send(b"x")
        self._accept.join()
        for t in self._threads:
            t.join()
        for sock in (self.listener, self._wake_r, self._wake_w):
            sock.close()

    def _loop(self) -> None:
        while True:
            ready, _, _ = select.select([self.listener, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            sock, _ = self.listener.accept()
            thread = threading.Thread(target=self._serve, args=(sock,), name="scripted-upstream-conn")
            self._threads.append(thread)
            thread.start()

    def _read_request(self, sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        while length and len(body) < int(length.group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return head

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            self.requests.append(self._read_request(sock))
            sock.sendall(self.answer)
            if self.reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()


UPSTREAM_SCRIPTS = {
    # name: (bytes upstream answers before it closes, reset instead of FIN, what the client sees)
    "body shorter than Content-Length": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False, "cut"),
    "not HTTP at all": (b"SSH-2.0-OpenSSH_9.6\r\n", False, "502"),
    "binary junk": (bytes(range(256)), False, "502"),
    "closes without a byte": (b"", False, "502"),
    "resets without a byte": (b"", True, "502"),
    "bad status line": (b"HTTP/1.1 2OO OK\r\n\r\n", False, "502"),
    "space in a header name": (b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n", False, "502"),
    "conflicting Content-Length": (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                                   False, "502"),
    "bad chunk size": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", False, "cut or 502"),
    "head then reset": (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"f\r\ndata: {\"a\":1}\n\n\r\n", True, "cut"),
}


class OpenAISteadyClient(SteadyClient):
    """A steady client whose calls go to the fake (OpenAI route) while Anthropic's upstream is broken."""

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            status, body = post(self.port, f"/v1/responses?steady={number}", body=b'{"model":"gpt-5.5","input":"hi"}')
            if status == 200 and isinstance(body, bytes):
                self.ok.append(number)
            else:
                self.failures.append(f"steady {number}: {status} {body!r}")
            number += 1
            self._stop.wait(0.005)


@pytest.mark.parametrize("name", list(UPSTREAM_SCRIPTS))
def test_garbage_from_upstream(name, fake, make_proxy, proxy_log):
    answer, reset, expect = UPSTREAM_SCRIPTS[name]
    with ScriptedUpstream(answer, reset) as upstream:
        proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}")
        with OpenAISteadyClient(proxy.port) as steady:
            for attempt in range(2):
                url = f"/v1/messages?attempt={attempt}"
                status, body = post(proxy.port, url)
                if status == 502:
                    assert "502" in expect and json.loads(body)["error"] == "proxy_error"  # type: ignore[arg-type]
                else:
                    assert "cut" in expect and status == 200 and isinstance(body, Exception), (status, body)
                line = one_line(proxy, url)
                assert line["status"] == status and line["error"], line
            steady.more()
        assert len(upstream.requests) == 2
    assert_no_tracebacks(proxy_log)


WS_HANDSHAKE_SCRIPTS = {
    "not HTTP at all": (b"SSH-2.0-OpenSSH_9.6\r\n", False),
    "closes without a byte": (b"", False),
    "resets without a byte": (b"", True),
    "101 with a wrong accept key": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n",
                                    False),
    "101 without an accept key": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\n\r\n", False),
}


@pytest.mark.parametrize("name", list(WS_HANDSHAKE_SCRIPTS))
def test_garbage_answer_to_the_websocket_upgrade_gets_502(name, fake, make_proxy, proxy_log):
    answer, reset = WS_HANDSHAKE_SCRIPTS[name]
    with ScriptedUpstream(answer, reset) as upstream:
        proxy = make_proxy(OPENAI_BASE_URL=f"http://127.0.0.1:{upstream.port}/v1")
        raw = raw_exchange(proxy.port, fuzz.upgrade_request(proxy.port, "/v1/responses?shake"))
        assert statuses(raw) == [502] and error_body(raw)["error"] == "proxy_error", raw
        lines = proxy.wait_lines(lambda ls: any(l.get("kind") == "connection" for l in ls), what="the connection line")
        (conn,) = [l for l in lines if l.get("kind") == "connection"]
        assert conn["status"] == 502 and conn["error"] and conn["url"] == "/v1/responses?shake"
        assert post(proxy.port, "/v1/messages?after")[0] == 200  # Anthropic's route (the fake) is untouched
    assert_no_tracebacks(proxy_log)


# ---------------------------------------------------------------- WebSocket faults from the client


def frame(opcode: int, payload: bytes, **kw: Any) -> bytes:
    return fuzz.ws_frame(RNG, opcode, payload, **kw)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
WS_FAULTS = {
    # name: (bytes after the upgrade, close code the client must get)
    "reserved bit": (frame(TEXT, b"hi", rsv=4), 1002),
    "reserved opcode": (frame(0x3, b"hi"), 1002),
    "reserved control opcode": (frame(0xB, b""), 1002),
    "unmasked client frame": (frame(TEXT, b"hi", masked=False), 1002),
    "ping over 125 bytes": (frame(PING, b"p" * 126), 1002),
    "fragmented ping": (frame(PING, b"p", fin=False), 1002),
    "continuation without a start": (frame(CONT, b"orphan"), 1002),
    "new message inside a fragmented one": (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    "16-bit length for a short payload": (bytes([0x81, 0xFE, 0, 2]) + b"\0\0\0\0hi", 1002),
    "64-bit length with the top bit set": (bytes([0x82, 0xFF]) + (1 << 63 | 2).to_bytes(8, "big") + b"\0" * 6, 1002),
    "text that is not UTF-8": (frame(TEXT, b"caf\xc3\x28"), 1007),
    "fragment that is not UTF-8": (frame(TEXT, b"ok ", fin=False) + frame(CONT, b"\xed\xa0\x80"), 1007),
    "close with a 1-byte payload": (frame(CLOSE, b"\x03"), 1002),
    "close code 999": (frame(CLOSE, close_payload(999)), 1002),
    "close code 1005 on the wire": (frame(CLOSE, close_payload(1005)), 1002),
    "close code 1016": (frame(CLOSE, close_payload(1016)), 1002),
    "close code 5000": (frame(CLOSE, close_payload(5000)), 1002),
    "close reason that is not UTF-8": (frame(CLOSE, close_payload(1000, b"\xff\xfe")), 1007),
    "close over 125 bytes": (frame(CLOSE, close_payload(1000, b"r" * 124)), 1002),
}


def ws_until_close(port: int, target: str, data: bytes, first: bytes | None = None,
                   timeout: float = 10.0) -> tuple[list[bytes], int | None]:
    """Upgrade (fake in echo mode), optionally echo ``first``, send ``data``; texts echoed and close code got."""
    deadline = time.monotonic() + timeout
    sock, buf = fuzz.ws_open(port, deadline, target, "echo")
    texts: list[bytes] = []
    pending = [data] if first is None else [frame(TEXT, first), data]
    with sock:
        sock.sendall(pending.pop(0))
        while True:
            for f in fuzz.parse_server_frames(buf):
                assert not f.masked and not f.rsv, f
                if f.opcode == CLOSE:
                    return texts, int.from_bytes(f.payload[:2], "big") if len(f.payload) >= 2 else None
                if f.opcode == TEXT:
                    texts.append(f.payload)
            if pending and texts:  # the good message made the round trip: now the bad bytes
                sock.sendall(pending.pop(0))
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(65536)
            assert chunk, "the proxy closed the TCP connection without a close frame"
            buf += chunk


@pytest.mark.parametrize("mid_session", [False, True], ids=["first-frame", "mid-session"])
@pytest.mark.parametrize("name", list(WS_FAULTS))
def test_websocket_protocol_violation_from_client(name, mid_session, fake, proxy, proxy_log):
    data, code = WS_FAULTS[name]
    target = "/v1/responses?fault"
    texts, got = ws_until_close(proxy.port, target, data, first=b"before" if mid_session else None)
    assert got == code
    assert texts == ([b"before"] if mid_session else [])
    seen = fake.wait_for(lambda s: any(e.get("ws") and e.get("close") for e in s), 10, "upstream's close")
    (entry,) = [e for e in seen if e.get("ws")]
    assert entry["close"]["code"] == 1011
    lines = proxy.wait_lines(lambda ls: any(l.get("kind") == "connection" for l in ls), what="the connection line")
    (conn,) = [l for l in lines if l.get("kind") == "connection"]
    assert conn["url"] == target and conn["transport"] == "websocket"
    assert conn["close"]["side"] == "client" and conn["close"]["code"] == code
    assert conn["error"] and "violated" in conn["error"]
    assert conn["frameCounts"]["clientToUpstream"] == (1 if mid_session else 0)
    assert fuzz.ws_health(proxy.port, 1) is None  # the next session is fine
    assert_no_tracebacks(proxy_log)


# ---------------------------------------------------------------- a corrupt index


def good_line(number: int, now_ms: int) -> dict[str, Any]:
    return {"id": f"good{number}", "ts": "2026-01-01T00:00:0%dZ" % number, "receivedAt": now_ms + number,
            "kind": "call", "transport": "http", "sessionId": f"session-{number}", "sessionInferred": False,
            "provider": "anthropic", "agent": "claude", "method": "POST", "url": "/v1/messages",
            "status": 200, "elapsed": 12, "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 10, "output_tokens": 2}, "cost": None, "error": None}


BAD_LINES = [
    b"garbage",
    b"[1, 2, 3]",  # valid JSON, not an object
    b'"just a string"',
    b"42",
    b"null",
    b'{"id": "nul\x00inside"}',  # a raw NUL is not allowed in JSON
    b"\x00" + json.dumps({"id": "nul-first"}).encode(),
    b"\xff\xfe not UTF-8 \xc3\x28",
    b'{"id": "half", "usage": {"input_tok',
]
TORN = b'{"id": "torn", "ts": "2026-01-0'


def write_corrupt_index(home: Path, extra: bytes | None = None) -> list[str]:
    """An index with good lines among bad ones, blank lines and a torn last line; returns good ids."""
    now_ms = int(time.time() * 1000)
    good = [json.dumps(good_line(n, now_ms)).encode() for n in range(1, 4)]
    lines = [good[0], *BAD_LINES[:5], b"", b"   ", good[1], *BAD_LINES[5:], good[2]]
    if extra is not None:
        lines.insert(2, extra)
    logs = home / "logs"
    logs.mkdir(parents=True)
    (logs / "index.ndjson").write_bytes(b"\n".join(lines) + b"\n" + TORN)
    return [f"good{n}" for n in range(1, 4)]


def ccxray_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CCXRAY_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ccxray", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_corrupt_index_is_skipped_by_usage_and_tail(tmp_path):
    good = write_corrupt_index(tmp_path)
    usage = ccxray_cli(tmp_path, "usage", "--json")
    assert usage.returncode == 0 and "Traceback" not in usage.stderr, usage.stderr
    report = json.loads(usage.stdout)
    assert report["total"]["calls"] == 3 and report["total"]["input"] == 30
    assert set(report["bySession"]) == {"session-1", "session-2", "session-3"}
    recent = ccxray_cli(tmp_path, "usage", "--json", "--last", "1d")
    assert recent.returncode == 0 and json.loads(recent.stdout)["total"]["calls"] == 3, recent.stderr
    tail = ccxray_cli(tmp_path, "tail", "--no-follow", "--json", "-n", "100")
    assert tail.returncode == 0 and "Traceback" not in tail.stderr, tail.stderr
    assert [json.loads(l)["id"] for l in tail.stdout.splitlines()] == good
    human = ccxray_cli(tmp_path, "tail", "--no-follow", "-n", "100")
    assert human.returncode == 0 and "Traceback" not in human.stderr, human.stderr
    assert len(human.stdout.splitlines()) == 3


def test_corrupt_index_is_skipped_by_a_restarted_proxy(fake, make_proxy, tmp_path, proxy_log):
    home = tmp_path / "corrupt-home"
    write_corrupt_index(home)
    proxy = make_proxy(CCXRAY_HOME=str(home))
    stats = wait_until(lambda: proxy.server.app.restore_stats, 10, "the restore")
    assert stats.lines == 3 and stats.skipped == len(BAD_LINES) + 1  # + the torn last line
    assert {s["sessionId"] for s in proxy.server.app.sessions.list()} == {"session-1", "session-2", "session-3"}
    assert post(proxy.port, "/v1/messages?after-restart")[0] == 200
    line = one_line(proxy, "/v1/messages?after-restart")  # the torn line did not swallow it
    assert line["status"] == 200
    assert [l["id"] for l in proxy.lines()][:3] == ["good1", "good2", "good3"]
    assert_no_tracebacks(proxy_log)


PATHOLOGICAL = {
    "nested 100000 deep": b"[" * 100_000,
    "infinite token count": b'{"id": "inf", "usage": {"input_tokens": 1e999}}',
    "NaN token count": b'{"id": "nan", "usage": {"input_tokens": NaN}}',
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_index_line_is_skipped(name, fake, make_proxy, tmp_path, proxy_log):
    """Deep nesting (RecursionError) and NaN/infinite token counts: skipped or counted as 0 everywhere."""
    home = tmp_path / "home-pathological"
    write_corrupt_index(home, PATHOLOGICAL[name])
    problems = []
    for args in (("usage", "--json"), ("tail", "--no-follow", "-n", "100")):
        done = ccxray_cli(home, *args)
        if done.returncode != 0 or "Traceback" in done.stderr:
            problems.append(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    proxy = make_proxy(CCXRAY_HOME=str(home))
    assert proxy.server.recorder.flush(10)
    sessions = {s["sessionId"] for s in proxy.server.app.sessions.list()}
    if proxy.server.app.restore_stats is None or not {"session-1", "session-2", "session-3"} <= sessions:
        problems.append(f"restore: stats {proxy.server.app.restore_stats}, sessions {sorted(sessions)}")
    if proxy_log.proxy:
        problems.append(f"proxy logged {proxy_log.proxy}")
    assert not problems, problems


def test_usage_last_skips_a_line_with_a_non_numeric_time(tmp_path):
    """usage --last must not compare a string receivedAt with its cutoff."""
    write_corrupt_index(tmp_path, b'{"id": "odd", "receivedAt": "yesterday", "usage": {"input_tokens": 1}}')
    done = ccxray_cli(tmp_path, "usage", "--json", "--last", "1d")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"]["calls"] == 3


# ---------------------------------------------------------------- a recorder that cannot write


def test_unwritable_home_is_reported_once_and_traffic_flows(fake, make_proxy, tmp_path, proxy_log):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("not a directory")
    proxy = make_proxy(CCXRAY_HOME=str(blocker))
    for n in range(3):
        status, body = post(proxy.port, f"/v1/messages?n={n}")
        assert status == 200 and isinstance(body, bytes) and json.loads(body)
    assert fuzz.ws_health(proxy.port, 7) is None
    assert proxy.server.recorder.flush(10)
    recorder = proxy.server.recorder
    assert recorder.failures >= 4  # three calls and a WebSocket connection were not written
    assert len(proxy_log.proxy) == 1 and "recording failed" in proxy_log.proxy[0], proxy_log.proxy
    before = recorder.failures  # the WebSocket's relay may still hand over its close, one more failure
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request("GET", "/_api/health")  # what the user can see of it besides stderr
        health = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert before <= health["failures"] <= recorder.failures and "Error" in health["lastFailure"], health
    assert blocker.read_text() == "not a directory"


# ---------------------------------------------------------------- the fuzz harness


def test_short_fuzz_run(tmp_path):
    report = fuzz.run_fuzz(seconds=25, seed=1337, count=200, workers=16, check_every=25, home=tmp_path / "fuzz")
    assert report.sent == 200, report.summary()
    assert report.ok, report.summary()
    assert report.health_checks == 8
    assert sum(n for kind, n in report.outcomes.items() if kind.startswith("status 4")) > 50, report.summary()
    assert sum(n for kind, n in report.outcomes.items() if kind.startswith("ws close 100")) > 20, report.summary()
