"""Small real network peers for tests: an HTTP CONNECT proxy and a TLS front.

Each runs threads on 127.0.0.1:0 and joins them all on stop().
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from typing import Callable


def _pipe(a: socket.socket, b: socket.socket, stopping: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    socks = [a, b]
    while not stopping.is_set():
        readable, _, _ = select.select(socks, [], [], 0.1)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            (b if sock is a else a).sendall(data)


def read_head(sock: socket.socket) -> bytes | None:
    """Bytes up to and past the blank line that ends an HTTP head; None if the peer
    closed first."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        head += chunk
    return head


class _Server:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.socks: list[socket.socket] = []
        self._accept = threading.Thread(target=self._loop)

    def start(self) -> "_Server":
        self._accept.start()
        return self

    def _loop(self) -> None:
        while not self.stopping.is_set():
            readable, _, _ = select.select([self.listener], [], [], 0.1)
            if readable:
                sock, _ = self.listener.accept()
                self.socks.append(sock)
                t = threading.Thread(target=self._guarded, args=(sock,))
                self.threads.append(t)
                t.start()

    def _guarded(self, sock: socket.socket) -> None:
        try:
            self.handle(sock)
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    def handle(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopping.set()
        self._accept.join()
        self.listener.close()
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join()

    def __enter__(self) -> "_Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ConnectProxy(_Server):
    """An HTTP CONNECT proxy that records each CONNECT target."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.auth: list[str | None] = []

    def handle(self, sock: socket.socket) -> None:
        head = read_head(sock)
        if head is None:
            return
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].decode().split(" ", 2)
        self.targets.append(target)
        auth = [l.split(b":", 1)[1].strip().decode() for l in lines[1:] if l.lower().startswith(b"proxy-authorization:")]
        self.auth.append(auth[0] if auth else None)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host.strip("[]"), int(port)))
        self.socks.append(upstream)
        try:
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _pipe(sock, upstream, self.stopping)
        finally:
            upstream.close()


class TlsFront(_Server):
    """Terminates TLS with a test CA's certificate and forwards plaintext to a backend."""

    def __init__(self, backend_port: int, context: ssl.SSLContext) -> None:
        super().__init__()
        self.backend_port = backend_port
        self.context = context

    def handle(self, sock: socket.socket) -> None:
        tls = self.context.wrap_socket(sock, server_side=True)
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        self.socks.append(backend)
        try:
            _pipe(tls, backend, self.stopping)
        finally:
            backend.close()
            tls.close()


ServerFactory = Callable[[], _Server]
