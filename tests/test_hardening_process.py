"""The proxy process: stops on a signal whatever stdout is, and keeps its files to its owner."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from websockets.sync.client import connect

from ccxray.private import make_private_dirs

from .conftest import ROOT, proxy_env
from .test_http_proxy import MSG, request
from .test_ws_proxy import CODEX_HEADERS, CREATE, recv_until_completed, ws_url


def _proxy_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = dict(os.environ, **env)
    full.pop("AUTH_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "ccxray", "--port", "0", "--no-browser"], cwd=ROOT,
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("lines_read", [1, 3])
def test_signal_stops_the_proxy_with_stdout_closed(fake, tmp_path, sig, lines_read):
    """Like ``python -m ccxray | head -N``: the reader goes away, then the signal comes."""
    proc = _proxy_process(proxy_env(fake, tmp_path / "home"))
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert b"proxy" in first, first + proc.stderr.read() if proc.stderr else b""
        port = int(first.split(b"http://127.0.0.1:")[1].split(b"/")[0])
        for _ in range(lines_read - 1):
            proc.stdout.readline()
        proc.stdout.close()  # the reader is gone: every later print meets a broken pipe
        assert request(port, "POST", "/v1/messages", MSG)[0] == 200
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert b"Traceback" not in err and b"Exception ignored" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert (tmp_path / "home" / "logs" / "index.ndjson").read_bytes().count(b"\n") == 1


# -- owner-only files ---------------------------------------------------------------

@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    found = {str(root): stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        if not path.is_symlink():
            found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def _wrong_modes(root: Path) -> dict[str, str]:
    wrong = {}
    for name, mode in _modes(root).items():
        path = root / name if name != str(root) else root
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong[name] = oct(mode)
    return wrong


def test_home_and_everything_under_it_owner_only_with_umask_000(fake, make_proxy, open_umask):
    proxy = make_proxy()
    assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 200
    assert request(proxy.port, "POST", "/v1/messages", MSG, headers={"x-fake-mode": "sse:5"})[0] == 200
    assert request(proxy.port, "POST", "/v1/responses", b'{"model":"gpt-5","input":"hi"}')[0] == 200
    with connect(ws_url(proxy), additional_headers=CODEX_HEADERS) as ws:
        ws.send(json.dumps(CREATE))
        recv_until_completed(ws)
    proxy.wait_lines(lambda ls: any(line["kind"] == "connection" for line in ls), what="the WebSocket's line")
    assert proxy.server.recorder.flush(10)
    home = proxy.server.settings.home
    files = [p for p in home.rglob("*") if p.is_file()]
    assert len(files) >= 4  # the index and sidecars at least
    assert _wrong_modes(home) == {}


def test_wide_existing_home_is_tightened_with_one_line(fake, make_proxy, tmp_path, open_umask, caplog):
    home = tmp_path / "home0"  # the name make_proxy gives its first proxy's home
    (home / "logs").mkdir(parents=True, mode=0o755)
    os.chmod(home, 0o755)
    os.chmod(home / "logs", 0o777)
    old = home / "logs" / "old_req.json"
    old.write_text("{}")
    os.chmod(old, 0o644)
    with caplog.at_level(logging.WARNING, logger="ccxray.server"):
        proxy = make_proxy()
    notices = [r.getMessage() for r in caplog.records if "owner-only" in r.getMessage()]
    assert len(notices) == 1 and str(home) in notices[0] and "755" in notices[0]
    assert _wrong_modes(home) == {}
    assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 200
    proxy.lines(1)
    assert _wrong_modes(home) == {}


def test_private_dirs_notice_only_when_tightening(tmp_path, open_umask):
    home = tmp_path / "a" / "b"
    assert make_private_dirs(home, (home / "logs",)) is None
    assert _wrong_modes(tmp_path / "a") == {}
    assert make_private_dirs(home, (home / "logs",)) is None
