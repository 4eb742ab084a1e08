"""Anthropic Messages API: request facts, the streamed event fold, a JSON response.

`fold_stream` takes the parsed `data` objects of an SSE stream in order
(`message_start`, `content_block_start/delta/stop`, `message_delta`,
`message_stop`, `ping`, `error`). Content blocks are kept by their `index`;
tool inputs streamed as `input_json_delta` are joined and parsed at the end,
so a stream cut before `content_block_stop` still yields what arrived.
Nothing here raises on unknown or malformed events: they are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from . import (
    RequestFacts, ResponseFacts, as_dict, as_list, collapse_title, get_dict, get_list,
    get_str, join_texts, loads_json, merge_usage, unwrap_event,
)

_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|\Z)", re.DOTALL)
_TOOL_BLOCKS = ("tool_use", "server_tool_use", "mcp_tool_use")


def _text_blocks(content: object) -> list[str]:
    """Texts of a string content or of its `text` blocks."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in as_list(content) or []:
        text = get_str(as_dict(block), "text")
        if text and (as_dict(block) or {}).get("type", "text") == "text":
            texts.append(text)
    return texts


def _user_title(message: object) -> str | None:
    """The user-authored text of one message (system reminders removed), or None."""
    msg = as_dict(message)
    if msg is None or msg.get("role") != "user":
        return None
    for text in reversed(_text_blocks(msg.get("content"))):
        title = collapse_title(_REMINDER.sub(" ", text))
        if title:
            return title
    return None


def _title(messages: list[object]) -> str | None:
    for message in reversed(messages):
        title = _user_title(message)
        if title:
            return title
    return None


def system_text(system: object) -> str | None:
    """The system prompt as text (a string, or text blocks joined by blank lines)."""
    return join_texts(_text_blocks(system))


def request_facts(body: object) -> RequestFacts:
    """Facts of a Messages request body; unknown shapes give empty facts."""
    obj = as_dict(body)
    if obj is None:
        return RequestFacts()
    messages = get_list(obj, "messages")
    tools = get_list(obj, "tools")
    stream = obj.get("stream")
    return RequestFacts(
        model=get_str(obj, "model"),
        msg_count=None if messages is None else len(messages),
        tool_count=None if tools is None else len(tools),
        title=None if messages is None else _title(messages),
        system_text=system_text(obj.get("system")),
        stream=stream if isinstance(stream, bool) else None,
        metadata=dict(get_dict(obj, "metadata") or {}),
    )


@dataclass
class _Block:
    kind: str
    text: list[str] = field(default_factory=list)
    json_parts: list[str] = field(default_factory=list)
    start: dict[str, object] = field(default_factory=dict)


def _error_of(obj: dict[str, object]) -> dict[str, object]:
    err = get_dict(obj, "error") or {}
    return {"type": get_str(err, "type") or "error", "message": err.get("message")}


class _Fold:
    """Mutable state of one stream fold; `facts()` gives the result."""

    def __init__(self) -> None:
        self.out = ResponseFacts()
        self.blocks: dict[int, _Block] = {}

    def event(self, raw: object) -> None:
        ev = as_dict(unwrap_event(raw))
        kind = get_str(ev, "type")
        handler = _HANDLERS.get(kind or "")
        if ev is not None and handler is not None:
            handler(self, ev)

    def message_start(self, ev: dict[str, object]) -> None:
        self.message(get_dict(ev, "message") or {})

    def message(self, msg: dict[str, object]) -> None:
        self.out.response_id = get_str(msg, "id") or self.out.response_id
        self.out.model = get_str(msg, "model") or self.out.model
        self.out.stop_reason = get_str(msg, "stop_reason") or self.out.stop_reason
        self.out.usage = merge_usage(self.out.usage, get_dict(msg, "usage"))

    def block_start(self, ev: dict[str, object]) -> None:
        index, block = ev.get("index"), get_dict(ev, "content_block")
        if not isinstance(index, int) or block is None:
            return
        new = _Block(kind=get_str(block, "type") or "unknown", start=block)
        if new.kind == "text" and get_str(block, "text"):
            new.text.append(str(block["text"]))
        self.blocks[index] = new

    def block_delta(self, ev: dict[str, object]) -> None:
        index, delta = ev.get("index"), get_dict(ev, "delta")
        block = self.blocks.get(index) if isinstance(index, int) else None
        if block is None or delta is None:
            return
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            block.text.append(str(delta["text"]))
        elif delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            block.json_parts.append(str(delta["partial_json"]))

    def message_delta(self, ev: dict[str, object]) -> None:
        self.out.stop_reason = get_str(get_dict(ev, "delta"), "stop_reason") or self.out.stop_reason
        self.out.usage = merge_usage(self.out.usage, get_dict(ev, "usage"))

    def message_stop(self, ev: dict[str, object]) -> None:
        self.out.is_terminal = True

    def error(self, ev: dict[str, object]) -> None:
        self.out.error = _error_of(ev)
        self.out.is_terminal = True

    def facts(self) -> ResponseFacts:
        ordered = [self.blocks[i] for i in sorted(self.blocks)]
        self.out.text = "".join("".join(b.text) for b in ordered if b.kind == "text")
        self.out.tool_calls = [_tool_call(b) for b in ordered if b.kind in _TOOL_BLOCKS]
        return self.out


def _tool_call(block: _Block) -> dict[str, object]:
    """{"name", "id", "input"}: the streamed JSON parsed, else the raw text, else the start input."""
    raw = "".join(block.json_parts)
    tool_input: object = block.start.get("input")
    if raw.strip():
        ok, value = loads_json(raw)
        tool_input = value if ok else raw
    return {"name": get_str(block.start, "name"), "id": get_str(block.start, "id"), "input": tool_input}


_HANDLERS = {
    "message_start": _Fold.message_start,
    "content_block_start": _Fold.block_start,
    "content_block_delta": _Fold.block_delta,
    "message_delta": _Fold.message_delta,
    "message_stop": _Fold.message_stop,
    "error": _Fold.error,
}


def fold_stream(events: Iterable[object]) -> ResponseFacts:
    """Facts of a streamed response from its parsed SSE `data` objects, in order."""
    fold = _Fold()
    for event in events:
        fold.event(event)
    return fold.facts()


def response_facts(body: object) -> ResponseFacts:
    """Facts of a non-streamed JSON response (a `message`, or an `error` body)."""
    obj = as_dict(body)
    if obj is None:
        return ResponseFacts()
    if obj.get("type") == "error" or (get_dict(obj, "error") is not None and "content" not in obj):
        return ResponseFacts(error=_error_of(obj), is_terminal=True)
    fold = _Fold()
    fold.message(obj)
    for index, block in enumerate(get_list(obj, "content") or []):
        _add_full_block(fold, index, block)
    facts = fold.facts()
    facts.is_terminal = obj.get("type") == "message" or facts.stop_reason is not None
    return facts


def _add_full_block(fold: _Fold, index: int, raw: object) -> None:
    block = as_dict(raw)
    if block is None:
        return
    kind = get_str(block, "type") or "unknown"
    text = block.get("text")
    fold.blocks[index] = _Block(kind=kind, text=[text] if isinstance(text, str) else [], start=block)

