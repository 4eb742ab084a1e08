"""On-disk log: the NDJSON index, per-call sidecars, content-addressed shared files.

Layout under ``logs/``: ``index.ndjson`` (one JSON object per line),
``{id}_req.json`` / ``{id}_res.json``, a WebSocket connection's
``{id}_frames.ndjson`` (:mod:`ccxray.framelog`) and ``shared/``. An HTTP
call's meta (method, URLs, headers) rides in its ``_res.json``
(:class:`ResponseWithMeta`); older logs, and WebSocket connections, have a
``{id}_meta.json`` of their own.

Invariants: an index line is written with a single ``os.write`` on an
O_APPEND descriptor, so concurrent writers (threads or processes) never
interleave inside a line; a reader skips a torn or invalid line and counts it.
Sidecars are written in place, right after their lines (see the recorder):
a reader may find one missing or cut short for a moment, or for good after a
crash, and skips it (a JSON object or list cut short never parses). Shared
files, named by many calls, are written to a temporary name and renamed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

from .framelog import log_name
from .offsets import IndexOffsets, OffsetsBuilder

INDEX_NAME = "index.ndjson"
MAX_OPEN_FRAME_LOGS = 128  # frame logs kept open between batches (busy sessions never reopen theirs); idle ones reopen
SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass(frozen=True)
class RawJson:
    """Bytes already known to be one JSON document: written as they are."""

    data: bytes


FOLDED_RESPONSE = "res"  # the "$ccxray" marker of a response sidecar that carries its meta


@dataclass(frozen=True)
class ResponseWithMeta:
    """An HTTP call's response sidecar with its meta folded in: one file created per
    call instead of two. Written as ``{"$ccxray": "res", "response": R, "meta": M}``
    (the response first: a search reads the file's head)."""

    response: object
    meta: object


# One encoder for every line and sidecar (json.dumps with options builds a new one a call).
# No circular check (a dict of ids per container, a tenth of the cost of a call's meta):
# what is recorded comes from json.loads or is built here, never cyclic, and a cycle
# would still end in a RecursionError, which every writer counts as a failed write.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, check_circular=False).encode
_FOLDED_HEAD = b'{"$ccxray":"' + FOLDED_RESPONSE.encode() + b'","response":'


def encode_json(obj: object) -> bytes:
    """A sidecar's bytes (RawJson as it is; a folded response around its two parts)."""
    if isinstance(obj, RawJson):
        return obj.data
    if isinstance(obj, ResponseWithMeta):
        return b"".join((_FOLDED_HEAD, encode_json(obj.response), b',"meta":', encode_json(obj.meta), b"}"))
    return _COMPACT(obj).encode("utf-8", "surrogatepass")


def dumps_line(obj: object) -> bytes:
    """One compact JSON line, newline-terminated, never containing a raw newline."""
    return (_COMPACT(obj) + "\n").encode("utf-8")


def is_safe_id(value: str) -> bool:
    """Ids become file names: letters, digits, dot, dash and underscore only."""
    return bool(SAFE_ID.fullmatch(value)) and value not in (".", "..")  # fullmatch: "$" lets "id\n" pass


def _end_torn_line(fd: int) -> None:
    """After a crash mid-line, start the next line on a line of its own."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


class Store:
    """Writes the log. Not thread-safe by itself: the recorder's one writer thread owns it."""

    def __init__(self, logs_dir: Path, offsets: IndexOffsets | None = None) -> None:
        self.logs_dir = logs_dir
        self.offsets = offsets if offsets is not None else IndexOffsets()  # where each line starts
        self._logs = str(logs_dir)  # joined as strings per write: pathlib costs ~7 us a path
        self.shared_dir = logs_dir / "shared"
        self.index_path = logs_dir / INDEX_NAME
        self._index_str = str(self.index_path)
        self._fd: int | None = None
        self._dir_fd: int | None = None  # logs/, opened with the index: files are created relative to it
        self._fd_ino = -1  # the open index's inode: a prune by another process replaces the file
        self._torn = False
        self._frame_logs: OrderedDict[str, tuple[int, int]] = OrderedDict()  # conn id -> (fd, size)

    def _index_fd(self) -> int:
        if self._fd is None:
            self.shared_dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.index_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            self._fd_ino = os.fstat(self._fd).st_ino
            _end_torn_line(self._fd)
        return self._fd

    def _logs_fd(self) -> int:
        """The logs directory's descriptor: a sidecar is created by its name in it,
        not by a path walked from the root for every file. Closed and reopened with
        the index, so a logs directory replaced under the proxy is found again at
        the next append (which comes before its sidecars)."""
        if self._dir_fd is None:
            self._index_fd()
            self._dir_fd = os.open(self._logs, os.O_RDONLY | os.O_DIRECTORY)
        return self._dir_fd

    def _locked_fd(self) -> int:
        """The index fd under a shared lock, reopened if a prune replaced the file."""
        fd = self._index_fd()
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            current = os.stat(self._index_str).st_ino
        except FileNotFoundError:
            current = -1
        if current == self._fd_ino:
            return fd
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.close()
        self._remap()  # another process pruned the file: every line moved
        return self._locked_fd()

    def _remap(self) -> None:
        """Rebuild the offset map from the file as it is now."""
        found = OffsetsBuilder()
        for offset, line in read_index_offsets(self.index_path):
            if isinstance(line.get("id"), str):
                found.add(line["id"], offset)
        self.offsets.adopt(found)

    def append(self, line: dict[str, Any]) -> int:
        """Append one index line atomically; returns the offset where it starts.
        Raises OSError (disk full, ...)."""
        call_id = line.get("id")
        return self.append_bytes(dumps_line(line), [(call_id, 0)] if isinstance(call_id, str) else [])

    def append_bytes(self, data: bytes, starts: Sequence[tuple[str, int]] = ()) -> int:
        """Append whole lines (``dumps_line`` output) with one write; returns
        the offset where ``data`` starts. ``starts`` names the lines' call ids
        with their offsets within ``data``, for the offset map.

        On a failure part-way (a full disk), the file is cut back to where
        this write began before raising, so no line is ever glued to another
        and the same lines can be written again. Raises OSError.
        """
        fd = self._locked_fd()
        try:
            if self._torn:
                _end_torn_line(fd)
                self._torn = False
            done = 0
            try:
                while done < len(data):
                    done += os.write(fd, data[done:])
            except OSError:
                if done:  # all or nothing: the caller may write the same lines again
                    self._cut_back(fd, os.lseek(fd, 0, os.SEEK_CUR) - done)
                raise
            # O_APPEND moved this descriptor's position to the end of our own
            # lines, whatever other processes appended around them
            begin = os.lseek(fd, 0, os.SEEK_CUR) - len(data)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        for call_id, at in starts:
            self.offsets.add(call_id, begin + at)
        return begin

    def _cut_back(self, fd: int, size: int) -> None:
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
        except OSError:
            self._torn = True  # end the torn line before the next one instead

    def rewrite_index(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Rewrite the index with only the lines ``keep`` accepts; returns lines dropped.

        Appenders (any process) hold a shared lock per line and reopen when the
        file was replaced, so taking the exclusive lock for the final copy and
        rename loses no line written during the prune.
        """
        fd = self._index_fd()
        tmp = self.index_path.with_name(INDEX_NAME + ".prune")
        dropped = 0
        kept = OffsetsBuilder()
        tmp_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only, like the index
        with open(self.index_path, "rb") as src, open(tmp_fd, "wb") as dst:
            dropped += _copy_kept(src, dst, keep, final=False, kept=kept)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                dropped += _copy_kept(src, dst, keep, final=True, kept=kept)  # what was appended meanwhile
                dst.flush()
                os.fsync(dst.fileno())
                os.replace(tmp, self.index_path)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        self.offsets.adopt(kept)
        self.close()
        return dropped

    def write_sidecar(self, call_id: str, part: str, obj: object) -> None:
        """Write ``{id}_{part}.json``; refuses ids that are not safe file names.

        No temp file and rename: readers find sidecars through the index, and
        skip one they cannot read (a crash mid-write leaves a line naming half a file)."""
        if not is_safe_id(call_id) or not part.isalpha():
            raise ValueError(f"unsafe sidecar name {call_id!r}/{part!r}")
        write_file(f"{call_id}_{part}.json", encode_json(obj), self._logs_fd())

    def write_raw(self, name: str, data: bytes) -> None:
        """Write bytes to ``logs/{name}`` (a large body kept as it came)."""
        if not is_safe_id(name):
            raise ValueError(f"unsafe file name {name!r}")
        write_file(name, data, self._logs_fd())

    def write_shared(self, name: str, obj: object) -> bool:
        """Write ``shared/{name}.json`` once; False if it already existed."""
        if not is_safe_id(name):
            raise ValueError(f"unsafe shared name {name!r}")
        self._index_fd()
        path = f"{self.shared_dir}/{name}.json"
        if os.path.exists(path):
            return False
        # many calls will name this file: a crash must never leave half of it under its
        # name, and another writer (thread or process) may be writing the same one now
        fd, tmp = tempfile.mkstemp(dir=self.shared_dir, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        write_file(tmp, encode_json(obj))
        os.replace(tmp, path)
        return True

    def append_frames(self, conn_id: str, data: bytes) -> None:
        """Append whole lines to the connection's frame log (see :mod:`ccxray.framelog`),
        all or nothing: on a failure part-way the log is cut back. Raises OSError."""
        fd, size = self._frame_log(conn_id)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            self._cut_back(fd, size)
            self.close_frames(conn_id)  # its size is known again on reopen
            raise
        self._frame_logs[conn_id] = (fd, size + len(data))

    def _frame_log(self, conn_id: str) -> tuple[int, int]:
        found = self._frame_logs.get(conn_id)
        if found is not None:
            self._frame_logs.move_to_end(conn_id)
            return found
        if not is_safe_id(conn_id):
            raise ValueError(f"unsafe connection id {conn_id!r}")
        self._index_fd()
        fd = os.open(f"{self._logs}/{log_name(conn_id)}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._frame_logs[conn_id] = found = (fd, os.fstat(fd).st_size)
        while len(self._frame_logs) > MAX_OPEN_FRAME_LOGS:
            os.close(self._frame_logs.popitem(last=False)[1][0])
        return found

    def close_frames(self, conn_id: str) -> None:
        """The connection ended: close its frame log."""
        found = self._frame_logs.pop(conn_id, None)
        if found is not None:
            os.close(found[0])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
        while self._frame_logs:
            os.close(self._frame_logs.popitem()[1][0])


def _copy_kept(src: IO[bytes], dst: IO[bytes], keep: Callable[[dict[str, Any]], bool], final: bool,
               kept: OffsetsBuilder) -> int:
    """Copy the whole lines ``keep`` accepts (unparseable ones stay); returns lines dropped
    and adds (id, new offset) of each kept line to ``kept``.

    A line without its newline is still being written, unless ``final`` (under
    the exclusive lock nobody is writing): then it is a crash remnant, kept
    with a newline so the next append starts a line of its own.
    """
    dropped = 0
    while True:
        raw = src.readline()
        if not raw:
            return dropped
        if not raw.endswith(b"\n"):
            if final:
                dst.write(raw + b"\n")
            else:
                src.seek(-len(raw), os.SEEK_CUR)
            return dropped
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and not keep(obj):
            dropped += 1
            continue
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            kept.add(obj["id"], dst.tell())
        dst.write(raw)


def write_file(path: str | Path, data: bytes, dir_fd: int | None = None) -> None:
    """Create or replace ``path`` (relative to ``dir_fd`` if given) with ``data``
    (os-level: no buffering layer, no tty probe)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


@dataclass
class ReadStats:
    """What a tolerant read skipped."""

    lines: int = 0
    skipped: int = 0


_DECODE = json.JSONDecoder().raw_decode


def parse_line(text: str, stats: ReadStats) -> dict[str, Any] | None:
    """One stripped, non-empty index line as its object, or None (counted as
    skipped) when it is torn, invalid, not an object or has anything after it."""
    try:
        obj, end = _DECODE(text)
    except (ValueError, RecursionError):  # RecursionError: a line nested thousands deep
        stats.skipped += 1
        return None
    if end != len(text) or not isinstance(obj, dict):
        stats.skipped += 1
        return None
    stats.lines += 1
    return obj


def iter_index(lines: Iterable[str | bytes], stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Yield each valid JSON object line; skip (and count) torn or invalid ones."""
    stats = stats if stats is not None else ReadStats()
    for raw in lines:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if text:
            obj = parse_line(text, stats)
            if obj is not None:
                yield obj


def read_index(path: Path, stats: ReadStats | None = None, start: int = 0,
               stop: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream the index at ``path`` (missing file: nothing).

    With ``start``/``stop`` (byte offsets), only the lines that begin in
    [start, stop): a file split at any offsets is read exactly once.
    """
    try:
        if start or stop is not None:
            with open(path, "rb") as raw:
                yield from iter_index(_lines_between(raw, start, stop), stats)
            return
        with open(path, "r", encoding="utf-8", errors="replace", newline="\n") as text:
            yield from iter_index(text, stats)
    except FileNotFoundError:
        return


def _lines_between(raw: IO[bytes], start: int, stop: int | None) -> Iterator[str]:
    if start:
        raw.seek(start - 1)
        if raw.read(1) != b"\n":
            raw.readline()  # the line that begins before start belongs to the previous range
    while stop is None or raw.tell() < stop:
        line = raw.readline()
        if not line:
            return
        yield line.decode("utf-8", "replace")


def read_index_offsets(path: Path, stats: ReadStats | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like :func:`read_index`, with the byte offset where each line starts."""
    stats = stats if stats is not None else ReadStats()
    try:
        with open(path, "rb") as raw:
            offset = 0
            for line in raw:
                text = line.decode("utf-8", "replace").strip()
                start, offset = offset, offset + len(line)
                if text:
                    obj = parse_line(text, stats)
                    if obj is not None:
                        yield start, obj
    except FileNotFoundError:
        return
