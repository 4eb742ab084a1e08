"""Wire-parser details the mutation check found untested (tools/mutate.py over ccxray/wire/)."""

from __future__ import annotations

import pytest

from ccxray.wire import anthropic, openai


def user(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


@pytest.mark.parametrize("injected", ["<environment_context>x", "<INSTRUCTIONS>y", "<skills_instructions>z",
                                      "<user_instructions>u", "<permissions instructions>p"])
def test_codex_title_skips_client_injected_user_input(injected: str) -> None:
    assert openai.request_facts({"input": [user("say hi"), user(injected)]}).title == "say hi"


def test_in_progress_event_alone_names_the_response() -> None:
    facts = openai.fold_events([{"type": "response.in_progress",
                                 "response": {"id": "r1", "model": "m", "status": "in_progress"}}])
    assert (facts.response_id, facts.model, facts.status, facts.is_terminal) == ("r1", "m", "in_progress", False)


def test_output_item_done_alone_gives_the_text() -> None:
    facts = openai.fold_events([{"type": "response.output_item.done", "output_index": 0, "item": {
        "id": "m1", "type": "message", "content": [{"type": "output_text", "text": "yo"}]}}])
    assert facts.text == "yo" and facts.tool_calls == []


def test_custom_tool_call_input_is_assembled_from_deltas() -> None:
    facts = openai.fold_events([
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "c1", "type": "custom_tool_call", "call_id": "k", "name": "exec", "input": ""}},
        {"type": "response.custom_tool_call_input.delta", "item_id": "c1", "output_index": 0, "delta": "ls "},
        {"type": "response.custom_tool_call_input.delta", "item_id": "c1", "output_index": 0, "delta": "-l"},
    ])
    assert facts.tool_calls == [{"name": "exec", "id": "k", "input": "ls -l"}]


def test_function_call_arguments_from_the_done_item() -> None:
    item = {"id": "c1", "type": "function_call", "call_id": "k", "name": "sh", "arguments": ""}
    facts = openai.fold_events([
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.output_item.done", "output_index": 0, "item": {**item, "arguments": '{"a":1}'}},
    ])
    assert facts.tool_calls == [{"name": "sh", "id": "k", "arguments": '{"a":1}'}]


def test_claude_title_drops_reminders_inside_a_block() -> None:
    messages = [{"role": "user", "content": "first"},
                {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>real question"}]}]
    assert anthropic.request_facts({"messages": messages}).title == "real question"
    messages[1] = {"role": "user", "content": [{"type": "text", "text": "<system-reminder>never closed"}]}
    assert anthropic.request_facts({"messages": messages}).title == "first"


def test_mcp_tool_use_blocks_are_tool_calls() -> None:
    events = [
        {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "mcp_tool_use", "id": "t1", "name": "srv.tool", "input": {"q": 1}}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    assert anthropic.fold_stream(events).tool_calls == [{"name": "srv.tool", "id": "t1", "input": {"q": 1}}]
