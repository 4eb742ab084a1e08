"""Where each call's line starts in ``index.ndjson``, so one call is found without a scan.

Kept compact for a log of millions of lines: an open-addressing hash table in
two ``array("q")`` (the id's 64-bit ``hash()``, this process only, and the
offset), at most half full: 32 bytes a line, no Python object per line. A
hash may collide and a file may have been replaced since: callers read the
line at each candidate offset and check its id
(:func:`ccxray.readback.find_line`).

Thread ownership: the recorder's writer thread adds; any thread looks up;
one lock guards both.
"""

from __future__ import annotations

import threading
from array import array
from typing import Iterable

EMPTY = -1         # an offset no line has: marks a free slot
MIN_SLOTS = 1024   # a power of two


class _Table:
    """Linear probing over ``slots`` (a power of two) entries."""

    def __init__(self, slots: int) -> None:
        self.mask = slots - 1
        self.keys = array("q", [0]) * slots
        self.offsets = array("q", [EMPTY]) * slots
        self.used = 0

    def insert(self, key: int, offset: int) -> None:
        slot = key & self.mask
        while self.offsets[slot] != EMPTY:
            if self.keys[slot] == key and self.offsets[slot] == offset:
                return
            slot = (slot + 1) & self.mask
        self.keys[slot], self.offsets[slot] = key, offset
        self.used += 1

    def find(self, key: int) -> list[int]:
        found, slot = [], key & self.mask
        while self.offsets[slot] != EMPTY:
            if self.keys[slot] == key:
                found.append(self.offsets[slot])
            slot = (slot + 1) & self.mask
        return found

    def grown(self) -> "_Table":
        bigger = _Table(2 * (self.mask + 1))
        for key, offset in zip(self.keys, self.offsets):
            if offset != EMPTY:
                bigger.insert(key, offset)
        return bigger


class IndexOffsets:
    """id -> byte offsets of the lines that may carry it (see the module's notes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table = _Table(MIN_SLOTS)

    def __len__(self) -> int:
        with self._lock:
            return self._table.used

    def add(self, call_id: str, offset: int) -> None:
        """Note that the line of ``call_id`` starts at ``offset``."""
        with self._lock:
            if 2 * (self._table.used + 1) > self._table.mask + 1:
                self._table = self._table.grown()
            self._table.insert(hash(call_id), offset)

    def replace(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Forget everything and hold ``pairs`` (id, offset) instead: the file was rebuilt."""
        builder = OffsetsBuilder()
        for call_id, offset in pairs:
            builder.add(call_id, offset)
        self.adopt(builder)

    def adopt(self, builder: "OffsetsBuilder") -> None:
        """Forget everything and hold what ``builder`` collected instead."""
        with self._lock:
            self._table = builder.table

    def candidates(self, call_id: str) -> list[int]:
        """Offsets where the line of ``call_id`` may start, latest first."""
        with self._lock:
            return self._table.find(hash(call_id))[::-1]


class OffsetsBuilder:
    """Collects (id, offset) pairs while a whole file is read (16 bytes each, no table
    growth on the way), outside the map's lock."""

    def __init__(self) -> None:
        self.keys = array("q")
        self.offsets = array("q")

    def add(self, call_id: str, offset: int) -> None:
        self.keys.append(hash(call_id))
        self.offsets.append(offset)

    @property
    def table(self) -> _Table:
        slots = MIN_SLOTS
        while slots < 2 * len(self.keys) + 2:
            slots *= 2
        table = _Table(slots)
        for key, offset in zip(self.keys, self.offsets):
            table.insert(key, offset)
        return table
