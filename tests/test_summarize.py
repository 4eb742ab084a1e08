"""summarize_http / summarize_turn: the fields the recorder writes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxray.pricing import PriceTable
from ccxray.summarize import FIELD_NAMES, identity_fields, summarize_http, summarize_turn
from ccxray.wire.codex_ws import Turn, TurnTracker

from .recorded import shared, shared_path

PRICES = PriceTable.load()
SID = "6f1c9a3e-2b7d-4c1e-9f00-1234567890ab"
SSE = [("content-type", "text/event-stream; charset=utf-8")]
JSON = [("content-type", "application/json")]


def fixture(rel: str) -> object:
    return shared(rel)


def sse_bytes(events: list[dict[str, object]], done: bool = False) -> bytes:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


def test_claude_streamed_call() -> None:
    request = fixture("anthropic/turn1_req.json")
    events = fixture("anthropic/turn1_res.json")
    assert isinstance(events, list)
    headers = [("User-Agent", "claude-cli/2.1.197 (external, sdk-cli)"), ("X-Claude-Code-Session-Id", SID)]
    resp_headers = SSE + [("request-id", "req_011"), ("anthropic-ratelimit-requests-remaining", "49"),
                          ("Anthropic-Ratelimit-Tokens-Reset", "2026-01-01T00:00:00Z"), ("retry-after", "3")]
    summary = summarize_http("anthropic", headers, json.dumps(request).encode(), resp_headers,
                             sse_bytes(events), 200, PRICES)
    assert summary.is_sse and summary.request == request
    assert isinstance(summary.response, list) and len(summary.response) == len(events)
    assert summary.response[0] == {"event": "message_start", "data": events[0]}
    fields = summary.fields
    assert tuple(fields) == FIELD_NAMES
    assert (fields["sessionId"], fields["sessionInferred"], fields["agent"], fields["isSubagent"]) == (
        SID, False, "claude", False)
    assert (fields["model"], fields["stopReason"], fields["msgCount"], fields["toolCount"]) == (
        "claude-sonnet-4-20250514", "end_turn", 3, 2)
    assert fields["title"] == "What files are in the project?"
    assert fields["usage"] == {"input_tokens": 1200, "output_tokens": 42, "cache_creation_input_tokens": 500,
                               "cache_read_input_tokens": 200}
    assert fields["cost"] == {"input": 0.0036, "output": 0.00063, "cacheRead": 0.00006, "cacheWrite": 0.001875,
                              "total": 0.006165, "currency": "USD"}
    assert fields["costNote"] is None
    assert fields["responseMetadata"] == {
        "responseId": "msg_01A", "requestId": "req_011", "codexRateLimits": None, "error": None,
        "rateLimits": {"anthropic-ratelimit-requests-remaining": "49",
                       "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:00Z", "retry-after": "3"},
    }
    assert summary.identity.session_id == SID
    assert summary.system_text is not None and summary.system_text.startswith("System configuration block")


def test_codex_http_sse_call() -> None:
    request = fixture("openai/turn1_req.json")
    events = fixture("openai/sse-events.json")
    assert isinstance(events, list)
    body = sse_bytes([e["data"] for e in events])
    headers = [("originator", "codex_exec"), ("session-id", "thread-1")]
    summary = summarize_http("openai", headers, json.dumps(request).encode(), SSE + [("x-request-id", "r-9")],
                             body, 200, PRICES)
    fields = summary.fields
    assert (fields["sessionId"], fields["agent"], fields["cwd"]) == ("thread-1", "codex", "/Users/test/project")
    assert (fields["model"], fields["stopReason"], fields["msgCount"], fields["toolCount"]) == (
        "gpt-5.5", "completed", 1, 1)
    assert fields["usage"] == {"input_tokens": 850, "output_tokens": 35, "total_tokens": 885}
    # whatever the bundled table says about gpt-5.5, the line says the same
    assert (fields["cost"], fields["costNote"]) == PRICES.cost("openai", "gpt-5.5", fields["usage"])
    metadata = fields["responseMetadata"]
    assert isinstance(metadata, dict) and metadata["responseId"] == "resp_019e6d05" and metadata["requestId"] == "r-9"


def test_json_response_and_chat_sse_with_done() -> None:
    summary = summarize_http("openai", [], b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}',
                             JSON, json.dumps({"id": "c", "model": "gpt-4o-2024-08-06", "choices": [
                                 {"message": {"content": "yo"}, "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 1000000, "completion_tokens": 0}}).encode(), 200, PRICES)
    assert not summary.is_sse and summary.fields["stopReason"] == "stop"
    assert summary.fields["cost"] == {"input": 2.5, "output": 0.0, "cacheRead": 0.0, "cacheWrite": 0.0,
                                      "total": 2.5, "currency": "USD"}
    chunks = [{"id": "c", "model": "gpt-4o-mini", "choices": [{"delta": {"content": "a"}, "finish_reason": None}]},
              {"id": "c", "choices": [{"delta": {}, "finish_reason": "length"}]}]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    streamed = summarize_http("openai", [], b"", [], body, 200, PRICES)
    assert streamed.is_sse and streamed.fields["stopReason"] == "length" and streamed.request is None
    assert isinstance(streamed.response, list) and streamed.response[-1] == {"event": None, "data": "[DONE]"}


def test_error_response() -> None:
    body = json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}).encode()
    summary = summarize_http("anthropic", [], b"{}", JSON + [("x-ratelimit-remaining", "0")], body, 429, PRICES)
    metadata = summary.fields["responseMetadata"]
    assert isinstance(metadata, dict)
    assert metadata["error"] == {"type": "rate_limit_error", "message": "slow down"}
    assert metadata["rateLimits"] == {"x-ratelimit-remaining": "0"}
    assert summary.fields["cost"] is None and summary.fields["costNote"] == "no usage reported"


@pytest.mark.parametrize(("req", "recorded"), [
    (b"", None), (b"plain text", {"text": "plain text"}), (b"\xff\x00", {"base64": "/wA="}),
    (b"[1,2]", [1, 2]),
])
def test_request_body_forms(req: bytes, recorded: object) -> None:
    summary = summarize_http("openai", [], req, [], b"", None, PRICES)
    assert summary.request == recorded and summary.response is None
    assert tuple(summary.fields) == FIELD_NAMES


def test_non_json_response_is_text() -> None:
    summary = summarize_http("openai", [], b"", [("Content-Type", "text/html")], b"<h1>Bad \xff gateway</h1>", 502,
                             PRICES)
    assert summary.response == "<h1>Bad \ufffd gateway</h1>" and not summary.is_sse


def say_hi_turns() -> list[Turn]:
    path = shared_path("codex-ws/say-hi.ndjson")
    tracker = TurnTracker("conn")
    turns: list[Turn] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        f = json.loads(line)
        turns += tracker.on_frame(f["dir"], 100 + f["ts"] / 1000, None if f["binary"] else f["text"], f["size"])
    return turns


def test_summarize_turn() -> None:
    prewarm, turn = say_hi_turns()
    fields = summarize_turn(turn, PRICES)
    assert fields["requestKind"] == "turn" and fields["model"] == "gpt-5.5"
    assert fields["usage"] == turn.response.usage and fields["stopReason"] == "completed"
    assert (fields["msgCount"], fields["toolCount"], fields["toolCalls"]) == (3, 14, 0)
    assert fields["title"] == "say hi (one short sentence, no tools)"
    assert fields["ttftMs"] == pytest.approx(1292.0) and fields["elapsed"] == pytest.approx(1509.0)
    assert (fields["cost"], fields["costNote"]) == PRICES.cost("openai", "gpt-5.5", turn.response.usage)
    metadata = fields["responseMetadata"]
    assert isinstance(metadata, dict) and metadata["responseId"] == turn.response.response_id
    assert metadata["rateLimits"] is not None
    assert summarize_turn(prewarm, PRICES)["requestKind"] == "prewarm"


def test_identity_fields() -> None:
    summary = summarize_http("anthropic", [("x-app", "cli")], b"{}", [], b"", 200, PRICES)
    assert identity_fields(summary.identity) == {
        "sessionId": None, "sessionInferred": False, "agent": "claude", "agentType": None,
        "isSubagent": True, "cwd": None}


@given(st.sampled_from(["anthropic", "openai", "other"]), st.binary(max_size=200), st.binary(max_size=200),
       st.sampled_from([[], SSE, JSON]))
def test_summarize_never_raises(provider: str, req: bytes, resp: bytes, resp_headers: list[tuple[str, str]]) -> None:
    summary = summarize_http(provider, [], req, resp_headers, resp, None, PRICES)
    assert tuple(summary.fields) == FIELD_NAMES


def test_unknown_model_has_null_cost_and_a_note() -> None:
    body = json.dumps({"model": "model-nobody-prices", "input": "hi"}).encode()
    resp = json.dumps({"id": "r", "model": "model-nobody-prices", "status": "completed",
                       "usage": {"input_tokens": 5, "output_tokens": 1}}).encode()
    fields = summarize_http("openai", [], body, JSON, resp, 200, PRICES).fields
    assert fields["cost"] is None and "model-nobody-prices" in str(fields["costNote"])
