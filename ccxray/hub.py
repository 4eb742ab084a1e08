"""Finding, starting, inspecting and stopping the shared proxy of one ``$CCXRAY_HOME``.

A launcher takes the hub lock, trusts ``ccxray.pid`` only after the port it
names answers ``HEAD /`` as a ccxray of a compatible version, else removes
the stale file and starts a new background proxy (``ccxray _hub``, see
hubserve.py), registers itself and lets go of the lock.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxray

from . import __version__
from .config import Settings
from .errors import CcxrayError
from .hubfiles import HubPaths, alive, launchers, locked, read_json, register, remove

START_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 5.0
STOP_MARGIN_S = 10.0
# ``python -c BOOT ROOT ARGS...``: runs ccxray from wherever this copy was
# imported (a checkout, site-packages or the zipapp), with its h11/wsproto;
# the launcher's working directory ("" on sys.path) must not shadow them.
BOOT = ("import sys; sys.path[:] = [sys.argv.pop(1)] + [p for p in sys.path if p]; "
        "from ccxray.cli import main_entry; main_entry()")


class HubError(CcxrayError):
    """The shared proxy could not be found, started or stopped; the message says why."""


@dataclass(frozen=True)
class HubInfo:
    """What ``ccxray.pid`` says about the running proxy."""

    pid: int
    host: str
    port: int
    version: str
    started: float
    keep: bool
    foreground: bool
    calls: int
    proc_start: int | None = None  # tells the proxy's process from a later one given the same pid

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "HubInfo | None":
        try:
            return cls(int(data["pid"]), str(data["host"]), int(data["port"]), str(data["version"]),
                       float(data["started"]), bool(data.get("keep")), bool(data.get("foreground")),
                       int(data.get("calls") or 0),
                       data["procStart"] if isinstance(data.get("procStart"), int) else None)
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "port": self.port, "version": self.version,
                "started": self.started, "keep": self.keep, "foreground": self.foreground, "calls": self.calls,
                "procStart": self.proc_start}

    @property
    def connect_host(self) -> str:
        return connect_host(self.host)

    @property
    def url(self) -> str:
        host = self.connect_host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"


def connect_host(bind_host: str) -> str:
    """Where a local client reaches a proxy bound to ``bind_host``."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "") else "::1" if bind_host == "::" else bind_host


def bind_error(settings: Settings, exc: OSError) -> str:
    """The one message for a port that is taken, shared by the server and the launchers."""
    if exc.errno == errno.EADDRINUSE:
        return f"{settings.host}:{settings.port} is in use (another ccxray? choose a port with --port)"
    return f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"


def compatible(version: str) -> bool:
    """Same major.minor as this ccxray: launchers and the proxy share files and flags."""
    return version.split(".")[:2] == __version__.split(".")[:2]


def probe(host: str, port: int, token: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """The ccxray version answering ``HEAD /`` on host:port, or None if it is not a ccxray."""
    name = f"[{host}]" if ":" in host else host
    auth = f"X-Ccxray-Auth: {token}\r\n" if token else ""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {name}:{port}\r\n{auth}Connection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return None
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name_, _, value = line.partition(":")
        if name_.strip().lower() == "x-ccxray":
            return value.strip()
    return None


def read_info(paths: HubPaths) -> HubInfo | None:
    data = read_json(paths.pid)
    return HubInfo.from_json(data) if data else None


def find(paths: HubPaths, token: str | None, tidy: bool = False) -> HubInfo | None:
    """The running proxy of this home, or None.

    With ``tidy`` (only with the hub lock held, when the answer decides
    whether to start a proxy) a stale pid file is removed. Raises HubError if
    the proxy's process lives but does not answer as a compatible ccxray.
    """
    for _ in range(3):  # a proxy may leave (or be replaced) while we ask it: then look again
        info = read_info(paths)
        if info is None or not alive(info.pid, info.proc_start):
            if tidy:
                remove(paths.pid)  # absent, unreadable, or its process is gone (crash, SIGKILL): stale
            return None
        version = probe(info.connect_host, info.port, token)
        if version is not None:
            return _checked(paths, info, version)
        now = read_info(paths)
        if now is not None and (now.pid, now.proc_start) == (info.pid, info.proc_start) and \
                alive(info.pid, info.proc_start):
            raise HubError(f"ccxray pid {info.pid} of {paths.home} does not answer on port {info.port} "
                           f"(stopped or overloaded?); wait, or end it: kill {info.pid}")
    return None


def _checked(paths: HubPaths, info: HubInfo, version: str) -> HubInfo:
    if not compatible(version):
        raise HubError(f"ccxray {version} (pid {info.pid}) runs for {paths.home} on port {info.port}; "
                       f"this is {__version__}: stop it with that version's `ccxray stop`")
    return info


def boot_command(settings: Settings, keep: bool) -> list[str]:
    """argv for a background proxy run by this same Python from this same copy of ccxray."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(ccxray.__file__)))
    flags = ["-I"] if sys.flags.isolated else []
    args = ["--home", os.path.abspath(settings.home), "--host", settings.host, "--port", str(settings.port)]
    return [sys.executable, *flags, "-c", BOOT, root, *args, *(["--keep"] if keep else []), "--no-browser", "_hub"]


def start_background(paths: HubPaths, settings: Settings, keep: bool) -> HubInfo:
    """Start the background proxy and wait until it listens; hold the hub lock around this."""
    try:
        done = subprocess.run(boot_command(settings, keep), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise HubError(f"the background proxy did not start within {START_TIMEOUT_S:.0f}s "
                       f"(see {paths.log})") from exc
    if done.returncode != 0:
        raise HubError(f"the background proxy did not start (see {paths.log})")
    info = find(paths, settings.auth_token, tidy=True)
    if info is None:
        raise HubError(f"the background proxy started but does not answer (see {paths.log})")
    return info


def foreign_on_port(settings: Settings) -> HubInfo | None:
    """A compatible ccxray already on the requested port that belongs to no pid file of this home
    (a foreground ``ccxray`` of another home, say): usable, but it keeps its own lifetime."""
    if settings.port == 0:
        return None
    host = connect_host(settings.host)
    version = probe(host, settings.port, settings.auth_token)
    if version is None or not compatible(version):
        return None
    return HubInfo(0, host, settings.port, version, 0.0, True, True, 0)


def join(settings: Settings, agent: str, keep: bool) -> tuple[HubInfo, Path | None, bool]:
    """Find or start the proxy and register this process; (info, registration file, started).

    The registration is None when the proxy on the port belongs to another home (pid 0 in info).
    """
    paths = HubPaths(settings.home)
    with locked(paths):
        info = find(paths, settings.auth_token, tidy=True)
        if info is not None:
            return info, register(paths, agent), False
        foreign = foreign_on_port(settings)
        if foreign is not None:
            return foreign, None, False
        return start_background(paths, settings, keep), register(paths, agent), True


def status(paths: HubPaths, token: str | None) -> dict[str, Any]:
    """The running proxy with its launchers, as JSON-ready data (``running`` False if none)."""
    info = find(paths, token)
    if info is None:
        return {"running": False, "home": str(paths.home)}
    users = [{"pid": l["pid"], "agent": l.get("agent"), "agentPid": l.get("agentPid"), "since": l.get("since"),
              "cwd": l.get("cwd")} for l in launchers(paths)]
    return {"running": True, "home": str(paths.home), **info.to_json(), "url": info.url,
            "uptimeS": round(max(time.time() - info.started, 0.0), 1), "launchers": users,
            "log": str(paths.log)}


def stop(paths: HubPaths, token: str | None, grace_s: float) -> dict[str, Any]:
    """SIGTERM the running proxy (in-flight calls get ``grace_s``) and wait until it is gone."""
    info = find(paths, token)
    if info is None:
        return {"running": False, "stopped": False, "home": str(paths.home)}
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        return {"running": False, "stopped": True, "pid": info.pid, "home": str(paths.home)}
    deadline = time.monotonic() + grace_s + STOP_MARGIN_S
    while alive(info.pid):
        if time.monotonic() > deadline:
            raise HubError(f"ccxray (pid {info.pid}) did not stop within {grace_s + STOP_MARGIN_S:.0f}s")
        time.sleep(0.05)  # a process we did not start cannot be waited for: poll until gone
    return {"running": False, "stopped": True, "pid": info.pid, "home": str(paths.home)}
