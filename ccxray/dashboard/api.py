"""``/``, ``/favicon.ico`` and ``/_api/*``: the page, the log as JSON, live events.

Reads the NDJSON index by streaming it (a torn line is skipped). Every
recorded text reaches the page as JSON data and is rendered with
``textContent``, never as HTML.
"""

from __future__ import annotations

import json
import queue
from importlib import resources
from typing import Any, Iterator
from urllib.parse import parse_qs

import h11

from .. import __version__
from ..app import App
from ..clientconn import ClientConn
from ..errors import ClientGone
from ..routing import split_target
from ..readback import ReadBackError, find_line, read_call
from ..store import read_index

MAX_ENTRIES = 500
EVENTS_KEEPALIVE_S = 15.0
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           b'<rect width="16" height="16" rx="3" fill="#123"/><path d="M4 4l8 8M12 4l-8 8" '
           b'stroke="#6cf" stroke-width="2"/></svg>')


def _page() -> bytes:
    return resources.files("ccxray.dashboard").joinpath("index.html").read_bytes()


def _json(client: ClientConn, status: int, obj: object) -> bool:
    body = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    client.send_simple(status, body, "application/json; charset=utf-8", [("Cache-Control", "no-store")])
    return True


def _entries(app: App) -> Iterator[dict[str, Any]]:
    return read_index(app.settings.logs_dir / "index.ndjson")


def entries(app: App, session: str | None, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` index lines, optionally of one session."""
    kept: list[dict[str, Any]] = []
    for line in _entries(app):
        if session is None or (line.get("sessionId") or "(none)") == session:
            kept.append(line)
            if len(kept) > 2 * limit:
                del kept[:-limit]
    return kept[-limit:]


def entry(app: App, entry_id: str) -> dict[str, Any] | None:
    """One index line with its whole request, response and meta, or None.
    A sidecar that cannot be read back leaves the line, its bodies null and
    ``readError`` naming the file."""
    logs, offsets = app.settings.logs_dir, app.recorder.store.offsets
    try:
        return read_call(logs, entry_id, offsets)
    except ReadBackError as exc:
        line = find_line(logs, entry_id, offsets)
        if line is None:
            return None
        return {**line, "request": None, "response": None, "meta": None, "readError": str(exc)}


def _stream_events(app: App, client: ClientConn) -> bool:
    """Server-sent events: one ``data:`` line per new index line, until either side stops."""
    lines: queue.Queue[dict[str, Any]] = queue.Queue(1000)

    def listener(line: dict[str, Any]) -> None:
        try:
            lines.put_nowait(line)
        except queue.Full:
            pass  # a stalled page loses live lines, never the proxy's memory

    client.send(h11.Response(status_code=200, headers=[
        ("Content-Type", "text/event-stream"), ("Cache-Control", "no-store")]))
    client.sendall(client.encode(h11.Data(data=b": connected\n\n")))
    app.recorder.add_listener(listener)
    try:
        while not app.stopping.is_set():
            try:
                line = lines.get(timeout=0.5)
                payload = b"data: " + json.dumps(line, ensure_ascii=False, default=str).encode() + b"\n\n"
            except queue.Empty:
                if client.is_gone():
                    return False
                continue
            client.sendall(client.encode(h11.Data(data=payload)))
    except ClientGone:
        return False
    finally:
        app.recorder.remove_listener(listener)
    return False


def _int_param(value: str | None, default: int) -> int:
    """A positive integer query parameter, else the default (never an exception)."""
    try:
        number = int(value) if value is not None and value.isascii() else default
    except ValueError:
        return default
    return number if number > 0 else default


def serve_local(app: App, client: ClientConn, method: str, target: str,
                headers: list[tuple[str, str]]) -> bool:
    """Answer a request ccxray serves itself; True if the connection may be reused."""
    path, query = split_target(target)
    params = {k: v[-1] for k, v in parse_qs(query[1:]).items()}
    if path == "/":
        client.send_simple(200, _page(), "text/html; charset=utf-8",
                           [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"), ("X-Ccxray", __version__),
                            ("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'")])
        return True
    if path == "/favicon.ico":
        client.send_simple(200, FAVICON, "image/svg+xml")
        return True
    if method not in ("GET", "HEAD"):
        return _json(client, 405, {"error": "method_not_allowed"})
    if path == "/_api/sessions":
        return _json(client, 200, app.sessions.list())
    if path == "/_api/entries":
        limit = _int_param(params.get("limit"), MAX_ENTRIES)
        return _json(client, 200, entries(app, params.get("session"), min(limit, 5000)))
    if path.startswith("/_api/entries/"):
        found = entry(app, path[len("/_api/entries/"):])
        return _json(client, 200 if found else 404, found or {"error": "not_found"})
    if path == "/_api/events":
        return _stream_events(app, client)
    return _json(client, 404, {"error": "not_found", "path": path})
