"""``ccxray claude ...`` / ``ccxray codex ...``: run the agent CLI through the shared proxy.

The launcher joins (or starts) the proxy of its ``$CCXRAY_HOME`` (hub.py),
then runs the agent as if it had been started directly: same terminal
(inherited stdin/stdout/stderr, same process group, so Ctrl-C, Ctrl-Z and
window resizes reach it from the terminal), signals sent to the launcher
itself passed on, and the agent's exit status (or the signal that killed it)
returned as the launcher's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import Callable, Mapping

from .config import Settings, environ
from .hub import HubInfo, join
from .hubfiles import HubPaths, register, remove

INSTALL_HINT = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
}
# Signals a launcher passes on. SIGTSTP/SIGCONT are left to their defaults, so
# job control stops and resumes launcher and agent together.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
Started = Callable[[int], None]
SI_KERNEL = 0x80  # Linux si_code of a signal the kernel sent (the terminal's Ctrl-C, hangup)


def command_for(tool: str, exe: str, args: list[str], base: str) -> list[str]:
    """The CLI's argv: Codex gets both base URLs as -c overrides before the user's args."""
    if tool == "codex":
        return [exe, "-c", f'openai_base_url="{base}/v1"', "-c", f'chatgpt_base_url="{base}/v1"', *args]
    return [exe, *args]


def env_for(tool: str, base: str, settings: Settings) -> dict[str, str]:
    env = dict(environ())
    if tool == "claude":
        env["ANTHROPIC_BASE_URL"] = base
        if settings.auth_token:
            extra = env.get("ANTHROPIC_CUSTOM_HEADERS", "")
            env["ANTHROPIC_CUSTOM_HEADERS"] = (extra + "\n" if extra else "") + f"X-Ccxray-Auth: {settings.auth_token}"
    return env


def _run_waiting_for_signals(argv: list[str], env: Mapping[str, str], started: Started) -> int:
    """Linux: block the forwarded signals and SIGCHLD and take them one by one.

    ``sigwaitinfo`` says who sent each one: a signal the terminal sent to the
    whole foreground group (si_code SI_KERNEL) already reached the agent and
    is not sent twice (a doubled Ctrl-C would quit Claude Code). When the
    agent stops itself (its own Ctrl-Z handling), the launcher stops too, so
    the shell sees the job stopped and its ``fg`` resumes both.
    """
    waited = {*FORWARDED, signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        proc = subprocess.Popen(argv, env=dict(env),
                                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, previous))
        started(proc.pid)
        while proc.poll() is None:
            info = signal.sigwaitinfo(waited)
            if info.si_signo == signal.SIGCHLD:
                _stop_with(proc.pid)
            elif info.si_code != SI_KERNEL and proc.poll() is None:
                proc.send_signal(info.si_signo)
        return proc.returncode
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop_with(pid: int) -> None:
    """If the agent is stopped now, stop this process as well (a SIGCONT to the group resumes both)."""
    try:
        stopped = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)
    except ChildProcessError:
        return  # already reaped
    if stopped is not None and stopped.si_code == os.CLD_STOPPED:
        os.kill(os.getpid(), signal.SIGSTOP)


def _run_with_handlers(argv: list[str], env: Mapping[str, str], started: Started) -> int:
    """Elsewhere: pass on what is sent to the launcher, except the terminal's own keys."""
    proc = subprocess.Popen(argv, env=dict(env))
    started(proc.pid)
    previous = {sig: signal.getsignal(sig) for sig in FORWARDED}
    for sig in FORWARDED:
        if sig in (signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)  # the terminal sends these to the agent directly
        else:
            signal.signal(sig, lambda signo, _frame: proc.send_signal(signo))
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_agent(argv: list[str], env: Mapping[str, str], started: Started = lambda pid: None) -> int:
    """Run the agent in this terminal; its returncode (negative: the signal that killed it).

    ``started`` is called with the agent's pid as soon as it runs.
    """
    if hasattr(signal, "sigwaitinfo") and sys.platform.startswith("linux"):
        return _run_waiting_for_signals(argv, env, started)
    return _run_with_handlers(argv, env, started)


def _announce(tool: str, info: HubInfo, started: bool, settings: Settings, keep: bool) -> None:
    how = (f"started proxy pid {info.pid}, log {HubPaths(settings.home).log}" if started
           else f"joined proxy pid {info.pid}" if info.pid
           else "joined the ccxray already on this port; it belongs to another home and keeps its own lifetime")
    print(f"ccxray: {tool} -> {info.url} ({how}); dashboard {info.url}/ ; "
          "`ccxray status` shows who uses it, `ccxray stop` ends it", file=sys.stderr)
    if keep and not info.keep and info.pid:
        print("ccxray: note: --keep applies when a launcher starts the proxy; this one was running already "
              "and leaves after its last launcher (`ccxray start` starts a kept one)", file=sys.stderr)
    if settings.port not in (0, info.port):
        print(f"ccxray: note: the running proxy uses port {info.port}, not {settings.port} "
              "(`ccxray stop` it to change ports)", file=sys.stderr)


def launch(tool: str, args: list[str], settings: Settings, keep: bool = False) -> int:
    """Run ``tool`` with ``args`` through the shared proxy; the agent's returncode."""
    exe = shutil.which(tool)
    if exe is None:
        print(f"ccxray: {tool} not found on PATH (install it with: {INSTALL_HINT[tool]})", file=sys.stderr)
        return 127
    info, registration, started = join(settings, tool, keep)
    try:
        _announce(tool, info, started, settings, keep)

        def agent_started(agent_pid: int) -> None:
            if registration is not None:  # a proxy of another home does not read our registry
                register(HubPaths(settings.home), tool, agent_pid=agent_pid)

        return run_agent(command_for(tool, exe, args, info.url), env_for(tool, info.url, settings), agent_started)
    finally:
        if registration is not None:
            remove(registration)


def exit_like(status: int) -> None:
    """Leave this process as the agent left: by the same signal, or with the same code."""
    if status < 0:
        sig = -status
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        status = 128 + sig  # the signal was ignored or blocked elsewhere: the shell's convention
    sys.exit(status)
