"""A bounded fuzz harness for ccxray: garbage in, a 4xx/5xx or a close out, never a traceback.

Usage::

    python tools/fuzz.py [--seconds 30] [--seed N] [--count N] [--workers 8]
                         [--check-every 25] [--only INDEX] [-v]

Theory of operation
-------------------
* One in-process stack (:class:`Stack`): ``tools.fake_upstream.FakeUpstream``
  and a ``ccxray.server.ProxyServer``, both on 127.0.0.1 port 0, the proxy's
  ``CCXRAY_HOME`` in a temporary directory and its timeouts shortened
  (:data:`STACK_ENV`) so an input that leaves a connection half done ends in
  well under the per-input deadline.
* Input ``i`` is derived from ``(seed, i)`` alone (``random.Random``), so a
  failing input replays with ``--seed S --only i`` whatever ran around it.
  Each input is one fresh TCP connection: either a mutated HTTP/1.1 request
  (bit flips, truncation, huge/duplicate/invalid headers, bad chunked
  framing, bad Content-Length, pipelined garbage, ...) or, after a valid
  upgrade to ``/v1/responses`` (``x-fake-mode: echo``), mutated WebSocket
  bytes (random bytes, reserved bits and opcodes, unmasked client frames,
  oversized or fragmented control frames, bad UTF-8, bad close payloads).
* Inputs run on ``workers`` threads, at most ``2 * workers`` in flight, so
  the proxy serves many at once; every ``check_every`` inputs a
  well-behaved HTTP call and a well-behaved WebSocket session go in among
  them and must succeed (a health check), and one more after the last
  input. Each health call must have its index line: the proxy loses nothing.
* Violations: an input that gets neither a status line, a close frame nor
  a closed connection within :data:`DEADLINE_S`; bytes that are not HTTP
  or not server WebSocket frames; a close code that must never be sent; a
  targeted input answered other than its :attr:`Case.expect`; a failed
  health check or a health call missing from the index; a ``ccxray``
  log record at ERROR or with a traceback; threads left after ``stop()``.
  The fake upstream's own log records are counted and shown, not judged:
  the fake is a test tool, and some requests the proxy rightly forwards
  (``CONNECT``, say) are outside what it scripts.

Reusable from tests: ``run_fuzz(count=200, seed=1, seconds=30)`` returns a
:class:`Report` (``report.ok``, ``report.violations``, ``report.summary()``).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import random
import re
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ccxray.config import load_settings  # noqa: E402
from ccxray.server import ProxyServer  # noqa: E402
from ccxray.store import read_index  # noqa: E402
from tools.fake_upstream import FakeUpstream  # noqa: E402

DEADLINE_S = 6.0  # an input must be answered or closed within this
RECV_BYTES = 65536
HEAD_LIMIT_BYTES = 64 * 1024  # ccxray's request head cap (431 past it)
OVERSIZE_MIN_BYTES = HEAD_LIMIT_BYTES + 1  # targeted oversize inputs start right past the cap
MAX_BODY_MB = 1
STACK_ENV = {
    "CCXRAY_MAX_BODY_MB": str(MAX_BODY_MB),
    "CCXRAY_READ_TIMEOUT_MS": "1000",  # also bounds a client's body (408)
    "CCXRAY_CONNECT_TIMEOUT_MS": "2000",
    "CCXRAY_HEADER_TIMEOUT_MS": "300",
    "CCXRAY_KEEPALIVE_TIMEOUT_MS": "200",
    "CCXRAY_WS_IDLE_TIMEOUT_MS": "600",
    "CCXRAY_WS_MAX_QUEUE_BYTES": "65536",
    "CCXRAY_SHUTDOWN_GRACE_MS": "2000",
}
MSG = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "say hi"}]}).encode()
WS_KEY = base64.b64encode(b"ccxray-fuzz-key!").decode()
SENDABLE_CLOSE = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))
INVALID_CLOSE = (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
RESERVED_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc0\xaf")


# ---------------------------------------------------------------- the stack


class ErrorLog(logging.Handler):
    """Counts ``ccxray`` log records at ERROR or carrying a traceback, by origin."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.proxy: list[str] = []
        self.fake: list[str] = []
        self.first_traceback = ""
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not (record.exc_info or record.levelno >= logging.ERROR):
            return
        text = f"{record.name}: {record.getMessage()}"
        from_fake = record.name.startswith("ccxray.fake_upstream")
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        with self._lock:
            (self.fake if from_fake else self.proxy).append(text)
            if record.exc_info and not from_fake and not self.first_traceback:
                self.first_traceback = logging.Formatter().formatException(record.exc_info)


class Stack:
    """Fake upstream + proxy on loopback, with an :class:`ErrorLog` on the ``ccxray`` logger."""

    def __init__(self, home: Path, **extra_env: str) -> None:
        self.home = home
        self.extra_env = extra_env
        self.errors = ErrorLog()
        self.fake = FakeUpstream()
        self.server: ProxyServer | None = None
        self._logger = logging.getLogger("ccxray")
        self._old_level = self._logger.level

    @property
    def port(self) -> int:
        assert self.server is not None, "stack not started"
        return self.server.port

    def start(self) -> "Stack":
        self._logger.addHandler(self.errors)
        if self._logger.getEffectiveLevel() > logging.ERROR:
            self._logger.setLevel(logging.ERROR)
        self.fake.start()
        env = {
            "ANTHROPIC_BASE_URL": self.fake.base_url,
            "OPENAI_BASE_URL": self.fake.base_url + "/v1",
            "CHATGPT_BASE_URL": self.fake.base_url + "/backend-api/codex",
            "CCXRAY_HOME": str(self.home),
            **STACK_ENV,
            **self.extra_env,
        }
        try:
            self.server = ProxyServer(load_settings(env, port=0)).start()
        except BaseException:
            self.fake.stop()
            self._logger.removeHandler(self.errors)
            raise
        return self

    def stop(self) -> None:
        try:
            if self.server is not None:
                self.server.stop(grace_s=2)
        finally:
            self.fake.stop()
            self._logger.removeHandler(self.errors)
            self._logger.setLevel(self._old_level)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One input: bytes for a fresh connection (``ws``: sent after a valid upgrade)."""

    kind: str
    data: bytes
    ws: bool = False
    half_close: bool = False      # shut our write side after sending (HTTP only)
    expect: frozenset[str] | None = None  # outcome kinds a targeted input must get


def _request(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1"] + [n + b": " + v for n, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _chunked(body: bytes, sizes: Iterable[int]) -> bytes:
    out, pos = bytearray(), 0
    for size in sizes:
        piece = body[pos:pos + size]
        pos += len(piece)
        if piece:
            out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    if pos < len(body):
        out += b"%x\r\n" % (len(body) - pos) + body[pos:] + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def valid_requests(port: int) -> dict[str, bytes]:
    """Well-formed requests that the mutators start from."""
    host = b"127.0.0.1:%d" % port
    base = [(b"Host", host), (b"User-Agent", b"ccxray-fuzz")]
    json_h = base + [(b"Content-Type", b"application/json"), (b"x-fake-mode", b"echo")]
    stream = json.dumps({"model": "gpt-5.5", "stream": True, "input": "hi"}).encode()
    return {
        "post-json": _request(b"POST", b"/v1/messages", json_h + [(b"Content-Length", b"%d" % len(MSG))], MSG),
        "post-chunked": _request(b"POST", b"/v1/messages?beta=true",
                                 json_h + [(b"Transfer-Encoding", b"chunked")], _chunked(MSG, (7, 13))),
        "post-sse": _request(b"POST", b"/v1/responses", base + [(b"x-fake-mode", b"sse:3"),
                             (b"Content-Length", b"%d" % len(stream))], stream),
        "get-models": _request(b"GET", b"/v1/models", base),
        "head-root": _request(b"HEAD", b"/", base),
        "api-sessions": _request(b"GET", b"/_api/sessions", base),
        "api-entry": _request(b"GET", b"/_api/entries/does-not-exist", base),
        "api-entries": _request(b"GET", b"/_api/entries?limit=20&session=s1", base),
        "ws-upgrade": _request(b"GET", b"/v1/responses", base + [
            (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", WS_KEY.encode()),
            (b"Sec-WebSocket-Version", b"13"), (b"x-fake-mode", b"echo")]),
    }


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    return head + sep, body


def _with_header(data: bytes, line: bytes) -> bytes:
    """Insert a header line right after the request line."""
    first, _, rest = data.partition(b"\r\n")
    return first + b"\r\n" + line + b"\r\n" + rest


def _bit_flips(rng: random.Random, data: bytes, lo: int = 0, hi: int | None = None) -> bytes:
    buf = bytearray(data)
    hi = len(buf) if hi is None else hi
    for _ in range(rng.randint(1, 8)):
        if hi > lo:
            buf[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _token_noise(rng: random.Random) -> bytes:
    return rng.choice([b"(", b")", b" ", b"@", b"\x00", b"\x7f", b"\xff", b"{", b"\t", b"/", b"\"", b"="])


HttpMutator = Callable[[random.Random, bytes], tuple[bytes, "frozenset[str] | None"]]


def _m_bitflip(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return _bit_flips(rng, data), None


def _m_head_bitflip(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    head, _ = _split_head(data)
    return _bit_flips(rng, data, 0, max(len(head) - 4, 1)), None


def _m_truncate(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return data[:rng.randrange(len(data))], None


def _m_splice(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(buf) + 1)
        op = rng.randrange(3)
        if op == 0:
            buf[at:at] = _random_bytes(rng, rng.randint(1, 32))
        elif op == 1:
            del buf[at:at + rng.randint(1, 16)]
        else:
            buf[at:at] = buf[at:at + rng.randint(1, 64)]
    return bytes(buf), None


def _m_huge_header(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    size = OVERSIZE_MIN_BYTES + rng.randint(0, 200_000)
    return _with_header(data, b"X-Huge: " + b"a" * size), frozenset({"status 431"})


def _m_many_headers(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    lines = b"\r\n".join(b"X-Many-%d: %d" % (i, i) for i in range(OVERSIZE_MIN_BYTES // 12))
    return _with_header(data, lines), frozenset({"status 431"})


def _m_huge_target(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    first, sep, rest = data.partition(b" ")
    target = b"/v1/" + b"x" * (OVERSIZE_MIN_BYTES + rng.randint(0, 10_000))
    return first + sep + target + rest, frozenset({"status 431"})


def _m_duplicate_header(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    head, body = _split_head(data)
    lines = head.split(b"\r\n")
    pick = rng.randrange(1, max(len(lines) - 2, 2))
    lines.insert(pick, lines[pick])
    return b"\r\n".join(lines) + body, None


def _m_conflicting_length(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return _with_header(_with_header(data, b"Content-Length: 3"), b"Content-Length: 4"), frozenset({"status 400"})


def _m_invalid_header_name(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    name = b"X-B" + _token_noise(rng) + b"ad"
    return _with_header(data, name + b": v"), frozenset({"status 400"})


def _m_invalid_header_value(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    bad = rng.choice([b"\x00", b"\r", b"\x0b"])  # h11 lets other controls through (RFC 9110 5.5 allows it)
    return _with_header(data, b"X-Value: a" + bad + b"b"), frozenset({"status 400"})


def _m_bad_content_length(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    value = rng.choice([b"-1", b"abc", b"1.5", b"0x10", b"", b"1 2", b"+5", b"\xb2", b"5,6"])
    return _with_header(data, b"Content-Length: " + value), frozenset({"status 400"})


def _m_wrong_content_length(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    head, body = _split_head(data)
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith((b"content-length", b"transfer-encoding"))]
    head = b"\r\n".join(l for l in lines if l) + b"\r\n"
    n = max(len(body) + rng.randint(-len(body), 64), 0)
    return head + b"Content-Length: %d\r\n\r\n" % n + body, None


def _m_body_over_cap(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    size = MAX_BODY_MB * 1024 * 1024 + rng.randint(1, 10**9)
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Content-Length", b"%d" % size)])
    return req + b"{", frozenset({"status 413"})


def _m_bad_chunk(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    size = rng.choice([b"zz", b"-1", b"1 2", b"0x5", b"", b"\xff"])  # h11 reads chunk extensions loosely
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")])
    return req + size + b"\r\nhello\r\n0\r\n\r\n", frozenset({"status 400"})


def _m_bad_chunk_framing(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")])
    return req + b"3\r\nhelloXX\r\n0\r\n\r\n", frozenset({"status 400"})


def _m_unknown_coding(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    coding = rng.choice([b"gzip", b"chunked, gzip", b"identity", b"x-fuzz"])
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Transfer-Encoding", coding)])
    return req + b"{}", frozenset({"status 501"})


def _m_bad_request_line(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    first, sep, rest = data.partition(b"\r\n")
    line = rng.choice([
        b"GET", b"GET /v1/models", b"G\x00T /v1/models HTTP/1.1", b"GET /v1/models HTTP/1.1 extra",
        b"GET\t/v1/models\tHTTP/1.1", b"GET /v1/mo dels HTTP/1.1", b"GET /v1/models HTTP/x.y",
        b" GET /v1/models HTTP/1.1", b"GET /v1/models\x7f HTTP/1.1", b"GE(T /v1/models HTTP/1.1",
    ])
    return line + sep + rest, frozenset({"status 400", "status 505"})


ODD_QUERIES = (b"limit=%C2%B2", b"limit=-1", b"limit=0", b"limit=1e3", b"limit=99999999999999999999",
               b"session=%ff%fe", b"session=%00", b"%zz", b"a=%", b"&&&", b"token=", b"token=%ff", b"=x",
               b"session=" + b"s" * 3000, b"limit=%D9%A3", b"limit=%EF%BC%95")


def _m_odd_query(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    first, sep, rest = data.partition(b"\r\n")
    method, _, target = first.partition(b" ")
    path, _, version = target.rpartition(b" ")
    path = path.partition(b"?")[0]
    query = b"&".join(rng.sample(ODD_QUERIES, rng.randint(1, 3)))
    return method + b" " + path + b"?" + query + b" " + version + sep + rest, None


def _m_pipelined_garbage(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    garbage = rng.choice([_random_bytes(rng, rng.randint(1, 512)), b"GARBAGE\r\n\r\n", b"\r\n\r\n\x00\x00",
                          b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: \x00\r\n\r\n"])
    return data + garbage, None


def _m_pipelined_twice(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return data + data, None


HTTP_MUTATORS: dict[str, tuple[HttpMutator, int]] = {  # name -> (mutator, weight)
    "bitflip": (_m_bitflip, 6),
    "head-bitflip": (_m_head_bitflip, 6),
    "truncate": (_m_truncate, 5),
    "splice": (_m_splice, 5),
    "huge-header": (_m_huge_header, 1),
    "many-headers": (_m_many_headers, 1),
    "huge-target": (_m_huge_target, 1),
    "duplicate-header": (_m_duplicate_header, 2),
    "conflicting-content-length": (_m_conflicting_length, 2),
    "invalid-header-name": (_m_invalid_header_name, 2),
    "invalid-header-value": (_m_invalid_header_value, 2),
    "bad-content-length": (_m_bad_content_length, 2),
    "wrong-content-length": (_m_wrong_content_length, 2),
    "body-over-cap": (_m_body_over_cap, 1),
    "bad-chunk-size": (_m_bad_chunk, 2),
    "bad-chunk-framing": (_m_bad_chunk_framing, 1),
    "unknown-transfer-coding": (_m_unknown_coding, 1),
    "bad-request-line": (_m_bad_request_line, 2),
    "odd-query": (_m_odd_query, 3),
    "pipelined-garbage": (_m_pipelined_garbage, 3),
    "pipelined-twice": (_m_pipelined_twice, 1),
}


def http_case(rng: random.Random, port: int) -> Case:
    """A mutated request (or pure random bytes) for a fresh connection."""
    if rng.random() < 0.06:
        return Case("random-bytes", _random_bytes(rng, rng.randint(1, 4096)), half_close=rng.random() < 0.5)
    base_name, base = rng.choice(sorted(valid_requests(port).items()))
    names = sorted(HTTP_MUTATORS)
    name = rng.choices(names, weights=[HTTP_MUTATORS[n][1] for n in names])[0]
    data, expect = HTTP_MUTATORS[name][0](rng, base)
    return Case(f"http {name} ({base_name})", data, half_close=rng.random() < 0.4, expect=expect)


# -- WebSocket frames


def ws_frame(rng: random.Random, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0,
             masked: bool = True, length: int | None = None, wide: bool = False) -> bytes:
    """One client frame; ``length`` overrides the declared length, ``wide`` forces 64-bit length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF
    mbit = 0x80 if masked else 0
    if wide or n > 0xFFFF:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    elif n > 125:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | n])
    if not masked:
        return head + payload
    key = _random_bytes(rng, 4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def _ws_text(rng: random.Random, fin: bool = True) -> bytes:
    return ws_frame(rng, OPCODE_TEXT, b"hello %d" % rng.randrange(1000), fin=fin)


def _w_random(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    data = _random_bytes(rng, rng.randint(1, 2048))
    if rng.random() < 0.5:
        data += ws_frame(rng, OPCODE_CLOSE, _close_payload(1000))
    return data, None


def _w_mutated_valid(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    frames = [_ws_text(rng), ws_frame(rng, OPCODE_BINARY, _random_bytes(rng, rng.randint(0, 300))),
              ws_frame(rng, OPCODE_PING, b"p"), _ws_text(rng, fin=False) + ws_frame(rng, 0x0, b"tail")]
    data = b"".join(rng.sample(frames, rng.randint(1, len(frames))))
    data = _bit_flips(rng, data) if rng.random() < 0.7 else data[:rng.randrange(1, len(data))]
    return data + ws_frame(rng, OPCODE_CLOSE, _close_payload(1000)), None


def _w_reserved_bits(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, OPCODE_TEXT, b"hi", rsv=rng.randint(1, 7)), frozenset({"ws close 1002"})


def _w_reserved_opcode(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, rng.choice(RESERVED_OPCODES), b"hi"), frozenset({"ws close 1002"})


def _w_unmasked(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, rng.choice((OPCODE_TEXT, OPCODE_BINARY, OPCODE_PING)), b"hi", masked=False), \
        frozenset({"ws close 1002"})


def _w_oversized_control(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    opcode = rng.choice((OPCODE_PING, OPCODE_PONG, OPCODE_CLOSE))
    payload = _close_payload(1000, b"r" * 200) if opcode == OPCODE_CLOSE else b"x" * rng.randint(126, 400)
    return ws_frame(rng, opcode, payload), frozenset({"ws close 1002"})


def _w_fragmented_control(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, rng.choice((OPCODE_PING, OPCODE_PONG)), b"p", fin=False), frozenset({"ws close 1002"})


def _w_bad_utf8_text(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    bad = b"ok " + rng.choice(BAD_UTF8) + b" more"
    if rng.random() < 0.5:
        return ws_frame(rng, OPCODE_TEXT, bad), frozenset({"ws close 1007"})
    return ws_frame(rng, OPCODE_TEXT, b"start ", fin=False) + ws_frame(rng, 0x0, bad), frozenset({"ws close 1007"})


def _w_bad_close(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    pick = rng.randrange(3)
    if pick == 0:
        return ws_frame(rng, OPCODE_CLOSE, b"\x03"), frozenset({"ws close 1002"})
    if pick == 1:
        return ws_frame(rng, OPCODE_CLOSE, _close_payload(rng.choice(INVALID_CLOSE))), frozenset({"ws close 1002"})
    return ws_frame(rng, OPCODE_CLOSE, _close_payload(1000, rng.choice(BAD_UTF8))), frozenset({"ws close 1007"})


def _w_valid_close(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    code = rng.choice(sorted(SENDABLE_CLOSE - {1014}))
    return ws_frame(rng, OPCODE_CLOSE, _close_payload(code, b"bye")), frozenset({f"ws close {code}"})


def _w_bad_sequence(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    if rng.random() < 0.5:  # a continuation with nothing to continue
        return ws_frame(rng, 0x0, b"orphan"), frozenset({"ws close 1002"})
    return _ws_text(rng, fin=False) + _ws_text(rng), frozenset({"ws close 1002"})  # new message mid-message


def _w_bad_length(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    if rng.random() < 0.5:  # a 16-bit length for a payload that fits in 7 bits
        b0, key = 0x80 | OPCODE_TEXT, _random_bytes(rng, 4)
        return bytes([b0, 0x80 | 126, 0, 5]) + key + bytes(c ^ key[i % 4] for i, c in enumerate(b"hello")), \
            frozenset({"ws close 1002"})
    return bytes([0x80 | OPCODE_BINARY, 0x80 | 127]) + (1 << 63 | 5).to_bytes(8, "big") + b"\0" * 9, \
        frozenset({"ws close 1002"})


WsMutator = Callable[[random.Random], tuple[bytes, "frozenset[str] | None"]]
WS_MUTATORS: dict[str, tuple[WsMutator, int]] = {
    "random-bytes": (_w_random, 4),
    "mutated-valid": (_w_mutated_valid, 4),
    "reserved-bits": (_w_reserved_bits, 1),
    "reserved-opcode": (_w_reserved_opcode, 1),
    "unmasked": (_w_unmasked, 1),
    "oversized-control": (_w_oversized_control, 1),
    "fragmented-control": (_w_fragmented_control, 1),
    "bad-utf8": (_w_bad_utf8_text, 1),
    "bad-close": (_w_bad_close, 2),
    "valid-close": (_w_valid_close, 1),
    "bad-sequence": (_w_bad_sequence, 1),
    "bad-length": (_w_bad_length, 1),
}


def ws_case(rng: random.Random) -> Case:
    """Bytes to send on an upgraded /v1/responses (echo) connection."""
    names = sorted(WS_MUTATORS)
    name = rng.choices(names, weights=[WS_MUTATORS[n][1] for n in names])[0]
    data, expect = WS_MUTATORS[name][0](rng)
    if expect is not None and rng.random() < 0.3:  # a good message first: the violation comes mid-session
        data = _ws_text(rng) + data
    return Case(f"ws {name}", data, ws=True, expect=expect)


def make_case(seed: int, index: int, port: int) -> Case:
    """Input number ``index`` of run ``seed``; depends on nothing else."""
    rng = random.Random(f"ccxray-fuzz:{seed}:{index}")
    return ws_case(rng) if rng.random() < 0.3 else http_case(rng, port)


# ---------------------------------------------------------------- running one input


@dataclass(frozen=True)
class Outcome:
    """What the proxy did; a ``kind`` starting with ``!`` is a violation by itself."""

    kind: str
    detail: str = ""

    @property
    def is_violation(self) -> bool:
        return self.kind.startswith("!")


def _connect(port: int, deadline: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=max(deadline - time.monotonic(), 0.1))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv(sock: socket.socket, deadline: float) -> bytes | None:
    """Bytes, b"" at EOF, None when the deadline passed. A reset counts as EOF."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    sock.settimeout(left)
    try:
        return sock.recv(RECV_BYTES)
    except socket.timeout:
        return None
    except ConnectionError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    """sendall; False if the proxy already closed (it may answer and close before reading all)."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _status_of(buf: bytes) -> int | None:
    if len(buf) < 12 or not buf.startswith(b"HTTP/1.1 ") or not buf[9:12].isdigit() or buf[12:13] not in (b" ", b"\r"):
        return None
    return int(buf[9:12])


def run_http(port: int, case: Case, deadline_s: float = DEADLINE_S) -> Outcome:
    """Send one HTTP input; read until the proxy closes (or a 101 arrives)."""
    deadline = time.monotonic() + deadline_s
    with _connect(port, deadline) as sock:
        sent = _send(sock, case.data)
        if sent and case.half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        buf = bytearray()
        while True:
            chunk = _recv(sock, deadline)
            if chunk is None:
                status = _status_of(bytes(buf))
                return Outcome("!timeout", f"no close within {deadline_s:g}s after "
                                           f"{'status %s' % status if status else repr(bytes(buf[:60]))}")
            buf += chunk
            if len(buf) >= 12 and _status_of(bytes(buf)) is None:
                return Outcome("!garbage", repr(bytes(buf[:80])))
            if not chunk or (_status_of(bytes(buf)) == 101 and b"\r\n\r\n" in buf):
                break
    if not buf:
        return Outcome("close")
    status = _status_of(bytes(buf))
    if status is None:
        return Outcome("!garbage", repr(bytes(buf[:80])))
    return Outcome(f"status {status}")


@dataclass
class ServerFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes


def parse_server_frames(buf: bytearray) -> list[ServerFrame]:
    """Take every complete frame off the front of ``buf`` (what is left is incomplete)."""
    frames: list[ServerFrame] = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, pos = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, pos = int.from_bytes(buf[2:10], "big"), 10
        masked = bool(b1 & 0x80)
        pos += 4 if masked else 0
        if len(buf) < pos + n:
            break
        frames.append(ServerFrame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, bytes(buf[pos:pos + n])))
        del buf[:pos + n]
    return frames


def upgrade_request(port: int, target: str = "/v1/responses", mode: str = "echo") -> bytes:
    return _request(b"GET", target.encode(), [
        (b"Host", b"127.0.0.1:%d" % port), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", WS_KEY.encode()), (b"Sec-WebSocket-Version", b"13"),
        (b"x-fake-mode", mode.encode())])


def ws_open(port: int, deadline: float, target: str = "/v1/responses",
            mode: str = "echo") -> tuple[socket.socket, bytearray]:
    """A raw socket past a 101 from the proxy, and the bytes that came after it.

    Raises ConnectionError if the proxy did not answer 101 in time.
    """
    sock = _connect(port, deadline)
    try:
        if not _send(sock, upgrade_request(port, target, mode)):
            raise ConnectionError("proxy closed during the upgrade request")
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = _recv(sock, deadline)
            if not chunk:
                raise ConnectionError(f"no 101 from the proxy: {bytes(buf[:80])!r}")
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        if _status_of(head + b"\r\n") != 101:
            raise ConnectionError(f"upgrade refused: {head[:80]!r}")
        return sock, bytearray(rest)
    except BaseException:
        sock.close()
        raise


def _judge_frame(frame: ServerFrame) -> Outcome | None:
    """A close (or bad) server frame ends the input; data frames go on."""
    if frame.masked or frame.rsv or frame.opcode in RESERVED_OPCODES:
        return Outcome("!garbage", f"bad server frame: masked={frame.masked} rsv={frame.rsv} op={frame.opcode:#x}")
    if frame.opcode != OPCODE_CLOSE:
        return None
    if not frame.payload:
        return Outcome("ws close (no status)")
    if len(frame.payload) == 1:
        return Outcome("!garbage", "close frame with a 1-byte payload")
    code = int.from_bytes(frame.payload[:2], "big")
    try:
        frame.payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return Outcome("!garbage", f"close {code} with a reason that is not UTF-8")
    if code not in SENDABLE_CLOSE:
        return Outcome("!bad-close-code", f"proxy sent close code {code}")
    return Outcome(f"ws close {code}")


def run_ws(port: int, case: Case, deadline_s: float = DEADLINE_S) -> Outcome:
    """Upgrade, send the input, read frames until a close frame, EOF or the deadline."""
    deadline = time.monotonic() + deadline_s
    try:
        sock, buf = ws_open(port, deadline)
    except ConnectionError as exc:
        return Outcome("!handshake", str(exc))
    with sock:
        _send(sock, case.data)
        while True:
            for frame in parse_server_frames(buf):
                judged = _judge_frame(frame)
                if judged is not None:
                    return judged
            chunk = _recv(sock, deadline)
            if chunk is None:
                return Outcome("!timeout", f"no close frame or EOF within {deadline_s:g}s")
            if not chunk:
                return Outcome("ws eof") if not buf else Outcome("!garbage", f"torn frame {bytes(buf[:40])!r}")
            buf += chunk


def run_case(port: int, case: Case, deadline_s: float = DEADLINE_S) -> Outcome:
    """Run one input; an outcome outside ``case.expect`` becomes ``!unexpected``."""
    try:
        outcome = run_ws(port, case, deadline_s) if case.ws else run_http(port, case, deadline_s)
    except OSError as exc:
        return Outcome("!connect", repr(exc))
    if case.expect is not None and not outcome.is_violation and outcome.kind not in case.expect:
        return Outcome("!unexpected", f"got {outcome.kind}, expected one of {sorted(case.expect)}")
    return outcome


# ---------------------------------------------------------------- health checks


def http_health(port: int, number: int, timeout_s: float = DEADLINE_S) -> str | None:
    """A normal call through the proxy; None if it succeeded, else what went wrong."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", f"/v1/messages?fuzz_health={number}", body=MSG,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return f"HTTP health call {number}: status {resp.status} {body[:80]!r}"
        json.loads(body)
        return None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"HTTP health call {number} failed: {exc!r}"
    finally:
        conn.close()


def ws_health(port: int, number: int, timeout_s: float = DEADLINE_S) -> str | None:
    """A normal WebSocket session (echo one text, close 1000); None if it went right."""
    deadline = time.monotonic() + timeout_s
    rng = random.Random(number)
    text = b"health %d" % number
    try:
        sock, buf = ws_open(port, deadline, f"/v1/responses?fuzz_health={number}")
    except (ConnectionError, OSError) as exc:
        return f"WebSocket health {number}: {exc}"
    with sock:
        _send(sock, ws_frame(rng, OPCODE_TEXT, text))
        seen: list[ServerFrame] = []
        closing = False
        while True:
            seen += parse_server_frames(buf)
            if not closing and any(f.opcode == OPCODE_TEXT and f.payload == text for f in seen):
                closing = _send(sock, ws_frame(rng, OPCODE_CLOSE, _close_payload(1000)))
            closes = [f for f in seen if f.opcode == OPCODE_CLOSE]
            if closes:
                code = int.from_bytes(closes[0].payload[:2], "big") if len(closes[0].payload) >= 2 else None
                if closing and code == 1000:
                    return None
                return f"WebSocket health {number}: close {code} (echo seen: {closing})"
            chunk = _recv(sock, deadline)
            if not chunk:
                return f"WebSocket health {number}: {'timeout' if chunk is None else 'EOF'} (echo seen: {closing})"
            buf += chunk


def missing_health_lines(logs_dir: Path, http_numbers: Iterable[int], ws_numbers: Iterable[int]) -> list[str]:
    """Health calls that have no (correct) index line: the proxy must lose nothing."""
    by_url: dict[str, list[dict[str, object]]] = {}
    for line in read_index(logs_dir / "index.ndjson"):
        by_url.setdefault(str(line.get("url")), []).append(line)
    problems = []
    for n in http_numbers:
        lines = by_url.get(f"/v1/messages?fuzz_health={n}", [])
        if len(lines) != 1 or lines[0].get("status") != 200 or lines[0].get("error"):
            problems.append(f"HTTP health call {n}: index lines {lines!r}")
    for n in ws_numbers:
        conns = [l for l in by_url.get(f"/v1/responses?fuzz_health={n}", []) if l.get("kind") == "connection"]
        close = conns[0].get("close") if len(conns) == 1 else None
        if not isinstance(close, dict) or close.get("code") != 1000:
            problems.append(f"WebSocket health {n}: connection lines {conns!r}")
    return problems


# ---------------------------------------------------------------- the run


@dataclass
class Report:
    """What a fuzz run did and found."""

    seed: int
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    health_checks: int = 0
    tracebacks: list[str] = field(default_factory=list)
    fake_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations and not self.tracebacks

    def summary(self) -> str:
        rows = [f"ccxray fuzz: seed {self.seed}, {self.sent} inputs in {self.seconds:.1f}s, "
                f"{self.health_checks} health checks",
                "outcomes:"]
        buckets: Counter[str] = Counter()
        for kind, count in self.outcomes.items():
            app_close = kind.startswith("ws close ") and kind[9:].isdigit() and int(kind[9:]) >= 3000
            buckets["ws close 3000-4999" if app_close else kind] += count
        rows += [f"  {kind:<28} {count}" for kind, count in sorted(buckets.items())]
        rows.append(f"tracebacks: {len(self.tracebacks)}")
        rows += [f"  {n:>5} x {sig}" for sig, n in Counter(map(_signature, self.tracebacks)).most_common()]
        if self.fake_errors:
            rows.append(f"fake upstream errors (not judged): {len(self.fake_errors)}")
            rows += [f"  {n:>5} x {sig[:160]}" for sig, n in Counter(map(_signature, self.fake_errors)).most_common(3)]
        rows.append(f"violations: {len(self.violations)}")
        rows += [f"  {v}" for v in self.violations[:30]]
        rows.append("OK" if self.ok else "FAILED")
        return "\n".join(rows)


def _signature(record_text: str) -> str:
    """A log record without what varies per connection (addresses, ids, payloads)."""
    text = re.sub(r"\('127\.0\.0\.1', \d+\)", "(...)", record_text)
    text = re.sub(r"conn \d+", "conn N", text)
    return re.sub(r"data=(b?)(['\"]).*?\2, frame_finished", r"data=\1..., frame_finished", text)


def _describe(index: int, case: Case, outcome: Outcome) -> str:
    data = case.data if len(case.data) <= 160 else case.data[:160] + b"...(%d bytes)" % len(case.data)
    how = f"{case.kind}, half-close" if case.half_close else case.kind
    return f"#{index} [{how}] {outcome.kind} {outcome.detail} input={data!r}"


def _threads_settled(baseline: set[threading.Thread], timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    wake = threading.Event()
    while True:
        extra = [t.name for t in threading.enumerate() if t not in baseline and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        wake.wait(0.02)


def run_fuzz(seconds: float = 30.0, seed: int = 0, count: int | None = None, workers: int = 8,
             check_every: int = 25, only: int | None = None, home: Path | None = None,
             progress: Callable[[str], None] | None = None) -> Report:
    """Fuzz a fresh stack until ``seconds`` pass or ``count`` inputs were sent; see the module doc."""
    report = Report(seed)
    baseline = set(threading.enumerate())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ccxray-fuzz-") as tmp:
        stack = Stack(home or Path(tmp))
        stack.start()
        try:
            _fuzz_loop(stack, report, started + seconds, count, workers, check_every, only, progress)
        finally:
            stack.stop()
            report.tracebacks = list(stack.errors.proxy)
            report.fake_errors = list(stack.errors.fake)
    left = _threads_settled(baseline, 10.0)
    if left:
        report.violations.append(f"threads left after stop(): {left}")
    report.seconds = time.monotonic() - started
    return report


def _fuzz_loop(stack: Stack, report: Report, end: float, count: int | None, workers: int,
               check_every: int, only: int | None, progress: Callable[[str], None] | None) -> None:
    """Submit inputs (and a health check every ``check_every``) without barriers, at most
    ``2 * workers`` in flight, until ``end`` or ``count``; then one last health check."""
    port = stack.port
    indices: Iterable[int] = [only] if only is not None else range(count if count is not None else 1 << 62)
    slots = threading.BoundedSemaphore(2 * max(workers, 1))
    inputs: list[tuple[int, Case, Future[Outcome]]] = []
    checks: list[Future[list[str]]] = []

    def health(number: int) -> list[str]:
        return [p for p in (http_health(port, number), ws_health(port, number)) if p]

    def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:
        slots.acquire()
        future = pool.submit(fn, *args)
        future.add_done_callback(lambda _: slots.release())
        return future

    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="ccxray-fuzz") as pool:
        for n, index in enumerate(indices):
            if time.monotonic() >= end:
                break
            if n and n % check_every == 0:
                checks.append(submit(health, len(checks)))
            case = make_case(report.seed, index, port)
            inputs.append((index, case, submit(run_case, port, case)))
    checks.append(_done(health(len(checks))))  # and after everything, the proxy still serves
    for index, case, future in inputs:
        outcome = future.result()
        report.sent += 1
        report.outcomes[outcome.kind] += 1
        if outcome.is_violation:
            report.violations.append(_describe(index, case, outcome))
        if progress and (only is not None or outcome.is_violation):
            progress(_describe(index, case, outcome))
    for check in checks:
        report.violations += check.result()
    report.health_checks = len(checks)
    _check_log(stack, report, range(len(checks)))


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def _check_log(stack: Stack, report: Report, health_numbers: Iterable[int]) -> None:
    """Every health call and session has its line; the recorder dropped and failed nothing."""
    assert stack.server is not None
    recorder = stack.server.recorder
    if not recorder.flush(10):
        report.violations.append("recorder did not flush within 10s")
    numbers = list(health_numbers)
    deadline = time.monotonic() + 10  # a line is written after the client has its last byte: wait for it
    wake = threading.Event()
    while (missing := missing_health_lines(stack.server.settings.logs_dir, numbers, numbers)) \
            and time.monotonic() < deadline:
        wake.wait(0.02)
    report.violations += missing
    if recorder.dropped or recorder.failures:
        report.violations.append(f"recorder dropped {recorder.dropped}, failed {recorder.failures}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz ccxray with malformed HTTP and WebSocket input.")
    parser.add_argument("--seconds", type=float, default=30.0, help="stop starting new inputs after this (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    parser.add_argument("--count", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--workers", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--check-every", type=int, default=25, help="health check after this many inputs")
    parser.add_argument("--only", type=int, default=None, help="replay just input INDEX of --seed")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each violation as it happens")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    say = (lambda text: print(text, flush=True)) if args.verbose or args.only is not None else None
    report = run_fuzz(args.seconds, seed, args.count, args.workers, args.check_every, args.only, progress=say)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
