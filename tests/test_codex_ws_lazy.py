"""The lazy turn tracker (types read from frame heads, deltas decoded only when
needed) gives exactly the facts of decoding every frame (tests/ref_codex_ws.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ccxray.pricing import PriceTable
from ccxray.summarize import summarize_turn
from ccxray.wire.codex_ws import Turn, TurnTracker, decode, event_kind

from . import ref_codex_ws as ref
from .recorded import recorded_frames

PRICES = PriceTable.load()
Frame = tuple[str, float, "str | None", int]


def _facts(turn: Any) -> dict[str, Any]:
    return {
        "line": summarize_turn(turn, PRICES), "index": turn.index, "started": turn.started, "ended": turn.ended,
        "partial": turn.partial, "error": turn.error, "kind": turn.request_kind, "request": turn.request,
        "ttft": turn.first_token_ts, "events": turn.events, "bytes": (turn.bytes_c2u, turn.bytes_u2c),
        "usage": turn.response.usage, "stop": turn.response.stop_reason, "id": turn.response.response_id,
        "model": turn.response.model, "status": turn.response.status, "error_obj": turn.response.error,
        "tools": [c.get("name") for c in turn.response.tool_calls], "limits": turn.response.rate_limits,
    }


def _both(frames: list[Frame], end: float = 1e7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lazy, full = TurnTracker("c"), ref.TurnTracker("c")
    got: list[Turn] = []
    want: list[ref.Turn] = []
    for direction, ts, text, size in frames:
        got += lazy.on_frame(direction, ts, text, size)
        want += full.on_frame(direction, ts, text, size)
    got += lazy.finish(end, "closed")
    want += full.finish(end, "closed")
    return [_facts(t) for t in got], [_facts(t) for t in want]


def _fixture_frames() -> list[Frame]:
    rows = recorded_frames()
    return [(r["dir"], 1000 + r["ts"] / 1000, None if r["binary"] else r["text"], r["size"]) for r in rows]


def test_fixture_turns_match_the_full_parse() -> None:
    frames = _fixture_frames()
    got, want = _both(frames)
    assert len(got) == 2 and got == want
    for cut in range(len(frames)):  # every point a connection can drop at
        lazy, full = _both(frames[:cut])
        assert lazy == full


def test_terminal_output_settles_the_deltas_without_decoding_them() -> None:
    frames = _fixture_frames()
    decoded = _decoded_kinds(frames)
    deltas = sum(1 for f in frames if f[2] and event_kind(f[2]) == "response.output_text.delta")
    # the fixture's turn streams its reply in deltas, after the output_item.added that
    # proves the first token, and its response.completed carries the output: none is decoded
    assert deltas >= 2 and decoded.count("response.output_text.delta") == 0
    assert decoded.count("response.completed") == 2 and decoded.count("response.create") == 2


def test_event_kind_reads_the_head_and_declines_anything_else() -> None:
    assert event_kind('{"type":"response.completed","x":1}') == "response.completed"
    assert event_kind('{"type": "error"}') == "error"
    assert event_kind('{"type":"a\\"b"}') is None and event_kind('{"id":1,"type":"x"}') is None
    assert event_kind('{"type":"unterminated') is None and event_kind(" {}") is None
    assert decode(' {"a": 1} ') == {"a": 1} and decode("[1,") is None and decode("NaN") != decode("NaN")


# -- generated sequences ----------------------------------------------------------

TEXTS = st.sampled_from(["", " ", "Hi.", "{", "}", '{"title": "T"}', '{"title":', ' "x"}', "a\nb", "ü"])
IDS = st.sampled_from(["m1", "m2", "f1", ""])
ITEM = st.fixed_dictionaries({
    "type": st.sampled_from(["message", "function_call", "custom_tool_call", "reasoning", "web_search_call"]),
    "id": IDS, "name": st.sampled_from(["shell", "apply_patch"]), "arguments": st.sampled_from(["", "{}"]),
    "role": st.just("assistant"),
    "content": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["output_text", "refusal"]),
                                               "text": TEXTS}), max_size=2),
})
USAGE = st.fixed_dictionaries({"input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**5),
                               "input_tokens_details": st.fixed_dictionaries({"cached_tokens": st.integers(0, 1000)})})
RESPONSE = st.fixed_dictionaries({
    "id": st.sampled_from(["r1", "r2"]), "model": st.sampled_from(["gpt-5", "gpt-5.5", "nope"]),
    "status": st.sampled_from(["completed", "in_progress", "incomplete", "failed"]),
    "usage": st.one_of(st.none(), USAGE), "output": st.lists(ITEM, max_size=3),
}, optional={"error": st.fixed_dictionaries({"code": st.just("server_error")}),
             "incomplete_details": st.fixed_dictionaries({"reason": st.just("max_output_tokens")})})


def _event(kind: str, draw: Any) -> dict[str, Any]:
    if kind in ("response.created", "response.in_progress", "response.completed", "response.failed",
                "response.incomplete", "response.done"):
        return {"type": kind, "response": draw(RESPONSE)}
    if kind in ("response.output_item.added", "response.output_item.done"):
        return {"type": kind, "output_index": draw(st.integers(0, 2)), "item": draw(ITEM)}
    if kind.endswith("delta"):
        return {"type": kind, "item_id": draw(IDS), "delta": draw(TEXTS)}
    if kind.endswith(".done"):
        return {"type": kind, "item_id": draw(IDS), "text": draw(TEXTS), "arguments": draw(TEXTS)}
    if kind == "error":
        return {"type": "error", "status": 429, "error": {"type": "usage_limit_reached", "message": draw(TEXTS)}}
    if kind == "codex.rate_limits":
        return {"type": kind, "primary": {"used_percent": draw(st.integers(0, 100))}}
    return {"type": kind, "sequence_number": 1}


KINDS = [
    "response.created", "response.in_progress", "response.output_item.added", "response.output_item.done",
    "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
    "response.output_text.done", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "response.custom_tool_call_input.delta",
    "response.reasoning_summary_text.delta", "codex.rate_limits", "response.completed", "response.failed",
    "response.incomplete", "response.done", "error", "response.content_part.added",
]


@st.composite
def frame(draw: Any) -> Frame:
    ts = draw(st.floats(0, 1e6, allow_nan=False))
    size = draw(st.integers(0, 10_000))
    if draw(st.integers(0, 5)) == 0:
        create: dict[str, Any] = {"type": "response.create", "model": draw(st.sampled_from(["gpt-5", "gpt-5.5"])),
                                  "input": [{"role": "user", "content": draw(TEXTS)}]}
        if draw(st.booleans()):
            create["generate"] = False
        return ("c2u", ts, json.dumps(create, separators=draw(SEPARATORS)), size)
    shape = draw(st.integers(0, 12))
    if shape == 0:  # junk: binary, not JSON, cut JSON, not an object, a recorded wrapper
        junk = draw(st.sampled_from([None, "not json", '{"type":"response.completed"', "[1, 2]", "null",
                                     '{"type":"response.output_text.delta","delta":', "NaN", "7"]))
        return (draw(st.sampled_from(["u2c", "c2u"])), ts, junk, size)
    event = _event(draw(st.sampled_from(KINDS)), draw)
    if shape == 1:
        event = {"event": event["type"], "data": event}
    elif shape == 2:
        event = {"type": event["type"], "data": event}
    return ("u2c", ts, json.dumps(event, separators=draw(SEPARATORS)), size)


SEPARATORS = st.sampled_from([(",", ":"), (", ", ": ")])


@settings(max_examples=400, deadline=None)
@given(st.lists(frame(), max_size=30))
def test_any_sequence_gives_the_facts_of_the_full_parse(frames: list[Frame]) -> None:
    lazy, full = _both(frames)
    assert lazy == full


def _turn(events: list[dict[str, Any]]) -> list[Frame]:
    create = json.dumps({"type": "response.create", "model": "gpt-5", "input": "hi"})
    return [("c2u", 1.0, create, 10)] + [("u2c", 2.0 + n, json.dumps(e), 10) for n, e in enumerate(events)]


def _message(item_id: str, *texts: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant",
            "content": [{"type": "output_text", "text": t} for t in texts]}


def test_deltas_are_decoded_when_they_could_make_a_generated_title() -> None:
    done = {"type": "response.completed", "response": {"status": "completed", "output": [_message("m1", '{"title":')]}}
    orphan = {"type": "response.output_text.delta", "item_id": "m2", "delta": ' "Orphan"}'}
    lazy, full = _both(_turn([orphan, done]))
    assert lazy == full and lazy[0]["line"]["generatedTitle"] == "Orphan"
    bare = {"type": "response.completed", "response": {"status": "completed", "output": [_message("m1")]}}
    delta = {"type": "response.output_text.delta", "item_id": "m1", "delta": '{"title": "Streamed"}'}
    lazy, full = _both(_turn([delta, bare]))
    assert lazy == full and lazy[0]["line"]["generatedTitle"] == "Streamed"


@st.composite
def turn_frames(draw: Any) -> list[Frame]:
    """A well-formed turn: deltas for items the output may or may not name, then a terminal event."""
    events: list[dict[str, Any]] = [_event(draw(st.sampled_from(KINDS[:-6])), draw)
                                    for _ in range(draw(st.integers(0, 8)))]
    output = [_message(draw(IDS), *draw(st.lists(TEXTS, max_size=2))) for _ in range(draw(st.integers(0, 2)))]
    events.append({"type": draw(st.sampled_from(["response.completed", "response.incomplete"])),
                   "response": {"status": "completed", "output": output, "usage": draw(USAGE)}})
    return _turn(events)


@settings(max_examples=400, deadline=None)
@given(turn_frames())
def test_any_whole_turn_gives_the_facts_of_the_full_parse(frames: list[Frame]) -> None:
    lazy, full = _both(frames)
    assert lazy == full


# -- text deltas left undecoded when no text could open like a generated title ------

def _delta(text: str, item_id: str = "m1") -> dict[str, Any]:
    return {"type": "response.output_text.delta", "item_id": item_id, "delta": text}


BARE_END = {"type": "response.completed", "response": {"id": "r1", "status": "completed"}}  # no output


def _decoded_kinds(frames: list[Frame]) -> list[str]:
    """The types of the frames the lazy tracker decodes for ``frames``."""
    import ccxray.wire.codex_ws as codex_ws
    decoded: list[str] = []
    original = codex_ws.decode

    def spy(text: str) -> object:
        decoded.append(event_kind(text) or "?")
        return original(text)
    codex_ws.decode = spy  # type: ignore[assignment]
    try:
        tracker = TurnTracker("c")
        for direction, ts, text, size in frames:
            tracker.on_frame(direction, ts, text, size)
    finally:
        codex_ws.decode = original  # type: ignore[assignment]
    return decoded


def test_a_title_streamed_only_in_deltas_is_found() -> None:
    frames = _turn([_delta(" "), _delta('{"ti'), _delta('tle": "Fix'), _delta(' the bug"}'), BARE_END])
    lazy, full = _both(frames)
    assert lazy == full and lazy[0]["line"]["generatedTitle"] == "Fix the bug"


def test_a_brace_spelled_as_an_escape_still_makes_a_title() -> None:
    escaped = '{"type":"response.output_text.delta","item_id":"m1","delta":"\\u007b\\"title\\": \\"Esc\\"}"}'
    frames = _turn([BARE_END])
    frames.insert(1, ("u2c", 1.5, escaped, len(escaped)))
    lazy, full = _both(frames)
    assert lazy == full and lazy[0]["line"]["generatedTitle"] == "Esc"


def test_prose_deltas_are_not_decoded_beyond_the_first_token() -> None:
    frames = _turn([_delta("Hello"), _delta(" there,"), _delta(" friend."), BARE_END])
    lazy, full = _both(frames)
    assert lazy == full and lazy[0]["line"]["generatedTitle"] is None and lazy[0]["ttft"] == 2.0
    decoded = _decoded_kinds(frames)
    assert decoded.count("response.output_text.delta") == 1  # the first token's only
    assert decoded.count("response.completed") == 1


def test_braces_in_a_reply_or_in_the_output_fold_every_delta() -> None:
    code = _turn([_delta("Use `f() {"), _delta(" return 1; }`"), BARE_END])
    lazy, full = _both(code)
    assert lazy == full and _decoded_kinds(code).count("response.output_text.delta") == 2
    done = {"type": "response.output_item.done", "output_index": 0, "item": _message("m1", "{")}
    announced = _turn([_delta(' "title": "Done"}', "m2"), done, BARE_END])  # the brace comes from an item
    lazy, full = _both(announced)
    assert lazy == full and lazy[0]["line"]["generatedTitle"] == "Done"


def test_a_turn_with_tool_calls_names_them_without_decoding_argument_deltas() -> None:
    call = {"type": "function_call", "id": "f1", "call_id": "call_1", "name": "shell", "arguments": ""}
    frames = _turn([
        {"type": "response.output_item.added", "output_index": 0, "item": call},
        {"type": "response.function_call_arguments.delta", "item_id": "f1", "delta": '{"cmd":'},
        {"type": "response.function_call_arguments.delta", "item_id": "f1", "delta": ' "ls"}'},
        {"type": "response.output_item.done", "output_index": 0, "item": {**call, "arguments": '{"cmd": "ls"}'}},
        BARE_END,
    ])
    lazy, full = _both(frames)
    assert lazy == full and lazy[0]["line"]["toolNames"] == ["shell"] and lazy[0]["line"]["toolCalls"] == 1
    assert "response.function_call_arguments.delta" not in _decoded_kinds(frames)


def _in_runs(frames: list[Frame], cuts: list[bool]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The lazy tracker fed upstream frames in runs (a run shares its first frame's
    time, as a relay's recv does), the reference fed the same frames one by one."""
    lazy, full = TurnTracker("c"), ref.TurnTracker("c")
    got: list[Turn] = []
    want: list[ref.Turn] = []
    run: list[tuple[str | None, int, bool]] = []
    run_ts = 0.0
    for n, (direction, ts, text, size) in enumerate(frames):
        if direction != "u2c":
            got += [turn for _, turn in lazy.upstream_run(run_ts, run)]
            run = []
            got += lazy.on_frame(direction, ts, text, size)
            want += full.on_frame(direction, ts, text, size)
            continue
        run_ts = ts if not run else run_ts
        run.append((text, size, False))
        want += full.on_frame(direction, run_ts, text, size)
        if cuts[n % len(cuts)]:
            got += [turn for _, turn in lazy.upstream_run(run_ts, run)]
            run = []
    got += [turn for _, turn in lazy.upstream_run(run_ts, run)]
    got += lazy.finish(1e7, "closed")
    want += full.finish(1e7, "closed")
    return [_facts(t) for t in got], [_facts(t) for t in want]


@settings(max_examples=300, deadline=None)
@given(st.lists(frame(), max_size=30), st.lists(st.booleans(), min_size=1, max_size=8))
def test_frames_fed_in_runs_give_the_facts_of_the_full_parse(frames: list[Frame], cuts: list[bool]) -> None:
    lazy, full = _in_runs(frames, cuts)
    assert lazy == full


@settings(max_examples=200, deadline=None)
@given(turn_frames(), st.lists(st.booleans(), min_size=1, max_size=8))
def test_whole_turns_fed_in_runs_give_the_facts_of_the_full_parse(frames: list[Frame], cuts: list[bool]) -> None:
    lazy, full = _in_runs(frames, cuts)
    assert lazy == full
