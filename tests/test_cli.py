"""``python -m ccxray`` as users run it: a real process, real signals."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ccxray.config import ENV_HELP

from .conftest import ROOT, wait_until

MSG = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}).encode()


def run(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccxray", *args], cwd=ROOT, env=env or os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout)


class Running:
    """A ``python -m ccxray`` process; its URL is read from what it prints."""

    def __init__(self, env: dict, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "ccxray", "--port", "0", "--no-browser", *args],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read)
        self.reader.start()
        match = wait_until(lambda: next((m for l in self.lines if (m := re.search(r"proxy\s+(http://\S+?)/", l))), None),
                           20, "the proxy URL on stdout")
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self.reader.join()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        return code


@pytest.fixture
def cli_env(fake, tmp_path: Path) -> dict:
    env = os.environ.copy()
    env.update({"CCXRAY_HOME": str(tmp_path / "home"), "ANTHROPIC_BASE_URL": fake.base_url,
                "OPENAI_BASE_URL": fake.base_url + "/v1", "CHATGPT_BASE_URL": fake.base_url + "/backend-api/codex"})
    for name in ("AUTH_TOKEN", "HTTPS_PROXY", "https_proxy", "PROXY_PORT"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_records_and_shuts_down_cleanly(cli_env, tmp_path, sig):
    proxy = Running(cli_env)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("POST", "/v1/messages", body=MSG)
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        code = proxy.stop(sig)
    assert code == 0, proxy.stderr
    lines = (tmp_path / "home" / "logs" / "index.ndjson").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["status"] == 200
    assert "dashboard" in "".join(proxy.lines)


def test_help_documents_every_flag_and_env_var():
    out = run("--help").stdout
    for flag in ("--port", "--host", "--home", "--no-browser"):
        assert flag in out
    for name in ENV_HELP:
        assert name in out
    for sub in ("claude", "codex", "tail", "usage"):
        assert sub in out


@pytest.mark.parametrize("args", [["frobnicate"], ["--bogus"], ["--port", "notanumber"], ["usage", "--last", "forever"]])
def test_bad_usage_exits_2_with_one_line(args, tmp_path):
    env = os.environ.copy()
    env["CCXRAY_HOME"] = str(tmp_path)
    result = run(*args, env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) <= 2 and result.stderr.strip()


def test_invalid_base_url_is_a_startup_error(tmp_path):
    env = os.environ.copy()
    env.update({"CCXRAY_HOME": str(tmp_path), "OPENAI_BASE_URL": "ftp://nope"})
    result = run("--port", "0", "--no-browser", env=env)
    assert result.returncode == 2 and "OPENAI_BASE_URL" in result.stderr


def test_non_loopback_without_token_refused(tmp_path):
    env = os.environ.copy()
    env.pop("AUTH_TOKEN", None)
    env["CCXRAY_HOME"] = str(tmp_path)
    result = run("--host", "0.0.0.0", "--port", "0", env=env)
    assert result.returncode == 2 and "AUTH_TOKEN" in result.stderr


def test_tail_and_usage_read_the_log(cli_env, tmp_path):
    proxy = Running(cli_env)
    try:
        for _ in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("POST", "/v1/messages", body=MSG, headers={"X-Claude-Code-Session-Id": "sess-1"})
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        assert proxy.stop() == 0
    env = dict(cli_env)
    tail = run("tail", "--no-follow", env=env)
    assert tail.returncode == 0 and tail.stdout.count("claude-haiku-4-5") == 2
    usage = json.loads(run("usage", "--json", env=env).stdout)
    assert usage["total"]["calls"] == 2
    assert usage["bySession"]["sess-1"]["calls"] == 2
    assert run("usage", "--last", "1d", env=env).returncode == 0


def test_launcher_reports_missing_cli(cli_env):
    env = dict(cli_env)
    env["PATH"] = "/nonexistent"
    result = run("--port", "0", "claude", "-p", "hi", env=env)
    assert result.returncode == 127 and "claude" in result.stderr


def test_tail_follows_new_lines_like_tail_f(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    index = logs / "index.ndjson"
    index.write_text(json.dumps({"id": "old", "model": "m-old", "ts": "2026-11-24T07:00:00.000Z"}) + "\n")
    env = os.environ.copy()
    env["CCXRAY_HOME"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "ccxray", "tail", "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until(lambda: any('"old"' in l for l in seen), 20, "the existing line")
        with open(index, "a") as fh:  # a writer appends, in two pieces, like a line being written
            fh.write('{"id": "new", "model": "m-n')
            fh.flush()
            fh.write('ew"}\n')
        wait_until(lambda: any('"new"' in l for l in seen), 20, "the appended line")
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert json.loads([l for l in seen if '"new"' in l][0])["model"] == "m-new"


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = os.environ.copy()
        env["CCXRAY_HOME"] = str(tmp_path)
        result = run("--port", str(port), "--no-browser", env=env)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is in use" in result.stderr and "Traceback" not in result.stderr


def test_exit_status_of_a_subcommand() -> None:
    from ccxray.cliargs import exit_status

    def exits(code: object) -> int:
        raise SystemExit(code)
    assert [exit_status(lambda: exits(c)) for c in (None, 0, 2)] == [0, 0, 2]
    assert exit_status(lambda: exits("a message")) == 1  # as the interpreter: printed, status 1
    assert exit_status(lambda: 5) == 5
