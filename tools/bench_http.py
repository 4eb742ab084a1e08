"""The HTTP half of the benchmark (issue 2): each test direct to the fake, then through the proxy.

Every request is the same bytes on both paths except the Host header; the
proxy forwards ``/v1/messages`` to the fake (ANTHROPIC_BASE_URL) and records
it, so "proxy" figures include ccxray's recording work (off the hot path, but
in the same process and under the same GIL).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Callable

from tools.bench_load import LoadResult, run_load
from tools.bench_plan import CpuUse, Deadline, Plan, Report, measured, note_shares
from tools.bench_procs import Services
from tools.bench_report import Compare, Row, ms, pair_row, percentile
from tools.bench_wire import BenchProtocolError, Timed, http_request, read_response

SMALL_TARGET = "/v1/messages"
SCRATCH_BYTES = 1 << 20
SOCKET_TIMEOUT_S = 10.0
SECTION = "HTTP"
IDLE_QUIET_S = 0.06  # "idle" = no CPU tick (10 ms) for this long


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every agent SDK does
    return sock


def timed_requests(port: int, target: str, count: int, warmup: int, deadline_s: float,
                   between: Callable[[], object] | None = None) -> list[Timed]:
    """``warmup`` + ``count`` sequential requests on one keep-alive connection.

    Returns the measured ones (send time subtracted: ``first_byte_ns`` and
    ``done_ns`` are durations from the send). ``between()`` runs untimed
    after each request. Stops early at the deadline.
    """
    request = http_request(port, target)
    scratch = bytearray(SCRATCH_BYTES)
    deadline = Deadline(deadline_s)
    out: list[Timed] = []
    with _connect(port) as sock:
        for index in range(warmup + count):
            if deadline.expired():
                break
            t0 = time.perf_counter_ns()
            sock.sendall(request)
            got = read_response(sock, scratch)
            if got.status != 200:
                raise BenchProtocolError(f"{target} answered {got.status} on port {port}")
            if index >= warmup:
                out.append(Timed(got.status, got.body_bytes, got.first_byte_ns - t0, got.done_ns - t0))
            if between is not None:
                between()
    return out


@dataclass(frozen=True)
class PathRun:
    """One test on one path: the samples and the servers' CPU for it."""

    samples: list[Timed]
    cpu: CpuUse
    requests: int  # including warm-up, for CPU per request


def _run_sequential(svc: Services, port: int, target: str, count: int, warmup: int, plan: Plan,
                    idle_between: bool = False) -> PathRun:
    """Sequential requests on one connection, charged with the servers' CPU.

    ``idle_between``: wait (untimed) until proxy and fake are idle after each
    request, so the recorder thread is not still digesting the previous answer
    (same process, same GIL) when the next one starts. The cores then go idle
    too, and on a VM the next request pays their wake-up.
    """
    between = (lambda: svc.settle(quiet_s=IDLE_QUIET_S)) if idle_between else None
    samples, cpu = measured(svc, lambda: timed_requests(port, target, count, warmup, plan.loop_deadline_s, between))
    return PathRun(samples, cpu, len(samples) + warmup)


def _p(samples: list[Timed], pct: float, first: bool = False) -> float:
    return ms(percentile([s.first_byte_ns if first else s.done_ns for s in samples], pct))


def _cpu_us(run: PathRun, proxy: bool = True) -> float:
    return (run.cpu.proxy_s if proxy else run.cpu.fake_s) / max(1, run.requests) * 1e6


# ---------------------------------------------------------------- tests


def small_c1(svc: Services, plan: Plan, report: Report) -> None:
    runs = [_run_sequential(svc, port, SMALL_TARGET, plan.c1_samples, plan.c1_warmup, plan)
            for port in (svc.fake_port, svc.proxy_port)]
    direct, proxy = runs
    added = _p(proxy.samples, 50) - _p(direct.samples, 50)
    recorder = proxy.cpu.recorder
    report.add(Row(SECTION, "small POST c=1 latency p50", "ms", _p(direct.samples, 50), _p(proxy.samples, 50),
                   Compare.ADDED, "added < 0.5", added < 0.5, recorder))
    report.add(Row(SECTION, "small POST c=1 latency p99", "ms", _p(direct.samples, 99), _p(proxy.samples, 99),
                   Compare.ADDED, recorder=recorder))
    rates = [len(r.samples) / (sum(s.done_ns for s in r.samples) / 1e9) for r in runs]
    report.add(Row(SECTION, "small POST c=1 requests/s", "req/s", rates[0], rates[1], Compare.RATIO,
                   recorder=recorder))
    report.add(Row(SECTION, "proxy CPU per small request c=1", "us", None, _cpu_us(proxy), recorder=recorder))
    report.details["http_c1"] = {"samples": [len(direct.samples), len(proxy.samples)],
                                 "proxy_cpu_s": proxy.cpu.proxy_s, "requests": proxy.requests}


def _load(svc: Services, plan: Plan, port: int) -> tuple[LoadResult, CpuUse]:
    spec = {"kind": "http", "port": port, "warmup_s": plan.c32_warmup_s, "duration_s": plan.c32_duration_s,
            "request": http_request(port, SMALL_TARGET)}
    return measured(svc, lambda: run_load(spec, plan.c32_conns, plan.workers, probe=svc.cpu_mark))


def small_c32(svc: Services, plan: Plan, report: Report) -> None:
    (direct, _), (proxy, cpu) = (_load(svc, plan, port) for port in (svc.fake_port, svc.proxy_port))
    for result in (direct, proxy):
        if result.errors or result.bad_status:
            report.note(f"c={plan.c32_conns} load: {result.errors} errors, {result.bad_status} non-200 ({result.error_text})")
    p = [[ms(percentile(r.latencies_ns, pct)) for r in (direct, proxy)] for pct in (50, 99)]
    recorder = cpu.recorder
    report.add(pair_row(SECTION, f"small POST c={plan.c32_conns} latency p50", "ms", p[0], Compare.ADDED,
                        recorder=recorder))
    report.add(pair_row(SECTION, f"small POST c={plan.c32_conns} latency p99", "ms", p[1], Compare.ADDED,
                        recorder=recorder))
    report.add(Row(SECTION, f"small POST c={plan.c32_conns} requests/s (2 shared cores)", "req/s",
                   direct.per_second, proxy.per_second, Compare.RATIO, "proxy >= 2,000", proxy.per_second >= 2000,
                   recorder))
    cpu_per_req = cpu.proxy_s / max(1, proxy.total)
    report.add(Row(SECTION, f"proxy CPU per small request c={plan.c32_conns}", "us", None, cpu_per_req * 1e6,
                   recorder=recorder))
    capacity = 1 / cpu_per_req if cpu_per_req else float("inf")
    report.add(Row(SECTION, "  => small POSTs on one core (1/CPU)", "req/s", None, capacity,
                   Compare.NONE, ">= 2,000", capacity >= 2000, recorder))
    note_shares(report, f"c={plan.c32_conns} HTTP", direct, proxy, cpu.settle_s)
    report.details["http_c32"] = {"direct": _load_json(direct), "proxy": _load_json(proxy),
                                  "proxy_cpu_s": cpu.proxy_s, "fake_cpu_s": cpu.fake_s, "settle_s": cpu.settle_s}


def _load_json(result: LoadResult) -> dict[str, object]:
    return {"completed": result.completed, "total": result.total, "per_second": result.per_second,
            "errors": result.errors, "bad_status": result.bad_status, "client_cpu_s": result.client_cpu_s}


def sse(svc: Services, plan: Plan, report: Report) -> None:
    target = f"{SMALL_TARGET}?fake_mode=sse:{plan.sse_events}"
    events = plan.sse_events
    for idle in (True, False):
        direct, proxy = (_run_sequential(svc, port, target, plan.sse_reps, 2, plan, idle_between=idle)
                         for port in (svc.fake_port, svc.proxy_port))
        how = "proxy idle before each" if idle else "back to back"
        first = [_p(r.samples, 50, first=True) for r in (direct, proxy)]
        report.add(pair_row(SECTION, f"SSE {events} events, {how}: first byte p50", "ms", first, Compare.ADDED,
                            "added <= 1", first[1] - first[0] <= 1.0, proxy.cpu.recorder))
        report.add(Row(SECTION, f"SSE {events} events, {how}: total p50", "ms", _p(direct.samples, 50),
                       _p(proxy.samples, 50), Compare.ADDED, recorder=proxy.cpu.recorder))
    report.add(Row(SECTION, "proxy CPU per SSE event (recording included)", "us", None, _cpu_us(proxy) / events,
                   recorder=proxy.cpu.recorder))


def big_body(svc: Services, plan: Plan, report: Report) -> None:
    target = f"{SMALL_TARGET}?fake_mode=big:{plan.big_bytes}"
    direct, proxy = (_run_sequential(svc, port, target, plan.big_reps, 1, plan, idle_between=True)
                     for port in (svc.fake_port, svc.proxy_port))
    mib = plan.big_bytes / (1 << 20)
    rates = [mib / (_p(r.samples, 50) / 1000) for r in (direct, proxy)]
    report.add(pair_row(SECTION, f"{mib:.0f} MiB response throughput (median)", "MiB/s", rates, Compare.RATIO,
                        ">= x0.50", rates[1] >= 0.5 * rates[0], proxy.cpu.recorder))
    report.add(Row(SECTION, f"proxy CPU per {mib:.0f} MiB response (recording included)", "ms", None,
                   _cpu_us(proxy) / 1000, recorder=proxy.cpu.recorder))


def run_http(svc: Services, plan: Plan, report: Report) -> None:
    """All HTTP tests, in order, into ``report``."""
    small_c1(svc, plan, report)
    small_c32(svc, plan, report)
    sse(svc, plan, report)
    big_body(svc, plan, report)
