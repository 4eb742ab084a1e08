"""The fake upstream's HTTP/1.1 side: one ``HttpConnection`` per accepted socket.

``HttpConnection`` serves h11 exchanges (RFC 9112) until the client closes
or an answer ends the connection, answers the ``/_fake/*`` control
endpoints, runs the HTTP mode handlers (``_HTTP_HANDLERS``) and, for a
WebSocket upgrade, sends the 101 and hands the socket with h11's trailing
data to ``fake_ws.WsSession``. The server is only named for typing, so this
module never imports ``fake_upstream`` at run time.
"""

from __future__ import annotations

import gzip
import itertools
import os
import socket
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import h11
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.extensions import Extension

from tools.fake_answers import (
    CONTENT_JSON,
    CONTENT_SSE,
    REASONS,
    Answer,
    Exchange,
    echo_object,
    normal_answer,
    response_head,
)
from tools.fake_modes import HTTP_MODES, WS_MODES, Mode, ModeError, parse_mode
from tools.fake_payloads import anthropic_agent_events, json_bytes, parse_json_object, pattern_pieces, sse_data
from tools.fake_shared import FakeContext, IDLE_TIMEOUT_S, RECV_BYTES, STEP_TIMEOUT_S, wait_for_peer_eof
from tools.fake_ws import WsSession, accept_token, is_ws_path, negotiate_deflate


class HttpConnection:
    """Serves HTTP/1.1 exchanges on one accepted socket; hands a WebSocket upgrade to WsSession."""

    def __init__(self, server: FakeContext, sock: socket.socket) -> None:
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



AGENT_RATE_LIMIT_HEADERS = (
    (b"anthropic-ratelimit-unified-5h-utilization", b"0.42"),
    (b"anthropic-ratelimit-unified-5h-reset", b"1893456000"),
    (b"anthropic-ratelimit-unified-status", b"allowed"),
)


def _http_agent(conn: HttpConnection, ex: Exchange, mode: Mode) -> None:
    """A Claude Code-like agent step (thinking, text, a tool call), with rate-limit headers."""
    events = anthropic_agent_events(parse_json_object(ex.body), conn.server.next_number())
    conn.send_stream(events, extra=AGENT_RATE_LIMIT_HEADERS)


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
    "agent": _http_agent,
}
