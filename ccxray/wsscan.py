"""Sans-IO WebSocket frame scanner: validates one direction's frames and says
which received bytes may be passed on exactly as they came.

The proxy forwards data, ping and pong frames verbatim (no extension is ever
negotiated, so a client's masked frame is a valid frame for upstream and
upstream's unmasked frame is valid for the client). This scanner tracks the
frame boundaries, opcodes, lengths, masks and message state that wsproto
would check (RFC 6455 5.2-5.6). ``feed`` returns the bytes that are whole
valid frames (or the start of one too large to hold, see HOLD_BYTES) to pass
on, and appends each data message that finished to a list, as a ``Found``
tuple (text decoded once, for the recorder). It ends the direction on:

- a close frame received: ``close`` is (code, reason);
- a violation: ``violation`` carries the close code to answer (1002, 1007
  bad UTF-8, 1009 a frame over the cap).

Close frames are never forwarded verbatim: the bridge answers and passes
them on by the contract's rules.

Two paths, one set of rules: ``_whole_frames`` takes the common case (whole
unfragmented text or binary frames already in the buffer) in one tight loop
and stops at anything else, which the general frame-by-frame path takes
(partial frames, fragments, control frames, and every violation, so each is
reported by one piece of code).
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass

from . import closecodes

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
DATA_OPS = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)
HOLD_BYTES = 1 << 20  # an incomplete frame is held up to this, then streamed on as it comes
BAD_DATA = 1007
_WHOLE_TEXT, _WHOLE_BINARY = 0x80 | OP_TEXT, 0x80 | OP_BINARY  # first byte: FIN, no RSV bits
_HEAD = struct.Struct("!BBH").unpack_from  # first byte, second byte, the 2-byte length if there is one

Buffer = bytes | bytearray
Found = tuple[str | None, int, bool]  # a finished data message: (text or None for binary, size, truncated)


class Violation(Exception):
    """The peer broke RFC 6455; ``code`` is what to answer it with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Header:
    fin: bool
    opcode: int
    length: int
    mask: bytes | None
    size: int  # header bytes


def unmask(data: bytes | bytearray | memoryview, mask: bytes | bytearray, offset: int = 0) -> bytes:
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


def _parse_header(buf: Buffer, pos: int, masked: bool, max_frame: int) -> _Header | None:
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
        self.close: tuple[int | None, str] | None = None  # (None, "") for a close without a status
        self.violation: Violation | None = None
        self.messages = 0        # data messages finished
        self.payload_bytes = 0   # their payload bytes
        self._buf: Buffer = b""  # received, not yet passed on (a bytearray while it holds bytes)
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
        # the fast path reads 1- and 2-byte lengths only, so it never meets a frame over
        # limits this large; smaller limits (tests) send every frame the general way
        self._fast = min(max_frame_bytes, record_limit) > 0xFFFF

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has been passed on and the rest has not."""
        return self._streaming

    def feed(self, data: bytes, found: list[Found]) -> bytes:
        """Check ``data``; returns the bytes to pass on, appends finished messages to ``found``."""
        if self.done:
            return b""
        buf = self._buf
        if buf:
            buf += data  # a bytearray, grown in place
        elif self._cur is None and self._msg_op is None:
            pos = self._whole_frames(data, 0, found)
            if pos == len(data):
                return data  # the common case: whole frames, nothing held, nothing copied
            buf, self._pos, self._safe = data, pos, pos
        else:
            buf = data
        try:
            self._scan(buf, found)
        except Violation as exc:
            self.violation = exc
            self.done = True
        safe = self._safe
        if self.done:
            self._buf = b""
            return bytes(buf[:safe])
        if safe == len(buf):
            self._buf, self._pos, self._safe = b"", 0, 0
            return buf if type(buf) is bytes else bytes(buf)
        forward = bytes(buf[:safe]) if safe else b""
        if buf is data:
            with memoryview(data) as view:
                self._buf = bytearray(view[safe:])
        elif safe:
            del buf[:safe]  # type: ignore[union-attr]
            self._buf = buf
        else:
            self._buf = buf
        self._pos -= safe
        self._safe = 0
        return forward

    def _scan(self, buf: Buffer, found: list[Found]) -> None:
        while True:
            if self._cur is None:
                if self._msg_op is None:
                    self._pos = self._safe = self._whole_frames(buf, self._pos, found)
                head = _parse_header(buf, self._pos, self.masked, self.max_frame)
                if head is None:
                    break
                if head.opcode in CONTROL_OPS:
                    end = self._pos + head.size + head.length
                    if end > len(buf):
                        break
                    if head.opcode == OP_CLOSE:
                        self.close = _parse_close(self._payload(buf, self._pos + head.size, end, head.mask))
                        self.done = True
                        return
                    self._pos = self._safe = end
                    continue
                self._check_order(head)
                self._begin(head)
                self._cur, self._left = head, head.length
                self._pos += head.size
            if not self._payload_in(buf, found):
                break
        if self._cur is not None and len(buf) - self._safe >= HOLD_BYTES:
            self._streaming = True  # too large to hold: what is checked goes on now
        if self._streaming:
            self._safe = self._pos

    def _whole_frames(self, buf: Buffer, pos: int, found: list[Found]) -> int:
        """The fast path: whole unfragmented text/binary frames from ``pos`` on,
        header parsed inline, text decoded (and so validated) in one call.

        Returns where it stopped: at the first frame that is incomplete,
        fragmented, a control frame, longer than 65535 bytes, or wrong in any
        way (or too short to read four header bytes); the general path judges
        that one, and every frame when the limits are below 64 KiB.

        It runs once per message: one loop per direction, one struct call per
        header and no bounds test the struct call or the slice makes anyway.
        """
        if not self._fast:
            return pos
        if self.masked:
            return self._whole_masked(buf, pos, found)
        end, append, before, total = len(buf), found.append, len(found), 0
        text, binary, head = _WHOLE_TEXT, _WHOLE_BINARY, _HEAD
        try:
            while pos < end:
                b0, length, ext = head(buf, pos)
                if length < 126:
                    start = pos + 2
                elif length == 126 and ext >= 126:  # (below 126: a non-minimal length, a violation)
                    start, length = pos + 4, ext
                else:
                    break  # masked, or an 8-byte length
                stop = start + length
                if stop > end:
                    break
                if b0 == text:
                    append((buf[start:stop].decode(), length, False))
                elif b0 == binary:
                    append((None, length, False))  # neither decoded nor copied
                else:
                    break
                total += length
                pos = stop
        except (struct.error, UnicodeDecodeError):
            pass  # fewer than 4 bytes left, or a violation
        self.messages += len(found) - before
        self.payload_bytes += total
        return pos

    def _whole_masked(self, buf: Buffer, pos: int, found: list[Found]) -> int:
        """``_whole_frames`` for a client's frames: each masked, each text unmasked to decode it."""
        end, append, before, total = len(buf), found.append, len(found), 0
        text, binary, head = _WHOLE_TEXT, _WHOLE_BINARY, _HEAD
        try:
            while pos < end:
                b0, length, ext = head(buf, pos)
                length -= 0x80  # the mask bit
                if 0 <= length < 126:
                    start = pos + 6
                elif length == 126 and ext >= 126:  # (below 126: a non-minimal length, a violation)
                    start, length = pos + 8, ext
                else:
                    break  # unmasked, or an 8-byte length
                stop = start + length
                if stop > end:
                    break
                if b0 == text:
                    append((unmask(buf[start:stop], buf[start - 4:start]).decode(), length, False))
                elif b0 == binary:
                    append((None, length, False))  # neither unmasked nor copied
                else:
                    break
                total += length
                pos = stop
        except (struct.error, UnicodeDecodeError):
            pass  # fewer than 4 bytes left, or a violation
        self.messages += len(found) - before
        self.payload_bytes += total
        return pos

    def _payload_in(self, buf: Buffer, found: list[Found]) -> bool:
        """Check the arrived payload of the current frame; False when more is needed."""
        head = self._cur
        assert head is not None
        take = min(self._left, len(buf) - self._pos)
        if take == 0 and self._left:
            return False
        offset = head.length - self._left
        self._left -= take
        start, self._pos = self._pos, self._pos + take
        self._data(head, buf, start, self._pos, offset, head.fin and not self._left, found)
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
    def _payload(buf: Buffer, start: int, end: int, mask: bytes | None, offset: int = 0) -> bytes:
        if mask is None:
            return bytes(buf[start:end])
        with memoryview(buf) as view:  # released at once: the buffer is resized later
            return unmask(view[start:end], mask, offset)

    def _data(self, head: _Header, buf: Buffer, start: int, end: int, offset: int, finished: bool,
              found: list[Found]) -> None:
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
            self._finish_message(found)

    def _finish_message(self, found: list[Found]) -> None:
        is_text = self._msg_op == OP_TEXT
        text = "".join(self._parts) if is_text and self._keep else None
        found.append((text, self._size, is_text and not self._keep))
        self.messages += 1
        self.payload_bytes += self._size
        self._msg_op, self._decoder, self._parts, self._size, self._keep = None, None, [], 0, True
