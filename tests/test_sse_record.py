"""The recorder's one-pass SSE reading gives exactly what the incremental parser
and per-event JSON gave: the same events, the same sidecar list, the same line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from ccxray import summarize
from ccxray.assemble import Assembler
from ccxray.pricing import PriceTable
from ccxray.record import HttpCall
from ccxray.store import encode_json
from ccxray.wire.sse import SseEvent, SseParser, event_to_json, events_to_json, parse_sse

FIXTURES = Path(__file__).parent / "fixtures"
SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8")]


def incremental(data: bytes) -> list[SseEvent]:
    parser = SseParser()
    return parser.feed(data) + parser.close()


def reference_events(events: list[SseEvent]) -> tuple[list[dict[str, object]], bytes]:
    parsed = [event_to_json(ev) for ev in events]
    return parsed, json.dumps(parsed, ensure_ascii=False).encode("utf-8", "surrogatepass")


_lines = st.one_of(
    st.sampled_from(["", ":comment", "data", "data:", "data: x", "data:  two", "event: ping", "event:",
                     "id: 7", "id: a\0b", "id", "retry: 3000", "retry: x", "other: y", "data: {\"a\": [1, 2]}",
                     "data: NaN", "data: 1e400", "data: \"é\"", "data: [1,", "\ufeffdata: bom"]),
    st.text(max_size=12).map(lambda t: t.replace("\r", "").replace("\n", "")),
)


@given(st.lists(st.tuples(_lines, st.sampled_from(["\n", "\r\n", "\r"])), max_size=30), st.booleans())
def test_one_pass_reads_any_stream_as_the_parser_does(lines: list[tuple[str, str]], bom: bool) -> None:
    data = ("\ufeff" if bom else "") + "".join(line + end for line, end in lines)
    assert parse_sse(data.encode()) == incremental(data.encode())


@given(st.binary(max_size=400))
def test_one_pass_reads_any_bytes_as_the_parser_does(data: bytes) -> None:
    assert parse_sse(data) == incremental(data)


_data = st.one_of(st.text(max_size=30), st.sampled_from(['{"a":1}', " [1, 2] ", "NaN", "-Infinity", "1e999",
                                                       '{"a":1,"a":2}', '"\\ud800"', "null", "01", '{"x": "é"}']),
                  st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                             max_size=3),
                               max_leaves=8).map(lambda v: json.dumps(v, ensure_ascii=False)))


@given(st.lists(st.builds(SseEvent, st.none() | st.text(max_size=10), _data, st.none()), max_size=12))
def test_the_stored_list_is_the_list_of_parsed_events(events: list[SseEvent]) -> None:
    parsed, raw = events_to_json(events)
    expected, _ = reference_events(events)
    assert parsed == expected
    assert json.loads(raw) == expected


def fixture_stream(name: str) -> tuple[list[tuple[str, str]], bytes, bytes]:
    folder = FIXTURES / name
    events = json.loads((folder / "events.json").read_text())
    body = "".join(f"event: {ev['event']}\ndata: {json.dumps(ev['data'])}\n\n" for ev in events).encode()
    headers = [tuple(pair) for pair in json.loads((folder / "headers.json").read_text())]
    return headers, (folder / "request.json").read_bytes(), body  # type: ignore[return-value]


def writes_for(headers: list[tuple[str, str]], request: bytes, body: bytes, provider: str) -> Any:
    call = HttpCall(id="c1", started=1_800_000_000.0, method="POST", url="/v1/x", provider=provider,
                    upstream_url=None, req_headers=headers, req_body=request, status=200,
                    resp_headers=SSE_HEADERS, resp_body=[body], resp_size=len(body), elapsed_s=0.5)
    return Assembler(PriceTable.load()).handle(call)


@pytest.mark.parametrize("name,provider", [("claude-http", "anthropic"), ("codex-http", "openai")])
def test_fixtures_give_the_same_line_and_sidecar_as_the_full_parse(monkeypatch: Any, name: str,
                                                                   provider: str) -> None:
    headers, request, body = fixture_stream(name)
    ours = writes_for(headers, request, body, provider)
    monkeypatch.setattr(summarize, "parse_sse", incremental)
    monkeypatch.setattr(summarize, "events_to_json", reference_events)
    theirs = writes_for(headers, request, body, provider)
    assert ours.lines == theirs.lines and ours.lines[0]["usage"] and ours.lines[0]["model"]
    ours_res = [json.loads(encode_json(obj)) for _, part, obj in ours.sidecars if part == "res"]
    theirs_res = [json.loads(encode_json(obj)) for _, part, obj in theirs.sidecars if part == "res"]
    assert ours_res == theirs_res and len(ours_res[0]["response"]) > 3
