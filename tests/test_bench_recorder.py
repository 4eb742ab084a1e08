"""The benchmark reports ccxray's recorder health next to every figure it takes.

A real ccxray and the fake upstream on loopback (``Services``), a tiny
WebSocket load through ``tools/bench_ws.frames_per_second``; nothing here
judges speed, only that the recorder's account is read, shown and saved.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tools.bench import _write_json, side_by_side
from tools.bench_plan import Plan, Report
from tools.bench_procs import Services
from tools.bench_recorder import HealthError, RecorderHealth, read_health
from tools.bench_report import Row, dropped_warning, render_table
from tools.bench_ws import SECTION, frames_per_second

TINY = dataclasses.replace(Plan.quick_run(1), ws_conns=2, ws_warmup_s=0.1, ws_duration_s=0.3)


@pytest.fixture(scope="module")
def measured_report() -> tuple[Report, str]:
    report = Report()
    with Services() as svc:
        frames_per_second(svc, TINY, report)
        with pytest.raises(HealthError, match="unexpected body"):
            read_health(svc.fake_port)  # not a ccxray: a clear error, not zeros
    return report, render_table(report.rows)


def test_every_ws_load_figure_carries_the_recorders_account(measured_report: tuple[Report, str]) -> None:
    report, _ = measured_report
    rows = [r for r in report.rows if r.section == SECTION]
    assert len(rows) == 4
    for row in rows:
        assert row.recorder is not None, row.metric
        assert row.recorder.frames_dropped == 0 and row.recorder.sidecars_dropped == 0
        assert row.recorder.queued_at_end >= 0
        assert row.recorder.drain_s is not None  # a tiny load drains well within the deadline
    assert dropped_warning(report.rows) is None


def test_the_table_shows_it_in_its_own_column(measured_report: tuple[Report, str]) -> None:
    report, table = measured_report
    assert "recorder (ccxray)" in table.splitlines()[0]
    cpu_line = next(line for line in table.splitlines() if "proxy CPU per frame out" in line)
    assert "0 dropped;" in cpu_line and "to drain" in cpu_line


def test_the_json_output_holds_it_per_row(measured_report: tuple[Report, str], tmp_path: Path) -> None:
    report, _ = measured_report
    out = tmp_path / "bench.json"
    _write_json(str(out), report, TINY, 1.0, {})
    data = json.loads(out.read_text())
    recorded = [row["recorder"] for row in data["rows"]]
    assert all(r is not None and r["frames_dropped"] == 0 and "queued_at_end" in r and "drain_s" in r
               for r in recorded)
    assert data["recorder_warning"] is None


DROPPED = RecorderHealth(frames_dropped=12_345, sidecars_dropped=2, failures=0, queued_at_end=34_000, drain_s=3.2)


def test_a_figure_taken_with_records_dropped_is_flagged_everywhere(tmp_path: Path) -> None:
    report = Report()
    report.add(Row(SECTION, "proxy CPU per frame out (in-frames included)", "us", None, 8.5, recorder=DROPPED))
    report.add(Row(SECTION, "round trip p50", "ms", 0.1, 0.2))  # a figure without an account stays plain

    table = render_table(report.rows)
    flagged = next(line for line in table.splitlines() if "proxy CPU per frame" in line)
    assert "DROPPED 12,345 frames, 2 bodies; 34,000 queued, 3.20s to drain" in flagged
    warning = dropped_warning(report.rows)
    assert warning is not None and "DROPPED" in warning and "proxy CPU per frame out" in warning
    assert "round trip" not in warning
    assert "8.50 (records dropped)" in side_by_side(report, {"peer": Report()})

    out = tmp_path / "bench.json"
    _write_json(str(out), report, TINY, 1.0, {})
    data = json.loads(out.read_text())
    assert data["rows"][0]["recorder"]["frames_dropped"] == 12_345
    assert data["recorder_warning"] == warning


def test_a_recorder_that_never_drained_says_so() -> None:
    stuck = dataclasses.replace(DROPPED, frames_dropped=0, sidecars_dropped=0, drain_s=None)
    assert not stuck.dropped
    assert stuck.text() == "0 dropped; 34,000 queued, not drained in 60s"


def test_a_peer_has_no_recorder_to_ask() -> None:
    svc = Services("peer --port {port}")  # never entered: nothing is started
    try:
        assert svc.recorder_port is None
    finally:
        svc.close()
