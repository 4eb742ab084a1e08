"""The ``ccxray usage`` report: totals overall and per model, project and session.

A Codex prewarm turn carries no workspace, so it has no cwd of its own; it
is counted under the project of its WebSocket connection (learnt from that
connection's other turns, which may come later in the log).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .totals import Totals, figures

UNKNOWN = "(unknown)"


@dataclass
class SessionInfo:
    agent: str | None = None
    cwd: str | None = None

    def learn(self, agent: object, cwd: object) -> None:
        self.agent = self.agent or (str(agent) if agent else None)
        self.cwd = self.cwd or (str(cwd) if cwd else None)


@dataclass
class Report:
    """Totals overall and per model, session and project."""

    total: Totals = field(default_factory=Totals)
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_session: dict[str, Totals] = field(default_factory=dict)
    by_project: dict[str, Totals] = field(default_factory=dict)
    sessions: dict[str, SessionInfo] = field(default_factory=dict)
    conn_cwd: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Totals] = field(default_factory=dict)  # connection id -> turns without a cwd

    def add(self, line: dict[str, Any]) -> None:
        values = figures(line)
        self.total.add_figures(*values)
        _bucket(self.by_model, str(line.get("model") or UNKNOWN)).add_figures(*values)
        session = str(line.get("sessionId") or UNKNOWN)
        _bucket(self.by_session, session).add_figures(*values)
        cwd, conn = line.get("cwd"), line.get("connectionId")
        self.sessions.setdefault(session, SessionInfo()).learn(line.get("agent"), cwd)
        if cwd and conn:
            self.conn_cwd.setdefault(str(conn), str(cwd))
        if not cwd and conn:
            _bucket(self.pending, str(conn)).add_figures(*values)
        else:
            _bucket(self.by_project, str(cwd or UNKNOWN)).add_figures(*values)

    def merge(self, other: "Report") -> None:
        self.total.merge(other.total)
        for mine, theirs in ((self.by_model, other.by_model), (self.by_session, other.by_session),
                             (self.by_project, other.by_project), (self.pending, other.pending)):
            for name, bucket in theirs.items():
                _bucket(mine, name).merge(bucket)
        for name, info in other.sessions.items():
            self.sessions.setdefault(name, SessionInfo()).learn(info.agent, info.cwd)
        for conn, cwd in other.conn_cwd.items():
            self.conn_cwd.setdefault(conn, cwd)

    def projects(self) -> dict[str, Totals]:
        """by_project with each connection's cwd-less turns placed under that connection's project."""
        merged = {name: _copy(bucket) for name, bucket in self.by_project.items()}
        for conn, bucket in self.pending.items():
            _bucket(merged, self.conn_cwd.get(conn, UNKNOWN)).merge(bucket)
        return merged

    def to_json(self) -> dict[str, Any]:
        def ordered(buckets: dict[str, Totals]) -> list[tuple[str, Totals]]:
            return sorted(buckets.items(), key=lambda kv: -kv[1].cost)

        sessions = {}
        for name, bucket in ordered(self.by_session):
            info = self.sessions.get(name, SessionInfo())
            cwd = info.cwd
            sessions[name] = {**bucket.to_json(), "agent": info.agent, "cwd": cwd,
                              "project": os.path.basename(cwd.rstrip("/")) if cwd else None}
        return {"total": self.total.to_json(),
                "byModel": {name: b.to_json() for name, b in ordered(self.by_model)},
                "bySession": sessions,
                "byProject": {name: b.to_json() for name, b in ordered(self.projects())}}


def _bucket(buckets: dict[str, Totals], name: str) -> Totals:
    bucket = buckets.get(name)
    if bucket is None:
        bucket = buckets[name] = Totals()
    return bucket


def _copy(bucket: Totals) -> Totals:
    fresh = Totals()
    fresh.merge(bucket)
    return fresh
