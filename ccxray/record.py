"""What the relays hand to the recorder, and the index line schema.

The relays only capture raw facts (headers, bytes, timestamps); all parsing
happens on the recorder's thread. ``index_line`` is the only place that maps
to the camelCase field names of the Node project, so logs stay comparable.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

Header = tuple[str, str]

INDEX_FIELDS = (
    "id", "ts", "receivedAt", "kind", "transport", "sessionId", "sessionInferred",
    "provider", "agent", "method", "url", "status", "elapsed", "isSSE", "model",
    "usage", "cost", "costNote", "stopReason", "cwd", "isSubagent", "agentType",
    "msgCount", "toolCount", "title", "responseMetadata", "error",
)


def index_line(**values: Any) -> dict[str, Any]:
    """An index line with every contract field present (None when unknown).

    Extra keyword fields (frameCounts, connectionId, ...) are kept after them.
    """
    line = {name: values.pop(name, None) for name in INDEX_FIELDS}
    line.update(values)
    return line


def iso_ms(epoch_s: float) -> str:
    """2026-11-24T06:39:14.123Z"""
    second = math.floor(epoch_s)
    micros = round((epoch_s - second) * 1e6)  # as datetime rounds a timestamp (half to even)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{_iso_second(second)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=8)
def _iso_second(second: int) -> str:
    """The date and time of a whole second (formatted once: lines come many a second)."""
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


PID_DIGITS = 5  # an id carries its proxy's pid modulo 10**PID_DIGITS


def id_pid(call_id: str) -> int | None:
    """The pid field of an id ``IdFactory`` made (the proxy's pid modulo
    10**PID_DIGITS), None for any other id."""
    parts = call_id.split("-")
    field = parts[1] if len(parts) >= 3 else ""
    return int(field) if len(field) == PID_DIGITS and field.isascii() and field.isdecimal() else None


class IdFactory:
    """Unique, file-name-safe, time-sortable ids.

    Time to the millisecond, then a per-factory counter (unique within one
    process, also within one millisecond) and the pid (unique across proxies
    sharing one home).
    """

    def __init__(self) -> None:
        self._counter = itertools.count(1)  # next() on a count is atomic under the GIL
        self._pid = os.getpid() % 10 ** PID_DIGITS
        self._cache: tuple[int, str] = (-1, "")

    def new_id(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        n = next(self._counter)
        second = int(now)
        cached = self._cache  # one tuple read: threads never mix one second's stamp with another's
        if cached[0] != second:  # format the date once a second, not once a call
            cached = self._cache = (second, time.strftime("%Y%m%dT%H%M%S", time.gmtime(second)))
        ms = int((now - second) * 1000)
        return f"{cached[1]}{ms:03d}Z-{self._pid:05d}-{n:06d}"


@dataclass
class HttpCall:
    """One finished HTTP exchange, as the relay saw it."""

    id: str
    started: float            # epoch seconds, request head received
    method: str
    url: str                  # client's target, ccxray token removed
    provider: str             # "anthropic" | "openai" | "chatgpt" | "local"
    upstream_url: str | None
    req_headers: list[Header]
    req_body: bytes
    status: int | None = None
    resp_headers: list[Header] = field(default_factory=list)
    resp_body: list[bytes] = field(default_factory=list)
    resp_truncated: bool = False
    resp_spill: str | None = None       # file name (in logs/) holding the raw body, when it outgrew memory
    resp_tail: bytes = b""              # then: resp_body is the head, this the last bytes
    resp_size: int = 0                  # bytes relayed
    resp_note: str | None = None        # why the recorded body is incomplete, if it is
    first_byte_s: float | None = None   # seconds after start
    elapsed_s: float | None = None
    error: str | None = None


@dataclass
class WsOpened:
    """A WebSocket upgrade request arrived (before upstream answered)."""

    id: str
    started: float
    url: str
    provider: str
    upstream_url: str | None
    req_headers: list[Header]


@dataclass
class WsFrame:
    """One data message (or message fragment run) seen, already forwarded."""

    conn_id: str
    direction: str            # "c2u" | "u2c"
    ts: float                 # epoch seconds
    text: str | None          # None for binary
    size: int                 # payload bytes
    truncated: bool = False   # payload not kept (over the recording cap)
    seq: int = 0              # the bridge's order across both directions (the recorder sorts by it)


class WsRun:
    """The data messages of one recv from one side, as one hand-off: they share
    a timestamp and direction and are numbered from ``seq`` on, so the recorder
    looks their connection up once."""

    __slots__ = ("conn_id", "direction", "ts", "seq", "found")

    def __init__(self, conn_id: str, direction: str, ts: float, seq: int,
                 found: list[tuple[str | None, int, bool]]) -> None:
        self.conn_id, self.direction, self.ts, self.seq = conn_id, direction, ts, seq
        self.found = found  # (text or None for binary, payload bytes, not kept), in order

    def frames(self) -> list[WsFrame]:
        """The run as one WsFrame per message."""
        return [WsFrame(self.conn_id, self.direction, self.ts, text, size, truncated, self.seq + i)
                for i, (text, size, truncated) in enumerate(self.found)]


@dataclass
class CloseInfo:
    """How a WebSocket pair ended: who closed, with what code."""

    side: str | None          # "client" | "upstream" | "proxy" | None
    code: int | None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "code": self.code, "reason": self.reason}


@dataclass
class WsClosed:
    """The pair is over; both sockets are closed."""

    conn_id: str
    status: int
    resp_headers: list[Header]
    resp_body: bytes          # upstream's refusal body, if the handshake failed
    close: CloseInfo
    frame_counts: dict[str, int]
    byte_counts: dict[str, int]
    elapsed_s: float
    error: str | None = None
