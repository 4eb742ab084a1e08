"""How much a benchmark run does (``Plan``) and what it collects (``Report``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from tools.bench_load import LoadResult
from tools.bench_procs import CpuMark, Services
from tools.bench_recorder import RecorderHealth, over_phase, read_health
from tools.bench_report import Row

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """Sample counts and durations; ``quick()`` and ``full()`` are the two presets."""

    quick: bool
    workers: int  # load-generator processes for the concurrent tests
    c1_samples: int
    c1_warmup: int
    c32_conns: int
    c32_warmup_s: float
    c32_duration_s: float
    sse_events: int
    sse_reps: int
    big_bytes: int
    big_reps: int
    ws_rtt_samples: int
    ws_rtt_warmup: int
    ws_handshakes: int
    ws_conns: int
    ws_frames_per_round: int
    ws_warmup_s: float
    ws_duration_s: float
    idle_sessions: int
    loop_deadline_s: float  # no sequential measuring loop runs longer than this

    @classmethod
    def full(cls, workers: int) -> Plan:
        return cls(quick=False, workers=workers, c1_samples=2000, c1_warmup=300, c32_conns=32,
                   c32_warmup_s=1.0, c32_duration_s=5.0, sse_events=500, sse_reps=30, big_bytes=10 * 1024 * 1024,
                   big_reps=5, ws_rtt_samples=2000, ws_rtt_warmup=300, ws_handshakes=300, ws_conns=50,
                   ws_frames_per_round=10, ws_warmup_s=1.0, ws_duration_s=5.0, idle_sessions=500,
                   loop_deadline_s=20.0)

    @classmethod
    def quick_run(cls, workers: int) -> Plan:
        return cls(quick=True, workers=workers, c1_samples=500, c1_warmup=100, c32_conns=32,
                   c32_warmup_s=0.5, c32_duration_s=2.0, sse_events=500, sse_reps=10, big_bytes=10 * 1024 * 1024,
                   big_reps=3, ws_rtt_samples=500, ws_rtt_warmup=100, ws_handshakes=60, ws_conns=50,
                   ws_frames_per_round=10, ws_warmup_s=0.5, ws_duration_s=2.0, idle_sessions=500,
                   loop_deadline_s=8.0)


@dataclass
class Report:
    """Rows for the table, free-text notes under it, raw figures for --json."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds the proxy and the fake spent on one phase, recorder backlog included."""

    proxy_s: float
    fake_s: float
    wall_s: float
    settle_s: float  # how long after the phase the servers kept working (recorder drain)
    recorder: RecorderHealth | None = None  # ccxray's own account of the phase; None for a peer


def measured(svc: Services, phase: Callable[[], T]) -> tuple[T, CpuUse]:
    """Run ``phase`` between two idle points and charge it the servers' CPU time.

    Against ccxray, also what its recorder did meanwhile (drops, backlog at
    the end, time to drain), so no figure passes for complete recording when
    records were dropped.
    """
    svc.settle()
    port = svc.recorder_port
    health = None if port is None else read_health(port)
    before = svc.cpu_mark()
    result = phase()
    ended = time.monotonic()
    recorder = None if health is None else over_phase(svc.proxy_port, health)
    settle_s = svc.settle()
    after = svc.cpu_mark()
    return result, CpuUse(after.proxy - before.proxy, after.fake - before.fake, ended - before.wall, settle_s,
                          recorder)


class Deadline:
    """A monotonic deadline for one loop."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def note_shares(report: Report, what: str, direct: LoadResult, proxy: LoadResult, settle_s: float) -> None:
    """Who used the two cores during the measuring window, so the rates can be read honestly."""
    for label, result in (("direct", direct), ("proxy", proxy)):
        start, end = result.probes
        if not isinstance(start, CpuMark) or not isinstance(end, CpuMark):
            continue
        wall = end.wall - start.wall
        report.note(f"{what} {label}: CPU in the window: proxy {100 * (end.proxy - start.proxy) / wall:.0f}%, "
                    f"fake {100 * (end.fake - start.fake) / wall:.0f}%, load generator "
                    f"{100 * result.client_cpu_share:.0f}% (of 200%); {result.workers} client processes, "
                    f"{result.connections} connections")
    if settle_s > 0.5:
        report.note(f"{what}: the proxy kept working {settle_s:.1f}s after the load stopped (recorder backlog)")
