"""Forward one HTTP exchange: the agent's request to upstream, the answer back.

Theory of operation (one thread, the client connection's):
- The request body is already read (bounded by the body cap), so a request
  that fails on a reused keep-alive upstream connection before any response
  byte arrived is retried once on a fresh connection.
- The response streams. h11 parses the head; a body framed by
  Content-Length or chunked is then read by the relay itself (bodyframe),
  each recv relayed whole at once in the client's framing, so the head goes
  out with the first body bytes when they arrived together and an SSE event
  is never held back (no buffering, no added first-byte delay), without an
  h11 event per chunk. Any other body (read to close) goes through h11's
  events, flushed whenever we would block on upstream.
- While waiting on upstream we also watch the client socket: a client that
  hangs up releases the upstream connection at once.
- Once the response head has gone out, an error can only be signalled by
  closing the client connection without finishing the body.
- Peer first, recorder second: the call is submitted after the last byte.
"""

from __future__ import annotations

import time
from typing import Callable, cast

import h11

from . import headers as hdr
from .bodyframe import ChunkedDecoder, ChunkedError, LengthBody
from .bodykeep import BodyKeeper
from .clientconn import ClientConn
from .config import Settings
from .errors import ClientGone, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from .netio import UpstreamConn, UpstreamPool
from .record import HttpCall
from .routing import Route
from .waits import wait_watching

UpstreamError = (UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout)
DROP_REQUEST = ("expect", "content-length")
FLUSH_BYTES = 256 * 1024
BODY_READ_BYTES = 256 * 1024  # the reused buffer of a spilling body: fewer reads, stays in cache


def decode_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]


def encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


def relayed_request(method: bytes, target: str, headers: list[tuple[str, str]]) -> h11.Request:
    """The request head for upstream. Its fields are the ones h11 parsed from the
    client (its header regexes already ran on every name and value) plus our Host
    (from the configured URL) and a Content-Length we counted, so h11 is told they
    are parsed and does not run the same regexes again (~5 us a request). Method,
    target, Host count and framing are still checked as for any event."""
    return h11.Request(method=method, target=target.encode("latin-1"), headers=encode_headers(headers),
                       _parsed=True)


def relayed_response(head: h11.Response, headers: list[tuple[str, str]]) -> h11.Response:
    """The response head for the client: upstream's, as h11 parsed it, minus what
    is not forwarded; like :func:`relayed_request`, not validated a second time."""
    return h11.Response(status_code=head.status_code, reason=head.reason, headers=encode_headers(headers),
                        _parsed=True)


def upstream_request_headers(req_headers: list[tuple[str, str]], route: Route, body_len: int,
                             drop: tuple[str, ...] = DROP_REQUEST) -> list[tuple[str, str]]:
    """Client headers as sent, minus hop-by-hop/auth, with Host rewritten first."""
    assert route.upstream is not None
    out = [("Host", route.upstream.host_header)] + hdr.forwardable(req_headers, drop)
    if body_len or any(n.lower() == "content-length" for n, _ in req_headers):
        out.append(("Content-Length", str(body_len)))
    return out


def _keeps_alive(head: h11.Response) -> bool:
    """Whether upstream may take another request on this connection after this answer."""
    if head.http_version != b"1.1":
        return False
    return not any(n.lower() == b"connection" and b"close" in v.lower() for n, v in head.headers.raw_items())


def _wait_readable(up: UpstreamConn, client: ClientConn, timeout_s: float) -> None:
    """Block until upstream has bytes; raise ClientGone if the agent hangs up first."""
    def on_client() -> bool:
        if client.is_gone():
            raise ClientGone("client hung up while waiting for upstream")
        return False  # pipelined bytes: not our business until this exchange ends

    if not wait_watching(up.sock, client.sock, time.monotonic() + timeout_s, on_client):
        raise UpstreamTimeout(f"{up.upstream.host}:{up.upstream.port} sent nothing for {timeout_s:g}s")


class Exchange:
    """One request/response through the proxy, with its recording."""

    def __init__(self, client: ClientConn, pool: UpstreamPool, settings: Settings,
                 call: HttpCall, route: Route, submit: Callable[[HttpCall], None]) -> None:
        self.client = client
        self.pool = pool
        self.settings = settings
        self.call = call
        self.route = route
        self.submit = submit
        self.t0 = time.monotonic()
        self.body = BodyKeeper(settings.record_max_bytes, settings.max_body_bytes,
                               f"{settings.logs_dir}/{call.id}_res.body")
        self.finished = False
        self.head_only = False  # a HEAD request: the answer has no body whatever it says
        self.head: h11.Response | None = None

    def run(self, req: h11.Request) -> bool:
        """Relay the exchange; True if the client connection may be reused.

        Whatever happens, the call is recorded exactly once (an unexpected
        error still propagates to the connection's top frame, which logs it).
        """
        self.head_only = req.method == b"HEAD"
        try:
            return self._run(req)
        finally:
            if not self.finished:
                self._finish("internal proxy error (see ccxray's log)")

    def _run(self, req: h11.Request) -> bool:
        try:
            up, head = self._open(req)
        except UpstreamError as exc:
            return self._fail_before_head(exc.status_hint, exc)
        except h11.LocalProtocolError as exc:  # a request h11 will not write as it came: say so, don't crash
            return self._fail_before_head(502, UpstreamProtocolError(f"cannot forward this request: {exc}"))
        except ClientGone as exc:
            self._finish(str(exc))
            return False
        return self._stream(up, head)

    def _open(self, req: h11.Request) -> tuple[UpstreamConn, h11.Response]:
        assert self.route.upstream is not None
        body = self.call.req_body
        headers = upstream_request_headers(self.call.req_headers, self.route, len(body))
        events: list[h11.Event] = [relayed_request(req.method, self.route.target, headers)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        for attempt in (0, 1):
            up = self.pool.acquire(self.route.upstream, fresh=attempt > 0)
            try:
                up.send(*events)
                return up, self._await_head(up)
            except (UpstreamConnectError, UpstreamProtocolError):
                up.close()
                if not up.reused or up.bytes_in:
                    raise
            except BaseException:
                up.close()
                raise
        raise AssertionError("unreachable: the second attempt uses a fresh connection")

    def _await_head(self, up: UpstreamConn) -> h11.Response:
        # the request just went out: unless bytes were already buffered, h11 could only say NEED_DATA
        event = up.next_event() if up.has_buffered() else h11.NEED_DATA
        while True:
            if isinstance(event, h11.Response):
                return event
            if event is h11.NEED_DATA:
                _wait_readable(up, self.client, self.settings.read_timeout_s)
                up.feed(up.recv_some())
            elif not isinstance(event, h11.InformationalResponse):  # 100 Continue and friends stay here
                raise UpstreamProtocolError(f"upstream closed before answering ({type(event).__name__})")
            event = up.next_event()

    def _stream(self, up: UpstreamConn, head: h11.Response) -> bool:
        call = self.call
        self.head = head
        call.status = head.status_code
        call.resp_headers = decode_headers(head.headers.raw_items())
        call.first_byte_s = time.monotonic() - self.t0
        out = bytearray()
        try:
            out += self.client.encode(relayed_response(head, hdr.forwardable(call.resp_headers)))
            streaming = "text/event-stream" in (hdr.get(call.resp_headers, "content-type") or "")
            self._pump_body(up, out, streaming)
        except ClientGone as exc:
            up.close()
            self._finish(f"client disconnected mid-response: {exc}")
            return False
        except (*UpstreamError, h11.LocalProtocolError) as exc:
            up.close()
            self._flush_quietly(out)
            self._finish(f"upstream failed mid-response: {exc}")
            return False
        except BaseException:
            up.close()  # never leak the upstream socket, whatever went wrong
            raise
        self.pool.release(up)
        self._finish(None)
        return True

    def _pump_body(self, up: UpstreamConn, out: bytearray, streaming: bool) -> None:
        """Relay the body: a framed one (Content-Length, chunked) read by the
        relay itself a recv at a time, any other (no body, read to close) by h11."""
        reader = self._framed_reader()
        if reader is None:
            self._pump_events(up, out, streaming)
        else:
            self._pump_framed(up, out, reader)

    def _framed_reader(self) -> LengthBody | ChunkedDecoder | None:
        """How the response body is framed, when the relay can read it past h11."""
        status = self.call.status or 0
        if self.head_only or status in (204, 304) or status < 200:
            return None
        names = [(n.lower(), v) for n, v in self.call.resp_headers]
        coding = [v for n, v in names if n == "transfer-encoding"]
        if coding:  # h11 refused the head unless it ends in chunked
            return ChunkedDecoder()
        length = [v for n, v in names if n == "content-length"]
        if not length:
            return None
        reader = LengthBody(int(length[0].split(",")[0]))
        self.body.expect(reader.left)
        return reader

    def _pump_framed(self, up: UpstreamConn, out: bytearray, reader: LengthBody | ChunkedDecoder) -> None:
        """Each recv is relayed whole as soon as it is read: its payload goes to
        the client as one piece in the client's framing (the head rides with
        the first bytes already read with it). Then the upstream connection is
        given back to the pool ready for its next request (body_read_outside)."""
        data, closed = up.proto.trailing_data
        while True:
            try:
                payload = reader.feed(data)
            except ChunkedError as exc:
                raise UpstreamProtocolError(f"{up.upstream.host}:{up.upstream.port} broke chunked framing: {exc}") from exc
            pieces: list[bytes | memoryview] = [bytes(out)] if out else []
            if payload:
                body = payload[0] if len(payload) == 1 else b"".join(payload)
                self._keep(body)
                pieces += self._client_pieces(body)
            if reader.done:
                self._end_framed(up, reader, pieces)
                return
            if pieces:
                self.client.send_pieces(pieces)
                out.clear()
            if closed:
                raise self._cut_short(up)
            if isinstance(reader, LengthBody) and self.body.spills_whole:
                self._pump_spilled(up, reader)
                return
            _wait_readable(up, self.client, self.settings.read_timeout_s)
            data = up.recv_some()
            up.bytes_in += len(data)
            closed = not data

    def _pump_spilled(self, up: UpstreamConn, reader: LengthBody) -> None:
        """The rest of a body of known length that goes to its file whole: read
        into one reused buffer, never past the body's end, each read sent and
        spilled from that buffer. Bytes are copied only where they are kept
        (the head and tail the recorder reads), as with the pump of the design card."""
        view = memoryview(bytearray(BODY_READ_BYTES))
        while not reader.done:
            room = view[:min(BODY_READ_BYTES, reader.left)]
            got = up.recv_into(room, now=True)
            if got < 0:
                _wait_readable(up, self.client, self.settings.read_timeout_s)
                got = up.recv_into(room)
            if not got:
                raise self._cut_short(up)
            up.bytes_in += got
            chunk = room[:got]
            reader.count(got)
            self.client.send_pieces(self._client_pieces(chunk))
            self.body.add(chunk)
        self._end_framed(up, reader, [], up.has_unread())

    def _client_pieces(self, body: bytes | memoryview) -> list[bytes | memoryview]:
        """``body`` in the client's framing: h11 writes the framing, the bytes pass through."""
        # h11 only measures the data and hands it back: a view of the read buffer goes out as it is
        return list(self.client.h11.send_with_data_passthrough(h11.Data(data=cast(bytes, body))) or [])

    def _end_framed(self, up: UpstreamConn, reader: LengthBody | ChunkedDecoder,
                    pieces: list[bytes | memoryview], unread: bool = False) -> None:
        """The body is whole: end it for the client; ``unread``: upstream sent more after it."""
        pieces.append(self.client.encode(h11.EndOfMessage()))
        self.client.send_pieces(pieces)
        extra = unread or bool(reader.leftover)
        up.body_read_outside(not extra and self.head is not None and _keeps_alive(self.head))

    @staticmethod
    def _cut_short(up: UpstreamConn) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"{up.upstream.host}:{up.upstream.port} closed the connection "
                                     "before the end of the response body")

    def _pump_events(self, up: UpstreamConn, out: bytearray, streaming: bool) -> None:
        """Relay body events. Bytes go out whenever upstream has nothing more
        ready, every FLUSH_BYTES (bounded memory for large bodies) and, for a
        stream, right after its first chunk (the head and the first SSE event
        are never held behind the rest of a read)."""
        first = streaming
        while True:
            event = up.next_event()
            if isinstance(event, h11.Data):
                out += self.client.encode(h11.Data(data=event.data))
                self._keep(event.data)
                if first or len(out) >= FLUSH_BYTES:
                    self.client.sendall(out)
                    out.clear()
                    first = False
            elif isinstance(event, h11.EndOfMessage):
                out += self.client.encode(h11.EndOfMessage())
                if out:
                    self.client.sendall(out)
                return
            elif event is h11.NEED_DATA:
                if out:
                    self.client.sendall(out)
                    out.clear()
                _wait_readable(up, self.client, self.settings.read_timeout_s)
                up.feed(up.recv_some())
            else:
                raise UpstreamProtocolError(f"unexpected {type(event).__name__} in the response body")

    def _keep(self, data: bytes) -> None:
        self.body.add(bytes(data))

    def _flush_quietly(self, out: bytearray) -> None:
        try:
            if out:
                self.client.sendall(out)
        except ClientGone:
            pass

    def _fail_before_head(self, status: int, exc: Exception) -> bool:
        self.call.status = status
        reusable = False
        try:
            if self.client.can_answer():
                self.client.send_error(status, str(exc))
                reusable = True
        except ClientGone:
            pass
        self._finish(str(exc))
        return reusable

    def _finish(self, error: str | None) -> None:
        self.finished = True
        self._hand_over_body()
        self.call.error = error
        self.call.elapsed_s = time.monotonic() - self.t0
        self.submit(self.call)

    def _hand_over_body(self) -> None:
        body, call = self.body, self.call
        body.close()
        call.resp_body, call.resp_size, call.resp_truncated = body.head, body.size, body.truncated
        call.resp_note = body.error
        if body.spilled:
            call.resp_spill = f"{call.id}_res.body"
            call.resp_tail = body.tail_bytes()
