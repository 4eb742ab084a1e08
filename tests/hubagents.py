"""Stand-in ``claude`` and ``codex`` executables for the hub tests, and a handle on a launcher.

The stand-in reads the base URL the launcher gives it (``ANTHROPIC_BASE_URL``
for claude, the ``-c openai_base_url="..."`` argument for codex), prints one
JSON line ``{"ready": ..., "base": ..., "pid": ...}`` and then obeys one
command per stdin line, answering each on stdout:

* ``call``: one real POST through the proxy (Messages or Responses API) -> ``{"status": N}``
* ``trap SIGNAME CODE``: on that signal print ``{"signal": N}`` and exit with CODE
* ``suspend``: stop itself (as an agent does on its own Ctrl-Z), then ``{"resumed": true}``
* ``count SIGNAME``: print ``{"signal": N}`` each time that signal arrives; ``ping``: ``{"pong": true}``
* ``exit CODE`` / ``die SIGNAME``: leave with that code / be killed by that signal
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import json
from pathlib import Path
from typing import Any, Callable

from .conftest import ROOT, wait_until

AGENT = r'''
import http.client, json, os, signal, sys, urllib.parse
tool = os.path.basename(sys.argv[0])
if tool == "claude":
    base = os.environ["ANTHROPIC_BASE_URL"]
    path, body = "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
else:
    base = next(a.split("=", 1)[1].strip('"') for a in sys.argv if a.startswith("openai_base_url="))
    path, body = "/responses", {"model": "gpt-5.5", "input": "hi"}
split = urllib.parse.urlsplit(base)
def say(**obj):
    print(json.dumps(obj), flush=True)
def trapped(code):
    def handler(signo, frame):
        say(signal=signo)
        os._exit(code)
    return handler
say(ready=True, base=base, pid=os.getpid(), argv=sys.argv[1:], cwd=os.getcwd())
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "call":
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
        conn.request("POST", split.path + path, body=json.dumps(body), headers={"content-type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        conn.close()
        say(status=answer.status)
    elif cmd[0] == "trap":
        signal.signal(getattr(signal, cmd[1]), trapped(int(cmd[2])))
        say(trapped=cmd[1])
    elif cmd[0] == "count":
        signal.signal(getattr(signal, cmd[1]), lambda signo, frame: say(signal=signo))
        say(counting=cmd[1])
    elif cmd[0] == "suspend":
        os.kill(os.getpid(), signal.SIGSTOP)
        say(resumed=True)
    elif cmd[0] == "ping":
        say(pong=True)
    elif cmd[0] == "exit":
        sys.exit(int(cmd[1]))
    elif cmd[0] == "die":
        sig = getattr(signal, cmd[1])
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
'''


def install_agents(bin_dir: Path) -> Path:
    """Write executable ``claude`` and ``codex`` stand-ins into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("claude", "codex"):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{AGENT}")
        path.chmod(0o755)
    return bin_dir


class Launcher:
    """``python -m ccxray [FLAGS] TOOL`` with its stdio on pipes, read by one thread."""

    def __init__(self, env: dict[str, str], tool: str, *flags: str, argv: list[str] | None = None,
                 stdin: int = subprocess.PIPE) -> None:
        cmd = argv or [sys.executable, "-m", "ccxray", "--port", "0", "--no-browser", *flags, tool]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read)
        self.reader.start()
        self.ready: dict[str, Any] = {}
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"text": line})

    def expect(self, key: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next stdout object; it must carry ``key``."""
        try:
            obj = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {key!r} from the agent within {timeout}s; stderr so far: "
                                 f"{self._stderr_now()}") from None
        assert key in obj, obj
        return obj

    def _stderr_now(self) -> str:
        return "(running)" if self.proc.poll() is None else self.finish()[1]

    def wait_ready(self) -> dict[str, Any]:
        self.ready = self.expect("ready", 60)
        return self.ready

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def call(self) -> int:
        self.send("call")
        return int(self.expect("status")["status"])

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """Close stdin, wait for the exit, join the reader; (returncode, stderr)."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        code = self.proc.wait(timeout)
        self.reader.join()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        if not self.proc.stderr.closed:
            self.stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        return code, self.stderr

    def kill_all(self) -> None:
        """Last-resort cleanup: the launcher's whole process group (it and its agent)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.finish()


def hub_gone(home: Path, pid: int) -> Callable[[], bool]:
    """A predicate: the proxy ``pid`` has exited and withdrawn its pid file."""
    from ccxray.hubfiles import alive

    return lambda: not alive(pid) and not (home / "ccxray.pid").exists()


def wait_gone(home: Path, pid: int, timeout: float = 30.0) -> None:
    wait_until(hub_gone(home, pid), timeout, f"proxy pid {pid} to exit")


class SharedProxy:
    """A kept background proxy started with ``ccxray start`` for launchers to join; read like ProxyHandle."""

    def __init__(self, env: dict[str, str]) -> None:
        self.home = Path(env["CCXRAY_HOME"])
        done = subprocess.run([sys.executable, "-m", "ccxray", "--port", "0", "--no-browser", "start", "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        self.info = json.loads(done.stdout)
        self.url: str = self.info["url"]
        self.logs = self.home / "logs"

    def launcher(self, tool: str) -> list[str]:
        """argv of a launcher joining this proxy (--port 0: whichever port it has)."""
        return [sys.executable, "-m", "ccxray", "--port", "0", "--no-browser", "--home", str(self.home), tool]

    def lines(self) -> list[dict[str, Any]]:
        from ccxray.store import read_index

        return list(read_index(self.logs / "index.ndjson"))

    def wait_lines(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0,
                   what: str = "log lines") -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            found = self.lines()
            return found if pred(found) else None
        return wait_until(ready, timeout, what)  # type: ignore[no-any-return]

    def sidecar(self, call_id: str, part: str) -> Any:
        from .conftest import read_sidecar
        return read_sidecar(self.logs, call_id, part)

    def stop(self) -> None:
        from ccxray.hub import stop
        from ccxray.hubfiles import HubPaths

        stop(HubPaths(self.home), None, 2.0)


def shared_proxy_env(proxy_vars: dict[str, str]) -> dict[str, str]:
    """This environment without what would change the proxy, plus ``proxy_vars`` and ccxray importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("AUTH_TOKEN", "HTTPS_PROXY", "https_proxy", "PROXY_PORT")}
    return {**env, **proxy_vars, "PYTHONPATH": str(ROOT)}
