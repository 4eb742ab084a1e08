"""Long agent sessions that grow like real ones, for the storage tests and benchmark.

Each generator yields the request bodies (dicts) of one session, turn by
turn: a large system prompt with a marker text in it, a tool list, and a
history that grows by tool calls and tool results, gets a system-reminder
now and then, moves Claude Code's cache_control mark to the newest message,
and is compacted once (rewritten to a summary) part way through.
Deterministic: the same arguments give the same bodies.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

SYSTEM_MARKER = "SYSTEM-PROMPT-MARKER-7f3a"
REMINDER = "<system-reminder>\nThe user's files changed; re-read before editing.\n</system-reminder>"


def _filler(seed: int, size: int) -> str:
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
    out, n, length = [], seed, 0
    while length < size:
        n = (n * 1103515245 + 12345) % (1 << 31)
        out.append(words[n % len(words)])
        length += len(out[-1]) + 1
    return " ".join(out)


def claude_system(session: str = "s") -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli;"},
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": f"{SYSTEM_MARKER} You are an interactive agent. {_filler(1, 24000)}\n"
                                 f"<env>\nWorking directory: /home/user/{session}\n</env>",
         "cache_control": {"type": "ephemeral"}},
    ]


def tool_list(count: int = 18) -> list[dict[str, Any]]:
    return [{"name": f"Tool{i}", "description": _filler(100 + i, 1500),
             "input_schema": {"type": "object", "properties": {"arg": {"type": "string"}}, "required": ["arg"]}}
            for i in range(count)]


def _with_cache_mark(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claude Code marks only the newest message for caching: earlier ones lose the mark."""
    marked: list[dict[str, Any]] = json.loads(json.dumps(messages))
    last = marked[-1]
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    last["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return marked


def claude_session(turns: int = 200, session: str = "claude-session-1", compact_at: int = 120) -> Iterator[dict[str, Any]]:
    """Bodies of a Claude Code session of ``turns`` requests."""
    system, tools = claude_system(session), tool_list()
    history: list[dict[str, Any]] = [{"role": "user", "content": "Fix the failing test in the parser."}]
    for turn in range(turns):
        if turn == compact_at:
            history = [{"role": "user", "content": f"This session is being continued. Summary: {_filler(turn, 3000)}"}]
        yield {"model": "claude-haiku-4-5", "max_tokens": 32000, "system": system, "tools": tools,
               "messages": _with_cache_mark(history),
               "metadata": {"user_id": json.dumps({"device_id": "d1", "session_id": session})},
               "stream": True}
        tool_id = f"toolu_{turn:04d}"
        history.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Step {turn}: {_filler(turn, 200)}"},
            {"type": "tool_use", "id": tool_id, "name": f"Tool{turn % 18}", "input": {"arg": f"file{turn}.py"}}]})
        result: list[dict[str, Any]] = [{"type": "tool_result", "tool_use_id": tool_id,
                                         "content": _filler(turn + 7, 600 + (turn * 37) % 1400)}]
        if turn % 9 == 4:
            result.append({"type": "text", "text": REMINDER})
        history.append({"role": "user", "content": result})


def codex_instructions() -> str:
    return f"You are Codex, a coding agent based on GPT-5. {SYSTEM_MARKER} {_filler(2, 20000)}"


def codex_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "name": f"tool_{i}", "description": _filler(200 + i, 800),
             "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}} for i in range(10)]


def _codex_turn_items(turn: int) -> list[dict[str, Any]]:
    call_id = f"call_{turn:04d}"
    items: list[dict[str, Any]] = [
        {"type": "reasoning", "summary": [], "encrypted_content": _filler(turn + 3, 400)},
        {"type": "function_call", "name": f"tool_{turn % 10}", "arguments": json.dumps({"cmd": f"ls {turn}"}),
         "call_id": call_id},
        {"type": "function_call_output", "call_id": call_id, "output": _filler(turn + 11, 500 + (turn * 53) % 1500)},
    ]
    if turn % 11 == 5:
        items.append({"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": REMINDER}]})
    return items


def codex_session(turns: int = 200, session: str = "codex-session-1", compact_at: int = 120) -> Iterator[dict[str, Any]]:
    """Bodies of a Codex session over HTTP: every request carries all input so far."""
    instructions, tools = codex_instructions(), codex_tools()
    history: list[dict[str, Any]] = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: workspace-write"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Add a --json flag."}]},
    ]
    for turn in range(turns):
        if turn == compact_at:
            history = [history[0], {"type": "compaction_summary", "encrypted_content": _filler(turn, 3000)}]
        yield {"model": "gpt-5.5", "instructions": instructions, "input": list(history), "tools": tools,
               "tool_choice": "auto", "parallel_tool_calls": False, "store": False, "stream": True,
               "prompt_cache_key": session, "client_metadata": {"session_id": session}}
        history += _codex_turn_items(turn)


def codex_ws_frames(turns: int = 200, session: str = "codex-ws-1") -> Iterator[dict[str, Any]]:
    """``response.create`` frames of a Codex WebSocket session: after the first,
    each carries only the items not sent yet, on top of ``previous_response_id``."""
    instructions, tools = codex_instructions(), codex_tools()
    first = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Add a --json flag."}]}]
    for turn in range(turns):
        items = first if turn == 0 else _codex_turn_items(turn)
        frame: dict[str, Any] = {"type": "response.create", "model": "gpt-5.5", "instructions": instructions,
                                 "input": items, "tools": tools, "tool_choice": "auto", "store": False,
                                 "stream": True, "prompt_cache_key": session}
        if turn:
            frame["previous_response_id"] = f"resp_{turn - 1}"
        yield frame
