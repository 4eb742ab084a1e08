"""Where each call's line starts in ``index.ndjson``, so one call is found without a scan.

Kept compact for a log of millions of lines: ids are stored as their 64-bit
``hash()`` (this process only) in a sorted ``array`` beside the offsets, 16
bytes a line, plus a small dict of lines added since the last merge. A hash
may collide and a file may have been replaced since: callers read the line at
each candidate offset and check its id (:func:`ccxray.readback.find_line`).

Thread ownership: the recorder's writer thread adds; any thread looks up;
one lock guards both.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from typing import Iterable

MERGE_AFTER = 65536  # recent additions kept in a dict before they join the sorted arrays


class IndexOffsets:
    """id -> byte offsets of the lines that may carry it (see the module's notes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys = array("q")
        self._offsets = array("q")
        self._recent: dict[str, int] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys) + len(self._recent)

    def add(self, call_id: str, offset: int) -> None:
        """Note that the line of ``call_id`` starts at ``offset``."""
        with self._lock:
            self._recent[call_id] = offset
            if len(self._recent) >= MERGE_AFTER:
                self._merge(self._recent.items())
                self._recent = {}

    def replace(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Forget everything and hold ``pairs`` (id, offset) instead: the file was rebuilt."""
        keys, offsets = array("q"), array("q")
        for call_id, offset in pairs:
            keys.append(hash(call_id))
            offsets.append(offset)
        keys, offsets = _sorted(keys, offsets)
        with self._lock:
            self._keys, self._offsets, self._recent = keys, offsets, {}

    def candidates(self, call_id: str) -> list[int]:
        """Offsets where the line of ``call_id`` may start, newest knowledge first."""
        key = hash(call_id)
        with self._lock:
            found = [self._recent[call_id]] if call_id in self._recent else []
            at = bisect_left(self._keys, key)
            while at < len(self._keys) and self._keys[at] == key:
                found.append(self._offsets[at])
                at += 1
        return found

    def _merge(self, pairs: Iterable[tuple[str, int]]) -> None:
        keys, offsets = array("q", self._keys), array("q", self._offsets)
        for call_id, offset in pairs:
            keys.append(hash(call_id))
            offsets.append(offset)
        self._keys, self._offsets = _sorted(keys, offsets)


def _sorted(keys: array[int], offsets: array[int]) -> tuple[array[int], array[int]]:
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return array("q", (keys[i] for i in order)), array("q", (offsets[i] for i in order))
