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

    def req_path(self, call_id: str) -> Path:
        if not is_safe_id(call_id):
            raise ReadBackError(self.logs_dir / f"{call_id!r}_req.json", "not a valid call id")
        return self.logs_dir / f"{call_id}_req.json"

    def history(self, call_id: str, key: str, hops: int = 0) -> list[Any]:
        """The whole history list of stored request ``call_id``."""
        if call_id in self._histories:
            return self._histories[call_id]
        path = self.req_path(call_id)
        if hops > MAX_HOPS:
            raise ReadBackError(path, f"delta chain longer than {MAX_HOPS} (a cycle?)")
        stored = load_json(path)
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


def read_request(logs_dir: Path, call_id: str) -> object:
    """The whole request of ``call_id``; None if it has no request sidecar.

    Raises ReadBackError when the sidecar or a link it needs is missing or corrupt.
    """
    path = _Chain(logs_dir).req_path(call_id)
    if not path.exists():
        return None
    return read_request_file(logs_dir, path)


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


def inflate(logs_dir: Path, stored: object, path: Path) -> object:
    """The whole request a stored (maybe packed) sidecar stands for; ``path`` names it in errors."""
    if not is_packed(stored):
        return stored
    chain = _Chain(logs_dir)
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


def read_call(logs_dir: Path, call_id: str, offsets: IndexOffsets | None = None) -> dict[str, Any] | None:
    """One call whole: its index line plus ``request``, ``response`` and ``meta``; None if
    no line has that id. Raises ReadBackError naming a missing or corrupt sidecar."""
    if not is_safe_id(call_id):
        return None
    line = find_line(logs_dir, call_id, offsets)
    if line is None:
        return None
    response, meta = _response_and_meta(logs_dir, call_id)
    return {**line, "request": read_request(logs_dir, call_id), "response": response, "meta": meta}


__all__ = ["ReadBackError", "find_line", "inflate", "load_json", "read_call", "read_part", "read_request", "read_request_file",
           "unfold_response"]
