"""The skip policy: with CCXRAY_STRICT_SKIPS set (CI), a skip not listed as expected fails the run.

A skipped test is a test that proved nothing; one that skips because
something is missing by accident (a fixture, a client, a package) would
otherwise leave the run green. The expected reasons are listed in one place,
``tests/expected_skips.txt`` (or the file CCXRAY_EXPECTED_SKIPS names), one
``fnmatch`` pattern per line matched against the skip reason. conftest.py
registers the ledger.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

EXPECTED_SKIPS = Path(__file__).resolve().parent / "expected_skips.txt"
TRUTHY = frozenset({"1", "true", "yes", "on"})
Skip = tuple[str, str]  # (test id, reason)


def env_flag(name: str) -> bool:
    """True when the environment variable is set to 1/true/yes/on (any case)."""
    return os.environ.get(name, "").strip().lower() in TRUTHY


def expected_patterns(path: Path) -> list[str]:
    """The patterns of an expected-skips file: one per line, ``#`` comments and blank lines ignored."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skipped test gave, without pytest's ``Skipped: `` prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def unexpected(skips: list[Skip], patterns: list[str]) -> list[Skip]:
    """The skips whose reason matches none of ``patterns``."""
    return [(nodeid, reason) for nodeid, reason in skips
            if not any(fnmatch.fnmatchcase(reason, pattern) for pattern in patterns)]


class SkipLedger:
    """A pytest plugin: records every skip; in strict mode fails the session on an unexpected one."""

    def __init__(self, strict: bool, expected_file: Path) -> None:
        self.strict = strict
        self.expected_file = expected_file
        self.skips: list[Skip] = []
        self.unexpected: list[Skip] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.append((report.nodeid, skip_reason(report)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.strict:
            return
        self.unexpected = unexpected(self.skips, expected_patterns(self.expected_file))
        if self.unexpected and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.unexpected:
            return
        terminalreporter.section("unexpected skips (CCXRAY_STRICT_SKIPS)", red=True)
        for nodeid, reason in self.unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(f"expected reasons are listed in {self.expected_file}")


def register(config: pytest.Config) -> None:
    """Called from conftest's pytest_configure."""
    expected = Path(os.environ.get("CCXRAY_EXPECTED_SKIPS") or EXPECTED_SKIPS)
    config.pluginmanager.register(SkipLedger(env_flag("CCXRAY_STRICT_SKIPS"), expected), "ccxray-skip-ledger")
