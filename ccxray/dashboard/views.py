"""What the page's views need, computed server-side from the log: sessions, pages
of entries, one turn understood (conversation, reply, changes, system parts),
system prompt versions with their diff, and usage.

Each function takes the App and plain parameters and returns JSON-ready data
(None for "not found"); the routes in ``api.py`` turn that into responses.
"""

from __future__ import annotations

import difflib
import json
import time
from datetime import datetime, timezone
from typing import Any, Callable

from ..app import App
from ..conversation import conversation, reply
from ..logcli import summarise
from ..readback import ReadBackError, read_request, read_response_text
from ..store import is_safe_id, read_index
from ..sysparts import client_version, system_parts
from ..totals import Totals, counts_usage, figures
from ..turndiff import first_turn, turn_changes

LIVE_WITHIN_MS = 120_000
MAX_PAGE = 5000
MAX_DIFF_LINES = 20_000

Reader = Callable[[App, str], "dict[str, Any] | None"]


def sessions(app: App) -> list[dict[str, Any]]:
    """SessionIndex's rows plus context use, sub-agent calls and live/idle."""
    index = app.line_index
    index.refresh()
    now_ms = time.time() * 1000
    busy = {c.get("sessionId") for c in app.inflight.list()}
    rows = app.sessions.list()
    for row in rows:
        seen = index.sessions.get(row["sessionId"])
        last = seen.last_received if seen else None
        row.update({
            "subagentCalls": seen.subagent_calls if seen else 0,
            "turns": seen.turns if seen else row["turns"],
            "title": (seen.generated_title if seen else None) or row["title"],
            "contextUse": seen.context_use if seen else None,
            "contextTokens": seen.context_tokens if seen else None,
            "lastModel": seen.model if seen else None,
            "live": row["sessionId"] in busy or (last is not None and now_ms - last < LIVE_WITHIN_MS),
        })
    return rows


def entries_page(app: App, session: str | None, before: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` index lines of a session (or all) in log order, ending just
    before the line ``before`` (or at the newest). Page back with the first id."""
    index = app.line_index
    index.refresh()
    spots = index.spots(session)
    end = len(spots)
    if before is not None:
        end = next((n for n, spot in enumerate(spots) if spot[0] == before), 0)
    return index.read_many(spots[max(0, end - min(limit, MAX_PAGE)):end])


SEARCH_NEWEST = 500
SEARCH_BYTES = 4 << 20


def _request_has(app: App, line_id: str, needles: list[str]) -> bool:
    """Whether the whole request (re-inflated when stored as a delta) holds every needle."""
    try:
        request = read_request(app.settings.logs_dir, line_id, app.recorder.offsets)
    except ReadBackError:
        return False
    if request is None:
        return False
    text = json.dumps(request, ensure_ascii=False)[:SEARCH_BYTES].lower()
    return all(n in text for n in needles)


def _response_has(app: App, line_id: str, needles: list[str]) -> bool:
    """Whether the response's stored text holds every needle (responses are stored whole;
    JSON escapes stay as written)."""
    text = read_response_text(app.settings.logs_dir, line_id, app.recorder.offsets, SEARCH_BYTES).lower()
    return bool(text) and all(n in text for n in needles)


def search(app: App, session: str, query: str) -> list[str]:
    """Ids of the session's newest SEARCH_NEWEST calls whose request or response
    text holds every word of ``query`` (first SEARCH_BYTES of each)."""
    needles = [w for w in query.lower().split() if w]
    index = app.line_index
    index.refresh()
    if not needles:
        return []
    return [i for i in index.session_ids(session)[-SEARCH_NEWEST:]
            if is_safe_id(i) and (_request_has(app, i, needles) or _response_has(app, i, needles))]


def _sidecar_request(app: App, read: Reader, line_id: str | None) -> tuple[dict[str, Any] | None, object]:
    if line_id is None:
        return None, None
    found = read(app, line_id)
    return (found, found.get("request")) if found else (None, None)


def _attach_results(items: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
    """Give each tool call among ``items`` its result from ``messages``, when they hold one."""
    calls = {i.get("id"): i for i in items if i.get("kind") == "tool_call" and i.get("id")}
    if not calls:
        return
    for message in messages:
        for item in message["items"]:
            if item.get("kind") == "tool_result" and item.get("id") in calls:
                calls[item["id"]]["result"] = {"text": item.get("text"), "isError": item.get("isError")}


def turn(app: App, line_id: str, read: Reader) -> dict[str, Any] | None:
    """One call understood: its line, conversation, reply (with tool results),
    changes since the previous request of its chain, and system prompt parts."""
    app.line_index.refresh()  # its chain links
    found = read(app, line_id)
    if found is None:
        return None
    line = {k: v for k, v in found.items() if k not in ("request", "response", "meta")}
    if line.get("kind") == "connection":
        return {"line": line, "turns": app.line_index.read_many(app.line_index.turns(line_id))}
    request = found.get("request")
    conv = conversation(request)
    answer = reply(found.get("response"))
    index = app.line_index
    prev_found, prev_request = _sidecar_request(app, read, index.previous.get(line_id))
    _, next_request = _sidecar_request(app, read, index.following.get(line_id))
    _attach_results(answer["items"], conversation(next_request)["messages"] if next_request is not None else [])
    if prev_found is not None:
        prev_line = {k: v for k, v in prev_found.items() if k not in ("request", "response", "meta")}
        changes = turn_changes(conversation(prev_request), conv, prev_line, line, request)
    else:
        changes = first_turn(conv)
    return {"line": line, "conversation": conv, "reply": answer, "changes": changes,
            "systemParts": system_parts(conv), "nextId": index.following.get(line_id)}


def _prompt_text(app: App, digest: str) -> str | None:
    if not is_safe_id(digest):
        return None
    try:
        with open(app.settings.logs_dir / "shared" / f"system_{digest}.json", encoding="utf-8") as fh:
            body = json.load(fh)
    except (OSError, ValueError):
        return None
    text = body.get("text") if isinstance(body, dict) else None
    return text if isinstance(text, str) else None


def _user_agent(app: App, read: Reader, line_id: str | None) -> str | None:
    found = read(app, line_id) if line_id else None
    meta = found.get("meta") if found else None
    request = meta.get("request") if isinstance(meta, dict) else None
    headers = request.get("headers") if isinstance(request, dict) else None
    for pair in headers if isinstance(headers, list) else []:
        if isinstance(pair, list) and len(pair) == 2 and str(pair[0]).lower() == "user-agent":
            return str(pair[1])
    return None


def prompts(app: App, read: Reader) -> list[dict[str, Any]]:
    """Every distinct system prompt: hash, client version, first/last seen, calls, size."""
    index = app.line_index
    index.refresh()
    rows = []
    for digest, seen in index.prompts.items():
        text = _prompt_text(app, digest) or ""
        rows.append({"hash": digest, "first": seen.first, "last": seen.last, "calls": seen.calls,
                     "sessions": len(seen.sessions), "agent": seen.agent, "chars": len(text),
                     "clientVersion": client_version(text, _user_agent(app, read, seen.first_id)),
                     "preview": text[:160]})
    return sorted(rows, key=lambda r: str(r["first"] or ""))


def prompt(app: App, digest: str) -> dict[str, Any] | None:
    text = _prompt_text(app, digest)
    return None if text is None else {"hash": digest, "text": text}


def prompt_diff(app: App, old: str, new: str) -> dict[str, Any] | None:
    """A line diff between two stored prompts: ``[[op, text]]`` with op " ", "-" or "+"."""
    before, after = _prompt_text(app, old), _prompt_text(app, new)
    if before is None or after is None:
        return None
    a, b = before.splitlines()[:MAX_DIFF_LINES], after.splitlines()[:MAX_DIFF_LINES]
    lines: list[list[str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            lines += [[" ", t] for t in a[i1:i2]]
            continue
        lines += [["-", t] for t in a[i1:i2]] + [["+", t] for t in b[j1:j2]]
    return {"old": old, "new": new, "lines": lines,
            "added": sum(op == "+" for op, _ in lines), "removed": sum(op == "-" for op, _ in lines)}


def _day(line: dict[str, Any]) -> str:
    received = line.get("receivedAt")
    if isinstance(received, (int, float)) and not isinstance(received, bool):
        return datetime.fromtimestamp(received / 1000, timezone.utc).strftime("%Y-%m-%d")
    return str(line.get("ts") or "")[:10] or "(unknown)"


def usage(app: App, since_ms: float | None) -> dict[str, Any]:
    """The same report as ``ccxray usage --json`` plus totals by day and the latest rate limits."""
    days: dict[str, Totals] = {}
    limits: dict[str, Any] = {}

    def lines() -> Any:
        for line in read_index(app.settings.logs_dir / "index.ndjson"):
            if counts_usage(line) and (since_ms is None or (line.get("receivedAt") or 0) >= since_ms):
                days.setdefault(_day(line), Totals()).add_figures(*figures(line))
                _note_limits(limits, line)
            yield line

    report = summarise(lines(), since_ms, None, None).to_json()
    report["byDay"] = {day: t.to_json() for day, t in sorted(days.items())}
    report["rateLimits"] = limits
    return report


def _note_limits(limits: dict[str, Any], line: dict[str, Any]) -> None:
    """The latest rate-limit state per provider: Anthropic headers, Codex events."""
    meta = line.get("responseMetadata")
    if not isinstance(meta, dict):
        return
    headers = meta.get("rateLimits") if line.get("kind") != "turn" else None
    codex = meta.get("codexRateLimits") or (meta.get("rateLimits") if line.get("kind") == "turn" else None)
    if isinstance(headers, dict) and headers:
        limits["anthropic" if line.get("provider") == "anthropic" else "openai"] = {
            "at": line.get("ts"), "headers": headers}
    if codex:
        limits["codex"] = {"at": line.get("ts"), "limits": codex}
