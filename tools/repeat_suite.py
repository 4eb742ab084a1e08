"""Run the whole test suite N times in a row and report any test that ever failed.

A flaky test fails now and then on an unchanged tree, so one green run proves
little; ``python -m tools.repeat_suite -n 10`` runs ``python -m pytest`` ten
times in a row (each run writes a JUnit XML report to a temporary directory),
prints one line per run and, at the end, every test that failed or errored in
any run with the runs it failed in. Extra arguments after ``--`` go to pytest.
Exit status: 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunResult:
    """One pytest run: its exit status, duration and the tests that did not pass."""

    number: int
    returncode: int
    seconds: float
    tests: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.failed


def failed_tests(report: Path) -> tuple[int, int, list[str]]:
    """(tests, skipped, ids of failed or errored tests) from a JUnit XML report."""
    root = ET.parse(report).getroot()
    tests = skipped = 0
    failed: list[str] = []
    for case in root.iter("testcase"):
        tests += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
        elif case.find("skipped") is not None:
            skipped += 1
    return tests, skipped, failed


def run_once(number: int, pytest_args: Sequence[str], workdir: Path) -> RunResult:
    """Run the suite once; a run whose report is missing counts as failed."""
    report = workdir / f"run-{number}.xml"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *pytest_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
    )
    result = RunResult(number, proc.returncode, time.monotonic() - started)
    if report.exists():
        result.tests, result.skipped, result.failed = failed_tests(report)
    if not result.passed:
        (workdir / f"run-{number}.log").write_bytes(proc.stdout)
    return result


def summary(results: Sequence[RunResult]) -> list[str]:
    """The closing lines: every failing test and the runs it failed in."""
    by_test: dict[str, list[int]] = {}
    for result in results:
        for name in result.failed:
            by_test.setdefault(name, []).append(result.number)
    green = sum(r.passed for r in results)
    lines = [f"{green}/{len(results)} runs passed"]
    lines += [f"  FAILED in runs {runs}: {name}" for name, runs in sorted(by_test.items())]
    broken = [r.number for r in results if not r.passed and not r.failed]
    if broken:
        lines.append(f"  runs {broken} failed outside any test (collection, coverage floor, crash)")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=10, help="how many runs (default 10)")
    parser.add_argument("--stop-early", action="store_true",
                        help="stop after the first failed run (the default runs them all)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (put them after --)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="repeat-suite-") as tmp:
        workdir = Path(tmp)
        for number in range(1, args.runs + 1):
            result = run_once(number, args.pytest_args, workdir)
            results.append(result)
            state = "pass" if result.passed else f"FAIL (exit {result.returncode})"
            print(f"run {number}: {state}, {result.tests} tests, {result.skipped} skipped, "
                  f"{result.seconds:.0f} s", flush=True)
            for name in result.failed:
                print(f"    failed: {name}", flush=True)
            if not result.passed:
                log = workdir / f"run-{number}.log"
                print(log.read_text(errors="replace")[-4000:], flush=True)
                if args.stop_early:
                    break
    for line in summary(results):
        print(line)
    return 0 if all(r.passed for r in results) and len(results) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
