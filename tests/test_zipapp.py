"""dist/ccxray.pyz: reproducible, and complete on a Python with nothing but the standard library.

The archive runs with ``python -I`` (no PYTHONPATH, no user site) from a
venv made ``--without-pip`` (so no h11/wsproto), in a directory outside the
checkout: everything it needs must come from the one file.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from ccxray.hub import stop
from ccxray.hubfiles import HubPaths
from tools.fake_upstream import FakeUpstream

from .conftest import ROOT
from .hubagents import install_agents

pytestmark = pytest.mark.slow

CREATE = {"type": "response.create", "model": "gpt-5.5", "input": "say hi"}


def build(out: Path) -> bytes:
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_zipapp.py"), "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    return out.read_bytes()


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of the base interpreter without pip, so without h11 and wsproto."""
    where = tmp_path_factory.mktemp("bare")
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    missing = subprocess.run([str(python), "-I", "-c", "import h11"], capture_output=True, timeout=60)
    assert missing.returncode != 0, "the bare venv must not see h11"
    return python


def pyz(python: Path, archive: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-I", str(archive), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_two_builds_are_identical(tmp_path: Path) -> None:
    assert build(tmp_path / "one.pyz") == build(tmp_path / "two.pyz")


def test_wheels_give_the_same_archive_as_installed_packages(tmp_path: Path) -> None:
    """``--wheels DIR`` (offline, after ``pip download``) bundles exactly what the venv has installed."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("h11", "wsproto"):
        dist = metadata.distribution(name)
        with zipfile.ZipFile(wheels / f"{name}-{dist.version}-py3-none-any.whl", "w") as whl:
            for entry in dist.files or []:
                if not entry.as_posix().startswith(".."):
                    whl.write(str(dist.locate_file(entry)), entry.as_posix())
    from_venv = build(tmp_path / "venv.pyz")
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_zipapp.py"), "--out", str(tmp_path / "whl.pyz"),
                    "--wheels", str(wheels)], check=True, capture_output=True, timeout=120)
    assert (tmp_path / "whl.pyz").read_bytes() == from_venv


def recv_until_completed(ws: Any) -> list[dict[str, Any]]:
    events = []
    while True:
        events.append(json.loads(ws.recv(timeout=10)))
        if events[-1]["type"] in ("response.completed", "response.failed", "error"):
            return events


def test_runs_alone_proxies_http_websocket_and_a_launcher_and_reads_them_back(tmp_path: Path, fake: FakeUpstream,
                                                                   bare_python: Path) -> None:
    archive = tmp_path / "ccxray.pyz"
    build(archive)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    home = outside / "home"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(outside), "CCXRAY_HOME": str(home),
           "ANTHROPIC_BASE_URL": fake.base_url, "OPENAI_BASE_URL": fake.base_url + "/v1",
           "CHATGPT_BASE_URL": fake.base_url + "/backend-api/codex"}
    version = pyz(bare_python, archive, outside, env, "--version")
    assert version.returncode == 0 and "h11 " in version.stdout and "wsproto " in version.stdout, version

    started = pyz(bare_python, archive, outside, env, "--port", "0", "start", "--json")
    try:
        assert started.returncode == 0, started.stderr
        port = json.loads(started.stdout)["port"]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/messages", body=b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}')
        assert conn.getresponse().status == 200
        conn.close()
        with connect(f"ws://127.0.0.1:{port}/v1/responses") as ws:
            ws.send(json.dumps(CREATE))
            assert recv_until_completed(ws)[-1]["type"] == "response.completed"
        status = json.loads(pyz(bare_python, archive, outside, env, "status", "--json").stdout)
        assert status["running"] and status["port"] == port
        agents = {**env, "PATH": f"{install_agents(tmp_path / 'bin')}:{env['PATH']}"}
        launched = subprocess.run([str(bare_python), "-I", str(archive), "--port", "0", "claude"], cwd=outside,
                                  env=agents, input="call\nexit 4\n", capture_output=True, text=True, timeout=60)
        assert launched.returncode == 4 and f"joined proxy pid {status['pid']}" in launched.stderr, launched
        assert json.loads(launched.stdout.splitlines()[-1]) == {"status": 200}
    finally:
        stopped = pyz(bare_python, archive, outside, env, "stop", "--json")
        stop(HubPaths(home), None, 2.0)  # in case the archive's own stop failed
    assert json.loads(stopped.stdout)["stopped"] is True, stopped

    tail = pyz(bare_python, archive, outside, env, "tail", "--no-follow", "--json")
    lines = [json.loads(l) for l in tail.stdout.splitlines()]
    assert sorted(l["kind"] for l in lines) == ["call", "call", "connection", "turn"], lines
    human = pyz(bare_python, archive, outside, env, "tail", "--no-follow").stdout
    assert "websocket connection" in human and "frames ↑1" in human
    call = next(l for l in lines if l["kind"] == "call")
    shown = pyz(bare_python, archive, outside, env, "show", call["id"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == call["id"], shown
    usage = json.loads(pyz(bare_python, archive, outside, env, "usage", "--json").stdout)
    assert usage["total"]["calls"] == 3
    assert set(usage["byModel"]) == {"claude-haiku-4-5", "gpt-5.5"}
