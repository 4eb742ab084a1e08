"""Who may talk to the proxy: the AUTH_TOKEN check and the dashboard's Host guard."""

from __future__ import annotations

import hmac
from typing import Sequence

from . import headers as hdr


def token_ok(expected: str | None, req_headers: Sequence[tuple[str, str]], target: str) -> bool:
    """True when no token is configured, or the request carries the right one."""
    if not expected:
        return True
    given = hdr.get(req_headers, hdr.AUTH_HEADER) or hdr.query_token(target) or ""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def allowed_hosts(bound_host: str, port: int) -> frozenset[str]:
    """Host header values the dashboard answers (DNS-rebinding guard)."""
    names = {"localhost", "127.0.0.1", "[::1]"}
    bound = bound_host if ":" not in bound_host else f"[{bound_host}]"
    if bound not in ("0.0.0.0", "[::]"):
        names.add(bound.lower())
    return frozenset(f"{name}:{port}" for name in names) | frozenset(names if port == 80 else ())


def host_ok(req_headers: Sequence[tuple[str, str]], allowed: frozenset[str]) -> bool:
    host = (hdr.get(req_headers, "host") or "").strip().lower()
    return host in allowed
