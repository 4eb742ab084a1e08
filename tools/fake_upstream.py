"""A scripted fake upstream for ccxray's tests and benchmarks.

It answers like the Anthropic Messages API, the OpenAI Responses API (HTTP,
SSE and WebSocket), Chat Completions and the ChatGPT Codex backend, and it can
misbehave on request: the mode comes from the ``x-fake-mode`` header or the
``fake_mode`` query parameter (the query wins). See ``HTTP_MODES`` and
``WS_MODES`` for the names.

Theory of operation
-------------------
* One accept thread waits on a selector over the listening socket and one end
  of a socketpair; ``stop()`` writes to the other end, so accepting never polls.
* Each accepted socket gets one non-daemon thread, its only reader and only
  writer. ``stop()`` merely ``shutdown()``s connection sockets (under the
  server lock, which the owning thread also takes to close, so a descriptor is
  never reused under our feet): a blocked ``recv`` then sees EOF, a blocked
  ``send`` gets EPIPE, ``poll`` sees POLLHUP. The thread closes its socket and
  ends, and ``stop()`` joins it.
* No wait lasts longer than ``IDLE_TIMEOUT_S`` and ``stop()`` wakes every one:
  sockets by shutdown, step and trickle waits through the stopping Event.
* HTTP/1.1 is h11 (RFC 9112). After a 101 (RFC 6455 section 4.2.2) the bytes h11
  kept as trailing data seed a wsproto server ``Connection``. Close frames and
  the invalid frame the fake sends are written by hand, because wsproto
  rewrites or refuses the codes RFC 6455 section 7.4 forbids, and the fault
  modes need exactly those on the wire.
* Every request and handshake is recorded in ``seen`` before it is answered;
  the ``/_fake/*`` control endpoints are not recorded.

A ``seen`` entry is ``{"method", "target", "headers": [[name, value], ...]
(names as received, latin-1), "body" (UTF-8, errors replaced), "ws"}``. A
WebSocket entry adds ``"frames"`` (client messages as they arrive:
``{"dir": "c2u", "text": ...}`` or ``{"dir": "c2u", "binary": true, "size": n}``),
``"close"`` (the client's ``{"code", "reason"}`` or null), ``"client_gone"``
(TCP closed without a close frame), ``"pongs"`` (payloads, ``ping:K`` mode) and
``"protocol_error"`` (wsproto's reason, when the client broke RFC 6455).

Run ``python tools/fake_upstream.py --port 0`` to serve from a process: it prints
one line ``{"port": N}`` and serves until SIGTERM/SIGINT (or stdin EOF with
``--exit-on-stdin-eof``).
"""

from __future__ import annotations

import argparse
import base64
import copy
import enum
import gzip
import hashlib
import itertools
import json
import logging
import os
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import h11
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event as WsEvent,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate

log = logging.getLogger("ccxray.fake_upstream")

Json = dict[str, Any]

IDLE_TIMEOUT_S = 30.0  # upper bound of every wait in the fake
STEP_TIMEOUT_S = 30.0  # a stepped stream ends if no step() comes in this time
CLOSE_WAIT_S = 5.0  # after sending a close frame, wait this long for the peer's
STOP_JOIN_S = 10.0  # stop() logs a thread that is still alive after this
RECV_BYTES = 65536
PIECE_BYTES = 65536  # big bodies go out in pieces of this size
MAX_CLOSE_REASON_BYTES = 123  # a control frame payload is at most 125 bytes

DEFAULT_MODEL = "gpt-5.5"
REPLY_TEXT = "hi"
REPLY_DELTAS = ("h", "i", "")  # joined, they are REPLY_TEXT
ANTHROPIC_USAGE: Json = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 3,
    "output_tokens": 1,
}
ANTHROPIC_OUTPUT_TOKENS = 2
RESPONSES_USAGE: Json = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens": 2,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 14,
}
PREWARM_USAGE: Json = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 0,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 12,
}
MODELS_BODY: Json = {
    "object": "list",
    "data": [{"id": "gpt-5.5", "object": "model"}],
    "models": [],
}

PATTERN = b"0123456789abcdef" * (PIECE_BYTES // 16)  # deterministic filler
INVALID_FRAME = b"\x83\x00"  # FIN + reserved opcode 0x3, empty payload
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
CONTENT_JSON = b"application/json"
CONTENT_SSE = b"text/event-stream"
POLLRDHUP = getattr(select, "POLLRDHUP", 0)  # Linux only: peer shut its side
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}  # h11 sends none by itself


# ---------------------------------------------------------------- modes


class ModeError(ValueError):
    """The client asked for a mode the fake does not know; answered with 400."""


class ArgKind(enum.Enum):
    """What follows the colon of a mode name."""

    NONE = "none"
    INT = "int"
    OPTIONAL_INT = "optional int"
    STATUS = "status"
    CLOSE = "close"


HTTP_MODES: dict[str, ArgKind] = {
    "default": ArgKind.NONE,
    "echo": ArgKind.NONE,
    "sse": ArgKind.INT,
    "sse-bytes": ArgKind.INT,
    "stepped": ArgKind.OPTIONAL_INT,
    "trickle": ArgKind.INT,
    "drop-mid-stream": ArgKind.NONE,
    "stall": ArgKind.NONE,
    "stall-body": ArgKind.NONE,
    "status": ArgKind.STATUS,
    "gzip": ArgKind.NONE,
    "deflate": ArgKind.NONE,
    "br-fake": ArgKind.NONE,
    "big": ArgKind.INT,
    "big-chunked": ArgKind.INT,
    "close-after": ArgKind.NONE,
}

WS_MODES: dict[str, ArgKind] = {
    "default": ArgKind.NONE,
    "echo": ArgKind.NONE,
    "echo-fragmented": ArgKind.NONE,
    "refuse": ArgKind.STATUS,
    "never-answer": ArgKind.NONE,
    "drop-after": ArgKind.INT,
    "close": ArgKind.CLOSE,
    "invalid-frame": ArgKind.NONE,
    "binary": ArgKind.INT,
    "ping": ArgKind.INT,
    "frames": ArgKind.INT,
    "slow-reader": ArgKind.NONE,
    "send-big": ArgKind.INT,
}


@dataclass(frozen=True)
class Mode:
    """A parsed mode: ``sse:5`` is ``Mode("sse", number=5)``."""

    name: str
    number: int | None = None
    close_code: int | None = None  # close:CODE, None for close:none
    close_reason: str = ""


def parse_mode(raw: str | None, table: dict[str, ArgKind]) -> Mode:
    """Parse ``NAME[:ARG]`` against a mode table.

    Returns ``Mode("default")`` for no mode; raises ModeError for an unknown
    name or a bad argument.
    """
    if not raw:
        return Mode("default")
    name, has_arg, arg = raw.strip().partition(":")
    kind = table.get(name)
    if kind is None:
        raise ModeError(f"unknown mode {raw!r}")
    if kind is ArgKind.NONE or (kind is ArgKind.OPTIONAL_INT and not has_arg):
        if has_arg:
            raise ModeError(f"mode {name!r} takes no argument")
        return Mode(name)
    if kind is ArgKind.CLOSE:
        return _parse_close_mode(name, arg)
    number = _parse_int(arg, raw)
    if kind is ArgKind.STATUS and not 200 <= number <= 599:
        raise ModeError(f"status out of range in {raw!r}")
    return Mode(name, number=number)


def _parse_int(text: str, raw: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ModeError(f"bad number in mode {raw!r}") from None
    if number < 0:
        raise ModeError(f"negative number in mode {raw!r}")
    return number


def _parse_close_mode(name: str, arg: str) -> Mode:
    code_text, _, reason = arg.partition(":")
    if code_text == "none":
        if reason:
            raise ModeError("close:none cannot carry a reason")
        return Mode(name, close_code=None)
    code = _parse_int(code_text, f"{name}:{arg}")
    if code > 0xFFFF:
        raise ModeError(f"close code {code} does not fit in two bytes")
    return Mode(name, close_code=code, close_reason=reason)


def requested_mode(query: str, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The mode string of a request: ``fake_mode`` query parameter, else ``x-fake-mode``."""
    if "fake_mode=" in query:  # cheap test first: most requests have no mode
        values = parse_qs(query).get("fake_mode")
        if values:
            return values[0]
    for name, value in headers:
        if name.lower() == b"x-fake-mode":
            return value.decode("latin-1")
    return None


# ---------------------------------------------------------------- bodies


def json_bytes(obj: Any) -> bytes:
    """Compact JSON, as the real APIs send it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def sse_event(name: str, obj: Any) -> bytes:
    """One ``event: NAME`` / ``data: JSON`` SSE event."""
    return b"event: " + name.encode() + b"\ndata: " + json_bytes(obj) + b"\n\n"


def sse_data(payload: bytes) -> bytes:
    """One unnamed SSE event."""
    return b"data: " + payload + b"\n\n"


def pattern_pieces(size: int) -> Iterator[bytes]:
    """``size`` bytes of PATTERN in pieces of at most PIECE_BYTES, without building them whole."""
    full, rest = divmod(size, PIECE_BYTES)
    for _ in range(full):
        yield PATTERN
    if rest:
        yield PATTERN[:rest]


def pattern_bytes(size: int) -> bytes:
    return b"".join(pattern_pieces(size))


def anthropic_message(model: str, msg_id: str) -> Json:
    """A non-streaming Messages API answer."""
    usage = dict(ANTHROPIC_USAGE, output_tokens=ANTHROPIC_OUTPUT_TOKENS)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_events(model: str, msg_id: str) -> list[bytes]:
    """The Messages API SSE sequence, message_start through message_stop."""
    message = dict(anthropic_message(model, msg_id), content=[], stop_reason=None)
    message["usage"] = dict(ANTHROPIC_USAGE)
    events: list[tuple[str, Json]] = [
        ("message_start", {"message": message}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for delta in REPLY_DELTAS:
        block_delta = {"index": 0, "delta": {"type": "text_delta", "text": delta}}
        events.append(("content_block_delta", block_delta))
    events += [
        ("content_block_stop", {"index": 0}),
        (
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": ANTHROPIC_OUTPUT_TOKENS},
            },
        ),
        ("message_stop", {}),
    ]
    return [sse_event(name, {"type": name, **body}) for name, body in events]


def response_object(model: str, resp_id: str, status: str, **fields: Any) -> Json:
    """A Responses API ``response`` object in the shape of the captured traffic."""
    obj: Json = {
        "id": resp_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": None,
    }
    obj.update(fields)
    return obj


def message_item(msg_id: str, text: str, status: str) -> Json:
    """An assistant ``message`` output item."""
    content = [output_text_part(text)] if status == "completed" else []
    return {
        "id": msg_id,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def output_text_part(text: str) -> Json:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def prewarm_events(model: str, resp_id: str) -> list[Json]:
    """Codex's ``generate: false`` warm-up: created, then completed without output."""
    base = {"generate": False}
    return _numbered(
        [
            {"type": "response.created", "response": response_object(model, resp_id, "in_progress", **base)},
            {
                "type": "response.completed",
                "response": response_object(model, resp_id, "completed", usage=PREWARM_USAGE, **base),
            },
        ]
    )


def turn_events(model: str, resp_id: str, msg_id: str, previous_id: str | None) -> list[Json]:
    """A full Responses turn that answers REPLY_TEXT, ending in response.completed."""
    started = response_object(model, resp_id, "in_progress", previous_response_id=previous_id)
    where = {"item_id": msg_id, "output_index": 0, "content_index": 0}
    done_item = message_item(msg_id, REPLY_TEXT, "completed")
    events: list[Json] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": message_item(msg_id, "", "in_progress")},
        {"type": "response.content_part.added", **where, "part": output_text_part("")},
    ]
    for delta in REPLY_DELTAS:
        events.append({"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []})
    completed = dict(started, status="completed", output=[done_item], usage=RESPONSES_USAGE)
    events += [
        {"type": "response.output_text.done", **where, "text": REPLY_TEXT, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": output_text_part(REPLY_TEXT)},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {"type": "response.completed", "response": completed},
    ]
    return _numbered(events)


def _numbered(events: list[Json]) -> list[Json]:
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def codex_events(request: Json, number: int) -> list[Json]:
    """What the fake sends for one ``response.create`` (HTTP or WebSocket)."""
    model = str(request.get("model") or DEFAULT_MODEL)
    if request.get("generate") is False:
        return prewarm_events(model, f"resp_prewarm_{number}")
    previous = request.get("previous_response_id")
    previous_id = previous if isinstance(previous, str) else None
    return turn_events(model, f"resp_fake_{number}", f"msg_fake_{number}", previous_id)


def chat_completion(model: str, number: int) -> Json:
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }


def chat_chunks(model: str, number: int) -> list[bytes]:
    """Chat Completions streaming: role, content deltas, finish, then ``[DONE]``."""
    base = {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    deltas: list[tuple[Json, str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": text}, None) for text in REPLY_DELTAS]
    deltas.append(({}, "stop"))
    chunks = [
        sse_data(json_bytes(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])))
        for delta, finish in deltas
    ]
    return chunks + [sse_data(b"[DONE]")]


def bench_frames(count: int) -> list[str]:
    """``count`` Responses-style text frames of about 200 bytes each, for benchmarks."""
    head = (
        '{"type":"response.output_text.delta","content_index":0,"delta":"'
        + "x" * 48
        + '","item_id":"msg_fake_bench","logprobs":[],"obfuscation":"fakefakefake",'
        + '"output_index":0,"sequence_number":'
    )
    return [f"{head}{number}}}" for number in range(count)]


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A server close frame written by hand, so any code reaches the wire (RFC 6455 section 5.5.1).

    ``code`` None gives an empty payload; the reason is cut on a UTF-8 boundary
    to keep the payload within 125 bytes.
    """
    if code is None:
        return b"\x88\x00"
    cut = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode()
    payload = struct.pack("!H", code) + cut
    return bytes([0x88, len(payload)]) + payload


def echo_code(code: int) -> int | None:
    """The code to answer a client close with: 1005 means it sent none, so neither do we."""
    return None if code == 1005 else code


def accept_token(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())


def negotiate_deflate(offers: str) -> tuple[PerMessageDeflate, bytes] | None:
    """Accept the first acceptable permessage-deflate offer.

    Returns the extension and the ``Sec-WebSocket-Extensions`` answer, or None.
    """
    for offer in offers.split(","):
        if offer.split(";", 1)[0].strip() != PerMessageDeflate.name:
            continue
        extension = PerMessageDeflate()
        params = extension.accept(offer.strip())
        if params is None or params is False:
            continue
        answer = PerMessageDeflate.name + (f"; {params}" if isinstance(params, str) and params else "")
        return extension, answer.encode()
    return None


def is_ws_path(path: str) -> bool:
    return path.endswith("/responses") or path.endswith("/realtime")


def parse_json_object(body: bytes | str) -> Json:
    """The body as a JSON object, or {} when it is not one."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- shared state


class SeenLog:
    """Every request and handshake the fake saw; all access under one Condition.

    Bounded so long benchmarks don't grow without limit: beyond ``max_entries``
    the oldest entry goes (counted in ``dropped``), and a WebSocket entry keeps
    at most ``max_entries`` frames (the rest counted in its ``frames_dropped``).
    """

    def __init__(self, max_entries: int = 1000) -> None:
        self._cond = threading.Condition()
        self._entries: list[Json] = []
        self.max_entries = max_entries
        self.dropped = 0

    def add(self, entry: Json) -> Json:
        with self._cond:
            self._entries.append(entry)
            if len(self._entries) > self.max_entries:
                del self._entries[0]
                self.dropped += 1
            self._cond.notify_all()
        return entry

    def update(self, entry: Json, **fields: Any) -> None:
        with self._cond:
            entry.update(fields)
            self._cond.notify_all()

    def append_to(self, entry: Json, key: str, item: Any) -> None:
        with self._cond:
            items = entry.setdefault(key, [])
            if len(items) < self.max_entries:
                items.append(item)
            else:
                entry[f"{key}_dropped"] = entry.get(f"{key}_dropped", 0) + 1
            self._cond.notify_all()

    def snapshot(self) -> list[Json]:
        with self._cond:
            return copy.deepcopy(self._entries)

    def to_json(self) -> bytes:
        with self._cond:
            return json_bytes(self._entries)

    def clear(self) -> None:
        with self._cond:
            self._entries.clear()
            self.dropped = 0
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[Json]], bool], timeout: float, what: str) -> list[Json]:
        """Wait until ``pred(entries)`` holds; raises AssertionError naming ``what`` on timeout."""
        with self._cond:
            if self._cond.wait_for(lambda: pred(self._entries), timeout):
                return copy.deepcopy(self._entries)
            summary = [(e["method"], e["target"], e.get("ws")) for e in self._entries]
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; seen: {summary}")


class StepGate:
    """Permits for ``stepped`` streams: ``release()`` adds one, ``take()`` waits for one."""

    def __init__(self, stopping: threading.Event) -> None:
        self._cond = threading.Condition()
        self._permits = 0
        self._stopping = stopping

    def release(self, count: int = 1) -> None:
        with self._cond:
            self._permits += count
            self._cond.notify_all()

    def take(self, timeout_s: float) -> bool:
        """True when a permit was taken; False on timeout or when the server stops."""
        with self._cond:
            ready = self._cond.wait_for(lambda: self._permits > 0 or self._stopping.is_set(), timeout_s)
            if not ready or self._stopping.is_set():
                return False
            self._permits -= 1
            return True

    def reset(self) -> None:
        with self._cond:
            self._permits = 0

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()


# ---------------------------------------------------------------- socket waits


def wait_for_peer_eof(sock: socket.socket, timeout_s: float) -> None:
    """Read and drop input until the peer closes, the socket is shut down, or time runs out."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(RECV_BYTES):
                return
        except TimeoutError:
            return


def wait_for_hangup(sock: socket.socket, timeout_s: float) -> None:
    """Wait, without reading, until the peer hangs up or ``stop()`` shuts the socket down."""
    poller = select.poll()
    poller.register(sock, select.POLLHUP | select.POLLERR | POLLRDHUP)
    poller.poll(int(timeout_s * 1000))


def shutdown_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by its thread


# ---------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Exchange:
    """One HTTP request as received."""

    method: str
    target: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]  # raw names, as received
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The values of header ``name`` (lowercase) joined by commas, or None."""
        values = [value for key, value in self.headers if key.lower() == name]
        return b", ".join(values) if values else None

    @property
    def is_upgrade(self) -> bool:
        upgrade = self.header(b"upgrade")
        return upgrade is not None and b"websocket" in upgrade.lower()

    @property
    def mode_text(self) -> str | None:
        return requested_mode(self.query, self.headers)

    def seen_entry(self) -> Json:
        return {
            "method": self.method,
            "target": self.target,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
            "body": self.body.decode("utf-8", "replace"),
            "ws": self.is_upgrade,
        }


@dataclass(frozen=True)
class Answer:
    """A normal answer: one body, or SSE events sent one per write."""

    content_type: bytes
    chunks: Sequence[bytes]
    is_stream: bool

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def json_answer(obj: Any) -> Answer:
    return Answer(CONTENT_JSON, [json_bytes(obj)], is_stream=False)


def sse_answer(events: Sequence[bytes]) -> Answer:
    return Answer(CONTENT_SSE, events, is_stream=True)


def echo_object(ex: Exchange) -> Json:
    entry = ex.seen_entry()
    return {key: entry[key] for key in ("method", "target", "headers", "body")}


def normal_answer(ex: Exchange, number: int) -> Answer:
    """The successful answer for a path; ``number`` makes the ids unique."""
    if ex.method == "POST":
        for suffix, build in _POST_ROUTES:
            if ex.path.endswith(suffix):
                return build(parse_json_object(ex.body), number)
    if ex.method in ("GET", "HEAD"):
        if ex.path == "/":
            return Answer(b"text/plain", [b"ccxray fake upstream\n"], is_stream=False)
        if ex.path.endswith("/models"):
            return json_answer(MODELS_BODY)
    return json_answer(echo_object(ex))


def _model(request: Json, default: str) -> str:
    return str(request.get("model") or default)


def anthropic_answer(request: Json, number: int) -> Answer:
    model, msg_id = _model(request, "claude-fake"), f"msg_fake_{number}"
    if request.get("stream") is True:
        return sse_answer(anthropic_events(model, msg_id))
    return json_answer(anthropic_message(model, msg_id))


def responses_answer(request: Json, number: int) -> Answer:
    events = codex_events(request, number)
    if request.get("stream") is True:
        return sse_answer([sse_event(event["type"], event) for event in events])
    return json_answer(events[-1]["response"])


def chat_answer(request: Json, number: int) -> Answer:
    model = _model(request, DEFAULT_MODEL)
    if request.get("stream") is True:
        return sse_answer(chat_chunks(model, number))
    return json_answer(chat_completion(model, number))


_POST_ROUTES: list[tuple[str, Callable[[Json, int], Answer]]] = [
    ("/v1/messages", anthropic_answer),
    ("/responses", responses_answer),
    ("/chat/completions", chat_answer),
]


def response_head(status: int, headers: Sequence[tuple[bytes, bytes]]) -> h11.Response:
    return h11.Response(status_code=status, headers=list(headers), reason=REASONS.get(status, b""))


class HttpConnection:
    """Serves HTTP/1.1 exchanges on one accepted socket; hands a WebSocket upgrade to WsSession."""

    def __init__(self, server: FakeUpstream, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.client_h11 = h11.Connection(h11.SERVER)
        self.is_head = False

    def serve(self) -> None:
        """Answer requests until the client closes or an answer ends the connection."""
        while True:
            exchange = self._read_exchange()
            if exchange is None:
                return
            self.is_head = exchange.method == "HEAD"
            if exchange.is_upgrade:
                self._serve_upgrade(exchange)
                return
            self._answer(exchange)
            if not self._start_next_cycle():
                return

    # -- reading

    def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.client_h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            self.client_h11.receive_data(self.sock.recv(RECV_BYTES))  # b"" is EOF for h11

    def _read_exchange(self) -> Exchange | None:
        try:
            request = self._next_event()
            if not isinstance(request, h11.Request):
                return None  # ConnectionClosed: the client is done with us
            body = self._read_body()
        except h11.RemoteProtocolError as exc:
            self._answer_bad_request(exc)
            return None
        return self._exchange(request, body)

    def _read_body(self) -> bytes:
        if self.client_h11.they_are_waiting_for_100_continue:
            self.send(h11.InformationalResponse(status_code=100, headers=[], reason=REASONS[100]))
        parts: list[bytes] = []
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise h11.RemoteProtocolError(f"unexpected {event!r} in a request body")

    @staticmethod
    def _exchange(request: h11.Request, body: bytes) -> Exchange:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        return Exchange(
            method=request.method.decode("latin-1"),
            target=target,
            path=path,
            query=query,
            headers=list(request.headers.raw_items()),
            body=body,
        )

    def _start_next_cycle(self) -> bool:
        if self.client_h11.our_state is h11.DONE and self.client_h11.their_state is h11.DONE:
            self.client_h11.start_next_cycle()
            return True
        return False

    # -- writing

    def send(self, *events: h11.Event) -> None:
        """Encode h11 events and write them with one sendall."""
        parts = [self.client_h11.send(event) for event in events]
        self.sock.sendall(b"".join(part for part in parts if part))

    def send_head(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.send(response_head(status, headers))

    def send_full(self, status: int, content_type: bytes, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """A whole response with a Content-Length, in one write."""
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra]
        events: list[h11.Event] = [response_head(status, headers)]
        if body and not self.is_head and status not in (204, 304):
            events.append(h11.Data(data=body))
        self.send(*events, h11.EndOfMessage())

    def send_json(self, status: int, obj: Any, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.send_full(status, CONTENT_JSON, json_bytes(obj), extra)

    def send_stream(
        self,
        chunks: Iterable[bytes],
        content_type: bytes = CONTENT_SSE,
        before_each: Callable[[int], bool] | None = None,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """A chunked response, one write per chunk; ``before_each(i)`` False ends it early."""
        self.send_head(200, [(b"content-type", content_type), (b"cache-control", b"no-cache"), *extra])
        if not self.is_head:
            for index, chunk in enumerate(chunks):
                if before_each is not None and not before_each(index):
                    break
                self.send(h11.Data(data=chunk))
        self.send(h11.EndOfMessage())

    def send_answer(self, answer: Answer, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        if answer.is_stream:
            self.send_stream(answer.chunks, answer.content_type, extra=extra)
        else:
            self.send_full(200, answer.content_type, answer.body, extra)

    def send_error(self, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.send_json(status, {"error": {"type": "fake", "message": message}}, extra)

    def _answer_bad_request(self, exc: h11.RemoteProtocolError) -> None:
        if self.client_h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.send_error(exc.error_status_hint, f"bad request: {exc}", [(b"connection", b"close")])

    # -- dispatch

    def _answer(self, ex: Exchange) -> None:
        if ex.path.startswith("/_fake/"):
            self._answer_control(ex)
            return
        self.server.seen_log.add(ex.seen_entry())
        try:
            mode = parse_mode(ex.mode_text, HTTP_MODES)
        except ModeError as exc:
            self.send_error(400, str(exc))
            return
        _HTTP_HANDLERS[mode.name](self, ex, mode)

    def _answer_control(self, ex: Exchange) -> None:
        """``/_fake/seen``, ``/_fake/reset`` and ``/_fake/step`` for tests driving a fake process."""
        if ex.method == "GET" and ex.path == "/_fake/seen":
            self.send_full(200, CONTENT_JSON, self.server.seen_log.to_json())
        elif ex.method == "POST" and ex.path == "/_fake/reset":
            self.server.reset()
            self.send_json(200, {"ok": True})
        elif ex.method == "POST" and ex.path == "/_fake/step":
            self.server.step()
            self.send_json(200, {"ok": True})
        else:
            self.send_error(404, f"no control endpoint {ex.method} {ex.path}")

    def normal_answer(self, ex: Exchange) -> Answer:
        return normal_answer(ex, self.server.next_number())

    # -- WebSocket upgrade

    def _serve_upgrade(self, ex: Exchange) -> None:
        entry = self.server.seen_log.add(dict(ex.seen_entry(), frames=[], close=None, client_gone=False))
        mode = self._handshake_mode(ex)
        if isinstance(mode, tuple):
            self.send_error(mode[0], mode[1], [(b"connection", b"close")])
            return
        if mode.name == "never-answer":
            wait_for_peer_eof(self.sock, IDLE_TIMEOUT_S)
            return
        client_ws = self._accept_websocket(ex)
        WsSession(self.server, self.sock, client_ws, entry).run(mode)

    @staticmethod
    def _handshake_mode(ex: Exchange) -> Mode | tuple[int, str]:
        """The WebSocket mode, or the status and message to refuse the handshake with."""
        if not is_ws_path(ex.path):
            return 404, f"no WebSocket endpoint at {ex.path}"
        try:
            mode = parse_mode(ex.mode_text, WS_MODES)
        except ModeError as exc:
            return 400, str(exc)
        if mode.name == "refuse" and mode.number is not None:
            return mode.number, f"refused {mode.number}"
        if ex.header(b"sec-websocket-key") is None:
            return 400, "missing Sec-WebSocket-Key"
        return mode

    def _accept_websocket(self, ex: Exchange) -> WsConnection:
        """Send the 101 and return the server-side wsproto connection, fed with any trailing bytes."""
        key = ex.header(b"sec-websocket-key") or b""
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_token(key)),
        ]
        protocols = ex.header(b"sec-websocket-protocol")
        if protocols:
            headers.append((b"sec-websocket-protocol", protocols.split(b",")[0].strip()))
        extensions: list[Extension] = []
        offers = ex.header(b"sec-websocket-extensions")
        deflate = negotiate_deflate(offers.decode("latin-1")) if offers and self.server.ws_deflate else None
        if deflate is not None:
            extensions.append(deflate[0])
            headers.append((b"sec-websocket-extensions", deflate[1]))
        self.send(h11.InformationalResponse(status_code=101, headers=headers, reason=REASONS[101]))
        trailing, _ = self.client_h11.trailing_data
        return WsConnection(ConnectionType.SERVER, extensions=extensions, trailing_data=trailing)


# -- HTTP mode handlers: (connection, exchange, mode) -> None


def _http_default(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    conn.send_answer(conn.normal_answer(ex))


def _http_echo(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    conn.send_json(200, echo_object(ex))


def _counter_events(count: int) -> Iterator[bytes]:
    return (sse_data(b'{"i":%d}' % index) for index in range(count))


def _http_sse(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    conn.send_stream(_counter_events(mode.number or 0))


def _http_sse_bytes(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    pieces = itertools.chain([b"data: "], pattern_pieces(mode.number or 0), [b"\n\n"])
    conn.send_stream(pieces)


def _http_stepped(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    """Each event waits for one ``step()``; the stream ends when none comes in STEP_TIMEOUT_S."""
    answer = conn.normal_answer(ex)
    if mode.number is not None or not answer.is_stream:
        events: Iterable[bytes] = _counter_events(3 if mode.number is None else mode.number)
    else:
        events = answer.chunks
    conn.send_stream(events, before_each=lambda _: conn.server.step_gate.take(STEP_TIMEOUT_S))


def _http_trickle(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    delay_s = min((mode.number or 0) / 1000, IDLE_TIMEOUT_S)
    stopping = conn.server.stopping
    conn.send_stream(_counter_events(5), before_each=lambda i: i == 0 or not stopping.wait(delay_s))


def _http_drop_mid_stream(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    """Half the answer, then the connection is closed (h11 is left mid-body, so serve() ends)."""
    answer = conn.normal_answer(ex)
    if answer.is_stream:
        conn.send_head(200, [(b"content-type", answer.content_type)])
        for chunk in answer.chunks[: max(1, len(answer.chunks) // 2)]:
            conn.send(h11.Data(data=chunk))
        return
    body = answer.body
    headers = [(b"content-type", answer.content_type), (b"content-length", b"%d" % len(body))]
    conn.send(response_head(200, headers), h11.Data(data=body[: len(body) // 2]))


def _http_stall(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    wait_for_peer_eof(conn.sock, IDLE_TIMEOUT_S)


def _http_stall_body(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    answer = conn.normal_answer(ex)
    if answer.is_stream:
        conn.send_head(200, [(b"content-type", answer.content_type)])
    else:
        length = b"%d" % len(answer.body)
        conn.send_head(200, [(b"content-type", answer.content_type), (b"content-length", length)])
    wait_for_peer_eof(conn.sock, IDLE_TIMEOUT_S)


def _http_status(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    status = mode.number or 500
    extra = [(b"retry-after", b"1")] if status == 429 else []
    conn.send_error(status, f"status {status}", extra)


def _http_encoded(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    """gzip / deflate: the normal answer compressed; br-fake: random bytes labelled br."""
    answer = conn.normal_answer(ex)
    if mode.name == "gzip":
        body = gzip.compress(answer.body, compresslevel=5, mtime=0)
    elif mode.name == "deflate":
        body = zlib.compress(answer.body)  # HTTP "deflate" is the zlib format (RFC 9110 section 8.4.1.2)
    else:
        body = os.urandom(64)
    coding = b"br" if mode.name == "br-fake" else mode.name.encode()
    conn.send_full(200, answer.content_type, body, [(b"content-encoding", coding)])


def _http_big(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    size = mode.number or 0
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % size)]
    conn.send_head(200, headers)
    if not conn.is_head:
        for piece in pattern_pieces(size):
            conn.send(h11.Data(data=piece))
    conn.send(h11.EndOfMessage())


def _http_big_chunked(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    conn.send_stream(pattern_pieces(mode.number or 0), b"application/octet-stream")


def _http_close_after(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    # h11 then ends in MUST_CLOSE, so serve() closes after this answer.
    conn.send_answer(conn.normal_answer(ex), [(b"connection", b"close")])


_HTTP_HANDLERS: dict[str, Callable[[HttpConnection, Exchange, Mode], None]] = {
    "default": _http_default,
    "echo": _http_echo,
    "sse": _http_sse,
    "sse-bytes": _http_sse_bytes,
    "stepped": _http_stepped,
    "trickle": _http_trickle,
    "drop-mid-stream": _http_drop_mid_stream,
    "stall": _http_stall,
    "stall-body": _http_stall_body,
    "status": _http_status,
    "gzip": _http_encoded,
    "deflate": _http_encoded,
    "br-fake": _http_encoded,
    "big": _http_big,
    "big-chunked": _http_big_chunked,
    "close-after": _http_close_after,
}


# ---------------------------------------------------------------- WebSocket


ClientMessage = str | bytes


class WsSession:
    """One accepted WebSocket: reads client messages, answers control frames, runs a mode."""

    def __init__(self, server: FakeUpstream, sock: socket.socket, client_ws: WsConnection, entry: Json) -> None:
        self.server = server
        self.sock = sock
        self.client_ws = client_ws
        self.entry = entry
        self.pending: deque[WsEvent] = deque(client_ws.events())  # from the trailing data
        self.text_parts: list[str] = []
        self.binary_parts: list[bytes] = []
        self.close_sent = False

    def run(self, mode: Mode) -> None:
        _WS_HANDLERS[mode.name](self, mode)

    # -- writing

    def send(self, *events: WsEvent) -> None:
        """Encode wsproto events and write them with one sendall."""
        self.sock.sendall(b"".join(self.client_ws.send(event) for event in events))

    def send_message(self, message: ClientMessage) -> None:
        if isinstance(message, str):
            self.send(TextMessage(data=message))
        else:
            self.send(BytesMessage(data=message))

    def send_close_frame(self, frame: bytes) -> None:
        """Write a hand-made close (or invalid) frame; wsproto's state is left as is on purpose."""
        self.sock.sendall(frame)
        self.close_sent = True

    # -- reading

    def next_message(self) -> ClientMessage | None:
        """The next complete client message; None once the client closed or went away.

        Pings are answered and pongs recorded on the way.
        """
        while True:
            while self.pending:
                event = self.pending.popleft()
                if isinstance(event, Message):
                    message = self._collect(event)
                    if message is not None:
                        return message
                elif isinstance(event, CloseConnection):
                    self._on_client_close(event)
                    return None
                elif isinstance(event, Ping) and self.client_ws.state is ConnectionState.OPEN:
                    self.send(event.response())
                elif isinstance(event, Pong):
                    self.server.seen_log.append_to(self.entry, "pongs", bytes(event.payload).decode("utf-8", "replace"))
            if not self._receive():
                return None

    def _receive(self) -> bool:
        """Feed wsproto with one read; False at EOF (wsproto's EOF is None, but we stop first)."""
        data = self.sock.recv(RECV_BYTES)
        if not data:
            if not self.server.stopping.is_set():
                self.server.seen_log.update(self.entry, client_gone=True)
            return False
        self.client_ws.receive_data(data)
        self.pending.extend(self.client_ws.events())
        return True

    def _collect(self, event: Message[Any]) -> ClientMessage | None:
        """Reassemble fragments; records and returns the message once it is complete."""
        if isinstance(event, TextMessage):
            self.text_parts.append(event.data)
        else:
            self.binary_parts.append(bytes(event.data))
        if not event.message_finished:
            return None
        message: ClientMessage
        if isinstance(event, TextMessage):
            message = "".join(self.text_parts)
            frame: Json = {"dir": "c2u", "text": message}
        else:
            message = b"".join(self.binary_parts)
            frame = {"dir": "c2u", "binary": True, "size": len(message)}
        self.text_parts.clear()
        self.binary_parts.clear()
        self.server.seen_log.append_to(self.entry, "frames", frame)
        return message

    def _on_client_close(self, event: CloseConnection) -> None:
        # wsproto reports a protocol violation as a CloseConnection while its state is still OPEN.
        if self.client_ws.state is ConnectionState.OPEN:
            self.server.seen_log.update(self.entry, protocol_error=event.reason or "protocol error")
            if not self.close_sent:
                self.send_close_frame(close_frame(int(event.code)))
            return
        close = {"code": int(event.code), "reason": event.reason or ""}
        self.server.seen_log.update(self.entry, close=close)
        if not self.close_sent:
            self.send_close_frame(close_frame(echo_code(int(event.code)), event.reason or ""))

    def drain_until_close(self, timeout_s: float) -> None:
        """After our close frame: read until the client's close or EOF, at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                if self.next_message() is None:
                    return
            except TimeoutError:
                return

    def serve_each(self, reply: Callable[[ClientMessage], None]) -> None:
        """Call ``reply`` for every client message until the client closes or goes away."""
        while (message := self.next_message()) is not None:
            reply(message)

    def reply_codex(self, message: ClientMessage) -> None:
        """Answer ``response.create`` like the Codex backend; echo anything else."""
        request = parse_json_object(message) if isinstance(message, str) else {}
        if request.get("type") != "response.create":
            self.send_message(message)
            return
        events = codex_events(request, self.server.next_number())
        self.send(*(TextMessage(data=json.dumps(event, separators=(",", ":"))) for event in events))


# -- WebSocket mode handlers: (session, mode) -> None; returning closes TCP


def _ws_default(session: WsSession, mode: Mode) -> None:
    session.serve_each(session.reply_codex)


def _ws_echo(session: WsSession, mode: Mode) -> None:
    session.serve_each(session.send_message)


def _ws_echo_fragmented(session: WsSession, mode: Mode) -> None:
    def send_in_three(message: ClientMessage) -> None:
        third = len(message) // 3
        cuts = [(0, third), (third, 2 * third), (2 * third, len(message))]
        frames: list[WsEvent] = []
        for index, (start, end) in enumerate(cuts):
            last = index == len(cuts) - 1
            if isinstance(message, str):
                frames.append(TextMessage(data=message[start:end], message_finished=last))
            else:
                frames.append(BytesMessage(data=message[start:end], message_finished=last))
        session.send(*frames)

    session.serve_each(send_in_three)


def _ws_drop_after(session: WsSession, mode: Mode) -> None:
    for _ in range(mode.number or 0):
        if session.next_message() is None:
            return
    # Returning closes the socket without a close frame: a TCP drop.


def _ws_close(session: WsSession, mode: Mode) -> None:
    if session.next_message() is None:
        return
    session.send_close_frame(close_frame(mode.close_code, mode.close_reason))
    session.drain_until_close(CLOSE_WAIT_S)


def _ws_invalid_frame(session: WsSession, mode: Mode) -> None:
    if session.next_message() is None:
        return
    session.send_close_frame(INVALID_FRAME)
    session.drain_until_close(CLOSE_WAIT_S)


def _ws_binary(session: WsSession, mode: Mode) -> None:
    payload = pattern_bytes(mode.number or 0)
    session.serve_each(lambda _: session.send(BytesMessage(data=payload)))


def _ws_ping(session: WsSession, mode: Mode) -> None:
    session.server.seen_log.update(session.entry, pongs=[])
    session.send(*(Ping(payload=b"p%d" % index) for index in range(mode.number or 0)))
    _ws_default(session, mode)


def _ws_frames(session: WsSession, mode: Mode) -> None:
    frames = [TextMessage(data=text) for text in bench_frames(mode.number or 0)]
    session.serve_each(lambda _: session.send(*frames))


def _ws_slow_reader(session: WsSession, mode: Mode) -> None:
    wait_for_hangup(session.sock, IDLE_TIMEOUT_S)


def _ws_send_big(session: WsSession, mode: Mode) -> None:
    if session.next_message() is None:
        return
    session.send(TextMessage(data=pattern_bytes(mode.number or 0).decode("ascii")))
    _ws_default(session, mode)


_WS_HANDLERS: dict[str, Callable[[WsSession, Mode], None]] = {
    "default": _ws_default,
    "echo": _ws_echo,
    "echo-fragmented": _ws_echo_fragmented,
    "drop-after": _ws_drop_after,
    "close": _ws_close,
    "invalid-frame": _ws_invalid_frame,
    "binary": _ws_binary,
    "ping": _ws_ping,
    "frames": _ws_frames,
    "slow-reader": _ws_slow_reader,
    "send-big": _ws_send_big,
    # "refuse" and "never-answer" are handled before the 101, in HttpConnection.
}


# ---------------------------------------------------------------- server


class FakeUpstream:
    """The fake upstream server: ``start()``, use ``base_url``, read ``seen``, ``stop()``.

    Also a context manager. ``stop()`` joins every thread it started and closes
    every socket; it is idempotent.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ws_deflate: bool = False, max_seen: int = 1000
    ) -> None:
        self.host = host
        self.ws_deflate = ws_deflate
        self.seen_log = SeenLog(max_seen)
        self.stopping = threading.Event()
        self.step_gate = StepGate(self.stopping)
        self._requested_port = port
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._conn_ids = itertools.count(1)
        self._socks: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None
        self._port = 0
        self._accepted = 0

    # -- public API

    @property
    def connection_count(self) -> int:
        """How many TCP connections were accepted so far (keep-alive reuse tests)."""
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        """How many accepted connections are still open."""
        with self._lock:
            return len(self._socks)

    def start(self) -> FakeUpstream:
        """Bind, listen and start accepting; returns self."""
        if self._listener is not None or self.stopping.is_set():
            raise RuntimeError("a FakeUpstream can be started once")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, self._requested_port), family=family, backlog=128)
        self._listener.setblocking(False)
        self._port = self._listener.getsockname()[1]
        self._wake = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake[0], selectors.EVENT_READ)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fake-upstream-accept")
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, shut every connection down, join every thread, close every socket."""
        with self._lock:
            if self._listener is None or self.stopping.is_set():
                self.stopping.set()  # a never-started fake cannot be started later either
                return
            self.stopping.set()
        self.step_gate.wake_all()
        self._stop_accepting()
        with self._lock:
            threads = list(self._threads)
            for sock in self._socks.values():
                shutdown_quietly(sock)
        for thread in threads:
            thread.join(STOP_JOIN_S)
            if thread.is_alive():
                log.error("%s did not stop within %s s", thread.name, STOP_JOIN_S)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[len("http") :]

    @property
    def seen(self) -> list[Json]:
        """A copy of every request and handshake seen so far (see the module doc for the keys)."""
        return self.seen_log.snapshot()

    def wait_for(self, pred: Callable[[list[Json]], bool], timeout: float = 5.0, what: str = "") -> list[Json]:
        """Wait until ``pred(seen)`` is true; returns a copy of ``seen``.

        ``pred`` runs under the log's lock on the live list: keep it quick and
        do not keep references. Raises AssertionError after ``timeout`` seconds.
        """
        return self.seen_log.wait_for(pred, timeout, what or getattr(pred, "__name__", "predicate"))

    def step(self, count: int = 1) -> None:
        """Release ``count`` events of ``stepped`` streams."""
        self.step_gate.release(count)

    def reset(self) -> None:
        """Forget what was seen and any unused steps."""
        self.seen_log.clear()
        self.step_gate.reset()

    def next_number(self) -> int:
        """A fresh number for response ids (itertools.count is atomic under the GIL)."""
        return next(self._numbers)

    # -- accepting

    def _accept_loop(self) -> None:
        selector, wake = self._selector, self._wake
        if selector is None or wake is None:
            raise AssertionError("accept loop started before start()")
        while True:
            for key, _ in selector.select():
                if key.fileobj is wake[0]:
                    return
                self._accept_one()

    def _accept_one(self) -> None:
        if self._listener is None:
            raise AssertionError("accepting without a listener")
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # the client gave up between select and accept
        except OSError:
            log.exception("accept failed")
            return
        self._start_connection(sock)

    def _start_connection(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        sock.settimeout(IDLE_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_id = next(self._conn_ids)
        thread = threading.Thread(
            target=self._run_connection, args=(sock, conn_id), name=f"fake-upstream-conn-{conn_id}"
        )
        with self._lock:
            # Finished threads are gone from threading.enumerate(); drop them so benchmarks don't grow the list.
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            self._socks[conn_id] = sock
            self._accepted += 1
        thread.start()

    def _run_connection(self, sock: socket.socket, conn_id: int) -> None:
        try:
            HttpConnection(self, sock).serve()
        except OSError as exc:  # the client went away, timed out, or stop() shut the socket
            log.debug("conn %d ended: %r", conn_id, exc)
        except Exception:
            log.exception("conn %d failed", conn_id)
        finally:
            with self._lock:
                self._socks.pop(conn_id, None)
                sock.close()

    def _stop_accepting(self) -> None:
        if self._wake is None or self._accept_thread is None:
            raise AssertionError("stop() before start()")
        self._wake[1].send(b"x")
        self._accept_thread.join()
        if self._selector is not None:
            self._selector.close()
        if self._listener is not None:
            self._listener.close()
        for sock in self._wake:
            sock.close()


# ---------------------------------------------------------------- process mode


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ccxray's fake upstream server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ws-deflate", action="store_true", help="accept permessage-deflate")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="also stop when stdin closes")
    parser.add_argument("--max-seen", type=int, default=1000, help="entries (and frames per entry) kept in seen")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def wait_for_shutdown(exit_on_stdin_eof: bool) -> None:
    """Block until SIGTERM/SIGINT, or EOF on stdin when asked; no polling.

    Signals reach the select through ``signal.set_wakeup_fd``.
    """
    received: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    previous = {sig: signal.signal(sig, lambda signum, _: received.append(signum)) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_fd = signal.set_wakeup_fd(wake_w)
    watched = [wake_r, sys.stdin.fileno()] if exit_on_stdin_eof else [wake_r]
    try:
        while not received:
            ready, _, _ = select.select(watched, [], [])
            if wake_r in ready:
                os.read(wake_r, 512)
            if len(watched) > 1 and watched[1] in ready and not os.read(watched[1], RECV_BYTES):
                return
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until told to stop; prints ``{"port": N}`` once listening. Returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    with FakeUpstream(args.host, args.port, ws_deflate=args.ws_deflate, max_seen=args.max_seen) as fake:
        print(json.dumps({"port": fake.port}), flush=True)
        wait_for_shutdown(args.exit_on_stdin_eof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
