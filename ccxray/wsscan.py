"""Sans-IO WebSocket frame scanner: validates one direction's frames and says
which received bytes may be passed on exactly as they came.

The proxy forwards data, ping and pong frames verbatim (no extension is ever
negotiated, so a client's masked frame is a valid frame for upstream and
upstream's unmasked frame is valid for the client). This scanner tracks the
frame boundaries, opcodes, lengths, masks and message state that wsproto
would check (RFC 6455 5.2-5.6) and reports, per ``feed``:

- ``forward``: how many of the buffered bytes are whole valid frames (or the
  start of one too large to hold, see HOLD_BYTES) to pass on;
- the data messages that finished (text decoded once, for the recorder);
- a close frame received (code, reason), which ends the direction;
- or a violation with the close code to answer (1002, 1007 bad UTF-8, 1009
  a frame over the cap), which ends it too.

Close frames are never forwarded verbatim: the bridge answers and passes
them on by the contract's rules.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field

from . import closecodes

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
DATA_OPS = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)
HOLD_BYTES = 1 << 20  # an incomplete frame is held up to this, then streamed on as it comes
BAD_DATA = 1007


class Violation(Exception):
    """The peer broke RFC 6455; ``code`` is what to answer it with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Message:
    """A finished data message."""

    text: str | None   # None for binary, or text over the record limit
    size: int          # payload bytes of all its frames
    truncated: bool = False


@dataclass
class Scan:
    """What one feed found."""

    forward: bytes = b""
    messages: list[Message] = field(default_factory=list)
    close: tuple[int | None, str] | None = None  # (None, "") for a close without a status
    violation: Violation | None = None


@dataclass
class _Header:
    fin: bool
    opcode: int
    length: int
    mask: bytes | None
    size: int  # header bytes


def unmask(data: bytes | bytearray | memoryview, mask: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``mask``, starting ``offset`` bytes into it."""
    n = len(data)
    if offset % 4:
        mask = mask[offset % 4:] + mask[:offset % 4]
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def close_frame(code: int | None, reason: str, mask: bytes | None) -> bytes:
    """A close frame (masked when ``mask`` is given); the reason is cut to 120 bytes."""
    code = closecodes.wire_code(code)
    payload = b"" if code is None else struct.pack("!H", code) + closecodes.cut_reason(reason).encode("utf-8")
    if mask is None:
        return bytes([0x80 | OP_CLOSE, len(payload)]) + payload
    return bytes([0x80 | OP_CLOSE, 0x80 | len(payload)]) + mask + unmask(payload, mask)


def _parse_header(buf: bytearray, pos: int, masked: bool, max_frame: int) -> _Header | None:
    """The frame header at ``pos``, None if incomplete; raises Violation."""
    avail = len(buf) - pos
    if avail < 2:
        return None
    b0, b1 = buf[pos], buf[pos + 1]
    fin, opcode, length, size = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F, 2
    if opcode not in DATA_OPS and opcode not in CONTROL_OPS:
        raise Violation(closecodes.PROTOCOL_ERROR, f"invalid opcode {opcode:#x}")
    if opcode in CONTROL_OPS and (not fin or length > 125):
        raise Violation(closecodes.PROTOCOL_ERROR, "fragmented or oversized control frame")
    if length == 126:
        if avail < 4:
            return None
        (length,), size = struct.unpack_from("!H", buf, pos + 2), 4
        if length <= 125:
            raise Violation(closecodes.PROTOCOL_ERROR, "payload length used 2 bytes when 1 would do")
    elif length == 127:
        if avail < 10:
            return None
        (length,), size = struct.unpack_from("!Q", buf, pos + 2), 10
        if length <= 0xFFFF:
            raise Violation(closecodes.PROTOCOL_ERROR, "payload length used 8 bytes when 2 would do")
        if length >> 63:
            raise Violation(closecodes.PROTOCOL_ERROR, "8-byte payload length with the top bit set")
    if length > max_frame:
        raise Violation(closecodes.TOO_BIG, f"a frame of {length} bytes is over the {max_frame}-byte cap")
    if b0 & 0x70:
        raise Violation(closecodes.PROTOCOL_ERROR, "reserved bit set without an extension")
    if bool(b1 & 0x80) is not masked:
        raise Violation(closecodes.PROTOCOL_ERROR, "masked frame from the server" if not masked
                        else "unmasked frame from the client")
    mask = None
    if masked:
        if avail < size + 4:
            return None
        mask, size = bytes(buf[pos + size:pos + size + 4]), size + 4
    return _Header(fin, opcode, length, mask, size)


def _parse_close(payload: bytes) -> tuple[int | None, str]:
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise Violation(closecodes.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if not closecodes.is_sendable(code):
        raise Violation(closecodes.PROTOCOL_ERROR, f"close frame with invalid code {code}")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Violation(BAD_DATA, f"close reason is not UTF-8: {exc}") from exc


class FrameScanner:
    """One direction's frames. ``masked``: frames must be masked (client to server).

    Payload bytes are checked as they arrive (as wsproto does), but passed on
    only once their frame is complete, unless the incomplete frame holds
    HOLD_BYTES already: from then on it streams on as it comes (``mid_frame``).
    """

    def __init__(self, masked: bool, max_frame_bytes: int, record_limit: int) -> None:
        self.masked = masked
        self.max_frame = max_frame_bytes
        self.record_limit = record_limit
        self.done = False        # a close or a violation was seen: nothing more is read
        self._buf = bytearray()  # received, not yet passed on
        self._pos = 0            # bytes of _buf already checked
        self._safe = 0           # bytes of _buf that may be passed on
        self._cur: _Header | None = None  # the frame whose payload is arriving
        self._left = 0                    # its payload bytes still to come
        self._streaming = False           # part of _cur has been passed on
        self._msg_op: int | None = None   # OP_TEXT/OP_BINARY while a message is open
        self._decoder: codecs.IncrementalDecoder | None = None
        self._parts: list[str] = []
        self._size = 0
        self._keep = True

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has been passed on and the rest has not."""
        return self._streaming

    def feed(self, data: bytes) -> Scan:
        scan = Scan()
        if self.done:
            return scan
        self._buf += data
        try:
            self._scan(scan)
        except Violation as exc:
            scan.violation = exc
            self.done = True
        safe = self._safe
        if safe:
            scan.forward = bytes(self._buf[:safe])
        if self.done:
            self._buf = bytearray()
            return scan
        if safe:
            del self._buf[:safe]
            self._pos -= safe
            self._safe = 0
        return scan

    def _scan(self, scan: Scan) -> None:
        buf = self._buf
        while True:
            if self._cur is not None:
                if not self._payload_in(buf, scan):
                    break
                continue
            head = _parse_header(buf, self._pos, self.masked, self.max_frame)
            if head is None:
                break
            end = self._pos + head.size + head.length
            if head.opcode not in CONTROL_OPS:
                self._check_order(head)
                self._begin(head)
                self._cur, self._left = head, head.length
                self._pos += head.size
                continue
            if end > len(buf):
                break
            if head.opcode == OP_CLOSE:
                scan.close = _parse_close(self._payload(buf, self._pos + head.size, end, head.mask))
                self.done = True
                return
            self._pos = self._safe = end
        if self._cur is not None and len(buf) - self._safe >= HOLD_BYTES:
            self._streaming = True  # too large to hold: what is checked goes on now
        if self._streaming:
            self._safe = self._pos

    def _payload_in(self, buf: bytearray, scan: Scan) -> bool:
        """Check the arrived payload of the current frame; False when more is needed."""
        head = self._cur
        assert head is not None
        take = min(self._left, len(buf) - self._pos)
        if take == 0 and self._left:
            return False
        offset = head.length - self._left
        self._left -= take
        start, self._pos = self._pos, self._pos + take
        self._data(head, buf, start, self._pos, offset, head.fin and not self._left, scan)
        if not self._left:
            self._cur, self._streaming, self._safe = None, False, self._pos
        return True

    def _check_order(self, head: _Header) -> None:
        if head.opcode == OP_CONTINUATION and self._msg_op is None:
            raise Violation(closecodes.PROTOCOL_ERROR, "continuation frame without a message")
        if head.opcode != OP_CONTINUATION and self._msg_op is not None:
            raise Violation(closecodes.PROTOCOL_ERROR, "new message before the last one finished")

    def _begin(self, head: _Header) -> None:
        if head.opcode != OP_CONTINUATION:
            self._msg_op = head.opcode
            self._decoder = codecs.getincrementaldecoder("utf-8")() if head.opcode == OP_TEXT else None

    @staticmethod
    def _payload(buf: bytearray, start: int, end: int, mask: bytes | None, offset: int = 0) -> bytes:
        if mask is None:
            return bytes(buf[start:end])
        with memoryview(buf) as view:  # released at once: the buffer is resized later
            return unmask(view[start:end], mask, offset)

    def _data(self, head: _Header, buf: bytearray, start: int, end: int, offset: int, finished: bool,
              scan: Scan) -> None:
        """Payload bytes [start, end) of a data frame; ``finished``: the message ends with them."""
        self._size += end - start
        if self._decoder is not None and (end > start or finished):
            payload = self._payload(buf, start, end, head.mask, offset)
            try:
                text = self._decoder.decode(payload, finished)
            except UnicodeDecodeError as exc:
                raise Violation(BAD_DATA, f"text frame is not UTF-8: {exc}") from exc
            if self._keep and self._size <= self.record_limit:
                self._parts.append(text)
            else:
                self._keep = False
                self._parts.clear()
        if finished:
            self._finish_message(scan)

    def _finish_message(self, scan: Scan) -> None:
        is_text = self._msg_op == OP_TEXT
        text = "".join(self._parts) if is_text and self._keep else None
        scan.messages.append(Message(text, self._size, truncated=is_text and not self._keep))
        self._msg_op, self._decoder, self._parts, self._size, self._keep = None, None, [], 0, True
