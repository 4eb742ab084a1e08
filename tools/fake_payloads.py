"""Canned bodies the fake upstream answers with, shaped like the captured traffic.

Anthropic Messages (JSON and the SSE sequence), OpenAI Responses / Codex
events (shared by HTTP SSE and the WebSocket), Chat Completions (JSON and
chunks), benchmark frames and deterministic filler (``PATTERN``), plus the
JSON and SSE encoders they go out through. Pure builders: they take the
request and a number that keeps ids unique; the only clock they read is
``time.time()`` for the ``created`` timestamps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any


Json = dict[str, Any]

PIECE_BYTES = 65536  # big bodies go out in pieces of this size

DEFAULT_MODEL = "gpt-5.5"
REPLY_TEXT = "hi"
REPLY_DELTAS = ("h", "i", "")  # joined, they are REPLY_TEXT
ANTHROPIC_USAGE: Json = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 3,
    "output_tokens": 1,
}
ANTHROPIC_OUTPUT_TOKENS = 2
RESPONSES_USAGE: Json = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens": 2,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 14,
}
PREWARM_USAGE: Json = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 0,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 12,
}
MODELS_BODY: Json = {
    "object": "list",
    "data": [{"id": "gpt-5.5", "object": "model"}],
    "models": [],
}

PATTERN = b"0123456789abcdef" * (PIECE_BYTES // 16)  # deterministic filler


def json_bytes(obj: Any) -> bytes:
    """Compact JSON, as the real APIs send it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def sse_event(name: str, obj: Any) -> bytes:
    """One ``event: NAME`` / ``data: JSON`` SSE event."""
    return b"event: " + name.encode() + b"\ndata: " + json_bytes(obj) + b"\n\n"


def sse_data(payload: bytes) -> bytes:
    """One unnamed SSE event."""
    return b"data: " + payload + b"\n\n"


def pattern_pieces(size: int) -> Iterator[bytes]:
    """``size`` bytes of PATTERN in pieces of at most PIECE_BYTES, without building them whole."""
    full, rest = divmod(size, PIECE_BYTES)
    for _ in range(full):
        yield PATTERN
    if rest:
        yield PATTERN[:rest]


def pattern_bytes(size: int) -> bytes:
    return b"".join(pattern_pieces(size))


def anthropic_message(model: str, msg_id: str) -> Json:
    """A non-streaming Messages API answer."""
    usage = dict(ANTHROPIC_USAGE, output_tokens=ANTHROPIC_OUTPUT_TOKENS)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_events(model: str, msg_id: str) -> list[bytes]:
    """The Messages API SSE sequence, message_start through message_stop."""
    message = dict(anthropic_message(model, msg_id), content=[], stop_reason=None)
    message["usage"] = dict(ANTHROPIC_USAGE)
    events: list[tuple[str, Json]] = [
        ("message_start", {"message": message}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for delta in REPLY_DELTAS:
        block_delta = {"index": 0, "delta": {"type": "text_delta", "text": delta}}
        events.append(("content_block_delta", block_delta))
    events += [
        ("content_block_stop", {"index": 0}),
        (
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": ANTHROPIC_OUTPUT_TOKENS},
            },
        ),
        ("message_stop", {}),
    ]
    return [sse_event(name, {"type": name, **body}) for name, body in events]


def response_object(model: str, resp_id: str, status: str, **fields: Any) -> Json:
    """A Responses API ``response`` object in the shape of the captured traffic."""
    obj: Json = {
        "id": resp_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": None,
    }
    obj.update(fields)
    return obj


def message_item(msg_id: str, text: str, status: str) -> Json:
    """An assistant ``message`` output item."""
    content = [output_text_part(text)] if status == "completed" else []
    return {
        "id": msg_id,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def output_text_part(text: str) -> Json:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def prewarm_events(model: str, resp_id: str) -> list[Json]:
    """Codex's ``generate: false`` warm-up: created, then completed without output."""
    base = {"generate": False}
    return _numbered(
        [
            {"type": "response.created", "response": response_object(model, resp_id, "in_progress", **base)},
            {
                "type": "response.completed",
                "response": response_object(model, resp_id, "completed", usage=PREWARM_USAGE, **base),
            },
        ]
    )


def turn_events(model: str, resp_id: str, msg_id: str, previous_id: str | None) -> list[Json]:
    """A full Responses turn that answers REPLY_TEXT, ending in response.completed."""
    started = response_object(model, resp_id, "in_progress", previous_response_id=previous_id)
    where = {"item_id": msg_id, "output_index": 0, "content_index": 0}
    done_item = message_item(msg_id, REPLY_TEXT, "completed")
    events: list[Json] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": message_item(msg_id, "", "in_progress")},
        {"type": "response.content_part.added", **where, "part": output_text_part("")},
    ]
    for delta in REPLY_DELTAS:
        events.append({"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []})
    completed = dict(started, status="completed", output=[done_item], usage=RESPONSES_USAGE)
    events += [
        {"type": "response.output_text.done", **where, "text": REPLY_TEXT, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": output_text_part(REPLY_TEXT)},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {"type": "response.completed", "response": completed},
    ]
    return _numbered(events)


def _numbered(events: list[Json]) -> list[Json]:
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def codex_events(request: Json, number: int) -> list[Json]:
    """What the fake sends for one ``response.create`` (HTTP or WebSocket)."""
    model = str(request.get("model") or DEFAULT_MODEL)
    if request.get("generate") is False:
        return prewarm_events(model, f"resp_prewarm_{number}")
    previous = request.get("previous_response_id")
    previous_id = previous if isinstance(previous, str) else None
    return turn_events(model, f"resp_fake_{number}", f"msg_fake_{number}", previous_id)


def chat_completion(model: str, number: int) -> Json:
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }


def chat_chunks(model: str, number: int) -> list[bytes]:
    """Chat Completions streaming: role, content deltas, finish, then ``[DONE]``."""
    base = {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    deltas: list[tuple[Json, str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": text}, None) for text in REPLY_DELTAS]
    deltas.append(({}, "stop"))
    chunks = [
        sse_data(json_bytes(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])))
        for delta, finish in deltas
    ]
    return chunks + [sse_data(b"[DONE]")]


def bench_frames(count: int) -> list[str]:
    """``count`` Responses-style text frames of about 200 bytes each, for benchmarks."""
    head = (
        '{"type":"response.output_text.delta","content_index":0,"delta":"'
        + "x" * 48
        + '","item_id":"msg_fake_bench","logprobs":[],"obfuscation":"fakefakefake",'
        + '"output_index":0,"sequence_number":'
    )
    return [f"{head}{number}}}" for number in range(count)]


def bench_turn_frames(count: int) -> list[str]:
    """One Codex turn of ``count`` events for benchmarks: ``count - 1`` text
    deltas of ``bench_frames`` and a ``response.completed`` with usage."""
    completed = json.dumps({
        "type": "response.completed", "sequence_number": count - 1,
        "response": {"id": "resp_fake_bench", "object": "response", "status": "completed", "model": DEFAULT_MODEL,
                     "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024},
                               "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 0},
                               "total_tokens": 1240}},
    }, separators=(",", ":"))
    return bench_frames(max(0, count - 1)) + [completed]


def parse_json_object(body: bytes | str) -> Json:
    """The body as a JSON object, or {} when it is not one."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


AGENT_THINKING = "The user wants the file; read it first."
AGENT_TOOL_INPUT: Json = {"file_path": "notes.txt"}
AGENT_FINAL_TEXT = "The notes say: ship it."


def _has_tool_result(request: Json) -> bool:
    messages = request.get("messages")
    contents = [m.get("content") for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    return any(isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content) for content in contents)


def _agent_blocks(request: Json, number: int) -> tuple[list[tuple[Json, list[Json]]], str]:
    """(content_block, its deltas) pairs and the stop reason of one agent step."""
    thinking = ({"type": "thinking", "thinking": "", "signature": ""},
                [{"type": "thinking_delta", "thinking": AGENT_THINKING[:20]},
                 {"type": "thinking_delta", "thinking": AGENT_THINKING[20:]},
                 {"type": "signature_delta", "signature": "sig"}])
    if _has_tool_result(request):
        text = AGENT_FINAL_TEXT
        return [thinking, ({"type": "text", "text": ""},
                           [{"type": "text_delta", "text": text[:9]}, {"type": "text_delta", "text": text[9:]}])], "end_turn"
    tool = {"type": "tool_use", "id": f"toolu_fake_{number}", "name": "Read", "input": {}}
    raw = json.dumps(AGENT_TOOL_INPUT)
    return [thinking, ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Let me read it."}]),
            (tool, [{"type": "input_json_delta", "partial_json": raw[:7]},
                    {"type": "input_json_delta", "partial_json": raw[7:]}])], "tool_use"


def anthropic_agent_events(request: Json, number: int) -> list[bytes]:
    """A Claude Code-like step: thinking, text and a Read tool call; once the
    request carries the tool's result, thinking and a final answer."""
    model = str(request.get("model") or "claude-fake")
    message = dict(anthropic_message(model, f"msg_agent_{number}"), content=[], stop_reason=None)
    message["usage"] = dict(ANTHROPIC_USAGE)
    blocks, stop = _agent_blocks(request, number)
    events: list[tuple[str, Json]] = [("message_start", {"message": message})]
    for index, (block, deltas) in enumerate(blocks):
        events.append(("content_block_start", {"index": index, "content_block": block}))
        events += [("content_block_delta", {"index": index, "delta": delta}) for delta in deltas]
        events.append(("content_block_stop", {"index": index}))
    events += [("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                  "usage": {"output_tokens": 20 + number % 7}}),
               ("message_stop", {})]
    return [sse_event(name, {"type": name, **body}) for name, body in events]
