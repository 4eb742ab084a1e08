"""The incremental SSE parser against the WHATWG rules, tables and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxray.wire.sse import SseEvent, SseParser, event_to_json, parse_sse


def feed_chunks(chunks: list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


@pytest.mark.parametrize(("stream", "expected"), [
    (b"data: hello\n\n", [SseEvent(None, "hello", None)]),
    (b"event: ping\ndata: {}\n\n", [SseEvent("ping", "{}", None)]),
    (b"data: a\ndata: b\n\n", [SseEvent(None, "a\nb", None)]),
    (b"data: a\r\ndata: b\r\n\r\n", [SseEvent(None, "a\nb", None)]),
    (b"data: a\rdata: b\r\r", [SseEvent(None, "a\nb", None)]),
    (b": comment\ndata: x\n:another\n\n", [SseEvent(None, "x", None)]),
    (b"data\n\n", [SseEvent(None, "", None)]),
    (b"data:\n\n", [SseEvent(None, "", None)]),
    (b"data:x\n\n", [SseEvent(None, "x", None)]),
    (b"data:  two spaces\n\n", [SseEvent(None, " two spaces", None)]),
    (b"data: a:b: c\n\n", [SseEvent(None, "a:b: c", None)]),
    (b"id: 7\ndata: x\n\ndata: y\n\n", [SseEvent(None, "x", "7"), SseEvent(None, "y", "7")]),
    (b"id: 7\ndata: x\n\nid\ndata: y\n\n", [SseEvent(None, "x", "7"), SseEvent(None, "y", None)]),
    (b"id: a\x00b\ndata: x\n\n", [SseEvent(None, "x", None)]),
    (b"event: only\n\ndata: x\n\n", [SseEvent(None, "x", None)]),
    (b"event: a\ndata: 1\n\ndata: 2\n\n", [SseEvent("a", "1", None), SseEvent(None, "2", None)]),
    (b"unknown: field\ndata: x\n\n", [SseEvent(None, "x", None)]),
    (b"\n\n\ndata: x\n\n", [SseEvent(None, "x", None)]),
    (b"data: x\n", []),
    (b"data: x", []),
    (b"", []),
    (b"\xef\xbb\xbfdata: bom\n\n", [SseEvent(None, "bom", None)]),
    (b"data: \xef\xbb\xbfkept\n\n", [SseEvent(None, "\ufeffkept", None)]),
    (b"data: \xff\xfe bad\n\n", [SseEvent(None, "\ufffd\ufffd bad", None)]),
])
def test_table(stream: bytes, expected: list[SseEvent]) -> None:
    assert parse_sse(stream) == expected
    assert feed_chunks([bytes([b]) for b in stream]) == expected


def test_cr_then_lf_across_feeds_is_one_line_end() -> None:
    assert feed_chunks([b"data: a\r", b"\ndata: b\n\n"]) == [SseEvent(None, "a\nb", None)]
    assert feed_chunks([b"data: a\r", b"", b"\ndata: b\n\n"]) == [SseEvent(None, "a\nb", None)]


def test_cr_then_cr_across_feeds_is_a_blank_line() -> None:
    assert feed_chunks([b"data: a\r", b"\rdata: b\n\n"]) == [SseEvent(None, "a", None), SseEvent(None, "b", None)]


def test_multibyte_character_split_across_feeds() -> None:
    data = "data: héllo ✓ 🎉\n\n".encode()
    for cut in range(len(data) + 1):
        assert feed_chunks([data[:cut], data[cut:]]) == [SseEvent(None, "héllo ✓ 🎉", None)]


def test_events_come_back_from_the_feed_that_completes_them() -> None:
    parser = SseParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\ndata: tw") == [SseEvent(None, "one", None)]
    assert parser.feed(b"o\n\n") == [SseEvent(None, "two", None)]


def test_close_discards_an_unterminated_event() -> None:
    parser = SseParser()
    assert parser.feed(b"data: complete\n\ndata: partial\n") == [SseEvent(None, "complete", None)]
    assert parser.close() == []


def test_retry_is_kept_on_the_parser() -> None:
    parser = SseParser()
    parser.feed(b"retry: 1500\n\nretry: x1\n\nretry: \xd9\xa3\n\nretry: " + b"9" * 5000 + b"\n\n")
    assert parser.retry_ms == 1500


@pytest.mark.parametrize(("data", "expected"), [
    ('{"type":"message_start","n":1}', {"type": "message_start", "n": 1}),
    ("[DONE]", "[DONE]"),
    ("42", 42),
    ("NaN", "NaN"),
    ("{broken", "{broken"),
    ("", ""),
    ("[" * 100_000, "[" * 100_000),
])
def test_event_to_json(data: str, expected: object) -> None:
    assert event_to_json(SseEvent("e", data, "1")) == {"event": "e", "data": expected}


_names = st.sampled_from(["", "message_start", "response.completed", "ping", "x y"])
_values = st.text(alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=20)
_endings = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    """A valid event stream with mixed line endings, comments and multi-line data."""
    out = []
    for _ in range(draw(st.integers(0, 6))):
        lines = [f"event: {draw(_names)}"] if draw(st.booleans()) else []
        lines += [f"data: {v}" for v in draw(st.lists(_values, min_size=1, max_size=3))]
        if draw(st.booleans()):
            lines.insert(0, ": keep-alive")
        lines.append("")
        out += [line + draw(_endings) for line in lines]
    return "".join(out).encode("utf-8")


@given(sse_streams(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_gives_the_same_events(stream: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    assert feed_chunks(chunks) == parse_sse(stream)


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8))
def test_random_bytes_never_raise_and_split_invariant(data: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    events = feed_chunks(chunks)
    assert events == parse_sse(data)
    for ev in events:
        assert isinstance(event_to_json(ev), dict)
