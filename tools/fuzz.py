"""A bounded fuzz harness for ccxray: garbage in, a 4xx/5xx or a close out, never a traceback.

Usage::

    python tools/fuzz.py [--seconds 30] [--seed N] [--count N] [--workers 8]
                         [--check-every 25] [--only INDEX] [-v]

Theory of operation
-------------------
* One in-process stack (:class:`Stack`): ``tools.fake_upstream.FakeUpstream``
  and a ``ccxray.server.ProxyServer``, both on 127.0.0.1 port 0, the proxy's
  ``CCXRAY_HOME`` in a temporary directory and its timeouts shortened
  (:data:`STACK_ENV`) so an input that leaves a connection half done ends in
  well under the per-input deadline.
* Input ``i`` is derived from ``(seed, i)`` alone (``random.Random``), so a
  failing input replays with ``--seed S --only i`` whatever ran around it.
  Each input is one fresh TCP connection: either a mutated HTTP/1.1 request
  (bit flips, truncation, huge/duplicate/invalid headers, bad chunked
  framing, bad Content-Length, pipelined garbage, ...) or, after a valid
  upgrade to ``/v1/responses`` (``x-fake-mode: echo``), mutated WebSocket
  bytes (random bytes, reserved bits and opcodes, unmasked client frames,
  oversized or fragmented control frames, bad UTF-8, bad close payloads).
* Inputs run on ``workers`` threads, at most ``2 * workers`` in flight, so
  the proxy serves many at once; every ``check_every`` inputs a
  well-behaved HTTP call and a well-behaved WebSocket session go in among
  them and must succeed (a health check), and one more after the last
  input. Each health call must have its index line: the proxy loses nothing.
* Violations: an input that gets neither a status line, a close frame nor
  a closed connection within :data:`DEADLINE_S`; bytes that are not HTTP
  or not server WebSocket frames; a close code that must never be sent; a
  targeted input answered other than its :attr:`Case.expect`; a failed
  health check or a health call missing from the index; a ``ccxray``
  log record at ERROR or with a traceback; threads left after ``stop()``.
  The fake upstream's own log records are counted and shown, not judged:
  the fake is a test tool, and some requests the proxy rightly forwards
  (``CONNECT``, say) are outside what it scripts.

Reusable from tests: ``run_fuzz(count=200, seed=1, seconds=30)`` returns a
:class:`Report` (``report.ok``, ``report.violations``, ``report.summary()``).

Layout: ``fuzz_common`` (limits, canned bytes, :class:`Case`), ``fuzz_stack``
(:class:`Stack`, :class:`ErrorLog`), ``fuzz_http`` and ``fuzz_ws`` (the
mutators), ``fuzz_client`` (running and judging one input) and
``fuzz_health`` (health checks, index lines). This module keeps the run
(:func:`run_fuzz`, :class:`Report`, ``main``) and re-exports the public
names of the others, so ``from tools import fuzz`` works as before.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.fuzz_client import (  # noqa: E402
    Outcome, ServerFrame, parse_server_frames, run_case, run_http, run_ws, upgrade_request, ws_open,
)
from tools.fuzz_common import (  # noqa: E402
    BAD_UTF8, DEADLINE_S, HEAD_LIMIT_BYTES, INVALID_CLOSE, MAX_BODY_MB, MSG, OPCODE_BINARY, OPCODE_CLOSE,
    OPCODE_PING, OPCODE_PONG, OPCODE_TEXT, OVERSIZE_MIN_BYTES, RECV_BYTES, RESERVED_OPCODES, SENDABLE_CLOSE,
    WS_KEY, Case,
)
from tools.fuzz_health import http_health, missing_health_lines, ws_health  # noqa: E402
from tools.fuzz_http import HTTP_MUTATORS, ODD_QUERIES, HttpMutator, http_case, valid_requests  # noqa: E402
from tools.fuzz_stack import STACK_ENV, ErrorLog, Stack  # noqa: E402
from tools.fuzz_ws import WS_MUTATORS, WsMutator, ws_case, ws_frame  # noqa: E402

__all__ = [
    # fuzz_common
    "BAD_UTF8", "Case", "DEADLINE_S", "HEAD_LIMIT_BYTES", "INVALID_CLOSE", "MAX_BODY_MB", "MSG",
    "OPCODE_BINARY", "OPCODE_CLOSE", "OPCODE_PING", "OPCODE_PONG", "OPCODE_TEXT", "OVERSIZE_MIN_BYTES",
    "RECV_BYTES", "RESERVED_OPCODES", "SENDABLE_CLOSE", "WS_KEY",
    # fuzz_stack
    "ErrorLog", "STACK_ENV", "Stack",
    # fuzz_http, fuzz_ws
    "HTTP_MUTATORS", "HttpMutator", "ODD_QUERIES", "http_case", "valid_requests",
    "WS_MUTATORS", "WsMutator", "ws_case", "ws_frame",
    # fuzz_client
    "Outcome", "ServerFrame", "parse_server_frames", "run_case", "run_http", "run_ws", "upgrade_request",
    "ws_open",
    # fuzz_health
    "http_health", "missing_health_lines", "ws_health",
    # this module
    "ROOT", "Report", "main", "make_case", "run_fuzz",
]


def make_case(seed: int, index: int, port: int) -> Case:
    """Input number ``index`` of run ``seed``; depends on nothing else."""
    rng = random.Random(f"ccxray-fuzz:{seed}:{index}")
    return ws_case(rng) if rng.random() < 0.3 else http_case(rng, port)


# ---------------------------------------------------------------- the run


@dataclass
class Report:
    """What a fuzz run did and found."""

    seed: int
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    health_checks: int = 0
    tracebacks: list[str] = field(default_factory=list)
    fake_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations and not self.tracebacks

    def summary(self) -> str:
        rows = [f"ccxray fuzz: seed {self.seed}, {self.sent} inputs in {self.seconds:.1f}s, "
                f"{self.health_checks} health checks",
                "outcomes:"]
        buckets: Counter[str] = Counter()
        for kind, count in self.outcomes.items():
            app_close = kind.startswith("ws close ") and kind[9:].isdigit() and int(kind[9:]) >= 3000
            buckets["ws close 3000-4999" if app_close else kind] += count
        rows += [f"  {kind:<28} {count}" for kind, count in sorted(buckets.items())]
        rows.append(f"tracebacks: {len(self.tracebacks)}")
        rows += [f"  {n:>5} x {sig}" for sig, n in Counter(map(_signature, self.tracebacks)).most_common()]
        if self.fake_errors:
            rows.append(f"fake upstream errors (not judged): {len(self.fake_errors)}")
            rows += [f"  {n:>5} x {sig[:160]}" for sig, n in Counter(map(_signature, self.fake_errors)).most_common(3)]
        rows.append(f"violations: {len(self.violations)}")
        rows += [f"  {v}" for v in self.violations[:30]]
        rows.append("OK" if self.ok else "FAILED")
        return "\n".join(rows)


def _signature(record_text: str) -> str:
    """A log record without what varies per connection (addresses, ids, payloads)."""
    text = re.sub(r"\('127\.0\.0\.1', \d+\)", "(...)", record_text)
    text = re.sub(r"conn \d+", "conn N", text)
    return re.sub(r"data=(b?)(['\"]).*?\2, frame_finished", r"data=\1..., frame_finished", text)


def _describe(index: int, case: Case, outcome: Outcome) -> str:
    data = case.data if len(case.data) <= 160 else case.data[:160] + b"...(%d bytes)" % len(case.data)
    how = f"{case.kind}, half-close" if case.half_close else case.kind
    return f"#{index} [{how}] {outcome.kind} {outcome.detail} input={data!r}"


def _threads_settled(baseline: set[threading.Thread], timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    wake = threading.Event()
    while True:
        extra = [t.name for t in threading.enumerate() if t not in baseline and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        wake.wait(0.02)


def run_fuzz(seconds: float = 30.0, seed: int = 0, count: int | None = None, workers: int = 8,
             check_every: int = 25, only: int | None = None, home: Path | None = None,
             progress: Callable[[str], None] | None = None) -> Report:
    """Fuzz a fresh stack until ``seconds`` pass or ``count`` inputs were sent; see the module doc."""
    report = Report(seed)
    baseline = set(threading.enumerate())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ccxray-fuzz-") as tmp:
        stack = Stack(home or Path(tmp))
        stack.start()
        try:
            _fuzz_loop(stack, report, started + seconds, count, workers, check_every, only, progress)
        finally:
            stack.stop()
            report.tracebacks = list(stack.errors.proxy)
            report.fake_errors = list(stack.errors.fake)
    left = _threads_settled(baseline, 10.0)
    if left:
        report.violations.append(f"threads left after stop(): {left}")
    report.seconds = time.monotonic() - started
    return report


def _fuzz_loop(stack: Stack, report: Report, end: float, count: int | None, workers: int,
               check_every: int, only: int | None, progress: Callable[[str], None] | None) -> None:
    """Submit inputs (and a health check every ``check_every``) without barriers, at most
    ``2 * workers`` in flight, until ``end`` or ``count``; then one last health check."""
    port = stack.port
    indices: Iterable[int] = [only] if only is not None else range(count if count is not None else 1 << 62)
    slots = threading.BoundedSemaphore(2 * max(workers, 1))
    inputs: list[tuple[int, Case, Future[Outcome]]] = []
    checks: list[Future[list[str]]] = []

    def health(number: int) -> list[str]:
        return [p for p in (http_health(port, number), ws_health(port, number)) if p]

    def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:
        slots.acquire()
        future = pool.submit(fn, *args)
        future.add_done_callback(lambda _: slots.release())
        return future

    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="ccxray-fuzz") as pool:
        for n, index in enumerate(indices):
            if time.monotonic() >= end:
                break
            if n and n % check_every == 0:
                checks.append(submit(health, len(checks)))
            case = make_case(report.seed, index, port)
            inputs.append((index, case, submit(run_case, port, case)))
    checks.append(_done(health(len(checks))))  # and after everything, the proxy still serves
    for index, case, future in inputs:
        outcome = future.result()
        report.sent += 1
        report.outcomes[outcome.kind] += 1
        if outcome.is_violation:
            report.violations.append(_describe(index, case, outcome))
        if progress and (only is not None or outcome.is_violation):
            progress(_describe(index, case, outcome))
    for check in checks:
        report.violations += check.result()
    report.health_checks = len(checks)
    _check_log(stack, report, range(len(checks)))


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def _check_log(stack: Stack, report: Report, health_numbers: Iterable[int]) -> None:
    """Every health call and session has its line; the recorder dropped and failed nothing."""
    assert stack.server is not None
    recorder = stack.server.recorder
    if not recorder.flush(10):
        report.violations.append("recorder did not flush within 10s")
    numbers = list(health_numbers)
    deadline = time.monotonic() + 10  # a line is written after the client has its last byte: wait for it
    wake = threading.Event()
    while (missing := missing_health_lines(stack.server.settings.logs_dir, numbers, numbers)) \
            and time.monotonic() < deadline:
        wake.wait(0.02)
    report.violations += missing
    if recorder.dropped or recorder.failures:
        report.violations.append(f"recorder dropped {recorder.dropped}, failed {recorder.failures}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz ccxray with malformed HTTP and WebSocket input.")
    parser.add_argument("--seconds", type=float, default=30.0, help="stop starting new inputs after this (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    parser.add_argument("--count", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--workers", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--check-every", type=int, default=25, help="health check after this many inputs")
    parser.add_argument("--only", type=int, default=None, help="replay just input INDEX of --seed")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each violation as it happens")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    say = (lambda text: print(text, flush=True)) if args.verbose or args.only is not None else None
    report = run_fuzz(args.seconds, seed, args.count, args.workers, args.check_every, args.only, progress=say)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
