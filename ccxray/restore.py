"""Start-up restore and log retention.

Restore streams ``index.ndjson`` once (a torn or invalid line is skipped and
counted; the file is never loaded whole) to rebuild the session list, the
active Claude session, and the Codex prompt agent types persisted in
``shared/openai_prompt_meta_{hash}.json``.

Retention rewrites the index without lines older than the cutoff and deletes
old sidecars. It runs on the recorder's thread, so no line of this process is
written meanwhile; other processes appending to the same file are handled by
the store's lock (see ``Store.rewrite_index``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from .offsets import IndexOffsets, OffsetsBuilder
from .retention import open_connections, remove_unneeded
from .sessionindex import SessionBuilder, SessionIndex
from .sessions import Identity, SessionTracker
from .store import INDEX_NAME, ReadStats, Store, read_index_offsets

PROMPT_META_PREFIX = "openai_prompt_meta_"


@dataclass
class RestoreStats:
    lines: int = 0
    skipped: int = 0
    sessions: int = 0
    prompt_agents: int = 0
    seconds: float = 0.0


def _restore_prompt_agents(shared_dir: Path, tracker: SessionTracker) -> int:
    count = 0
    for path in sorted(shared_dir.glob(PROMPT_META_PREFIX + "*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        agent_type = meta.get("agentType") if isinstance(meta, dict) else None
        if isinstance(agent_type, str):
            tracker.restore_prompt_agent(path.stem[len(PROMPT_META_PREFIX):], agent_type)
            count += 1
    return count


def restore(logs_dir: Path, tracker: SessionTracker, index: SessionIndex,
            restore_days: float | None, now: float | None = None,
            offsets: IndexOffsets | None = None) -> RestoreStats:
    """Rebuild in-memory state from the log; lines older than ``restore_days`` are ignored
    (by the sessions, not by ``offsets``, which learns where every line starts)."""
    started = time.monotonic()
    now = time.time() if now is None else now
    cutoff_ms = None if restore_days is None else (now - restore_days * 86400) * 1000
    stats = RestoreStats()
    read = ReadStats()
    sessions = SessionBuilder()
    last_claude: dict[str, object] | None = None
    found = OffsetsBuilder() if offsets is not None else None
    for offset, line in read_index_offsets(logs_dir / INDEX_NAME, read):
        call_id = line.get("id")
        if found is not None and isinstance(call_id, str):
            found.add(call_id, offset)
        received = line.get("receivedAt")
        if cutoff_ms is not None and isinstance(received, (int, float)) and received < cutoff_ms:
            continue
        sessions.add(line)
        if line.get("agent") == "claude" and line.get("sessionId") and not line.get("sessionInferred"):
            last_claude = line
    index.adopt(sessions)
    if offsets is not None and found is not None:
        offsets.adopt(found)
    if last_claude is not None:
        _note_claude(last_claude, tracker)
    stats.lines, stats.skipped = read.lines, read.skipped
    stats.sessions = len(index)
    stats.prompt_agents = _restore_prompt_agents(logs_dir / "shared", tracker)
    stats.seconds = time.monotonic() - started
    return stats


def _note_claude(line: dict[str, object], tracker: SessionTracker) -> None:
    """Replay the last Claude session seen, so sub-agent inference continues across a restart."""
    received = line.get("receivedAt")
    ts = float(received) / 1000 if isinstance(received, (int, float)) else 0.0
    cwd = line.get("cwd")
    tracker.resolve(Identity(session_id=str(line["sessionId"]), agent="claude",
                             cwd=cwd if isinstance(cwd, str) else None), ts)


def prune(store: Store, retention_days: float, now: float | None = None, live: Collection[str] = ()) -> int:
    """Drop index lines and sidecars older than ``retention_days``; returns lines dropped.

    A request sidecar that a kept call's delta chain builds on, a shared file
    a kept call names, and the frame log of a connection still open (``live``:
    this process's; another's are found by pid) stay (see :mod:`ccxray.retention`).
    """
    now = time.time() if now is None else now
    cutoff_ms = (now - retention_days * 86400) * 1000

    closed: set[str] = set()  # connections whose closing line is in the log: over, whoever recorded them

    def keep(line: dict[str, object]) -> bool:
        if line.get("kind") == "connection" and isinstance(line.get("id"), str):
            closed.add(line["id"])  # type: ignore[arg-type]
        received = line.get("receivedAt")
        return not isinstance(received, (int, float)) or received >= cutoff_ms

    dropped = store.rewrite_index(keep)
    remove_unneeded(store.logs_dir, cutoff_ms / 1000, open_connections(store.logs_dir, live, closed))
    return dropped
