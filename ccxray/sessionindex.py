"""Per-session totals kept in memory: built from the log at start, updated live.

The dashboard's session list reads this instead of re-reading the log. All
methods are thread-safe (the recorder thread writes, handler threads read).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .totals import Totals, counts_usage

NO_SESSION = "(none)"


@dataclass
class SessionSummary:
    session_id: str
    agent: str | None = None
    agent_type: str | None = None
    cwd: str | None = None
    title: str | None = None
    first: str | None = None
    last: str | None = None
    turns: int = 0
    errors: int = 0
    totals: Totals = field(default_factory=Totals)
    models: list[str] = field(default_factory=list)
    rate_limits: object = None

    def add(self, line: dict[str, Any]) -> None:
        ts = line.get("ts")
        self.first = self.first or ts
        self.last = ts or self.last
        # the first value seen wins (explicit: this runs once per line of a restore)
        self.agent = self.agent or line.get("agent")
        self.agent_type = self.agent_type or line.get("agentType")
        self.cwd = self.cwd or line.get("cwd")
        self.title = self.title or line.get("title")
        if line.get("error"):
            self.errors += 1
        if not counts_usage(line):
            return
        self.totals.add(line)
        self.turns += line.get("kind") == "turn" and line.get("requestKind") != "prewarm"
        model = line.get("model")
        if isinstance(model, str) and model not in self.models:
            self.models.append(model)
        self.rate_limits = _rate_limits(line) or self.rate_limits

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id, "agent": self.agent, "agentType": self.agent_type, "cwd": self.cwd,
            "title": self.title, "first": self.first, "last": self.last, "turns": self.turns,
            "errors": self.errors, **self.totals.to_json(), "models": list(self.models),
            "rateLimits": self.rate_limits,
        }


def _rate_limits(line: dict[str, Any]) -> object:
    """Codex's latest ``codex.rate_limits`` payload, from a turn or an HTTP call."""
    meta = line.get("responseMetadata")
    if not isinstance(meta, dict):
        return None
    return meta.get("codexRateLimits") or (meta.get("rateLimits") if line.get("kind") == "turn" else None)


class SessionBuilder:
    """Summaries built without locking (one thread), then adopted by a SessionIndex."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionSummary] = {}

    def add(self, line: dict[str, Any]) -> None:
        sid = str(line.get("sessionId") or NO_SESSION)
        summary = self.sessions.get(sid)
        if summary is None:
            summary = self.sessions[sid] = SessionSummary(sid)
        summary.add(line)


class SessionIndex:
    """sessionId -> SessionSummary."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionSummary] = {}
        self._lock = threading.Lock()

    def add(self, line: dict[str, Any]) -> None:
        sid = str(line.get("sessionId") or NO_SESSION)
        with self._lock:
            summary = self._sessions.get(sid)
            if summary is None:
                summary = self._sessions[sid] = SessionSummary(sid)
            summary.add(line)

    def adopt(self, built: SessionBuilder) -> None:
        """Take a restore's summaries. Restore and live lines both run on the
        recorder's thread, so nothing was added while the builder filled up;
        any session already here is kept as it is."""
        with self._lock:
            for sid, summary in self._sessions.items():
                built.sessions.setdefault(sid, summary)
            self._sessions = built.sessions

    def list(self) -> list[dict[str, Any]]:
        """All sessions, most recently active first."""
        with self._lock:
            rows = [s.to_json() for s in self._sessions.values()]
        return sorted(rows, key=lambda s: str(s.get("last") or ""), reverse=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
