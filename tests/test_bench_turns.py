"""The benchmark's whole-Codex-turn rows, and its pinning of the proxy to given CPUs.

A real ccxray and the fake upstream on loopback; nothing here judges speed,
only that each turn shape is measured, charged and accounted for.
"""

from __future__ import annotations

import dataclasses
import os

from tools.bench_plan import Plan, Report
from tools.bench_procs import Services
from tools.bench_ws import SECTION, TURN_SHAPES, codex_turns

TINY = dataclasses.replace(Plan.quick_run(1), ws_conns=2, ws_warmup_s=0.1, ws_duration_s=0.3)


def test_each_turn_shape_gets_its_rate_and_its_cpu_per_frame_with_the_recorders_account() -> None:
    cpu = min(os.sched_getaffinity(0))
    report = Report()
    with Services(proxy_cpus={cpu}) as svc:
        assert os.sched_getaffinity(svc.proxy_pid) == {cpu}  # pinned before it started a thread
        codex_turns(svc, TINY, report)
        lines = (svc.home / "ccxray" / "logs" / "index.ndjson").read_text()
    rows = [r for r in report.rows if r.section == SECTION]
    assert [r.metric.split(":")[0].strip() for r in rows[::2]] == [
        f"Codex turns of {events} events, 2 conns" for events in TURN_SHAPES]
    for rate, cpu_row in zip(rows[::2], rows[1::2]):
        assert rate.proxy is not None and rate.proxy > 0 and cpu_row.proxy is not None and cpu_row.proxy > 0
        assert cpu_row.recorder is not None and cpu_row.recorder.frames_dropped == 0
    assert '"kind":"turn"' in lines and '"costNote":null' in lines  # priced turns were recorded
