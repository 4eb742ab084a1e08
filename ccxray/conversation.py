"""A recorded request and response as a conversation the page can draw (pure).

``conversation(request)`` turns an Anthropic Messages body, an OpenAI
Responses body (HTTP or a WebSocket ``response.create``) or a Chat
Completions body into ``{"format", "system", "tools", "messages"}``, each
message ``{"role", "items"}``. ``reply(response)`` reassembles what the
model said from a JSON body or a list of SSE / WebSocket events: the
deltas are joined, never shown as deltas.

An item is a plain dict: ``kind`` (text, thinking, injected, tool_call,
tool_result, reasoning, web_search, image, unknown), ``text``, and for
tools ``name``, ``id``, ``input`` / ``isError``. Whatever is odd (a tool
without a name, an unknown block, a stream cut short) becomes an item that
says so; nothing here raises on any JSON-shaped value.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from .wire import as_dict, as_list, unwrap_event

Item = dict[str, Any]
# Text the client injects into a user turn (reminders, hook output, command echoes).
INJECTED = re.compile(r"^\s*<(system-reminder|command-[a-z]+|local-command-[a-z]+|user-prompt-submit-hook|"
                      r"environment_context|user_instructions|permissions[a-z_ ]*|turn_aborted)\b")


def _text_item(text: str) -> Item:
    return {"kind": "injected" if INJECTED.match(text) else "text", "text": text}


def _json_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)


def _result_text(content: object) -> str:
    """A tool result's content: a string, or text blocks joined (others as JSON)."""
    blocks = as_list(content)
    if blocks is None:
        return _json_text(content) if content is not None else ""
    parts = []
    for raw in blocks:
        block = as_dict(raw) or {}
        parts.append(str(block["text"]) if block.get("type") == "text" and "text" in block else _json_text(raw))
    return "\n".join(parts)


def _unknown(raw: object) -> Item:
    kind = (as_dict(raw) or {}).get("type")
    return {"kind": "unknown", "type": str(kind) if kind is not None else None, "text": _json_text(raw)}


def anthropic_block(raw: object) -> Item:
    """One content block of a Messages request or response."""
    if isinstance(raw, str):
        return _text_item(raw)
    block = as_dict(raw)
    kind = block.get("type") if block else None
    if block is None:
        return _unknown(raw)
    if kind == "text":
        return _text_item(str(block.get("text") or ""))
    if kind in ("thinking", "redacted_thinking"):
        return {"kind": "thinking", "text": str(block.get("thinking") or "(redacted)")}
    if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
        return {"kind": "tool_call", "name": block.get("name"), "id": block.get("id"), "input": block.get("input")}
    if kind in ("tool_result", "web_search_tool_result", "mcp_tool_result"):
        return {"kind": "tool_result", "id": block.get("tool_use_id"), "text": _result_text(block.get("content")),
                "isError": bool(block.get("is_error"))}
    if kind in ("image", "document"):
        return {"kind": "image", "text": f"[{kind}]"}
    return _unknown(raw)


def _anthropic_message(raw: object) -> dict[str, Any]:
    msg = as_dict(raw) or {}
    content = msg.get("content")
    blocks = as_list(content)
    items = [anthropic_block(b) for b in blocks] if blocks is not None else [anthropic_block(content or "")]
    return {"role": str(msg.get("role") or "?"), "items": items}


def _system_text(system: object) -> str | None:
    if isinstance(system, str):
        return system
    blocks = as_list(system)
    if blocks is None:
        return None
    return "\n\n".join(str((as_dict(b) or {}).get("text") or "") for b in blocks)


def _tool_names(tools: object) -> list[str]:
    names = []
    for raw in as_list(tools) or []:
        tool = as_dict(raw) or {}
        fn = as_dict(tool.get("function")) or {}
        name = tool.get("name") or fn.get("name") or tool.get("type")
        names.append(str(name) if name else "(unnamed tool)")
    return names


def _part_text(raw: object) -> Item:
    part = as_dict(raw)
    if part is None:
        return _text_item(raw) if isinstance(raw, str) else _unknown(raw)
    if part.get("type") in ("input_text", "output_text", "text", "summary_text"):
        return _text_item(str(part.get("text") or ""))
    if part.get("type") in ("input_image", "input_file", "image_url"):
        return {"kind": "image", "text": f"[{part.get('type')}]"}
    return _unknown(raw)


def responses_item(raw: object) -> list[Item]:
    """One Responses input/output item (a message may give several)."""
    item = as_dict(raw)
    if item is None:
        return [_text_item(raw)] if isinstance(raw, str) else [_unknown(raw)]
    kind = item.get("type")
    if kind == "message" or (kind is None and "role" in item):
        content = item.get("content")
        parts = as_list(content)
        return [_part_text(p) for p in parts] if parts is not None else [_text_item(str(content or ""))]
    if kind in ("function_call", "custom_tool_call", "local_shell_call", "mcp_call", "tool_search_call"):
        args = item.get("arguments", item.get("input", item.get("action")))
        return [{"kind": "tool_call", "name": item.get("name") or kind, "id": item.get("call_id") or item.get("id"),
                 "input": _maybe_json(args)}]
    if kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output", "mcp_call_output"):
        return [{"kind": "tool_result", "id": item.get("call_id"), "text": _result_text(_maybe_json(item.get("output"))),
                 "isError": False}]
    if kind == "reasoning":
        summary = [str((as_dict(s) or {}).get("text") or "") for s in as_list(item.get("summary")) or []]
        text = "\n".join(s for s in summary if s) or ("(encrypted)" if item.get("encrypted_content") else "")
        return [{"kind": "reasoning", "text": text}]
    if kind == "web_search_call":
        action = as_dict(item.get("action")) or {}
        return [{"kind": "web_search", "name": "web_search", "id": item.get("id"),
                 "text": str(action.get("query") or action.get("url") or item.get("status") or "")}]
    return [_unknown(raw)]


def _maybe_json(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            parsed: object = json.loads(value)
            return parsed
        except ValueError:
            return value
    return value


def _role(raw: object) -> str:
    item = as_dict(raw) or {}
    if item.get("role"):
        return str(item["role"])
    kind = str(item.get("type") or "")
    return "tool" if kind.endswith("_output") else "assistant" if kind else "user"


def _responses_messages(items: list[object]) -> list[dict[str, Any]]:
    """Consecutive items of the same role form one message."""
    messages: list[dict[str, Any]] = []
    for raw in items:
        role = _role(raw)
        if messages and messages[-1]["role"] == role and role != "user":
            messages[-1]["items"] += responses_item(raw)
        else:
            messages.append({"role": role, "items": responses_item(raw)})
    return messages


def _chat_message(raw: object) -> dict[str, Any]:
    msg = as_dict(raw) or {}
    content = msg.get("content")
    parts = as_list(content)
    items = [_part_text(p) for p in parts] if parts is not None else ([_text_item(content)] if isinstance(content, str) else [])
    for call in as_list(msg.get("tool_calls")) or []:
        fn = as_dict((as_dict(call) or {}).get("function")) or {}
        items.append({"kind": "tool_call", "name": fn.get("name"), "id": (as_dict(call) or {}).get("id"),
                      "input": _maybe_json(fn.get("arguments"))})
    if msg.get("role") == "tool":
        items = [{"kind": "tool_result", "id": msg.get("tool_call_id"), "text": _result_text(content), "isError": False}]
    return {"role": str(msg.get("role") or "?"), "items": items}


def conversation(request: object) -> dict[str, Any]:
    """The request as system text, tool names and messages (see the module doc)."""
    body = as_dict(request) or {}
    if isinstance(body.get("input"), (list, str)) or body.get("type") == "response.create":
        raw_input = body.get("input")
        items = as_list(raw_input) or ([raw_input] if isinstance(raw_input, str) else [])
        return {"format": "responses", "system": body.get("instructions") if isinstance(body.get("instructions"), str) else None,
                "tools": _tool_names(body.get("tools")), "messages": _responses_messages(items)}
    messages = as_list(body.get("messages"))
    if messages is not None and "system" not in body and any((as_dict(m) or {}).get("role") == "system" for m in messages):
        system = [m for m in messages if (as_dict(m) or {}).get("role") == "system"]
        rest = [m for m in messages if m not in system]
        return {"format": "chat", "system": "\n\n".join(_result_text((as_dict(m) or {}).get("content")) for m in system),
                "tools": _tool_names(body.get("tools")), "messages": [_chat_message(m) for m in rest]}
    return {"format": "anthropic" if messages is not None else "unknown", "system": _system_text(body.get("system")),
            "tools": _tool_names(body.get("tools")), "messages": [_anthropic_message(m) for m in messages or []]}


def reply(response: object) -> dict[str, Any]:
    """What the model answered: ``{"items", "partial"}`` from a body or an event list."""
    events = as_list(response)
    if events is None:
        return _reply_from_body(as_dict(response) or {})
    unwrapped = [as_dict(unwrap_event(e)) or {} for e in events]
    if any(str(e.get("type") or "").startswith(("message_", "content_block_")) for e in unwrapped):
        return _anthropic_stream(unwrapped)
    return _responses_stream(unwrapped)


def _reply_from_body(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("type") == "message" or (body.get("role") == "assistant" and "content" in body):
        return {"items": [anthropic_block(b) for b in as_list(body.get("content")) or []], "partial": False}
    if isinstance(body.get("output"), list):
        return {"items": [i for raw in body["output"] for i in responses_item(raw)], "partial": False}
    choices = as_list(body.get("choices"))
    if choices:
        return {"items": _chat_message((as_dict(choices[0]) or {}).get("message"))["items"], "partial": False}
    if body:
        return {"items": [_unknown(body)], "partial": False}
    return {"items": [], "partial": False}


def _anthropic_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    blocks: dict[int, Item] = {}
    json_parts: dict[int, list[str]] = {}
    done = False
    for ev in events:
        kind, index = ev.get("type"), ev.get("index")
        if kind == "content_block_start" and isinstance(index, int):
            blocks[index] = anthropic_block(ev.get("content_block"))
            json_parts[index] = []
        elif kind == "content_block_delta" and isinstance(index, int) and index in blocks:
            _apply_delta(blocks[index], as_dict(ev.get("delta")) or {}, json_parts[index])
        elif kind == "message_stop":
            done = True
    for index, parts in json_parts.items():
        if parts:
            blocks[index]["input"] = _maybe_json("".join(parts))
    return {"items": [blocks[i] for i in sorted(blocks)], "partial": not done}


def _apply_delta(block: Item, delta: dict[str, Any], json_parts: list[str]) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + str(delta.get("text") or "")
        if block["kind"] == "text" and INJECTED.match(block["text"]):
            block["kind"] = "injected"
    elif kind == "thinking_delta":
        block["text"] = ("" if block.get("text") == "(redacted)" else block.get("text", "")) + str(delta.get("thinking") or "")
    elif kind == "input_json_delta":
        json_parts.append(str(delta.get("partial_json") or ""))


def _responses_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The final ``response`` object's output when there is one, else what the deltas built."""
    for ev in reversed(events):
        final = as_dict(ev.get("response"))
        if ev.get("type") in ("response.completed", "response.incomplete", "response.failed") and final is not None:
            output = as_list(final.get("output")) or []
            items = [i for raw in output for i in responses_item(raw)]
            error = as_dict(final.get("error"))
            if error:
                items.append({"kind": "unknown", "type": "error", "text": _json_text(error)})
            return {"items": items, "partial": ev.get("type") != "response.completed"}
    return {"items": _items_from_deltas(events), "partial": True}


def _items_from_deltas(events: Iterable[dict[str, Any]]) -> list[Item]:
    done: dict[int, list[Item]] = {}
    texts: dict[int, str] = {}
    for ev in events:
        raw_index = ev.get("output_index")
        index = raw_index if isinstance(raw_index, int) else -1
        if ev.get("type") == "response.output_item.done":
            done[index] = responses_item(ev.get("item"))
        elif ev.get("type") == "response.output_text.delta":
            texts[index] = texts.get(index, "") + str(ev.get("delta") or "")
        elif ev.get("type") == "error":
            done[10**9] = [{"kind": "unknown", "type": "error", "text": _json_text(ev.get("error") or ev)}]
    for index, text in texts.items():
        done.setdefault(index, [{"kind": "text", "text": text}])
    return [item for i in sorted(done) for item in done[i]]
