"""The agent's side of one TCP connection: an h11 server state machine over a socket.

Owns reading request heads and bodies with the slow-client limits, and
writing responses. Errors are named by side: ClientProtocolError (with the
status to answer), ClientGone (the agent hung up).
"""

from __future__ import annotations

import json
from http import HTTPStatus
import socket
import ssl
import time
from typing import Sequence

import h11

from .errors import ClientGone, ClientProtocolError
from .netio import make_blocking
from .requestcheck import ChunkSizeWatcher
from .waits import readable_now, wait_readable

RECV_BYTES = 65536
MAX_HEAD_BYTES = 64 * 1024
IOV_MAX = 1024  # buffers per sendmsg (the POSIX minimum of IOV_MAX)


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase (curl and humans read it; h11 sends none by default)."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class ClientConn:
    """h11 SERVER + socket. Used by one thread at a time (the connection's)."""

    def __init__(self, sock: socket.socket, addr: tuple[str, int] | None = None,
                 send_timeout_s: float = 600.0) -> None:
        make_blocking(sock, send_timeout_s)
        self.sock = sock
        self.addr = addr
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.method = b""
        self.chunked = False

    # -- reading ------------------------------------------------------------

    def _recv(self, timeout_s: float) -> bytes:
        """One recv within ``timeout_s`` (socket.timeout if nothing came)."""
        try:
            if not wait_readable(self.sock, timeout_s):
                raise socket.timeout(f"nothing from the client in {timeout_s:g}s")
            return self.sock.recv(RECV_BYTES)
        except (OSError, ValueError) as exc:
            if isinstance(exc, socket.timeout):
                raise
            raise ClientGone(f"client connection failed: {exc}") from exc

    def _next(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise ClientProtocolError(f"malformed request: {exc}", exc.error_status_hint) from exc

    def read_request(self, idle_s: float, head_s: float) -> h11.Request | None:
        """The next request head, or None when the client closed or idled out.

        ``idle_s`` bounds the wait for a new request's first byte on a
        keep-alive connection; ``head_s`` bounds the whole head once started
        (slowloris). A started but unfinished head gets ClientProtocolError(408).
        """
        deadline: float | None = None
        buffered, closed = self.h11.trailing_data
        fed = len(buffered)  # pipelined bytes left from the previous request
        # an idle connection with nothing buffered can only be NEED_DATA: go straight to the wait
        event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] = h11.NEED_DATA
        if fed or closed or self.h11.their_state is not h11.IDLE:
            event = self._next()
        while True:
            if isinstance(event, h11.Request):
                self.method = event.method
                self.chunked = any(name.lower() == b"transfer-encoding" for name, _ in event.headers.raw_items())
                # h11 bounds a head only while it is incomplete; one that arrived in a
                # few large reads is measured here: all bytes fed minus what follows it
                if fed - len(self.h11.trailing_data[0]) > MAX_HEAD_BYTES:
                    raise ClientProtocolError(f"request head over {MAX_HEAD_BYTES} bytes", 431)
                return event
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if event is not h11.NEED_DATA:
                raise ClientProtocolError(f"unexpected {type(event).__name__} before a request")
            if deadline is None and fed:  # a head has started (pipelined bytes): its clock runs
                deadline = time.monotonic() + head_s
            try:
                data = self._recv(idle_s if deadline is None else deadline - time.monotonic())
            except socket.timeout:
                if deadline is None:
                    return None
                raise ClientProtocolError("request head not received in time", 408) from None
            if data and deadline is None:
                deadline = time.monotonic() + head_s
            fed += len(data)
            self.h11.receive_data(data)
            event = self._next()

    def wants_100_continue(self) -> bool:
        return self.h11.they_are_waiting_for_100_continue

    def read_body(self, limit: int, timeout_s: float, overall_s: float | None = None) -> bytes:
        """The whole request body (at most ``limit`` bytes, else ClientProtocolError(413)).

        ``timeout_s`` bounds each wait for more bytes, ``overall_s`` the whole
        body (a client trickling a byte at a time gets 408 all the same). A
        chunk size beyond ``limit`` is refused (400) as soon as it is read.
        """
        if self.wants_100_continue():
            self.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        deadline = time.monotonic() + (timeout_s if overall_s is None else overall_s)
        watcher = ChunkSizeWatcher(limit) if self.chunked else None
        if watcher is not None:
            watcher.feed(self.h11.trailing_data[0])
        body = bytearray()
        while True:
            event = self._next()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise ClientProtocolError(f"request body exceeds {limit} bytes", 413)
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            elif event is h11.NEED_DATA:
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise socket.timeout("body deadline passed")
                    data = self._recv(min(timeout_s, left))
                except socket.timeout:
                    raise ClientProtocolError("request body not received in time", 408) from None
                if watcher is not None:
                    watcher.feed(data)
                self.h11.receive_data(data)
                if not data:
                    raise ClientGone("client closed before sending the whole body")
            else:
                raise ClientProtocolError(f"unexpected {type(event).__name__} in a request body")

    def is_gone(self) -> bool:
        """True if the client has hung up (EOF), without consuming pipelined bytes."""
        try:
            if self.sock.fileno() < 0:
                return True
            if not readable_now(self.sock):
                return False
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- writing ------------------------------------------------------------

    def encode(self, event: h11.Event) -> bytes:
        return self.h11.send(event) or b""

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Write bytes; a failure means the agent went away (ClientGone)."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientGone(f"client went away while we answered: {exc}") from exc

    def send_pieces(self, pieces: Sequence[bytes | memoryview]) -> None:
        """Write several buffers as one (``sendmsg``: no copy to join them); ClientGone on failure."""
        if not all(pieces):  # (an empty one, e.g. the end of a Content-Length body, is no syscall)
            pieces = [p for p in pieces if p]
            if not pieces:
                return
        if len(pieces) == 1:
            self.sendall(pieces[0])
            return
        if isinstance(self.sock, ssl.SSLSocket):
            self.sendall(b"".join(pieces))
            return
        views = [memoryview(p) for p in pieces]
        try:
            while views:
                sent = self.sock.sendmsg(views[:IOV_MAX])
                while sent:  # a partial write: drop what went, go on from there
                    if sent < len(views[0]):
                        views[0], sent = views[0][sent:], 0
                    else:
                        sent -= len(views.pop(0))
        except OSError as exc:
            raise ClientGone(f"client went away while we answered: {exc}") from exc

    def send(self, *events: h11.Event) -> None:
        self.sendall(b"".join(self.encode(e) for e in events))

    def send_simple(self, status: int, body: bytes, content_type: str,
                    extra: list[tuple[str, str]] | None = None, close: bool = False) -> None:
        """A complete response with a fixed body (HEAD requests get no body)."""
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))] + (extra or [])
        if close:
            headers.append(("Connection", "close"))
        events: list[h11.Event] = [h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))]
        if body and self.method != b"HEAD":
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        self.send(*events)

    def send_error(self, status: int, message: str, close: bool = False) -> None:
        """ccxray's own error answer: JSON {"error": "proxy_error", "message": ...}."""
        body = json.dumps({"error": "proxy_error", "message": message}).encode()
        self.send_simple(status, body, "application/json", close=close)

    def can_answer(self) -> bool:
        """True while no response has started (an error status can still be sent)."""
        return self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    def next_cycle(self) -> bool:
        """Prepare for the next keep-alive request; False if the connection must close."""
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        self.method = b""  # an error before the next head must not be framed as a HEAD answer
        return True
