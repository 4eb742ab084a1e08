"""What the recorder keeps of a response body while it streams past.

Up to a budget (``CCXRAY_RECORD_MAX_MB``) the body is kept in memory. Past
it, the raw bytes go to a spill file (the call's ``{id}_res.body``) as they
pass, and memory keeps only the head and a rolling tail: where the model,
ids, usage and stop reason of a stream are (``message_start`` at the head,
``message_delta``/``response.completed`` at the end). So memory per call is
bounded whatever the response size; the file is bounded by the recording
cap (``CCXRAY_MAX_BODY_MB``), past which the call is marked truncated.

A body whose Content-Length is already past the budget is read by the relay
straight into one buffer of about the budget's size (:class:`LateSpill`), used
as a ring: its bytes reach the file when the ring comes round to them, and the
last budget's worth once the client has the last byte (peer first). Bytes are
copied only where they are kept (the head, the tail); the buffer goes back to
a :class:`RingPool` for the next such body.

Runs on the relay's thread; a file that cannot be written only ends the
spilling (the call says so), never the relay.
"""

from __future__ import annotations

import os
from collections import deque

HEAD_BYTES = 1 << 20
TAIL_BYTES = 1 << 20
WRITE_BYTES = 256 * 1024  # per write from a LateSpill ring: a write of megabytes cost the kernel several times more per byte


class BodyKeeper:
    """Keeps a response body for the recorder within ``budget`` bytes of memory."""

    def __init__(self, budget: int, cap: int, spill_path: str, rings: RingPool | None = None) -> None:
        self.budget = min(max(budget, HEAD_BYTES + TAIL_BYTES), cap)
        self.rings = rings or RingPool(0)
        self.cap = cap
        self.spill_path = spill_path
        self.head: list[bytes] = []   # the whole body until it spills, then its first HEAD_BYTES
        self.tail: deque[bytes] = deque()
        self.size = 0                 # bytes seen
        self.kept = 0                 # bytes in head
        self.spilled = False
        self.truncated = False        # the recorded body stops short of what was relayed
        self.error: str | None = None
        self._tail_bytes = 0
        self._fd: int | None = None
        self._written = 0
        self._large = False           # announced past the budget: spill from the first byte
        self._length: int | None = None  # the announced length
        self._late: LateSpill | None = None

    def expect(self, length: int) -> None:
        """The body's announced length: one past the budget spills from its first
        byte (:meth:`late_spill`), not after the budget has been held in pieces."""
        self._large = length > self.budget
        self._length = length

    @property
    def spills_whole(self) -> bool:
        """True when the body goes to its file from the first byte (announced past the budget):
        then only its ends are kept in memory and :meth:`add` may be given views."""
        return self._large

    def late_spill(self) -> LateSpill:
        """For a body that ``spills_whole``: the buffer it is read into from here on,
        written to the file when the buffer comes round again and at :meth:`close`."""
        if self._late is None:
            self._late = LateSpill(self, self.rings.take(max(self.budget - HEAD_BYTES, 64 * 1024)))
        return self._late

    def add(self, data: bytes | memoryview, spill: bool = True) -> None:
        """Keep (or spill) the next bytes; a memoryview only once ``spills_whole``.
        ``spill=False``: the caller writes them to the file itself (LateSpill)."""
        self.size += len(data)
        if not self.spilled:
            if not self._large and self.kept + len(data) <= self.budget:
                self.head.append(bytes(data))
                self.kept += len(data)
                return
            self._start_spill()
        if spill:
            self.spill_bytes(data)
        if self.kept < HEAD_BYTES:  # spilled from the first byte (expect): the head fills first
            piece = bytes(data[:HEAD_BYTES - self.kept])
            self.head.append(piece)
            self.kept += len(piece)
            if len(piece) == len(data):
                return
            data = data[len(piece):]
        self._keep_tail(data)

    def _start_spill(self) -> None:
        """Past the budget: what is held goes to the file, memory keeps the head."""
        self.spilled = True
        held, self.head, self.kept = self.head, [], 0
        for chunk in held:
            self.spill_bytes(chunk)
            if self.kept < HEAD_BYTES:
                piece = chunk[:HEAD_BYTES - self.kept]
                self.head.append(piece)
                self.kept += len(piece)
            else:
                self._keep_tail(chunk)

    def _keep_tail(self, data: bytes | memoryview) -> None:
        if self._length is not None and self.size <= self._length - TAIL_BYTES:
            return  # the body's length is known: these bytes end before its last TAIL_BYTES
        self.tail.append(bytes(data))
        self._tail_bytes += len(data)
        while self._tail_bytes - len(self.tail[0]) >= TAIL_BYTES:
            self._tail_bytes -= len(self.tail.popleft())

    def spill_bytes(self, data: bytes | memoryview) -> None:
        if self.error is not None or self.truncated:
            return
        room = self.cap - self._written
        if len(data) > room:
            data, self.truncated = data[:room], True
        try:
            if self._fd is None:
                self._fd = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self._written += len(data)
        except OSError as exc:
            self.error = f"spilling the response to disk failed: {exc}"
            self.truncated = True
            self.close()

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            return os.open(self.spill_path, flags, 0o600)
        except FileNotFoundError:  # nothing recorded yet: the log folder comes with the first line
            os.makedirs(os.path.dirname(self.spill_path), 0o700, exist_ok=True)
            return os.open(self.spill_path, flags, 0o600)

    def tail_bytes(self) -> bytes:
        return b"".join(self.tail)

    def close(self) -> None:
        """Write what the LateSpill buffer still holds, then close the file."""
        if self._late is not None:
            self.rings.give(self._late.flush())
            self._late = None
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


class LateSpill:
    """A spilling body read into one buffer, as a ring: bytes go to the file only
    when the ring comes round to them, the rest once the relay is done
    (BodyKeeper.close, after the client has the last byte). So the relay writes
    to the file while it streams only what exceeds the ring, memory stays about
    the budget, and the buffer is reused read after read (no fresh pages)."""

    def __init__(self, keeper: BodyKeeper, ring: bytearray) -> None:
        self._keeper = keeper
        self._ring = ring
        self._view = memoryview(ring)
        self._read = 0      # body bytes read into the ring
        self._written = 0   # body bytes handed to the file

    def room(self, most: int) -> memoryview:
        """Where the next read goes: up to ``most`` bytes, never past the ring's end
        (what was there is written out first)."""
        size = len(self._view)
        at = self._read % size
        room = min(most, size - at)
        self._write_upto(self._read + room - size)
        return self._view[at:at + room]

    def took(self, count: int) -> memoryview:
        """``count`` bytes were read into the last room: they are the body's next bytes."""
        at = self._read % len(self._view)
        chunk = self._view[at:at + count]
        self._read += count
        self._keeper.add(chunk, spill=False)
        return chunk

    def flush(self) -> bytearray:
        """Write what is left; gives back the ring (for RingPool.give)."""
        self._write_upto(self._read)
        return self._ring

    def _write_upto(self, offset: int) -> None:
        size = len(self._view)
        while self._written < offset:
            at = self._written % size
            piece = min(offset - self._written, size - at, WRITE_BYTES)
            self._keeper.spill_bytes(self._view[at:at + piece])
            self._written += piece


class RingPool:
    """LateSpill buffers kept for the next large body, at most ``spare`` of them.

    A buffer used once has its pages mapped: taking it again costs no page
    faults, where a fresh one costs about what writing its bytes to the file
    does. Shared by the relay threads (deque appends and pops are atomic).
    """

    def __init__(self, spare: int) -> None:
        self.spare = spare
        self._free: deque[bytearray] = deque()

    def take(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes: a kept one if it fits, else a new one."""
        try:
            ring = self._free.pop()
        except IndexError:
            return bytearray(size)
        return ring if len(ring) == size else bytearray(size)

    def give(self, ring: bytearray) -> None:
        """Keep ``ring`` for the next body if there is room (no view of it may be used after)."""
        if len(self._free) < self.spare:
            self._free.append(ring)
