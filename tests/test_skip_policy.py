"""The skip policy (tests/skip_policy.py), the real-client guard and the recorded-fixture helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import realclients as rc
from . import skip_policy as sp
from .conftest import ROOT
from .recorded import SHARED_SKIP

MINI_TESTS = '''
import pytest

def test_passes():
    pass

def test_skips_as_expected():
    pytest.skip("harmless: the thing is optional")

@pytest.mark.xfail(reason="known")
def test_xfails():
    raise AssertionError
'''


def test_unexpected_matches_reasons_against_patterns() -> None:
    skips = [("a", "optional captured traffic absent: ../shared/fixtures/x.json"), ("b", "real client 'codex' not found")]
    patterns = [SHARED_SKIP + "*"]
    assert sp.unexpected(skips, patterns) == [skips[1]]
    assert sp.unexpected(skips, []) == skips
    assert sp.unexpected(skips, ["*"]) == []


def test_expected_file_lists_the_shared_extras_only(tmp_path: Path) -> None:
    patterns = sp.expected_patterns(sp.EXPECTED_SKIPS)
    assert patterns == [SHARED_SKIP + "*"]
    (tmp_path / "e.txt").write_text("# comment\n\n  a*  \n#b\nc\n")
    assert sp.expected_patterns(tmp_path / "e.txt") == ["a*", "c"]


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), (" on ", True),
    ("", False), ("0", False), ("false", False), ("no", False), ("2", False),
])
def test_env_flag(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CCXRAY_TEST_FLAG", value)
    assert sp.env_flag("CCXRAY_TEST_FLAG") is expected


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_real_client_guard_fails_for_any_truthy_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       value: str) -> None:
    monkeypatch.setenv("CCXRAY_REAL_CLIENTS_BIN", str(tmp_path))
    monkeypatch.setenv("CCXRAY_REQUIRE_REAL_CLIENTS", value)
    with pytest.raises(pytest.fail.Exception, match="not found"):
        rc.find_client("claude")


def test_real_client_guard_skips_when_not_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CCXRAY_REAL_CLIENTS_BIN", str(tmp_path))
    monkeypatch.setenv("CCXRAY_REQUIRE_REAL_CLIENTS", "0")
    with pytest.raises(pytest.skip.Exception):
        rc.find_client("claude")


def run_mini_suite(tmp_path: Path, expected: str, strict: str) -> subprocess.CompletedProcess[str]:
    """pytest on a three-test suite whose conftest registers the ledger, in a child process."""
    (tmp_path / "conftest.py").write_text(
        "from tests import skip_policy\n\ndef pytest_configure(config):\n    skip_policy.register(config)\n")
    (tmp_path / "test_mini.py").write_text(MINI_TESTS)
    (tmp_path / "expected.txt").write_text(expected)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CCXRAY_STRICT_SKIPS=strict,
               CCXRAY_EXPECTED_SKIPS=str(tmp_path / "expected.txt"))
    env.pop("COV_CORE_SOURCE", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:cov",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_strict_run_fails_on_an_unexpected_skip(tmp_path: Path) -> None:
    run = run_mini_suite(tmp_path, "something else*\n", strict="yes")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "unexpected skips" in run.stdout
    assert "test_mini.py::test_skips_as_expected: harmless: the thing is optional" in run.stdout
    assert "test_xfails" not in run.stdout.split("unexpected skips")[1]


def test_strict_run_passes_with_only_expected_skips(tmp_path: Path) -> None:
    run = run_mini_suite(tmp_path, "# listed\nharmless: *\n", strict="1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "unexpected skips" not in run.stdout


def test_lenient_run_ignores_skips(tmp_path: Path) -> None:
    run = run_mini_suite(tmp_path, "", strict="")
    assert run.returncode == 0, run.stdout + run.stderr
