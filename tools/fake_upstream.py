"""A scripted fake upstream for ccxray's tests and benchmarks.

It answers like the Anthropic Messages API, the OpenAI Responses API (HTTP,
SSE and WebSocket), Chat Completions and the ChatGPT Codex backend, and it can
misbehave on request: the mode comes from the ``x-fake-mode`` header or the
``fake_mode`` query parameter (the query wins). See ``HTTP_MODES`` and
``WS_MODES`` for the names.

Theory of operation
-------------------
* One accept thread waits on a selector over the listening socket and one end
  of a socketpair; ``stop()`` writes to the other end, so accepting never polls.
* Each accepted socket gets one non-daemon thread, its only reader and only
  writer. ``stop()`` merely ``shutdown()``s connection sockets (under the
  server lock, which the owning thread also takes to close, so a descriptor is
  never reused under our feet): a blocked ``recv`` then sees EOF, a blocked
  ``send`` gets EPIPE, ``poll`` sees POLLHUP. The thread closes its socket and
  ends, and ``stop()`` joins it.
* No wait lasts longer than ``IDLE_TIMEOUT_S`` and ``stop()`` wakes every one:
  sockets by shutdown, step and trickle waits through the stopping Event.
* HTTP/1.1 is h11 (RFC 9112). After a 101 (RFC 6455 section 4.2.2) the bytes h11
  kept as trailing data seed a wsproto server ``Connection``. Close frames and
  the invalid frame the fake sends are written by hand, because wsproto
  rewrites or refuses the codes RFC 6455 section 7.4 forbids, and the fault
  modes need exactly those on the wire.
* Every request and handshake is recorded in ``seen`` before it is answered;
  the ``/_fake/*`` control endpoints are not recorded.

A ``seen`` entry is ``{"method", "target", "headers": [[name, value], ...]
(names as received, latin-1), "body" (UTF-8, errors replaced), "ws"}``. A
WebSocket entry adds ``"frames"`` (client messages as they arrive:
``{"dir": "c2u", "text": ...}`` or ``{"dir": "c2u", "binary": true, "size": n}``),
``"close"`` (the client's ``{"code", "reason"}`` or null), ``"client_gone"``
(TCP closed without a close frame), ``"pongs"`` (payloads, ``ping:K`` mode) and
``"protocol_error"`` (wsproto's reason, when the client broke RFC 6455).

Run ``python tools/fake_upstream.py --port 0`` to serve from a process: it prints
one line ``{"port": N}`` and serves until SIGTERM/SIGINT (or stdin EOF with
``--exit-on-stdin-eof``).

The pieces live in sibling modules, and this module re-exports their public
names, so ``from tools.fake_upstream import ...`` works as before:
``fake_modes`` (mode names and parsing), ``fake_payloads`` (canned Anthropic,
Responses/Codex and Chat Completions bodies), ``fake_shared`` (timeouts,
``SeenLog``, ``StepGate``, socket waits), ``fake_answers`` (``Exchange``,
``Answer``, routing), ``fake_http`` (``HttpConnection`` and the HTTP modes)
and ``fake_ws`` (``WsSession``, the WebSocket modes, hand-made close frames).
This module keeps ``FakeUpstream`` (accepting, threads, ``stop()``) and
``main()``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import select
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

if __name__ == "__main__":  # `python tools/fake_upstream.py`: make `tools.fake_*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.fake_answers import (  # noqa: E402
    CONTENT_JSON, CONTENT_SSE, REASONS, Answer, Exchange, anthropic_answer, chat_answer, echo_object,
    json_answer, normal_answer, response_head, responses_answer, sse_answer,
)
from tools.fake_http import HttpConnection  # noqa: E402
from tools.fake_modes import HTTP_MODES, WS_MODES, ArgKind, Mode, ModeError, parse_mode, requested_mode  # noqa: E402
from tools.fake_payloads import (  # noqa: E402
    ANTHROPIC_OUTPUT_TOKENS, ANTHROPIC_USAGE, DEFAULT_MODEL, MODELS_BODY, PATTERN, PIECE_BYTES, PREWARM_USAGE,
    REPLY_DELTAS, REPLY_TEXT, RESPONSES_USAGE, Json, anthropic_events, anthropic_message, bench_frames,
    chat_chunks, chat_completion, codex_events, json_bytes, message_item, output_text_part, parse_json_object,
    pattern_bytes, pattern_pieces, prewarm_events, response_object, sse_data, sse_event, turn_events,
)
from tools.fake_shared import (  # noqa: E402
    CLOSE_WAIT_S, IDLE_TIMEOUT_S, POLLRDHUP, RECV_BYTES, STEP_TIMEOUT_S, STOP_JOIN_S, SeenLog, StepGate,
    shutdown_quietly, wait_for_hangup, wait_for_peer_eof,
)
from tools.fake_ws import (  # noqa: E402
    INVALID_FRAME, MAX_CLOSE_REASON_BYTES, WS_GUID, ClientMessage, WsSession, accept_token, close_frame,
    echo_code, is_ws_path, negotiate_deflate,
)

__all__ = [
    # fake_modes
    "ArgKind", "HTTP_MODES", "Mode", "ModeError", "WS_MODES", "parse_mode", "requested_mode",
    # fake_payloads
    "ANTHROPIC_OUTPUT_TOKENS", "ANTHROPIC_USAGE", "DEFAULT_MODEL", "Json", "MODELS_BODY", "PATTERN",
    "PIECE_BYTES", "PREWARM_USAGE", "REPLY_DELTAS", "REPLY_TEXT", "RESPONSES_USAGE", "anthropic_events",
    "anthropic_message", "bench_frames", "chat_chunks", "chat_completion", "codex_events", "json_bytes",
    "message_item", "output_text_part", "parse_json_object", "pattern_bytes", "pattern_pieces",
    "prewarm_events", "response_object", "sse_data", "sse_event", "turn_events",
    # fake_shared
    "CLOSE_WAIT_S", "IDLE_TIMEOUT_S", "POLLRDHUP", "RECV_BYTES", "STEP_TIMEOUT_S", "STOP_JOIN_S",
    "SeenLog", "StepGate", "shutdown_quietly", "wait_for_hangup", "wait_for_peer_eof",
    # fake_answers
    "Answer", "CONTENT_JSON", "CONTENT_SSE", "Exchange", "REASONS", "anthropic_answer", "chat_answer",
    "echo_object", "json_answer", "normal_answer", "response_head", "responses_answer", "sse_answer",
    # fake_http
    "HttpConnection",
    # fake_ws
    "ClientMessage", "INVALID_FRAME", "MAX_CLOSE_REASON_BYTES", "WS_GUID", "WsSession", "accept_token",
    "close_frame", "echo_code", "is_ws_path", "negotiate_deflate",
    # this module
    "FakeUpstream", "log", "main", "wait_for_shutdown",
]

log = logging.getLogger("ccxray.fake_upstream")


# ---------------------------------------------------------------- server


class FakeUpstream:
    """The fake upstream server: ``start()``, use ``base_url``, read ``seen``, ``stop()``.

    Also a context manager. ``stop()`` joins every thread it started and closes
    every socket; it is idempotent.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ws_deflate: bool = False, max_seen: int = 1000
    ) -> None:
        self.host = host
        self.ws_deflate = ws_deflate
        self.seen_log = SeenLog(max_seen)
        self.stopping = threading.Event()
        self.step_gate = StepGate(self.stopping)
        self._requested_port = port
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._conn_ids = itertools.count(1)
        self._socks: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None
        self._port = 0
        self._accepted = 0

    # -- public API

    @property
    def connection_count(self) -> int:
        """How many TCP connections were accepted so far (keep-alive reuse tests)."""
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        """How many accepted connections are still open."""
        with self._lock:
            return len(self._socks)

    def start(self) -> FakeUpstream:
        """Bind, listen and start accepting; returns self."""
        if self._listener is not None or self.stopping.is_set():
            raise RuntimeError("a FakeUpstream can be started once")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, self._requested_port), family=family, backlog=128)
        self._listener.setblocking(False)
        self._port = self._listener.getsockname()[1]
        self._wake = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake[0], selectors.EVENT_READ)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fake-upstream-accept")
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, shut every connection down, join every thread, close every socket."""
        with self._lock:
            if self._listener is None or self.stopping.is_set():
                self.stopping.set()  # a never-started fake cannot be started later either
                return
            self.stopping.set()
        self.step_gate.wake_all()
        self._stop_accepting()
        with self._lock:
            threads = list(self._threads)
            for sock in self._socks.values():
                shutdown_quietly(sock)
        for thread in threads:
            thread.join(STOP_JOIN_S)
            if thread.is_alive():
                log.error("%s did not stop within %s s", thread.name, STOP_JOIN_S)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[len("http") :]

    @property
    def seen(self) -> list[Json]:
        """A copy of every request and handshake seen so far (see the module doc for the keys)."""
        return self.seen_log.snapshot()

    def wait_for(self, pred: Callable[[list[Json]], bool], timeout: float = 5.0, what: str = "") -> list[Json]:
        """Wait until ``pred(seen)`` is true; returns a copy of ``seen``.

        ``pred`` runs under the log's lock on the live list: keep it quick and
        do not keep references. Raises AssertionError after ``timeout`` seconds.
        """
        return self.seen_log.wait_for(pred, timeout, what or getattr(pred, "__name__", "predicate"))

    def step(self, count: int = 1) -> None:
        """Release ``count`` events of ``stepped`` streams."""
        self.step_gate.release(count)

    def reset(self) -> None:
        """Forget what was seen and any unused steps."""
        self.seen_log.clear()
        self.step_gate.reset()

    def next_number(self) -> int:
        """A fresh number for response ids (itertools.count is atomic under the GIL)."""
        return next(self._numbers)

    # -- accepting

    def _accept_loop(self) -> None:
        selector, wake = self._selector, self._wake
        if selector is None or wake is None:
            raise AssertionError("accept loop started before start()")
        while True:
            for key, _ in selector.select():
                if key.fileobj is wake[0]:
                    return
                self._accept_one()

    def _accept_one(self) -> None:
        if self._listener is None:
            raise AssertionError("accepting without a listener")
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # the client gave up between select and accept
        except OSError:
            log.exception("accept failed")
            return
        self._start_connection(sock)

    def _start_connection(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        sock.settimeout(IDLE_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_id = next(self._conn_ids)
        thread = threading.Thread(
            target=self._run_connection, args=(sock, conn_id), name=f"fake-upstream-conn-{conn_id}"
        )
        with self._lock:
            # Finished threads are gone from threading.enumerate(); drop them so benchmarks don't grow the list.
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            self._socks[conn_id] = sock
            self._accepted += 1
        thread.start()

    def _run_connection(self, sock: socket.socket, conn_id: int) -> None:
        try:
            HttpConnection(self, sock).serve()
        except OSError as exc:  # the client went away, timed out, or stop() shut the socket
            log.debug("conn %d ended: %r", conn_id, exc)
        except Exception:
            log.exception("conn %d failed", conn_id)
        finally:
            with self._lock:
                self._socks.pop(conn_id, None)
                sock.close()

    def _stop_accepting(self) -> None:
        if self._wake is None or self._accept_thread is None:
            raise AssertionError("stop() before start()")
        self._wake[1].send(b"x")
        self._accept_thread.join()
        if self._selector is not None:
            self._selector.close()
        if self._listener is not None:
            self._listener.close()
        for sock in self._wake:
            sock.close()


# ---------------------------------------------------------------- process mode


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ccxray's fake upstream server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ws-deflate", action="store_true", help="accept permessage-deflate")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="also stop when stdin closes")
    parser.add_argument("--max-seen", type=int, default=1000, help="entries (and frames per entry) kept in seen")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def wait_for_shutdown(exit_on_stdin_eof: bool) -> None:
    """Block until SIGTERM/SIGINT, or EOF on stdin when asked; no polling.

    Signals reach the select through ``signal.set_wakeup_fd``.
    """
    received: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    previous = {sig: signal.signal(sig, lambda signum, _: received.append(signum)) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_fd = signal.set_wakeup_fd(wake_w)
    watched = [wake_r, sys.stdin.fileno()] if exit_on_stdin_eof else [wake_r]
    try:
        while not received:
            ready, _, _ = select.select(watched, [], [])
            if wake_r in ready:
                os.read(wake_r, 512)
            if len(watched) > 1 and watched[1] in ready and not os.read(watched[1], RECV_BYTES):
                return
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until told to stop; prints ``{"port": N}`` once listening. Returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    with FakeUpstream(args.host, args.port, ws_deflate=args.ws_deflate, max_seen=args.max_seen) as fake:
        print(json.dumps({"port": fake.port}), flush=True)
        wait_for_shutdown(args.exit_on_stdin_eof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
