"""Upstream sockets: TCP or TLS, optionally through an HTTP CONNECT tunnel,
wrapped in an h11 client connection, and a small keep-alive pool per origin.

Errors are translated here, at the boundary (httpcore style): callers see
UpstreamConnectError, UpstreamTimeout or UpstreamProtocolError, each naming
the upstream and the environment variable that chose it.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import h11

from .config import ProxyTunnel, Upstream
from .errors import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from .resolve import AddressCache
from .waits import readable_now

RECV_BYTES = 65536
BODY_RECV_BYTES = 256 * 1024  # reads once a response is large: fewer trips through h11
MAX_IDLE_PER_ORIGIN = 32  # an agent's burst of parallel calls finds its sockets again, not new connects
MAX_IDLE_TOTAL = 3 * MAX_IDLE_PER_ORIGIN  # Anthropic, OpenAI and ChatGPT each; counted in the fd reserve
POOL_IDLE_S = 60.0
TRUST_IDLE_S = 1.0
MAX_TUNNEL_REPLY_BYTES = 16384


def tune(sock: socket.socket) -> None:
    """TCP_NODELAY: without it Nagle plus delayed ACKs add ~40 ms per response."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not a TCP socket (tests may hand us a socketpair)


def make_blocking(sock: socket.socket, send_timeout_s: float) -> None:
    """Blocking mode (no hidden poll before each recv/send: we poll ourselves
    where we wait), with a kernel send timeout so a peer that stops reading
    cannot hold a writer forever (send then fails with EAGAIN)."""
    if sock.gettimeout() is not None:  # settimeout(None) is a syscall even when nothing changes
        sock.settimeout(None)
    seconds = int(send_timeout_s)
    micros = int((send_timeout_s - seconds) * 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, micros))


def close_quietly(sock: socket.socket | None) -> None:
    """Shut down and close; a socket that is already gone is fine."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _where(up: Upstream) -> str:
    return f"{up.host}:{up.port} ({up.env_name})"


def _open_tcp(host: str, port: int, timeout_s: float, what: str, addresses: AddressCache | None) -> socket.socket:
    try:
        if addresses is None:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        else:
            sock = addresses.connect(host, port, timeout_s)
    except socket.timeout as exc:
        raise UpstreamTimeout(f"connecting to {what} timed out after {timeout_s:g}s") from exc
    except OSError as exc:
        raise UpstreamConnectError(f"cannot connect to {what}: {exc}") from exc
    tune(sock)
    return sock


def _read_tunnel_reply(sock: socket.socket, what: str) -> None:
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk or len(reply) > MAX_TUNNEL_REPLY_BYTES:
            raise UpstreamConnectError(f"HTTPS_PROXY closed or garbled the CONNECT to {what}")
        reply += chunk
    status_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].startswith("2"):
        raise UpstreamConnectError(f"HTTPS_PROXY refused CONNECT to {what}: {status_line}")
    if not reply.endswith(b"\r\n\r\n"):
        raise UpstreamProtocolError(f"HTTPS_PROXY sent data before the tunnel to {what} opened")


def _open_tunnel(tunnel: ProxyTunnel, up: Upstream, timeout_s: float, addresses: AddressCache | None) -> socket.socket:
    what = _where(up)
    sock = _open_tcp(tunnel.host, tunnel.port, timeout_s, f"HTTPS_PROXY {tunnel.host}:{tunnel.port}", addresses)
    authority = f"{up.host}:{up.port}" if ":" not in up.host else f"[{up.host}]:{up.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if tunnel.authorization:
        lines.append(f"Proxy-Authorization: {tunnel.authorization}")
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        _read_tunnel_reply(sock, what)
    except socket.timeout as exc:
        close_quietly(sock)
        raise UpstreamTimeout(f"HTTPS_PROXY did not open a tunnel to {what} in {timeout_s:g}s") from exc
    except (OSError, UpstreamConnectError, UpstreamProtocolError) as exc:
        close_quietly(sock)
        if isinstance(exc, (UpstreamConnectError, UpstreamProtocolError)):
            raise
        raise UpstreamConnectError(f"HTTPS_PROXY tunnel to {what} failed: {exc}") from exc
    return sock


def tls_context() -> ssl.SSLContext:
    """A verifying client context (system CAs, or SSL_CERT_FILE), HTTP/1.1 only."""
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def open_socket(
    up: Upstream, tunnel: ProxyTunnel | None, connect_timeout_s: float, tls: ssl.SSLContext | None = None,
    addresses: AddressCache | None = None,
) -> socket.socket:
    """A connected (and, for https, verified TLS) socket to the upstream (addresses: resolved once, reused)."""
    if tunnel is not None and tunnel.applies_to(up.host):
        sock = _open_tunnel(tunnel, up, connect_timeout_s, addresses)
    else:
        sock = _open_tcp(up.host, up.port, connect_timeout_s, _where(up), addresses)
    if not up.is_tls:
        return sock
    try:
        return (tls or tls_context()).wrap_socket(sock, server_hostname=up.host)
    except socket.timeout as exc:
        close_quietly(sock)
        raise UpstreamTimeout(f"TLS handshake with {_where(up)} timed out") from exc
    except (ssl.SSLError, OSError) as exc:
        close_quietly(sock)
        raise UpstreamConnectError(f"TLS handshake with {_where(up)} failed: {exc}") from exc


def _client_proto() -> h11.Connection:
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=RECV_BYTES)


@dataclass(eq=False)
class UpstreamConn:
    """One upstream socket and the h11 client state machine that speaks on it."""

    upstream: Upstream
    sock: socket.socket
    proto: h11.Connection = field(default_factory=_client_proto)
    idle_since: float = 0.0
    reused: bool = False
    bytes_in: int = 0  # bytes received in the current request/response cycle

    def send(self, *events: h11.Event) -> None:
        """Serialise the events and write them in one sendall."""
        data = b"".join(self.proto.send(e) or b"" for e in events)
        try:
            self.sock.sendall(data)
        except socket.timeout as exc:
            raise UpstreamTimeout(f"writing to {_where(self.upstream)} timed out") from exc
        except OSError as exc:
            raise UpstreamConnectError(f"writing to {_where(self.upstream)} failed: {exc}") from exc

    def recv_some(self) -> bytes:
        """One recv; b"" at EOF (h11's EOF marker). Translates socket errors."""
        try:
            # small reads for small answers (a 256 KiB buffer costs an mmap per read),
            # large ones once this response has shown it is large
            return self.sock.recv(BODY_RECV_BYTES if self.bytes_in >= RECV_BYTES else RECV_BYTES)
        except socket.timeout as exc:
            raise UpstreamTimeout(f"{_where(self.upstream)} sent nothing for too long") from exc
        except OSError as exc:
            raise UpstreamProtocolError(f"reading from {_where(self.upstream)} failed: {exc}") from exc

    def recv_into(self, view: memoryview, now: bool = False) -> int:
        """One read into ``view``: the count, 0 at EOF. ``now``: only what is already
        there, -1 if nothing is (the caller then waits and reads again, one poll
        saved per read while a large body keeps coming: the socket is blocking,
        with no timeout, or CPython would poll before the read anyway).
        Translates socket errors."""
        try:
            if not now:
                return self.sock.recv_into(view)
            if isinstance(self.sock, ssl.SSLSocket):  # TLS reads take no flags: its own buffer or wait
                return self.sock.recv_into(view) if self.sock.pending() else -1
            return self.sock.recv_into(view, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return -1
        except socket.timeout as exc:
            raise UpstreamTimeout(f"{_where(self.upstream)} sent nothing for too long") from exc
        except OSError as exc:
            raise UpstreamProtocolError(f"reading from {_where(self.upstream)} failed: {exc}") from exc

    def has_unread(self) -> bool:
        """Bytes (or EOF) wait on the socket: after a body read to its exact end,
        an upstream that sent more than it announced (or closed) is not reused."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            return readable_now(self.sock)
        except (OSError, ValueError):
            return True

    def feed(self, data: bytes) -> None:
        """Give received bytes (b"" at EOF) to h11."""
        self.bytes_in += len(data)
        self.proto.receive_data(data)

    def has_buffered(self) -> bool:
        """True when h11 holds received bytes (or EOF) not yet turned into events."""
        data, closed = self.proto.trailing_data
        return bool(data) or closed

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """h11's next event, translating its RemoteProtocolError."""
        try:
            return self.proto.next_event()
        except h11.RemoteProtocolError as exc:
            raise UpstreamProtocolError(f"{_where(self.upstream)} broke HTTP/1.1: {exc}") from exc

    def close(self) -> None:
        close_quietly(self.sock)

    def body_read_outside(self, reusable: bool) -> None:
        """The relay read the response body past h11 (see bodyframe): h11 still
        expects it, so a connection that may serve again gets a new state
        machine, ready for its next request; one that may not is closed."""
        if reusable:
            self.proto = _client_proto()
        else:
            self.close()

    def is_reusable(self) -> bool:
        states = (self.proto.our_state, self.proto.their_state)
        return states == (h11.DONE, h11.DONE) or states == (h11.IDLE, h11.IDLE)


def _looks_alive(sock: socket.socket) -> bool:
    """An idle pooled socket must have nothing to read: readable means EOF or junk."""
    try:
        return sock.fileno() >= 0 and not readable_now(sock)
    except OSError:
        return False


class UpstreamPool:
    """Idle keep-alive upstream connections, a few per origin.

    Thread-safe without a lock on the hot path (a deque per origin); a
    connection is owned by exactly one caller between acquire() and
    release()/discard.
    """

    def __init__(self, tunnel: ProxyTunnel | None, connect_timeout_s: float, read_timeout_s: float) -> None:
        self._tunnel = tunnel
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        # per origin, most recently used last; deque appends and pops are thread-safe on their own
        self._idle: dict[Upstream, deque[UpstreamConn]] = {}
        self._lock = threading.Lock()  # only for the lazily built TLS context
        self._closed = False
        self._tls: ssl.SSLContext | None = None
        self._addresses = AddressCache()

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = tls_context()
            return self._tls

    def open(self, up: Upstream) -> socket.socket:
        """A new socket to ``up`` with this pool's timeouts, tunnel and TLS context."""
        tls = self._tls_context() if up.is_tls else None
        sock = open_socket(up, self._tunnel, self._connect_timeout_s, tls, self._addresses)
        make_blocking(sock, self._read_timeout_s)
        return sock

    def _take_idle(self, up: Upstream) -> UpstreamConn | None:
        stack = self._idle.get(up)
        now = time.monotonic()
        while stack:
            try:
                conn = stack.pop()  # deque pops are atomic: no lock for the 32 threads to queue on
            except IndexError:
                return None  # another thread took the last one meanwhile
            idle = now - conn.idle_since
            # a connection used a moment ago is taken on trust (a stale one is retried on a fresh
            # socket, see http_relay); one idle for longer is checked for a close first
            if idle < POOL_IDLE_S and (idle < TRUST_IDLE_S or _looks_alive(conn.sock)):
                return conn
            conn.close()
        return None

    def acquire(self, up: Upstream, fresh: bool = False) -> UpstreamConn:
        """An idle connection to ``up`` if one is alive, else a new one."""
        conn = None if fresh else self._take_idle(up)
        if conn is not None:
            if conn.proto.our_state is not h11.IDLE:  # IDLE: a new state machine already
                conn.proto.start_next_cycle()
            conn.reused = True
            conn.bytes_in = 0
            return conn
        return UpstreamConn(up, self.open(up))

    def release(self, conn: UpstreamConn) -> None:
        """Return a finished connection for reuse, or close it if it cannot be reused."""
        if not conn.is_reusable():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        stack = self._idle.get(conn.upstream)
        if stack is None:
            stack = self._idle.setdefault(conn.upstream, deque())
        if self._fits(stack, 0):
            stack.append(conn)
            if self._fits(stack, 1):  # checked again: threads racing past a bound take theirs back
                return
            try:
                stack.remove(conn)
            except ValueError:
                return  # close() or a request took it meanwhile: not ours to close
        conn.close()

    def _fits(self, stack: deque[UpstreamConn], added: int) -> bool:
        """Room in the pool (the per-origin and total caps; the fd reserve counts on the total)."""
        if self._closed or len(stack) - added >= MAX_IDLE_PER_ORIGIN:
            return False
        return sum(len(s) for s in list(self._idle.values())) - added < MAX_IDLE_TOTAL

    def close(self) -> None:
        """Close every idle connection; later releases close instead of pooling."""
        self._closed = True
        self._close_idle()

    def _close_idle(self) -> None:
        for stack in list(self._idle.values()):
            while stack:
                try:
                    conn = stack.pop()
                except IndexError:
                    break
                conn.close()
