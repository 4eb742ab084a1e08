"""Bounded waits for HTTP submitters while the recorder is behind.

Each submitted call gets a number. A submitter whose call is more than
``backlog`` calls ahead of the last one written waits at a gate of its own
(a closed lock on a heap by call number) until the writer has written enough
calls before its own, or for at most ``pace_s``: one wake-up per waiting
submitter when its turn comes, not all of them at every write. Thread-safe:
submitters call ``submitted``, the writer ``written``.
"""

from __future__ import annotations

import heapq
import itertools
import threading


class PacingGates:
    """Submitters' gates, opened as the writer writes calls."""

    def __init__(self, backlog: int, pace_s: float) -> None:
        self.backlog = backlog
        self.pace_s = pace_s
        self._numbers = itertools.count(1)  # calls submitted
        self._written = 0                   # calls whose line was written (or failed)
        self._waiting: list[tuple[int, threading.Lock]] = []  # (call number, its closed gate), a heap
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Submitters now at their gates."""
        return len(self._waiting)

    def submitted(self, wait: bool) -> None:
        """A call was queued; with ``wait``, wait (at most ``pace_s``) while it is
        more than ``backlog`` calls ahead of the writer."""
        number = next(self._numbers)  # atomic under the GIL
        if wait and number - self._written >= self.backlog:
            self._pace(number)

    def _pace(self, number: int) -> None:
        gate = threading.Lock()
        gate.acquire()
        with self._lock:
            if number - self._written < self.backlog:
                return
            heapq.heappush(self._waiting, (number, gate))
        if not gate.acquire(timeout=self.pace_s):
            with self._lock:  # the writer is stuck: stop waiting, and leave no gate behind
                if (number, gate) in self._waiting:
                    self._waiting.remove((number, gate))
                    heapq.heapify(self._waiting)

    def written(self, calls: int) -> None:
        """``calls`` more were written: open the gates of the submitters now within the backlog."""
        with self._lock:
            self._written += calls
            waiting = self._waiting
            while waiting and waiting[0][0] - self._written < self.backlog:
                heapq.heappop(waiting)[1].release()

    def open_all(self) -> None:
        """Nothing will be written any more: nobody waits for it."""
        with self._lock:
            while self._waiting:
                self._waiting.pop()[1].release()
