"""A JSON response too large to keep gets its line's fields from its two ends,
the same fields a parse of the whole body gives."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings, strategies as st

from ccxray.assemble import Assembler
from ccxray.jsonends import json_ends
from ccxray.pricing import PriceTable
from ccxray.record import HttpCall
from ccxray.writes import Writes

# text that tries to look like the keys looked for: inside a JSON string their quotes are escaped
tricky_text = st.lists(st.sampled_from(list('ab "\\:{}\u00e9') + ['"model": "x"', '"usage":{', '"id":1']),
                       max_size=600).map("".join)


def message(text: str, tool_input: dict[str, object]) -> dict[str, object]:
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": text}, {"type": "tool_use", "id": "t1", "name": "Bash",
                                                         "input": tool_input}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 345, "cache_read_input_tokens": 6}}


@settings(max_examples=200, deadline=None)
@given(tricky_text, st.dictionaries(st.sampled_from(["cmd", "type", "id"]), tricky_text, max_size=3),
       st.integers(min_value=200, max_value=4000), st.booleans())
def test_the_ends_give_what_the_whole_body_gives(text: str, tool_input: dict[str, object], cut: int,
                                                 spaced: bool) -> None:
    whole = message(text, tool_input)
    body = json.dumps(whole, indent=1 if spaced else None, ensure_ascii=False).encode()
    found = json_ends(body[:cut], body[-cut:])
    assert found is not None
    for key in ("id", "type", "role", "model", "stop_reason", "stop_sequence", "usage"):
        assert found[key] == whole[key]


def test_a_responses_object_and_a_chat_completion_give_their_fields() -> None:
    responses = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5-codex",
                 "output": [{"type": "message", "content": [{"type": "output_text", "text": "y" * 9000}]}],
                 "usage": {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}}
    body = json.dumps(responses).encode()
    assert json_ends(body[:2000], body[-2000:]) == {
        "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5-codex",
        "usage": responses["usage"]}  # no "type": the output item's is not the object's own
    chat = json.dumps({"id": "c1", "object": "chat.completion", "model": "gpt-4o",
                       "choices": [{"index": 0, "message": {"content": "x" * 9000}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1}}).encode()
    assert json_ends(chat[:2000], chat[-2000:]) == {
        "id": "c1", "object": "chat.completion", "model": "gpt-4o", "usage": {"prompt_tokens": 1},
        "choices": [{"finish_reason": "stop"}]}


def test_a_nested_objects_key_is_not_the_objects_own() -> None:
    """A nested object before the real key, with a key that reads like the one looked for."""
    body = json.dumps({"id": "r", "object": "response", "tools": [{"model": "EVIL", "x\"model": "EVIL"}],
                       "instructions": 'say "model": "EVIL"', "model": "gpt-5-codex", "output": []}).encode()
    assert json_ends(body, b"")["model"] == "gpt-5-codex"  # type: ignore[index]
    cut = body.index(b'"model": "gpt')  # the head ends before the real key: no model at all
    assert "model" not in json_ends(body[:cut], b"")  # type: ignore[operator]


def test_what_is_no_json_object_or_no_key_gives_nothing() -> None:
    assert json_ends(b"event: ping\ndata: {}\n\n", b"") is None
    assert json_ends(b'{"model', b"") == {}
    assert json_ends(b'{"type":"model", "model" :\n "m"', b'"usage": [1, 2') == {"type": "model", "model": "m"}


def spilled(call_id: str, provider: str, url: str, request_model: str, whole: bytes) -> tuple[dict[str, Any], Writes]:
    """The line and writes of a call whose JSON answer ``whole`` went to its file (1 MiB kept at each end)."""
    call = HttpCall(id=call_id, started=time.time(), method="POST", url=url, provider=provider,
                    upstream_url=f"https://upstream.example{url}", req_headers=[("content-type", "application/json")],
                    req_body=json.dumps({"model": request_model, "messages": []}).encode(), status=200,
                    resp_headers=[("content-type", "application/json")],
                    resp_body=[whole[:1 << 20]], resp_spill=f"{call_id}_res.body", resp_tail=whole[-(1 << 20):],
                    resp_size=len(whole), elapsed_s=0.5)
    writes = Assembler(PriceTable.load()).handle(call)
    assert writes is not None
    (line,) = writes.lines
    return line, writes


def test_a_spilled_json_answer_is_summarized_from_its_ends() -> None:
    whole = json.dumps(message("z" * 5_000_000, {"cmd": "ls"})).encode()
    line, writes = spilled("big2", "anthropic", "/v1/messages", "claude-haiku-4-5", whole)
    assert line["model"] == "claude-sonnet-4-5" and line["stopReason"] == "tool_use"
    assert line["usage"]["output_tokens"] == 345 and line["responseMetadata"]["responseId"] == "msg_01"
    assert line["cost"] is not None and line["isSSE"] is False
    (res,) = [obj.response for cid, part, obj in writes.sidecars if part == "res"]
    assert res == {"bodyFile": "big2_res.body", "size": len(whole), "spilled": True, "truncated": False}
    assert not writes.raw


def test_a_spilled_chat_completion_is_summarized_from_its_ends() -> None:
    whole = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "z" * 3_000_000},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 700_000, "total_tokens": 700_100}}
                       ).encode()
    line, _ = spilled("big3", "openai", "/v1/chat/completions", "gpt-4o-mini", whole)
    assert line["model"] == "gpt-4o" and line["stopReason"] == "stop"
    assert line["usage"]["completion_tokens"] == 700_000 and line["cost"] is not None
