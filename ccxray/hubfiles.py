"""The hub's files under ``$CCXRAY_HOME``: the lock, the pid file and the launcher registry.

* ``ccxray.lock``: an empty file; ``flock`` on it serialises every decision
  to start, join or leave the shared proxy, so two launchers started in the
  same instant end up on one proxy and a launcher never registers with a
  proxy that is already leaving.
* ``ccxray.pid``: JSON describing the running proxy (pid, port, version,
  start time, calls so far), replaced atomically. A crashed proxy leaves it
  behind; readers confirm it with a ``HEAD /`` (see hub.py) before trusting it.
* ``launchers/<pid>.json``: one file per process using the proxy (launchers
  and an attached foreground ``ccxray``). A file whose process has gone
  (even by SIGKILL) no longer counts and is removed by whoever notices.

Files, not a registration endpoint: a launcher that is killed cannot
deregister over the network, but its file is checked against the process
table, so no lease or heartbeat is needed, and registration keeps working
while the proxy is starting or stopping.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .private import mkdir_private

LOCK_NAME = "ccxray.lock"
PID_NAME = "ccxray.pid"
LOG_NAME = "ccxray.log"
REGISTRY_DIR = "launchers"


@dataclass(frozen=True)
class HubPaths:
    """Where one home keeps its hub files."""

    home: Path

    @property
    def lock(self) -> Path:
        return self.home / LOCK_NAME

    @property
    def pid(self) -> Path:
        return self.home / PID_NAME

    @property
    def log(self) -> Path:
        return self.home / LOG_NAME

    @property
    def registry(self) -> Path:
        return self.home / REGISTRY_DIR


@contextmanager
def locked(paths: HubPaths) -> Iterator[None]:
    """Hold the hub lock (blocking); the kernel drops it if this process dies."""
    mkdir_private(paths.home)  # owner-only, whatever the umask
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary sibling then rename, so readers never see half a file."""
    mkdir_private(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, or None if it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def alive(pid: int, started: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when ``started`` is known, is the same process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _zombie(pid):
        return False
    return started is None or process_start(pid) in (None, started)


def register(paths: HubPaths, agent: str, pid: int | None = None, agent_pid: int | None = None) -> Path:
    """Record that process ``pid`` (default: this one) uses the proxy; returns its file.

    ``agent_pid`` names the agent it runs: a user lasts while either lives, so
    an agent whose launcher was killed keeps its proxy.
    """
    pid = os.getpid() if pid is None else pid
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the directory was removed under us: still a user
        cwd = None
    entry = {"pid": pid, "agent": agent, "since": time.time(), "cwd": cwd, "procStart": process_start(pid)}
    if agent_pid is not None:
        entry.update(agentPid=agent_pid, agentStart=process_start(agent_pid))
    path = paths.registry / f"{pid}.json"
    write_json_atomic(path, entry)
    return path


def launchers(paths: HubPaths) -> list[dict[str, Any]]:
    """The registered processes still running; files of gone ones are removed."""
    found: list[dict[str, Any]] = []
    try:
        names = sorted(p for p in paths.registry.iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return found
    for path in names:
        entry = read_json(path)
        if entry is not None and (_lives(entry, "pid", "procStart") or _lives(entry, "agentPid", "agentStart")):
            found.append(entry)
        elif entry is not None or time.time() - _mtime(path) > 5:
            remove(path)  # gone processes, or a file that stayed unreadable
    return found


def _lives(entry: dict[str, Any], pid_key: str, start_key: str) -> bool:
    pid, started = entry.get(pid_key), entry.get(start_key)
    return isinstance(pid, int) and alive(pid, started if isinstance(started, int) else None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
