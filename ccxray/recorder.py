"""The recorder: one writer thread between the relays and the disk.

Relays call :meth:`Recorder.submit` after the bytes have gone to the peer
(peer first, recorder second). ``submit`` never blocks and never raises: it
is one put on a C-level SimpleQueue, and when the backlog is over
MAX_QUEUE_ITEMS the item is dropped and counted. All parsing, decoding,
session inference and writing happen on the writer thread; a failing disk is
reported once on stderr (logging) and traffic keeps flowing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Union

from .assemble import Assembler
from .record import HttpCall, IdFactory, WsClosed, WsFrame, WsOpened
from .store import Store

log = logging.getLogger("ccxray.recorder")

Item = Union[HttpCall, WsOpened, WsFrame, list[WsFrame], WsClosed, Callable[[], None]]
Listener = Callable[[dict[str, Any]], None]
MAX_QUEUE_ITEMS = 100_000
_STOP = object()


class Recorder:
    """Queue + writer thread around an :class:`Assembler` and a :class:`Store`."""

    def __init__(self, store: Store, assembler: Assembler) -> None:
        self.store = store
        self.assembler = assembler
        self.ids = IdFactory()
        self.dropped = 0
        self.failures = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reported = False
        self._periodic: list[list[Any]] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ccxray-recorder")
        self._thread.start()

    def new_id(self) -> str:
        return self.ids.new_id()

    def submit(self, item: Item) -> None:
        """Hand one fact (or a list of frames) to the writer thread; never blocks, never raises."""
        if self._queue.qsize() >= MAX_QUEUE_ITEMS:
            self.dropped += 1  # the disk cannot keep up: lose a record, never the traffic
            return
        self._queue.put(item)

    def run_on_writer(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the writer thread, in order with the recorded items
        (restore and pruning touch what only that thread may touch)."""
        self._queue.put(task)

    def every(self, interval_s: float, task: Callable[[], None]) -> None:
        """Run ``task`` on the writer thread about every ``interval_s`` seconds."""
        self._periodic.append([interval_s, time.monotonic() + interval_s, task])

    def add_listener(self, fn: Listener) -> None:
        with self._listeners_lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._listeners_lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread and close the files."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        self.store.close()

    def _due(self) -> float:
        """Run periodic tasks that are due; returns seconds until the next one."""
        now = time.monotonic()
        wait = 60.0
        for entry in self._periodic:
            if now >= entry[1]:
                entry[1] = now + entry[0]
                self._handle(entry[2])
            wait = min(wait, entry[1] - now)
        return max(wait, 0.01)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._due())
            except queue.Empty:
                continue
            if item is _STOP:
                return
            if isinstance(item, list):
                for frame in item:
                    self._handle(frame)
            else:
                self._handle(item)

    def _handle(self, item: object) -> None:
        try:
            if callable(item):
                item()
                return
            writes = self.assembler.handle(item)
            if writes is None:
                return
            for name, data in writes.raw:
                self.store.write_raw(name, data)
            for call_id, part, obj in writes.sidecars:
                self.store.write_sidecar(call_id, part, obj)
            for name, obj in writes.shared:
                self.store.write_shared(name, obj)
            for line in writes.lines:
                self.store.append(line)
                self._publish(line)
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            self.assembler.forget_stored()  # no later request may build on what was not written
            self._report(exc)
        except Exception:  # the thread's one top-level catch: a parser bug must not stop recording
            log.exception("ccxray: recorder could not handle %s", type(item).__name__)

    def _publish(self, line: dict[str, Any]) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for fn in listeners:
            fn(line)

    def _report(self, exc: BaseException) -> None:
        self.failures += 1
        if not self._reported:
            self._reported = True
            log.error("ccxray: recording failed (%s); traffic keeps flowing, further failures are counted", exc)
