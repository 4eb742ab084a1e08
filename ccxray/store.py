"""On-disk log: the NDJSON index, per-call sidecars, content-addressed shared files.

Layout under ``logs/``: ``index.ndjson`` (one JSON object per line),
``{id}_req.json`` / ``{id}_res.json`` / ``{id}_meta.json`` and ``shared/``.

Invariants: an index line is written with a single ``os.write`` on an
O_APPEND descriptor, so concurrent writers (threads or processes) never
interleave inside a line; a reader skips a torn or invalid line and counts it.
Sidecars are written to a temporary name and renamed, so a reader never sees
half a file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

INDEX_NAME = "index.ndjson"
SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def dumps_line(obj: object) -> bytes:
    """One compact JSON line, newline-terminated, never containing a raw newline."""
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")


def is_safe_id(value: str) -> bool:
    """Ids become file names: letters, digits, dot, dash and underscore only."""
    return bool(SAFE_ID.match(value)) and value not in (".", "..")


class Store:
    """Writes the log. Not thread-safe by itself: the recorder's one writer thread owns it."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self.shared_dir = logs_dir / "shared"
        self.index_path = logs_dir / INDEX_NAME
        self._fd: int | None = None

    def _index_fd(self) -> int:
        if self._fd is None:
            self.shared_dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def append(self, line: dict[str, Any]) -> None:
        """Append one index line atomically. Raises OSError (disk full, ...)."""
        data = dumps_line(line)
        written = os.write(self._index_fd(), data)
        if written != len(data):  # only on a full disk; finish the line so the file stays parseable
            os.write(self._index_fd(), data[written:])

    def _write_json(self, path: Path, obj: object) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8"))
        os.replace(tmp, path)

    def write_sidecar(self, call_id: str, part: str, obj: object) -> None:
        """Write ``{id}_{part}.json``; refuses ids that are not safe file names."""
        if not is_safe_id(call_id) or not part.isalpha():
            raise ValueError(f"unsafe sidecar name {call_id!r}/{part!r}")
        self._index_fd()
        self._write_json(self.logs_dir / f"{call_id}_{part}.json", obj)

    def write_shared(self, name: str, obj: object) -> bool:
        """Write ``shared/{name}.json`` once; False if it already existed."""
        if not is_safe_id(name):
            raise ValueError(f"unsafe shared name {name!r}")
        self._index_fd()
        path = self.shared_dir / f"{name}.json"
        if path.exists():
            return False
        self._write_json(path, obj)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class ReadStats:
    """What a tolerant read skipped."""

    lines: int = 0
    skipped: int = 0


def iter_index(fh: IO[bytes], stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Yield each valid JSON object line; skip (and count) torn or invalid ones."""
    stats = stats if stats is not None else ReadStats()
    for raw in fh:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            stats.skipped += 1
            continue
        if not isinstance(obj, dict):
            stats.skipped += 1
            continue
        stats.lines += 1
        yield obj


def read_index(path: Path, stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Stream the index at ``path`` (missing file: nothing)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        yield from iter_index(fh, stats)


def read_sidecar(logs_dir: Path, call_id: str, part: str) -> object | None:
    """A sidecar's JSON, or None if missing, unreadable or the id is unsafe."""
    if not is_safe_id(call_id) or not part.isalpha():
        return None
    try:
        with open(logs_dir / f"{call_id}_{part}.json", "rb") as fh:
            value: object = json.load(fh)
            return value
    except (OSError, ValueError):
        return None
