"""State and socket waits shared by the fake upstream's server, HTTP and WebSocket sides.

The timeouts every wait is bounded by, ``SeenLog`` (every request and
handshake seen, all access under one Condition), ``StepGate`` (permits for
``stepped`` streams, woken by the server's stopping Event) and the socket
waits that ``FakeUpstream.stop()`` can always end by shutting the socket
down.
"""

from __future__ import annotations

import copy
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from tools.fake_payloads import Json, json_bytes


IDLE_TIMEOUT_S = 30.0  # upper bound of every wait in the fake
STEP_TIMEOUT_S = 30.0  # a stepped stream ends if no step() comes in this time
CLOSE_WAIT_S = 5.0  # after sending a close frame, wait this long for the peer's
STOP_JOIN_S = 10.0  # stop() logs a thread that is still alive after this
RECV_BYTES = 65536
POLLRDHUP = getattr(select, "POLLRDHUP", 0)  # Linux only: peer shut its side


# ---------------------------------------------------------------- shared state


class SeenLog:
    """Every request and handshake the fake saw; all access under one Condition.

    Bounded so long benchmarks don't grow without limit: beyond ``max_entries``
    the oldest entry goes (counted in ``dropped``), and a WebSocket entry keeps
    at most ``max_entries`` frames (the rest counted in its ``frames_dropped``).
    """

    def __init__(self, max_entries: int = 1000) -> None:
        self._cond = threading.Condition()
        self._entries: list[Json] = []
        self.max_entries = max_entries
        self.dropped = 0

    def add(self, entry: Json) -> Json:
        with self._cond:
            self._entries.append(entry)
            if len(self._entries) > self.max_entries:
                del self._entries[0]
                self.dropped += 1
            self._cond.notify_all()
        return entry

    def update(self, entry: Json, **fields: Any) -> None:
        with self._cond:
            entry.update(fields)
            self._cond.notify_all()

    def append_to(self, entry: Json, key: str, item: Any) -> None:
        with self._cond:
            items = entry.setdefault(key, [])
            if len(items) < self.max_entries:
                items.append(item)
            else:
                entry[f"{key}_dropped"] = entry.get(f"{key}_dropped", 0) + 1
            self._cond.notify_all()

    def snapshot(self) -> list[Json]:
        with self._cond:
            return copy.deepcopy(self._entries)

    def to_json(self) -> bytes:
        with self._cond:
            return json_bytes(self._entries)

    def clear(self) -> None:
        with self._cond:
            self._entries.clear()
            self.dropped = 0
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[Json]], bool], timeout: float, what: str) -> list[Json]:
        """Wait until ``pred(entries)`` holds; raises AssertionError naming ``what`` on timeout."""
        with self._cond:
            if self._cond.wait_for(lambda: pred(self._entries), timeout):
                return copy.deepcopy(self._entries)
            summary = [(e["method"], e["target"], e.get("ws")) for e in self._entries]
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; seen: {summary}")


class StepGate:
    """Permits for ``stepped`` streams: ``release()`` adds one, ``take()`` waits for one."""

    def __init__(self, stopping: threading.Event) -> None:
        self._cond = threading.Condition()
        self._permits = 0
        self._stopping = stopping

    def release(self, count: int = 1) -> None:
        with self._cond:
            self._permits += count
            self._cond.notify_all()

    def take(self, timeout_s: float) -> bool:
        """True when a permit was taken; False on timeout or when the server stops."""
        with self._cond:
            ready = self._cond.wait_for(lambda: self._permits > 0 or self._stopping.is_set(), timeout_s)
            if not ready or self._stopping.is_set():
                return False
            self._permits -= 1
            return True

    def reset(self) -> None:
        with self._cond:
            self._permits = 0

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()


# ---------------------------------------------------------------- the server, as its handlers see it


class FakeContext(Protocol):
    """What the HTTP and WebSocket handlers use of the fake upstream (no import of it: no cycle)."""

    ws_deflate: bool
    seen_log: SeenLog
    stopping: threading.Event
    step_gate: StepGate

    def step(self, count: int = 1) -> None: ...

    def reset(self) -> None: ...

    def next_number(self) -> int: ...


# ---------------------------------------------------------------- socket waits


def wait_for_peer_eof(sock: socket.socket, timeout_s: float) -> None:
    """Read and drop input until the peer closes, the socket is shut down, or time runs out."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(RECV_BYTES):
                return
        except TimeoutError:
            return


def wait_for_hangup(sock: socket.socket, timeout_s: float) -> None:
    """Wait, without reading, until the peer hangs up or ``stop()`` shuts the socket down."""
    poller = select.poll()
    poller.register(sock, select.POLLHUP | select.POLLERR | POLLRDHUP)
    poller.poll(int(timeout_s * 1000))


def shutdown_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by its thread
