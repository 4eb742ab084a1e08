"""OpenAI Responses API (HTTP JSON, SSE, WebSocket events) and Chat Completions.

`fold_events` takes event dicts in arrival order, from any transport: the
`data` of SSE events, or the text frames of a Responses WebSocket. Output
items are tracked by `output_index`; the output of a terminal response
(`response.completed` ...) wins over the items and deltas seen before it, and
deltas fill in what a cut stream never completed. Chat Completion chunks
(`choices[].delta`) and the `[DONE]` sentinel fold into the same facts.
Nothing here raises on unknown or malformed events: they are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from . import (
    RequestFacts, ResponseFacts, as_dict, as_list, collapse_title, get_dict, get_list,
    get_str, is_number, join_texts, merge_usage, unwrap_event,
)

# User-role input that the client wrote, not the person (Codex, Claude-style reminders).
INJECTED_PREFIXES = (
    "<environment_context>", "<user_instructions>", "# AGENTS.md instructions", "<INSTRUCTIONS>",
    "<system-reminder>", "<turn_aborted>", "<skills_instructions>", "<permissions instructions>",
)
TEXT_DELTA = "response.output_text.delta"
TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete", "response.done"})
_OPEN_STATUSES = frozenset({"in_progress", "queued"})
_SYSTEM_ROLES = frozenset({"system", "developer"})


def _part_texts(content: object) -> list[str]:
    """Texts of a string content or of its parts that carry `text`."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for part in as_list(content) or []:
        text = get_str(as_dict(part), "text")
        if text:
            texts.append(text)
    return texts


def _is_message(item: dict[str, object]) -> bool:
    return item.get("type", "message") == "message" and isinstance(item.get("role"), str)


def _user_title(raw: object) -> str | None:
    item = as_dict(raw)
    if item is None or not _is_message(item) or item.get("role") != "user":
        return None
    for text in reversed(_part_texts(item.get("content"))):
        if not text.lstrip().startswith(INJECTED_PREFIXES):
            title = collapse_title(text)
            if title:
                return title
    return None


def _title(items: list[object]) -> str | None:
    for item in reversed(items):
        title = _user_title(item)
        if title:
            return title
    return None


def _system_texts(items: list[object]) -> list[str]:
    texts: list[str] = []
    for raw in items:
        item = as_dict(raw)
        if item is not None and _is_message(item) and item.get("role") in _SYSTEM_ROLES:
            texts += _part_texts(item.get("content"))
    return texts


def _request_object(body: object) -> dict[str, object] | None:
    """The request dict; a WebSocket `response.create` may nest it under `response`."""
    obj = as_dict(body)
    inner = get_dict(obj, "response")
    if obj is not None and inner is not None and "model" not in obj and "input" not in obj:
        return inner
    return obj


def _merged_metadata(obj: dict[str, object]) -> dict[str, object]:
    return {**(get_dict(obj, "metadata") or {}), **(get_dict(obj, "client_metadata") or {})}


def request_facts(body: object) -> RequestFacts:
    """Facts of a Responses or Chat Completions request (or a `response.create` frame)."""
    obj = _request_object(body)
    if obj is None:
        return RequestFacts()
    raw_input = obj.get("input")
    items = get_list(obj, "messages")
    if items is None:
        items = [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else as_list(raw_input)
    tools, stream = get_list(obj, "tools"), obj.get("stream")
    instructions = obj.get("instructions")
    return RequestFacts(
        model=get_str(obj, "model"),
        msg_count=None if items is None else len(items),
        tool_count=None if tools is None else len(tools),
        title=None if items is None else _title(items),
        system_text=join_texts(([instructions] if isinstance(instructions, str) else []) + _system_texts(items or [])),
        stream=stream if isinstance(stream, bool) else None,
        metadata=_merged_metadata(obj),
        previous_response_id=get_str(obj, "previous_response_id"),
        is_prewarm=obj.get("generate") is False,
    )


def error_of(ev: dict[str, object]) -> dict[str, object]:
    """{"type", "message"} (+ "code", "status" when given) of an error event, body or response."""
    inner = get_dict(ev, "error")
    src = inner if inner is not None else ev
    etype = (get_str(inner, "type") or get_str(inner, "code")) if inner is not None else get_str(ev, "code")
    out: dict[str, object] = {"type": etype or "error", "message": src.get("message")}
    if get_str(src, "code"):
        out["code"] = src["code"]
    if is_number(ev.get("status")):
        out["status"] = ev["status"]
    return out


@dataclass
class _Stream:
    """Per-stream assembly state (Responses items and Chat choices)."""

    items: dict[int, dict[str, object]] = field(default_factory=dict)
    final_output: list[object] | None = None
    texts: dict[str, list[str]] = field(default_factory=dict)
    texts_done: dict[str, str] = field(default_factory=dict)
    args: dict[str, list[str]] = field(default_factory=dict)
    args_done: dict[str, str] = field(default_factory=dict)
    chat_text: list[str] = field(default_factory=list)
    chat_tools: dict[int, dict[str, object]] = field(default_factory=dict)
    is_chat: bool = False


class _Fold:
    """Mutable state of one fold; `facts()` gives the result."""

    def __init__(self) -> None:
        self.out = ResponseFacts()
        self.st = _Stream()

    def event(self, raw: object) -> None:
        if isinstance(raw, dict) and "data" not in raw:
            ev: dict[str, object] | None = raw  # a bare event, the common case: nothing to unwrap
        else:
            data = unwrap_event(raw)
            if isinstance(data, str):
                self.out.is_terminal = self.out.is_terminal or data.strip() == "[DONE]"
                return
            ev = as_dict(data)
        if ev is None:
            return
        kind = get_str(ev, "type")
        if kind is None and get_list(ev, "choices") is not None:
            self.chat_chunk(ev)
            return
        handler = _HANDLERS.get(kind or "")
        if handler is not None:
            handler(self, ev)
        elif kind in TERMINAL_EVENTS:
            self.terminal(ev)

    def response_event(self, ev: dict[str, object]) -> None:
        self.response(get_dict(ev, "response") or {})

    def terminal(self, ev: dict[str, object]) -> None:
        self.response(get_dict(ev, "response") or {})
        self.out.is_terminal = True
        if self.out.status is None:
            self.out.status = str(ev.get("type", "")).removeprefix("response.")

    def response(self, resp: dict[str, object]) -> None:
        out = self.out
        out.response_id = get_str(resp, "id") or out.response_id
        out.model = get_str(resp, "model") or out.model
        out.status = get_str(resp, "status") or out.status
        out.usage = merge_usage(out.usage, get_dict(resp, "usage"))
        if get_dict(resp, "error") is not None:
            out.error = error_of(resp)
        reason = get_str(get_dict(resp, "incomplete_details"), "reason")
        out.stop_reason = reason or out.stop_reason
        output = get_list(resp, "output")
        if output:
            self.st.final_output = output

    def item(self, ev: dict[str, object]) -> None:
        item, index = get_dict(ev, "item"), ev.get("output_index")
        if item is not None:
            key = index if isinstance(index, int) else len(self.st.items) + 1_000_000
            self.st.items[key] = item

    def text_delta(self, ev: dict[str, object]) -> None:
        _append(self.st.texts, ev, "delta")

    def text_done(self, ev: dict[str, object]) -> None:
        _store(self.st.texts_done, ev, "text")

    def args_delta(self, ev: dict[str, object]) -> None:
        _append(self.st.args, ev, "delta")

    def args_done(self, ev: dict[str, object]) -> None:
        _store(self.st.args_done, ev, "arguments")
        _store(self.st.args_done, ev, "input")

    def error(self, ev: dict[str, object]) -> None:
        self.out.error = error_of(ev)
        self.out.is_terminal = True

    def rate_limits(self, ev: dict[str, object]) -> None:
        self.out.rate_limits = ev

    def chat_chunk(self, ev: dict[str, object]) -> None:
        self.st.is_chat = True
        self.out.response_id = get_str(ev, "id") or self.out.response_id
        self.out.model = get_str(ev, "model") or self.out.model
        self.out.usage = merge_usage(self.out.usage, get_dict(ev, "usage"))
        for raw in get_list(ev, "choices") or []:
            self.chat_choice(as_dict(raw) or {})

    def chat_choice(self, choice: dict[str, object]) -> None:
        delta = get_dict(choice, "delta") or get_dict(choice, "message") or {}
        if isinstance(delta.get("content"), str):
            self.st.chat_text.append(str(delta["content"]))
        for raw in get_list(delta, "tool_calls") or []:
            _chat_tool_delta(self.st.chat_tools, as_dict(raw) or {})
        reason = get_str(choice, "finish_reason")
        if reason:
            self.out.stop_reason = reason
            self.out.is_terminal = True

    def facts(self) -> ResponseFacts:
        out = self.out
        if self.st.is_chat:
            out.text = "".join(self.st.chat_text)
            out.tool_calls = [dict(c) for _, c in sorted(self.st.chat_tools.items())]
            return out
        st = self.st
        if st.final_output or st.items or st.texts or st.texts_done:  # else no text, no calls: the defaults
            items = _output_items(st)
            out.text = "".join(_item_text(st, item) for item in items if item.get("type") == "message")
            out.text += _orphan_text(st, items)
            out.tool_calls = [_tool_call(st, item) for item in items if _is_call(item)]
        if out.stop_reason is None and out.status is not None and out.status not in _OPEN_STATUSES:
            out.stop_reason = out.status
        return out


def _append(target: dict[str, list[str]], ev: dict[str, object], key: str) -> None:
    item_id, value = get_str(ev, "item_id") or "", ev.get(key)
    if isinstance(value, str):
        target.setdefault(item_id, []).append(value)


def _store(target: dict[str, str], ev: dict[str, object], key: str) -> None:
    item_id, value = get_str(ev, "item_id") or "", ev.get(key)
    if isinstance(value, str):
        target[item_id] = value


def _chat_tool_delta(tools: dict[int, dict[str, object]], delta: dict[str, object]) -> None:
    index = delta.get("index")
    call = tools.setdefault(index if isinstance(index, int) else len(tools), {"name": None, "id": None, "arguments": ""})
    function = get_dict(delta, "function") or {}
    call["id"] = get_str(delta, "id") or call["id"]
    call["name"] = get_str(function, "name") or call["name"]
    if isinstance(function.get("arguments"), str):
        call["arguments"] = str(call["arguments"]) + str(function["arguments"])


def _output_items(st: _Stream) -> list[dict[str, object]]:
    if st.final_output:
        return [d for d in (as_dict(raw) for raw in st.final_output) if d is not None]
    return [st.items[k] for k in sorted(st.items)]


def _item_text(st: _Stream, item: dict[str, object]) -> str:
    """The message's output_text parts, else its `.done` text, else its deltas."""
    parts = [get_str(as_dict(p), "text") or "" for p in get_list(item, "content") or []
             if (as_dict(p) or {}).get("type") in ("output_text", "text")]
    if any(parts):
        return "".join(parts)
    item_id = get_str(item, "id") or ""
    return st.texts_done.get(item_id) or "".join(st.texts.get(item_id, []))


def _orphan_text(st: _Stream, items: list[dict[str, object]]) -> str:
    """Text streamed for items never announced (a cut stream, or events out of order)."""
    known = {get_str(item, "id") for item in items}
    ids = [i for i in dict.fromkeys([*st.texts, *st.texts_done]) if i not in known]
    return "".join(st.texts_done.get(i) or "".join(st.texts.get(i, [])) for i in ids)


def _is_call(item: dict[str, object]) -> bool:
    kind = get_str(item, "type")
    return kind is not None and kind.endswith("_call")


def _tool_call(st: _Stream, item: dict[str, object]) -> dict[str, object]:
    item_id = get_str(item, "id") or ""
    streamed = st.args_done.get(item_id) or "".join(st.args.get(item_id, []))
    call: dict[str, object] = {
        "name": get_str(item, "name") or get_str(item, "type"),
        "id": get_str(item, "call_id") or get_str(item, "id"),
    }
    if item.get("type") == "custom_tool_call":
        call["input"] = get_str(item, "input") or streamed
    elif item.get("type") == "function_call":
        call["arguments"] = get_str(item, "arguments") or streamed
    return call


_HANDLERS = {
    "response.created": _Fold.response_event,
    "response.in_progress": _Fold.response_event,
    "response.queued": _Fold.response_event,
    "response.output_item.added": _Fold.item,
    "response.output_item.done": _Fold.item,
    "response.output_text.delta": _Fold.text_delta,
    "response.output_text.done": _Fold.text_done,
    "response.function_call_arguments.delta": _Fold.args_delta,
    "response.function_call_arguments.done": _Fold.args_done,
    "response.custom_tool_call_input.delta": _Fold.args_delta,
    "response.custom_tool_call_input.done": _Fold.args_done,
    "error": _Fold.error,
    "codex.rate_limits": _Fold.rate_limits,
}


FOLDED_EVENTS = frozenset(_HANDLERS) | TERMINAL_EVENTS  # event types that change a fold (typed events)


def _settled_text(st: _Stream) -> bool:
    """Whether text deltas cannot change the line: the final output gives every
    message its text, and that text does not open like a generated title (deltas
    of items it does not name would only be appended after it)."""
    if not st.final_output:
        return False
    texts = []
    for item in _output_items(st):
        if item.get("type") == "message":
            parts = [get_str(as_dict(p), "text") or "" for p in get_list(item, "content") or []
                     if (as_dict(p) or {}).get("type") in ("output_text", "text")]
            if not any(parts):
                return False
            texts.append("".join(parts))
    head = "".join(texts).lstrip()
    return bool(head) and not head.startswith("{")


def fold_settled(events: Iterable[object]) -> ResponseFacts | None:
    """Facts of a stream from its events other than deltas, when the terminal
    output settles what the deltas would add (see `_settled_text`; tool-call
    arguments then come from the output items), else None: fold them all."""
    fold = _Fold()
    for event in events:
        fold.event(event)
    return fold.facts() if _settled_text(fold.st) else None


def fold_events(events: Iterable[object]) -> ResponseFacts:
    """Facts of a streamed response from its event dicts (SSE data or WebSocket frames), in order."""
    fold = _Fold()
    for event in events:
        fold.event(event)
    return fold.facts()


def fold_typed(events: Iterable[tuple[str | None, dict[str, object]]]) -> ResponseFacts:
    """As `fold_events`, given each event with the type its head named (None: not
    read): text deltas, most of a stream, skip the general dispatch."""
    fold = _Fold()
    texts = fold.st.texts
    for kind, ev in events:
        if kind == TEXT_DELTA and ev.get("type") == TEXT_DELTA and "data" not in ev:  # as `_append`
            item_id, value = ev.get("item_id"), ev.get("delta")
            if isinstance(value, str):
                texts.setdefault(item_id if isinstance(item_id, str) and item_id else "", []).append(value)
        else:
            fold.event(ev)
    return fold.facts()


def response_facts(body: object) -> ResponseFacts:
    """Facts of a JSON response: a Responses object, a chat completion, or an error body."""
    obj = as_dict(body)
    if obj is None:
        return ResponseFacts()
    fold = _Fold()
    if get_list(obj, "choices") is not None:
        fold.chat_chunk(obj)
    elif obj.get("object") == "response" or "output" in obj or "status" in obj:
        fold.response(obj)
        fold.out.is_terminal = fold.out.status not in _OPEN_STATUSES
    elif get_dict(obj, "error") is not None:
        fold.out.error = error_of(obj)
        fold.out.is_terminal = True
    return fold.facts()
