"""Settings, read once from the command line and the environment.

This is the only module that reads ``os.environ``; everything else receives a
frozen :class:`Settings`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_PORT = 5577
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ANTHROPIC_BASE = "https://api.anthropic.com"
DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
DEFAULT_CHATGPT_BASE = "https://chatgpt.com/backend-api/codex"

# Every environment variable ccxray reads, for --help and the README.
ENV_HELP: dict[str, str] = {
    "PROXY_PORT": "port to listen on (same as --port; default 5577)",
    "CCXRAY_HOME": "data directory (same as --home; default ~/.ccxray)",
    "ANTHROPIC_BASE_URL": f"Anthropic upstream (default {DEFAULT_ANTHROPIC_BASE})",
    "OPENAI_BASE_URL": f"OpenAI upstream (default {DEFAULT_OPENAI_BASE})",
    "CHATGPT_BASE_URL": f"ChatGPT/Codex upstream (default {DEFAULT_CHATGPT_BASE})",
    "HTTPS_PROXY": "send upstream traffic through this HTTP CONNECT proxy (also https_proxy)",
    "NO_PROXY": "comma-separated hosts that bypass HTTPS_PROXY (also no_proxy; * for all)",
    "AUTH_TOKEN": "require X-Ccxray-Auth or ?token= on every request; required off loopback",
    "CCXRAY_MAX_BODY_MB": "largest request body accepted, in MB (default 50; larger gets 413)",
    "CCXRAY_RECORD_MAX_MB": "response bytes kept in memory per call for the recorder (default 8); "
                            "past it the body goes to its sidecar file as it streams",
    "CCXRAY_CONNECT_TIMEOUT_MS": "upstream connect + TLS timeout (default 10000)",
    "CCXRAY_READ_TIMEOUT_MS": "longest upstream silence before or during a response (default 600000)",
    "CCXRAY_HEADER_TIMEOUT_MS": "time a client has to send a whole request head (default 30000)",
    "CCXRAY_KEEPALIVE_TIMEOUT_MS": "idle keep-alive client connection lifetime (default 120000)",
    "CCXRAY_WS_IDLE_TIMEOUT_MS": "WebSocket idle timeout, both directions (default 300000)",
    "CCXRAY_WS_MAX_QUEUE_BYTES": "WebSocket bytes held for a side not yet open (default 4194304)",
    "CCXRAY_BODY_TIMEOUT_MS": "longest time a client may take to send a whole request body (default 300000)",
    "CCXRAY_MAX_CONNECTIONS": "client connections held at once; past it new ones get 503 (default: sized to the fd limit)",
    "CCXRAY_ALLOWED_HOSTS": "extra Host values accepted, comma-separated (a gateway's name; host or host:port)",
    "CCXRAY_ALLOWED_ORIGINS": "browser origins allowed in, comma-separated (e.g. http://localhost:3000)",
    "CCXRAY_SHUTDOWN_GRACE_MS": "how long in-flight calls may finish on SIGINT/SIGTERM (default 10000)",
    "CCXRAY_HUB_GRACE_MS": "how long a launcher-started proxy stays after the last launcher exits (default 3000)",
    "CCXRAY_PRICES": "a JSON price file whose rows override or extend the bundled table",
    "RESTORE_DAYS": "days of log to rebuild the session list from at start (default 7; 0 for none)",
    "LOG_RETENTION_DAYS": "delete log lines and sidecars older than this many days (default: keep all)",
}


@dataclass(frozen=True)
class Upstream:
    """One upstream base URL, split into what a connection needs."""

    env_name: str
    scheme: str
    host: str
    port: int
    prefix: str  # path prefix without trailing slash, "" for none

    @property
    def is_tls(self) -> bool:
        return self.scheme == "https"

    @cached_property  # read twice per relayed request; the fields never change
    def host_header(self) -> str:
        default = 443 if self.is_tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, target: str) -> str:
        return f"{self.scheme}://{self.host_header}{target}"


@dataclass(frozen=True)
class ProxyTunnel:
    """An HTTP CONNECT proxy for upstream traffic, with its bypass list."""

    host: str
    port: int
    authorization: str | None
    no_proxy: tuple[str, ...] = ()

    def applies_to(self, host: str) -> bool:
        """True unless NO_PROXY names this host (or a parent domain of it)."""
        host = host.lower().strip("[]")
        for entry in self.no_proxy:
            if entry == "*":
                return False
            entry = entry.lstrip(".").split(":")[0].strip("[]")
            if host == entry or host.endswith("." + entry):
                return False
        return True


@dataclass(frozen=True)
class Settings:
    """Everything the proxy needs to run, read once at start."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    home: Path = field(default_factory=lambda: Path.home() / ".ccxray")
    open_browser: bool = False
    anthropic: Upstream = field(default_factory=lambda: parse_upstream("ANTHROPIC_BASE_URL", DEFAULT_ANTHROPIC_BASE))
    openai: Upstream = field(default_factory=lambda: parse_upstream("OPENAI_BASE_URL", DEFAULT_OPENAI_BASE))
    chatgpt: Upstream = field(default_factory=lambda: parse_upstream("CHATGPT_BASE_URL", DEFAULT_CHATGPT_BASE))
    tunnel: ProxyTunnel | None = None
    auth_token: str | None = None
    max_body_bytes: int = 50 * 1024 * 1024
    record_max_bytes: int = 8 * 1024 * 1024
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 600.0
    header_timeout_s: float = 30.0
    keepalive_timeout_s: float = 120.0
    ws_idle_timeout_s: float = 300.0
    ws_max_queue_bytes: int = 4 * 1024 * 1024
    shutdown_grace_s: float = 10.0
    hub_grace_s: float = 3.0
    body_timeout_s: float = 300.0
    max_connections: int | None = None  # None: sized to the fd limit at start
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    prices_path: str | None = None
    restore_days: float = 7.0
    retention_days: float | None = None

    @cached_property  # every relayed call names its spill file under it: no Path built per call
    def logs_dir(self) -> Path:
        return self.home / "logs"


# RFC 3986 reg-name characters (percent-escapes included) or, from inside [], an IPv6 literal
_HOST = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+|[0-9A-Fa-f:.]+")


def parse_upstream(env_name: str, raw: str) -> Upstream:
    """Split a base URL; raise ConfigError naming ``env_name`` if it is unusable."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{env_name}={raw!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{env_name}={raw!r} must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username:
        raise ConfigError(f"{env_name}={raw!r} must not carry credentials, a query or a fragment")
    if not _HOST.fullmatch(parts.hostname):  # it becomes the Host header, sent without a second check
        raise ConfigError(f"{env_name}={raw!r} has a host name with characters no host name has")
    default_port = 443 if parts.scheme == "https" else 80
    return Upstream(env_name, parts.scheme, parts.hostname, port or default_port, parts.path.rstrip("/"))


def _parse_tunnel(env: Mapping[str, str]) -> ProxyTunnel | None:
    raw = env.get("HTTPS_PROXY") or env.get("https_proxy")
    if not raw:
        return None
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError(f"HTTPS_PROXY={raw!r} is not a valid URL: {exc}") from exc
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"HTTPS_PROXY={raw!r} must be an http:// proxy URL")
    auth = None
    if parts.username is not None:
        import base64

        creds = f"{parts.username}:{parts.password or ''}".encode()
        auth = "Basic " + base64.b64encode(creds).decode()
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    entries = tuple(e.strip().lower() for e in no_proxy.split(",") if e.strip())
    return ProxyTunnel(parts.hostname, port, auth, entries)


def _env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} must be a number") from exc
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than zero")
    return value


def _env_days(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} must be a number of days") from exc
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _env_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())


def _env_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    origins = _env_list(env, "CCXRAY_ALLOWED_ORIGINS")
    for origin in origins:
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc or parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"CCXRAY_ALLOWED_ORIGINS entry {origin!r} must be an origin "
                              "(scheme://host[:port], e.g. http://localhost:3000 or chrome-extension://ID)")
    return origins


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _refuse_self_loop(up: Upstream, host: str, port: int) -> None:
    ours = {host.lower(), "0.0.0.0", "::"}
    if up.port == port and (is_loopback(up.host) or up.host.lower() in ours):
        raise ConfigError(
            f"{up.env_name} points at this proxy itself ({up.host}:{up.port}); it would loop"
        )


def load_settings(
    env: Mapping[str, str],
    *,
    host: str | None = None,
    port: int | None = None,
    home: str | None = None,
    open_browser: bool = False,
) -> Settings:
    """Build Settings from flags (which win) and the environment.

    Raises ConfigError with the offending flag or variable named.
    """
    if port is None:
        port = int(_env_number(env, "PROXY_PORT", DEFAULT_PORT)) if env.get("PROXY_PORT") else DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range 0-65535")
    host = host or DEFAULT_HOST
    home_path = Path(home or env.get("CCXRAY_HOME") or Path.home() / ".ccxray").expanduser()
    token = env.get("AUTH_TOKEN") or None
    if not is_loopback(host) and not token:
        raise ConfigError(f"binding {host} (not loopback) requires AUTH_TOKEN to be set")
    ups = {
        name: parse_upstream(var, env.get(var) or default)
        for name, var, default in (
            ("anthropic", "ANTHROPIC_BASE_URL", DEFAULT_ANTHROPIC_BASE),
            ("openai", "OPENAI_BASE_URL", DEFAULT_OPENAI_BASE),
            ("chatgpt", "CHATGPT_BASE_URL", DEFAULT_CHATGPT_BASE),
        )
    }
    if port != 0:
        for up in ups.values():
            _refuse_self_loop(up, host, port)
    def ms(name: str, default: float) -> float:
        return _env_number(env, name, default) / 1000.0

    return Settings(
        host=host,
        port=port,
        home=home_path,
        open_browser=open_browser,
        anthropic=ups["anthropic"],
        openai=ups["openai"],
        chatgpt=ups["chatgpt"],
        tunnel=_parse_tunnel(env),
        auth_token=token,
        max_body_bytes=int(_env_number(env, "CCXRAY_MAX_BODY_MB", 50) * 1024 * 1024),
        record_max_bytes=int(_env_number(env, "CCXRAY_RECORD_MAX_MB", 8) * 1024 * 1024),
        connect_timeout_s=ms("CCXRAY_CONNECT_TIMEOUT_MS", 10_000),
        read_timeout_s=ms("CCXRAY_READ_TIMEOUT_MS", 600_000),
        header_timeout_s=ms("CCXRAY_HEADER_TIMEOUT_MS", 30_000),
        keepalive_timeout_s=ms("CCXRAY_KEEPALIVE_TIMEOUT_MS", 120_000),
        ws_idle_timeout_s=ms("CCXRAY_WS_IDLE_TIMEOUT_MS", 300_000),
        ws_max_queue_bytes=int(_env_number(env, "CCXRAY_WS_MAX_QUEUE_BYTES", 4 * 1024 * 1024)),
        shutdown_grace_s=ms("CCXRAY_SHUTDOWN_GRACE_MS", 10_000),
        hub_grace_s=ms("CCXRAY_HUB_GRACE_MS", 3_000),
        body_timeout_s=ms("CCXRAY_BODY_TIMEOUT_MS", 300_000),
        max_connections=int(_env_number(env, "CCXRAY_MAX_CONNECTIONS", 1)) if env.get("CCXRAY_MAX_CONNECTIONS") else None,
        allowed_hosts=_env_list(env, "CCXRAY_ALLOWED_HOSTS"),
        allowed_origins=_env_origins(env),
        prices_path=env.get("CCXRAY_PRICES") or None,
        restore_days=_env_days(env, "RESTORE_DAYS", 7.0) or 0.0,
        retention_days=_env_days(env, "LOG_RETENTION_DAYS", None),
    )


def environ() -> Mapping[str, str]:
    """The process environment; the one sanctioned read of os.environ."""
    return os.environ
