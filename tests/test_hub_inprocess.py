"""The hub's parts in this process: the leave rule, status text, the agent runner.

test_hub.py runs all of it as real processes; these tests pin the same
behaviour where a failure points at one function.
"""

from __future__ import annotations

import http.client
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ccxray.config import load_settings
from ccxray.hub import HubError, compatible, find, probe, read_info
from ccxray.hubcli import print_status, run_hub_command
from ccxray.hubfiles import HubPaths, register, remove, write_json_atomic
from ccxray.hubserve import HubProcess
from ccxray.launch import FORWARDED, _run_waiting_for_signals, _run_with_handlers, command_for, env_for, launch
from ccxray.server import ProxyServer

from .conftest import proxy_env, wait_until


@pytest.fixture
def hub_settings(fake, tmp_path):
    return load_settings(proxy_env(fake, tmp_path / "home"), port=0)


def post(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/messages", body=b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}')
    status = conn.getresponse().status
    conn.close()
    return status


def test_proxy_counts_calls_and_leaves_when_its_last_user_goes(hub_settings):
    paths = HubPaths(hub_settings.home)
    hub = HubProcess(ProxyServer(hub_settings).start(), keep=False, foreground=False, grace_s=0.0)
    hub.publish()
    user = register(paths, "claude")
    stop = threading.Event()
    runner = threading.Thread(target=hub.run, args=(stop,))
    runner.start()
    try:
        assert find(paths, None) == read_info(paths)
        assert post(hub.server.port) == 200
        wait_until(lambda: (read_info(paths) or hub.info).calls == 1, 10, "the call counted in ccxray.pid")
        out = io.StringIO()
        assert run_hub_command("status", [], lambda: hub_settings, out) == 0
        assert "calls 1" in out.getvalue() and "claude" in out.getvalue()
        remove(user)
        runner.join(20)
        assert not runner.is_alive() and not paths.pid.exists()
    finally:
        stop.set()
        runner.join()
        hub.server.stop(grace_s=1)


def test_foreground_proxy_stays_until_stopped(hub_settings):
    paths = HubPaths(hub_settings.home)
    hub = HubProcess(ProxyServer(hub_settings).start(), keep=True, foreground=True, grace_s=0.0)
    hub.publish()
    stop = threading.Event()
    runner = threading.Thread(target=hub.run, args=(stop,))
    runner.start()
    try:
        assert post(hub.server.port) == 200  # nobody registered, yet it stays: wait for it to count this
        wait_until(lambda: (read_info(paths) or hub.info).calls == 1, 10, "the call counted")
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join()
    assert not paths.pid.exists()


def test_stale_and_foreign_pid_files(hub_settings, monkeypatch):
    paths = HubPaths(hub_settings.home)
    write_json_atomic(paths.pid, {"pid": 2 ** 22 + 7, "host": "127.0.0.1", "port": 1, "version": "0.1.0",
                                  "started": 0})
    assert find(paths, None) is None and paths.pid.exists()  # only read: status runs without the lock
    assert find(paths, None, tidy=True) is None and not paths.pid.exists()  # its process is gone: stale
    paths.pid.write_text("not json")
    assert find(paths, None, tidy=True) is None and not paths.pid.exists()
    with ProxyServer(hub_settings) as server:
        assert probe("127.0.0.1", server.port, None) is not None
        write_json_atomic(paths.pid, {"pid": os.getpid(), "host": "127.0.0.1", "port": server.port,
                                      "version": "9.9.0", "started": 0})
        assert not compatible("9.9.0") and compatible(probe("127.0.0.1", server.port, None) or "")
        monkeypatch.setattr("ccxray.hub.probe", lambda *a, **k: "9.9.0")  # a live ccxray of another version
        with pytest.raises(HubError, match="ccxray 9.9.0"):
            find(paths, None, tidy=True)
        assert paths.pid.exists()  # not ours to remove
        monkeypatch.setattr("ccxray.hub.probe", lambda *a, **k: None)  # alive, yet no answer
        with pytest.raises(HubError, match="does not answer"):
            find(paths, None, tidy=True)
        assert paths.pid.exists()

        def leaving(*args: object, **kwargs: object) -> None:
            paths.pid.unlink()  # the proxy withdraws its file and stops listening while we ask
            return None

        monkeypatch.setattr("ccxray.hub.probe", leaving)
        assert find(paths, None) is None  # gone, not an error


def test_status_text_when_nothing_runs(tmp_path):
    out = io.StringIO()
    print_status({"running": False, "home": str(tmp_path)}, out)
    assert "no proxy running" in out.getvalue()
    settings = load_settings({"CCXRAY_HOME": str(tmp_path)}, port=0)
    out = io.StringIO()
    assert run_hub_command("stop", [], lambda: settings, out) == 0 and "no proxy running" in out.getvalue()
    assert run_hub_command("status", ["--bogus"], lambda: settings, io.StringIO()) == 2


def test_agent_argv_and_environment(hub_settings):
    base = "http://127.0.0.1:5577"
    assert command_for("codex", "/bin/codex", ["exec", "hi"], base) == [
        "/bin/codex", "-c", f'openai_base_url="{base}/v1"', "-c", f'chatgpt_base_url="{base}/v1"', "exec", "hi"]
    assert command_for("claude", "/bin/claude", ["-p", "hi"], base) == ["/bin/claude", "-p", "hi"]
    env = env_for("claude", base, hub_settings.__class__(**{**hub_settings.__dict__, "auth_token": "tok"}))
    assert env["ANTHROPIC_BASE_URL"] == base and env["ANTHROPIC_CUSTOM_HEADERS"].endswith("X-Ccxray-Auth: tok")


@pytest.mark.parametrize("runner", [_run_waiting_for_signals, _run_with_handlers])
def test_runner_returns_the_code_or_the_signal(runner):
    before = {sig: signal.getsignal(sig) for sig in FORWARDED}
    pids: list[int] = []
    assert runner([sys.executable, "-c", "raise SystemExit(3)"], {}, pids.append) == 3
    die = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert runner([sys.executable, "-c", die], {}, pids.append) == -signal.SIGTERM
    assert len(set(pids)) == 2
    assert {sig: signal.getsignal(sig) for sig in FORWARDED} == before  # handlers put back
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == set()  # nothing left blocked


def test_missing_agent_is_exit_127_with_the_install_hint(hub_settings, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launch("codex", [], hub_settings) == 127
    assert "npm install -g @openai/codex" in capsys.readouterr().err


@pytest.mark.parametrize("status,expected", [(5, 5), (-signal.SIGTERM, -signal.SIGTERM)])
def test_exit_like_leaves_as_the_agent_left(status, expected):
    code = f"from ccxray.launch import exit_like; exit_like({status})"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], timeout=30)
    assert done.returncode == expected
