"""Who may talk to the proxy: pure decisions over a request's head.

Four guards, checked before anything is routed or recorded, on every path
(the page, its API, proxied calls and WebSocket upgrades alike):

- another user's loopback client (its uid is looked up by the caller) is
  refused unless a token is configured, which it must then present;
- AUTH_TOKEN: the header or any spelling of the ``token`` query key
  (:mod:`querytoken`, the same parser that strips it) must match;
- a browser request from another site: ``Sec-Fetch-Site: cross-site`` or
  ``same-site``, or an ``Origin`` that is not the proxy's own (agent CLIs
  send neither header; browsers always send one on a cross-site request);
- the Host header must name the proxy (DNS-rebinding guard).
"""

from __future__ import annotations

import hmac
from typing import Iterable, Sequence

from .querytoken import split_token

AUTH_HEADER = "x-ccxray-auth"
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def _values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name]


def token_ok(expected: str | None, req_headers: Sequence[tuple[str, str]], target: str) -> bool:
    """True when no token is configured, or every token the request carries is the right one.

    Every ``X-Ccxray-Auth`` header and every query pair whose key decodes to
    ``token`` counts: one wrong copy fails the request, so no spelling can
    smuggle a second, unchecked value past the check.
    """
    if not expected:
        return True
    given = _values(req_headers, AUTH_HEADER) + list(split_token(target).values)
    want = expected.encode("utf-8", "replace")
    return bool(given) and all(hmac.compare_digest(g.strip().encode("utf-8", "replace"), want) for g in given)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(bound_host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host header values the proxy answers: its own address, loopback names, and ``extra``.

    ``extra`` (CCXRAY_ALLOWED_HOSTS) entries may carry a port or not; one
    without a port is accepted with any port.
    """
    names = set(LOOPBACK_NAMES)
    bound = _bracketed(bound_host.lower())
    if bound not in ("0.0.0.0", "[::]"):
        names.add(bound)
    hosts = {f"{name}:{port}" for name in names} | (names if port == 80 else set())
    for entry in (h.strip().lower() for h in extra if h.strip()):
        hosts.add(entry if _has_port(entry) else entry + ":*")
    return frozenset(hosts)


def _has_port(host: str) -> bool:
    name, sep, port = host.rpartition(":")
    return bool(sep) and port.isdigit() and (not name.startswith("[") or name.endswith("]"))


def host_ok(req_headers: Sequence[tuple[str, str]], allowed: frozenset[str]) -> bool:
    """True when the Host header names the proxy (or an allowed gateway host)."""
    host = (next(iter(_values(req_headers, "host")), "")).strip().lower()
    if host in allowed:
        return True
    name = host.rpartition(":")[0] if _has_port(host) else host
    return f"{name}:*" in allowed


def own_origins(hosts: frozenset[str], extra: Iterable[str] = ()) -> frozenset[str]:
    """Origins the proxy treats as itself: http://{host} for each allowed host, plus ``extra``."""
    mine = {f"http://{h}" for h in hosts if not h.endswith(":*")}
    return frozenset(mine | {normalise_origin(o) for o in extra if o.strip()})


def normalise_origin(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def browser_refusal(req_headers: Sequence[tuple[str, str]], origins: frozenset[str]) -> str | None:
    """Why a request a browser made on behalf of another site is refused, or None.

    An ``Origin`` in ``origins`` passes even when marked cross-site (a browser
    tool the user listed in CCXRAY_ALLOWED_ORIGINS), and so does one naming the
    very Host the request was sent to (the page itself, under whatever name the
    Host guard let through). ``Origin: null`` (sandboxed frames, files) is foreign.
    """
    origin_values: list[str] = []
    sites: set[str] = set()
    hosts: list[str] = []
    for name, value in req_headers:  # one pass: this runs on every request
        low = name.lower()
        if low == "origin":
            origin_values.append(value)
        elif low == "sec-fetch-site":
            sites.add(value.strip().lower())
        elif low == "host":
            hosts.append(value)
    if origin_values:
        origin = normalise_origin(origin_values[0])
        host = hosts[0].strip().lower() if hosts else ""
        if origin not in origins and not (host and origin in (f"http://{host}", f"https://{host}")):
            return (f"requests from origin {origin_values[0].strip()!r} are refused "
                    "(allow a trusted tool with CCXRAY_ALLOWED_ORIGINS)")
    elif sites & FOREIGN_FETCH_SITES:
        return "requests a browser marks as coming from another site are refused (Sec-Fetch-Site)"
    return None


def is_stranger(peer_uid: int | None, own_uid: int) -> bool:
    """True when a loopback peer's socket is not ours (None: its owner could not be found)."""
    return peer_uid != own_uid
