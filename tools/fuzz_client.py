"""Running one fuzz input against the proxy, as a raw-socket client, and judging what came back.

Each input gets a fresh TCP connection and a deadline. ``run_http`` sends
the bytes and reads until the proxy closes (or a 101 arrives);
``run_ws`` upgrades first (``ws_open``), sends the bytes and reads server
frames (``parse_server_frames``) until a close frame, EOF or the deadline.
The result is an ``Outcome``; a kind starting with ``!`` is a violation,
and ``run_case`` adds ``!unexpected`` when a targeted input got an outcome
outside ``Case.expect``.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from tools.fuzz_common import (
    DEADLINE_S,
    OPCODE_CLOSE,
    RECV_BYTES,
    RESERVED_OPCODES,
    SENDABLE_CLOSE,
    WS_KEY,
    Case,
    _request,
)


# ---------------------------------------------------------------- running one input


# The contract's answer to an upstream that does not answer the handshake within
# the idle timeout (600 ms in the fuzz stack): on a loaded machine the fake
# upstream can be that slow, so it says nothing about how the proxy met the input.
UPSTREAM_SLOW = "upgrade 504 (upstream did not answer in time)"


class UpstreamSlow(ConnectionError):
    """The proxy answered the upgrade with 504."""


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
        status = _status_of(head + b"\r\n")
        if status == 504:
            raise UpstreamSlow(f"upgrade refused: {head[:80]!r}")
        if status != 101:
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
    except UpstreamSlow as exc:
        return Outcome(UPSTREAM_SLOW, str(exc))
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
    if (case.expect is not None and not outcome.is_violation and outcome.kind != UPSTREAM_SLOW
            and outcome.kind not in case.expect):
        return Outcome("!unexpected", f"got {outcome.kind}, expected one of {sorted(case.expect)}")
    return outcome
