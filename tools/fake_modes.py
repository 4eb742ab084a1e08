"""Request modes of the fake upstream: which behaviour, or misbehaviour, a request asks for.

A request names its mode in the ``fake_mode`` query parameter or the
``x-fake-mode`` header (the query wins; see ``requested_mode``). ``parse_mode``
checks ``NAME[:ARG]`` against ``HTTP_MODES`` or ``WS_MODES`` and returns a
frozen ``Mode``, or raises ``ModeError`` (answered with 400). Pure: no
sockets, threads or clocks.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs


class ModeError(ValueError):
    """The client asked for a mode the fake does not know; answered with 400."""


class ArgKind(enum.Enum):
    """What follows the colon of a mode name."""

    NONE = "none"
    INT = "int"
    OPTIONAL_INT = "optional int"
    STATUS = "status"
    CLOSE = "close"


HTTP_MODES: dict[str, ArgKind] = {
    "default": ArgKind.NONE,
    "echo": ArgKind.NONE,
    "sse": ArgKind.INT,
    "sse-bytes": ArgKind.INT,
    "stepped": ArgKind.OPTIONAL_INT,
    "trickle": ArgKind.INT,
    "drop-mid-stream": ArgKind.NONE,
    "stall": ArgKind.NONE,
    "stall-body": ArgKind.NONE,
    "status": ArgKind.STATUS,
    "gzip": ArgKind.NONE,
    "deflate": ArgKind.NONE,
    "br-fake": ArgKind.NONE,
    "big": ArgKind.INT,
    "big-chunked": ArgKind.INT,
    "close-after": ArgKind.NONE,
    "agent": ArgKind.NONE,
}

WS_MODES: dict[str, ArgKind] = {
    "default": ArgKind.NONE,
    "echo": ArgKind.NONE,
    "echo-fragmented": ArgKind.NONE,
    "refuse": ArgKind.STATUS,
    "never-answer": ArgKind.NONE,
    "drop-after": ArgKind.INT,
    "close": ArgKind.CLOSE,
    "invalid-frame": ArgKind.NONE,
    "binary": ArgKind.INT,
    "ping": ArgKind.INT,
    "frames": ArgKind.INT,
    "turns": ArgKind.INT,
    "slow-reader": ArgKind.NONE,
    "send-big": ArgKind.INT,
}


@dataclass(frozen=True)
class Mode:
    """A parsed mode: ``sse:5`` is ``Mode("sse", number=5)``."""

    name: str
    number: int | None = None
    close_code: int | None = None  # close:CODE, None for close:none
    close_reason: str = ""


def parse_mode(raw: str | None, table: dict[str, ArgKind]) -> Mode:
    """Parse ``NAME[:ARG]`` against a mode table.

    Returns ``Mode("default")`` for no mode; raises ModeError for an unknown
    name or a bad argument.
    """
    if not raw:
        return Mode("default")
    name, has_arg, arg = raw.strip().partition(":")
    kind = table.get(name)
    if kind is None:
        raise ModeError(f"unknown mode {raw!r}")
    if kind is ArgKind.NONE or (kind is ArgKind.OPTIONAL_INT and not has_arg):
        if has_arg:
            raise ModeError(f"mode {name!r} takes no argument")
        return Mode(name)
    if kind is ArgKind.CLOSE:
        return _parse_close_mode(name, arg)
    number = _parse_int(arg, raw)
    if kind is ArgKind.STATUS and not 200 <= number <= 599:
        raise ModeError(f"status out of range in {raw!r}")
    return Mode(name, number=number)


def _parse_int(text: str, raw: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ModeError(f"bad number in mode {raw!r}") from None
    if number < 0:
        raise ModeError(f"negative number in mode {raw!r}")
    return number


def _parse_close_mode(name: str, arg: str) -> Mode:
    code_text, _, reason = arg.partition(":")
    if code_text == "none":
        if reason:
            raise ModeError("close:none cannot carry a reason")
        return Mode(name, close_code=None)
    code = _parse_int(code_text, f"{name}:{arg}")
    if code > 0xFFFF:
        raise ModeError(f"close code {code} does not fit in two bytes")
    return Mode(name, close_code=code, close_reason=reason)


def requested_mode(query: str, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The mode string of a request: ``fake_mode`` query parameter, else ``x-fake-mode``."""
    if "fake_mode=" in query:  # cheap test first: most requests have no mode
        values = parse_qs(query).get("fake_mode")
        if values:
            return values[0]
    for name, value in headers:
        if name.lower() == b"x-fake-mode":
            return value.decode("latin-1")
    return None
