"""Waiting for sockets to become readable, for any descriptor number.

``select.select`` refuses descriptors of 1024 and above (FD_SETSIZE), which a
busy proxy reaches after ~500 WebSockets; ``poll`` has no such ceiling. Where
the platform has no ``poll`` (Windows), ``selectors.DefaultSelector`` is used.

TLS sockets may hold decrypted bytes the kernel no longer reports: those
count as readable at once.
"""

from __future__ import annotations

import math
import select
import selectors
import socket
import ssl
import time
from typing import Callable

# readable, or a condition the next recv reports (EOF, reset): either way the caller must recv
_POLL_MASK = (getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)
              | getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16))


def _has_pending(sock: socket.socket) -> bool:
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def _poll_ms(timeout_s: float | None) -> int | None:
    if timeout_s is None:
        return None
    return max(0, math.ceil(timeout_s * 1000))  # rounded up: never a busy loop of 0 ms waits


def ready(socks: list[socket.socket], timeout_s: float | None) -> list[socket.socket]:
    """The sockets of ``socks`` that are readable within ``timeout_s`` (None: wait forever).

    Raises OSError/ValueError for a socket that is already closed.
    """
    pending = [s for s in socks if _has_pending(s)]
    if pending:
        return pending
    if hasattr(select, "poll"):
        poller = select.poll()
        by_fd = {}
        for sock in socks:
            fd = sock.fileno()
            if fd < 0:
                raise ValueError("waiting on a closed socket")
            by_fd[fd] = sock
            poller.register(fd, _POLL_MASK)
        return [by_fd[fd] for fd, _ in poller.poll(_poll_ms(timeout_s))]
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in sel.select(timeout_s)]  # type: ignore[misc]


def wait_readable(sock: socket.socket, timeout_s: float) -> bool:
    """True if ``sock`` has bytes (or EOF) within ``timeout_s``."""
    return bool(ready([sock], max(timeout_s, 0.0)))


class ReadWatch:
    """Readiness of one socket, registered once: a pump asks it before every
    recv, so the registration is not rebuilt per wait (one ``poll`` syscall).
    What a wait needs is looked up once too: it runs once per frame batch."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._poll: Callable[[int | None], list[tuple[int, int]]] | None = None
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock.fileno(), _POLL_MASK)
            self._poll = poller.poll

    @property
    def plain_poll(self) -> Callable[[int | None], list[tuple[int, int]]] | None:
        """``poll(ms)`` on this socket alone, for a caller that waits once per
        recv, when nothing else can hold its bytes (not TLS); else None."""
        return None if self._tls else self._poll

    def wait(self, timeout_s: float) -> bool:
        """True if a recv would not block within ``timeout_s`` (bytes, EOF or an error)."""
        poll = self._poll
        if poll is None or (self._tls and _has_pending(self.sock)):
            return wait_readable(self.sock, timeout_s)
        return bool(poll(_poll_ms(max(timeout_s, 0.0))))


def readable_now(sock: socket.socket) -> bool:
    """True if a recv on ``sock`` would not block; False for a closed socket too."""
    try:
        return bool(ready([sock], 0.0))
    except (OSError, ValueError):
        return False


def wait_watching(source: socket.socket, watched: socket.socket, deadline: float,
                  on_watched: Callable[[], bool]) -> bool:
    """Block until ``source`` is readable (True) or ``deadline`` (monotonic) passes (False).

    Meanwhile, each time ``watched`` is readable ``on_watched()`` runs; it may
    raise to end the wait, and returns whether to keep watching (the proxy
    waits on upstream while noticing a client that hangs up or pipelines).
    """
    socks = [source, watched]
    while True:
        left = deadline - time.monotonic()
        got = ready(socks, max(left, 0.0))
        if source in got:
            return True
        if left <= 0:
            return False
        if watched in got and not on_watched():
            socks = [source]
