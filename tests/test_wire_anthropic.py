"""Anthropic Messages: request facts, the stream fold, JSON responses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxray.wire import anthropic
from ccxray.wire.sse import event_to_json, parse_sse

from .recorded import shared



def fixture(rel: str) -> object:
    return shared(rel)


def claude_code_body() -> dict[str, object]:
    """The shape Claude Code 2.1 sends (REAL_CLIENTS.md)."""
    return {
        "model": "claude-opus-4-8",
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.123; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK."},
            {"type": "text", "text": "Long prompt.\n# Environment\n - Primary working directory: /tmp/w\n"},
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nskills list\n</system-reminder>"},
                {"type": "text", "text": "say   hi\n", "cache_control": {"type": "ephemeral"}},
            ]},
            {"role": "system", "content": "agent types list"},
        ],
        "tools": [{"name": f"T{i}"} for i in range(24)],
        "metadata": {"user_id": '{"device_id":"d","account_uuid":"","session_id":"s-1"}'},
        "stream": True,
    }


def test_fixture_stream_fold() -> None:
    facts = anthropic.fold_stream(fixture("anthropic/turn1_res.json"))  # type: ignore[arg-type]
    assert facts.response_id == "msg_01A"
    assert facts.model == "claude-sonnet-4-20250514"
    assert facts.usage == {"input_tokens": 1200, "output_tokens": 42,
                           "cache_creation_input_tokens": 500, "cache_read_input_tokens": 200}
    assert facts.stop_reason == "end_turn"
    assert facts.text == "Here are the project files:\n- server/\n- public/\n- package.json"
    assert facts.tool_calls == []
    assert facts.is_terminal and facts.error is None


def test_fixture_requests() -> None:
    first = anthropic.request_facts(fixture("anthropic/turn1_req.json"))
    assert (first.model, first.msg_count, first.tool_count) == ("claude-sonnet-4-20250514", 3, 2)
    assert first.title == "What files are in the project?"
    assert first.system_text is not None and first.system_text.startswith("System configuration block\n\n")
    assert first.metadata == {"session_id": "abc123-test-session-001", "user_id": "user-test"}
    assert first.stream is None and not first.is_prewarm
    second = anthropic.request_facts(fixture("anthropic/turn2_req.json"))
    assert (second.msg_count, second.title) == (5, "Show me package.json")


def test_claude_code_request_title_skips_reminders_and_system_messages() -> None:
    facts = anthropic.request_facts(claude_code_body())
    assert facts.title == "say hi"
    assert facts.msg_count == 2 and facts.tool_count == 24 and facts.stream is True
    assert facts.system_text is not None and "Primary working directory" in facts.system_text


def test_long_title_is_cut() -> None:
    facts = anthropic.request_facts({"messages": [{"role": "user", "content": "word " * 50}]})
    assert facts.title is not None and len(facts.title) == 80 and facts.title.endswith("…")


def test_string_system_prompt() -> None:
    assert anthropic.request_facts({"system": "Be brief."}).system_text == "Be brief."


def tool_stream(parts: list[str], stop: bool = True) -> list[object]:
    events: list[object] = [
        {"type": "message_start", "message": {"id": "m", "model": "claude-haiku-4-5", "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Running "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ls."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}},
    ]
    events += [{"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}}
               for p in parts]
    if stop:
        events += [{"type": "content_block_stop", "index": 1},
                   {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
                   {"type": "message_stop"}]
    return events


def test_tool_use_partial_json_is_assembled() -> None:
    facts = anthropic.fold_stream(tool_stream(['{"comm', 'and": "l', 's"}']))
    assert facts.text == "Running ls."
    assert facts.tool_calls == [{"name": "Bash", "id": "toolu_1", "input": {"command": "ls"}}]
    assert facts.stop_reason == "tool_use" and facts.usage == {"input_tokens": 5, "output_tokens": 9}


def test_cut_stream_keeps_what_arrived() -> None:
    facts = anthropic.fold_stream(tool_stream(['{"command": "l'], stop=False))
    assert facts.tool_calls == [{"name": "Bash", "id": "toolu_1", "input": '{"command": "l'}]
    assert not facts.is_terminal and facts.stop_reason is None


def test_tool_use_without_deltas_keeps_start_input() -> None:
    facts = anthropic.fold_stream(tool_stream([]))
    assert facts.tool_calls[0]["input"] == {}


def test_message_delta_usage_merges_over_message_start() -> None:
    facts = anthropic.fold_stream([
        {"type": "message_start", "message": {"usage": {
            "input_tokens": 10, "cache_read_input_tokens": 0, "output_tokens": 1,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {
            "input_tokens": 12, "cache_read_input_tokens": 300, "output_tokens": 50, "server_tool_use": None,
            "cache_creation": {"ephemeral_5m_input_tokens": 7}}},
    ])
    assert facts.usage == {"input_tokens": 12, "cache_read_input_tokens": 300, "output_tokens": 50,
                           "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 0}}


def test_thinking_and_redacted_thinking_are_not_output_text() -> None:
    facts = anthropic.fold_stream([
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "xx"}},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": "Hi"}},
        {"type": "ping"},
        {"type": "message_stop"},
    ])
    assert facts.text == "Hi" and facts.is_terminal


def test_error_event() -> None:
    facts = anthropic.fold_stream([
        {"type": "message_start", "message": {"id": "m"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ])
    assert facts.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert facts.is_terminal


def test_recorded_sse_events_fold_the_same() -> None:
    events = fixture("anthropic/turn1_res.json")
    assert isinstance(events, list)
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    recorded = [event_to_json(ev) for ev in parse_sse(body)]
    assert anthropic.fold_stream(recorded) == anthropic.fold_stream(events)
    assert anthropic.fold_stream(r["data"] for r in recorded) == anthropic.fold_stream(events)


def test_response_facts_message() -> None:
    facts = anthropic.response_facts({
        "id": "msg_1", "type": "message", "model": "claude-sonnet-4-5-20250929", "stop_reason": "tool_use",
        "content": [{"type": "text", "text": "A"}, {"type": "thinking", "thinking": "t"},
                    {"type": "tool_use", "id": "tu", "name": "Read", "input": {"file_path": "x"}}],
        "usage": {"input_tokens": 3, "output_tokens": 4},
    })
    assert (facts.response_id, facts.text, facts.stop_reason) == ("msg_1", "A", "tool_use")
    assert facts.tool_calls == [{"name": "Read", "id": "tu", "input": {"file_path": "x"}}]
    assert facts.usage == {"input_tokens": 3, "output_tokens": 4} and facts.is_terminal


def test_response_facts_error_body() -> None:
    facts = anthropic.response_facts({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
    assert facts.error == {"type": "rate_limit_error", "message": "slow"}


@pytest.mark.parametrize("body", [None, 3, "x", [], {"messages": "no"}, {"messages": [None, 1, {"role": 5}]},
                                  {"system": [1, {"text": 2}], "tools": {}, "metadata": []}])
def test_garbage_requests(body: object) -> None:
    facts = anthropic.request_facts(body)
    assert facts.title is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
event_types = st.sampled_from(["message_start", "content_block_start", "content_block_delta",
                               "content_block_stop", "message_delta", "message_stop", "error", "ping"])
events = st.one_of(json_values, st.builds(
    lambda t, extra: {"type": t, **extra}, event_types,
    st.dictionaries(st.sampled_from(["index", "message", "content_block", "delta", "usage", "error"]),
                    json_values | st.integers(0, 3), max_size=4)))


@given(st.lists(events, max_size=15))
def test_fold_never_raises(evs: list[object]) -> None:
    facts = anthropic.fold_stream(evs)
    assert isinstance(facts.text, str)


@given(json_values)
def test_request_and_response_facts_never_raise(body: object) -> None:
    anthropic.request_facts(body)
    anthropic.response_facts(body)
