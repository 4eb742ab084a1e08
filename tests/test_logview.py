"""What a new user reads first: tail's lines, usage per session, --help, the busy-port message."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from ccxray.config import load_settings
from ccxray.logcli import Follower, run_tail, run_usage
from ccxray.logview import HEADER, human_line, session_matches, short_session

from .conftest import ROOT
from .hubagents import install_agents

CODEX_SESSION = "019a8f2c-3c4d-7e5f-8a9b-0c1d2e3f4a5b"
CONNECTION = {"id": "c1", "kind": "connection", "ts": "2026-11-24T07:02:00.000Z", "agent": "codex",
              "transport": "websocket", "status": 101, "sessionId": CODEX_SESSION, "cwd": "/home/u/repo",
              "frameCounts": {"clientToUpstream": 2, "upstreamToClient": 9},
              "byteCounts": {"clientToUpstream": 1500, "upstreamToClient": 20480},
              "close": {"side": "client", "code": 1006, "reason": None}, "usage": None, "cost": None}
PREWARM = {"id": "t1", "kind": "turn", "agent": "codex", "sessionId": CODEX_SESSION, "connectionId": "c1",
           "cwd": None, "model": "gpt-5.5", "usage": {"input_tokens": 7, "output_tokens": 0}}
TURN = {"id": "t2", "kind": "turn", "agent": "codex", "sessionId": CODEX_SESSION, "connectionId": "c1",
        "cwd": "/home/u/repo", "model": "gpt-5.5", "usage": {"input_tokens": 12, "output_tokens": 2},
        "title": "fix   the\nflaky test"}


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_connection_line_shows_frames_bytes_and_close_not_tokens():
    text = human_line(CONNECTION)
    assert "tok" not in text and "$" not in text
    for part in ("websocket connection", "frames ↑2 ↓9", "bytes ↑1500 ↓20.0k", "closed by client 1006", "repo"):
        assert part in text, text


def test_call_line_shows_project_title_and_a_telling_session_id():
    text = human_line(TURN)
    assert "repo" in text and "'fix the flaky test'" in text
    assert short_session(CODEX_SESSION) in text
    # Two UUIDv7 ids from the same millisecond share their first 12 characters, not their end.
    twin = CODEX_SESSION[:12] + "f" * (len(CODEX_SESSION) - 12)
    assert short_session(twin) != short_session(CODEX_SESSION)
    assert session_matches(CODEX_SESSION, short_session(CODEX_SESSION))
    assert session_matches(CODEX_SESSION, CODEX_SESSION) and not session_matches(CODEX_SESSION, "4a5b")


def settings_with(tmp_path: Path, *lines: dict):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "index.ndjson").write_text("".join(json.dumps(l) + "\n" for l in lines))
    return load_settings({"CCXRAY_HOME": str(tmp_path)}, port=0)


def test_tail_header_on_a_terminal_only_and_session_by_its_shown_end(tmp_path):
    settings = settings_with(tmp_path, PREWARM, TURN, CONNECTION, {**TURN, "id": "x", "sessionId": "other"})
    tty = Tty()
    assert run_tail(["--no-follow", "--session", short_session(CODEX_SESSION)], settings, tty) == 0
    lines = tty.getvalue().splitlines()
    assert lines[0] == HEADER and len(lines) == 4
    pipe = io.StringIO()
    run_tail(["--no-follow"], settings, pipe)
    assert len(pipe.getvalue().splitlines()) == 4 and HEADER not in pipe.getvalue()


def test_usage_counts_prewarm_under_its_connections_project_and_names_session_agent(tmp_path):
    settings = settings_with(tmp_path, PREWARM, TURN, CONNECTION)
    out = io.StringIO()
    assert run_usage(["--json"], settings, out) == 0
    report = json.loads(out.getvalue())
    assert list(report["byProject"]) == ["/home/u/repo"] and report["byProject"]["/home/u/repo"]["calls"] == 2
    session = report["bySession"][CODEX_SESSION]
    assert session["agent"] == "codex" and session["project"] == "repo" and session["calls"] == 2
    text = io.StringIO()
    run_usage([], settings, text)
    assert "codex repo" in text.getvalue() and "(unknown)" not in text.getvalue()


def test_help_lists_the_subcommands_own_flags():
    out = subprocess.run([sys.executable, "-m", "ccxray", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30).stdout
    for part in ("--no-follow", "-n, --lines", "--last", "status [FLAGS]", "stop [FLAGS]", "--keep",
                 "CCXRAY_HUB_GRACE_MS"):
        assert part in out, part
    assert "_hub" not in out


def test_launcher_and_server_say_the_same_about_a_busy_port(tmp_path):
    env = {**os.environ, "CCXRAY_HOME": str(tmp_path / "home"),
           "PATH": f"{install_agents(tmp_path / 'bin')}{os.pathsep}{os.environ.get('PATH', '')}"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        expected = f"127.0.0.1:{port} is in use (another ccxray? choose a port with --port)"
        for args in (["--port", str(port), "--no-browser"], ["--port", str(port), "claude"]):
            result = subprocess.run([sys.executable, "-m", "ccxray", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 1 and f"ccxray: {expected}" in result.stderr.splitlines(), result.stderr


def test_follower_reads_each_line_once_across_torn_writes_and_truncation(tmp_path):
    index = tmp_path / "index.ndjson"
    index.write_text('{"id": "old"}\n{"id": "to')  # the last line is still being written
    follower = Follower(index)
    assert [l["id"] for l in follower.new_lines()] == ["old"]
    with open(index, "a") as fh:
        fh.write('rn"}\n{"id": "next"}\n')
    assert [l["id"] for l in follower.new_lines()] == ["torn", "next"]
    assert list(follower.new_lines()) == []
    index.write_text('{"id": "fresh"}\n')  # rotated: shorter than what was read
    assert [l["id"] for l in follower.new_lines()] == ["fresh"]
