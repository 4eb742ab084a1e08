"""Pure parsers for the traffic ccxray records (sans-IO: no sockets, threads or clocks).

This package turns request bodies and response event streams into plain
facts (`RequestFacts`, `ResponseFacts`). Every function here accepts any
JSON-shaped value and never raises on unknown or malformed input: what it
cannot read it skips, and fields it cannot fill stay None.

Submodules: `sse` (incremental Server-Sent Events), `anthropic` (Messages),
`openai` (Responses over HTTP/SSE/WebSocket, Chat Completions), `codex_ws`
(turns on a Codex WebSocket connection).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

TITLE_CHARS = 80
_WHITESPACE = re.compile(r"\s+")


@dataclass
class RequestFacts:
    """What a request body says about the call (all optional)."""

    model: str | None = None
    msg_count: int | None = None
    tool_count: int | None = None
    title: str | None = None
    system_text: str | None = None
    stream: bool | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    previous_response_id: str | None = None
    is_prewarm: bool = False


@dataclass
class ResponseFacts:
    """What a response body or event stream says about the call (all optional)."""

    model: str | None = None
    response_id: str | None = None
    usage: dict[str, object] | None = None
    stop_reason: str | None = None
    status: str | None = None
    error: dict[str, object] | None = None
    text: str = ""
    tool_calls: list[dict[str, object]] = field(default_factory=list)
    rate_limits: object | None = None
    first_token_ts: float | None = None
    is_terminal: bool = False


class _NotJson(ValueError):
    """NaN/Infinity literals: valid for Python's json, not for JSON."""


def _reject_constant(name: str) -> object:
    raise _NotJson(name)


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)  # one decoder: json.loads builds one a call


def loads_json(text: str | bytes) -> tuple[bool, object]:
    """Parse strict JSON; returns (True, value) or (False, None). Never raises."""
    try:
        if not isinstance(text, str):  # as json.loads reads bytes, without building a decoder
            # an object or list whose second byte is not NUL is UTF-8 (no BOM, not UTF-16/32)
            utf8 = text[:1] in (b"{", b"[") and text[1:2] != b"\x00"
            text = text.decode("utf-8" if utf8 else json.detect_encoding(text), "surrogatepass")
        return True, _STRICT.decode(text)
    except (ValueError, RecursionError, TypeError):
        return False, None


def as_dict(value: object) -> dict[str, object] | None:
    """`value` if it is a JSON object, else None.

    Values here come from json.loads, whose object keys are always strings,
    so the keys are not checked one by one (this runs thousands of times a call).
    """
    return value if isinstance(value, dict) else None


def as_list(value: object) -> list[object] | None:
    """`value` if it is a list, else None."""
    return value if isinstance(value, list) else None


def get_str(obj: Mapping[str, object] | None, key: str) -> str | None:
    """obj[key] if it is a non-empty string."""
    if obj is None:
        return None
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def get_dict(obj: Mapping[str, object] | None, key: str) -> dict[str, object] | None:
    """obj[key] if it is a JSON object."""
    return None if obj is None else as_dict(obj.get(key))


def get_list(obj: Mapping[str, object] | None, key: str) -> list[object] | None:
    """obj[key] if it is a list."""
    return None if obj is None else as_list(obj.get(key))


def is_number(value: object) -> bool:
    """True for int/float token counts (bool excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def unwrap_event(value: object) -> object:
    """The event payload inside a recorded wrapper, else `value` itself.

    Accepts the bare data (`{"type": ...}` or `"[DONE]"`) and the recorded
    wrappers `{"event": name, "data": ...}` (see `sse.event_to_json`) and
    `{"type": name, "data": {"type": name, ...}}`.
    """
    obj = as_dict(value)
    if obj is None or "data" not in obj:
        return value
    keys = set(obj)
    if keys == {"event", "data"}:
        return obj["data"]
    inner = as_dict(obj["data"])
    if keys == {"type", "data"} and inner is not None and inner.get("type") == obj["type"]:
        return inner
    return value


def collapse_title(text: str) -> str | None:
    """Whitespace collapsed, cut to TITLE_CHARS (with an ellipsis), None if empty."""
    flat = _WHITESPACE.sub(" ", text).strip()
    if not flat:
        return None
    if len(flat) <= TITLE_CHARS:
        return flat
    return flat[: TITLE_CHARS - 1].rstrip() + "…"


def merge_usage(base: dict[str, object] | None, extra: Mapping[str, object] | None) -> dict[str, object] | None:
    """`extra`'s non-null fields over `base` (nested objects merged one level)."""
    if extra is None:
        return base
    merged = dict(base or {})
    for key, value in extra.items():
        if value is None:
            continue
        old, new = as_dict(merged.get(key)), as_dict(value)
        merged[key] = {**old, **new} if old is not None and new is not None else value
    return merged


def join_texts(parts: Iterable[str]) -> str | None:
    """Non-empty parts joined by a blank line, None if nothing."""
    kept = [p for p in parts if p]
    return "\n\n".join(kept) if kept else None


__all__ = [
    "RequestFacts", "ResponseFacts", "loads_json", "as_dict", "as_list", "get_str",
    "get_dict", "get_list", "is_number", "unwrap_event", "collapse_title",
    "merge_usage", "join_texts", "TITLE_CHARS",
]
