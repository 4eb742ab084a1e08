"""The WebSocket half of the benchmark (issue 3): each test direct to the fake, then through the proxy.

The client is raw sockets with pre-masked frames (``bench_wire``): wsproto on
the client side would cost as much as the proxy's own parsing and blur the
difference. The fake's ``echo`` mode answers a message with itself and
``frames:K`` answers it with K Responses-style text frames of ~200 bytes.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from functools import partial

from tools.bench_load import LoadResult, run_load
from tools.bench_plan import CpuUse, Deadline, Plan, Report, measured, note_shares
from tools.bench_procs import Services, rss_kib, thread_count
from tools.bench_report import Compare, Row, ms, pair_row, percentile
from tools.bench_wire import (
    OP_TEXT,
    await_close,
    client_message_text,
    close_frame,
    create_message_text,
    masked_frame,
    open_ws,
    read_data_frames,
    ws_handshake,
)

SECTION = "WebSocket"
SOCKET_TIMEOUT_S = 10.0
CLOSE_WAIT_S = 2.0
THREADS_BACK_S = 10.0  # after closing the idle sessions, the proxy's threads should be gone by then
WARM_SESSIONS = 20
MESSAGE = masked_frame(OP_TEXT, client_message_text())
CREATE = masked_frame(OP_TEXT, create_message_text())
TURN_SHAPES = (10, 200)  # events per Codex turn: a short reply (the shared compare.sh's shape), a long one


def ws_target(mode: str) -> str:
    return f"/v1/responses?fake_mode={mode}"


def open_session(port: int, mode: str) -> tuple[socket.socket, bytearray]:
    """Connect and complete the handshake; returns the socket and any bytes after the 101."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return sock, open_ws(sock, ws_handshake(port, ws_target(mode)))
    except BaseException:
        sock.close()
        raise


def close_session(sock: socket.socket, buf: bytearray, deadline: float | None = None) -> None:
    """Close handshake (bounded), then the socket."""
    try:
        sock.sendall(close_frame())
        await_close(sock, buf, deadline or time.monotonic() + CLOSE_WAIT_S)
    except OSError:
        pass  # the peer is gone already; closing is all that is left
    finally:
        sock.close()


# ---------------------------------------------------------------- round trip and handshake


def rtt_samples(port: int, count: int, warmup: int, deadline_s: float) -> list[int]:
    """Round trips of one ~190-byte text message over one echo connection, in ns."""
    sock, buf = open_session(port, "echo")
    deadline = Deadline(deadline_s)
    out: list[int] = []
    try:
        for index in range(warmup + count):
            if deadline.expired():
                break
            t0 = time.perf_counter_ns()
            sock.sendall(MESSAGE)
            buf = read_data_frames(sock, buf, 1)
            if index >= warmup:
                out.append(time.perf_counter_ns() - t0)
    finally:
        close_session(sock, buf)
    return out


def handshake_samples(port: int, count: int, warmup: int, deadline_s: float) -> list[int]:
    """Connect + upgrade until the whole 101 head arrived, in ns; each session closed cleanly before the next."""
    deadline = Deadline(deadline_s)
    out: list[int] = []
    for index in range(warmup + count):
        if deadline.expired():
            break
        t0 = time.perf_counter_ns()
        sock, buf = open_session(port, "echo")
        elapsed = time.perf_counter_ns() - t0
        close_session(sock, buf)
        if index >= warmup:
            out.append(elapsed)
    return out


def _pair_rows(report: Report, name: str, direct: list[int], proxy: list[int], limit_ms: float,
               cpu: CpuUse) -> None:
    p50 = [ms(percentile(s, 50)) for s in (direct, proxy)]
    p99 = [ms(percentile(s, 99)) for s in (direct, proxy)]
    report.add(pair_row(SECTION, f"{name} p50", "ms", p50, Compare.ADDED, f"proxy < {limit_ms:g}", p50[1] < limit_ms,
                        cpu.recorder))
    report.add(pair_row(SECTION, f"{name} p99", "ms", p99, Compare.ADDED, recorder=cpu.recorder))


def _cpu_row(report: Report, what: str, cpu: CpuUse, count: int) -> None:
    report.add(Row(SECTION, f"proxy CPU per {what}", "us", None, cpu.proxy_s / max(1, count) * 1e6,
                   recorder=cpu.recorder))


def round_trip(svc: Services, plan: Plan, report: Report) -> None:
    runs = [measured(svc, partial(rtt_samples, port, plan.ws_rtt_samples, plan.ws_rtt_warmup, plan.loop_deadline_s))
            for port in (svc.fake_port, svc.proxy_port)]
    (direct, _), (proxy, cpu) = runs
    _pair_rows(report, "echo round trip (1 conn)", direct, proxy, 0.25, cpu)
    _cpu_row(report, "echo round trip (2 frames)", cpu, len(proxy) + plan.ws_rtt_warmup)


def handshake(svc: Services, plan: Plan, report: Report) -> None:
    warmup = 10
    runs = [measured(svc, partial(handshake_samples, port, plan.ws_handshakes, warmup, plan.loop_deadline_s))
            for port in (svc.fake_port, svc.proxy_port)]
    (direct, _), (proxy, cpu) = runs
    _pair_rows(report, "handshake (connect to 101)", direct, proxy, 1.0, cpu)
    _cpu_row(report, "session (handshake + close)", cpu, len(proxy) + warmup)


# ---------------------------------------------------------------- frames per second


def _frames_load(svc: Services, plan: Plan, port: int) -> tuple[LoadResult, CpuUse]:
    spec = {"kind": "ws", "port": port, "warmup_s": plan.ws_warmup_s, "duration_s": plan.ws_duration_s,
            "request": ws_handshake(port, ws_target(f"frames:{plan.ws_frames_per_round}")),
            "message": MESSAGE, "frames_per_round": plan.ws_frames_per_round}
    return measured(svc, lambda: run_load(spec, plan.ws_conns, plan.workers, connect_s=1.5, probe=svc.cpu_mark))


def frames_per_second(svc: Services, plan: Plan, report: Report) -> None:
    (direct, _), (proxy, cpu) = (_frames_load(svc, plan, port) for port in (svc.fake_port, svc.proxy_port))
    for result in (direct, proxy):
        if result.errors:
            report.note(f"WS load: {result.errors} errors ({result.error_text})")
    k, n, recorder = plan.ws_frames_per_round, plan.ws_conns, cpu.recorder
    report.add(Row(SECTION, f"frames/s out, {n} conns (1 in : {k} out, 2 shared cores)", "frame/s",
                   direct.frames_per_second, proxy.frames_per_second, Compare.RATIO, "proxy >= 80,000",
                   proxy.frames_per_second >= 80_000, recorder))
    p50 = [ms(percentile(r.latencies_ns, 50)) for r in (direct, proxy)]
    report.add(pair_row(SECTION, f"round (1 in, {k} out) latency p50 under load", "ms", p50, Compare.ADDED,
                        recorder=recorder))
    # CPU is charged per frame out; the in-frames (one per K out) ride along in the figure.
    cpu_per_frame = cpu.proxy_s / max(1, proxy.frames_total)
    report.add(Row(SECTION, "proxy CPU per frame out (in-frames included)", "us", None, cpu_per_frame * 1e6,
                   recorder=recorder))
    capacity = 1 / cpu_per_frame if cpu_per_frame else float("inf")
    report.add(Row(SECTION, "  => frames out on one core (1/CPU)", "frame/s", None, capacity, Compare.NONE,
                   ">= 80,000", capacity >= 80_000, recorder))
    note_shares(report, f"{n}-conn WebSocket", direct, proxy, cpu.settle_s)
    report.details["ws_frames"] = {"direct_frames": direct.frames, "proxy_frames": proxy.frames,
                                   "proxy_frames_total": proxy.frames_total, "proxy_cpu_s": cpu.proxy_s}


def _turns_load(svc: Services, plan: Plan, port: int, events: int) -> tuple[LoadResult, CpuUse]:
    spec = {"kind": "ws", "port": port, "warmup_s": plan.ws_warmup_s, "duration_s": plan.ws_duration_s,
            "request": ws_handshake(port, ws_target(f"turns:{events}")),
            "message": CREATE, "frames_per_round": events}
    return measured(svc, lambda: run_load(spec, plan.ws_conns, plan.workers, connect_s=1.5, probe=svc.cpu_mark))


def codex_turns(svc: Services, plan: Plan, report: Report) -> None:
    """Every round a whole Codex turn (a ``response.create``, K events back): the
    recorder's per-turn work (request, line, usage, cost) on top of the frames.
    CPU is counted until the proxy is idle again, so a recorder that fell behind
    is charged for catching up."""
    n = plan.ws_conns
    for events in TURN_SHAPES:
        (direct, _), (proxy, cpu) = (_turns_load(svc, plan, port, events) for port in (svc.fake_port, svc.proxy_port))
        for result in (direct, proxy):
            if result.errors:
                report.note(f"Codex turns of {events}: {result.errors} errors ({result.error_text})")
        report.add(Row(SECTION, f"Codex turns of {events} events, {n} conns: frames/s out", "frame/s",
                       direct.frames_per_second, proxy.frames_per_second, Compare.RATIO, recorder=cpu.recorder))
        # frames relayed: the K answers and the create of each round
        relayed = proxy.frames_total + proxy.total
        report.add(Row(SECTION, f"  proxy CPU per frame (turns of {events}, recorder's catch-up included)", "us",
                       None, cpu.proxy_s / max(1, relayed) * 1e6, recorder=cpu.recorder))
        if cpu.settle_s > 0.5:
            report.note(f"Codex turns of {events}: the proxy kept working {cpu.settle_s:.1f}s after the load "
                        "stopped (recorder backlog, charged above)")
        report.details[f"ws_turns_{events}"] = {"proxy_frames_total": proxy.frames_total, "rounds": proxy.total,
                                                "proxy_cpu_s": cpu.proxy_s, "settle_s": cpu.settle_s}


# ---------------------------------------------------------------- idle sessions


@dataclass(frozen=True)
class IdleGrowth:
    """What ``sessions`` idle sessions cost each server: RSS KiB and threads, after minus before."""

    sessions: int
    proxy_kib: int
    fake_kib: int
    proxy_threads: int
    fake_threads: int
    threads_back_s: float | None  # proxy threads back to baseline after closing; None if never


def _snapshot(svc: Services) -> tuple[int, int, int, int]:
    return rss_kib(svc.proxy_pid), rss_kib(svc.fake_pid), thread_count(svc.proxy_pid), thread_count(svc.fake_pid)


def idle_growth(svc: Services, port: int, count: int, deadline_s: float) -> IdleGrowth:
    """Open ``count`` echo sessions (one round trip each, so every relay thread is up), measure, close."""
    svc.settle()
    before = _snapshot(svc)
    sessions: list[tuple[socket.socket, bytearray]] = []
    deadline = Deadline(deadline_s)
    try:
        while len(sessions) < count and not deadline.expired():
            sock, buf = open_session(port, "echo")
            sessions.append((sock, buf))
            sock.sendall(MESSAGE)
            sessions[-1] = (sock, read_data_frames(sock, buf, 1))
        svc.settle()  # the recorder writes the open records; RSS after that is the idle cost
        after = _snapshot(svc)
    finally:
        _close_many(sessions)
    return IdleGrowth(len(sessions), after[0] - before[0], after[1] - before[1], after[2] - before[2],
                      after[3] - before[3], _threads_back(svc, before[2]))


def _close_many(sessions: list[tuple[socket.socket, bytearray]]) -> None:
    for sock, _ in sessions:  # all close frames first: one shared deadline, not one per session
        try:
            sock.sendall(close_frame())
        except OSError:
            pass  # gone already
    deadline = time.monotonic() + CLOSE_WAIT_S * 2
    for sock, buf in sessions:
        await_close(sock, buf, deadline)
        sock.close()


def _threads_back(svc: Services, baseline: int) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < THREADS_BACK_S:
        if thread_count(svc.proxy_pid) <= baseline:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def idle_sessions(svc: Services, plan: Plan, report: Report) -> None:
    direct = idle_growth(svc, svc.fake_port, plan.idle_sessions, plan.loop_deadline_s * 2)
    # A fresh proxy: memory freed by the load tests would otherwise absorb the new sessions
    # and make them look nearly free. A few sessions first, so imports and arenas are paid for.
    svc.restart_proxy()
    handshake_samples(svc.proxy_port, WARM_SESSIONS, 0, plan.loop_deadline_s)
    proxy = idle_growth(svc, svc.proxy_port, plan.idle_sessions, plan.loop_deadline_s * 2)
    per = [direct.fake_kib / max(1, direct.sessions), proxy.proxy_kib / max(1, proxy.sessions)]
    report.add(pair_row(SECTION, f"RSS per idle session ({proxy.sessions} open)", "KiB", per, Compare.NONE,
                        "proxy <= 48", per[1] <= 48))
    report.add(Row(SECTION, "  fake's own RSS growth per session (not in proxy figure)", "KiB",
                   per[0], proxy.fake_kib / max(1, proxy.sessions)))
    report.add(Row(SECTION, "threads per idle session", "threads", direct.fake_threads / max(1, direct.sessions),
                   proxy.proxy_threads / max(1, proxy.sessions)))
    report.note(f"idle sessions: 'direct' column = the fake's growth with {direct.sessions} direct sessions; "
                f"'proxy' column = the proxy process's growth with {proxy.sessions} proxied sessions")
    if proxy.threads_back_s is None:
        report.note(f"idle sessions: proxy threads did not return to baseline within {THREADS_BACK_S:g}s after closing")
    report.details["ws_idle"] = {"direct": direct.__dict__, "proxy": proxy.__dict__}


def run_ws(svc: Services, plan: Plan, report: Report) -> None:
    """All WebSocket tests, in order, into ``report``."""
    round_trip(svc, plan, report)
    handshake(svc, plan, report)
    frames_per_second(svc, plan, report)
    codex_turns(svc, plan, report)
    idle_sessions(svc, plan, report)
