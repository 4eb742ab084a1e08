"""``ccxray status``, ``ccxray start`` and ``ccxray stop``: the shared proxy from the outside."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any, Callable, Sequence

from .cliargs import SubParser, exit_status
from .config import Settings
from .hub import find, start_background, status, stop
from .hubfiles import HubPaths, locked


def _json_parser(prog: str, description: str) -> Callable[[], argparse.ArgumentParser]:
    def make() -> argparse.ArgumentParser:
        p = SubParser(prog=prog, description=description)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        return p
    return make


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "status": _json_parser("status", "Show the running ccxray proxy of this home."),
    "start": _json_parser("start", "Start the shared proxy in the background, kept until `ccxray stop`."),
    "stop": _json_parser("stop", "Stop the running ccxray proxy of this home."),
}


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def print_status(report: dict[str, Any], out: IO[str]) -> None:
    if not report["running"]:
        out.write(f"ccxray: no proxy running for {report['home']}\n")
        return
    mode = "foreground" if report["foreground"] else "kept" if report["keep"] else "leaves after the last launcher"
    out.write(f"ccxray {report['version']} running: {report['url']}/  pid {report['pid']}  "
              f"up {_ago(report['uptimeS'])}  calls {report['calls']}  ({mode})\n")
    out.write(f"  home {report['home']}  log {report['log']}\n")
    users = report["launchers"]
    out.write(f"  launchers: {len(users) or 'none'}\n")
    now = time.time()
    for user in users:
        since = _ago(now - user["since"]) if isinstance(user.get("since"), (int, float)) else "?"
        out.write(f"    {user['agent'] or '?':<10} pid {user['pid']:<8} for {since:<8} {user.get('cwd') or ''}\n")


def _start(settings: Settings) -> dict[str, Any]:
    paths = HubPaths(settings.home)
    with locked(paths):
        info = find(paths, settings.auth_token, tidy=True)
        already = info is not None
        if info is None:
            info = start_background(paths, settings, keep=True)
    return {"running": True, **info.to_json(), "alreadyRunning": already, "url": info.url, "log": str(paths.log)}


def run_hub_command(name: str, args: Sequence[str], settings: Callable[[], Settings], out: IO[str]) -> int:
    """Run status/start/stop; exit status 2 on bad flags, 1 from ``status`` when nothing runs."""
    return exit_status(lambda: _run(name, PARSERS[name]().parse_args(list(args)), settings(), out))


def _run(name: str, ns: argparse.Namespace, current: Settings, out: IO[str]) -> int:
    paths = HubPaths(current.home)
    if name == "status":
        report = status(paths, current.auth_token)
    elif name == "start":
        report = _start(current)
    else:
        report = stop(paths, current.auth_token, current.shutdown_grace_s)
    if ns.json:
        out.write(json.dumps(report) + "\n")
    elif name == "status":
        print_status(report, out)
    elif name == "start":
        out.write(f"ccxray: {'already running' if report['alreadyRunning'] else 'started'}: {report['url']}/ "
                  f"(pid {report['pid']}, log {report['log']}); `ccxray stop` ends it\n")
    else:
        out.write(f"ccxray: stopped pid {report['pid']}\n" if report["stopped"]
                  else f"ccxray: no proxy running for {report['home']}\n")
    return 1 if name == "status" and not report["running"] else 0
