"""What changed between two requests, and why the cache broke."""

from __future__ import annotations

from typing import Any

import pytest

from ccxray.conversation import conversation
from ccxray.turndiff import cache_ttl_s, common_prefix, first_turn, turn_changes


def request(system: str = "sys", tools: tuple[str, ...] = ("Read",), texts: tuple[str, ...] = ("hi",), **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": [{"type": "text", "text": t, "cache_control": {"type": "ephemeral"}} if i == len(texts) - 1
                             else {"type": "text", "text": t}]} for i, t in enumerate(texts)]
    return {"system": system, "tools": [{"name": n} for n in tools], "messages": messages, **extra}


def line(received_ms: int, cache_read: int, model: str = "claude-opus-4-8", elapsed: float = 1000.0) -> dict[str, Any]:
    return {"id": f"id-{received_ms}", "receivedAt": received_ms, "elapsed": elapsed, "model": model,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": cache_read, "output_tokens": 5}}


def changes(before: dict[str, Any], after: dict[str, Any], prev: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    return turn_changes(conversation(before), conversation(after), prev, cur, after)


def test_appended_messages_are_new_and_cache_markers_do_not_count() -> None:
    before, after = request(texts=("hi",)), request(texts=("hi", "hello", "more"))
    c = changes(before, after, line(0, 50000), line(10_000, 52000))
    assert (c["newFrom"], c["newCount"], c["historyRewritten"]) == (1, 2, False)
    assert not c["systemChanged"] and c["toolsAdded"] == [] and c["cacheBreak"] is None
    assert c["gapS"] == pytest.approx(9.0) and c["previousId"] == "id-0"


@pytest.mark.parametrize(("after", "cur", "reason"), [
    (request(system="sys 2", texts=("hi", "a", "b")), line(10_000, 0), "system prompt changed"),
    (request(tools=("Read", "Bash"), texts=("hi", "a", "b")), line(10_000, 0), "tool list changed"),
    (request(texts=("hi", "a", "b")), line(10_000, 0, model="claude-haiku-4-5"), "model changed"),
    (request(texts=("summary", "b")), line(10_000, 0), "history rewritten or compacted"),
    (request(texts=("hi", "a", "b")), line(400_000, 0), "cache TTL expired: 6.7 min"),
    (request(texts=("hi", "a", "b")), line(10_000, 0), "prefix unchanged"),
    (request(texts=("hi", "a", "b")), line(10_000, 40000), None),  # a drop by less than half
])
def test_cache_break_reasons(after: dict[str, Any], cur: dict[str, Any], reason: str | None) -> None:
    c = changes(request(texts=("hi",)), after, line(0, 50000), cur)
    if reason is None:
        assert c["cacheBreak"] is None
    else:
        assert c["cacheBreak"] is not None and c["cacheBreak"].startswith(reason)


def test_small_caches_never_count_as_breaks() -> None:
    assert changes(request(), request(system="x"), line(0, 900), line(1000, 0))["cacheBreak"] is None


def test_one_hour_ttl_and_rewritten_history() -> None:
    long_ttl = request(texts=("hi", "a"), system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    assert cache_ttl_s(long_ttl) == 3600.0 and cache_ttl_s(request()) == 300.0 and cache_ttl_s(None) == 300.0
    c = changes(request(texts=("one", "two", "three")), request(texts=("one", "2", "three", "four")), line(0, 0), line(1, 0))
    assert c["historyRewritten"] and c["droppedCount"] == 2 and c["newFrom"] == 1


def test_incremental_websocket_turn_and_first_turn() -> None:
    before = {"type": "response.create", "input": [{"type": "message", "role": "user", "content": "a"}]}
    after = {"type": "response.create", "previous_response_id": "r1", "input": [{"type": "message", "role": "user", "content": "b"}]}
    c = changes(before, after, line(0, 0), line(1, 0))
    assert c["newFrom"] == 0 and c["newCount"] == 1 and not c["historyRewritten"]
    assert first_turn(conversation(after))["newCount"] == 1
    assert common_prefix([], [{"role": "user"}]) == 0


def test_gap_unknown_without_times() -> None:
    c = turn_changes(conversation(request()), conversation(request()), {"id": "a"}, {"id": "b"}, request())
    assert c["gapS"] is None and c["cacheReadBefore"] == 0
