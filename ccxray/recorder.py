"""The recorder: one writer thread between the relays and the disk.

Relays call :meth:`Recorder.submit` after the bytes have gone to the peer
(peer first, recorder second); it is one put on a C-level SimpleQueue. All
parsing, decoding, session inference and writing happen on the writer
thread, which takes whatever is queued as one batch and writes the batch's
index lines with one ``write`` (whole lines only).

Waking: the writer thread, woken by an item, lets COALESCE_S of items
gather before it handles them (unless a batch is already waiting). Every
hand-off of the GIL from a relay to the writer lands in the middle of some
relay's round trip; one wake-up per COALESCE_S instead of one per item
keeps most round trips free of it (the index trails by at most that much
more). Once handling, the writer gives the CPU away every YIELD_EVERY_S of
work (``sched_yield`` without the GIL): the interpreter would otherwise hand
the GIL to a relay whose socket just became readable only after its 5 ms
switch interval, or when the whole batch is done, so a batch landing in a
WebSocket handshake or a round trip would hold it up by its full length.

Backlog policy (the disk or the CPU cannot keep up):
- An HTTP call's line is always written. While more than BACKLOG_ITEMS
  items wait, the connection that submitted a call waits (at most PACE_S,
  after its client has the whole answer) before it reads its next request:
  the index trails completed calls by a bounded amount, not by seconds.
  Each waiting submitter has a gate of its own, opened when the writer has
  written enough calls before its own (one wake-up each, not all of them at
  every write).
- While the backlog is over BACKLOG_ITEMS, bodies over LARGE_SIDECAR_BYTES
  are not written; the line says so (``sidecarsDropped``).
- WebSocket frames never wait (that would stall the relay); past
  MAX_QUEUE_ITEMS they are dropped and counted.

Failures are counted (``failures``, ``last_failure``), reported on stderr at
most once a minute while they last, and traffic keeps flowing.
"""

from __future__ import annotations

import os
import logging
import queue
import threading
import time
from typing import Any, Callable, Union

from .assemble import Assembler
from .writes import Writes
from .framelog import conn_of_turn
from .inflight import InFlight
from .offsets import IndexOffsets
from .pacing import PacingGates
from .record import HttpCall, IdFactory, WsClosed, WsFrame, WsOpened, WsRun
from .restore import RestoreStats, prune, restore
from .sessionindex import SessionIndex
from .store import ResponseWithMeta, Store, dumps_line

log = logging.getLogger("ccxray.recorder")

Item = Union[HttpCall, WsOpened, WsFrame, list[WsFrame], list[WsRun], WsClosed, Callable[[], None]]
Listener = Callable[[dict[str, Any]], None]
MAX_QUEUE_ITEMS = 100_000
BACKLOG_ITEMS = 16
PACE_S = 1.0
MAX_BATCH = 512
MAX_HELD_LINES = 512
WRITE_EVERY_S = 0.01  # what was handled reaches the disk within this
COALESCE_S = 0.002
YIELD_EVERY_S = 0.00005
LARGE_SIDECAR_BYTES = 256 * 1024
REPORT_EVERY_S = 60.0
MAX_UNWRITTEN_LINES = 20_000  # lines kept for a retry after a failed write
_STOP = object()


class Recorder:
    """Queue + writer thread around an :class:`Assembler` and a :class:`Store`."""

    def __init__(self, store: Store, assembler: Assembler, coalesce_s: float = COALESCE_S,
                 write_every_s: float = WRITE_EVERY_S) -> None:
        self.store = store
        self.assembler = assembler
        self.coalesce_s = coalesce_s
        self.write_every_s = write_every_s
        self._hurry = threading.Event()  # set by flush and close: no waiting for more items
        self.ids = IdFactory()
        self.dropped = 0             # frames not recorded: the backlog was over MAX_QUEUE_ITEMS
        self.sidecars_dropped = 0    # calls whose large bodies were not written (backlog)
        self.failures = 0            # writes that failed (disk full, permissions, ...)
        self.last_failure: str | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.gates = PacingGates(BACKLOG_ITEMS, PACE_S)  # HTTP submitters waiting while the writer is behind
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reported_at: float | None = None
        self._failures_reported = 0
        self._unwritten: list[tuple[dict[str, Any], bytes]] = []  # lines whose write failed, tried again first
        self._periodic: list[list[Any]] = []
        self._turn_start: Callable[[InFlight], None] = lambda call: None
        self._turn_end: Callable[[str], None] = lambda turn_id: None
        self._under_way: dict[str, set[str]] = {}  # connection id -> its turns announced and not ended
        self._closed: list[str] = []  # connections closed since the last write: their turns end with it
        self._held: list[Writes] = []  # handled and not yet written (see _handle_batch)
        self._held_calls = 0
        self._held_lines = 0
        self._held_since: float | None = None  # when the first item of the held window was handled

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ccxray-recorder")
        self._thread.start()

    def new_id(self) -> str:
        return self.ids.new_id()

    def health(self) -> dict[str, Any]:
        """Counters for ``status`` and the dashboard (read from any thread)."""
        return {"queued": self._queue.qsize(), "failures": self.failures, "lastFailure": self.last_failure,
                "framesDropped": self.dropped, "sidecarsDropped": self.sidecars_dropped,
                "linesPending": len(self._unwritten)}

    def submit(self, item: Item) -> None:
        """Hand one fact (or a list of frames) to the writer thread; never raises.

        An HTTP call waits (bounded) while the backlog is long; nothing else does.
        """
        backlog = self._queue.qsize()
        if backlog >= MAX_QUEUE_ITEMS and isinstance(item, (WsFrame, list)):
            self.dropped += 1  # the disk cannot keep up: lose a frame record, never the traffic
            return
        self._queue.put(item)
        if isinstance(item, HttpCall):
            self.gates.submitted(wait=self._thread is not None)

    def run_on_writer(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the writer thread, in order with the recorded items
        (restore and pruning touch what only that thread may touch)."""
        self._queue.put(task)

    def every(self, interval_s: float, task: Callable[[], None]) -> None:
        """Run ``task`` on the writer thread about every ``interval_s`` seconds."""
        self._periodic.append([interval_s, time.monotonic() + interval_s, task])

    def follow_turns(self, start: Callable[[InFlight], None], end: Callable[[str], None]) -> None:
        """Have ``start`` hear of each WebSocket turn once its ``response.create`` is
        recorded, and ``end`` of it once its line is (the page's turn under way), or
        at the latest once its connection's close is handled. One pair: a second
        call replaces the first."""
        self._turn_start, self._turn_end = start, end

    def add_listener(self, fn: Listener) -> None:
        with self._listeners_lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._listeners_lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    @property
    def offsets(self) -> IndexOffsets:
        """The log's id -> byte offset map (readers on any thread may look ids up)."""
        return self.store.offsets

    def prune_older_than(self, days: float) -> int:
        """Drop calls older than ``days`` from the log (writer thread only: the
        assembler must forget what it stored, a chain's base or a shared file may go)."""
        self.assembler.forget_stored()
        return prune(self.store, days, live=self.assembler.open_connections())

    def restore_into(self, index: SessionIndex, days: float | None) -> RestoreStats:
        """Rebuild the session state and ``index`` from the log (writer thread only)."""
        return restore(self.store.logs_dir, self.assembler.sessions, index, days, offsets=self.store.offsets)

    def handle_now(self, item: Item) -> None:
        """Record one item on the caller's thread, exactly as the writer thread
        would (parse, write, publish); for tools and tests without the thread."""
        self._handle_batch([item])
        self._write_held()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done.set)
        self._hurry.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread and close the files."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._hurry.set()
            self._thread.join(timeout)
            self._thread = None
            self.gates.open_all()  # nothing will be written any more: nobody waits for it
        self.store.close()

    def _due(self) -> float:
        """Run periodic tasks that are due; returns seconds until the next one."""
        now = time.monotonic()
        wait = 60.0
        for entry in self._periodic:
            if now >= entry[1]:
                entry[1] = now + entry[0]
                self._write_held()  # a task (a prune) sees every earlier line written
                self._run_task(entry[2])
            wait = min(wait, entry[1] - now)
        return max(wait, 0.01)

    def _run(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=self._wait_s())]
            except queue.Empty:
                self._write_held()  # the window is over (or lines a full disk refused: try again)
                self._report()
                continue
            if self.coalesce_s and self._queue.qsize() < MAX_BATCH:
                self._hurry.wait(self.coalesce_s)  # let the relays' next items join this batch (see above)
                self._hurry.clear()
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not self._handle_batch(batch):
                return

    def _wait_s(self) -> float:
        """How long the writer may wait for an item: until a periodic task is due,
        or the held writes' window ends."""
        wait = self._due()
        if self._held_since is not None:
            wait = min(wait, max(0.0, self._held_since + self.write_every_s - time.monotonic()))
        return wait

    def _handle_batch(self, batch: list[object]) -> bool:
        """Handle a batch; what it writes is held and written once per WRITE_EVERY_S
        window (or MAX_HELD_LINES lines), so a connection's frame log takes one
        write per window, not one per turn. HTTP calls are written at the batch's
        end (their submitters may be pacing on them). False once told to stop."""
        backlog = self._queue.qsize() + len(batch) > BACKLOG_ITEMS
        yielded = time.monotonic()
        for item in batch:
            if item is _STOP or callable(item):
                self._write_held()  # a task (flush, restore) sees every earlier line written
                if item is _STOP:
                    return False
                self._run_task(item)  # type: ignore[arg-type]
                continue
            if self._held_since is None:
                self._held_since = time.monotonic()
            for fact in item if isinstance(item, list) else [item]:
                writes = self._handle(fact, backlog)
                if writes is not None:
                    self._held.append(writes)
                    self._held_lines += len(writes.lines)
            self._held_calls += isinstance(item, HttpCall)
            now = time.monotonic()
            if self._held_lines >= MAX_HELD_LINES or now - self._held_since >= self.write_every_s:
                self._write_held()
            if now - yielded >= YIELD_EVERY_S:
                _yield_cpu()
                yielded = time.monotonic()
        if self._held_calls:
            self._write_held()
        self._report()
        return True

    def _write_held(self) -> None:
        held, calls = self._held, self._held_calls
        self._held, self._held_calls, self._held_lines, self._held_since = [], 0, 0, None
        self._write(held, calls)

    def _write(self, chunk: list[Writes], calls: int) -> None:
        """New frame-log lines, the chunk's index lines in one write, then its files,
        then the listeners.

        Lines before files: a completed call reaches the index within milliseconds
        (a reader finds a sidecar missing for as long, or for good after a
        kill -9: the line is what must survive). Listeners (the page) hear of
        a line only once its files are there.
        """
        try:
            self._write_frames()  # before the lines: a turn's line never names bytes not yet there
            written = self._append([line for writes in chunk for line in writes.lines])
            for writes in chunk:
                self._write_files(writes)
        finally:
            if calls:  # submitters pacing on the backlog may go on
                self.gates.written(calls)
        ended = {turn_id for writes in chunk for turn_id in writes.ended}
        self._turns_started(chunk, ended)
        self._publish(written)
        self._turns_ended(chunk, ended)

    def _turns_started(self, chunk: list[Writes], ended: set[str]) -> None:
        """Announce the chunk's new turns that are still under way (before its lines).
        A turn that also ended in the chunk is not announced at all: it was never
        under way for anyone reading what is written."""
        for writes in chunk:
            for call in writes.started:
                if call.id in ended:
                    ended.discard(call.id)  # (nor ended: nothing announced it)
                    continue
                self._under_way.setdefault(call.connectionId or "", set()).add(call.id)
                self._turn_start(call)

    def _turns_ended(self, chunk: list[Writes], ended: set[str]) -> None:
        """Turns whose line the chunk holds (written or not, they are over) that were
        announced, then every turn left of a connection that closed: a line that
        could not be built must not leave its turn under way for good."""
        for writes in chunk:
            for turn_id in writes.ended:
                if turn_id in ended:
                    self._end_turn(turn_id)
        closed, self._closed = self._closed, []
        for conn_id in closed:
            for turn_id in sorted(self._under_way.pop(conn_id, ())):
                self._turn_end(turn_id)

    def _end_turn(self, turn_id: str) -> None:
        conn_id = conn_of_turn(turn_id) or ""
        left = self._under_way.get(conn_id)
        if left is not None:
            left.discard(turn_id)
            if not left:
                del self._under_way[conn_id]
        self._turn_end(turn_id)

    def _write_frames(self) -> None:
        """Append each WebSocket connection's new frame-log lines (one write per connection)."""
        for conn_id, data, ended in self.assembler.take_frames():
            if data and not self._attempt(self.store.append_frames, conn_id, data):
                self.assembler.frames_lost(conn_id, len(data))
            if ended:
                self.store.close_frames(conn_id)

    def _run_task(self, task: Callable[[], None]) -> None:
        try:
            task()
        except OSError as exc:  # restore or prune could not read or write the log
            self._failed(exc)
        except Exception:  # a task's bug must not stop recording
            log.exception("ccxray: recorder task %r failed", task)

    def _handle(self, item: object, backlog: bool) -> Writes | None:
        """What one item writes (bodies left out when the backlog is long)."""
        if isinstance(item, WsClosed):
            self._closed.append(item.conn_id)  # handled or failed: its turns end with the next write
        try:
            writes = self.assembler.handle(item)
        except Exception:  # the thread's one catch for parser bugs: they must not stop recording
            log.exception("ccxray: recorder could not handle %s", type(item).__name__)
            return None
        if writes is not None and backlog and isinstance(item, HttpCall) and _body_bytes(item) > LARGE_SIDECAR_BYTES:
            self._drop_bodies(writes)
        return writes

    def _drop_bodies(self, writes: Writes) -> None:
        self.sidecars_dropped += 1
        writes.raw.clear()
        writes.sidecars = [(call_id, part, ResponseWithMeta(None, obj.meta) if isinstance(obj, ResponseWithMeta) else obj)
                           for call_id, part, obj in writes.sidecars
                           if part == "meta" or isinstance(obj, ResponseWithMeta)]
        for line in writes.lines:
            line["sidecarsDropped"] = True

    def _write_files(self, writes: Writes) -> None:
        """Sidecars, raw bodies and shared files; each failure is counted."""
        for name, data in writes.raw:
            self._attempt(self.store.write_raw, name, data)
        for call_id, part, obj in writes.sidecars:
            self._attempt(self.store.write_sidecar, call_id, part, obj)
        for name, obj in writes.shared:
            self._attempt(self.store.write_shared, name, obj)

    def _attempt(self, write: Callable[..., object], *args: Any) -> bool:
        try:
            write(*args)
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            self._failed(exc)
            return False
        return True

    def _append(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``lines`` after any a full disk refused before; returns the lines written."""
        pending = self._unwritten
        for line in lines:
            try:
                pending.append((line, dumps_line(line)))
            except (ValueError, TypeError, RecursionError) as exc:
                self._failed(exc)
        if not pending:
            return []
        starts: list[tuple[str, int]] = []
        at = 0
        for line, data in pending:
            if isinstance(line.get("id"), str):
                starts.append((line["id"], at))
            at += len(data)
        try:
            self.store.append_bytes(b"".join(data for _, data in pending), starts)
        except OSError as exc:
            self._failed(exc)
            self._unwritten = pending[-MAX_UNWRITTEN_LINES:]  # tried again, first, with the next batch
            return []
        self._unwritten = []
        return [line for line, _ in pending]

    def _publish(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        with self._listeners_lock:  # once a chunk, not once a line
            listeners = list(self._listeners)
        for line in lines:
            for fn in listeners:
                fn(line)

    def _failed(self, exc: BaseException) -> None:
        self.assembler.forget_stored()  # no later request may build on what was not written
        self.failures += 1
        self.last_failure = f"{type(exc).__name__}: {exc}"
        if self._reported_at is None:
            self._report()

    def _report(self) -> None:
        """One stderr line a minute while writes keep failing."""
        if self.failures == self._failures_reported:
            return
        now = time.monotonic()
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY_S:
            return
        new = self.failures - self._failures_reported
        self._reported_at, self._failures_reported = now, self.failures
        log.error("ccxray: recording failed %d time(s) (last: %s); traffic keeps flowing", new, self.last_failure)


def _yield_cpu() -> None:
    """Let a thread waiting for the GIL run now (it is released around the call)."""
    if hasattr(os, "sched_yield"):
        os.sched_yield()
    else:  # no sched_yield (Windows): a zero sleep still releases the GIL
        time.sleep(0)


def _body_bytes(call: HttpCall) -> int:
    return len(call.req_body) + sum(len(chunk) for chunk in call.resp_body)
