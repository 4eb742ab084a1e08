"""The process that runs the shared proxy: in the background for launchers, or in the foreground.

The background proxy (``ccxray _hub``) forks once so that the launcher that
started it is not its parent: the first process waits until the forked one
listens (or fails), prints any error on the launcher's terminal and exits;
the forked one starts a new session, writes to ``$CCXRAY_HOME/ccxray.log``
and serves until a short grace after the last registered process has gone
(never on its own with ``--keep``), or until SIGTERM/SIGINT (``ccxray stop``).

Leaving happens under the hub lock: the proxy checks once more that nobody
registered, removes its pid file and stops listening before a waiting
launcher can look, so that launcher starts a fresh proxy instead of joining
one that is going away.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from typing import Any, Callable

from . import __version__
from .config import Settings
from .errors import ConfigError
from .gctune import tune_gc
from .hub import HubInfo, bind_error
from .hubfiles import HubPaths, launchers, locked, process_start, read_json, remove, write_json_atomic
from .server import ProxyServer
from .private import mkdir_private

POLL_S = 0.2
LOG_KEEP_BYTES = 5 * 1024 * 1024


class CallCounter:
    """Index lines recorded by this proxy, for ``ccxray status``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, line: dict[str, Any]) -> None:
        with self._lock:
            self.count += 1


class HubProcess:
    """One started ProxyServer published in ``ccxray.pid``, and the rule for when it leaves."""

    def __init__(self, server: ProxyServer, keep: bool, foreground: bool, grace_s: float) -> None:
        self.server = server
        self.paths = HubPaths(server.settings.home)
        self.keep = keep
        self.grace_s = grace_s
        self.counter = CallCounter()
        self.info = HubInfo(os.getpid(), server.settings.host, server.port, __version__, time.time(),
                            keep, foreground, 0, process_start(os.getpid()))
        server.recorder.add_listener(self.counter)

    def publish(self) -> None:
        write_json_atomic(self.paths.pid, self.info.to_json())

    def _ours(self) -> bool:
        data = read_json(self.paths.pid)
        return data is not None and data.get("pid") == self.info.pid

    def _publish_count(self) -> None:
        count = self.counter.count
        if count != self.info.calls:
            self.info = replace(self.info, calls=count)
            with locked(self.paths):
                if self._ours():
                    self.publish()

    def _retire(self) -> None:
        """Withdraw the pid file and stop; the caller holds the hub lock."""
        if self._ours():
            remove(self.paths.pid)
        self.server.stop()

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set, or (without keep) a grace after the last user left."""
        last_used = time.monotonic()
        while not stop.wait(POLL_S):
            self._publish_count()
            if self.keep or launchers(self.paths):
                last_used = time.monotonic()
                continue
            if time.monotonic() - last_used < self.grace_s:
                continue
            with locked(self.paths):
                if not launchers(self.paths):
                    print("ccxray: the last launcher left; stopping", flush=True)
                    self._retire()
                    return
            last_used = time.monotonic()
        users = launchers(self.paths)
        print("ccxray: shutting down" + (f" although {len(users)} launcher(s) still use it (pids "
                                         f"{', '.join(str(u['pid']) for u in users)})" if users else ""), flush=True)
        with locked(self.paths):
            self._retire()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _redirect_to_log(paths: HubPaths) -> None:
    mkdir_private(paths.home)  # owner-only, whatever the umask
    try:
        if paths.log.stat().st_size > LOG_KEEP_BYTES:
            os.replace(paths.log, paths.log.with_name(paths.log.name + ".1"))  # one old log is kept
    except FileNotFoundError:
        pass
    log_fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null_fd)
    os.close(log_fd)


def start_server(settings: Settings) -> ProxyServer:
    """The proxy of a serving process (foreground or background), started, with the
    collector settled for the long run (``gctune``: not for servers built in tests)."""
    server = ProxyServer(settings)
    tune_gc()  # built, not started: nothing the restore is building when it starts is frozen with it
    return server.start()


def _daemon(settings: Settings, keep: bool, grace_s: float, ready_fd: int,
            banner: Callable[[ProxyServer], None]) -> int:
    os.setsid()  # no terminal: the launcher's Ctrl-C and hangup are not ours
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    paths = HubPaths(settings.home)
    _redirect_to_log(paths)
    try:
        server = start_server(settings)
    except (OSError, ConfigError) as exc:
        message = bind_error(settings, exc) if isinstance(exc, OSError) else str(exc)
        print(f"ccxray: {message}", flush=True)
        os.write(ready_fd, message.encode())
        os.close(ready_fd)
        return 1
    stop = stop_on_signals()
    hub = HubProcess(server, keep, False, grace_s)
    hub.publish()
    os.write(ready_fd, b"ready")
    os.close(ready_fd)
    banner(server)
    print(f"ccxray: background proxy pid {os.getpid()}, "
          + ("kept until `ccxray stop`" if keep else f"leaves {grace_s:g}s after the last launcher"), flush=True)
    hub.run(stop)
    return 0


def run_background(settings: Settings, keep: bool, grace_s: float, banner: Callable[[ProxyServer], None]) -> int:
    """``ccxray _hub``: fork the proxy off, return 0 once it listens, 1 (message on stderr) if it cannot."""
    read_fd, ready_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        os.close(read_fd)
        code = 1
        try:
            code = _daemon(settings, keep, grace_s, ready_fd, banner)
        except Exception:  # the proxy process's top frame: leave the reason in the log
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)  # never return into the parent's caller: this process is the proxy
    os.close(ready_fd)
    chunks = []
    while chunk := os.read(read_fd, 4096):
        chunks.append(chunk)
    os.close(read_fd)
    answer = b"".join(chunks).decode("utf-8", "replace")
    if answer == "ready":
        return 0
    print(f"ccxray: {answer or 'the background proxy exited before listening'}", file=sys.stderr)
    return 1
