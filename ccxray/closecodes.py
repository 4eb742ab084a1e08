"""WebSocket close codes: what passes through, what is replaced, what is never sent.

Pure and table-tested. RFC 6455 7.4 and the IANA registry: 1000-1003 and
1007-1014 are defined; 1004 is reserved; 1005, 1006 and 1015 are only ever
*reported* locally and must never appear on the wire; 1016-2999 are
unassigned protocol codes; 3000-4999 belong to libraries and applications.
``None`` stands for "a close frame without a status" (reported as 1005).
"""

from __future__ import annotations

NO_STATUS = 1005         # reported for a close frame without a status code
ABNORMAL = 1006          # reported for a TCP drop without a close frame
PROTOCOL_ERROR = 1002
INTERNAL_ERROR = 1011
GOING_AWAY = 1001
TOO_BIG = 1009
MAX_REASON_BYTES = 120
NEVER_SENT = frozenset({1005, 1006, 1015})


def is_sendable(code: int) -> bool:
    """True for codes that may be put on the wire (and so may be passed on)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def cut_reason(reason: str | None, limit: int = MAX_REASON_BYTES) -> str:
    """``reason`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    if not reason:
        return ""
    raw = reason.encode("utf-8", "replace")
    if len(raw) <= limit:
        return reason
    return raw[:limit].decode("utf-8", "ignore")


def forward_code(received: int | None) -> int | None:
    """The code to send the other side for a close received from one side.

    ``None`` in (no status) gives ``None`` out (a close frame without status);
    a sendable code passes as received; anything else becomes 1011.
    """
    if received is None or received == NO_STATUS:
        return None
    return received if is_sendable(received) else INTERNAL_ERROR


def wire_code(code: int | None) -> int | None:
    """Guard for every close we send: never 1005/1006/1015 or an invalid code."""
    if code is None:
        return None
    if code in NEVER_SENT or not is_sendable(code):
        raise ValueError(f"close code {code} must not be sent")
    return code
