"""``ccxray compact``: rewrite full request sidecars of an existing log as deltas.

Safe beside a running proxy: the index is never rewritten (only the request
sidecars of lines already in it, each replaced atomically by rename), a
packed sidecar is read back and compared with the original before it
replaces it, and sidecars already packed are left alone (a running proxy may
be building on them). Calls are chained as the recorder chains them: per
provider, session, sub-agent flag and system prompt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .readback import ReadBackError, load_json, read_request_file
from .reqdelta import MARK, WHOLE_BELOW_BYTES, Chains, Packed, is_packed
from .sessions import prompt_hash
from .store import INDEX_NAME, Store, is_safe_id, read_index
from .wire import anthropic, openai


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # pruned since it was read: nothing to convert either way
        return 0


@dataclass
class CompactStats:
    converted: int = 0
    skipped: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def _chain_key(line: dict[str, Any]) -> tuple[object, ...]:
    if line.get("kind") == "turn":
        return ("ws", line.get("sessionId") or line.get("connectionId"), line.get("isSubagent"),
                line.get("systemPromptHash"))
    return (line.get("provider"), line.get("sessionId"), line.get("isSubagent"), line.get("systemPromptHash"))


def _system(line: dict[str, Any], request: object) -> tuple[str | None, str | None]:
    wire = anthropic if line.get("provider") == "anthropic" else openai
    text = wire.request_facts(request).system_text
    return (text, prompt_hash(text)) if text else (None, None)


class Compactor:
    """Converts one log directory; see the module's notes."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self.store = Store(logs_dir)
        self.chains = Chains()
        self.stats = CompactStats()

    def run(self) -> CompactStats:
        end = os.path.getsize(self.logs_dir / INDEX_NAME) if (self.logs_dir / INDEX_NAME).exists() else 0
        try:
            for line in read_index(self.logs_dir / INDEX_NAME, stop=end):
                call_id = line.get("id")
                if not isinstance(call_id, str) or not is_safe_id(call_id):
                    continue
                if isinstance(line.get("frames"), list):  # a frame log: its requests are stored packed already
                    if line.get("kind") == "turn":
                        self.chains.restart(_chain_key(line))
                    continue
                if line.get("kind") == "connection":
                    self._convert_frames(call_id)  # its turns came first: their lines end earlier
                else:
                    self._convert(call_id, line)
        finally:
            self.store.close()
        return self.stats

    def _convert(self, call_id: str, line: dict[str, Any]) -> None:
        path = self.logs_dir / f"{call_id}_req.json"
        try:
            original = load_json(path)
        except ReadBackError:
            self.stats.skipped += 1  # missing or torn: nothing to build on
            return
        key = _chain_key(line)
        if is_packed(original) or not isinstance(original, dict):
            self.chains.restart(key)  # not ours to convert: the chain starts afresh after it
            return
        if _size(path) < WHOLE_BELOW_BYTES and MARK not in original:
            self.chains.start(key, call_id, original)  # stays whole, as the recorder leaves it
            return
        text, digest = _system(line, original)
        packed = self.chains.pack(key, call_id, original, text, digest)
        if packed is None:
            return
        self._write(call_id, path, original, packed, text, digest)

    def _convert_frames(self, conn_id: str) -> None:
        """A WebSocket connection's ``response.create`` frames name their turns' requests."""
        path = self.logs_dir / f"{conn_id}_req.json"
        try:
            frames = load_json(path)
        except ReadBackError:
            self.stats.skipped += 1
            return
        if not isinstance(frames, list):
            return
        creates, changed = 0, []
        for frame in frames:
            data = frame.get("data") if isinstance(frame, dict) and frame.get("dir") == "c2u" else None
            if not (isinstance(data, dict) and data.get("type") == "response.create"):
                changed.append(frame)
                continue
            turn_id, creates = f"{conn_id}-t{creates}", creates + 1
            changed.append({("turnRequest" if k == "data" else k): (turn_id if k == "data" else v)
                            for k, v in frame.items()})
        if creates:
            self._replace(conn_id, path, frames, changed)

    def _replace(self, call_id: str, path: Path, original: object, stored: object) -> None:
        """Put ``stored`` in place of ``original`` if it reads back the same."""
        before = path.stat().st_size
        tmp = path.with_name(f".{call_id}_req.json.compact")
        tmp.write_bytes(json.dumps(stored, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
        try:
            back = read_request_file(self.logs_dir, tmp)
            same = _canonical(back) == _canonical(original)
        except ReadBackError:
            same = False
        if not same:  # never trade a whole body for one that reads back differently
            tmp.unlink()
            self.stats.skipped += 1
            return
        self.stats.bytes_before += before
        self.stats.bytes_after += tmp.stat().st_size
        os.replace(tmp, path)  # readers see the old whole file or the new one, never neither
        self.stats.converted += 1

    def _write(self, call_id: str, path: Path, original: dict[str, Any], packed: Packed,
               text: str | None, digest: str | None) -> None:
        if digest is not None:
            self.store.write_shared(f"system_{digest}", {"hash": digest, "text": text})
        for sha, value in packed.blobs.items():
            self.store.write_shared(f"blob_{sha}", value)
        self._replace(call_id, path, original, packed.body)  # a refusal leaves a whole body:
        # the chain goes on from it, a valid base


def _canonical(value: object) -> str:
    """Equal for equal JSON with the same key order."""
    return json.dumps(value, ensure_ascii=False, default=str)


def compact(logs_dir: Path) -> CompactStats:
    """Convert the full request sidecars of ``logs_dir`` in place; returns what was done."""
    return Compactor(logs_dir).run()
