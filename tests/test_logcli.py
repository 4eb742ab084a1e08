"""`tail` and `usage` in-process (the CLI tests run them as real processes too)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ccxray.cli import main
from ccxray.config import load_settings
from ccxray.logcli import human_line, parse_duration, run_log_command

NOW_MS = int(time.time() * 1000)
LINES = [
    {"id": "a", "kind": "call", "ts": "2026-11-24T07:00:00.000Z", "receivedAt": NOW_MS - 1000, "agent": "claude",
     "model": "claude-haiku-4-5", "sessionId": "s1", "cwd": "/p1", "status": 200, "transport": "http",
     "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100},
     "cost": {"total": 0.5, "currency": "USD"}, "elapsed": 12.5},
    {"id": "b", "kind": "turn", "ts": "2026-11-24T07:01:00.000Z", "receivedAt": NOW_MS - 500, "agent": "codex",
     "model": "gpt-5.5", "sessionId": "s2", "cwd": "/p2", "status": 200, "transport": "websocket",
     "usage": {"input_tokens": 20, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 8}},
     "cost": None, "error": "connection closed before the turn ended"},
    {"id": "c", "kind": "connection", "sessionId": "s2", "receivedAt": NOW_MS - 400, "transport": "websocket"},
    {"id": "d", "kind": "call", "receivedAt": NOW_MS - 10 * 86400 * 1000, "sessionId": "s1", "model": "old",
     "usage": {"input_tokens": 1, "output_tokens": 1}, "cost": {"total": 1.0}},
]


@pytest.fixture
def settings(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "index.ndjson").write_text("".join(json.dumps(l) + "\n" for l in LINES) + "not json\n")
    return load_settings({"CCXRAY_HOME": str(tmp_path)}, port=0)


def test_usage_totals_by_model_session_and_project(settings, capsys):
    assert run_log_command("usage", ["--json"], settings) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["calls"] == 3  # the connection line is not a call
    assert report["total"]["cost"] == 1.5 and report["total"]["unpricedCalls"] == 1
    assert report["total"]["cacheRead"] == 108
    assert report["bySession"]["s1"]["calls"] == 2 and report["byProject"]["/p2"]["input"] == 20


def test_usage_filters(settings, capsys):
    run_log_command("usage", ["--json", "--last", "1d", "--session", "s1"], settings)
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["calls"] == 1 and list(report["byModel"]) == ["claude-haiku-4-5"]
    run_log_command("usage", ["--json", "--cwd", "/p2"], settings)
    assert json.loads(capsys.readouterr().out)["total"]["calls"] == 1
    assert run_log_command("usage", [], settings) == 0
    assert "by model" in capsys.readouterr().out


def test_tail_no_follow_human_and_json(settings, capsys):
    assert run_log_command("tail", ["--no-follow", "-n", "2"], settings) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "gpt-5.5" not in out[-1]
    assert run_log_command("tail", ["--no-follow", "--json", "--session", "s2"], settings) == 0
    ids = [json.loads(l)["id"] for l in capsys.readouterr().out.splitlines()]
    assert ids == ["b", "c"]


def test_human_line_shows_what_a_user_scans_for():
    text = human_line(LINES[0])
    for part in ("07:00:00", "claude", "claude-haiku-4-5", "10→5 tok", "+100 cached", "$0.5000", "200", "http/call"):
        assert part in text
    assert "error: connection closed" in human_line(LINES[1])


@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("24h", 86400), ("7d", 604800), ("1.5h", 5400), ("2w", 1209600)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d7", "7y", "-1d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_flags_exit_2(settings, capsys):
    assert run_log_command("tail", ["--bogus"], settings) == 2
    assert run_log_command("usage", ["--last", "soon"], settings) == 2


def test_main_in_process(capsys, tmp_path, monkeypatch):
    assert main(["--version"]) == 0
    assert main(["frobnicate"]) == 2
    assert "unknown subcommand" in capsys.readouterr().err
    monkeypatch.setenv("CCXRAY_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_BASE_URL", "ftp://x")
    assert main(["--port", "0"]) == 2
    assert "OPENAI_BASE_URL" in capsys.readouterr().err
