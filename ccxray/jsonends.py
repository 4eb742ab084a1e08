"""The fields an index line needs from a JSON response too large to keep whole.

A body past the recording budget is in its file; memory holds its first and
last bytes (bodykeep). In every provider's non-streamed answer the top-level
fields a line needs sit at those ends: ``id``, ``type``, ``object``, ``model``
and ``status`` open the object, ``stop_reason`` and ``usage`` close it. Each
is found by its key and only its value is decoded, within SCAN_BYTES of each
end: the megabytes in between are never parsed. In the head, which starts the
object, a key counts only at the object's own level (strings and nesting are
tracked, so neither a string that reads like a key nor a nested object's key
can match). The tail starts anywhere, so there the last match of its key is
taken: ``usage`` and ``stop_reason`` close every provider's object. A chat
completion's stop reason is its choice's ``finish_reason``, also at its end.
"""

from __future__ import annotations

import json
import re

HEAD_KEYS = ("id", "type", "object", "role", "model", "status")
TAIL_KEYS = ("stop_reason", "stop_sequence", "usage", "finish_reason")
VALUE_BYTES = 4096  # a scalar or a usage object fits; a longer value is left out
SCAN_BYTES = 64 * 1024  # how far into each end keys are looked for (a missed model falls back on the request's)
_DECODER = json.JSONDecoder()
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]')  # a whole string, or a bracket


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


def _head_fields(head: bytes, names: tuple[str, ...]) -> dict[str, object]:
    """The fields ``names`` at the top level of the object ``head`` opens."""
    wanted = {f'"{name}"'.encode(): name for name in names}
    fields: dict[str, object] = {}
    depth = 0
    for token in _TOKENS.finditer(head):
        text = token.group()
        if text[:1] == b"{" or text[:1] == b"[":
            depth += 1
        elif text[:1] == b"}" or text[:1] == b"]":
            depth -= 1
        elif depth == 1 and text in wanted and wanted[text] not in fields:
            found, value = _value_at(head, token.start(), text)
            if found:
                fields[wanted[text]] = value
    return fields


def _last(data: bytes, name: str) -> tuple[bool, object]:
    key = f'"{name}"'.encode()
    at = data.rfind(key)
    while at >= 0:
        found, value = _value_at(data, at, key)
        if found:
            return True, value
        at = data.rfind(key, 0, at)
    return False, None


def json_ends(head: bytes, tail: bytes) -> dict[str, object] | None:
    """The top-level fields found at the ends of a JSON object, or None if ``head``
    does not open one. Only the fields found are in the dict; a chat completion's
    ``choices`` holds its stop reason only (what its line reads)."""
    if head.lstrip()[:1] != b"{":
        return None
    fields = _head_fields(head[:SCAN_BYTES], HEAD_KEYS)
    tail = tail[-SCAN_BYTES:]
    for name in TAIL_KEYS:
        found, value = _last(tail, name)
        if found:
            fields[name] = value
    finish = fields.pop("finish_reason", None)
    if fields.get("object") == "chat.completion":  # a chat completion is read by its choices
        fields["choices"] = [{"finish_reason": finish}] if isinstance(finish, str) else []
    return fields
