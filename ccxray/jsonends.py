"""The fields an index line needs from a JSON response too large to keep whole.

A body past the recording budget is in its file; memory holds its first and
last bytes (bodykeep). In every provider's non-streamed answer the top-level
fields a line needs sit at those ends: ``id``, ``type``, ``object``, ``model``
and ``status`` open the object, ``stop_reason`` and ``usage`` close it. Each
is found by its key (the first in the head, the last in the tail) and only its
value is decoded, within SCAN_BYTES of each end: the megabytes in between are
never parsed. A key inside a
JSON string cannot match (its quotes are escaped there); one in a nested
object could, which is why only these fields, where the providers put them,
are read this way.
"""

from __future__ import annotations

import json

HEAD_KEYS = ("id", "type", "object", "role", "model", "status")
TAIL_KEYS = ("stop_reason", "stop_sequence", "usage")
VALUE_BYTES = 4096  # a scalar or a usage object fits; a longer value is left out
SCAN_BYTES = 64 * 1024  # how far into each end keys are looked for (a missed model falls back on the request's)
_DECODER = json.JSONDecoder()


def _value_at(data: bytes, key_at: int, key: bytes) -> tuple[bool, object]:
    """(found, value) of the key whose quoted name starts at ``key_at``."""
    colon = key_at + len(key)
    while colon < len(data) and data[colon] in b" \t\r\n":
        colon += 1
    if data[colon:colon + 1] != b":":
        return False, None  # a string value that happens to read like the key
    window = data[colon + 1:colon + 1 + VALUE_BYTES].decode("utf-8", "replace")
    try:
        value, _ = _DECODER.raw_decode(window, len(window) - len(window.lstrip()))
    except ValueError:
        return False, None
    return True, value


def _find(data: bytes, name: str, last: bool) -> tuple[bool, object]:
    key = f'"{name}"'.encode()
    at = data.rfind(key) if last else data.find(key)
    while at >= 0:
        found, value = _value_at(data, at, key)
        if found:
            return True, value
        at = data.rfind(key, 0, at) if last else data.find(key, at + 1)
    return False, None


def json_ends(head: bytes, tail: bytes) -> dict[str, object] | None:
    """The top-level fields found at the ends of a JSON object, or None if ``head``
    does not open one. Only the fields found are in the dict."""
    if not head.lstrip()[:1] == b"{":
        return None
    fields: dict[str, object] = {}
    for names, data, last in ((HEAD_KEYS, head[:SCAN_BYTES], False), (TAIL_KEYS, tail[-SCAN_BYTES:], True)):
        for name in names:
            found, value = _find(data, name, last)
            if found:
                fields[name] = value
    return fields
