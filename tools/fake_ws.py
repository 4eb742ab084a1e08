"""The fake upstream's WebSocket side: ``WsSession`` and the handshake helpers.

After the 101 (RFC 6455 section 4.2.2) a ``WsSession`` owns the socket: it
reads client messages through a wsproto server ``Connection``, answers pings,
records frames, pongs and the close in ``seen``, and runs one WebSocket mode
handler (``_WS_HANDLERS``). Close frames and the invalid frame are written by
hand (``close_frame``, ``INVALID_FRAME``), because wsproto rewrites or
refuses the codes RFC 6455 section 7.4 forbids. ``accept_token``,
``negotiate_deflate`` and ``is_ws_path`` serve the handshake in
``fake_http``. The server is only named for typing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event as WsEvent,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from tools.fake_modes import Mode
from tools.fake_payloads import Json, bench_frames, bench_turn_frames, codex_events, parse_json_object, pattern_bytes
from tools.fake_shared import FakeContext, CLOSE_WAIT_S, IDLE_TIMEOUT_S, RECV_BYTES, wait_for_hangup


MAX_CLOSE_REASON_BYTES = 123  # a control frame payload is at most 125 bytes
INVALID_FRAME = b"\x83\x00"  # FIN + reserved opcode 0x3, empty payload
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


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


# ---------------------------------------------------------------- WebSocket


ClientMessage = str | bytes


class WsSession:
    """One accepted WebSocket: reads client messages, answers control frames, runs a mode."""

    def __init__(self, server: FakeContext, sock: socket.socket, client_ws: WsConnection, entry: Json) -> None:
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


def _ws_turns(session: WsSession, mode: Mode) -> None:
    frames = [TextMessage(data=text) for text in bench_turn_frames(mode.number or 0)]
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
    "turns": _ws_turns,
    "slow-reader": _ws_slow_reader,
    "send-big": _ws_send_big,
    # "refuse" and "never-answer" are handled before the 101, in HttpConnection.
}
