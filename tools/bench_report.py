"""Percentiles, result rows and the printed table of ``tools/bench.py``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Sequence

from tools.bench_recorder import RecorderHealth


class Compare(Enum):
    """How the proxy column relates to the direct column."""

    ADDED = "added"  # proxy - direct (latencies)
    RATIO = "ratio"  # proxy / direct (rates)
    NONE = "none"  # a proxy-only figure


def percentile(samples: list[int] | list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 2000 samples is the 1980th)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def ms(ns: float) -> float:
    return ns / 1e6


@dataclass
class Row:
    """One line of the table. ``passed`` is None when the row has no target;
    ``recorder`` is ccxray's account of the phase the figure comes from."""

    section: str
    metric: str
    unit: str
    direct: float | None
    proxy: float | None
    compare: Compare = Compare.NONE
    target: str = ""
    passed: bool | None = None
    recorder: RecorderHealth | None = None

    @property
    def delta(self) -> float | None:
        if self.direct is None or self.proxy is None:
            return None
        if self.compare is Compare.ADDED:
            return self.proxy - self.direct
        if self.compare is Compare.RATIO:
            return self.proxy / self.direct if self.direct else math.nan
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["compare"] = self.compare.value
        data["delta"] = self.delta
        return data


def pair_row(section: str, metric: str, unit: str, values: Sequence[float], compare: Compare = Compare.ADDED,
             target: str = "", passed: bool | None = None, recorder: RecorderHealth | None = None) -> Row:
    """A row from a ``(direct, proxy)`` pair."""
    direct, proxy = values
    return Row(section, metric, unit, direct, proxy, compare, target, passed, recorder)


def fmt(value: float | None) -> str:
    """Three significant digits, no exponent, '-' for missing."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _delta_text(row: Row) -> str:
    delta = row.delta
    if delta is None:
        return ""
    if row.compare is Compare.RATIO:
        return f"x{delta:.2f}"
    return ("+" if delta >= 0 else "") + fmt(delta)


def _verdict(row: Row) -> str:
    return "" if row.passed is None else ("PASS" if row.passed else "FAIL")


HEADER = ("metric", "unit", "direct", "proxy", "added/ratio", "target", "result", "recorder (ccxray)")


def render_table(rows: list[Row]) -> str:
    """A fixed-width table, one block per section."""
    cells = [[r.metric, r.unit, fmt(r.direct), fmt(r.proxy), _delta_text(r), r.target, _verdict(r),
              r.recorder.text() if r.recorder else ""] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(HEADER)]
    numeric = {2, 3, 4}

    def line(values: list[str] | tuple[str, ...]) -> str:
        parts = [v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(parts).rstrip()

    out = [line(HEADER), line(["-" * w for w in widths])]
    section = None
    for row, values in zip(rows, cells):
        if row.section != section:
            section = row.section
            out.append(f"[{section}]")
        out.append(line(values))
    return "\n".join(out)


def dropped_warning(rows: list[Row]) -> str | None:
    """The line that says which figures were taken while ccxray dropped records, if any."""
    hit = [r.metric.strip() for r in rows if r.recorder is not None and r.recorder.dropped]
    if not hit:
        return None
    return (f"WARNING: {len(hit)} figures were taken while ccxray's recorder DROPPED records (it fell behind); "
            f"they understate the cost of recording everything: {'; '.join(hit)}")


def summary(rows: list[Row]) -> str:
    judged = [r for r in rows if r.passed is not None]
    failed = [r.metric.strip().removeprefix("=> ") for r in judged if not r.passed]
    text = f"{len(judged) - len(failed)}/{len(judged)} targets met"
    return text + (f"; missed: {', '.join(failed)}" if failed else "")
