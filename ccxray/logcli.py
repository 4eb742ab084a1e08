"""``ccxray tail`` and ``ccxray usage``: read the index log, no server needed.

Both stream the file line by line (a torn or invalid line is skipped), so a
large log costs time, not memory.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from .config import Settings
from .store import INDEX_NAME, iter_index, read_index

FOLLOW_POLL_S = 0.25
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"ccxray {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_duration(text: str) -> float:
    """'7d' -> seconds; ValueError for anything else."""
    m = DURATION.match(text.strip())
    if not m:
        raise ValueError(f"bad duration {text!r} (use e.g. 30m, 24h, 7d)")
    return float(m.group(1)) * UNIT_S[m.group(2)]


def tokens(usage: object) -> dict[str, int]:
    """Provider usage -> {input, output, cacheRead, cacheWrite} (ints, 0 when absent)."""
    u = usage if isinstance(usage, dict) else {}
    details = u.get("input_tokens_details") or u.get("prompt_tokens_details") or {}
    def num(v: object) -> int:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0
    cached = num(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return {
        "input": num(u.get("input_tokens", u.get("prompt_tokens"))),
        "output": num(u.get("output_tokens", u.get("completion_tokens"))),
        "cacheRead": num(u.get("cache_read_input_tokens")) + cached,
        "cacheWrite": num(u.get("cache_creation_input_tokens")),
    }


def _cost(line: dict[str, Any]) -> float:
    cost = line.get("cost")
    total = cost.get("total") if isinstance(cost, dict) else None
    return float(total) if isinstance(total, (int, float)) else 0.0


def human_line(line: dict[str, Any]) -> str:
    """One readable line: time, agent, model, tokens, cost, status, transport."""
    t = tokens(line.get("usage"))
    ts = str(line.get("ts") or "")[11:19]
    parts = [ts, str(line.get("agent") or "-"), str(line.get("model") or line.get("url") or "-"),
             f"{t['input']}→{t['output']} tok" + (f" (+{t['cacheRead']} cached)" if t["cacheRead"] else ""),
             f"${_cost(line):.4f}" if line.get("cost") else "$-",
             str(line.get("status") if line.get("status") is not None else "-"),
             f"{line.get('transport') or 'http'}/{line.get('kind') or 'call'}",
             f"{line.get('elapsed')}ms" if line.get("elapsed") is not None else "",
             str(line.get("sessionId") or "")[:12]]
    if line.get("error"):
        parts.append(f"error: {line['error']}")
    return "  ".join(p for p in parts if p)


def _follow(path: Path, from_end: bool, stop_after_idle_s: float | None) -> Iterator[dict[str, Any]]:
    """Yield lines as they are appended, like ``tail -f`` (survives truncation)."""
    pos = path.stat().st_size if from_end and path.exists() else 0
    buf = b""
    idle_since = time.monotonic()
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < pos:
            pos, buf = 0, b""  # truncated or replaced: start over
        if size > pos:
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read(size - pos)
            pos += len(chunk)
            buf += chunk
            *complete, buf = buf.split(b"\n")
            yield from iter_index(iter(line + b"\n" for line in complete))  # type: ignore[arg-type]
            idle_since = time.monotonic()
        elif stop_after_idle_s is not None and time.monotonic() - idle_since >= stop_after_idle_s:
            return
        time.sleep(FOLLOW_POLL_S)


def run_tail(args: Sequence[str], settings: Settings, out: IO[str]) -> int:
    p = _Parser(prog="tail", description="Follow the ccxray log, one line per call.")
    p.add_argument("--json", action="store_true", help="print the raw NDJSON lines")
    p.add_argument("--session", help="only this session id")
    p.add_argument("--no-follow", action="store_true", help="print what is there and exit")
    p.add_argument("-n", "--lines", type=int, default=10, help="how many existing lines to show first (default 10)")
    ns = p.parse_args(list(args))
    path = settings.logs_dir / INDEX_NAME
    def keep(line: dict[str, Any]) -> bool:
        return ns.session is None or line.get("sessionId") == ns.session

    def show(line: dict[str, Any]) -> None:
        out.write((json.dumps(line, ensure_ascii=False) if ns.json else human_line(line)) + "\n")

    recent: list[dict[str, Any]] = []
    for line in read_index(path):
        if keep(line):
            recent = (recent + [line])[-max(ns.lines, 0):] if ns.lines else []
    for line in recent:
        show(line)
    out.flush()
    if ns.no_follow:
        return 0
    try:
        for line in _follow(path, True, None):
            if keep(line):
                show(line)
                out.flush()
    except KeyboardInterrupt:
        return 0
    return 0


@dataclass
class Bucket:
    calls: int = 0
    cost: float = 0.0
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0})
    unpriced: int = 0

    def add(self, line: dict[str, Any]) -> None:
        self.calls += 1
        self.cost = round(self.cost + _cost(line), 6)
        if line.get("cost") is None and line.get("usage"):
            self.unpriced += 1
        for k, v in tokens(line.get("usage")).items():
            self.tokens[k] += v

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "cost": self.cost, "unpricedCalls": self.unpriced, **self.tokens}


def _counted(line: dict[str, Any]) -> bool:
    """Connection lines summarise sockets; their turns carry the usage."""
    return line.get("kind") != "connection"


def summarise(lines: Iterator[dict[str, Any]], since_ms: float | None, session: str | None, cwd: str | None) -> dict[str, Any]:
    total = Bucket()
    groups: dict[str, dict[str, Bucket]] = {"byModel": {}, "bySession": {}, "byProject": {}}
    for line in lines:
        if not _counted(line):
            continue
        if since_ms is not None and (line.get("receivedAt") or 0) < since_ms:
            continue
        if session and line.get("sessionId") != session or cwd and line.get("cwd") != cwd:
            continue
        total.add(line)
        for key, value in (("byModel", line.get("model")), ("bySession", line.get("sessionId")), ("byProject", line.get("cwd"))):
            groups[key].setdefault(str(value or "(unknown)"), Bucket()).add(line)
    result: dict[str, Any] = {"total": total.to_json()}
    for key, buckets in groups.items():
        result[key] = {name: b.to_json() for name, b in sorted(buckets.items(), key=lambda kv: -kv[1].cost)}
    return result


def _print_usage(report: dict[str, Any], out: IO[str]) -> None:
    t = report["total"]
    out.write(f"total: {t['calls']} calls  ${t['cost']:.4f}  in {t['input']}  out {t['output']}  "
              f"cache read {t['cacheRead']}  cache write {t['cacheWrite']}\n")
    for key, title in (("byModel", "by model"), ("byProject", "by project"), ("bySession", "by session")):
        out.write(f"\n{title}:\n")
        for name, b in report[key].items():
            out.write(f"  {name:<40} {b['calls']:>6} calls  ${b['cost']:>10.4f}  in {b['input']}  out {b['output']}\n")


def run_usage(args: Sequence[str], settings: Settings, out: IO[str]) -> int:
    p = _Parser(prog="usage", description="Summarise cost and tokens from the ccxray log.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--last", help="only this recent period, e.g. 24h or 7d")
    p.add_argument("--session")
    p.add_argument("--cwd")
    ns = p.parse_args(list(args))
    try:
        since = None if ns.last is None else (time.time() - parse_duration(ns.last)) * 1000
    except ValueError as exc:
        print(f"ccxray usage: {exc}", file=sys.stderr)
        return 2
    report = summarise(read_index(settings.logs_dir / INDEX_NAME), since, ns.session, ns.cwd)
    if ns.json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_usage(report, out)
    return 0


def run_log_command(command: str, args: Sequence[str], settings: Settings) -> int:
    """Dispatch ``tail`` / ``usage``; exit status 2 on bad flags."""
    try:
        if command == "tail":
            return run_tail(args, settings, sys.stdout)
        return run_usage(args, settings, sys.stdout)
    except SystemExit as exc:
        return int(exc.code or 0)
