"""What changed between two consecutive requests of a session, and why the cache broke (pure).

Input: the two requests as ``conversation.conversation`` built them, their
index lines and the raw current request. Messages are compared as the
normalised items (so moving ``cache_control`` markers do not count as a
change). The history is "rewritten" when the previous request's messages are
not a prefix of the current ones (compaction, an edited or dropped turn).

A cache break is a drop of cache reads by more than half (and by at least
``MIN_DROP_TOKENS``); its reason is the first of: system prompt changed,
tools changed, model changed, history rewritten, gap longer than the cache
TTL (5 minutes, or 1 hour when a ``cache_control`` asks for ``"ttl": "1h"``).
"""

from __future__ import annotations

import json
from typing import Any

from .totals import token_tuple

DEFAULT_TTL_S = 300.0
LONG_TTL_S = 3600.0
MIN_DROP_TOKENS = 1024


def _fingerprint(message: dict[str, Any]) -> str:
    return json.dumps(message, sort_keys=True, ensure_ascii=False, default=str)


def common_prefix(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> int:
    """How many leading messages the two lists share."""
    count = 0
    for old, new in zip(before, after):
        if _fingerprint(old) != _fingerprint(new):
            break
        count += 1
    return count


def cache_ttl_s(request: object) -> float:
    """The longest cache TTL a request asks for (Anthropic ``cache_control``)."""
    text = json.dumps(request, default=str) if request is not None else ""
    return LONG_TTL_S if '"ttl": "1h"' in text else DEFAULT_TTL_S


def _received_s(line: dict[str, Any]) -> float | None:
    value = line.get("receivedAt")
    return value / 1000 if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _gap_s(prev_line: dict[str, Any], line: dict[str, Any]) -> float | None:
    """Seconds from the end of the previous call to the start of this one."""
    start, prev_start = _received_s(line), _received_s(prev_line)
    if start is None or prev_start is None:
        return None
    elapsed = prev_line.get("elapsed")
    prev_end = prev_start + (elapsed / 1000 if isinstance(elapsed, (int, float)) else 0.0)
    return max(0.0, start - prev_end)


def cache_break(changes: dict[str, Any], prev_line: dict[str, Any], line: dict[str, Any], ttl_s: float) -> str | None:
    """One line saying why cache reads dropped, or None when they did not."""
    before, after = token_tuple(prev_line.get("usage"))[2], token_tuple(line.get("usage"))[2]
    if before <= 0 or after >= before / 2 or before - after < MIN_DROP_TOKENS:
        return None
    if changes["systemChanged"]:
        return "system prompt changed"
    if changes["toolsAdded"] or changes["toolsRemoved"]:
        return "tool list changed"
    if prev_line.get("model") != line.get("model"):
        return f"model changed ({prev_line.get('model')} -> {line.get('model')})"
    if changes["historyRewritten"]:
        return "history rewritten or compacted"
    gap = changes["gapS"]
    if gap is not None and gap > ttl_s:
        return f"cache TTL expired: {gap / 60:.1f} min since the previous call (TTL {ttl_s / 60:.0f} min)"
    return "prefix unchanged; the upstream evicted the cache early"


def turn_changes(prev_conv: dict[str, Any], conv: dict[str, Any], prev_line: dict[str, Any],
                 line: dict[str, Any], request: object) -> dict[str, Any]:
    """New messages, system/tool changes and the cache-break reason between two requests.

    A request that names ``previous_response_id`` (a Codex WebSocket turn)
    sends only what is new, so all of its messages are new and nothing was
    rewritten.
    """
    before, after = prev_conv["messages"], conv["messages"]
    incremental = isinstance(request, dict) and bool(request.get("previous_response_id"))
    shared = 0 if incremental else common_prefix(before, after)
    prev_tools, tools = prev_conv["tools"], conv["tools"]
    changes: dict[str, Any] = {
        "previousId": prev_line.get("id"),
        "newFrom": shared,
        "newCount": len(after) - shared,
        "historyRewritten": not incremental and shared < len(before),
        "droppedCount": 0 if incremental else len(before) - shared,
        "systemChanged": (prev_conv["system"] or "") != (conv["system"] or ""),
        "toolsAdded": [t for t in tools if t not in prev_tools],
        "toolsRemoved": [t for t in prev_tools if t not in tools],
        "gapS": _gap_s(prev_line, line),
        "cacheReadBefore": token_tuple(prev_line.get("usage"))[2],
        "cacheReadAfter": token_tuple(line.get("usage"))[2],
    }
    changes["cacheBreak"] = cache_break(changes, prev_line, line, cache_ttl_s(request))
    return changes


def first_turn(conv: dict[str, Any]) -> dict[str, Any]:
    """The changes of a session's first request: everything is new."""
    return {"previousId": None, "newFrom": 0, "newCount": len(conv["messages"]), "historyRewritten": False,
            "droppedCount": 0, "systemChanged": False, "toolsAdded": [], "toolsRemoved": [], "gapS": None,
            "cacheReadBefore": None, "cacheReadAfter": None, "cacheBreak": None}
