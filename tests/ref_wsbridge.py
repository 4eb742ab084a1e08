"""Sans-IO WebSocket bridge: two wsproto connections back to back.

Bytes from one side go in (``feed``); bytes for each side, the data messages
seen and how the pair closed come out. No sockets, threads or clocks here:
``ws_relay`` owns those and serialises calls into one bridge.

Rules (DESIGN.md "WebSocket transport"):
- Frames pass through as frames: a frame's pieces are gathered until the
  frame is complete (or ``MAX_PIECE_BYTES`` is held) and sent with the same
  FIN bit, so message boundaries and fragmentation survive.
- Ping and pong are passed on, not answered (the far side answers).
- A close from one side is echoed to it at once (RFC 6455 5.5.1) and passed
  to the other side via ``closecodes.forward_code``; the first close seen is
  the one recorded.
- A TCP drop (``feed(side, None)``) closes the other side with 1011 and is
  recorded as 1006.
- A protocol violation (wsproto reports it as a CloseConnection without a
  state change) is answered with wsproto's code (1002, or 1007 for bad
  UTF-8) to the violating side and 1011 to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from ccxray import closecodes
from ccxray.record import CloseInfo

MAX_PIECE_BYTES = 1 << 20  # hold at most this much of one frame before passing it on
DIRECTION = {"client": "c2u", "upstream": "u2c"}


def payload_size(frame_bytes: int, masked: bool) -> int:
    """Payload length of one serialised frame from its total length (RFC 6455 5.2):
    2 header bytes, plus 2 or 8 for the extended length, plus 4 for a mask."""
    rest = frame_bytes - 2 - (4 if masked else 0)
    if rest <= 125:
        return rest
    if rest - 2 <= 0xFFFF:
        return rest - 2
    return rest - 8


class Side(str, Enum):
    CLIENT = "client"
    UPSTREAM = "upstream"

    @property
    def other(self) -> "Side":
        return Side.UPSTREAM if self is Side.CLIENT else Side.CLIENT


@dataclass
class MessageSeen:
    """A complete data message that was passed on (for the recorder)."""

    direction: str
    text: str | None        # None for binary
    size: int
    truncated: bool = False
    seq: int = 0            # order in which the bridge passed messages on, both directions


@dataclass
class Output:
    """What one feed produced: bytes per side, messages seen."""

    to: dict[Side, bytearray] = field(default_factory=lambda: {Side.CLIENT: bytearray(), Side.UPSTREAM: bytearray()})
    messages: list[MessageSeen] = field(default_factory=list)


@dataclass
class _Inbound:
    """Per-direction assembly state."""

    piece: list[bytes | bytearray | str] = field(default_factory=list)
    piece_bytes: int = 0
    message: list[str] = field(default_factory=list)
    message_size: int = 0
    keep: bool = True


class WsBridge:
    """Back-to-back wsproto connections: ``client_ws`` (we are its server) and
    ``upstream_ws`` (we are its client)."""

    def __init__(self, client_trailing: bytes = b"", upstream_trailing: bytes = b"",
                 record_limit: int = 64 * 1024 * 1024) -> None:
        self.ws = {
            Side.CLIENT: Connection(ConnectionType.SERVER),
            Side.UPSTREAM: Connection(ConnectionType.CLIENT),
        }
        self._inbound = {Side.CLIENT: _Inbound(), Side.UPSTREAM: _Inbound()}
        self._pending = {Side.CLIENT: client_trailing, Side.UPSTREAM: upstream_trailing}
        self.record_limit = record_limit
        self.close: CloseInfo | None = None
        self.error: str | None = None
        self.frame_counts = {"clientToUpstream": 0, "upstreamToClient": 0}
        self.byte_counts = {"clientToUpstream": 0, "upstreamToClient": 0}
        self.read_done = {Side.CLIENT: False, Side.UPSTREAM: False}
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- queries ----------------------------------------------------------

    def is_open(self, side: Side) -> bool:
        return self.ws[side].state is ConnectionState.OPEN

    @property
    def is_closing(self) -> bool:
        return self.close is not None

    @property
    def is_finished(self) -> bool:
        """Both sides are done: closed on the wire, or no longer read."""
        return all(self.ws[s].state is ConnectionState.CLOSED or self.read_done[s] for s in Side)

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
        conn = self.ws[side]
        if self.read_done[side]:
            return
        if data is None:
            self._on_eof(side, out)
            return
        if conn.state not in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            return  # bytes after this side's close frame carry nothing for us
        conn.receive_data(data)
        events = conn.events()
        while True:
            before = conn.state  # a close event moves the state as it is yielded
            event = next(events, None)
            if event is None or self._on_event(side, event, before, out):
                return

    def _on_eof(self, side: Side, out: Output) -> None:
        self.read_done[side] = True
        if self.ws[side].state is ConnectionState.CLOSED:
            return
        self._note_close(side, closecodes.ABNORMAL, None)
        self._send_close(side.other, closecodes.INTERNAL_ERROR, "peer connection dropped", out)

    def _on_event(self, side: Side, event: Event, before: ConnectionState, out: Output) -> bool:
        """Handle one event; True when this side must not be read any more."""
        if isinstance(event, CloseConnection):
            return self._on_close(side, event, before, out)
        if isinstance(event, (TextMessage, BytesMessage)):
            self._on_data(side, event, out)
        elif isinstance(event, Ping):
            self._send(side.other, Ping(payload=event.payload), out)
        elif isinstance(event, Pong):
            self._send(side.other, Pong(payload=event.payload), out)
        return False

    # -- data ---------------------------------------------------------------

    def _on_data(self, side: Side, event: TextMessage | BytesMessage, out: Output) -> None:
        inbound = self._inbound[side]
        if event.frame_finished and event.message_finished and not inbound.piece and not inbound.message_size:
            self._whole_message(side, event, out)  # the common case, kept short
            return
        is_text = isinstance(event, TextMessage)
        data = event.data
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
        inbound.piece.append(data)
        inbound.piece_bytes += size
        self._note_message_part(side, inbound, data if isinstance(data, str) else None, size)
        if event.frame_finished or inbound.piece_bytes >= MAX_PIECE_BYTES:
            joined: str | bytes = "".join(inbound.piece) if is_text else b"".join(inbound.piece)  # type: ignore[arg-type]
            inbound.piece.clear()
            inbound.piece_bytes = 0
            fin = event.message_finished and event.frame_finished
            msg = TextMessage(data=joined, message_finished=fin) if is_text else BytesMessage(data=joined, message_finished=fin)  # type: ignore[arg-type]
            self._send(side.other, msg, out)
        if event.message_finished and event.frame_finished:
            self._finish_message(side, inbound, is_text, out)

    def _whole_message(self, side: Side, event: TextMessage | BytesMessage, out: Output) -> None:
        """A one-frame message: pass it on, count it, note it for the recorder."""
        data = event.data
        target = side.other
        before = len(out.to[target])
        self._send(target, event, out)
        sent = len(out.to[target]) - before
        if isinstance(data, str):
            size = payload_size(sent, masked=target is Side.UPSTREAM) if sent else len(data.encode("utf-8"))
            keep = size <= self.record_limit
            text: str | None = data if keep else None
        else:
            size, keep, text = len(data), True, None
        key = "clientToUpstream" if side is Side.CLIENT else "upstreamToClient"
        self.frame_counts[key] += 1
        self.byte_counts[key] += size
        out.messages.append(MessageSeen(DIRECTION[side.value], text, size, truncated=not keep, seq=self._next_seq()))

    def _note_message_part(self, side: Side, inbound: _Inbound, text: str | None, size: int) -> None:
        inbound.message_size += size
        if text is not None and inbound.keep:
            if inbound.message_size > self.record_limit:
                inbound.keep = False
                inbound.message.clear()
            else:
                inbound.message.append(text)

    def _finish_message(self, side: Side, inbound: _Inbound, is_text: bool, out: Output) -> None:
        key = "clientToUpstream" if side is Side.CLIENT else "upstreamToClient"
        self.frame_counts[key] += 1
        self.byte_counts[key] += inbound.message_size
        text = "".join(inbound.message) if is_text and inbound.keep else None
        out.messages.append(MessageSeen(DIRECTION[side.value], text, inbound.message_size, seq=self._next_seq(),
                                        truncated=is_text and not inbound.keep))
        inbound.message.clear()
        inbound.message_size = 0
        inbound.keep = True

    # -- closing ------------------------------------------------------------

    def _on_close(self, side: Side, event: CloseConnection, before: ConnectionState, out: Output) -> bool:
        conn = self.ws[side]
        if conn.state is before:  # wsproto's report of a violation: the state did not move
            self.read_done[side] = True
            self._note_close(side, event.code, event.reason, error=f"{side.value} violated the WebSocket protocol: {event.reason}")
            self._send_close(side, event.code if event.code in (1002, 1007, 1009) else closecodes.PROTOCOL_ERROR, None, out)
            self._send_close(side.other, closecodes.INTERNAL_ERROR, "peer protocol error", out)
            return True
        code = None if event.code == CloseReason.NO_STATUS_RCVD else int(event.code)
        reason = closecodes.cut_reason(event.reason)
        self._note_close(side, closecodes.NO_STATUS if code is None else code, reason or None)
        if conn.state is ConnectionState.REMOTE_CLOSING:
            self._send_close(side, code, reason, out)  # echo, RFC 6455 5.5.1
        self._send_close(side.other, closecodes.forward_code(code), reason, out)
        return True

    def _note_close(self, side: Side, code: int | None, reason: str | None, error: str | None = None) -> None:
        if self.close is None:
            self.close = CloseInfo(side.value, code, reason)
            if error and self.error is None:
                self.error = error

    def _send_close(self, side: Side, code: int | None, reason: str | None, out: Output) -> None:
        conn = self.ws[side]
        if conn.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        code = closecodes.wire_code(code)
        if code is None:
            event = CloseConnection(code=CloseReason.NO_STATUS_RCVD)
        else:
            event = CloseConnection(code=code, reason=closecodes.cut_reason(reason) or None)
        out.to[side] += conn.send(event)

    def close_both(self, code: int, reason: str) -> Output:
        """The proxy ends the pair itself (idle timeout 1011, shutdown 1001)."""
        out = Output()
        if self.close is None:
            self.close = CloseInfo("proxy", code, reason)
        for side in Side:
            self._send_close(side, code, reason, out)
        return out

    def _send(self, side: Side, event: Event, out: Output) -> None:
        conn = self.ws[side]
        if conn.state is ConnectionState.OPEN:
            out.to[side] += conn.send(event)
