"""The parsers on traffic recorded from the real clients (tests/fixtures, see tests/recorded.py).

One "say hi" turn each of Claude Code (HTTP), Codex over HTTP SSE and Codex
over the Responses WebSocket, recorded against the fake upstream: the
request bodies, headers and frames are the clients' own; the answers are the
fake's (tools/fake_payloads.py), so the expected usage and text below are the
fake's numbers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccxray.pricing import PriceTable
from ccxray.sessions import identify
from ccxray.summarize import FIELD_NAMES, summarize_http, summarize_turn
from ccxray.wire import anthropic, openai
from ccxray.wire.codex_ws import Turn, TurnTracker
from ccxray.wire.sse import event_to_json, parse_sse
from tools import fake_payloads as fp

from .recorded import recorded, recorded_frames, recorded_headers

PRICES = PriceTable.load()
CWD = "/home/user/project"  # the recorder's placeholder for the throwaway working directory
SSE = [("content-type", "text/event-stream")]


def sse_bytes(events: list[dict[str, Any]]) -> bytes:
    """The recorded ``{"event", "data"}`` list as the SSE body it came from."""
    return "".join(f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n" for e in events).encode()


def replay(frames: list[dict[str, Any]], t0: float = 1000.0) -> tuple[list[Turn], TurnTracker]:
    tracker = TurnTracker("conn-1")
    turns: list[Turn] = []
    for f in frames:
        turns += tracker.on_frame(f["dir"], t0 + f["ts"] / 1000, None if f["binary"] else f["text"], f["size"])
    return turns, tracker


# ---------------------------------------------------------------- Claude Code over HTTP


def test_claude_request_facts() -> None:
    body = recorded("claude-http/request.json")
    facts = anthropic.request_facts(body)
    assert (facts.model, facts.msg_count, facts.tool_count, facts.title) == ("claude-opus-4-8", 2, 24, "say hi")
    assert facts.stream is True and not facts.is_prewarm
    assert facts.system_text is not None and facts.system_text.startswith("x-anthropic-billing-header:")
    session = json.loads(body["metadata"]["user_id"])["session_id"]
    assert json.loads(facts.metadata["user_id"])["session_id"] == session


def test_claude_identity_from_headers_and_body() -> None:
    body = recorded("claude-http/request.json")
    headers = recorded_headers("claude-http/headers.json")
    ident = identify("anthropic", headers, body)
    header_session = dict((n.lower(), v) for n, v in headers)["x-claude-code-session-id"]
    assert (ident.session_id, ident.agent, ident.cwd, ident.is_subagent) == (header_session, "claude", CWD, False)
    # the body alone names the same session (metadata.user_id)
    assert identify("anthropic", [("x-app", "cli")], body).session_id == header_session


def test_claude_stream_fold_and_sse_round_trip() -> None:
    events = recorded("claude-http/events.json")
    facts = anthropic.fold_stream([e["data"] for e in events])
    assert (facts.response_id, facts.model, facts.stop_reason, facts.text) == (
        "msg_fake_1", "claude-opus-4-8", "end_turn", fp.REPLY_TEXT)
    assert facts.usage == dict(fp.ANTHROPIC_USAGE, output_tokens=fp.ANTHROPIC_OUTPUT_TOKENS)
    assert facts.is_terminal and facts.error is None and facts.tool_calls == []
    parsed = [event_to_json(ev) for ev in parse_sse(sse_bytes(events))]
    assert parsed == events


def test_claude_summarized_call() -> None:
    body = recorded("claude-http/request.json")
    headers = recorded_headers("claude-http/headers.json")
    events = recorded("claude-http/events.json")
    summary = summarize_http("anthropic", headers, json.dumps(body).encode(), SSE + [("request-id", "req_1")],
                             sse_bytes(events), 200, PRICES)
    fields = summary.fields
    assert tuple(fields) == FIELD_NAMES and summary.request == body and summary.response == events
    assert (fields["agent"], fields["cwd"], fields["model"], fields["title"]) == ("claude", CWD, "claude-opus-4-8",
                                                                               "say hi")
    assert (fields["msgCount"], fields["toolCount"], fields["stopReason"]) == (2, 24, "end_turn")
    assert (fields["cost"], fields["costNote"]) == PRICES.cost("anthropic", "claude-opus-4-8", fields["usage"])
    assert fields["responseMetadata"]["responseId"] == "msg_fake_1"  # type: ignore[index]


# ---------------------------------------------------------------- Codex over HTTP SSE


def test_codex_http_request_facts_and_identity() -> None:
    body = recorded("codex-http/request.json")
    headers = recorded_headers("codex-http/headers.json")
    facts = openai.request_facts(body)
    assert (facts.model, facts.msg_count, facts.title, facts.stream) == ("gpt-5.5", 4, "say hi", True)
    assert facts.tool_count == len(body["tools"]) and not facts.is_prewarm
    assert facts.system_text is not None and facts.system_text.startswith("You are Codex")
    ident = identify("openai", headers, body)
    thread = dict((n.lower(), v) for n, v in headers)["session-id"]
    assert (ident.session_id, ident.thread_id, ident.agent, ident.cwd) == (thread, thread, "codex", CWD)
    assert (ident.request_kind, ident.turn_id) == ("turn", body["client_metadata"]["turn_id"])
    assert ident.is_subagent is False


def test_codex_http_events_fold() -> None:
    events = recorded("codex-http/events.json")
    facts = openai.fold_events([e["data"] for e in events])
    assert (facts.response_id, facts.model, facts.status, facts.stop_reason, facts.text) == (
        "resp_fake_1", "gpt-5.5", "completed", "completed", fp.REPLY_TEXT)
    assert facts.usage == fp.RESPONSES_USAGE and facts.is_terminal
    assert [e["event"] for e in events][-1] == "response.completed"


def test_codex_http_summarized_call() -> None:
    body = recorded("codex-http/request.json")
    headers = recorded_headers("codex-http/headers.json")
    events = recorded("codex-http/events.json")
    summary = summarize_http("openai", headers, json.dumps(body).encode(), SSE + [("x-request-id", "r-9")],
                             sse_bytes(events), 200, PRICES)
    fields = summary.fields
    assert (fields["agent"], fields["cwd"], fields["model"], fields["stopReason"]) == (
        "codex", CWD, "gpt-5.5", "completed")
    assert fields["usage"] == fp.RESPONSES_USAGE
    assert (fields["cost"], fields["costNote"]) == PRICES.cost("openai", "gpt-5.5", fp.RESPONSES_USAGE)
    assert fields["responseMetadata"]["requestId"] == "r-9"  # type: ignore[index]


# ---------------------------------------------------------------- Codex over the WebSocket


def test_ws_session_shape() -> None:
    """What REAL_CLIENTS.md says Codex does: a prewarm create, then the turn chained to it."""
    frames = recorded_frames()
    creates = [json.loads(f["text"]) for f in frames if f["dir"] == "c2u"]
    assert [c["type"] for c in creates] == ["response.create", "response.create"]
    assert creates[0]["generate"] is False and "previous_response_id" not in creates[0]
    assert creates[1]["previous_response_id"] == "resp_prewarm_1"
    assert all(f["size"] == len(f["text"].encode()) and not f["binary"] for f in frames)
    assert [f["ts"] for f in frames] == sorted(f["ts"] for f in frames)


def test_ws_replay_yields_a_prewarm_and_a_turn() -> None:
    frames = recorded_frames()
    turns, tracker = replay(frames)
    assert tracker.finish(1010.0, "closed") == []
    assert [t.request_kind for t in turns] == ["prewarm", "turn"]
    prewarm, turn = turns
    assert [t.index for t in turns] == [0, 1] and all(t.connection_id == "conn-1" for t in turns)
    assert not prewarm.partial and prewarm.error is None
    assert prewarm.request_facts.is_prewarm and prewarm.response.usage == fp.PREWARM_USAGE
    assert prewarm.first_token_ts is None and prewarm.ttft_ms is None and prewarm.response.text == ""
    first_c2u = [f for f in frames if f["dir"] == "c2u"]
    assert prewarm.bytes_c2u == first_c2u[0]["size"] and turn.bytes_c2u == first_c2u[1]["size"]
    assert turn.request_facts.previous_response_id == prewarm.response.response_id == "resp_prewarm_1"
    assert (turn.response.text, turn.response.stop_reason, turn.response.usage) == (
        fp.REPLY_TEXT, "completed", fp.RESPONSES_USAGE)
    assert turn.request_facts.title == "say hi" and turn.request_facts.msg_count == 3
    assert len(prewarm.events) + len(turn.events) == len(frames) - 2


def test_ws_turn_times_come_from_the_frames() -> None:
    frames = recorded_frames()
    turn = replay(frames)[0][1]
    start = [f for f in frames if f["dir"] == "c2u"][1]["ts"]
    first_delta = next(f["ts"] for f in frames if '"response.output_text.delta"' in (f["text"] or ""))
    assert turn.elapsed_ms == pytest.approx(frames[-1]["ts"] - start)
    assert turn.ttft_ms == pytest.approx(first_delta - start)


def test_ws_cut_before_completed_gives_a_partial_turn() -> None:
    turns, tracker = replay(recorded_frames()[:-1])
    assert len(turns) == 1
    [partial] = tracker.finish(1010.0, "connection closed before response.completed")
    assert partial.partial and partial.error == "connection closed before response.completed"
    assert partial.response.text == fp.REPLY_TEXT and not partial.response.is_terminal
    assert tracker.finish(1011.0, "again") == []


def test_ws_frames_and_handshake_identify_the_thread() -> None:
    frames = recorded_frames()
    handshake = recorded_headers("codex-ws/handshake.json")
    thread = dict((n.lower(), v) for n, v in handshake)["session-id"]
    prewarm = identify("openai", [], json.loads(frames[0]["text"]))
    assert (prewarm.session_id, prewarm.thread_id, prewarm.request_kind, prewarm.agent) == (
        thread, thread, "prewarm", "codex")
    create = json.loads([f for f in frames if f["dir"] == "c2u"][1]["text"])
    turn = identify("openai", handshake, create)
    assert (turn.session_id, turn.request_kind, turn.cwd) == (thread, "turn", CWD)
    assert turn.turn_id == create["client_metadata"]["turn_id"]
    assert identify("openai", handshake, None).session_id == thread


def test_ws_summarized_turns() -> None:
    prewarm, turn = replay(recorded_frames())[0]
    fields = summarize_turn(turn, PRICES)
    assert (fields["requestKind"], fields["model"], fields["stopReason"], fields["title"]) == (
        "turn", "gpt-5.5", "completed", "say hi")
    assert fields["usage"] == fp.RESPONSES_USAGE and fields["msgCount"] == 3
    assert (fields["cost"], fields["costNote"]) == PRICES.cost("openai", "gpt-5.5", fp.RESPONSES_USAGE)
    assert summarize_turn(prewarm, PRICES)["requestKind"] == "prewarm"
