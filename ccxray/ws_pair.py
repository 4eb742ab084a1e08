"""Two sockets around one WsBridge, pumped by two threads (one per direction).

Invariants:
- All bridge state is behind ``lock``; a bridge call and the queuing of its
  output happen under it, so output is queued in wsproto's order.
- Each socket has a send lock held from taking its pending bytes to the end
  of ``sendall``, so bytes reach the wire in the order they were queued, and
  a socket that stops reading blocks only the pump that writes to it (which
  then stops reading its own source: backpressure, no unbounded buffer).
- Peer first, recorder second: messages are recorded after their sendall.
- Idle: no bytes from either side for the idle timeout closes both with 1011;
  once a close has started, the pair ends at the latest CLOSE_TIMEOUT_S later.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

from . import closecodes
from .netio import RECV_BYTES
from .record import WsFrame
from .waits import wait_readable
from .wsbridge import MessageSeen, Output, Side, WsBridge

log = logging.getLogger("ccxray.ws")
CLOSE_TIMEOUT_S = 5.0
FINAL_FLUSH_S = 1.0
LOG_DIRECTION = {Side.CLIENT: "c2u", Side.UPSTREAM: "u2c"}  # the sidecars' spelling of who sent a frame


def shutdown_quietly(sock: socket.socket) -> None:
    """Shut a socket down (waking any thread in poll/recv on it) without closing the fd."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Pair:
    """Two sockets around one WsBridge, pumped by two threads."""

    def __init__(self, conn_id: str, client_sock: socket.socket, up_sock: socket.socket, bridge: WsBridge,
                 submit: Callable[[list[WsFrame]], None], idle_s: float) -> None:
        self.submit = submit
        self.conn_id = conn_id
        self.socks = {Side.CLIENT: client_sock, Side.UPSTREAM: up_sock}
        self.bridge = bridge
        self.lock = threading.Lock()
        self.send_locks = {Side.CLIENT: threading.Lock(), Side.UPSTREAM: threading.Lock()}
        self.pending = {Side.CLIENT: bytearray(), Side.UPSTREAM: bytearray()}
        self.last_activity = time.monotonic()
        self.close_deadline: float | None = None
        self.terminated = threading.Event()
        self.idle_s = idle_s

    def apply(self, out: Output, received: float | None = None) -> None:
        """Send what a bridge call produced (under the send locks), then record messages."""
        with self.lock:
            for side in Side:
                if out.to[side]:
                    self.pending[side] += out.to[side]
            if self.bridge.is_closing and self.close_deadline is None:
                self.close_deadline = time.monotonic() + CLOSE_TIMEOUT_S
            finished = self.bridge.is_finished
        for side in Side:
            if out.to[side]:
                self._flush(side)
        for side in out.hangup:
            shutdown_quietly(self.socks[side])
        if out.messages:
            now = time.time() if received is None else received
            self.submit([self._frame(msg, now) for msg in out.messages])
        if finished:
            self.terminate()

    def _flush(self, side: Side) -> None:
        with self.send_locks[side]:
            with self.lock:
                data, self.pending[side] = self.pending[side], bytearray()
            if not data:
                return
            try:
                self.socks[side].sendall(data)
            except OSError:
                shutdown_quietly(self.socks[side])  # its pump sees EOF and reports the drop

    def _frame(self, msg: MessageSeen, now: float) -> WsFrame:
        return WsFrame(self.conn_id, LOG_DIRECTION[msg.side], now, msg.text, msg.size, msg.truncated, msg.seq)

    def feed(self, side: Side, data: bytes | None) -> None:
        received = time.time()  # frames are stamped when the proxy got them, not when forwarded
        with self.lock:
            self.last_activity = time.monotonic()
            out = self.bridge.feed(side, data)
        self.apply(out, received)

    def close_both(self, code: int, reason: str) -> None:
        with self.lock:
            out = self.bridge.close_both(code, reason)
        self.apply(out)

    def terminate(self) -> None:
        """Wake both pumps for good: the pair is over.

        Bytes still queued (a close frame another thread has not flushed yet)
        go out first: shutting a socket down would throw them away.
        """
        if self.terminated.is_set():
            return
        self.terminated.set()
        for side in Side:
            self._flush_last(side)
        for sock in self.socks.values():
            shutdown_quietly(sock)

    def _flush_last(self, side: Side) -> None:
        """Best effort and bounded: a peer that stopped reading must not hold the end up."""
        if not self.send_locks[side].acquire(timeout=FINAL_FLUSH_S):
            return
        try:
            with self.lock:
                data, self.pending[side] = self.pending[side], bytearray()
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
        """Read ``side`` until it is done or the pair is over."""
        sock = self.socks[side]
        while not self.terminated.is_set():
            with self.lock:
                if not self.bridge.wants_read(side):
                    return
            try:
                ready = wait_readable(sock, self.time_left())
            except (OSError, ValueError):
                ready, data = True, b""
            if not ready:
                self._on_timeout()
                continue
            try:
                data = sock.recv(RECV_BYTES)
            except (OSError, ValueError):
                data = b""
            if self.terminated.is_set():
                return
            self.feed(side, data or None)
