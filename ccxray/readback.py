"""Read one call back whole: its index line, the request as it was sent, response and meta.

A request stored as a delta (see :mod:`ccxray.reqdelta`) is re-inflated from
its chain of bases, the shared system prompt and blobs. A link that is
missing or unreadable raises :class:`ReadBackError` naming the file: never a
wrong body. Old full-body sidecars are read as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import framelog
from .offsets import IndexOffsets
from .reqdelta import MAX_CHAIN_DEPTH, Sources, UnpackError, is_packed, parse_delta, unpack
from .store import FOLDED_RESPONSE, INDEX_NAME, is_safe_id, iter_index, read_index

MAX_HOPS = 4 * MAX_CHAIN_DEPTH  # compact may extend a chain the proxy started; a cycle stops here


class ReadBackError(Exception):
    """A sidecar a call needs is missing or corrupt; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def load_json(path: Path) -> Any:
    """The JSON in ``path``; ReadBackError if it is missing or not whole JSON."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ReadBackError(path, "missing") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ReadBackError(path, f"unreadable ({exc})") from None


class _Chain:
    """Sources for one read: each file is opened at most once."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self._histories: dict[str, list[Any]] = {}
        self._creates: dict[str, dict[str, int]] = {}  # per frame log: where each turn's create line is

    def req_path(self, call_id: str) -> Path:
        if not is_safe_id(call_id):
            raise ReadBackError(self.logs_dir / f"{call_id!r}_req.json", "not a valid call id")
        return self.logs_dir / f"{call_id}_req.json"

    def stored(self, call_id: str) -> tuple[Path, Any]:
        """(where it is, the request as stored) of ``call_id``: its request sidecar, or
        a WebSocket turn's create line in its connection's frame log."""
        path = self.req_path(call_id)
        if path.exists():
            return path, load_json(path)
        conn = framelog.conn_of_turn(call_id)
        if conn is None or not is_safe_id(conn):
            raise ReadBackError(path, "missing")
        log = self.logs_dir / framelog.log_name(conn)
        if conn not in self._creates:  # one pass over the log, however many of its turns a chain names
            self._creates[conn] = framelog.create_offsets(log)
        at = self._creates[conn].get(call_id)
        if at is None:
            raise ReadBackError(path, "missing")
        return log, _create_record(log, call_id, at).get("request")

    def history(self, call_id: str, key: str, hops: int = 0) -> list[Any]:
        """The whole history list of stored request ``call_id``."""
        if call_id in self._histories:
            return self._histories[call_id]
        path = self.req_path(call_id)
        if hops > MAX_HOPS:
            raise ReadBackError(path, f"delta chain longer than {MAX_HOPS} (a cycle?)")
        path, stored = self.stored(call_id)
        value = stored.get(key) if isinstance(stored, dict) else None
        try:
            delta = parse_delta(value)
        except UnpackError as exc:
            raise ReadBackError(path, str(exc)) from None
        if delta is not None:
            base, prefix, append = delta
            earlier = self.history(base, key, hops + 1)
            if len(earlier) < prefix:
                raise ReadBackError(path, f"its base {base} has {len(earlier)} items, the delta keeps {prefix}")
            value = earlier[:prefix] + append
        if not isinstance(value, list):
            raise ReadBackError(path, f"holds no {key!r} list")
        self._histories[call_id] = value
        return value

    def system_text(self, digest: str) -> str:
        path = self.logs_dir / "shared" / f"system_{digest}.json"
        if not is_safe_id(digest):
            raise ReadBackError(path, "not a valid prompt hash")
        stored = load_json(path)
        text = stored.get("text") if isinstance(stored, dict) else None
        if not isinstance(text, str):
            raise ReadBackError(path, "holds no prompt text")
        return text

    def blob(self, sha: str) -> Any:
        path = self.logs_dir / "shared" / f"blob_{sha}.json"
        if not is_safe_id(sha):
            raise ReadBackError(path, "not a valid blob hash")
        return load_json(path)


def read_request(logs_dir: Path, call_id: str, offsets: IndexOffsets | None = None) -> object:
    """The whole request of ``call_id``; None if it has none stored. With ``offsets``,
    a WebSocket turn's line says where its request is in the frame log (else it is searched).

    Raises ReadBackError when the sidecar or a link it needs is missing or corrupt.
    """
    path = _Chain(logs_dir).req_path(call_id)
    if path.exists():
        return read_request_file(logs_dir, path)
    log = logs_dir / framelog.log_name(call_id)
    if log.exists():  # a WebSocket connection recorded in a frame log
        return _connection_frames(logs_dir, log, "c2u", None)
    line = find_line(logs_dir, call_id, offsets) if offsets is not None else None
    span = None if line is None else _frame_range(line)
    found = turn_create(logs_dir, call_id, None if span is None else span[0])
    return None if found is None else inflate(logs_dir, found[2].get("request"), found[0])


def turn_create(logs_dir: Path, turn_id: str, hint: int | None = None) -> tuple[Path, int, dict[str, Any]] | None:
    """(frame log, offset, create record) of a WebSocket turn kept in its connection's
    frame log; None when the log holds no create line for it."""
    conn = framelog.conn_of_turn(turn_id)
    if conn is None or not is_safe_id(conn):
        return None
    log = logs_dir / framelog.log_name(conn)
    at = framelog.find_create(log, turn_id, hint)
    if at is None:
        return None
    return log, at, _create_record(log, turn_id, at)


def _create_record(log: Path, turn_id: str, at: int) -> dict[str, Any]:
    raw = framelog.read_line(log, at)
    record = None if raw is None else framelog.parse_line(raw)
    if record is None:
        raise ReadBackError(log, f"the create line of {turn_id} at {at} is torn or not JSON")
    return record


def read_request_file(logs_dir: Path, path: Path) -> object:
    """The whole request a request sidecar at ``path`` stands for (its links in ``logs_dir``)."""
    stored = load_json(path)
    if isinstance(stored, list):
        return [_frame_back(logs_dir, frame) for frame in stored]
    return inflate(logs_dir, stored, path)


def _frame_back(logs_dir: Path, frame: object) -> object:
    """A WebSocket connection's ``response.create`` frame names its turn, whose request
    sidecar holds the frame: put it back as ``data``, where it was."""
    if not isinstance(frame, dict) or not isinstance(frame.get("turnRequest"), str):
        return frame
    data = read_request(logs_dir, frame["turnRequest"])
    if data is None:
        raise ReadBackError(logs_dir / f"{frame['turnRequest']}_req.json", "missing")
    return {("data" if key == "turnRequest" else key): (data if key == "turnRequest" else value)
            for key, value in frame.items()}


def inflate(logs_dir: Path, stored: object, path: Path, chain: _Chain | None = None) -> object:
    """The whole request a stored (maybe packed) sidecar stands for; ``path`` names it in errors.
    ``chain`` shares what one read has opened already among several requests."""
    if not is_packed(stored):
        return stored
    chain = chain or _Chain(logs_dir)
    sources = Sources(base_history=lambda base, key: chain.history(base, key, 1),
                      system_text=chain.system_text, blob=chain.blob)
    try:
        return unpack(stored, sources)
    except UnpackError as exc:
        raise ReadBackError(path, str(exc)) from None


def _load_part(logs_dir: Path, call_id: str, part: str) -> object:
    path = logs_dir / f"{call_id}_{part}.json"
    if not is_safe_id(call_id) or not path.exists():
        return None
    return load_json(path)


def unfold_response(stored: object) -> tuple[object, object] | None:
    """(response, meta) of a response sidecar that carries its call's meta, else None."""
    if isinstance(stored, dict) and stored.get("$ccxray") == FOLDED_RESPONSE and "response" in stored:
        return stored["response"], stored.get("meta")
    return None


def _response_and_meta(logs_dir: Path, call_id: str) -> tuple[object, object]:
    """Both from the response sidecar, or (older logs, WebSocket connections) from two files."""
    stored = _load_part(logs_dir, call_id, "res")
    folded = unfold_response(stored)
    if folded is not None:
        return folded
    return stored, _load_part(logs_dir, call_id, "meta")


def read_part(logs_dir: Path, call_id: str, part: str) -> object:
    """The response (``res``) or meta (``meta``) of a call, whichever file holds it;
    None if missing, ReadBackError if corrupt."""
    if part in ("res", "meta"):
        response, meta = _response_and_meta(logs_dir, call_id)
        return response if part == "res" else meta
    return _load_part(logs_dir, call_id, part)


def find_line(logs_dir: Path, call_id: str, offsets: IndexOffsets | None) -> dict[str, Any] | None:
    """The index line of ``call_id``: by offset when the map knows it, else by a scan."""
    index = logs_dir / INDEX_NAME
    if offsets is not None:
        try:
            with open(index, "rb") as fh:
                for offset in offsets.candidates(call_id):
                    fh.seek(offset)
                    for line in iter_index([fh.readline()]):
                        if line.get("id") == call_id:
                            return line
        except FileNotFoundError:
            return None
    for line in read_index(index):
        if line.get("id") == call_id:
            return line
    return None


def _frame_range(line: dict[str, Any]) -> tuple[int, int] | None:
    """The byte range a WebSocket line names in its frame log (None: an older line with sidecars)."""
    frames = line.get("frames")
    if isinstance(frames, list) and len(frames) == 2 and all(isinstance(n, int) for n in frames):
        return frames[0], frames[1]
    return None


def _connection_frames(logs_dir: Path, log: Path, direction: str, end: int | None) -> list[Any]:
    """A connection's frame records of one direction, each turn's request put back whole."""
    if end == 0:
        return []
    try:
        lines = list(framelog.read_lines(log, 0, end))
    except FileNotFoundError:
        raise ReadBackError(log, "missing") from None
    records = []
    chain = _Chain(logs_dir)
    for _, raw in lines:
        record = framelog.parse_line(raw)
        if record is None or record.get("dir") != direction:
            continue
        if "turn" in record:
            record = {"ts": record.get("ts"), "dir": direction, "size": record.get("size"),
                      "data": inflate(logs_dir, record.get("request"), log, chain)}
        records.append(record)
    return records


def _turn_parts(logs_dir: Path, line: dict[str, Any], span: tuple[int, int]) -> tuple[object, object]:
    """(request, events) of a WebSocket turn from its connection's frame log."""
    call_id = str(line.get("id"))
    found = turn_create(logs_dir, call_id, span[0])
    if found is None:
        conn = line.get("connectionId")
        raise ReadBackError(logs_dir / framelog.log_name(str(conn)), f"holds no response.create line for {call_id}")
    log, at, create = found
    events = []
    for _, raw in framelog.read_lines(log, at, at + span[1] - span[0]):
        record = framelog.parse_line(raw)
        if record is not None and record.get("dir") == "u2c" and isinstance(record.get("data"), dict):
            events.append(record["data"])
    return inflate(logs_dir, create.get("request"), log), events


def _logged_parts(logs_dir: Path, line: dict[str, Any], span: tuple[int, int]) -> dict[str, Any]:
    call_id = str(line.get("id"))
    if line.get("kind") == "turn":
        request, response = _turn_parts(logs_dir, line, span)
        return {"request": request, "response": response, "meta": None}
    log = logs_dir / framelog.log_name(call_id)
    refusal = read_part(logs_dir, call_id, "res")
    return {"request": _connection_frames(logs_dir, log, "c2u", span[1]),
            "response": refusal if refusal is not None else _connection_frames(logs_dir, log, "u2c", span[1]),
            "meta": read_part(logs_dir, call_id, "meta")}


FOLDED_PREFIX = b'{"$ccxray":"' + FOLDED_RESPONSE.encode() + b'","response":'


def _without_meta(raw: bytes) -> bytes:
    """A response sidecar's text without the call's meta folded in after it (header
    names would match every search). JSON escapes every quote inside a string and
    the meta has no "meta" key of its own, so the last ``,"meta":`` of a whole
    file is the fold's own key. (A file longer than the search window shows
    only its head, the response.)"""
    if not raw.startswith(FOLDED_PREFIX):
        return raw
    end = raw.rfind(b',"meta":')
    return raw[:end] if end > 0 else raw


def read_response_text(logs_dir: Path, call_id: str, offsets: IndexOffsets | None, limit: int) -> str:
    """The first ``limit`` bytes of a call's response as stored (JSON escapes as written),
    for a text search; "" when there is none."""
    line = find_line(logs_dir, call_id, offsets) if is_safe_id(call_id) else None
    span = None if line is None else _frame_range(line)
    try:
        if span is None:
            with open(logs_dir / f"{call_id}_res.json", "rb") as fh:
                raw = fh.read(limit + 1)
            return (_without_meta(raw) if len(raw) <= limit else raw[:limit]).decode("utf-8", "replace")
        conn = call_id if line is not None and line.get("kind") == "connection" else framelog.conn_of_turn(call_id)
        lines = framelog.read_lines(logs_dir / framelog.log_name(str(conn)), span[0], span[1])
        upstream = b"\n".join(raw for _, raw in lines if b'"dir":"u2c"' in raw.split(b"\t", 1)[0])
        return upstream[:limit].decode("utf-8", "replace")
    except OSError:
        return ""


def read_call(logs_dir: Path, call_id: str, offsets: IndexOffsets | None = None) -> dict[str, Any] | None:
    """One call whole: its index line plus ``request``, ``response`` and ``meta``; None if
    no line has that id. Raises ReadBackError naming a missing or corrupt sidecar."""
    if not is_safe_id(call_id):
        return None
    line = find_line(logs_dir, call_id, offsets)
    if line is None:
        return None
    span = _frame_range(line)
    if span is not None:
        return {**line, **_logged_parts(logs_dir, line, span)}
    response, meta = _response_and_meta(logs_dir, call_id)
    return {**line, "request": read_request(logs_dir, call_id), "response": response, "meta": meta}


__all__ = ["ReadBackError", "find_line", "inflate", "load_json", "read_call", "read_part", "read_request",
           "read_request_file", "read_response_text", "turn_create", "unfold_response"]
