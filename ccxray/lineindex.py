"""What the page's views need from ``index.ndjson``, so the API never scans the log per request.

``LineIndex.refresh()`` reads only the bytes appended since the last call
(a stat when nothing is new) and remembers each session's lines in log order
(id, byte offset and length: a page is read without a lookup per line) and
the chain of requests each continues. A prune that replaces the file (new
inode, or a shorter file) starts afresh. A torn last line is left for the
next refresh; an invalid line is skipped.

Thread-safe: handler threads call ``refresh`` and the readers under one lock;
line bodies are read outside it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .sessionindex import NO_SESSION

READ_BYTES = 8 << 20

Spot = tuple[str, int, int]  # a line's id, byte offset and length


@dataclass
class PromptSeen:
    """One distinct system prompt (by hash) as the log uses it."""

    first: str | None = None
    last: str | None = None
    calls: int = 0
    first_id: str | None = None
    agent: str | None = None
    sessions: set[str] = field(default_factory=set)


@dataclass
class SessionSeen:
    """What the session list shows beyond SessionIndex's totals."""

    lines: list[Spot] = field(default_factory=list)  # in log order
    subagent_calls: int = 0
    turns: int = 0  # main-agent requests: no sub-agent, title or prewarm call, no connection line
    context_use: float | None = None
    context_tokens: int | None = None
    model: str | None = None
    last_received: int | None = None
    generated_title: str | None = None  # the newest title Claude Code generated for the session


def chain_key(line: dict[str, Any]) -> tuple[object, ...]:
    """Which earlier request a request continues: same session, socket, agent and, for
    Claude, model (its side calls, titles and summaries, use another model);
    parallel sub-agents are told apart by their prompt."""
    sub = bool(line.get("isSubagent"))
    return (line.get("sessionId"), line.get("connectionId"), sub, line.get("agentType"),
            line.get("model") if line.get("provider") == "anthropic" else None,
            line.get("systemPromptHash") if sub else None)


class LineIndex:
    """Per-session lines in log order, request chains, connections' turns and system prompt usage."""

    # Not an id lookup (that is the store's IndexOffsets, through readback.read_call): ordered
    # positions for paging, taken from the file as any process left it, pruned or compacted.

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self._inode = inode
        self._pos = 0
        self.order: list[Spot] = []  # every line in log order
        self.sessions: dict[str, SessionSeen] = {}
        self.previous: dict[str, str] = {}   # request id -> the request it continues
        self.following: dict[str, str] = {}  # and back
        self._chain_last: dict[tuple[object, ...], str] = {}
        self.prompts: dict[str, PromptSeen] = {}
        self.turns_of: dict[str, list[Spot]] = {}  # WebSocket connection id -> its turns

    def refresh(self) -> None:
        """Take in whatever was appended since the last refresh."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except (FileNotFoundError, NotADirectoryError):  # nothing recorded (yet), or a home that is a file
                self._reset(None)
                return
            if st.st_ino != self._inode or st.st_size < self._pos:
                self._reset(st.st_ino)
            if st.st_size > self._pos:
                self._read_new(st.st_size)

    def _read_new(self, size: int) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(self._pos)
            while self._pos < size:
                chunk = fh.read(min(READ_BYTES, size - self._pos))
                end = chunk.rfind(b"\n") + 1
                if not end:
                    if len(chunk) < READ_BYTES:
                        return  # a line still being written
                    end = len(chunk)  # one enormous line: skip past it whole
                self._take(chunk[:end], self._pos)
                self._pos += end
                fh.seek(self._pos)

    def _take(self, data: bytes, base: int) -> None:
        start = 0
        while start < len(data):
            stop = data.find(b"\n", start)
            stop = len(data) if stop < 0 else stop
            try:
                line = json.loads(data[start:stop])
            except (ValueError, RecursionError):  # RecursionError: a line nested thousands deep
                line = None
            if isinstance(line, dict) and isinstance(line.get("id"), str):
                self._add(line, base + start, stop - start)
            start = stop + 1

    def _add(self, line: dict[str, Any], offset: int, length: int) -> None:
        line_id = line["id"]
        spot = (line_id, offset, length)
        self.order.append(spot)
        sid = str(line.get("sessionId") or NO_SESSION)
        seen = self.sessions.setdefault(sid, SessionSeen())
        seen.lines.append(spot)
        if line.get("kind") == "connection":
            return
        if line.get("kind") == "turn" and isinstance(line.get("connectionId"), str):
            self.turns_of.setdefault(line["connectionId"], []).append(spot)
        self._add_facts(seen, line)
        key = chain_key(line)
        earlier = self._chain_last.get(key)
        if earlier is not None:
            self.previous[line_id] = earlier
            self.following[earlier] = line_id
        self._chain_last[key] = line_id
        self._add_prompt(line, sid)

    @staticmethod
    def _add_facts(seen: SessionSeen, line: dict[str, Any]) -> None:
        seen.subagent_calls += bool(line.get("isSubagent"))
        if isinstance(line.get("generatedTitle"), str):
            seen.generated_title = line["generatedTitle"]
        seen.turns += not (line.get("isSubagent") or line.get("generatedTitle")) and line.get("requestKind") != "prewarm"
        if isinstance(line.get("receivedAt"), int):
            seen.last_received = line["receivedAt"]
        if line.get("contextUse") is not None and not line.get("isSubagent"):
            seen.context_use, seen.context_tokens = line.get("contextUse"), line.get("contextTokens")
            seen.model = line.get("model") or seen.model

    def _add_prompt(self, line: dict[str, Any], sid: str) -> None:
        digest = line.get("systemPromptHash")
        if not isinstance(digest, str):
            return
        prompt = self.prompts.setdefault(digest, PromptSeen(first_id=line["id"], agent=line.get("agent")))
        prompt.first = prompt.first or line.get("ts")
        prompt.last = line.get("ts") or prompt.last
        prompt.calls += 1
        prompt.sessions.add(sid)

    def spots(self, session: str | None) -> list[Spot]:
        """The lines of one session in log order (every line when ``session`` is None)."""
        with self._lock:
            if session is None:
                return list(self.order)
            seen = self.sessions.get(session)
            return list(seen.lines) if seen else []

    def session_ids(self, session: str | None) -> list[str]:
        """The ids of one session in log order (all ids when ``session`` is None)."""
        return [spot[0] for spot in self.spots(session)]

    def turns(self, connection_id: str) -> list[Spot]:
        """The turns of one WebSocket connection in log order."""
        with self._lock:
            return list(self.turns_of.get(connection_id, []))

    def read_many(self, spots: Sequence[Spot]) -> list[dict[str, Any]]:
        """The lines at ``spots`` with one open file; one unreadable or moved (another
        line under its offset) is left out."""
        found = []
        try:
            with open(self.path, "rb") as fh:
                for line_id, offset, length in spots:
                    fh.seek(offset)
                    try:
                        line = json.loads(fh.read(length))
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(line, dict) and line.get("id") == line_id:
                        found.append(line)
        except FileNotFoundError:
            return []
        return found
