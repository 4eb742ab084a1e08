"""WebSocket proxying: the transparent handshake, then two pump threads.

Theory of operation:
- Handshake first, upstream first: the client's upgrade is replayed to
  upstream (same key, subprotocols and headers; the permessage-deflate offer
  is dropped so frames cross both legs uncompressed and unchanged). The
  client gets upstream's answer: its 101, or its refusal status and body.
  Until then, bytes the client pipelines are held up to
  CCXRAY_WS_MAX_QUEUE_BYTES (past that: 413). The whole handshake is bounded
  by the idle timeout (504).
- Then one pump per direction: the connection's own thread reads the client
  (c2u), one new thread reads upstream (u2c). Each waits for its source to be
  readable (``poll``, the idle and close deadlines as its timeout), then
  reads it. All bridge state is behind one lock; each socket has a send lock
  held from taking its pending bytes to the end of sendall, so frames reach
  the wire in the bridge's order. A socket that
  stops reading blocks sendall, which stops its pump reading the other side:
  backpressure, never unbounded buffering.
- Peer first, recorder second: messages go to the recorder after sendall.
- However it ends, exactly one WsClosed is submitted and both sockets closed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import h11

from . import closecodes
from . import headers as hdr
from .app import ConnEntry
from .clientconn import ClientConn
from .errors import ClientGone, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from .http_relay import decode_headers, encode_headers
from .inflight import InFlightRegistry
from .netio import RECV_BYTES, UpstreamConn, UpstreamPool, close_quietly, make_blocking
from .record import CloseInfo, WsClosed, WsOpened
from .recorder import Item
from .routing import Route
from .waits import wait_watching
from .ws_pair import Pair
from .wsbridge import Side, WsBridge

log = logging.getLogger("ccxray.ws")
MAX_REFUSAL_BYTES = 1 << 20
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_token(key: str) -> str:
    """RFC 6455 4.2.2: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1(key.strip().encode("latin-1") + WS_GUID).digest()).decode()


@dataclass
class Handshake:
    """What upstream answered to the replayed upgrade."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    upstream_trailing: bytes = b""


@dataclass(frozen=True)
class WsServices:
    """What a WebSocket session uses of the proxy: upstream sockets, the recorder's
    two entry points, the live page's registry and two settings."""

    pool: UpstreamPool
    submit: Callable[[Item], None]
    new_id: Callable[[], str]
    inflight: InFlightRegistry
    idle_timeout_s: float
    max_held_bytes: int


class HandshakeFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Upgrade:
    """The handshake phase, on the connection's thread."""

    def __init__(self, pool: UpstreamPool, client: ClientConn, headers: list[tuple[str, str]], where: Route,
                 timeout_s: float, max_held: int) -> None:
        self.pool = pool
        self.client = client
        self.headers = headers
        self.where = where
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.max_held = max_held
        self.held = bytearray()
        self.up: UpstreamConn | None = None
        self.up_sock: socket.socket | None = None  # outlives ``up``: closed by whoever ends the session

    def finish(self) -> bytes:
        """After the 101: the client bytes held meanwhile; the HTTP state is dropped
        (an idle session keeps only what its frames need)."""
        held, self.held, self.up = bytes(self.held), bytearray(), None
        return held

    def upstream_headers(self) -> list[tuple[str, str]]:
        assert self.where.upstream is not None
        kept = hdr.forwardable(self.headers, drop=hdr.WS_HANDSHAKE)
        return [("Host", self.where.upstream.host_header)] + kept + [("Connection", "Upgrade"), ("Upgrade", "websocket")]

    def run(self) -> Handshake:
        """Open upstream and replay the upgrade; raise HandshakeFailed with the status to answer."""
        assert self.where.upstream is not None
        self._check_held()
        request = h11.Request(method="GET", target=self.where.target.encode("latin-1"),
                              headers=encode_headers(self.upstream_headers()))
        try:
            self.up_sock = self.pool.open(self.where.upstream)
            self.up = UpstreamConn(self.where.upstream, self.up_sock)
            self.up.send(request, h11.EndOfMessage())
            return self._await_answer(self.up)
        except (UpstreamConnectError, UpstreamTimeout, UpstreamProtocolError) as exc:
            raise HandshakeFailed(exc.status_hint, f"WebSocket upgrade: {exc}") from exc

    def _await_answer(self, up: UpstreamConn) -> Handshake:
        answer: Handshake | None = None
        while True:
            event = up.next_event()
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                return Handshake(101, decode_headers(list(event.headers.raw_items())), b"", up.proto.trailing_data[0])
            if isinstance(event, h11.Response):
                answer = Handshake(event.status_code, decode_headers(list(event.headers.raw_items())))
            elif isinstance(event, h11.Data) and answer is not None:
                answer.body = (answer.body + event.data)[:MAX_REFUSAL_BYTES]
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) and answer is not None:
                return answer
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                raise HandshakeFailed(502, "upstream closed the connection during the WebSocket upgrade")
            elif event is h11.NEED_DATA:
                self._wait_upstream(up)
                up.feed(up.recv_some())

    def _wait_upstream(self, up: UpstreamConn) -> None:
        """Wait for upstream bytes; meanwhile hold what the client pipelines (bounded)."""
        def on_client() -> bool:
            self._hold_client_bytes()
            return True

        if not wait_watching(up.sock, self.client.sock, self.deadline, on_client):
            raise HandshakeFailed(504, f"upstream did not answer the WebSocket upgrade within {self.timeout_s:g}s")

    def _hold_client_bytes(self) -> None:
        try:
            data = self.client.sock.recv(RECV_BYTES)
        except OSError as exc:
            raise ClientGone(f"client failed during the upgrade: {exc}") from exc
        if not data:
            raise ClientGone("client closed before upstream answered the upgrade")
        self.held += data
        self._check_held()

    def _check_held(self) -> None:
        limit = self.max_held
        if len(self.held) + len(self.client.h11.trailing_data[0]) > limit:
            raise HandshakeFailed(413, f"client sent more than {limit} bytes before upstream accepted "
                                       "the WebSocket (CCXRAY_WS_MAX_QUEUE_BYTES)")


def _answer_refusal(client: ClientConn, shake: Handshake) -> None:
    headers = hdr.forwardable(shake.headers, drop=("content-length",))
    headers += [("Content-Length", str(len(shake.body))), ("Connection", "close")]
    events: list[h11.Event] = [h11.Response(status_code=shake.status, headers=encode_headers(headers))]
    if shake.body:
        events.append(h11.Data(data=shake.body))
    client.send(*events, h11.EndOfMessage())


def _check_accept(shake: Handshake, key: str) -> None:
    if hdr.get(shake.headers, "sec-websocket-accept") != accept_token(key):
        raise HandshakeFailed(502, "upstream answered the upgrade with a wrong Sec-WebSocket-Accept")
    if hdr.get(shake.headers, "sec-websocket-extensions"):
        raise HandshakeFailed(502, "upstream chose a WebSocket extension that was not offered")


def _accept_client(client: ClientConn, shake: Handshake) -> None:
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade")] + hdr.forwardable(shake.headers)
    client.send(h11.InformationalResponse(status_code=101, headers=encode_headers(headers)))


def _count_keys(counts: dict[Side, int] | None) -> dict[str, int]:
    """Per-sender counts in the index line's spelling."""
    counts = counts or {}
    return {"clientToUpstream": counts.get(Side.CLIENT, 0), "upstreamToClient": counts.get(Side.UPSTREAM, 0)}


class WsSession:
    """One proxied WebSocket from upgrade to the recorded end."""

    def __init__(self, services: WsServices, client: ClientConn, entry: ConnEntry, target: str,
                 headers: list[tuple[str, str]], where: Route) -> None:
        self.services = services
        self.client = client
        self.entry = entry
        self.key = hdr.get(headers, "sec-websocket-key") or ""
        self.conn_id = services.new_id()
        self.t0 = time.monotonic()
        self.upgrade = Upgrade(services.pool, client, headers, where, services.idle_timeout_s,
                               services.max_held_bytes)
        assert where.upstream is not None
        services.submit(WsOpened(self.conn_id, time.time(), target, where.provider,
                                 where.upstream.url(where.target), headers))

    def run(self) -> None:
        self.entry.on_abort.append(self._abort_upstream)
        try:
            shake = self._handshake()
            if shake is not None:
                self._relay(shake)
        finally:
            self.entry.on_abort.remove(self._abort_upstream)
            self.entry.on_stop.clear()
            close_quietly(self.upgrade.up_sock)

    def _abort_upstream(self) -> None:
        close_quietly(self.upgrade.up_sock)

    def _closed(self, status: int, close: CloseInfo, error: str | None, shake: Handshake | None = None,
                bridge: WsBridge | None = None) -> None:
        self.services.submit(WsClosed(
            self.conn_id, status, shake.headers if shake else [], shake.body if shake else b"", close,
            _count_keys(bridge.frame_counts if bridge else None), _count_keys(bridge.byte_counts if bridge else None),
            time.monotonic() - self.t0, error))

    def _handshake(self) -> Handshake | None:
        try:
            shake = self.upgrade.run()
            if shake.status == 101:
                _check_accept(shake, self.key)
        except HandshakeFailed as exc:
            self._refuse(exc.status, str(exc))
            return None
        except ClientGone as exc:
            self._closed(499, CloseInfo("client", None), str(exc))
            return None
        if shake.status != 101:
            self._send_refusal(shake)
            return None
        return shake

    def _refuse(self, status: int, message: str) -> None:
        try:
            self.client.send_error(status, message, close=True)
        except ClientGone:
            pass
        self._closed(status, CloseInfo("proxy", None), message)

    def _send_refusal(self, shake: Handshake) -> None:
        try:
            _answer_refusal(self.client, shake)
        except ClientGone:
            pass
        self._closed(shake.status, CloseInfo("upstream", None), f"upstream refused the WebSocket upgrade with {shake.status}", shake)

    def _relay(self, shake: Handshake) -> None:
        try:
            _accept_client(self.client, shake)
        except ClientGone as exc:
            self._closed(101, CloseInfo("client", closecodes.ABNORMAL), str(exc), shake)
            return
        idle_s = self.services.idle_timeout_s
        up_sock = self.upgrade.up_sock
        assert up_sock is not None
        make_blocking(up_sock, idle_s)
        make_blocking(self.client.sock, idle_s)
        bridge = WsBridge(self.client.h11.trailing_data[0] + self.upgrade.finish(), shake.upstream_trailing)
        shake.upstream_trailing = b""  # the bridge has it now
        pair = Pair(self.conn_id, self.client.sock, up_sock, bridge, self.services.submit, idle_s)
        self.entry.on_stop.append(lambda: pair.close_both(closecodes.GOING_AWAY, "ccxray is shutting down"))
        failure: str | None = None
        try:
            self._pump_both(pair)
        except Exception as exc:  # a bug must still end in a recorded line and closed sockets
            log.exception("ccxray: WebSocket %s failed", self.conn_id)
            failure = f"proxy error: {exc!r}"
            pair.terminate()
        close = bridge.close or CloseInfo(None, None)
        idle = close.side == "proxy" and close.code == closecodes.INTERNAL_ERROR
        status = 502 if failure else 504 if idle else 101
        error = failure or bridge.error or (f"idle timeout after {idle_s:g}s" if idle else None)
        self._closed(status, close, error, shake, bridge)

    def _pump_both(self, pair: Pair) -> None:
        """c2u on this thread, u2c on a new one; returns when both are done."""
        pair.apply(pair.bridge.start())
        u2c = threading.Thread(target=pair.pump_guarded, args=(Side.UPSTREAM,), name=f"ccxray-ws-u2c-{self.conn_id}")
        u2c.start()  # RuntimeError (no more threads) is caught by the caller: 502, recorded
        try:
            pair.pump(Side.CLIENT)
        except BaseException:
            pair.terminate()  # wake the other pump now, not at the idle deadline
            raise
        finally:
            if not u2c.is_alive():
                pair.terminate()
            u2c.join(self._join_budget(pair))
            pair.terminate()
            u2c.join()

    def _join_budget(self, pair: Pair) -> float:
        return max(pair.time_left(), 0.0) + 0.1


def relay_websocket(services: WsServices, client: ClientConn, entry: ConnEntry, target: str,
                    headers: list[tuple[str, str]], where: Route) -> None:
    """Proxy one WebSocket upgrade; returns when the pair is over and recorded."""
    session = WsSession(services, client, entry, target, headers, where)
    with services.inflight.track(session.conn_id, "WS", target, where.provider, "websocket", headers):
        session.run()
