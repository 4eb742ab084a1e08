"""What the recorder keeps of a response body while it streams past.

Up to a budget (``CCXRAY_RECORD_MAX_MB``) the body is kept in memory. Past
it, the raw bytes go to a spill file (the call's ``{id}_res.body``) as they
pass, and memory keeps only the head and a rolling tail: where the model,
ids, usage and stop reason of a stream are (``message_start`` at the head,
``message_delta``/``response.completed`` at the end). So memory per call is
bounded whatever the response size; the file is bounded by the recording
cap (``CCXRAY_MAX_BODY_MB``), past which the call is marked truncated.

Runs on the relay's thread; a file that cannot be written only ends the
spilling (the call says so), never the relay. A spilling body may be handed
over as views of the relay's one reused read buffer: bytes are copied only
where they are kept (the head, the tail), the file is written from the view.
"""

from __future__ import annotations

import os
from collections import deque

HEAD_BYTES = 1 << 20
TAIL_BYTES = 1 << 20


class BodyKeeper:
    """Keeps a response body for the recorder within ``budget`` bytes of memory."""

    def __init__(self, budget: int, cap: int, spill_path: str) -> None:
        self.budget = min(max(budget, HEAD_BYTES + TAIL_BYTES), cap)
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

    def expect(self, length: int) -> None:
        """The body's announced length: one past the budget spills from its first
        byte, not after the budget has been held (and copied to the file at once)."""
        self._large = length > self.budget
        self._length = length

    @property
    def spills_whole(self) -> bool:
        """True when the body goes to its file from the first byte (announced past the budget):
        then only its ends are kept in memory and :meth:`add` may be given views."""
        return self._large

    def add(self, data: bytes | memoryview) -> None:
        """Keep (or spill) the next bytes; a memoryview only once ``spills_whole``."""
        self.size += len(data)
        if not self.spilled:
            if not self._large and self.kept + len(data) <= self.budget:
                self.head.append(bytes(data))
                self.kept += len(data)
                return
            self._start_spill()
        self._spill(data)
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
            self._spill(chunk)
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

    def _spill(self, data: bytes | memoryview) -> None:
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
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
