"""Requests and responses as the page's conversation: every format, odd input included."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxray.conversation import conversation, reply
from ccxray.summarize import generated_title
from ccxray.sysparts import client_version, estimate_tokens, system_parts


def sse(name: str, body: dict[str, object]) -> dict[str, object]:
    return {"event": name, "data": {"type": name, **body}}


def kinds(items: list[dict[str, object]]) -> list[object]:
    return [i["kind"] for i in items]


def test_anthropic_request_blocks() -> None:
    conv = conversation({
        "system": [{"type": "text", "text": "core"}, {"type": "text", "text": "more"}],
        "tools": [{"name": "Read"}, {"name": "mcp__git__log"}, {}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                         {"type": "text", "text": "hi"}, {"type": "image", "source": {}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"},
                                              {"type": "redacted_thinking", "data": "..."},
                                              {"type": "tool_use", "id": "t1", "name": "Read", "input": {"p": 1}},
                                              {"type": "mystery", "x": 1}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                          "content": [{"type": "text", "text": "boom"}, {"type": "image"}]}]},
            {"role": "user", "content": "plain"},
        ]})
    assert conv["format"] == "anthropic" and conv["system"] == "core\n\nmore"
    assert conv["tools"] == ["Read", "mcp__git__log", "(unnamed tool)"]
    first, second, third, fourth = conv["messages"]
    assert kinds(first["items"]) == ["injected", "text", "image"]
    assert kinds(second["items"]) == ["thinking", "thinking", "tool_call", "unknown"]
    assert second["items"][1]["text"] == "(redacted)" and second["items"][3]["type"] == "mystery"
    assert third["items"][0]["isError"] and third["items"][0]["text"].startswith("boom\n")
    assert fourth["items"] == [{"kind": "text", "text": "plain"}]


def test_responses_input_items_including_a_nameless_web_search() -> None:
    conv = conversation({"type": "response.create", "instructions": "be codex", "tools": [{"type": "web_search"},
                         {"type": "function", "name": "shell"}], "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<environment_context>cwd</environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}, {"type": "input_image"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "zzz"},
        {"type": "function_call", "name": "shell", "call_id": "c1", "arguments": '{"cmd": ["ls"]}'},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "web_search_call", "id": "ws1", "action": {"query": "python"}},
        {"type": "brand_new_item"}, "bare string"]})
    assert conv["format"] == "responses" and conv["system"] == "be codex" and conv["tools"] == ["web_search", "shell"]
    roles = [m["role"] for m in conv["messages"]]
    assert roles == ["developer", "user", "assistant", "tool", "assistant", "user"]
    assistant = conv["messages"][2]["items"]
    assert [i["text"] for i in assistant[:2]] == ["plan", "(encrypted)"]
    assert assistant[2]["input"] == {"cmd": ["ls"]}
    assert conv["messages"][3]["items"][0]["text"] == "a.txt"
    assert conv["messages"][4]["items"][0]["kind"] == "web_search" and conv["messages"][4]["items"][0]["text"] == "python"
    assert conv["messages"][4]["items"][1]["kind"] == "unknown"
    assert conv["messages"][0]["items"][0]["kind"] == "injected"


def test_chat_completions_request() -> None:
    conv = conversation({"messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": "42"}]})
    assert conv["format"] == "chat" and conv["system"] == "sys"
    assert [kinds(m["items"]) for m in conv["messages"]] == [["text"], ["tool_call"], ["tool_result"]]


def test_anthropic_stream_reassembled_and_a_cut_stream_is_partial() -> None:
    events = [sse("message_start", {"message": {}}),
              sse("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
              sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "a"}}),
              sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "b"}}),
              sse("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
              sse("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Hel"}}),
              sse("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "lo"}}),
              sse("content_block_start", {"index": 2, "content_block": {"type": "tool_use", "id": "t", "name": "Bash", "input": {}}}),
              sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"c'}}),
              sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": 'md": "ls"}'}}),
              sse("content_block_delta", {"index": 9, "delta": {"type": "text_delta", "text": "orphan"}})]
    cut = reply(events)
    assert cut["partial"] and [i.get("text") for i in cut["items"][:2]] == ["ab", "Hello"]
    assert cut["items"][2]["input"] == {"cmd": "ls"}
    whole = reply(events + [sse("message_stop", {})])
    assert not whole["partial"]
    half = reply(events[:9])
    assert half["items"][2]["input"] == '{"c'  # unparseable JSON stays the text it was


def test_responses_stream_final_output_or_deltas() -> None:
    final = {"type": "response.completed", "response": {"output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}]}}
    deltas = [{"type": "response.output_text.delta", "output_index": 0, "delta": "do"},
              {"type": "response.output_text.delta", "output_index": 0, "delta": "ne"}]
    assert reply(deltas + [final]) == {"items": [{"kind": "text", "text": "done"}], "partial": False}
    assert reply(deltas) == {"items": [{"kind": "text", "text": "done"}], "partial": True}
    failed = reply([{"type": "response.failed", "response": {"output": [], "error": {"message": "quota"}}}])
    assert failed["partial"] and "quota" in failed["items"][0]["text"]
    errored = reply([{"type": "error", "error": {"message": "bad"}}])
    assert "bad" in errored["items"][0]["text"]


@pytest.mark.parametrize(("body", "expected"), [
    ({"type": "message", "content": [{"type": "text", "text": "x"}]}, ["text"]),
    ({"output": [{"type": "function_call", "name": "f", "arguments": "not json"}]}, ["tool_call"]),
    ({"choices": [{"message": {"role": "assistant", "content": "c"}}]}, ["text"]),
    ({"error": {"type": "overloaded"}}, ["unknown"]),
    (None, []),
])
def test_reply_from_json_bodies(body: object, expected: list[str]) -> None:
    assert kinds(reply(body)["items"]) == expected


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                               st.sampled_from(["type", "role", "content", "messages", "input", "system", "output",
                                                "index", "delta", "text", "tools", "name", "response"]), inner, max_size=5),
                           max_leaves=25)


@given(json_values)
def test_never_raises_on_any_json(value: object) -> None:
    json.dumps(conversation(value))
    json.dumps(reply(value))
    system_parts(conversation(value))


def test_system_parts_and_client_version() -> None:
    conv = conversation({"system": "You are Claude Code.\n# Environment\ncwd: /x", "tools": [{"name": "Read"}, {"name": "mcp__a__b"}],
                         "messages": [{"role": "user", "content": [
                             {"type": "text", "text": "<system-reminder>Contents of /x/CLAUDE.md: rules</system-reminder>"},
                             {"type": "text", "text": "<system-reminder>The following skills are available: pdf</system-reminder>"},
                             {"type": "text", "text": "<system-reminder>Today is Monday</system-reminder>"}]}]})
    names = [p["name"] for p in system_parts(conv)]
    assert names == ["core instructions", "environment", "project instructions (CLAUDE.md / AGENTS.md)", "skills",
                     "tools (1)", "MCP tools (1)"]
    assert estimate_tokens("abcde") == 2
    assert client_version("x cc_version=2.1.197.abc;", "claude-cli/2.1.197") == "claude-code 2.1.197"
    assert client_version("codex", "codex_exec/0.169.0 (Linux)") == "codex_exec/0.169.0"
    assert client_version("", None) is None
    assert system_parts(conversation({"system": "just core"}))[0]["name"] == "core instructions"


@pytest.mark.parametrize(("text", "title"), [
    ('{"title": " Fix the parser "}', "Fix the parser"), ("hello", None), ('{"title": 3}', None),
    ("{bad", None), ('{"title": ""}', None), ('{"title": "' + "x" * 2000 + '"}', None),
])
def test_generated_title_from_claude_codes_title_calls(text: str, title: str | None) -> None:
    assert generated_title(text) == title
