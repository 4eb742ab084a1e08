"""Which files retention may delete once the index holds only the kept lines.

A kept call needs its own sidecars, the request sidecars of its delta chain
(bases older than the cutoff included) and the shared system prompts and
blobs those name. A WebSocket connection's frame log holds its turns'
requests: it is needed while any kept line names the connection or one of
its turns, or a kept request builds on one of its turns, and whatever its
age while the connection is still open (a session idle past the cutoff, or
pinging without data, appends again later; its closing line comes last).
Everything else written before the cutoff goes: whole chains nobody reads
any more, and shared files nobody names.

Open connections: the pruning process knows its own; another process's are
those whose id carries the pid of a process still running (a pid reused by
an unrelated process only keeps a file longer).

References are found with a byte search of each needed request sidecar (no
JSON decoding): a false hit only keeps a file longer, and a JSON string can
never hold an unescaped quote, so recorded text cannot forge a reference.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

from .framelog import SUFFIX, conn_of_turn, log_name
from .record import PID_DIGITS, id_pid
from .store import INDEX_NAME, read_index

_BASE = re.compile(rb'"\$delta":\s*\{"base":\s*"([A-Za-z0-9._-]+)"')
_SYS = re.compile(rb'"\$sys":\s*"([0-9a-f]+)"')
_BLOB = re.compile(rb'"\$blob":\s*"([0-9a-f]+)"')
_TURN = re.compile(rb'"turnRequest":\s*"([A-Za-z0-9._-]+)"')  # a WebSocket connection's frames
CALL_PARTS = ("req", "res", "meta")


@dataclass
class Needed:
    """Ids whose request sidecar is needed, and the shared files named."""

    calls: set[str] = field(default_factory=set)
    reqs: set[str] = field(default_factory=set)
    frame_logs: set[str] = field(default_factory=set)  # connection ids
    prompts: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)


def _scan_refs(data: bytes | mmap.mmap, needed: Needed) -> list[str]:
    """Note the shared files ``data`` (stored requests) names; returns the request ids it builds on."""
    needed.prompts.update(m.decode() for m in _SYS.findall(data))
    needed.blobs.update(m.decode() for m in _BLOB.findall(data))
    return [m.decode() for m in _TURN.findall(data)] + [m.decode() for m in _BASE.findall(data)]


def _scan_request(logs_dir: Path, call_id: str, needed: Needed) -> list[str]:
    """Note what one call's stored request names (its request sidecar, or the frame
    log of its connection, read once); returns the requests it builds on."""
    try:
        return _scan_refs((logs_dir / f"{call_id}_req.json").read_bytes(), needed)
    except OSError:
        pass
    conn = conn_of_turn(call_id) or call_id
    if conn in needed.frame_logs:
        return []
    try:
        with open(logs_dir / log_name(conn), "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                needed.frame_logs.add(conn)
                return []
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:  # a long session's log, unread
                needed.frame_logs.add(conn)
                return _scan_refs(view, needed)
    except OSError:
        return []


def open_connections(logs_dir: Path, own: Collection[str], closed: Collection[str] = ()) -> set[str]:
    """Connections whose frame log may still grow: ``own`` (this process's open
    ones) and those whose id names another process that is still running,
    unless their closing line is in the log (``closed``)."""
    me = os.getpid() % 10 ** PID_DIGITS
    found = set(own)
    running: dict[int, bool] = {}
    with os.scandir(logs_dir) as entries:
        conns = [e.name[:-len(SUFFIX)] for e in entries if e.name.endswith(SUFFIX)]
    for conn in conns:
        pid = id_pid(conn)
        if pid is None or pid == me or conn in closed:
            continue
        if pid not in running:
            running[pid] = _any_process_with_pid_field(pid)
        if running[pid]:
            found.add(conn)
    return found


def _any_process_with_pid_field(field_value: int) -> bool:
    """Whether a running process has a pid that an id would show as ``field_value``
    (signal 0 only asks; the proxy runs on POSIX systems alone: fdlimit needs `resource`)."""
    step = 10 ** PID_DIGITS
    for pid in range(field_value, _pid_max() + 1, step):
        if pid <= 0:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            return True  # running, as another user
        return True
    return False


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 1 << 22  # Linux's ceiling; elsewhere pids stay below it too


def needed_files(logs_dir: Path, open_conns: Collection[str] = ()) -> Needed:
    """What the calls of the current index and the open connections need, chains
    followed to their bases."""
    needed = Needed()
    needed.calls.update(open_conns)
    for line in read_index(logs_dir / INDEX_NAME):
        call_id, prompt, conn = line.get("id"), line.get("systemPromptHash"), line.get("connectionId")
        if isinstance(call_id, str):
            needed.calls.add(call_id)
        if isinstance(prompt, str):
            needed.prompts.add(prompt)
        if isinstance(conn, str):
            needed.calls.add(conn)  # a kept turn keeps its connection's files
    todo = list(needed.calls)
    while todo:
        call_id = todo.pop()
        if call_id in needed.reqs:
            continue
        needed.reqs.add(call_id)
        todo += [other for other in _scan_request(logs_dir, call_id, needed) if other not in needed.reqs]
    return needed


def _is_old(path: Path, cutoff_epoch_s: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff_epoch_s
    except OSError:
        return False


def _call_file_needed(name: str, needed: Needed) -> bool:
    if name.endswith(SUFFIX):
        conn = name[:-len(SUFFIX)]
        return conn in needed.calls or conn in needed.frame_logs
    stem = name[:-len(".json")] if name.endswith(".json") else name[:-len(".body")]
    call_id, _, part = stem.rpartition("_")
    return call_id in needed.calls or (part == "req" and call_id in needed.reqs)


def _remove(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except OSError:
        return 0


def remove_unneeded(logs_dir: Path, cutoff_epoch_s: float, open_conns: Collection[str] = ()) -> int:
    """Delete call sidecars and shared prompts/blobs written before the cutoff that no
    kept call or open connection (see ``open_connections``) needs; returns how many files went."""
    needed = needed_files(logs_dir, open_conns)
    removed = 0
    with os.scandir(logs_dir) as entries:
        names = [e.name for e in entries if e.is_file()]
    for name in names:
        is_call_file = name.endswith(("_res.body", SUFFIX)) or (
            name.endswith(".json") and name[:-5].rpartition("_")[2] in CALL_PARTS)
        if is_call_file and not _call_file_needed(name, needed) and _is_old(logs_dir / name, cutoff_epoch_s):
            removed += _remove(logs_dir / name)
    shared = logs_dir / "shared"
    for prefix, keep in (("system_", needed.prompts), ("blob_", needed.blobs)):
        for path in shared.glob(prefix + "*.json"):
            if path.stem[len(prefix):] not in keep and _is_old(path, cutoff_epoch_s):
                removed += _remove(path)
    return removed
