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
from enum import Enum

from . import closecodes
from .record import CloseInfo
from .wsscan import FrameScanner, Found, Violation, close_frame

MAX_FRAME_BYTES = 64 * 1024 * 1024  # a frame announcing more is refused with 1009
RECORD_LIMIT = 64 * 1024 * 1024


class Side(str, Enum):
    """Who sent a frame (or is to be sent one): the one spelling of a direction
    inside the relay, mapped to the log's spellings where records are made."""

    CLIENT = "client"
    UPSTREAM = "upstream"


# Plain names and a table: an Enum's class attribute, property or iteration
# costs more than the rest of a frame's way through the hot path.
CLIENT, UPSTREAM = Side.CLIENT, Side.UPSTREAM
SIDES = (CLIENT, UPSTREAM)
OTHER = {CLIENT: UPSTREAM, UPSTREAM: CLIENT}

Run = tuple[Side, int, list[Found]]
_NOBODY: frozenset[Side] = frozenset()  # (sender, seq of its first message, the messages in order)


class Output:
    """What one bridge call produced: bytes per side, messages seen, sides to hang up.

    ``runs``: the data messages passed on, one run per sender, each message
    numbered (``seq``) in the order the bridge passed messages on across
    both directions.
    """

    __slots__ = ("to", "runs", "hangup")

    def __init__(self, to: dict[Side, bytes] | None = None, runs: list[Run] | None = None) -> None:
        self.to: dict[Side, bytes] = {CLIENT: b"", UPSTREAM: b""} if to is None else to
        self.runs: list[Run] = [] if runs is None else runs
        self.hangup: frozenset[Side] = _NOBODY


class _Leg:
    """One side's frames and how far its closing has gone."""

    __slots__ = ("side", "scanner", "pending", "other", "sent_close", "got_close", "read_done")

    def __init__(self, side: Side, scanner: FrameScanner, pending: bytes) -> None:
        self.side = side
        self.scanner = scanner
        self.pending = pending    # bytes that came with the handshake, fed by ``start``
        self.other = self
        self.sent_close = False
        self.got_close = False
        self.read_done = False    # EOF or a violation

    @property
    def wants_read(self) -> bool:
        return not (self.read_done or self.got_close)


class WsBridge:
    """The client leg (we are its server: its frames are masked) and the
    upstream leg (we are its client: we mask what we send it)."""

    def __init__(self, client_trailing: bytes = b"", upstream_trailing: bytes = b"",
                 record_limit: int = RECORD_LIMIT, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        client = _Leg(CLIENT, FrameScanner(True, max_frame_bytes, record_limit), client_trailing)
        upstream = _Leg(UPSTREAM, FrameScanner(False, max_frame_bytes, record_limit), upstream_trailing)
        client.other, upstream.other = upstream, client
        self._legs = {CLIENT: client, UPSTREAM: upstream}
        self.close: CloseInfo | None = None
        self.error: str | None = None
        self._seq = 0

    # -- queries ----------------------------------------------------------

    def wants_read(self, side: Side) -> bool:
        """True while bytes from ``side`` still matter (no close, EOF or violation from it)."""
        return self._legs[side].wants_read

    @property
    def is_closing(self) -> bool:
        return self.close is not None

    @property
    def is_finished(self) -> bool:
        """Both sides are done: closed on the wire, or no longer read."""
        return all(leg.read_done or (leg.got_close and leg.sent_close) for leg in self._legs.values())

    @property
    def frame_counts(self) -> dict[Side, int]:
        """Data messages sent by each side."""
        return {side: leg.scanner.messages for side, leg in self._legs.items()}

    @property
    def byte_counts(self) -> dict[Side, int]:
        """Payload bytes of those messages."""
        return {side: leg.scanner.payload_bytes for side, leg in self._legs.items()}

    # -- input ------------------------------------------------------------

    def start(self) -> Output:
        """Process bytes that arrived with the handshakes (``trailing_data``)."""
        out = Output()
        for leg in self._legs.values():
            data, leg.pending = leg.pending, b""
            if data:
                self._feed_into(leg, data, out)
        return out

    def feed(self, side: Side, data: bytes | None) -> Output:
        """Bytes received from ``side`` (None at EOF) -> what to send where.

        Once per recv: the common case (frames that pass on, no closing)
        builds its Output in one go; everything else goes through ``_feed_into``.
        """
        leg = self._legs[side]
        if data is None or self.close is not None:  # (no close, drop or violation yet: both legs are open)
            out = Output()
            self._feed_into(leg, data, out)
            return out
        found: list[Found] = []
        scanner = leg.scanner
        forward = scanner.feed(data, found)
        out = Output({side: b"", leg.other.side: forward}, [(side, self._seq + 1, found)] if found else None)
        self._seq += len(found)
        if scanner.done:
            if scanner.violation is not None:
                self._on_violation(leg, scanner.violation, out)
            elif scanner.close is not None:
                self._on_close(leg, scanner.close, out)
        return out

    def _feed_into(self, leg: _Leg, data: bytes | None, out: Output) -> None:
        if leg.read_done or leg.got_close:
            return  # bytes after this side's close frame carry nothing for us
        if data is None:
            self._on_eof(leg, out)
            return
        found: list[Found] = []
        scanner = leg.scanner
        forward = scanner.feed(data, found)
        if forward and not leg.other.sent_close:
            out.to[leg.other.side] += forward
        if found:
            out.runs.append((leg.side, self._seq + 1, found))
            self._seq += len(found)
        if scanner.violation is not None:
            self._on_violation(leg, scanner.violation, out)
        elif scanner.close is not None:
            self._on_close(leg, scanner.close, out)

    def _on_eof(self, leg: _Leg, out: Output) -> None:
        leg.read_done = True
        self._note_close(leg.side, closecodes.ABNORMAL, None)
        self._send_close(leg.other, closecodes.INTERNAL_ERROR, "peer connection dropped", out)

    def _on_violation(self, leg: _Leg, exc: Violation, out: Output) -> None:
        leg.read_done = True
        self._note_close(leg.side, exc.code, str(exc),
                         error=f"{leg.side.value} violated the WebSocket protocol: {exc}")
        self._send_close(leg, exc.code, None, out)
        self._send_close(leg.other, closecodes.INTERNAL_ERROR, "peer protocol error", out)

    def _on_close(self, leg: _Leg, close: tuple[int | None, str], out: Output) -> None:
        code, reason = close
        reason = closecodes.cut_reason(reason)
        leg.got_close = True
        self._note_close(leg.side, closecodes.NO_STATUS if code is None else code, reason or None)
        self._send_close(leg, code, reason, out)  # the echo, RFC 6455 5.5.1 (if we had not closed first)
        self._send_close(leg.other, closecodes.forward_code(code), reason, out)

    # -- closing ------------------------------------------------------------

    def _note_close(self, side: Side, code: int | None, reason: str | None, error: str | None = None) -> None:
        if self.close is None:
            self.close = CloseInfo(side.value, code, reason)
            if error and self.error is None:
                self.error = error

    def _send_close(self, leg: _Leg, code: int | None, reason: str | None, out: Output) -> None:
        if leg.sent_close:
            return
        leg.sent_close = True
        if leg.other.scanner.mid_frame:
            out.hangup |= {leg.side}  # a close frame cannot go inside the frame it is in the middle of
            return
        mask = os.urandom(4) if leg.side is UPSTREAM else None
        out.to[leg.side] += close_frame(code, reason or "", mask)

    def close_both(self, code: int, reason: str) -> Output:
        """The proxy ends the pair itself (idle timeout 1011, shutdown 1001)."""
        out = Output()
        if self.close is None:
            self.close = CloseInfo("proxy", code, reason)
        for leg in self._legs.values():
            self._send_close(leg, code, reason, out)
        return out
