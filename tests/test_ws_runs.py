"""A recv's messages handed to the recorder as one run (WsRun) are recorded
exactly as the same messages handed over one by one (WsFrame): the same frame
log bytes, index lines and files, in order or not, within the recording cap or
past it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccxray import wsassemble
from ccxray.assemble import Assembler
from ccxray.pricing import PriceTable
from ccxray.record import CloseInfo, WsClosed, WsOpened, WsRun

PRICES = PriceTable.load()
T0 = 1_700_000_000.25
Found = tuple["str | None", int, bool]

CREATE = json.dumps({"type": "response.create", "model": "gpt-5", "input": [{"role": "user", "content": "hi"}]})
UPSTREAM = st.sampled_from([
    '{"type":"response.output_text.delta","item_id":"m1","delta":"Hé"}',
    '{"type": "response.output_text.delta", "item_id": "m2", "delta": "x"}',
    '{"type":"response.output_text.delta","delta":"a\\nb"}',
    '{"type":"response.completed","response":{"id":"r1","status":"completed"}}',
    '{"type":"response.completed","response":{"status":"completed","usage":{"input_tokens":5,"output_tokens":2},'
    '"output":[{"type":"message","id":"m1","content":[{"type":"output_text","text":"Hé"}]}]}}',
    '{"type":"error","error":{"type":"server_error","message":"boom"}}',
    '{"type":"codex.rate_limits","primary":{"used_percent":3}}',
    "not json\twith a tab\nand a newline", "ü", "[1]", None,
])


@st.composite
def runs(draw: Any) -> list[tuple[str, list[Found]]]:
    """Runs of one direction each: creates (and junk) from the client, events from upstream."""
    out: list[tuple[str, list[Found]]] = []
    for _ in range(draw(st.integers(0, 8))):
        direction = draw(st.sampled_from(["c2u", "u2c", "u2c"]))
        texts = [CREATE if direction == "c2u" and draw(st.integers(0, 3)) else draw(UPSTREAM)
                 for _ in range(draw(st.integers(1, 6)))]
        out.append((direction, [(t, len((t or "x").encode()), draw(st.integers(0, 9)) == 0) for t in texts]))
    return out


def _record(items: list[Any]) -> tuple[list[Any], list[tuple[str, bytes, bool]]]:
    """What the recorder would write, in order (how the writes are grouped does not matter)."""
    asm = Assembler(PRICES)
    writes: list[Any] = [[], [], [], []]
    for item in items:
        got = asm.handle(item)
        if got is not None:
            for kept, new in zip(writes, (got.lines, got.sidecars, got.shared, got.raw)):
                kept += new
    return writes, asm.take_frames()


def _both(shape: list[tuple[str, list[Found]]], order: list[int]) -> None:
    opened = WsOpened("ws1", T0, "/v1/responses", "openai", None, [("session-id", "s1")])
    closed = WsClosed("ws1", 101, [], b"", CloseInfo("client", 1000), {}, {}, 9.0)
    seq, whole = 1, []
    for n, (direction, found) in enumerate(shape):
        whole.append(WsRun("ws1", direction, T0 + n / 64, seq, found))
        seq += len(found)
    sent = [whole[i] for i in order]
    by_run = _record([opened, *sent, closed])
    by_frame = _record([opened, *[frame for run in sent for frame in run.frames()], closed])
    assert by_run == by_frame


@settings(max_examples=300, deadline=None)
@given(runs(), st.randoms(use_true_random=False))
def test_runs_record_as_their_frames_one_by_one(shape: list[tuple[str, list[Found]]], rnd: Any) -> None:
    order = list(range(len(shape)))
    if rnd.random() < 0.5:
        rnd.shuffle(order)  # the two pumps submit in their own order
    _both(shape, order)


def test_a_run_that_crosses_the_recording_cap_is_cut_where_frames_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsassemble, "MAX_RECORDED_FRAME_BYTES", 100)
    delta = '{"type":"response.output_text.delta","item_id":"m1","delta":"' + "x" * 30 + '"}'
    done = '{"type":"response.completed","response":{"status":"completed"}}'
    _both([("c2u", [(CREATE, len(CREATE), False)]),
           ("u2c", [(delta, len(delta), False)] * 3 + [(done, len(done), False)])], [0, 1])
