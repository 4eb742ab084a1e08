"""Header rules: what is forwarded, what is rewritten, what is never logged.

Pure functions over lists of (name, value) str pairs, names as sent.
RFC 9110 7.6.1: hop-by-hop fields, and any named in Connection, are not
forwarded.
"""

from __future__ import annotations

import functools
from typing import Iterable, Sequence

from .querytoken import split_token

Header = tuple[str, str]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})
AUTH_HEADER = "x-ccxray-auth"
SECRET_HEADERS = frozenset({
    "authorization", "x-api-key", "cookie", "set-cookie", "chatgpt-account-id",
    "proxy-authorization", AUTH_HEADER, "openai-api-key", "api-key",
})
REDACTED = "[redacted]"
INSECURE_KEY_PROTOCOL = "openai-insecure-api-key."
# Headers that describe the WebSocket handshake itself; the relay sets them.
WS_HANDSHAKE = frozenset({"sec-websocket-extensions", "sec-websocket-accept"})


def connection_tokens(headers: Iterable[Header]) -> set[str]:
    """Field names listed in Connection headers (lower-case)."""
    names: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            names.update(t.strip().lower() for t in value.split(",") if t.strip())
    return names


_NEVER_FORWARDED = HOP_BY_HOP | {"host", AUTH_HEADER}


@functools.lru_cache(maxsize=16)
def _skipped(drop: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    return _NEVER_FORWARDED.union(drop)


def forwardable(headers: Sequence[Header], drop: tuple[str, ...] | frozenset[str] = ()) -> list[Header]:
    """Headers minus hop-by-hop, Host, ccxray's auth and ``drop`` (lower-case)."""
    named = connection_tokens(headers)
    skip = _skipped(drop)  # the callers' few ``drop`` sets: no set built per call
    if named:
        skip = skip.union(named)
    return [(n, v) for n, v in headers if n.lower() not in skip]


def get(headers: Iterable[Header], name: str) -> str | None:
    """First value of ``name`` (case-insensitive), or None."""
    name = name.lower()
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def _redact_protocols(value: str) -> str:
    parts = [p.strip() for p in value.split(",")]
    return ", ".join(INSECURE_KEY_PROTOCOL + REDACTED if p.startswith(INSECURE_KEY_PROTOCOL) else p for p in parts)


def redact(headers: Iterable[Header]) -> list[Header]:
    """A copy safe to write anywhere: secret values replaced whole."""
    out: list[Header] = []
    for name, value in headers:
        low = name.lower()
        if low in SECRET_HEADERS:
            value = REDACTED
        elif low == "sec-websocket-protocol":
            value = _redact_protocols(value)
        out.append((name, value))
    return out


def strip_token(target: str) -> str:
    """Remove every spelling of the ``token`` query parameter (ccxray's own auth).

    Other parameters keep their exact bytes: the query is cut, not re-encoded.
    """
    return split_token(target).stripped


def query_token(target: str) -> str | None:
    """The first value of the ``token`` query parameter, if any."""
    values = split_token(target).values
    return values[0] if values else None
