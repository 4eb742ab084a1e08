"""The processes a benchmark run starts, and what /proc says about them.

Theory of operation:
- The fake upstream and the proxy each run in their own session (so a
  terminal Ctrl-C reaches only the benchmark, which then stops them in order:
  proxy first, so it does not log a storm of upstream failures) and with
  ``PR_SET_PDEATHSIG`` (so they die with the benchmark even on SIGKILL).
- ``Services`` is a context manager: ``__exit__`` terminates, waits with a
  deadline, then kills; it runs on exceptions and KeyboardInterrupt alike.
- Both servers listen on 127.0.0.1 with port 0; the ports come from their
  first lines of output, which go to files in the throwaway home (a pipe
  that nobody drains could fill and block a server that logs a lot).
- CPU figures are utime+stime of the whole process (all threads) from
  /proc/PID/stat; RSS is VmRSS from /proc/PID/status.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.02  # polling /proc and startup files; a benchmark tool, not a test
PR_SET_PDEATHSIG = 1
PROXY_URL = re.compile(r"proxy\s+http://127\.0\.0\.1:(\d+)/")


class BenchSetupError(RuntimeError):
    """A server did not start, or died under the benchmark."""


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no leftovers after kill -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: Services.__exit__ still stops everything on a normal exit


# ---------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/PID/status (VmRSS, VmHWM, ...), or the Threads count."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchSetupError(f"/proc/{pid}/status has no {key}")


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def thread_count(pid: int) -> int:
    return status_kib(pid, "Threads")


def wait_cpu_idle(pids: list[int], deadline_s: float, quiet_s: float = 0.15) -> float:
    """Wait until none of ``pids`` used CPU for ``quiet_s``; returns the seconds waited.

    After a load phase the proxy's recorder thread may still be writing the
    backlog; CPU-per-request figures must include that work.
    """
    start = time.monotonic()
    last = [cpu_seconds(pid) for pid in pids]
    quiet_since = start
    while time.monotonic() - start < deadline_s:
        time.sleep(POLL_S)
        now = [cpu_seconds(pid) for pid in pids]
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return quiet_since - start
    return time.monotonic() - start


@dataclass
class CpuMark:
    """CPU seconds of the proxy and the fake at one moment."""

    proxy: float
    fake: float
    wall: float


# ---------------------------------------------------------------- processes


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def _spawn(args: list[str], env: dict[str, str], out: Path, cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` (on ``cpus`` only, when given: set before exec, so every thread it starts has them)."""
    def before_exec() -> None:
        die_with_parent()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=before_exec,
        )


def _wait_for_line(proc: subprocess.Popen[bytes], out: Path, pattern: re.Pattern[str], what: str) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = pattern.search(out.read_text(errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            break
        time.sleep(POLL_S)
    err = out.with_suffix(".err").read_text(errors="replace")[-2000:]
    raise BenchSetupError(f"{what} did not start (exit {proc.poll()}): {err}")


def free_port() -> int:
    """A loopback port free a moment ago (a peer that cannot take port 0 gets this)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, out: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(POLL_S)
    err = out.with_suffix(".err").read_text(errors="replace")[-2000:]
    raise BenchSetupError(f"the peer did not listen on {port} (exit {proc.poll()}): {err}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)
    except KeyboardInterrupt:  # a second Ctrl-C during cleanup: do not leave it running
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)
        raise


class Services:
    """The fake upstream and the proxy in front of it, with a throwaway CCXRAY_HOME."""

    def __init__(self, proxy_cmd: str | None = None, proxy_cpus: set[int] | None = None) -> None:
        """``proxy_cmd``: start a peer instead of ccxray (placeholders {port}, {upstream}, {home});
        ``proxy_cpus``: the only CPUs the proxy may run on (None: any)."""
        self.proxy_cmd = proxy_cmd
        self.proxy_cpus = proxy_cpus
        self._tmp = tempfile.TemporaryDirectory(prefix="ccxray-bench-")
        self.home = Path(self._tmp.name)
        self.fake: subprocess.Popen[bytes] | None = None
        self.proxy: subprocess.Popen[bytes] | None = None
        self.fake_port = 0
        self.proxy_port = 0
        self._proxy_starts = 0

    def __enter__(self) -> Services:
        try:
            self._start_fake()
            self._start_proxy()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the proxy, then the fake, then remove the home. Idempotent."""
        try:
            _stop(self.proxy)
            _stop(self.fake)
        finally:
            self._tmp.cleanup()

    def _start_fake(self) -> None:
        out = self.home / "fake.out"
        args = [sys.executable, str(ROOT / "tools" / "fake_upstream.py"), "--port", "0", "--max-seen", "100"]
        self.fake = _spawn(args, _child_env({}), out)
        line = _wait_for_line(self.fake, out, re.compile(r"\{.*\}"), "fake upstream")
        self.fake_port = int(json.loads(line.group(0))["port"])

    def restart_proxy(self) -> None:
        """A fresh proxy process on a new port (same home), for figures that earlier tests would blur."""
        _stop(self.proxy)
        self.proxy = None
        self._start_proxy()

    def _start_proxy(self) -> None:
        self._proxy_starts += 1
        out = self.home / f"proxy{self._proxy_starts}.out"  # a restart keeps the first one's stderr
        base = f"http://127.0.0.1:{self.fake_port}"
        env = _child_env({
            "CCXRAY_HOME": str(self.home / "ccxray"),
            "ANTHROPIC_BASE_URL": base,
            "OPENAI_BASE_URL": base + "/v1",
            "CHATGPT_BASE_URL": base + "/backend-api/codex",
            "CCXRAY_SHUTDOWN_GRACE_MS": "2000",
        })
        if self.proxy_cmd is not None:
            self._start_peer(self.proxy_cmd, base, env, out)
            return
        args = [sys.executable, "-m", "ccxray", "--port", "0", "--no-browser"]
        self.proxy = _spawn(args, env, out, self.proxy_cpus)
        self.proxy_port = int(_wait_for_line(self.proxy, out, PROXY_URL, "proxy").group(1))

    def _start_peer(self, cmd: str, upstream: str, env: dict[str, str], out: Path) -> None:
        """Another proxy (the Node original, mitmproxy, ...) from its command line."""
        port = free_port()
        peer_home = self.home / f"peer{self._proxy_starts}"
        peer_home.mkdir()
        env.update(PROXY_PORT=str(port), HOME=str(peer_home), BROWSER="none")
        args = shlex.split(cmd.format(port=port, upstream=upstream, home=peer_home))
        self.proxy = _spawn(args, env, out, self.proxy_cpus)
        _wait_for_port(self.proxy, port, out)
        self.proxy_port = port

    @property
    def recorder_port(self) -> int | None:
        """Where ccxray answers ``/_api/health``; None for a peer (no such endpoint)."""
        return self.proxy_port if self.proxy_cmd is None else None

    @property
    def proxy_pid(self) -> int:
        return self._alive(self.proxy, "proxy")

    @property
    def fake_pid(self) -> int:
        return self._alive(self.fake, "fake upstream")

    @staticmethod
    def _alive(proc: subprocess.Popen[bytes] | None, what: str) -> int:
        if proc is None or proc.poll() is not None:
            raise BenchSetupError(f"the {what} is not running")
        return proc.pid

    def cpu_mark(self) -> CpuMark:
        return CpuMark(cpu_seconds(self.proxy_pid), cpu_seconds(self.fake_pid), time.monotonic())

    def settle(self, deadline_s: float = 20.0, quiet_s: float = 0.15) -> float:
        """Wait until proxy and fake are idle (recorder backlog written); returns seconds waited."""
        return wait_cpu_idle([self.proxy_pid, self.fake_pid], deadline_s, quiet_s)

    def proxy_log_lines(self) -> list[str]:
        """What the proxy processes wrote to stderr (warnings, tracebacks) so far."""
        files = sorted(self.home.glob("proxy*.err"))
        return [line for path in files for line in path.read_text(errors="replace").splitlines()]

    def log_bytes(self) -> int:
        """Bytes ccxray wrote under its home (index + sidecars)."""
        return sum(p.stat().st_size for p in (self.home / "ccxray").rglob("*") if p.is_file())

    def log_files(self) -> int:
        return sum(1 for p in (self.home / "ccxray").rglob("*") if p.is_file())
