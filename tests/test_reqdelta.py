"""Packing requests against their chain and re-inflating them, without any file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from ccxray.offsets import IndexOffsets
from ccxray.reqdelta import (
    MARK, Chains, Sources, UnpackError, common_prefix, delta_base, is_packed, pack, unpack,
)
from ccxray.sessions import prompt_hash
from ccxray.wire import anthropic, openai
from tools.storage_sessions import SYSTEM_MARKER, claude_session, codex_session


class Disk:
    """The files a packed request names, kept in dicts."""

    def __init__(self) -> None:
        self.reqs: dict[str, dict[str, Any]] = {}
        self.prompts: dict[str, str] = {}
        self.blobs: dict[str, Any] = {}

    def history(self, call_id: str, key: str) -> list[Any]:
        return unpack(self.reqs[call_id], self.sources())[key]  # type: ignore[index,no-any-return]

    def sources(self) -> Sources:
        return Sources(self.history, self.prompts.__getitem__, self.blobs.__getitem__)


def record(bodies: list[dict[str, Any]], wire: Any, chains: Chains | None = None) -> tuple[Disk, list[bool]]:
    disk, chains, bases = Disk(), chains or Chains(), []
    for n, body in enumerate(bodies):
        text = wire.request_facts(body).system_text
        digest = prompt_hash(text) if text else None
        if digest:
            disk.prompts[digest] = text
        packed = chains.pack("k", f"c{n}", body, text, digest)
        assert packed is not None
        disk.blobs.update(packed.blobs)
        disk.reqs[f"c{n}"] = json.loads(json.dumps(packed.body))  # as it comes back from disk
        bases.append(packed.is_base)
    return disk, bases


@pytest.mark.parametrize("make,wire", [(claude_session, anthropic), (codex_session, openai)])
def test_every_request_comes_back_exactly_with_key_order(make, wire):
    bodies = list(make(turns=80, compact_at=50))
    disk, bases = record(bodies, wire)
    for n, body in enumerate(bodies):
        back = unpack(disk.reqs[f"c{n}"], disk.sources())
        assert json.dumps(back) == json.dumps(body)
    assert bases[0] and bases[50]  # the first call and the compaction start a new base
    # (Claude's second call rewrote the only earlier message: its cache mark moved, nothing is kept)
    first_delta = 2 if wire is anthropic else 1
    assert not any(bases[first_delta:first_delta + 31]) and bases[first_delta + 31]  # a full snapshot every K
    stored = json.dumps(disk.reqs)
    assert SYSTEM_MARKER not in stored  # in the shared prompt text only
    assert stored.count('"$blob"') == len(bodies) and len(disk.blobs) == 1  # one tool list, named by all


def test_cache_mark_moving_to_the_newest_message_still_gives_a_delta():
    bodies = list(claude_session(turns=4))
    disk, bases = record(bodies, anthropic)
    assert bases == [True, True, False, False]  # c1 rewrote c0's only message (the mark moved)
    delta = disk.reqs["c3"]["messages"]["$delta"]
    assert delta["base"] == "c2" and delta["prefix"] == 4  # c2's newest message was rewritten the same way


def test_an_edited_old_message_starts_a_new_base():
    bodies = list(claude_session(turns=10))
    edited = json.loads(json.dumps(bodies[9]))
    edited["messages"][1]["content"][0]["text"] = "edited"
    disk, bases = record(bodies[:9] + [edited], anthropic)
    assert bases[-1] and delta_base(disk.reqs["c9"]) is None


def test_common_prefix_rules():
    assert common_prefix([1, 2, 3], [1, 2, 3, 4]) == 3
    assert common_prefix([1, 2, 3], [1, 2, 9, 4]) == 2
    assert common_prefix([1, 2, 3], [9, 2, 3, 4]) == 0
    assert common_prefix(list(range(20)), list(range(10))) == 0  # shrunk: a rewrite
    assert common_prefix([], [1]) == 0


def test_non_objects_and_small_values_stay_as_they_are():
    assert pack("c", [1, 2], None, None, None) is None
    packed = pack("c", {"model": "m", "tools": [{"name": "t"}], "system": "short"}, None, "short", "h")
    assert packed is not None and packed.body == {MARK: 1, "model": "m", "tools": [{"name": "t"}], "system": "short"}
    assert unpack({"model": "m"}, Disk().sources()) == {"model": "m"}  # an old full body


def test_bad_references_are_errors_not_wrong_bodies():
    disk, _ = record(list(claude_session(turns=3)), anthropic)
    short = json.loads(json.dumps(disk.reqs["c2"]))
    short["messages"]["$delta"]["prefix"] = 999
    with pytest.raises(UnpackError, match="base c1 has"):
        unpack(short, disk.sources())
    bad = json.loads(json.dumps(disk.reqs["c2"]))
    bad["system"][2]["text"]["at"] = 10 ** 9
    with pytest.raises(UnpackError, match="outside prompt"):
        unpack(bad, disk.sources())
    malformed = {MARK: 1, "messages": {"$delta": {"base": 3}}}
    with pytest.raises(UnpackError, match="malformed"):
        unpack(malformed, disk.sources())


def test_chains_forget_and_eviction():
    chains = Chains(max_chains=2)
    body = {"messages": [{"role": "user", "content": "a"}], "tools": [{"d": "x" * 300}]}
    first = chains.pack("a", "c0", body, None, None)
    again = chains.pack("a", "c1", {**body, "messages": body["messages"] * 2}, None, None)
    assert first is not None and again is not None and first.blobs and not again.blobs  # blob written once
    assert not again.is_base
    chains.pack("b", "c2", body, None, None)
    chains.pack("c", "c3", body, None, None)  # evicts "a"
    assert chains.pack("a", "c4", {**body, "messages": body["messages"] * 3}, None, None).is_base  # type: ignore[union-attr]
    chains.forget()
    assert chains.pack("b", "c5", body, None, None).blobs  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), max_size=6), min_size=1, max_size=8))
def test_any_sequence_of_histories_round_trips(histories):
    bodies = [{"model": "m", "messages": [{"role": "user", "content": str(x)} for x in h]} for h in histories]
    disk, _ = record(bodies, anthropic, Chains(max_depth=3))
    for n, body in enumerate(bodies):
        assert unpack(disk.reqs[f"c{n}"], disk.sources()) == body
        assert is_packed(disk.reqs[f"c{n}"])


def test_offsets_find_every_id_as_the_table_grows():
    offsets = IndexOffsets()
    offsets.replace([("a", 0), ("b", 10)])
    for n in range(5000):  # several doublings past the first 1024 slots
        offsets.add(f"n{n}", 100 + n)
    assert offsets.candidates("a") == [0] and offsets.candidates("b") == [10]
    assert all(offsets.candidates(f"n{n}") == [100 + n] for n in range(5000))
    assert offsets.candidates("missing") == [] and len(offsets) == 5002
    offsets.add("a", 500)  # the line was written again elsewhere: the latest offset is tried first
    assert offsets.candidates("a") == [500, 0]
    offsets.add("a", 500)  # the same pair twice is one entry
    assert len(offsets) == 5003
