"""Calls in flight: requests that arrived and have not finished, for the live page.

The relays announce ``start`` when a request arrives and ``end`` when it is
over (``track`` does both); the recorder does the same for each WebSocket
turn (from its ``response.create`` to its line). Listeners (the dashboard's
event feeds) hear both. Thread-safe: relay and recorder threads write,
handler threads read. A listener must not block: it runs on the caller's thread.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, NamedTuple, Sequence

Listener = Callable[[str, dict[str, Any]], None]
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,100})"')
MODEL_SCAN_BYTES = 4096  # clients put "model" near the top; never parse a whole body on the hot path
SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id", "x-openai-session-id")


class InFlight(NamedTuple):
    """One call the proxy is relaying now (a tuple: built on every relayed call, a
    frozen dataclass costs a guarded setattr per field)."""

    id: str
    receivedAt: int  # epoch ms, as on index lines
    method: str
    url: str
    provider: str
    transport: str
    sessionId: str | None = None
    model: str | None = None
    connectionId: str | None = None  # a WebSocket turn under way: the connection it is on
    title: str | None = None  # and what it asks (its request's title)


def sniff(headers: Sequence[tuple[str, str]], body: bytes) -> tuple[str | None, str | None]:
    """(session id from a header, model from the body's first bytes), either None."""
    session = next((v for n, v in headers if n.lower() in SESSION_HEADERS), None)
    match = _MODEL.search(body[:MODEL_SCAN_BYTES])
    return session, match.group(1).decode("utf-8", "replace") if match else None


class InFlightRegistry:
    """id -> InFlight, with start/end listeners."""

    def __init__(self) -> None:
        self._calls: dict[str, InFlight] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def start(self, call: InFlight) -> None:
        with self._lock:
            self._calls[call.id] = call
            listeners = list(self._listeners)
        if listeners:  # no page open (the usual case): no dict built per call
            fact = call._asdict()
            for fn in listeners:
                fn("start", fact)

    def end(self, call_id: str) -> None:
        with self._lock:
            call = self._calls.pop(call_id, None)
            listeners = list(self._listeners)
        if call is not None and listeners:
            fact = {"id": call_id, "endedAt": int(time.time() * 1000)}
            for fn in listeners:
                fn("end", fact)

    def track(self, call_id: str, method: str, url: str, provider: str, transport: str,
              headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
              started_s: float | None = None) -> "Tracked":
        """Registered now and until the ``with`` block on the result ends, however it ends."""
        session, model = sniff(headers, body)
        received_ms = int((time.time() if started_s is None else started_s) * 1000)
        self.start(InFlight(call_id, received_ms, method, url, provider, transport, session, model))
        return Tracked(self, call_id)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c._asdict() for c in sorted(self._calls.values(), key=lambda c: c.receivedAt)]

    def add_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)


class Tracked:
    """Ends a tracked call when its ``with`` block ends (a plain class: a generator-based
    context manager costs a few microseconds on every relayed call)."""

    __slots__ = ("_registry", "_call_id")

    def __init__(self, registry: InFlightRegistry, call_id: str) -> None:
        self._registry = registry
        self._call_id = call_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._registry.end(self._call_id)
