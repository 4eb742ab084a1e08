"""Sans-IO WebSocket bridge: one validating frame scanner per direction.

Bytes from one side go in (``feed``); bytes for each side, the data messages
seen and how the pair closed come out. No sockets, threads or clocks here:
``ws_pair`` owns those and serialises calls into one bridge.

Rules (DESIGN.md "WebSocket transport"):
- Data, ping and pong frames go to the other side as the exact bytes that
  came in (``wsscan`` validates them first); a whole feed of frames comes
  out as one run of bytes. Message boundaries and fragmentation survive
  because nothing is re-framed.
- Ping and pong are passed on, not answered (the far side answers).
- A close from one side is echoed to it at once (RFC 6455 5.5.1) and passed
  to the other side via ``closecodes.forward_code``; the first close seen is
  the one recorded.
- A TCP drop (``feed(side, None)``) closes the other side with 1011 and is
  recorded as 1006.
- A protocol violation is answered with its code (1002; 1007 for bad UTF-8;
  1009 for a frame over the cap) to the violating side and 1011 to the other.
- A frame too large to hold is streamed on in parts; a side left in the
  middle of such a frame cannot be sent a close frame, so it is hung up
  instead (``Output.hangup``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

from . import closecodes
from .record import CloseInfo
from .wsscan import FrameScanner, Scan, close_frame

MAX_FRAME_BYTES = 64 * 1024 * 1024  # a frame announcing more is refused with 1009
RECORD_LIMIT = 64 * 1024 * 1024


class Side(str, Enum):
    CLIENT = "client"
    UPSTREAM = "upstream"

    @property
    def other(self) -> "Side":
        return Side.UPSTREAM if self is Side.CLIENT else Side.CLIENT


@dataclass
class MessageSeen:
    """A complete data message that was passed on (for the recorder)."""

    side: Side              # the side that sent it
    text: str | None        # None for binary
    size: int
    truncated: bool = False
    seq: int = 0            # order in which the bridge passed messages on, both directions


@dataclass
class Output:
    """What one feed produced: bytes per side, messages seen, sides to hang up."""

    to: dict[Side, bytearray] = field(default_factory=lambda: {Side.CLIENT: bytearray(), Side.UPSTREAM: bytearray()})
    messages: list[MessageSeen] = field(default_factory=list)
    hangup: set[Side] = field(default_factory=set)


class WsBridge:
    """The client leg (we are its server: its frames are masked) and the
    upstream leg (we are its client: we mask what we send it)."""

    def __init__(self, client_trailing: bytes = b"", upstream_trailing: bytes = b"",
                 record_limit: int = RECORD_LIMIT, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._scan = {
            Side.CLIENT: FrameScanner(True, max_frame_bytes, record_limit),
            Side.UPSTREAM: FrameScanner(False, max_frame_bytes, record_limit),
        }
        self._pending = {Side.CLIENT: client_trailing, Side.UPSTREAM: upstream_trailing}
        self._sent_close = {Side.CLIENT: False, Side.UPSTREAM: False}
        self._got_close = {Side.CLIENT: False, Side.UPSTREAM: False}
        self.read_done = {Side.CLIENT: False, Side.UPSTREAM: False}  # EOF or a violation
        self.close: CloseInfo | None = None
        self.error: str | None = None
        self.frame_counts = {Side.CLIENT: 0, Side.UPSTREAM: 0}  # data messages sent by each side
        self.byte_counts = {Side.CLIENT: 0, Side.UPSTREAM: 0}
        self._seq = 0

    # -- queries ----------------------------------------------------------

    def wants_read(self, side: Side) -> bool:
        """True while bytes from ``side`` still matter (no close, EOF or violation from it)."""
        return not (self.read_done[side] or self._got_close[side])

    @property
    def is_closing(self) -> bool:
        return self.close is not None

    @property
    def is_finished(self) -> bool:
        """Both sides are done: closed on the wire, or no longer read."""
        return all(self.read_done[s] or (self._got_close[s] and self._sent_close[s]) for s in Side)

    # -- input ------------------------------------------------------------

    def start(self) -> Output:
        """Process bytes that arrived with the handshakes (``trailing_data``)."""
        out = Output()
        for side in Side:
            data, self._pending[side] = self._pending[side], b""
            if data:
                self._feed_into(side, data, out)
        return out

    def feed(self, side: Side, data: bytes | None) -> Output:
        """Bytes received from ``side`` (None at EOF) -> what to send where."""
        out = Output()
        self._feed_into(side, data, out)
        return out

    def _feed_into(self, side: Side, data: bytes | None, out: Output) -> None:
        if not self.wants_read(side):
            return  # bytes after this side's close frame carry nothing for us
        if data is None:
            self._on_eof(side, out)
            return
        scan = self._scan[side].feed(data)
        if scan.forward and not self._sent_close[side.other]:
            out.to[side.other] += scan.forward
        for msg in scan.messages:
            self._seq += 1
            self.frame_counts[side] += 1
            self.byte_counts[side] += msg.size
            out.messages.append(MessageSeen(side, msg.text, msg.size, msg.truncated, self._seq))
        if scan.violation is not None:
            self._on_violation(side, scan, out)
        elif scan.close is not None:
            self._on_close(side, scan.close, out)

    def _on_eof(self, side: Side, out: Output) -> None:
        self.read_done[side] = True
        self._note_close(side, closecodes.ABNORMAL, None)
        self._send_close(side.other, closecodes.INTERNAL_ERROR, "peer connection dropped", out)

    def _on_violation(self, side: Side, scan: Scan, out: Output) -> None:
        assert scan.violation is not None
        exc = scan.violation
        self.read_done[side] = True
        self._note_close(side, exc.code, str(exc), error=f"{side.value} violated the WebSocket protocol: {exc}")
        self._send_close(side, exc.code, None, out)
        self._send_close(side.other, closecodes.INTERNAL_ERROR, "peer protocol error", out)

    def _on_close(self, side: Side, close: tuple[int | None, str], out: Output) -> None:
        code, reason = close
        reason = closecodes.cut_reason(reason)
        self._got_close[side] = True
        self._note_close(side, closecodes.NO_STATUS if code is None else code, reason or None)
        self._send_close(side, code, reason, out)  # the echo, RFC 6455 5.5.1 (if we had not closed first)
        self._send_close(side.other, closecodes.forward_code(code), reason, out)

    # -- closing ------------------------------------------------------------

    def _note_close(self, side: Side, code: int | None, reason: str | None, error: str | None = None) -> None:
        if self.close is None:
            self.close = CloseInfo(side.value, code, reason)
            if error and self.error is None:
                self.error = error

    def _send_close(self, side: Side, code: int | None, reason: str | None, out: Output) -> None:
        if self._sent_close[side]:
            return
        self._sent_close[side] = True
        if self._scan[side.other].mid_frame:
            out.hangup.add(side)  # a close frame cannot go inside the frame it is in the middle of
            return
        mask = os.urandom(4) if side is Side.UPSTREAM else None
        out.to[side] += close_frame(code, reason or "", mask)

    def close_both(self, code: int, reason: str) -> Output:
        """The proxy ends the pair itself (idle timeout 1011, shutdown 1001)."""
        out = Output()
        if self.close is None:
            self.close = CloseInfo("proxy", code, reason)
        for side in Side:
            self._send_close(side, code, reason, out)
        return out
