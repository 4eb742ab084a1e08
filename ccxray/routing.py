"""Where a request goes: answered locally, or which upstream and path.

Pure: (method, target, headers, Settings) -> Route. The table is the one in
DESIGN.md "Upstreams and routing".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .config import Settings, Upstream

OPENAI_PREFIXES = ("/v1/responses", "/v1/realtime", "/v1/models", "/v1/chat/completions")
CHATGPT_PREFIXES = ("/v1/codex", "/v1/api/codex", "/v1/plugins", "/v1/connectors")
WS_PATHS = ("/v1/responses", "/v1/realtime")
LOCAL = "local"


@dataclass(frozen=True)
class Route:
    """provider is "anthropic", "openai", "chatgpt" or "local"."""

    provider: str
    upstream: Upstream | None
    target: str  # path + query to send upstream (or the local path)


def _matches(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def split_target(target: str) -> tuple[str, str]:
    """('/path', '?query') from a request target; the query keeps its '?'."""
    path, sep, query = target.partition("?")
    return path or "/", sep + query


def is_local(method: str, path: str) -> bool:
    """ccxray answers these itself: the dashboard page, its API and icon."""
    if path == "/":
        return method in ("GET", "HEAD")
    return path == "/favicon.ico" or path == "/_api" or path.startswith("/_api/")


def is_ws_path(path: str) -> bool:
    """Only the Responses and Realtime endpoints themselves (a query is allowed, a deeper
    path like ``/v1/responses/extra`` is not) may be upgraded to WebSocket."""
    return path in WS_PATHS


def _join(prefix: str, path: str, query: str) -> str:
    if prefix.endswith("/v1") and (path == "/v1" or path.startswith("/v1/")):
        path = path[3:] or "/"
    return prefix + path + query


def route(method: str, target: str, headers: Iterable[tuple[str, str]], settings: Settings) -> Route:
    """Decide where one request goes. Header names must be lower-case."""
    path, query = split_target(target)
    if is_local(method, path):
        return Route(LOCAL, None, target)
    has_account = any(name == "chatgpt-account-id" for name, _ in headers)
    is_openai = any(_matches(path, p) for p in OPENAI_PREFIXES)
    if any(_matches(path, p) for p in CHATGPT_PREFIXES) or (is_openai and has_account):
        rest = path[3:] if path.startswith("/v1") else path
        return Route("chatgpt", settings.chatgpt, settings.chatgpt.prefix + (rest or "/") + query)
    if is_openai:
        return Route("openai", settings.openai, _join(settings.openai.prefix, path, query))
    return Route("anthropic", settings.anthropic, _join(settings.anthropic.prefix, path, query))
