"""Bytes for the benchmark clients: pre-built requests and minimal response parsers.

The load generator must cost far less than the proxy it measures, so nothing
here uses h11 or wsproto: requests are built once, and the parsers only find
message boundaries (Content-Length, chunked terminators, WebSocket frame
lengths), never decode bodies or validate more than the benchmark needs.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

RECV_BYTES = 262144
SMALL_BODY = b'{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's sample key; nobody checks freshness
MASK_KEY = b"\x5a\xa5\x3c\xc3"  # fixed: servers cannot and do not check that masks are random
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
WS_DATA_OPCODES = (0x0, OP_TEXT, OP_BINARY)  # continuation counts: frames pass through, not messages


class BenchProtocolError(RuntimeError):
    """The server under test answered something the benchmark cannot use."""


# ---------------------------------------------------------------- building


def http_request(port: int, target: str, body: bytes = SMALL_BODY, method: str = "POST") -> bytes:
    """One keep-alive HTTP/1.1 request, as an agent would send it."""
    head = (
        f"{method} {target} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: ccxray-bench/1\r\n"
        "Content-Type: application/json\r\n"
        "anthropic-version: 2023-06-01\r\n"
        "x-api-key: sk-bench\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def ws_handshake(port: int, target: str) -> bytes:
    """A WebSocket opening handshake (RFC 6455 section 4.1) without extensions."""
    head = (
        f"GET {target} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Authorization: Bearer sk-bench\r\n\r\n"
    )
    return head.encode("ascii")


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame, masked as RFC 6455 section 5.3 requires."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    # Masking happens once, when the frame is built; the hot loops only resend these bytes.
    mask = (MASK_KEY * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")
    return head + MASK_KEY + masked


def close_frame(code: int = 1000) -> bytes:
    return masked_frame(OP_CLOSE, struct.pack("!H", code))


def client_message_text() -> bytes:
    """A ~200-byte client JSON message that is not a ``response.create``.

    A ``response.create`` opens a turn in ccxray's recorder, and with the fake's
    ``frames``/``echo`` modes (no ``response.completed``) every message would
    supersede the last turn and cost two sidecar files: that measures the turn
    bookkeeping of an unrealistic 10-frame turn, not the relay.
    """
    return (
        b'{"type":"session.update","session":{"instructions":"ccxray bench: relay this frame unchanged",'
        b'"tools":[],"tool_choice":"auto","metadata":{"bench":"ws","pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}}}'
    )


def create_message_text() -> bytes:
    """A small ``response.create``: with the fake's ``turns:K`` mode each one is a
    whole Codex turn (K events, the last ``response.completed``) in the recorder."""
    return (
        b'{"type":"response.create","model":"gpt-5.5","instructions":"ccxray bench",'
        b'"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"ping"}]}],'
        b'"tools":[],"store":false,"stream":true}'
    )


# ---------------------------------------------------------------- HTTP responses


@dataclass(frozen=True)
class Head:
    status: int
    content_length: int | None  # None: chunked (or read to EOF, which the bench never uses)
    size: int  # bytes of the head including the blank line


def parse_head(buf: bytes | bytearray) -> Head | None:
    """The response head at the start of ``buf``, or None if it is not complete yet."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise BenchProtocolError(f"not an HTTP response: {lines[0][:80]!r}")
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return Head(int(parts[1]), length, end + 4)


class ChunkedBody:
    """Finds the end of a chunked body (RFC 9112 section 7.1); counts payload bytes."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.payload_bytes = 0
        self.done = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.buf += data
        while not self.done and self._step():
            pass
        if self.pos > RECV_BYTES:  # compact now and then, not per chunk
            del self.buf[: self.pos]
            self.pos = 0

    def _step(self) -> bool:
        eol = self.buf.find(b"\r\n", self.pos)
        if eol < 0:
            return False
        size = int(bytes(self.buf[self.pos : eol]).split(b";")[0], 16)
        if size == 0:  # no trailers from our servers: the last chunk is followed by one CRLF
            if len(self.buf) < eol + 4:
                return False
            self.pos, self.done = eol + 4, True
            return True
        end = eol + 2 + size + 2
        if len(self.buf) < end:
            return False
        self.pos, self.payload_bytes = end, self.payload_bytes + size
        return True


@dataclass(frozen=True)
class Timed:
    """One response read from a blocking socket, with perf_counter_ns stamps."""

    status: int
    body_bytes: int
    first_byte_ns: int
    done_ns: int


def read_response(sock: socket.socket, scratch: bytearray) -> Timed:
    """Read exactly one response (no pipelining: nothing follows it). Raises BenchProtocolError at EOF."""
    view = memoryview(scratch)
    buf = bytearray()
    first_ns = 0
    head: Head | None = None
    while head is None:
        got = sock.recv_into(view)
        if not got:
            raise BenchProtocolError("connection closed before a response head")
        first_ns = first_ns or time.perf_counter_ns()
        buf += view[:got]
        head = parse_head(buf)
    rest = buf[head.size :]
    if head.content_length is not None:
        body = _read_counted(sock, view, head.content_length, len(rest))
    else:
        body = _read_chunked(sock, view, rest)
    return Timed(head.status, body, first_ns, time.perf_counter_ns())


def _read_counted(sock: socket.socket, view: memoryview, length: int, have: int) -> int:
    # recv_into a reused buffer: a 10 MB body costs no allocations on the client side.
    while have < length:
        got = sock.recv_into(view[: min(len(view), length - have)])
        if not got:
            raise BenchProtocolError(f"connection closed after {have} of {length} body bytes")
        have += got
    return length


def _read_chunked(sock: socket.socket, view: memoryview, rest: bytes | bytearray) -> int:
    body = ChunkedBody()
    body.feed(rest)
    while not body.done:
        got = sock.recv_into(view)
        if not got:
            raise BenchProtocolError("connection closed inside a chunked body")
        body.feed(view[:got])
    return body.payload_bytes


# ---------------------------------------------------------------- WebSocket frames


@dataclass
class FrameScan:
    """Result of scanning server frames: counts, and where the unparsed rest starts."""

    data_frames: int = 0
    closed: bool = False
    end: int = 0


def scan_frames(buf: bytes | bytearray, start: int = 0) -> FrameScan:
    """Count the complete server frames in ``buf[start:]`` (RFC 6455 section 5.2 lengths only)."""
    scan = FrameScan(end=start)
    pos, size = start, len(buf)
    while pos + 2 <= size:
        opcode, second = buf[pos] & 0x0F, buf[pos + 1]
        length, head = second & 0x7F, 2
        if length == 126:
            if pos + 4 > size:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if pos + 10 > size:
                break
            length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        head += 4 if second & 0x80 else 0
        if pos + head + length > size:
            break
        pos += head + length
        if opcode in WS_DATA_OPCODES:
            scan.data_frames += 1
        elif opcode == OP_CLOSE:
            scan.closed = True
    scan.end = pos
    return scan


def open_ws(sock: socket.socket, handshake: bytes) -> bytearray:
    """Send the handshake, read the 101; returns bytes that followed it (early frames)."""
    sock.sendall(handshake)
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        data = sock.recv(RECV_BYTES)
        if not data:
            raise BenchProtocolError("connection closed during the WebSocket handshake")
        buf += data
    if not buf.startswith(b"HTTP/1.1 101"):
        raise BenchProtocolError(f"handshake refused: {bytes(buf[:120])!r}")
    return buf[end + 4 :]


def read_data_frames(sock: socket.socket, buf: bytearray, wanted: int) -> bytearray:
    """Block until ``wanted`` data frames arrived; returns the unparsed rest."""
    while True:
        scan = scan_frames(buf)
        if scan.data_frames >= wanted:
            return buf[scan.end :]
        if scan.closed:
            raise BenchProtocolError("server closed the WebSocket")
        data = sock.recv(RECV_BYTES)
        if not data:
            raise BenchProtocolError("connection closed while waiting for frames")
        buf += data


def await_close(sock: socket.socket, buf: bytearray, deadline: float) -> bool:
    """After sending our close frame: read until the peer's close frame or EOF, until ``deadline``.

    Returns True when the close handshake completed. Data frames still in flight are skipped.
    """
    while True:
        scan = scan_frames(buf)
        if scan.closed:
            return True
        del buf[: scan.end]
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(RECV_BYTES)
        except (TimeoutError, OSError):
            return False
        if not data:
            return False
        buf += data
