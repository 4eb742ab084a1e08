"""Where each index line sits in ``index.ndjson``, so the API never scans the log per request.

``LineIndex.refresh()`` reads only the bytes appended since the last call
(a stat when nothing is new) and remembers, per line, its byte offset and
length, its session and the chain of requests it continues. A prune that
replaces the file (new inode, or a shorter file) starts the map afresh.
A torn last line is left for the next refresh; an invalid line is skipped.

Thread-safe: handler threads call ``refresh`` and the readers under one lock;
line bodies are read with ``os.pread`` outside it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sessionindex import NO_SESSION

READ_BYTES = 8 << 20


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

    ids: list[str] = field(default_factory=list)
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
    """id -> (offset, length), per-session ids, request chains and system prompt usage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self._inode = inode
        self._pos = 0
        self.offsets: dict[str, tuple[int, int]] = {}
        self.order: list[str] = []  # every id in log order
        self.sessions: dict[str, SessionSeen] = {}
        self.previous: dict[str, str] = {}   # request id -> the request it continues
        self.following: dict[str, str] = {}  # and back
        self._chain_last: dict[tuple[object, ...], str] = {}
        self.prompts: dict[str, PromptSeen] = {}
        self.turns_of: dict[str, list[str]] = {}  # WebSocket connection id -> its turn ids

    def refresh(self) -> None:
        """Take in whatever was appended since the last refresh."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
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
        self.offsets[line_id] = (offset, length)
        self.order.append(line_id)
        sid = str(line.get("sessionId") or NO_SESSION)
        seen = self.sessions.setdefault(sid, SessionSeen())
        seen.ids.append(line_id)
        if line.get("kind") == "connection":
            return
        if line.get("kind") == "turn" and isinstance(line.get("connectionId"), str):
            self.turns_of.setdefault(line["connectionId"], []).append(line_id)
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

    def locate(self, line_id: str) -> tuple[int, int] | None:
        with self._lock:
            return self.offsets.get(line_id)

    def session_ids(self, session: str | None) -> list[str]:
        """The ids of one session in log order (all ids when ``session`` is None)."""
        with self._lock:
            if session is None:
                return list(self.order)
            seen = self.sessions.get(session)
            return list(seen.ids) if seen else []

    def read(self, line_id: str) -> dict[str, Any] | None:
        """One line, read at its offset (None when unknown or no longer valid)."""
        where = self.locate(line_id)
        if where is None:
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                raw = os.pread(fd, where[1], where[0])
            finally:
                os.close(fd)
            line = json.loads(raw)
        except (OSError, ValueError, RecursionError):
            return None
        return line if isinstance(line, dict) and line.get("id") == line_id else None

    def read_many(self, ids: list[str]) -> list[dict[str, Any]]:
        """Several lines with one open file; unreadable ones left out."""
        with self._lock:
            spots = [(i, self.offsets.get(i)) for i in ids]
        found = []
        try:
            with open(self.path, "rb") as fh:
                for line_id, where in spots:
                    if where is None:
                        continue
                    fh.seek(where[0])
                    try:
                        line = json.loads(fh.read(where[1]))
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(line, dict) and line.get("id") == line_id:
                        found.append(line)
        except FileNotFoundError:
            return []
        return found
