"""Command line: ``ccxray [flags] [SUBCOMMAND] [ARGS...]``.

ccxray's own flags come before the subcommand; everything after ``claude``
or ``codex`` goes to that CLI untouched. Each subcommand is one row of
``COMMANDS``: a usage line, a summary, its own parser (listed in ``--help``)
and the function that runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import webbrowser
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Callable, Sequence

from . import __version__, safeout
from .arenas import bound_arenas, find_mallopt
from .config import ENV_HELP, Settings, environ, load_settings
from .errors import CcxrayError, ConfigError
from .hub import HubError, bind_error, find
from .hubfiles import HubPaths, locked, register, remove
from .hubserve import HubProcess, run_background, start_server, stop_on_signals
from .server import ProxyServer

# Two relay threads per WebSocket; the size does not change RSS (untouched pages are free) but bounds
# virtual memory. Not less: json.dumps(indent=1) of a body nested as deep as json.loads allows
# (the page's conversation view does that on a connection thread) overflows 256 KiB.
THREAD_STACK_BYTES = 512 * 1024
BUNDLE_FILE = "_bundle.json"  # written into the zipapp by tools/build_zipapp.py


@dataclass(frozen=True)
class Command:
    """One subcommand: how --help shows it and what runs it."""

    usage: str
    summary: str
    run: Callable[[list[str], argparse.Namespace], int]
    parser: Callable[[], argparse.ArgumentParser] | None = None
    hidden: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(_usage_error(f"{self.prog}: {message}"))


def _usage_error(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def versions() -> dict[str, str]:
    """ccxray and the versions of h11/wsproto it runs with (as bundled in a zipapp, else installed)."""
    bundled = resources.files("ccxray").joinpath(BUNDLE_FILE)
    if bundled.is_file():
        data = json.loads(bundled.read_text(encoding="utf-8"))
        return {name: str(data[name]) for name in ("ccxray", "h11", "wsproto")}
    found = {"ccxray": __version__}
    for name in ("h11", "wsproto"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def version_text() -> str:
    v = versions()
    return f"ccxray {v['ccxray']} (h11 {v['h11']}, wsproto {v['wsproto']}; Python {sys.version.split()[0]})"


def _flag_lines(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:  # argparse has no public iterator over its actions
        if action.option_strings and action.help != argparse.SUPPRESS and "-h" not in action.option_strings:
            metavar = f" {action.metavar or action.dest.upper()}" if action.nargs != 0 else ""
            lines.append(f"      {', '.join(action.option_strings) + metavar:<24}{action.help or ''}")
    return lines


def _epilog() -> str:
    lines = ["subcommands:", "  (none)                  run the proxy and dashboard in this terminal until Ctrl-C"]
    for command in COMMANDS.values():
        if not command.hidden:
            lines.append(f"  {command.usage:<24}{command.summary}")
            if command.parser is not None:
                lines += _flag_lines(command.parser())
    lines += ["", "environment:"] + [f"  {name:<28}{text}" for name, text in ENV_HELP.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ccxray", description="ccxray: see what AI coding agents send and receive.",
                     epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=None, help="port for proxy and dashboard (env PROXY_PORT; default 5577)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; others need AUTH_TOKEN)")
    parser.add_argument("--home", default=None, help="data directory (env CCXRAY_HOME; default ~/.ccxray)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the dashboard in a browser")
    parser.add_argument("--keep", action="store_true",
                        help="a proxy started by a launcher stays after the last one exits (until `ccxray stop`)")
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the versions of ccxray, h11, wsproto and Python")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _settings(ns: argparse.Namespace) -> Settings:
    return load_settings(environ(), host=ns.host, port=ns.port, home=ns.home,
                         open_browser=not ns.no_browser)


def _settings_for_logs(ns: argparse.Namespace) -> Settings:
    return load_settings(environ(), host=None, port=0, home=ns.home)


def banner(server: ProxyServer, how_to_stop: str) -> None:
    """What the proxy prints at start: where to point agents, the upstreams, how to stop."""
    s = server.settings
    print(f"ccxray {__version__}: proxy   {server.url}/  (point ANTHROPIC_BASE_URL here; OpenAI: {server.url}/v1)")
    print(f"ccxray {__version__}: dashboard {server.url}/" + ("?token=…" if s.auth_token else ""))
    print("ccxray: upstreams: " + ", ".join(f"{name} {up.url(up.prefix)}" for name, up in
                                           (("anthropic", s.anthropic), ("openai", s.openai), ("chatgpt", s.chatgpt))))
    print(f"ccxray: logging to {s.logs_dir}")
    print(f"ccxray: {how_to_stop}", flush=True)


def prepare_threads() -> None:
    """Process-wide settings for a proxy's many threads; before the first one starts."""
    threading.stack_size(THREAD_STACK_BYTES)
    bound_arenas(find_mallopt())


def _start_foreground(settings: Settings) -> ProxyServer:
    prepare_threads()
    try:
        return start_server(settings)
    except OSError as exc:
        raise OSError(exc.errno, bind_error(settings, exc)) from exc


def _attach(paths: HubPaths, url: str, pid: int, stop: threading.Event) -> int:
    """A foreground ``ccxray`` while a proxy already runs for this home: keep it up until Ctrl-C."""
    registration = register(paths, "foreground")
    try:
        print(f"ccxray: a proxy already runs for {paths.home}: {url}/ (pid {pid}, log {paths.log})")
        print("ccxray: it stays up while this terminal is open; Ctrl-C to leave", flush=True)
        stop.wait()
    finally:
        remove(registration)
    return 0


def serve(settings: Settings) -> int:
    """Run the proxy in the foreground until SIGINT/SIGTERM (or attach to the running one)."""
    paths = HubPaths(settings.home)
    stop = stop_on_signals()  # before anything is printed: whoever reads the banner may signal at once
    safeout.install()  # a reader that goes away (| head -3) must not turn a print into an exception
    with locked(paths):
        running = find(paths, settings.auth_token, tidy=True)
        if running is None:
            server = _start_foreground(settings)
            hub = HubProcess(server, keep=True, foreground=True, grace_s=settings.hub_grace_s)
            hub.publish()
    if running is not None:
        return _attach(paths, running.url, running.pid, stop)
    banner(server, "Ctrl-C here (or `ccxray stop` in another terminal) stops it")
    if settings.open_browser and sys.stdout.isatty():
        webbrowser.open(server.url + "/")
    hub.run(stop)
    return 0


def _run_serve_background(args: list[str], ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    prepare_threads()
    return run_background(settings, ns.keep, settings.hub_grace_s,
                          lambda server: banner(server, "`ccxray stop` stops it"))


def _run_agent(tool: str) -> Callable[[list[str], argparse.Namespace], int]:
    def run(args: list[str], ns: argparse.Namespace) -> int:
        from .launch import launch
        return launch(tool, args, _settings(ns), ns.keep)
    return run


def _run_log(name: str) -> Callable[[list[str], argparse.Namespace], int]:
    def run(args: list[str], ns: argparse.Namespace) -> int:
        from .logcli import run_log_command
        return run_log_command(name, args, _settings_for_logs(ns))
    return run


def _run_store(name: str) -> Callable[[list[str], argparse.Namespace], int]:
    def run(args: list[str], ns: argparse.Namespace) -> int:
        from .storecli import run_store_command
        return run_store_command(name, args, _settings_for_logs(ns))
    return run


def _log_parser(name: str) -> Callable[[], argparse.ArgumentParser]:
    def parser() -> argparse.ArgumentParser:
        from .logcli import PARSERS
        return PARSERS[name]()
    return parser


def _hub_parser(name: str) -> Callable[[], argparse.ArgumentParser]:
    def parser() -> argparse.ArgumentParser:
        from .hubcli import PARSERS
        return PARSERS[name]()
    return parser


def _run_hub(name: str) -> Callable[[list[str], argparse.Namespace], int]:
    def run(args: list[str], ns: argparse.Namespace) -> int:
        from .hubcli import run_hub_command
        return run_hub_command(name, args, lambda: _settings(ns) if name == "start" else _settings_for_logs(ns),
                               sys.stdout)
    return run


COMMANDS: dict[str, Command] = {
    "claude": Command("claude [ARGS...]", "run Claude Code through the shared proxy (ANTHROPIC_BASE_URL)",
                      _run_agent("claude")),
    "codex": Command("codex [ARGS...]", "run Codex through the shared proxy (openai_base_url, chatgpt_base_url)",
                     _run_agent("codex")),
    "tail": Command("tail [FLAGS]", "follow the log, one line per call", _run_log("tail"), _log_parser("tail")),
    "usage": Command("usage [FLAGS]", "cost and tokens from the log", _run_log("usage"), _log_parser("usage")),
    "show": Command("show ID [--req|--res|--meta]", "print one call whole, as JSON", _run_store("show")),
    "compact": Command("compact", "store the log's full requests as deltas, in place", _run_store("compact")),
    "status": Command("status [FLAGS]", "the running proxy: port, pid, uptime, launchers, calls",
                      _run_hub("status"), _hub_parser("status")),
    "start": Command("start [FLAGS]", "start the shared proxy in the background, kept until `ccxray stop`",
                     _run_hub("start"), _hub_parser("start")),
    "stop": Command("stop [FLAGS]", "stop the running proxy (in-flight calls get the shutdown grace)",
                    _run_hub("stop"), _hub_parser("stop")),
    "_hub": Command("_hub", "the background proxy itself (started by launchers)", _run_serve_background,
                    hidden=True),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and run; returns the exit status (negative: die by that signal, see exit_like)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        ns = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    command = COMMANDS.get(ns.command) if ns.command is not None else None
    if ns.command is not None and command is None:
        names = ", ".join(name for name, c in COMMANDS.items() if not c.hidden)
        return _usage_error(f"ccxray: unknown subcommand {ns.command!r} (expected one of: {names})")
    try:
        return command.run(list(ns.args), ns) if command is not None else serve(_settings(ns))
    except ConfigError as exc:
        print(f"ccxray: {exc}", file=sys.stderr)
        return 2
    except (HubError, CcxrayError) as exc:
        print(f"ccxray: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ccxray: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before an agent or a proxy took over the terminal
        return 130


def main_entry() -> None:
    """Console-script entry point."""
    from .launch import exit_like
    exit_like(main())
