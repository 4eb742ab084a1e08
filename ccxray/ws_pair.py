"""Two sockets around one WsBridge, pumped by two threads (one per direction).

Invariants:
- All bridge state is behind ``lock``; a bridge call and the queuing of its
  output happen under it, so output is queued in the bridge's order.
- Each socket has a send lock held from taking its pending bytes to the end
  of ``sendall``, so bytes reach the wire in the order they were queued, and
  a socket that stops reading blocks only the pump that writes to it (which
  then stops reading its own source: backpressure, no unbounded buffer).
  Lock order: a send lock, then ``lock``; no thread holds both send locks.
- Bytes wait in ``pending`` only once the bridge is closing (its close
  frames come from any thread); until then a pump's bytes go one way only,
  so it sends them under the send lock it took before feeding the bridge.
- Peer first, recorder second: messages are recorded after their sendall,
  one hand-off per recv.
- Idle: no bytes from either side for the idle timeout closes both with 1011;
  once a close has started, the pair ends at the latest CLOSE_TIMEOUT_S later.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from typing import Callable

from . import closecodes
from .netio import RECV_BYTES
from .record import WsRun
from .waits import ReadWatch
from .wsbridge import CLIENT, OTHER, SIDES, UPSTREAM, Output, Run, Side, WsBridge

log = logging.getLogger("ccxray.ws")
_monotonic, _time = time.monotonic, time.time  # once per recv: no module lookups
CLOSE_TIMEOUT_S = 5.0
FINAL_FLUSH_S = 1.0
LOG_DIRECTION = {CLIENT: "c2u", UPSTREAM: "u2c"}  # the sidecars' spelling of who sent a frame


def shutdown_quietly(sock: socket.socket) -> None:
    """Shut a socket down (waking any thread in poll/recv on it) without closing the fd."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Pair:
    """Two sockets around one WsBridge, pumped by two threads."""

    def __init__(self, conn_id: str, client_sock: socket.socket, up_sock: socket.socket, bridge: WsBridge,
                 submit: Callable[[list[WsRun]], None], idle_s: float) -> None:
        self.submit = submit
        self.conn_id = conn_id
        self.socks = {CLIENT: client_sock, UPSTREAM: up_sock}
        self.bridge = bridge
        self.lock = threading.Lock()
        self.send_locks = {CLIENT: threading.Lock(), UPSTREAM: threading.Lock()}
        self.pending: dict[Side, list[bytes]] = {CLIENT: [], UPSTREAM: []}  # queued, in order, not yet sent
        self.last_activity = time.monotonic()
        self.close_deadline: float | None = None
        self.terminated = threading.Event()
        self.idle_s = idle_s
        self._routes = {side: (OTHER[side], self.socks[OTHER[side]], self.send_locks[OTHER[side]], LOG_DIRECTION[side])
                        for side in SIDES}  # what a recv from ``side`` needs: looked up once

    # -- the hot path: one recv ------------------------------------------

    def feed(self, side: Side, data: bytes | None) -> bool:
        """Bytes ``side`` sent (None at EOF): pass on, hang up and record what came
        of them; returns whether bytes from ``side`` still matter.

        Once per recv, so two locks and no queue in the common case: the send
        lock of the side the bytes go to is taken first and held to the end
        of their sendall (``with`` costs twice a bare acquire/release here).
        """
        to, to_sock, send_lock, direction = self._routes[side]
        lock, bridge = self.lock, self.bridge
        send_lock.acquire()
        try:
            lock.acquire()
            try:
                self.last_activity = _monotonic()
                out = bridge.feed(side, data)
                received = _time() if out.runs else 0.0  # stamped when the proxy got them, not when sent
                closing = bridge.close is not None
                if not closing:  # bytes went one way only, and none wait
                    forward, finished, reading = out.to[to], False, True
                else:
                    finished = self._queue(out)
                    forward = self._take(to)
                    reading = bridge.wants_read(side)
            finally:
                lock.release()
            if forward:
                try:
                    to_sock.sendall(forward)
                except OSError:
                    shutdown_quietly(to_sock)  # its pump sees EOF and reports the drop
        finally:
            send_lock.release()
        if closing:
            self._deliver(out, finished, received)
        elif out.runs:
            (_, seq, found), = out.runs  # one bridge feed, one sender
            self.submit([WsRun(self.conn_id, direction, received, seq, found)])
        return reading

    def _queue(self, out: Output) -> bool:
        """Queue a bridge call's bytes (under ``lock``); returns whether the pair is finished."""
        to = out.to
        for side in SIDES:
            if to[side]:
                self.pending[side].append(to[side])
        if self.close_deadline is None:
            if not self.bridge.is_closing:
                return False
            self.close_deadline = time.monotonic() + CLOSE_TIMEOUT_S
        return self.bridge.is_finished

    def _take(self, side: Side) -> bytes:
        """The bytes queued for ``side``, in order (under ``lock``, with its send lock held)."""
        chunks, self.pending[side] = self.pending[side], []
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _send(self, side: Side, data: bytes) -> None:
        """sendall (its send lock held)."""
        try:
            self.socks[side].sendall(data)
        except OSError:
            shutdown_quietly(self.socks[side])  # its pump sees EOF and reports the drop

    def _deliver(self, out: Output, finished: bool, received: float) -> None:
        """Send what was queued, then hang up and record (outside ``lock``)."""
        to = out.to
        for side in SIDES:
            if to[side]:
                self._flush(side)
        for side in out.hangup:
            shutdown_quietly(self.socks[side])
        if out.runs:
            self.submit(self._frames(out.runs, received))
        if finished:
            self.terminate()

    def _flush(self, side: Side) -> None:
        with self.send_locks[side]:
            with self.lock:
                data = self._take(side)
            if data:  # else another thread sent them already
                self._send(side, data)

    def _frames(self, runs: list[Run], received: float) -> list[WsRun]:
        conn_id = self.conn_id
        return [WsRun(conn_id, LOG_DIRECTION[side], received, seq, found) for side, seq, found in runs]

    # -- the rest -----------------------------------------------------------

    def apply(self, out: Output) -> None:
        """Send and record what a bridge call made outside the pair produced
        (the bytes that came with the handshakes)."""
        with self.lock:
            finished = self._queue(out)
        self._deliver(out, finished, time.time())

    def close_both(self, code: int, reason: str) -> None:
        with self.lock:
            out = self.bridge.close_both(code, reason)
            finished = self._queue(out)
        self._deliver(out, finished, 0.0)

    def terminate(self) -> None:
        """Wake both pumps for good: the pair is over.

        Bytes still queued (a close frame another thread has not flushed yet)
        go out first: shutting a socket down would throw them away.
        """
        if self.terminated.is_set():
            return
        self.terminated.set()
        for side in SIDES:
            self._flush_last(side)
        for sock in self.socks.values():
            shutdown_quietly(sock)

    def _flush_last(self, side: Side) -> None:
        """Best effort and bounded: a peer that stopped reading must not hold the end up."""
        if not self.send_locks[side].acquire(timeout=FINAL_FLUSH_S):
            return
        try:
            with self.lock:
                data = self._take(side)
            if data:
                self.socks[side].send(data, socket.MSG_DONTWAIT)
        except OSError:
            pass  # the peer is gone or not reading: nothing more to deliver
        finally:
            self.send_locks[side].release()

    def time_left(self) -> float:
        """Seconds until the idle or close deadline, whichever is first."""
        now = time.monotonic()
        with self.lock:
            limit = self.last_activity + self.idle_s
            if self.close_deadline is not None:
                limit = min(limit, self.close_deadline)
        return limit - now

    def _on_timeout(self) -> None:
        now = time.monotonic()
        with self.lock:
            closing_expired = self.close_deadline is not None and now >= self.close_deadline
            idle = now - self.last_activity >= self.idle_s
        if closing_expired:
            self.terminate()
        elif idle:
            self.close_both(closecodes.INTERNAL_ERROR, "idle timeout")

    def pump_guarded(self, side: Side) -> None:
        """``pump`` as a thread's top frame: a bug ends the pair instead of the thread alone."""
        try:
            self.pump(side)
        except Exception:  # the u2c thread's one catch-all
            log.exception("ccxray: WebSocket %s pump (%s) failed", self.conn_id, side.value)
            self.terminate()

    def pump(self, side: Side) -> None:
        """Read ``side`` until it is done or the pair is over; then see the close through."""
        read, feed, terminated = Reader(self.socks[side]).read, self.feed, self.terminated
        with self.lock:
            reading = self.bridge.wants_read(side)
        while reading:
            data = read(self.idle_s if self.close_deadline is None else self.time_left())
            if terminated.is_set():
                return  # (terminate() shut the socket down: its EOF is not the peer's)
            if data is None:
                self._on_timeout()
                continue
            reading = feed(side, data or None)
        self._await_end()

    def _await_end(self) -> None:
        """This side is done (its close, EOF or violation started the closing):
        the other pump may sit in a recv armed before that, so this thread
        holds the close deadline."""
        if not self.terminated.is_set() and not self.terminated.wait(max(self.time_left(), 0.0)):
            self.terminate()


class Reader:
    """``recv`` bounded by a deadline: a readiness wait (``poll``, registered
    once per pump), then one recv on the blocking socket. The wait is the
    design's idle detection; the socket has no Python timeout, so the recv
    itself adds no second poll.

    After a recv that filled the buffer more bytes are almost surely waiting
    (a large message streaming in): the next read tries a non-blocking recv
    first and waits only if that finds nothing, one syscall instead of two.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._watch = ReadWatch(sock)
        self._poll = self._watch.plain_poll  # None: the watch has to look first (TLS, no poll)
        self._recv = sock.recv
        self._full = False  # the last recv filled the buffer (plain sockets only: TLS takes no flags)

    def read(self, timeout_s: float) -> bytes | None:
        """Bytes (b"" at EOF or a failure), or None if ``timeout_s`` passed first."""
        try:
            poll = self._poll
            if poll is None:
                return self._recv(RECV_BYTES) if self._watch.wait(timeout_s) else None
            if self._full:
                try:
                    data = self._recv(RECV_BYTES, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    data = None  # all taken after all: wait as usual
                if data is not None:
                    self._full = len(data) == RECV_BYTES
                    return data
            ms = math.ceil(timeout_s * 1000)  # rounded up: never a busy loop of 0 ms waits
            if not poll(ms if ms > 0 else 0):
                return None
            data = self._recv(RECV_BYTES)
            self._full = len(data) == RECV_BYTES
            return data
        except (OSError, ValueError):
            return b""  # reset, shut down or closed: the bridge sees EOF
