"""What one relay fact becomes on disk: the ``Writes`` an assembler returns, and
the pieces every assembler writes alike (the provider's name, a sidecar's meta).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import headers as hdr
from .inflight import InFlight


@dataclass
class Writes:
    lines: list[dict[str, Any]] = field(default_factory=list)
    sidecars: list[tuple[str, str, object]] = field(default_factory=list)
    shared: list[tuple[str, object]] = field(default_factory=list)
    raw: list[tuple[str, bytes]] = field(default_factory=list)  # (file name in logs/, bytes)
    started: list[InFlight] = field(default_factory=list)  # WebSocket turns now under way
    ended: list[str] = field(default_factory=list)  # ids of turns whose line is among ``lines``


def merge(first: Writes | None, second: Writes | None) -> Writes | None:
    """Both sets of writes, in order."""
    if first is None or second is None:
        return first or second
    first.lines += second.lines
    first.sidecars += second.sidecars
    first.shared += second.shared
    first.raw += second.raw
    first.started += second.started
    first.ended += second.ended
    return first


def provider_name(route_provider: str) -> str:
    """The provider a line names: ChatGPT's backend speaks OpenAI's API."""
    return "openai" if route_provider == "chatgpt" else route_provider


def sidecar_meta(method: str, url: str, upstream_url: str | None, req_headers: list[tuple[str, str]],
                 status: int | None, resp_headers: list[tuple[str, str]]) -> dict[str, Any]:
    """A sidecar's ``meta``: both sides' headers, redacted."""
    return {
        "request": {"method": method, "url": url, "upstreamUrl": upstream_url,
                    "headers": hdr.redact(req_headers)},
        "response": {"status": status, "headers": hdr.redact(resp_headers)},
    }
