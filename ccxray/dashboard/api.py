"""``/``, the page's files, ``/favicon.ico`` and ``/_api/*``: the routes.

Every recorded text reaches the page as JSON data and is rendered with
``textContent``, never as HTML. ``entry`` is the one place that reads a
whole call (line plus sidecars); the views in ``views.py`` build on it.
Endpoints and their parameters are listed in README.rst.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

from ..app import App
from ..clientconn import ClientConn
from ..logcli import parse_duration
from ..routing import split_target
from ..readback import ReadBackError, find_line, read_call
from ..store import is_safe_id
from . import views
from .feed import stream_events
from .static import is_static, serve_static

DEFAULT_PAGE = 200


def _json(client: ClientConn, status: int, obj: object) -> bool:
    body = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    client.send_simple(status, body, "application/json; charset=utf-8",
                       [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
    return True


def _found(client: ClientConn, obj: object) -> bool:
    return _json(client, 200, obj) if obj is not None else _json(client, 404, {"error": "not_found"})


def entries(app: App, session: str | None, limit: int, before: str | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` index lines (optionally of one session) ending before ``before``."""
    return views.entries_page(app, session, before, limit)


def entry(app: App, entry_id: str) -> dict[str, Any] | None:
    """One index line with its whole request, response and meta, or None.
    A sidecar that cannot be read back leaves the line, its bodies null and
    ``readError`` naming the file."""
    logs, offsets = app.settings.logs_dir, app.recorder.offsets
    try:
        return read_call(logs, entry_id, offsets)
    except ReadBackError as exc:
        line = find_line(logs, entry_id, offsets)
        if line is None:
            return None
        return {**line, "request": None, "response": None, "meta": None, "readError": str(exc)}



def _int_param(value: str | None, default: int) -> int:
    """A positive integer query parameter, else the default (never an exception)."""
    try:
        number = int(value) if value is not None and value.isascii() else default
    except ValueError:
        return default
    return number if number > 0 else default


def _since_ms(last: str | None) -> float | None:
    """``last=7d`` as epoch ms; raises ValueError for a malformed duration."""
    return None if not last else (time.time() - parse_duration(last)) * 1000


def _api(app: App, client: ClientConn, path: str, params: dict[str, str]) -> bool:
    if path == "/_api/sessions":
        return _json(client, 200, views.sessions(app))
    if path == "/_api/entries":
        before = params.get("before")
        if before is not None and not is_safe_id(before):
            return _json(client, 400, {"error": "bad_request", "message": "before must be an entry id"})
        return _json(client, 200, entries(app, params.get("session"), _int_param(params.get("limit"), DEFAULT_PAGE), before))
    if path.startswith("/_api/entries/"):
        return _found(client, entry(app, path[len("/_api/entries/"):]))
    if path.startswith("/_api/turns/"):
        turn_id = path[len("/_api/turns/"):]
        return _found(client, views.turn(app, turn_id, entry) if is_safe_id(turn_id) else None)
    if path == "/_api/search":
        return _json(client, 200, views.search(app, params.get("session", ""), params.get("q", "")))
    if path == "/_api/health":
        return _json(client, 200, app.health())
    if path == "/_api/inflight":
        return _json(client, 200, app.inflight.list())
    if path == "/_api/prompts":
        return _json(client, 200, views.prompts(app, entry))
    if path == "/_api/prompts/diff":
        return _found(client, views.prompt_diff(app, params.get("old", ""), params.get("new", "")))
    if path.startswith("/_api/prompts/"):
        return _found(client, views.prompt(app, path[len("/_api/prompts/"):]))
    if path == "/_api/usage":
        try:
            since = _since_ms(params.get("last"))
        except ValueError as exc:
            return _json(client, 400, {"error": "bad_request", "message": str(exc)})
        return _json(client, 200, views.usage(app, since))
    return _json(client, 404, {"error": "not_found", "path": path})


def serve_local(app: App, client: ClientConn, method: str, target: str) -> bool:
    """Answer a request ccxray serves itself; True if the connection may be reused."""
    path, query = split_target(target)
    if method not in ("GET", "HEAD"):
        return _json(client, 405, {"error": "method_not_allowed"})
    if is_static(path):
        return serve_static(client, path)
    if path == "/_api/events":
        return stream_events(app, client)
    params = {k: v[-1] for k, v in parse_qs(query[1:]).items()}
    return _api(app, client, path, params)
