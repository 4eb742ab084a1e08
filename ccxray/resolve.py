"""Upstream addresses, resolved once and reused for a short while.

Every WebSocket opens a fresh upstream connection, and so does every HTTP
call the keep-alive pool cannot serve. Without a caching resolver on the
machine, ``getaddrinfo`` asks DNS each time: milliseconds on the path of the
handshake. Answers are kept per (host, port) for ``TTL_S``; a connect that
fails on every cached address forgets them, so the next one resolves afresh
(an upstream that moved is found again at once).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

TTL_S = 30.0

AddrInfo = tuple[Any, Any, int, str, Any]  # getaddrinfo's (family, type, proto, canonname, sockaddr)
Resolve = Callable[[str, int], list[AddrInfo]]


def resolve_stream(host: str, port: int) -> list[AddrInfo]:
    """``getaddrinfo`` for a TCP connection, as ``socket.create_connection`` asks it."""
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)


class AddressCache:
    """Thread-safe; one per upstream pool."""

    def __init__(self, ttl_s: float = TTL_S, resolve: Resolve = resolve_stream,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._resolve = resolve
        self._clock = clock
        self._known: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}
        self._lock = threading.Lock()

    def lookup(self, host: str, port: int) -> list[AddrInfo]:
        """The addresses of ``host:port``, from the cache while fresh. Raises socket.gaierror."""
        now = self._clock()
        with self._lock:
            known = self._known.get((host, port))
        if known is not None and now < known[0]:
            return known[1]
        infos = self._resolve(host, port)  # outside the lock: DNS may take a while
        if infos:
            with self._lock:
                self._known[(host, port)] = (now + self._ttl_s, infos)
        return infos

    def _promote(self, host: str, port: int, info: AddrInfo) -> None:
        with self._lock:
            known = self._known.get((host, port))
            if known is not None and info in known[1]:
                self._known[(host, port)] = (known[0], [info] + [i for i in known[1] if i != info])

    def forget(self, host: str, port: int) -> None:
        with self._lock:
            self._known.pop((host, port), None)

    def connect(self, host: str, port: int, timeout_s: float) -> socket.socket:
        """A connected socket, trying each address in turn (``socket.create_connection``'s way).

        The address that answered goes first for the next connect, so an
        unreachable one (an IPv6 route that is down) is not tried every time.
        Raises the last OSError (socket.timeout included) when none answers.
        """
        error: OSError | None = None
        infos = self.lookup(host, port)
        for at, (family, kind, proto, _name, sockaddr) in enumerate(infos):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout_s)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            if at:
                self._promote(host, port, infos[at])
            return sock
        self.forget(host, port)
        raise error if error is not None else OSError(f"no address found for {host}:{port}")
