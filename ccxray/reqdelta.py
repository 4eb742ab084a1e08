"""Requests stored as what is new: packing against a session's previous request, and back.

Sans-IO: dicts in, dicts (plus the blobs to store) out; the caller reads and
writes the files.

A packed request is the request object with, in its own key order:

* a first key ``"$ccxray": PACK_VERSION`` (old full-body sidecars lack it and
  are read as they are);
* its history list (``messages`` for Anthropic, ``input`` for the Responses
  API) replaced by ``{"$delta": {"base": ID, "prefix": N, "append": [...]}}``:
  the first N items of call ID's history, then the new ones. A request whose
  history does not extend its chain's last one (compaction, an edited
  message, a first call, a chain K deep) keeps its whole history: a new base;
* each large text of the system prompt (``system`` / ``instructions``)
  replaced by ``{"$sys": HASH, "at": I, "len": N}``, a slice of the text in
  ``shared/system_{HASH}.json`` (so the prompt is on disk once);
* every other large value of ``BLOB_KEYS`` (the tool list) replaced by
  ``{"$blob": SHA}``, the JSON in ``shared/blob_{SHA}.json``.

Invariant: ``unpack`` of a packed request, given the same bases, system
texts and blobs, equals the request that was sent, key order included.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

PACK_VERSION = 1
MARK = "$ccxray"
HISTORY_KEYS = ("messages", "input")
SYSTEM_KEYS = ("system", "instructions")
BLOB_KEYS = ("tools",)
MIN_SHARED_CHARS = 256  # smaller texts and values stay inline: a reference would not save much
WHOLE_BELOW_BYTES = 4096  # a request body smaller than a disk block is stored as it came: a delta
                          # saves no disk there (and parsing it back would cost a chain walk)
MAX_CHAIN_DEPTH = 32    # a full snapshot every K requests: reading one call opens at most K files
MAX_CHAINS = 32         # chains remembered: each holds its newest history (parsed, a few MB at most)
REWRITE_SLACK = 4       # items at the end of the previous history a client may rewrite
                        # (Claude Code moves cache_control to the newest message every turn)


@dataclass
class ChainLink:
    """What the writer remembers of a chain's newest stored request."""

    call_id: str
    history_key: str
    history: list[Any]
    depth: int
    blob_cache: dict[str, tuple[Any, str]] = field(default_factory=dict)  # key -> (value, sha)


@dataclass
class Packed:
    """A packed request, the blobs it names (sha -> JSON value) and the link for the next call."""

    body: dict[str, Any]
    blobs: dict[str, Any]
    link: ChainLink | None
    is_base: bool


def blob_sha(value: object) -> str:
    """The content address of a JSON value (sha256 of its compact JSON, 32 hex digits)."""
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _history_key(request: dict[str, Any]) -> str | None:
    for key in HISTORY_KEYS:
        if isinstance(request.get(key), list):
            return key
    return None


def common_prefix(previous: list[Any], history: list[Any]) -> int:
    """How many leading items ``history`` keeps of ``previous``, if it rewrote at most
    REWRITE_SLACK of its last ones; 0 otherwise (the history was rewritten: a new base)."""
    top = min(len(previous), len(history))
    low = max(1, len(previous) - REWRITE_SLACK)
    for n in range(top, low - 1, -1):
        if previous[n - 1] == history[n - 1]:
            return n if previous[:n] == history[:n] else 0
    return 0


def _delta(link: ChainLink | None, key: str, history: list[Any], max_depth: int) -> dict[str, Any] | None:
    if link is None or link.history_key != key or link.depth + 1 >= max_depth:
        return None
    kept = common_prefix(link.history, history)
    if kept == 0:
        return None
    return {"$delta": {"base": link.call_id, "prefix": kept, "append": history[kept:]}}


def _sys_ref(text: object, system_text: str | None, system_hash: str | None) -> object:
    if not isinstance(text, str) or len(text) < MIN_SHARED_CHARS or not system_text or not system_hash:
        return text
    # the prompt most often opens with this text (or is it): a compare, where find()
    # would first study a needle of tens of KB
    at = 0 if system_text.startswith(text) else system_text.find(text)
    return text if at < 0 else {"$sys": system_hash, "at": at, "len": len(text)}


def _pack_system(value: object, system_text: str | None, system_hash: str | None) -> object:
    """Large texts of the system prompt become slices of the shared prompt file."""
    if isinstance(value, str):
        return _sys_ref(value, system_text, system_hash)
    if not isinstance(value, list):
        return value
    out: list[object] = []
    for block in value:
        if isinstance(block, dict) and "text" in block:
            ref = _sys_ref(block["text"], system_text, system_hash)
            block = block if ref is block["text"] else {**block, "text": ref}
        out.append(block)
    return out


def _pack_blob(key: str, value: object, previous: ChainLink | None,
               cache: dict[str, tuple[Any, str]], blobs: dict[str, Any]) -> object:
    if not isinstance(value, (list, dict)) or not value:
        return value
    known = previous.blob_cache.get(key) if previous is not None else None
    if known is not None and known[0] == value:  # equality costs less than hashing again
        sha = known[1]
    else:
        sha = blob_sha(value)
        if len(json.dumps(value, ensure_ascii=False)) < MIN_SHARED_CHARS:
            return value
    cache[key] = (value, sha)
    blobs[sha] = value
    return {"$blob": sha}


def pack(call_id: str, request: object, previous: ChainLink | None, system_text: str | None,
         system_hash: str | None, max_depth: int = MAX_CHAIN_DEPTH) -> Packed | None:
    """Pack ``request`` against its chain's ``previous`` link; None if it is not a JSON object."""
    if not isinstance(request, dict):
        return None
    body: dict[str, Any] = {MARK: PACK_VERSION}
    blobs: dict[str, Any] = {}
    cache: dict[str, tuple[Any, str]] = {}
    history_key = _history_key(request)
    is_base = True
    for key, value in request.items():
        if key == history_key:
            delta = _delta(previous, key, value, max_depth)
            is_base = delta is None
            body[key] = value if delta is None else delta
        elif key in SYSTEM_KEYS:
            body[key] = _pack_system(value, system_text, system_hash)
        elif key in BLOB_KEYS:
            body[key] = _pack_blob(key, value, previous, cache, blobs)
        else:
            body[key] = value
    link = None
    if history_key is not None:
        depth = 0 if is_base or previous is None else previous.depth + 1
        link = ChainLink(call_id, history_key, request[history_key], depth, cache)
    return Packed(body, blobs, link, is_base)


def is_packed(stored: object) -> bool:
    """True for a request written by :func:`pack` (False: an old full body, kept as sent)."""
    return isinstance(stored, dict) and stored.get(MARK) == PACK_VERSION


def delta_base(stored: object) -> str | None:
    """The id a packed request's history builds on, or None for a base."""
    if not is_packed(stored):
        return None
    assert isinstance(stored, dict)
    for key in HISTORY_KEYS:
        value = stored.get(key)
        if isinstance(value, dict) and isinstance(value.get("$delta"), dict):
            base = value["$delta"].get("base")
            return base if isinstance(base, str) else None
    return None


class UnpackError(ValueError):
    """A packed request that does not fit together (bad reference, short base)."""


@dataclass
class Sources:
    """How ``unpack`` reaches what a packed request names; each raises on a missing file."""

    base_history: Callable[[str, str], list[Any]]  # (base id, history key) -> whole history
    system_text: Callable[[str], str]              # prompt hash -> text
    blob: Callable[[str], Any]                     # sha -> JSON value


def _unsys(value: object, sources: Sources) -> object:
    if isinstance(value, dict) and "$sys" in value:
        text = sources.system_text(str(value["$sys"]))
        at, length = value.get("at"), value.get("len")
        if not isinstance(at, int) or not isinstance(length, int) or at + length > len(text):
            raise UnpackError(f"system prompt slice {value!r} is outside prompt {value['$sys']}")
        return text[at:at + length]
    if isinstance(value, list):
        return [{**b, "text": _unsys(b["text"], sources)} if isinstance(b, dict) and isinstance(b.get("text"), dict)
                else b for b in value]
    return value


def parse_delta(value: object) -> tuple[str, int, list[Any]] | None:
    """(base id, items kept, items appended) of a stored history; None if it is whole.
    Raises UnpackError for a delta that is not well formed."""
    if not (isinstance(value, dict) and isinstance(value.get("$delta"), dict)):
        return None
    delta = value["$delta"]
    base, prefix, append = delta.get("base"), delta.get("prefix"), delta.get("append")
    if not isinstance(base, str) or not isinstance(prefix, int) or prefix < 0 or not isinstance(append, list):
        raise UnpackError(f"malformed delta {delta!r:.200}")
    return base, prefix, append


def _unhistory(key: str, value: object, sources: Sources) -> object:
    delta = parse_delta(value)
    if delta is None:
        return value
    base, prefix, append = delta
    history = sources.base_history(base, key)
    if len(history) < prefix:
        raise UnpackError(f"base {base} has {len(history)} items, the delta keeps {prefix}")
    return history[:prefix] + append


def unpack(stored: object, sources: Sources) -> object:
    """The whole request a stored sidecar stands for (an unpacked one is returned as it is)."""
    if not is_packed(stored):
        return stored
    assert isinstance(stored, dict)
    out: dict[str, Any] = {}
    for key, value in stored.items():
        if key == MARK:
            continue
        if key in HISTORY_KEYS:
            out[key] = _unhistory(key, value, sources)
        elif key in SYSTEM_KEYS:
            out[key] = _unsys(value, sources)
        elif isinstance(value, dict) and set(value) == {"$blob"}:
            out[key] = sources.blob(str(value["$blob"]))
        else:
            out[key] = value
    return out


class Chains:
    """The newest link of each chain (by the caller's key), for the writer thread only.

    At most ``max_chains`` are remembered (the least recently used goes): a
    forgotten chain only means its next request is stored whole.
    """

    def __init__(self, max_chains: int = MAX_CHAINS, max_depth: int = MAX_CHAIN_DEPTH) -> None:
        self.max_chains = max_chains
        self.max_depth = max_depth
        self._links: dict[object, ChainLink] = {}
        self._blobs_stored: set[str] = set()

    def pack(self, key: object, call_id: str, request: object, system_text: str | None,
             system_hash: str | None) -> Packed | None:
        """Pack ``request`` on chain ``key``; ``blobs`` of the result are only those not stored yet."""
        previous = self._links.pop(key, None)
        packed = pack(call_id, request, previous, system_text, system_hash, self.max_depth)
        if packed is None:
            return None
        if packed.link is not None:
            self._remember(key, packed.link)
        new = {sha: value for sha, value in packed.blobs.items() if sha not in self._blobs_stored}
        self._blobs_stored.update(new)
        packed.blobs = new
        return packed

    def start(self, key: object, call_id: str, request: dict[str, Any]) -> None:
        """Request ``call_id``, stored whole as it was sent, is chain ``key``'s new base."""
        self._links.pop(key, None)
        history_key = _history_key(request)
        if history_key is not None:
            self._remember(key, ChainLink(call_id, history_key, request[history_key], 0))

    def _remember(self, key: object, link: ChainLink) -> None:
        self._links[key] = link
        if len(self._links) > self.max_chains:
            del self._links[next(iter(self._links))]

    def restart(self, key: object) -> None:
        """The next request on chain ``key`` is stored whole."""
        self._links.pop(key, None)

    def forget(self) -> None:
        """Start every chain afresh (after a failed write, or files were pruned)."""
        self._links.clear()
        self._blobs_stored.clear()
