"""``/_api/events``: server-sent events of new index lines and of calls in flight.

A new index line goes out as a plain ``data:`` event (the line itself); a
call that starts or ends goes out as ``event: inflight`` with
``{"phase": "start"|"end", ...}``. The stream opens with ``retry:`` so a
browser reconnects soon after a proxy restart. Each feed has a bounded
queue: a stalled page loses live events, never the proxy's memory.
"""

from __future__ import annotations

import json
import queue
from typing import Any

import h11

from ..app import App
from ..clientconn import ClientConn
from ..errors import ClientGone

QUEUE_EVENTS = 1000
RETRY_MS = 2000
POLL_S = 0.5


def _encode(event: str | None, payload: object) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(payload, ensure_ascii=False, default=str).encode() + b"\n\n"


def stream_events(app: App, client: ClientConn) -> bool:
    """Serve the feed until the client or the proxy stops; never reusable afterwards."""
    pending: queue.Queue[bytes] = queue.Queue(QUEUE_EVENTS)

    def put(data: bytes) -> None:
        try:
            pending.put_nowait(data)
        except queue.Full:
            pass

    def on_line(line: dict[str, Any]) -> None:
        put(_encode(None, line))

    def on_inflight(phase: str, call: dict[str, Any]) -> None:
        put(_encode("inflight", {"phase": phase, **call}))

    client.send(h11.Response(status_code=200, headers=[
        ("Content-Type", "text/event-stream"), ("Cache-Control", "no-store")]))
    client.sendall(client.encode(h11.Data(data=f"retry: {RETRY_MS}\n: connected\n\n".encode())))
    app.recorder.add_listener(on_line)
    app.inflight.add_listener(on_inflight)
    try:
        return _pump(app, client, pending)
    finally:
        app.recorder.remove_listener(on_line)
        app.inflight.remove_listener(on_inflight)


def _pump(app: App, client: ClientConn, pending: "queue.Queue[bytes]") -> bool:
    try:
        while not app.stopping.is_set():
            try:
                data = pending.get(timeout=POLL_S)
            except queue.Empty:
                if client.is_gone():
                    return False
                continue
            client.sendall(client.encode(h11.Data(data=data)))
    except ClientGone:
        return False
    return False
