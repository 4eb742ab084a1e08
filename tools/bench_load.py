"""A multi-process closed-loop load generator on raw sockets.

Each worker process owns a share of the connections and one selector; a
connection always has exactly one request (HTTP) or one message (WebSocket)
outstanding and sends the next one as soon as the answer is complete. Requests
and frames are pre-built bytes, and answers are only scanned for their end
(Content-Length, WebSocket frame lengths), so a worker spends a few
microseconds per answer: the load generator is not what is measured.

Timing: all workers share ``time.monotonic()`` (CLOCK_MONOTONIC is system-wide
on Linux). They connect first, then run a warm-up, then a measuring window
``[start_at + warmup_s, start_at + warmup_s + duration_s)``; only answers
completed inside the window count. After the window a worker stops sending,
drains the answers still in flight (bounded), closes cleanly and reports.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tools.bench_procs import die_with_parent
from tools.bench_wire import await_close, close_frame, open_ws, parse_head, scan_frames

DRAIN_S = 2.0  # answers still in flight when the window closes get this long
CONNECT_TIMEOUT_S = 5.0
RESULT_TIMEOUT_S = 30.0  # beyond the window: connecting + draining + reporting
JOIN_S = 5.0  # workers exit right after reporting; beyond this they are killed
LATENCY_KEEP = 200_000  # per worker; enough for p99, bounded memory


@dataclass(frozen=True)
class LoadSpec:
    """What every worker does; ``kind`` is ``"http"`` or ``"ws"``."""

    kind: str
    port: int
    start_at: float
    warmup_s: float
    duration_s: float
    request: bytes  # HTTP: the request; WS: the handshake
    message: bytes = b""  # WS: the masked frame sent per round
    frames_per_round: int = 1  # WS: data frames that answer one message


@dataclass
class WorkerResult:
    completed: int = 0  # answers (HTTP responses / WS rounds) completed in the window
    total: int = 0  # answers completed at all (warm-up and drain too), for CPU per answer
    frames: int = 0  # WS data frames received in the window
    frames_total: int = 0
    errors: int = 0
    bad_status: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    cpu_s: float = 0.0
    window_cpu_s: float = 0.0  # this worker's CPU time inside the measuring window
    error_text: str = ""


@dataclass
class LoadResult:
    """All workers together."""

    completed: int
    total: int
    frames: int
    frames_total: int
    errors: int
    bad_status: int
    latencies_ns: list[int]
    client_cpu_s: float
    client_window_cpu_s: float
    duration_s: float
    workers: int
    connections: int
    error_text: str
    probes: tuple[Any, Any]  # what probe() returned at the window's start and end

    @property
    def client_cpu_share(self) -> float:
        """Load-generator CPU in the window, in cores (1.0 = one core busy)."""
        return self.client_window_cpu_s / self.duration_s

    @property
    def per_second(self) -> float:
        return self.completed / self.duration_s

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.duration_s


class _Conn:
    """One connection's state in a worker."""

    __slots__ = ("sock", "buf", "sent_ns", "frames_seen", "busy")

    def __init__(self, sock: socket.socket, buf: bytearray) -> None:
        self.sock = sock
        self.buf = buf
        self.sent_ns = 0
        self.frames_seen = 0
        self.busy = False


# ---------------------------------------------------------------- worker side


def _connect(spec: LoadSpec) -> _Conn:
    sock = socket.create_connection(("127.0.0.1", spec.port), timeout=CONNECT_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = open_ws(sock, spec.request) if spec.kind == "ws" else bytearray()
    sock.setblocking(False)
    return _Conn(sock, buf)


def _send(conn: _Conn, data: bytes) -> None:
    # One outstanding request per connection and its answer fully read: the
    # send buffer is empty, so a small write never comes back short.
    if conn.sock.send(data) != len(data):
        raise OSError("short send on a non-blocking socket")
    conn.sent_ns = time.perf_counter_ns()
    conn.busy = True


class _Worker:
    """The selector loop of one worker process."""

    def __init__(self, spec: LoadSpec, conns: list[_Conn]) -> None:
        self.spec = spec
        self.conns = conns
        self.result = WorkerResult()
        self.window_start = spec.start_at + spec.warmup_s
        self.window_end = self.window_start + spec.duration_s
        self.sending = True
        self.cpu_marks: list[float] = []  # process_time() at window start and end
        self.selector = selectors.DefaultSelector()
        self.payload = spec.request if spec.kind == "http" else spec.message

    def run(self) -> WorkerResult:
        for conn in self.conns:
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        _sleep_until(self.spec.start_at)
        for conn in self.conns:
            _send(conn, self.payload)
        self._loop(self.window_end)
        self._mark_cpu(time.monotonic())
        self.sending = False
        self._loop(time.monotonic() + DRAIN_S)
        self.selector.close()
        if len(self.cpu_marks) == 2:
            self.result.window_cpu_s = self.cpu_marks[1] - self.cpu_marks[0]
        return self.result

    def _loop(self, until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            if not self.sending and not any(c.busy for c in self.conns):
                return
            self._mark_cpu(time.monotonic())
            for key, _ in self.selector.select(min(left, 0.5)):
                self._on_readable(key.data)

    def _mark_cpu(self, now: float) -> None:
        if not self.cpu_marks and now >= self.window_start:
            self.cpu_marks.append(time.process_time())
        elif len(self.cpu_marks) == 1 and now >= self.window_end:
            self.cpu_marks.append(time.process_time())

    def _on_readable(self, conn: _Conn) -> None:
        data = conn.sock.recv(262144)
        if not data:
            raise OSError("server closed a connection under load")
        conn.buf += data
        done = self._http_done(conn) if self.spec.kind == "http" else self._ws_done(conn)
        if not done:
            return
        now_ns = time.perf_counter_ns()
        conn.busy = False
        self.result.total += 1
        if self.window_start <= time.monotonic() < self.window_end:
            self.result.completed += 1
            if len(self.result.latencies_ns) < LATENCY_KEEP:
                self.result.latencies_ns.append(now_ns - conn.sent_ns)
        if self.sending:
            _send(conn, self.payload)

    def _http_done(self, conn: _Conn) -> bool:
        head = parse_head(conn.buf)
        if head is None or head.content_length is None:
            if head is not None:
                raise OSError("the load test expects Content-Length answers")
            return False
        if len(conn.buf) < head.size + head.content_length:
            return False
        if head.status != 200:
            self.result.bad_status += 1
        del conn.buf[:]
        return True

    def _ws_done(self, conn: _Conn) -> bool:
        scan = scan_frames(conn.buf)
        if scan.closed:
            raise OSError("server closed a WebSocket under load")
        del conn.buf[: scan.end]
        self.result.frames_total += scan.data_frames
        if self.window_start <= time.monotonic() < self.window_end:
            self.result.frames += scan.data_frames
        conn.frames_seen += scan.data_frames
        if conn.frames_seen < self.spec.frames_per_round:
            return False
        conn.frames_seen -= self.spec.frames_per_round
        return True


def _sleep_until(when: float) -> None:
    left = when - time.monotonic()
    if left > 0:
        time.sleep(left)


def _close_all(spec: LoadSpec, conns: list[_Conn]) -> None:
    if spec.kind == "ws":
        _close_ws_all(conns)
    for conn in conns:
        conn.sock.close()


def _close_ws_all(conns: list[_Conn]) -> None:
    """Close handshakes on all connections at once, then wait for the answers (bounded).

    A clean close makes the proxy record a normal end rather than a drop.
    """
    sent: list[_Conn] = []
    for conn in conns:
        try:
            conn.sock.setblocking(True)
            conn.sock.sendall(close_frame())
            sent.append(conn)
        except OSError:
            pass  # already gone: nothing to close cleanly
    deadline = time.monotonic() + DRAIN_S
    for conn in sent:
        await_close(conn.sock, conn.buf, deadline)


def _worker_main(spec: LoadSpec, n_conns: int, out: mp.Queue[Any]) -> None:
    die_with_parent()
    t0 = time.process_time()
    result = WorkerResult()
    conns: list[_Conn] = []
    try:
        conns = [_connect(spec) for _ in range(n_conns)]
        result = _Worker(spec, conns).run()
    except (OSError, ValueError, RuntimeError) as exc:  # reported, not raised: the parent prints it
        result.errors += 1
        result.error_text = repr(exc)
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group. The parent reads no result now, and a
        # result stuck in the queue's pipe would keep this process from exiting.
        return
    finally:
        _close_all(spec, conns)
    result.cpu_s = time.process_time() - t0
    out.put(result)


# ---------------------------------------------------------------- parent side


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` connections over ``parts`` workers, sizes differing by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run_load(spec_args: dict[str, Any], connections: int, workers: int, connect_s: float = 1.0,
             probe: Callable[[], Any] = lambda: None) -> LoadResult:
    """Run ``workers`` processes over ``connections`` connections; blocks until all report.

    ``spec_args`` are LoadSpec fields except ``start_at``, which is set here to
    leave ``connect_s`` for connecting. ``probe()`` is called at the start and
    the end of the measuring window (the parent is idle meanwhile).
    """
    spec = LoadSpec(start_at=time.monotonic() + connect_s, **spec_args)
    ctx = mp.get_context("fork")  # fork: no re-import, workers start in milliseconds
    out: mp.Queue[Any] = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(spec, n, out), daemon=True)
             for n in split_evenly(connections, workers) if n]
    try:
        for proc in procs:
            proc.start()
        window_start = spec.start_at + spec.warmup_s
        _sleep_until(window_start)
        first = probe()
        _sleep_until(window_start + spec.duration_s)
        probes = (first, probe())
        deadline = spec.start_at + spec.warmup_s + spec.duration_s + RESULT_TIMEOUT_S
        results = [out.get(timeout=max(0.1, deadline - time.monotonic())) for _ in procs]
    except queue.Empty:
        raise RuntimeError("a load worker did not report in time") from None
    finally:
        stop_by = time.monotonic() + JOIN_S  # one deadline for all, also when interrupted
        for proc in procs:
            proc.join(max(0.0, stop_by - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
    return _merge(results, spec, len(procs), connections, probes)


def _merge(results: list[WorkerResult], spec: LoadSpec, workers: int, connections: int,
           probes: tuple[Any, Any]) -> LoadResult:
    return LoadResult(
        completed=sum(r.completed for r in results),
        total=sum(r.total for r in results),
        frames=sum(r.frames for r in results),
        frames_total=sum(r.frames_total for r in results),
        errors=sum(r.errors for r in results),
        bad_status=sum(r.bad_status for r in results),
        latencies_ns=[ns for r in results for ns in r.latencies_ns],
        client_cpu_s=sum(r.cpu_s for r in results),
        client_window_cpu_s=sum(r.window_cpu_s for r in results),
        duration_s=spec.duration_s,
        workers=workers,
        connections=connections,
        error_text="; ".join(r.error_text for r in results if r.error_text),
        probes=probes,
    )
