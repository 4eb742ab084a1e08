"""The shared proxy: launchers in separate processes, stand-in agents making real calls.

Each test runs ``python -m ccxray --port 0 claude|codex`` with stand-in
executables on PATH (tests/hubagents.py). The background proxy a launcher
starts is no child of the test, so every test stops it in a ``finally``.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import pty
import signal
import subprocess
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from ccxray.config import load_settings
from ccxray.hub import HubInfo, find, read_info, stop
from ccxray.hubcli import run_hub_command
from ccxray.hubfiles import HubPaths, alive, launchers, register, remove
from ccxray.store import read_index
from tools.fake_upstream import FakeUpstream

from .conftest import ROOT, wait_until
from .hubagents import Launcher, install_agents, wait_gone

pytestmark = pytest.mark.slow


@pytest.fixture
def hub_env(fake: FakeUpstream, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for launchers: stand-ins first on PATH, a home of its own, a short grace."""
    env = os.environ.copy()
    for name in ("AUTH_TOKEN", "HTTPS_PROXY", "https_proxy", "PROXY_PORT"):
        env.pop(name, None)
    home = tmp_path / "home"
    env.update({"CCXRAY_HOME": str(home), "ANTHROPIC_BASE_URL": fake.base_url,
                "OPENAI_BASE_URL": fake.base_url + "/v1", "CHATGPT_BASE_URL": fake.base_url + "/backend-api/codex",
                "PATH": f"{install_agents(tmp_path / 'bin')}{os.pathsep}{env.get('PATH', '')}",
                "CCXRAY_HUB_GRACE_MS": "1", "CCXRAY_SHUTDOWN_GRACE_MS": "2000"})
    try:
        yield env
    finally:
        stop(HubPaths(home), None, 2.0)


@pytest.fixture
def launchers_started() -> Iterator[list[Launcher]]:
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.kill_all()


def home_of(env: dict[str, str]) -> Path:
    return Path(env["CCXRAY_HOME"])


def start(started: list[Launcher], env: dict[str, str], tool: str, *flags: str) -> Launcher:
    launcher = Launcher(env, tool, *flags)
    started.append(launcher)
    return launcher


def running(env: dict[str, str]) -> HubInfo:
    info = find(HubPaths(home_of(env)), None)
    assert info is not None, "no proxy running"
    return info


def index(env: dict[str, str]) -> list[dict[str, Any]]:
    return list(read_index(home_of(env) / "logs" / "index.ndjson"))


def hub_json(env: dict[str, str], command: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    settings = load_settings({"CCXRAY_HOME": env["CCXRAY_HOME"]}, port=0)
    code = run_hub_command(command, ["--json"], lambda: settings, out)
    return code, json.loads(out.getvalue())


def direct_call(info: HubInfo) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", info.port, timeout=10)
    conn.request("POST", "/v1/messages", body=b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}')
    status = conn.getresponse().status
    conn.close()
    return status


def test_first_launcher_leaves_second_keeps_calling_last_one_ends_proxy(hub_env, launchers_started):
    first = start(launchers_started, hub_env, "claude")
    base = first.wait_ready()["base"]
    second = start(launchers_started, hub_env, "codex")
    assert second.wait_ready()["base"] == base + "/v1"  # joined the same proxy
    info = running(hub_env)
    assert first.call() == 200 and second.call() == 200

    code, err = first.finish()
    assert code == 0 and "started proxy" in err, err
    assert [s for s in (second.call() for _ in range(3))] == [200, 200, 200]
    assert running(hub_env).pid == info.pid
    assert [l["agent"] for l in launchers(HubPaths(home_of(hub_env)))] == ["codex"]

    code, err = second.finish()
    assert code == 0 and "joined proxy" in err, err
    wait_gone(home_of(hub_env), info.pid)
    lines = index(hub_env)  # the proxy flushed its log before leaving
    assert sorted(l["provider"] for l in lines) == ["anthropic"] + ["openai"] * 4
    assert all(l["status"] == 200 for l in lines)
    assert "the last launcher left" in (home_of(hub_env) / "ccxray.log").read_text()


def test_keep_keeps_the_proxy_after_the_last_launcher(hub_env, launchers_started):
    launcher = start(launchers_started, hub_env, "claude", "--keep")
    launcher.wait_ready()
    assert launcher.call() == 200
    assert launcher.finish()[0] == 0
    info = running(hub_env)
    assert info.keep
    # With a 1 ms grace, the proxy would leave at its first look at the empty
    # registry; it publishes its call count at each look, so two calls seen in
    # ccxray.pid prove it looked (twice) after the launcher left and stayed.
    for expected in (2, 3):
        assert direct_call(info) == 200
        wait_until(lambda: (read_info(HubPaths(home_of(hub_env))) or info).calls >= expected, 20, "the count")
        assert running(hub_env).pid == info.pid
    code, report = hub_json(hub_env, "stop")
    assert code == 0 and report["stopped"] and report["pid"] == info.pid
    wait_gone(home_of(hub_env), info.pid)


def test_sigkilled_proxy_leaves_a_stale_lock_the_next_launcher_replaces(hub_env, launchers_started):
    first = start(launchers_started, hub_env, "claude", "--keep")
    first.wait_ready()
    assert first.finish()[0] == 0
    old = running(hub_env)
    os.kill(old.pid, signal.SIGKILL)
    wait_until(lambda: not alive(old.pid), 20, "the killed proxy to be gone")
    assert (home_of(hub_env) / "ccxray.pid").exists()  # the stale lock

    second = start(launchers_started, hub_env, "codex")
    second.wait_ready()
    assert second.call() == 200
    new = running(hub_env)
    assert new.pid != old.pid and not new.keep
    code, err = second.finish()
    assert code == 0 and "started proxy" in err, err
    wait_gone(home_of(hub_env), new.pid)


def test_sigkilled_launcher_holds_the_proxy_only_while_its_agent_lives(hub_env, launchers_started):
    launcher = start(launchers_started, hub_env, "claude")
    launcher.wait_ready()
    info = running(hub_env)
    paths = HubPaths(home_of(hub_env))
    wait_until(lambda: [l.get("agentPid") for l in launchers(paths)] == [launcher.ready["pid"]], 20,
               "the agent's pid in the registration")
    os.kill(launcher.proc.pid, signal.SIGKILL)  # no chance to deregister
    launcher.proc.wait(10)
    assert launcher.call() == 200  # the orphaned agent still works through the proxy
    assert running(hub_env).pid == info.pid
    launcher.finish()  # the agent sees stdin close and exits: nobody is left
    wait_gone(home_of(hub_env), info.pid)
    assert not list((home_of(hub_env) / "launchers").glob("*.json"))


def test_launchers_racing_end_on_one_proxy(hub_env, launchers_started):
    racers = [start(launchers_started, hub_env, tool) for tool in ("claude", "codex", "claude")]
    bases = {r.wait_ready()["base"].removesuffix("/v1") for r in racers}
    assert len(bases) == 1, bases
    assert all(r.call() == 200 for r in racers)
    info = running(hub_env)
    results = [r.finish() for r in racers]
    assert [code for code, _ in results] == [0, 0, 0]
    assert sum("started proxy" in err for _, err in results) == 1, [err for _, err in results]
    wait_gone(home_of(hub_env), info.pid)
    assert len(index(hub_env)) == 3


@pytest.mark.parametrize("tool", ["claude", "codex"])
def test_exit_status_and_signals_pass_through(hub_env, launchers_started, tool):
    plain = start(launchers_started, hub_env, tool)
    plain.wait_ready()
    plain.send("exit 7")
    assert plain.finish()[0] == 7

    trapping = start(launchers_started, hub_env, tool)
    trapping.wait_ready()
    trapping.send("trap SIGTERM 3")
    trapping.expect("trapped")
    trapping.proc.send_signal(signal.SIGTERM)  # to the launcher only: it passes it on
    assert trapping.expect("signal")["signal"] == signal.SIGTERM
    assert trapping.finish()[0] == 3

    interrupted = start(launchers_started, hub_env, tool)
    interrupted.wait_ready()
    interrupted.send("trap SIGINT 4")
    interrupted.expect("trapped")
    interrupted.proc.send_signal(signal.SIGINT)
    assert interrupted.expect("signal")["signal"] == signal.SIGINT
    assert interrupted.finish()[0] == 4

    killed = start(launchers_started, hub_env, tool)
    killed.wait_ready()
    killed.proc.send_signal(signal.SIGTERM)  # the agent dies of it: so does the launcher
    assert killed.proc.wait(30) == -signal.SIGTERM  # (before finish() closes the agent's stdin)
    killed.finish()

    dying = start(launchers_started, hub_env, tool)
    dying.wait_ready()
    dying.send("die SIGUSR1")
    assert dying.finish()[0] == -signal.SIGUSR1


# Run ARGV as a session leader whose controlling terminal is its stdin (a pty),
# as a shell runs a command: Ctrl-C typed there goes to the whole foreground group.
WITH_TERMINAL = "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])"


def test_ctrl_c_typed_in_the_terminal_reaches_the_agent_once(hub_env, launchers_started):
    master, slave = pty.openpty()
    try:
        argv = [sys.executable, "-c", WITH_TERMINAL, sys.executable, "-m", "ccxray", "--port", "0",
                "--no-browser", "claude"]
        launcher = Launcher(hub_env, "claude", argv=argv, stdin=slave)
        launchers_started.append(launcher)
        os.close(slave)
        launcher.wait_ready()
        os.write(master, b"count SIGINT\n")
        launcher.expect("counting")
        os.write(master, b"\x03")  # the terminal's Ctrl-C: SIGINT to launcher and agent alike
        assert launcher.expect("signal")["signal"] == signal.SIGINT
        os.write(master, b"ping\n")
        launcher.expect("pong")  # not a second SIGINT: the launcher did not pass the terminal's on
        assert launcher.proc.poll() is None  # and the launcher itself did not die of it
        os.write(master, b"exit 0\n")
        assert launcher.finish()[0] == 0
    finally:
        os.close(master)


def test_an_agent_that_suspends_itself_suspends_its_launcher(hub_env, launchers_started):
    launcher = start(launchers_started, hub_env, "claude")
    launcher.wait_ready()
    launcher.send("suspend")
    def stopped() -> bool:  # what a shell waits for: the job stopped
        pid, status = os.waitpid(launcher.proc.pid, os.WUNTRACED | os.WNOHANG)
        return pid != 0 and os.WIFSTOPPED(status)

    wait_until(stopped, 20, "the launcher to stop with its agent")
    os.killpg(launcher.proc.pid, signal.SIGCONT)  # the shell's `fg`
    assert launcher.expect("resumed")
    launcher.send("ping")
    launcher.expect("pong")
    launcher.send("exit 0")
    assert launcher.finish()[0] == 0


def test_status_and_stop_json(hub_env, launchers_started):
    code, report = hub_json(hub_env, "status")
    assert code == 1 and report["running"] is False
    launcher = start(launchers_started, hub_env, "codex")
    ready = launcher.wait_ready()
    assert launcher.call() == 200
    wait_until(lambda: hub_json(hub_env, "status")[1]["calls"] >= 1, 20, "the call in status")
    code, report = hub_json(hub_env, "status")
    assert code == 0 and report["running"] is True
    assert report["url"] + "/v1" == ready["base"] and report["port"] == int(ready["base"].split(":")[2][:-3])
    assert report["version"] and report["uptimeS"] >= 0 and report["home"] == hub_env["CCXRAY_HOME"]
    assert [(l["agent"], l["pid"], l["agentPid"]) for l in report["launchers"]] == [
        ("codex", launcher.proc.pid, ready["pid"])]
    text = subprocess.run([sys.executable, "-m", "ccxray", "status"], cwd=ROOT, env=hub_env,
                          capture_output=True, text=True, timeout=30)
    assert text.returncode == 0 and "codex" in text.stdout and str(report["pid"]) in text.stdout

    code, stopped = hub_json(hub_env, "stop")
    assert code == 0 and stopped == {"running": False, "stopped": True, "pid": report["pid"],
                                     "home": hub_env["CCXRAY_HOME"]}
    wait_gone(home_of(hub_env), report["pid"])
    assert hub_json(hub_env, "stop")[1]["stopped"] is False
    assert launcher.finish()[0] == 0


def test_stop_lets_an_in_flight_stream_finish(hub_env, fake):
    env = {**hub_env, "CCXRAY_SHUTDOWN_GRACE_MS": "60000"}  # ample: the stream's end, not a clock, decides
    done = subprocess.run([sys.executable, "-m", "ccxray", "--port", "0", "start", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    port = json.loads(done.stdout)["port"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    stopper = threading.Thread(target=stop, args=(HubPaths(home_of(hub_env)), None, 60.0))
    try:
        conn.request("POST", "/v1/messages?fake_mode=stepped:2", body=b"{}")
        response = conn.getresponse()
        fake.step()
        assert response.readline().startswith(b"data:")
        stopper.start()

        def refusing() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except OSError:
                return True
            return False

        wait_until(refusing, 20, "the stopping proxy to refuse new connections")
        fake.step()
        rest = response.read()
        assert rest.count(b"data:") == 1, rest  # the second event, then the stream's proper end
    finally:
        conn.close()
        if stopper.ident is not None:  # started
            stopper.join()
    wait_gone(home_of(hub_env), json.loads(done.stdout)["pid"])
    (line,) = index(hub_env)
    assert line["status"] == 200 and line["error"] is None, line


def test_foreground_proxy_is_found_by_launchers(hub_env, launchers_started):
    from .test_cli import Running

    foreground = Running(hub_env)
    try:
        assert "upstreams: anthropic" in "".join(foreground.lines)
        launcher = start(launchers_started, hub_env, "claude")
        assert launcher.wait_ready()["base"] == foreground.url
        assert launcher.call() == 200
        code, err = launcher.finish()
        assert code == 0 and "joined proxy" in err
        assert running(hub_env).foreground  # the foreground proxy does not leave with the launcher
    finally:
        assert foreground.stop() == 0


def test_foreground_ccxray_attaches_to_a_running_proxy(hub_env, launchers_started):
    code, started = hub_json(hub_env, "start")
    assert code == 0 and started["alreadyRunning"] is False and started["keep"]
    again = hub_json(hub_env, "start")[1]
    assert again["alreadyRunning"] is True and again["pid"] == started["pid"]  # one proxy per home
    paths = HubPaths(home_of(hub_env))
    attached = Launcher(hub_env, "", argv=[sys.executable, "-m", "ccxray", "--no-browser"],
                        stdin=subprocess.DEVNULL)
    launchers_started.append(attached)
    assert started["url"] in attached.expect("text")["text"]
    assert "Ctrl-C to leave" in attached.expect("text")["text"]
    assert [l["agent"] for l in launchers(paths)] == ["foreground"]
    attached.proc.send_signal(signal.SIGINT)
    assert attached.finish()[0] == 0
    assert launchers(paths) == [] and running(hub_env).pid == started["pid"]


def test_launcher_of_another_home_uses_the_ccxray_on_its_port(hub_env, launchers_started, tmp_path):
    from .test_cli import Running

    foreground = Running(hub_env)
    try:
        other = {**hub_env, "CCXRAY_HOME": str(tmp_path / "other-home")}
        launcher = Launcher(other, "claude", argv=[sys.executable, "-m", "ccxray", "--port", str(foreground.port),
                                                   "claude"])
        launchers_started.append(launcher)
        assert launcher.wait_ready()["base"] == foreground.url
        assert launcher.call() == 200
        code, err = launcher.finish()
        assert code == 0 and "belongs to another home" in err, err
        assert not (tmp_path / "other-home" / "ccxray.pid").exists()
        assert not list((tmp_path / "other-home").glob("launchers/*.json"))
        wait_until(lambda: len(index(hub_env)) == 1, 20, "the call in the foreground proxy's log")
    finally:
        assert foreground.stop() == 0


def test_registry_ignores_gone_and_reused_pids(tmp_path):
    paths = HubPaths(tmp_path)
    mine = register(paths, "claude")
    ghost = register(paths, "codex", pid=2 ** 22 + 12345)  # beyond pid_max: never a live process
    reused = paths.registry / "1.json"
    reused.write_text(json.dumps({"pid": 1, "agent": "x", "procStart": -5}))
    orphan = register(paths, "codex", pid=2 ** 22 + 12346, agent_pid=os.getpid())  # launcher gone, agent lives
    assert sorted(l["agent"] for l in launchers(paths)) == ["claude", "codex"]
    assert not ghost.exists() and not reused.exists()
    remove(orphan)
    remove(mine)
    assert launchers(paths) == []
