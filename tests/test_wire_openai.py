"""OpenAI Responses (HTTP, SSE, WebSocket events) and Chat Completions."""

from __future__ import annotations


from hypothesis import given
from hypothesis import strategies as st

from ccxray.wire import openai

from .recorded import shared



def fixture(rel: str) -> object:
    return shared(rel)


def test_fixture_sse_events() -> None:
    facts = openai.fold_events(fixture("openai/sse-events.json"))  # type: ignore[arg-type]
    assert (facts.response_id, facts.model, facts.status, facts.stop_reason) == (
        "resp_019e6d05", "gpt-5.5", "completed", "completed")
    assert facts.usage == {"input_tokens": 850, "output_tokens": 35, "total_tokens": 885}
    assert facts.tool_calls == [{"name": "shell", "id": "call_01", "arguments": '{"command":"ls"}'}]
    assert facts.text == "" and facts.is_terminal


def test_fixture_json_response() -> None:
    facts = openai.response_facts(fixture("openai/turn1_res.json"))
    assert facts.response_id == "resp_019e6d05" and facts.is_terminal
    assert facts.tool_calls == [{"name": "shell", "id": "call_01", "arguments": '{"command":"ls"}'}]


def test_fixture_requests() -> None:
    first = openai.request_facts(fixture("openai/turn1_req.json"))
    assert (first.model, first.msg_count, first.tool_count) == ("gpt-5.5", 1, 1)
    assert first.title == "List the files in the current directory"
    assert first.system_text is not None and first.system_text.startswith("You are a coding assistant.")
    assert first.metadata["session_id"] == "019e6d05-02ad-7d83-afa0-6c480945a1be"
    second = openai.request_facts(fixture("openai/turn2_req.json"))
    assert (second.msg_count, second.title) == (3, "List the files in the current directory")


def test_fixture_tool_call_events_and_output_frame() -> None:
    facts = openai.fold_events(fixture("codex-ws/tool-call-events.json"))  # type: ignore[arg-type]
    assert facts.text == "Running exactly those two commands."
    assert len(facts.tool_calls) == 1
    call = facts.tool_calls[0]
    assert call["name"] == "exec" and call["id"] == "call_o1QydyN3rT5Fq61QmIwQMiod"
    assert isinstance(call["input"], str) and call["input"].startswith("const a = await tools.exec_command")
    assert not facts.is_terminal
    req = openai.request_facts(fixture("codex-ws/tool-output.json"))
    assert (req.model, req.msg_count, req.title) == ("gpt-5.6-sol", 1, None)


def codex_frame(**extra: object) -> dict[str, object]:
    frame: dict[str, object] = {
        "type": "response.create", "model": "gpt-5.5", "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "# AGENTS.md instructions for /r\n\n<INSTRUCTIONS>x</INSTRUCTIONS>"},
                {"type": "input_text", "text": "<environment_context>\n  <cwd>/r</cwd>\n</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "<user_instructions>be nice</user_instructions>"}]},
        ],
        "tools": [{"type": "function", "name": "shell"}], "stream": True,
        "metadata": {"a": 1, "session_id": "from-metadata"},
        "client_metadata": {"session_id": "from-client", "x-codex-turn-metadata": "{}"},
    }
    frame.update(extra)
    return frame


def test_codex_frame_request_facts() -> None:
    facts = openai.request_facts(codex_frame(previous_response_id="resp_1"))
    assert facts.title == "say hi"
    assert facts.msg_count == 4 and facts.tool_count == 1 and facts.stream is True
    assert facts.system_text == "You are Codex.\n\n<permissions>"
    assert facts.metadata == {"a": 1, "session_id": "from-client", "x-codex-turn-metadata": "{}"}
    assert facts.previous_response_id == "resp_1" and not facts.is_prewarm
    assert openai.request_facts(codex_frame(generate=False)).is_prewarm


def test_nested_response_create_frame() -> None:
    facts = openai.request_facts({"type": "response.create", "response": {"model": "gpt-5", "input": "hi there"}})
    assert (facts.model, facts.msg_count, facts.title) == ("gpt-5", 1, "hi there")


def test_chat_request_facts() -> None:
    facts = openai.request_facts({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]})
    assert (facts.msg_count, facts.title, facts.system_text) == (4, "second", "sys")


def stream(*events: dict[str, object]) -> list[object]:
    return [{"type": "response.created", "response": {"id": "r1", "model": "gpt-5", "status": "in_progress"}},
            *events]


def test_text_deltas_without_done_events() -> None:
    facts = openai.fold_events(stream(
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "m1", "type": "message", "role": "assistant", "content": []}},
        {"type": "response.output_text.delta", "item_id": "m1", "delta": "Hel"},
        {"type": "response.output_text.delta", "item_id": "m1", "delta": "lo"},
    ))
    assert facts.text == "Hello" and not facts.is_terminal
    assert facts.status == "in_progress" and facts.stop_reason is None


def test_deltas_for_unannounced_items_are_kept() -> None:
    facts = openai.fold_events([{"type": "response.output_text.delta", "item_id": "x", "delta": "orphan"}])
    assert facts.text == "orphan"


def test_streamed_function_call_arguments() -> None:
    facts = openai.fold_events(stream(
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "fc", "type": "function_call", "call_id": "c1", "name": "shell", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": "fc", "delta": '{"cmd":'},
        {"type": "response.function_call_arguments.delta", "item_id": "fc", "delta": '"ls"}'},
    ))
    assert facts.tool_calls == [{"name": "shell", "id": "c1", "arguments": '{"cmd":"ls"}'}]


def test_incomplete_response() -> None:
    facts = openai.fold_events(stream({"type": "response.incomplete", "response": {
        "id": "r1", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {"input_tokens": 1, "output_tokens": 2}}}))
    assert (facts.status, facts.stop_reason, facts.is_terminal) == ("incomplete", "max_output_tokens", True)


def test_failed_response() -> None:
    facts = openai.fold_events(stream({"type": "response.failed", "response": {
        "id": "r1", "status": "failed", "error": {"code": "server_error", "message": "boom"}}}))
    assert facts.stop_reason == "failed" and facts.is_terminal
    assert facts.error == {"type": "server_error", "message": "boom", "code": "server_error"}


def test_codex_error_event_and_rate_limits() -> None:
    facts = openai.fold_events([
        {"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": 1}}},
        {"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": 2}}},
        {"type": "error", "status": 429,
         "error": {"type": "usage_limit_reached", "message": "You've hit your usage limit"}},
    ])
    assert facts.rate_limits == {"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": 2}}}
    assert facts.error == {"type": "usage_limit_reached", "message": "You've hit your usage limit", "status": 429}
    assert facts.is_terminal


def test_flat_error_event() -> None:
    facts = openai.fold_events([{"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": None}])
    assert facts.error == {"type": "rate_limit_exceeded", "message": "slow", "code": "rate_limit_exceeded"}


def test_unknown_events_and_garbage_are_skipped() -> None:
    facts = openai.fold_events([None, 1, "x", [], {"type": 5}, {"type": "response.reasoning_summary_text.delta"},
                                {"type": "response.output_item.added", "item": "bad"},
                                {"type": "response.completed", "response": "bad"}])
    assert facts.is_terminal and facts.status == "completed"


def test_final_output_wins_over_deltas() -> None:
    facts = openai.fold_events(stream(
        {"type": "response.output_text.delta", "item_id": "m1", "delta": "draft"},
        {"type": "response.completed", "response": {"id": "r1", "status": "completed", "output": [
            {"id": "m1", "type": "message", "content": [{"type": "output_text", "text": "final"}]}]}},
    ))
    assert facts.text == "final"


def test_chat_completion_chunks() -> None:
    chunks: list[object] = [
        {"id": "cc1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        {"id": "cc1", "choices": [{"index": 0, "delta": {"content": " there", "tool_calls": [
            {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]}}]},
        {"id": "cc1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]},
        {"id": "cc1", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 3}},
        "[DONE]",
    ]
    facts = openai.fold_events(chunks)
    assert (facts.response_id, facts.model, facts.text) == ("cc1", "gpt-4o-mini", "Hi there")
    assert facts.tool_calls == [{"name": "f", "id": "call_1", "arguments": '{"a":1}'}]
    assert facts.stop_reason == "tool_calls" and facts.is_terminal
    assert facts.usage == {"prompt_tokens": 10, "completion_tokens": 3}


def test_done_sentinel_alone_is_terminal() -> None:
    assert openai.fold_events([{"event": None, "data": "[DONE]"}]).is_terminal


def test_chat_completion_response() -> None:
    facts = openai.response_facts({"id": "c", "object": "chat.completion", "model": "gpt-4.1", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    assert (facts.text, facts.stop_reason, facts.is_terminal) == ("ok", "stop", True)


def test_error_body() -> None:
    facts = openai.response_facts({"error": {"message": "bad key", "type": "invalid_request_error", "code": None}})
    assert facts.error == {"type": "invalid_request_error", "message": "bad key"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
types = st.sampled_from(["response.created", "response.output_item.added", "response.output_item.done",
                         "response.output_text.delta", "response.output_text.done", "response.completed",
                         "response.function_call_arguments.delta", "response.failed", "error",
                         "codex.rate_limits", "response.incomplete"])
events = st.one_of(json_values, st.builds(
    lambda t, extra: {"type": t, **extra}, types,
    st.dictionaries(st.sampled_from(["item", "output_index", "item_id", "delta", "text", "response", "error"]),
                    json_values, max_size=4)),
    st.builds(lambda c: {"choices": c}, st.lists(json_values, max_size=3)))


@given(st.lists(events, max_size=15))
def test_fold_never_raises(evs: list[object]) -> None:
    facts = openai.fold_events(evs)
    assert isinstance(facts.text, str)


@given(json_values)
def test_request_and_response_facts_never_raise(body: object) -> None:
    openai.request_facts(body)
    openai.response_facts(body)
