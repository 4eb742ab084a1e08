"""How ``ccxray tail`` shows one index line: fixed columns a person can scan.

Calls and turns show model, tokens and cost; a WebSocket connection line
carries no usage of its own (its turns do), so it shows frames, bytes and
how it closed instead.
"""

from __future__ import annotations

import os
from typing import Any

from .totals import line_cost, usage_tokens

SESSION_CHARS = 13  # the tail of an id: a UUIDv7's first 12 characters are a timestamp, its end is random
TITLE_CHARS = 48
COLUMNS = (("time", 8), ("agent", 6), ("project", 16), ("session", SESSION_CHARS + 1))
HEADER = "  ".join(f"{name:<{width}}" for name, width in COLUMNS) + "  what / tokens / cost / status / transport / time / title"


def short_session(session: object) -> str:
    """The end of a session id (enough to tell ids apart, and accepted by --session)."""
    text = str(session or "")
    return text if len(text) <= SESSION_CHARS + 1 else "…" + text[-SESSION_CHARS:]


def session_matches(session: object, wanted: str) -> bool:
    """An exact id, or (8 characters or more) the end of one as ``tail`` shows it."""
    text = str(session or "")
    wanted = wanted.lstrip("…")
    return text == wanted or (len(wanted) >= 8 and text.endswith(wanted))


def project(line: dict[str, Any]) -> str:
    cwd = line.get("cwd")
    return os.path.basename(str(cwd).rstrip("/")) or str(cwd) if cwd else "-"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(n: object) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    return f"{n / 1048576:.1f}M" if n >= 1048576 else f"{n / 1024:.1f}k" if n >= 10240 else str(int(n))


def _connection_parts(line: dict[str, Any]) -> list[str]:
    frames = line.get("frameCounts") or {}
    sizes = line.get("byteCounts") or {}
    close = line.get("close") or {}
    parts = [f"{line.get('transport') or 'websocket'} connection",
             f"frames ↑{_count(frames.get('clientToUpstream'))} ↓{_count(frames.get('upstreamToClient'))}",
             f"bytes ↑{_count(sizes.get('clientToUpstream'))} ↓{_count(sizes.get('upstreamToClient'))}"]
    if close:
        parts.append(f"closed by {close.get('side') or '?'} {close.get('code') if close.get('code') is not None else ''}"
                     .rstrip())
    return parts


def _call_parts(line: dict[str, Any]) -> list[str]:
    t = usage_tokens(line.get("usage"))
    cost = line_cost(line)
    return [str(line.get("model") or line.get("url") or "-"),
            f"{t['input']}→{t['output']} tok" + (f" (+{t['cacheRead']} cached)" if t["cacheRead"] else ""),
            f"${cost:.4f}" if cost is not None else "$-"]


def human_line(line: dict[str, Any]) -> str:
    """One readable line: time, agent, project, session, then what happened."""
    lead = [str(line.get("ts") or "")[11:19] or "-", str(line.get("agent") or "-"), project(line),
            short_session(line.get("sessionId")) or "-"]
    cells = [f"{_fit(text, width):<{width}}" for text, (_, width) in zip(lead, COLUMNS)]
    parts = _connection_parts(line) if line.get("kind") == "connection" else _call_parts(line)
    parts.append(str(line.get("status") if line.get("status") is not None else "-"))
    if line.get("kind") != "connection":
        parts.append(f"{line.get('transport') or 'http'}/{line.get('kind') or 'call'}")
    if line.get("elapsed") is not None:
        parts.append(f"{line.get('elapsed')}ms")
    if line.get("title"):
        parts.append(repr(_fit(" ".join(str(line["title"]).split()), TITLE_CHARS)))
    if line.get("error"):
        parts.append(f"error: {line['error']}")
    return "  ".join(cells + parts)
