"""``ccxray claude ...`` / ``ccxray codex ...``: run the agent CLI through the proxy.

Reuses a ccxray already listening on the port (it answers ``HEAD /`` with an
``X-Ccxray`` header), else starts one in this process for the CLI's lifetime.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys

from .config import Settings, environ
from .server import ProxyServer

INSTALL_HINT = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
}


def proxy_running(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if a ccxray answers on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    return b"\r\nx-ccxray:" in head.lower()


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


def launch(tool: str, args: list[str], settings: Settings) -> int:
    """Run ``tool`` with ``args`` pointed at the proxy; returns its exit status."""
    exe = shutil.which(tool)
    if exe is None:
        print(f"ccxray: {tool} not found on PATH (install it with: {INSTALL_HINT[tool]})", file=sys.stderr)
        return 127
    connect_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    server = None
    if not (settings.port and proxy_running(connect_host, settings.port)):
        server = ProxyServer(settings).start()
    port = server.port if server else settings.port
    host = f"[{connect_host}]" if ":" in connect_host else connect_host
    base = f"http://{host}:{port}"
    print(f"ccxray: {tool} -> {base} ({'new proxy' if server else 'proxy already running'})", file=sys.stderr)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the agent CLI
    try:
        return subprocess.call(command_for(tool, exe, args, base), env=env_for(tool, base, settings))
    finally:
        signal.signal(signal.SIGINT, previous)
        if server is not None:
            server.stop()
