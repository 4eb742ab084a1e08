"""Command line: ``ccxray [flags] [claude|codex|tail|usage] [ARGS...]``.

ccxray's own flags come before the subcommand; everything after ``claude``
or ``codex`` goes to that CLI untouched.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
import webbrowser
from typing import Sequence

from . import __version__
from .config import ENV_HELP, Settings, environ, load_settings
from .errors import ConfigError
from .server import ProxyServer

COMMANDS = ("claude", "codex", "tail", "usage", "show", "compact")
THREAD_STACK_BYTES = 512 * 1024  # two relay threads per WebSocket: keep each one's stack small


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(_usage_error(f"{self.prog}: {message}"))


def _usage_error(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def _env_epilog() -> str:
    lines = ["subcommands:",
             "  (none)            run the proxy and dashboard until Ctrl-C",
             "  claude [ARGS...]  run Claude Code through the proxy (ANTHROPIC_BASE_URL)",
             "  codex [ARGS...]   run Codex through the proxy (openai_base_url, chatgpt_base_url)",
             "  tail [--json] [--session ID]   follow the log, one line per call",
             "  usage [--json] [--last 7d] [--session ID] [--cwd PATH]   cost and tokens from the log",
             "  show ID [--req|--res|--meta]   print one call whole, as JSON",
             "  compact           store the log's full requests as deltas, in place",
             "", "environment:"]
    lines += [f"  {name:<28}{text}" for name, text in ENV_HELP.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ccxray", description="ccxray: see what AI coding agents send and receive.",
                     epilog=_env_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=None, help="port for proxy and dashboard (env PROXY_PORT; default 5577)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; others need AUTH_TOKEN)")
    parser.add_argument("--home", default=None, help="data directory (env CCXRAY_HOME; default ~/.ccxray)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the dashboard in a browser")
    parser.add_argument("--version", action="version", version=f"ccxray {__version__}")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _settings(ns: argparse.Namespace) -> Settings:
    return load_settings(environ(), host=ns.host, port=ns.port, home=ns.home,
                         open_browser=not ns.no_browser)


def serve(settings: Settings) -> int:
    """Run the proxy in the foreground until SIGINT/SIGTERM."""
    threading.stack_size(THREAD_STACK_BYTES)
    try:
        server = ProxyServer(settings).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"{settings.host}:{settings.port} is in use "
                                     "(another ccxray? choose a port with --port)") from exc
        raise
    print(f"ccxray {__version__}: proxy   {server.url}/  (point ANTHROPIC_BASE_URL here; OpenAI: {server.url}/v1)")
    print(f"ccxray {__version__}: dashboard {server.url}/" + ("?token=…" if settings.auth_token else ""))
    print(f"ccxray: logging to {settings.logs_dir}", flush=True)
    if settings.open_browser and sys.stdout.isatty():
        webbrowser.open(server.url + "/")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print("ccxray: shutting down", flush=True)
    server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and run; returns the process exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        ns = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    if ns.command is not None and ns.command not in COMMANDS:
        return _usage_error(f"ccxray: unknown subcommand {ns.command!r} (expected one of: {', '.join(COMMANDS)})")
    try:
        if ns.command in ("tail", "usage"):
            from .logcli import run_log_command
            return run_log_command(ns.command, ns.args, _settings_for_logs(ns))
        if ns.command in ("show", "compact"):
            from .storecli import run_store_command
            return run_store_command(ns.command, ns.args, _settings_for_logs(ns))
        settings = _settings(ns)
        if ns.command in ("claude", "codex"):
            from .launch import launch
            return launch(ns.command, ns.args, settings)
        return serve(settings)
    except ConfigError as exc:
        print(f"ccxray: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ccxray: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _settings_for_logs(ns: argparse.Namespace) -> Settings:
    return load_settings(environ(), host=None, port=0, home=ns.home)


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
