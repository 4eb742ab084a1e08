"""``ccxray tail`` and ``ccxray usage``: read the index log, no server needed.

Both stream the file line by line (a torn or invalid line is skipped), so a
large log costs time, not memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

from .cliargs import SubParser, exit_status
from .config import Settings
from .logview import HEADER, human_line, session_matches
from .store import INDEX_NAME, iter_index, read_index
from .totals import counts_usage
from .usagereport import Report

FOLLOW_POLL_S = 0.25
READ_CHUNK = 1024 * 1024
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'7d' -> seconds; ValueError for anything else."""
    m = DURATION.match(text.strip())
    if not m:
        raise ValueError(f"bad duration {text!r} (use e.g. 30m, 24h, 7d)")
    return float(m.group(1)) * UNIT_S[m.group(2)]


class Follower:
    """The complete lines appended to the index since the last look (starts over if it shrinks).

    One reader for the lines already there and the ones still to come, so no
    line written between the two is missed or shown twice.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.buf = b""

    def new_lines(self) -> Iterator[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self.pos:
            self.pos, self.buf = 0, b""  # truncated or replaced: start over
        if size <= self.pos:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.pos)
            while self.pos < size:
                chunk = fh.read(min(READ_CHUNK, size - self.pos))
                if not chunk:
                    return
                self.pos += len(chunk)
                *complete, self.buf = (self.buf + chunk).split(b"\n")
                yield from iter_index(complete)


def tail_parser() -> argparse.ArgumentParser:
    p = SubParser(prog="tail", description="Follow the ccxray log, one line per call.")
    p.add_argument("--json", action="store_true", help="print the raw NDJSON lines")
    p.add_argument("--session", help="only this session id (or its last 8+ characters, as shown)")
    p.add_argument("--no-follow", action="store_true", help="print what is there and exit")
    p.add_argument("-n", "--lines", type=int, default=10, help="how many existing lines to show first (default 10)")
    return p


def run_tail(args: Sequence[str], settings: Settings, out: IO[str]) -> int:
    ns = tail_parser().parse_args(list(args))
    path = settings.logs_dir / INDEX_NAME

    def keep(line: dict[str, Any]) -> bool:
        return ns.session is None or session_matches(line.get("sessionId"), ns.session)

    def show(line: dict[str, Any]) -> None:
        out.write((json.dumps(line, ensure_ascii=False) if ns.json else human_line(line)) + "\n")

    follower = Follower(path)
    recent: deque[dict[str, Any]] = deque(maxlen=max(ns.lines, 0))
    for line in follower.new_lines():
        if keep(line):
            recent.append(line)
    if not ns.json and out.isatty():  # for a person; a pipe gets data lines only
        out.write(HEADER + "\n")
    for line in recent:
        show(line)
    out.flush()
    if ns.no_follow:
        return 0
    try:
        while True:
            for line in follower.new_lines():
                if keep(line):
                    show(line)
            out.flush()
            time.sleep(FOLLOW_POLL_S)  # like tail -f: a file offers nothing to wait on portably
    except KeyboardInterrupt:
        return 0


PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def _received_since(line: dict[str, Any], since_ms: float) -> bool:
    received = line.get("receivedAt")
    return isinstance(received, (int, float)) and not isinstance(received, bool) and received >= since_ms


def summarise(lines: Iterator[dict[str, Any]], since_ms: float | None, session: str | None, cwd: str | None) -> Report:
    report = Report()
    for line in lines:
        if not counts_usage(line):
            continue
        if since_ms is not None and not _received_since(line, since_ms):
            continue
        if session and not session_matches(line.get("sessionId"), session) or cwd and line.get("cwd") != cwd:
            continue
        report.add(line)
    return report


def _summarise_range(path: Path, start: int, stop: int, since_ms: float | None, session: str | None,
                     cwd: str | None) -> Report:
    return summarise(read_index(path, start=start, stop=stop), since_ms, session, cwd)


def summarise_file(path: Path, since_ms: float | None, session: str | None, cwd: str | None,
                   parallel_min_bytes: int = PARALLEL_MIN_BYTES, workers: int | None = None) -> Report:
    """The report for a whole index; a large one is read by one process per core, in byte ranges.

    ``parallel_min_bytes`` and ``workers`` exist for the tests, which cut small files.
    """
    size = path.stat().st_size if path.exists() else 0
    workers = workers or min(os.cpu_count() or 1, 8)
    if size < parallel_min_bytes or workers < 2:
        return summarise(read_index(path), since_ms, session, cwd)
    bounds = [size * i // workers for i in range(workers + 1)]
    report = Report()
    with ProcessPoolExecutor(workers) as pool:
        parts = [pool.submit(_summarise_range, path, bounds[i], bounds[i + 1], since_ms, session, cwd)
                 for i in range(workers)]
        for part in parts:
            report.merge(part.result())
    return report


def _print_usage(report: dict[str, Any], out: IO[str]) -> None:
    t = report["total"]
    out.write(f"total: {t['calls']} calls  ${t['cost']:.4f}  in {t['input']}  out {t['output']}  "
              f"cache read {t['cacheRead']}  cache write {t['cacheWrite']}\n")
    for key, title in (("byModel", "by model"), ("byProject", "by project")):
        out.write(f"\n{title}:\n")
        for name, b in report[key].items():
            out.write(f"  {name:<40} {b['calls']:>6} calls  ${b['cost']:>10.4f}  in {b['input']}  out {b['output']}\n")
    out.write("\nby session:\n")
    for name, b in report["bySession"].items():
        who = f"{b['agent'] or '-'} {b['project'] or '-'}"
        out.write(f"  {name:<36} {who:<24} {b['calls']:>6} calls  ${b['cost']:>10.4f}  "
                  f"in {b['input']}  out {b['output']}\n")


def usage_parser() -> argparse.ArgumentParser:
    p = SubParser(prog="usage", description="Summarise cost and tokens from the ccxray log.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--last", help="only this recent period, e.g. 24h or 7d")
    p.add_argument("--session", help="only this session id (or its last 8+ characters)")
    p.add_argument("--cwd", help="only calls made in this directory")
    return p


def run_usage(args: Sequence[str], settings: Settings, out: IO[str]) -> int:
    ns = usage_parser().parse_args(list(args))
    try:
        since = None if ns.last is None else (time.time() - parse_duration(ns.last)) * 1000
    except ValueError as exc:
        print(f"ccxray usage: {exc}", file=sys.stderr)
        return 2
    report = summarise_file(settings.logs_dir / INDEX_NAME, since, ns.session, ns.cwd).to_json()
    if ns.json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_usage(report, out)
    return 0


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {"tail": tail_parser, "usage": usage_parser}


def run_log_command(command: str, args: Sequence[str], settings: Settings) -> int:
    """Dispatch ``tail`` / ``usage``; exit status 2 on bad flags."""
    run = run_tail if command == "tail" else run_usage
    return exit_status(lambda: run(args, settings, sys.stdout))
