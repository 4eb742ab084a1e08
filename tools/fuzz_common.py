"""What every part of ccxray's fuzz harness shares: limits, canned bytes, ``Case``.

The deadline and size limits (matched to the proxy settings the fuzz stack
runs with), the canned message body and WebSocket key, the close codes and
opcodes RFC 6455 allows or reserves, ``Case`` (one input for a fresh
connection), and the byte-level helpers the HTTP and WebSocket mutators
both use. Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Iterable


DEADLINE_S = 6.0  # an input must be answered or closed within this
RECV_BYTES = 65536
HEAD_LIMIT_BYTES = 64 * 1024  # ccxray's request head cap (431 past it)
OVERSIZE_MIN_BYTES = HEAD_LIMIT_BYTES + 1  # targeted oversize inputs start right past the cap
MAX_BODY_MB = 1
MSG = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "say hi"}]}).encode()
WS_KEY = base64.b64encode(b"ccxray-fuzz-key!").decode()
SENDABLE_CLOSE = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))
INVALID_CLOSE = (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
RESERVED_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc0\xaf")


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


def _bit_flips(rng: random.Random, data: bytes, lo: int = 0, hi: int | None = None) -> bytes:
    buf = bytearray(data)
    hi = len(buf) if hi is None else hi
    for _ in range(rng.randint(1, 8)):
        if hi > lo:
            buf[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))
