"""Shared fixtures: a fake upstream, proxies on port 0, and leak checks.

Every test runs against real sockets on 127.0.0.1. The autouse ``no_leaks``
fixture fails a test that leaves threads or child processes behind.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccxray.config import load_settings  # noqa: E402
from ccxray.server import ProxyServer  # noqa: E402
from ccxray.store import read_index  # noqa: E402
from tools.fake_upstream import FakeUpstream  # noqa: E402

from . import skip_policy  # noqa: E402

# Hypothesis' default 200 ms deadline fails healthy examples on a loaded
# shared machine; "deep" (CCXRAY_HYPOTHESIS_PROFILE=deep) tries ten times more.
settings.register_profile("shared-machine", deadline=None)
settings.register_profile("deep", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("CCXRAY_HYPOTHESIS_PROFILE") or "shared-machine")


def pytest_configure(config: pytest.Config) -> None:
    skip_policy.register(config)


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``pred`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        event.wait(0.01)


def child_pids() -> set[int]:
    pids: set[int] = set()
    task_dir = Path(f"/proc/{os.getpid()}/task")
    for task in task_dir.iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    before = set(threading.enumerate())
    children = child_pids()
    yield
    def settled() -> bool:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        return not extra
    try:
        wait_until(settled, 10.0, "threads started by the test to exit")
    except AssertionError:
        extra = [t.name for t in threading.enumerate() if t not in before]
        raise AssertionError(f"threads left behind: {extra}") from None
    left = child_pids() - children
    assert not left, f"child processes left behind: {left}"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    server = FakeUpstream()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def proxy_env(fake: FakeUpstream, home: Path, **extra: str) -> dict[str, str]:
    env = {
        "ANTHROPIC_BASE_URL": fake.base_url,
        "OPENAI_BASE_URL": fake.base_url + "/v1",
        "CHATGPT_BASE_URL": fake.base_url + "/backend-api/codex",
        "CCXRAY_HOME": str(home),
    }
    env.update(extra)
    return env


class ProxyHandle:
    """A started ProxyServer plus helpers to read what it recorded."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def logs(self) -> Path:
        return self.server.settings.logs_dir

    def lines(self, count: int | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The index lines; with ``count``, wait until at least that many are written.

        The relay hands a call to the recorder only after the client has its
        last byte (peer first), so a test must wait for the line, not assume it.
        """
        if count is not None:
            return self.wait_lines(lambda ls: len(ls) >= count, timeout, f"{count} index lines")
        assert self.server.recorder.flush(timeout), "recorder did not flush"
        return list(read_index(self.logs / "index.ndjson"))

    def wait_lines(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0, what: str = "log lines") -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            found = list(read_index(self.logs / "index.ndjson"))
            return found if pred(found) else None
        found = wait_until(ready, timeout, what)
        # a line reaches the index just before its sidecars and the live listeners: wait for those too
        assert self.server.recorder.flush(timeout), "recorder did not flush"
        return found  # type: ignore[no-any-return]

    def sidecar(self, call_id: str, part: str) -> Any:
        return read_sidecar(self.logs, call_id, part)


def read_sidecar(logs: Path, call_id: str, part: str) -> Any:
    """A sidecar as readers see it: an HTTP call's meta, folded into its response
    sidecar, is split back out. A missing file raises (tests expect it there)."""
    import json
    from ccxray.readback import unfold_response
    res_path = logs / f"{call_id}_res.json"
    if part in ("res", "meta") and res_path.exists():
        folded = unfold_response(json.loads(res_path.read_text()))
        if folded is not None:
            return folded[0 if part == "res" else 1]
    return json.loads((logs / f"{call_id}_{part}.json").read_text())


@pytest.fixture
def make_proxy(fake: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., ProxyHandle]]:
    started: list[ProxyServer] = []

    def make(**extra: str) -> ProxyHandle:
        env = proxy_env(fake, tmp_path / f"home{len(started)}", **extra)
        server = ProxyServer(load_settings(env, port=0)).start()
        started.append(server)
        return ProxyHandle(server)

    yield make
    for server in started:
        server.stop(grace_s=2)


@pytest.fixture
def proxy(make_proxy: Callable[..., ProxyHandle]) -> ProxyHandle:
    return make_proxy()
