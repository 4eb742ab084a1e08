"""Turns on a Codex WebSocket connection, replayed from real frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxray.wire.codex_ws import SUPERSEDED, Turn, TurnTracker

from .recorded import shared_path



def say_hi_frames() -> list[dict[str, object]]:
    path = shared_path("codex-ws/say-hi.ndjson")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def replay(frames: list[dict[str, object]], t0: float = 1000.0) -> tuple[list[Turn], TurnTracker]:
    """Feed fixture frames (ts in ms since open) with seconds on the caller's clock."""
    tracker = TurnTracker("conn-1")
    turns: list[Turn] = []
    for f in frames:
        text = None if f.get("binary") else f.get("text")
        assert text is None or isinstance(text, str)
        ts = t0 + float(f["ts"]) / 1000  # type: ignore[arg-type]
        turns += tracker.on_frame(str(f["dir"]), ts, text, int(f["size"]))  # type: ignore[call-overload]
    return turns, tracker


def test_say_hi_yields_a_prewarm_and_a_turn() -> None:
    frames = say_hi_frames()
    turns, tracker = replay(frames)
    assert tracker.finish(1010.0, "closed") == []
    assert [t.request_kind for t in turns] == ["prewarm", "turn"]
    prewarm, turn = turns
    assert [t.index for t in turns] == [0, 1] and all(t.connection_id == "conn-1" for t in turns)
    assert not prewarm.partial and prewarm.error is None
    assert prewarm.request_facts.is_prewarm and prewarm.request_facts.msg_count == 0
    assert prewarm.response.usage is not None and prewarm.response.usage["input_tokens"] == 9507
    assert prewarm.first_token_ts is None and prewarm.ttft_ms is None
    assert prewarm.elapsed_ms == pytest.approx(1789.0)
    assert len(prewarm.events) == 3


def test_say_hi_turn_facts_come_from_the_final_completed_event() -> None:
    frames = say_hi_frames()
    final = json.loads(str(frames[-1]["text"]))["response"]
    turn = replay(frames)[0][1]
    assert turn.response.model == final["model"] == "gpt-5.5"
    assert turn.response.usage == final["usage"]
    assert turn.response.usage["input_tokens_details"] == {"cached_tokens": 3456}  # type: ignore[index]
    assert turn.response.response_id == final["id"]
    assert turn.response.text == "Hi." and turn.response.stop_reason == "completed"
    assert turn.response.rate_limits is not None
    assert turn.request_facts.msg_count == 3
    assert turn.request_facts.title == "say hi (one short sentence, no tools)"
    assert turn.request_facts.previous_response_id == replay(frames)[0][0].response.response_id
    assert turn.elapsed_ms == pytest.approx(3617.0 - 2108.0)
    assert turn.ttft_ms == pytest.approx(3400.0 - 2108.0)
    assert turn.response.first_token_ts == turn.first_token_ts
    assert turn.request["type"] == "response.create" and len(turn.events) == 11
    assert turn.bytes_c2u == 64434


def test_connection_closed_mid_turn_gives_a_partial_turn() -> None:
    frames = say_hi_frames()[:-1]
    turns, tracker = replay(frames)
    assert len(turns) == 1
    [partial] = tracker.finish(1010.0, "connection closed before response.completed")
    assert partial.partial and partial.error == "connection closed before response.completed"
    assert partial.response.text == "Hi." and not partial.response.is_terminal
    assert partial.ended == 1010.0
    assert tracker.finish(1011.0, "again") == []


def create(**extra: object) -> str:
    return json.dumps({"type": "response.create", "model": "gpt-5", "input": [], **extra})


def test_error_event_ends_the_turn() -> None:
    tracker = TurnTracker("c")
    assert tracker.on_frame("c2u", 1.0, create(), 10) == []
    [turn] = tracker.on_frame("u2c", 2.5, json.dumps(
        {"type": "error", "status": 429, "error": {"type": "usage_limit_reached", "message": "limit"}}), 50)
    assert not turn.partial and turn.error == "usage_limit_reached: limit"
    assert turn.response.error == {"type": "usage_limit_reached", "message": "limit", "status": 429}
    assert turn.elapsed_ms == 1500.0


def test_failed_response_sets_the_turn_error() -> None:
    tracker = TurnTracker("c")
    tracker.on_frame("c2u", 1.0, create(), 10)
    [turn] = tracker.on_frame("u2c", 2.0, json.dumps(
        {"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error"}}}), 50)
    assert turn.error == "server_error" and turn.response.stop_reason == "failed"


def test_binary_non_json_and_stray_frames_are_ignored() -> None:
    tracker = TurnTracker("c")
    assert tracker.on_frame("u2c", 0.5, json.dumps({"type": "response.completed"}), 5) == []
    assert tracker.on_frame("c2u", 1.0, "not json", 8) == []
    assert tracker.on_frame("c2u", 1.0, json.dumps({"type": "response.cancel"}), 8) == []
    tracker.on_frame("c2u", 1.0, create(), 10)
    assert tracker.on_frame("u2c", 1.1, None, 100) == []
    assert tracker.on_frame("u2c", 1.2, "[1, 2", 5) == []
    assert tracker.on_frame("u2c", 1.3, "[1, 2]", 6) == []
    tracker.on_frame("u2c", 1.4, json.dumps({"type": "response.output_item.added", "item": {"type": "reasoning"}}), 9)
    tracker.on_frame("u2c", 1.5, json.dumps({"type": "response.output_item.added", "item": {"type": "function_call"}}), 9)
    [turn] = tracker.on_frame("u2c", 2.0, json.dumps({"type": "response.completed", "response": {}}), 9)
    assert len(turn.events) == 3 and turn.first_token_ts == 1.5 and turn.ttft_ms == 500.0


def test_new_create_supersedes_an_open_turn() -> None:
    tracker = TurnTracker("c")
    tracker.on_frame("c2u", 1.0, create(), 10)
    [old] = tracker.on_frame("c2u", 2.0, create(generate=False), 10)
    assert old.partial and old.error == SUPERSEDED and old.index == 0
    [new] = tracker.on_frame("u2c", 3.0, json.dumps({"type": "response.done", "response": {"status": "completed"}}), 5)
    assert new.index == 1 and new.request_kind == "prewarm" and not new.partial


frames = st.tuples(
    st.sampled_from(["c2u", "u2c", "other"]),
    st.floats(0, 1e6, allow_nan=False),
    st.one_of(
        st.none(), st.text(max_size=10),
        st.sampled_from(["response.create", "response.completed", "error", "response.output_text.delta",
                         "response.output_item.added", "codex.rate_limits"]).map(
            lambda t: json.dumps({"type": t, "delta": "x", "item": {"type": "message"}})),
    ),
    st.integers(0, 10_000),
)


@given(st.lists(frames, max_size=25))
def test_any_frame_sequence_is_safe(seq: list[tuple[str, float, str | None, int]]) -> None:
    tracker = TurnTracker("c")
    turns: list[Turn] = []
    for direction, ts, text, size in seq:
        turns += tracker.on_frame(direction, ts, text, size)
    turns += tracker.finish(2e6, "end")
    creates = sum(1 for d, _, t, _ in seq if d == "c2u" and t is not None and "response.create" in t)
    assert len(turns) == creates
    assert [t.index for t in turns] == list(range(len(turns)))
    assert all(t.partial == (t.error in ("end", SUPERSEDED)) for t in turns if t.error in ("end", SUPERSEDED))
