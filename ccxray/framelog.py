"""A WebSocket connection's frame log: ``{conn_id}_frames.ndjson``, one line per data frame.

Written append-only by the recorder while the connection lives, so nothing of
a long session waits in memory for its close. A turn's index line names the
byte range its frames take (``frames: [start, end]``, from its
``response.create`` line to its terminal event's line); the connection's
line names the whole log.

Lines (``ts`` in ms since the connection opened, ``dir`` "c2u"/"u2c", ``size``
the payload bytes):

- a text frame: ``{"ts":..,"dir":..,"size":..}`` TAB the frame's text as it
  came (nothing is decoded or escaped on the hot path; a text holding a
  newline is stored escaped instead, ``{..,"text":"..."}``);
- a binary or unrecorded frame: ``{..,"binary":true}`` / ``{..,"truncated":true}``;
- a turn's ``response.create``: ``{"turn":ID,"ts":..,"dir":"c2u","size":..,
  "request":STORED}``, the request as stored (a delta on its chain, see
  :mod:`ccxray.reqdelta`), read back whole by :mod:`ccxray.readback`.

Read back, a text frame that is JSON gives ``data`` (the parsed value), any
other ``text``: the frame records of the per-connection sidecars this log
replaces. Pure: formatting and parsing only; the store writes, readback reads.
"""

from __future__ import annotations

import json
import mmap
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SUFFIX = "_frames.ndjson"
TURN_MARK = '{"turn":"'


def log_name(conn_id: str) -> str:
    return conn_id + SUFFIX


def conn_of_turn(turn_id: str) -> str | None:
    """The connection id of a turn id (``{conn}-t{n}``), None for any other id."""
    conn, sep, number = turn_id.rpartition("-t")
    return conn if sep and conn and number.isdigit() else None


def frame_line(rel_ms: float, direction: str, size: int, text: str | None, truncated: bool) -> str:
    """The line of one data frame (see the module's notes)."""
    head = f'{{"ts":{rel_ms},"dir":"{direction}","size":{size}'
    if text is None:
        return head + ',"binary":true}\n'
    if truncated:
        return head + ',"truncated":true}\n'
    if "\n" in text:
        return head + ',"text":' + json.dumps(text, ensure_ascii=False) + "}\n"
    return head + "}\t" + text + "\n"


def frame_lines(rel_ms: float, direction: str, found: list[tuple[str | None, int, bool]]) -> list[str]:
    """The lines of frames that share a timestamp and direction, (text, size, truncated)
    each: as `frame_line` gives them, the common text case without a call per frame."""
    head = f'{{"ts":{rel_ms},"dir":"{direction}","size":'
    return [head + f"{size}}}\t{text}\n" if text is not None and not truncated and "\n" not in text
            else frame_line(rel_ms, direction, size, text, truncated) for text, size, truncated in found]


def create_line(turn_id: str, rel_ms: float, size: int, stored: str) -> str:
    """The line of a turn's ``response.create``: ``stored`` is the request as stored, as JSON text."""
    return f'{TURN_MARK}{turn_id}","ts":{rel_ms},"dir":"c2u","size":{size},"request":{stored}}}\n'


def _text_value(text: str) -> tuple[str, object]:
    try:
        return "data", json.loads(text)
    except (ValueError, RecursionError):
        return "text", text


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """One log line (without its newline) as a record; None when it is torn or not ours.

    A text frame gives ``data`` or ``text``; a create keeps ``turn`` and ``request``.
    """
    tab = -1 if raw.startswith(TURN_MARK.encode()) else raw.find(b"\t")  # a request may hold raw tabs
    head_bytes = raw if tab < 0 else raw[:tab]
    try:
        head = json.loads(head_bytes)
    except (ValueError, RecursionError):
        return None
    if not isinstance(head, dict):
        return None
    if tab >= 0:
        key, value = _text_value(raw[tab + 1:].decode("utf-8", "surrogatepass"))
        head[key] = value
    elif isinstance(head.get("text"), str):
        key, value = _text_value(head.pop("text"))
        head[key] = value
    return head


def read_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of each whole line in [start, end); a torn last line is left out."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(-1 if end is None else max(0, end - start))
    at = 0
    while True:
        stop = data.find(b"\n", at)
        if stop < 0:
            return
        yield start + at, data[at:stop]
        at = stop + 1


def read_line(path: Path, at: int) -> bytes | None:
    """The whole line that starts at ``at`` (without its newline); None when it is torn."""
    with open(path, "rb") as fh:
        fh.seek(at)
        raw = fh.readline()
    return raw[:-1] if raw.endswith(b"\n") else None


@contextmanager
def _opened(path: Path) -> Iterator[tuple[int, int] | None]:
    """The log's fd and size, read-only, closed afterwards; None if the log is missing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd, os.fstat(fd).st_size
    finally:
        os.close(fd)


def _line_starts(view: mmap.mmap, prefix: bytes) -> Iterator[int]:
    """Where the lines of ``view`` that start with ``prefix`` start, in order."""
    if view[:len(prefix)] == prefix:
        yield 0
    at = view.find(b"\n" + prefix)
    while at >= 0:
        yield at + 1
        at = view.find(b"\n" + prefix, at + 1)


def create_offsets(path: Path) -> dict[str, int]:
    """Where each turn's create line starts in the log at ``path`` (one pass; {} if missing)."""
    mark = TURN_MARK.encode()
    found: dict[str, int] = {}
    with _opened(path) as opened:
        if opened is None or opened[1] == 0:
            return found
        fd, size = opened
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as view:
            for start in _line_starts(view, mark):
                end = view.find(b'"', start + len(mark))
                if end < 0:
                    break
                found[view[start + len(mark):end].decode("ascii", "replace")] = start
    return found


def find_create(path: Path, turn_id: str, hint: int | None = None) -> int | None:
    """Where the create line of ``turn_id`` starts in the log at ``path`` (checking
    ``hint`` first), or None. Only the mark at a line's start counts: a frame's
    text never starts a line (it follows its head, and a newline in it is escaped)."""
    needle = (TURN_MARK + turn_id + '",').encode()
    with _opened(path) as opened:
        if opened is None:
            return None
        fd, size = opened
        if hint is not None and 0 <= hint < size and os.pread(fd, len(needle), hint) == needle and (
                hint == 0 or os.pread(fd, 1, hint - 1) == b"\n"):
            return hint
        if size == 0:
            return None
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as view:
            return next(_line_starts(view, needle), None)


__all__ = ["SUFFIX", "conn_of_turn", "create_line", "create_offsets", "find_create", "frame_line", "frame_lines", "log_name", "parse_line",
           "read_line", "read_lines"]
