"""The page's line index: per-session positions, chains; incremental, torn-line tolerant, reset by a prune."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ccxray.inflight import InFlight, InFlightRegistry, sniff
from ccxray.lineindex import LineIndex, chain_key


def write(path: Path, *lines: object, raw: bytes = b"") -> None:
    with open(path, "ab") as fh:
        for line in lines:
            fh.write(json.dumps(line).encode() + b"\n")
        fh.write(raw)


def test_incremental_reads_torn_lines_and_chains(tmp_path: Path) -> None:
    path = tmp_path / "index.ndjson"
    index = LineIndex(path)
    index.refresh()  # no file yet: nothing, no error
    assert index.session_ids(None) == [] and index.spots("s") == [] and index.read_many([("a", 0, 9)]) == []
    write(path, raw=b"[" * 100000 + b"]" * 100000 + b"\n")  # nested too deep to parse: skipped
    base = {"sessionId": "s", "provider": "anthropic", "model": "m", "receivedAt": 1, "systemPromptHash": "h1", "ts": "t1"}
    write(path, {"id": "a", **base}, {"id": "sub", **base, "isSubagent": True}, raw=b"not json\n{\"id\": \"b\", \"sessi")
    index.refresh()
    assert index.session_ids("s") == ["a", "sub"]
    with open(path, "ab") as fh:
        fh.write(b'onId": "s", "provider": "anthropic", "model": "m", "contextUse": 0.5}\n')
    write(path, {"id": "c", "sessionId": "s", "kind": "connection"}, {"id": "c-t0", "sessionId": "s", "kind": "turn",
                                                                     "connectionId": "c", "requestKind": "prewarm"})
    index.refresh()
    assert index.session_ids("s") == ["a", "sub", "b", "c", "c-t0"]
    assert index.previous["b"] == "a" and index.following["a"] == "b" and "sub" not in index.previous
    assert [t[0] for t in index.turns("c")] == ["c-t0"] and index.turns("a") == [] and index.sessions["s"].turns == 2 and index.sessions["s"].subagent_calls == 1
    assert index.sessions["s"].context_use == 0.5
    assert index.prompts["h1"].calls == 2 and index.prompts["h1"].first_id == "a"
    spots = {spot[0]: spot for spot in index.spots(None)}
    assert [l["id"] for l in index.read_many([spots["b"], ("missing", 0, 5), spots["a"]])] == ["b", "a"]
    write(path, {"id": "title", "sessionId": "s", "model": "haiku", "generatedTitle": "Fix the parser"})
    index.refresh()
    assert index.sessions["s"].generated_title == "Fix the parser" and index.sessions["s"].turns == 2


def test_replaced_or_shrunk_file_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "index.ndjson"
    write(path, {"id": "old", "sessionId": "s"}, {"id": "gone", "sessionId": "s"})
    index = LineIndex(path)
    index.refresh()
    replacement = tmp_path / "index.new"
    write(replacement, {"id": "kept", "sessionId": "s"})
    os.replace(replacement, path)  # what a prune does
    index.refresh()
    assert index.session_ids("s") == ["kept"] and index.session_ids(None) == ["kept"]
    os.unlink(path)
    index.refresh()
    assert index.session_ids(None) == []


def test_a_line_moved_under_its_offset_is_not_returned(tmp_path: Path) -> None:
    path = tmp_path / "index.ndjson"
    write(path, {"id": "x", "sessionId": "s"})
    index = LineIndex(path)
    index.refresh()
    with open(path, "r+b") as fh:
        fh.write(b'{"id": "y"')  # same inode and size, other content
    assert index.read_many(index.spots("s")) == []


def test_chain_keys_separate_side_calls_and_parallel_sub_agents() -> None:
    main = {"sessionId": "s", "provider": "anthropic", "model": "opus"}
    assert chain_key(main) != chain_key({**main, "model": "haiku"})
    sub = {**main, "isSubagent": True}
    assert chain_key({**sub, "systemPromptHash": "a"}) != chain_key({**sub, "systemPromptHash": "b"})
    assert chain_key({"sessionId": "s", "provider": "openai", "model": "x"}) == chain_key({"sessionId": "s", "provider": "openai", "model": "y"})


def test_inflight_registry_and_sniff() -> None:
    registry = InFlightRegistry()
    heard: list[tuple[str, str]] = []

    def listener(phase: str, call: dict[str, object]) -> None:
        heard.append((phase, str(call["id"])))

    registry.add_listener(listener)
    with registry.track("1", "POST", "/v1/messages", "anthropic", "http", [("Session-Id", "s")], b'{"model": "opus"}'):
        assert registry.list()[0]["sessionId"] == "s" and registry.list()[0]["model"] == "opus"
    registry.start(InFlight("2", 5, "WS", "/v1/responses", "openai", "websocket"))
    registry.end("2")
    registry.end("2")  # twice: heard once
    registry.remove_listener(listener)
    registry.remove_listener(listener)
    assert heard == [("start", "1"), ("end", "1"), ("start", "2"), ("end", "2")] and registry.list() == []
    assert sniff([], b"x" * 5000 + b'"model": "late"') == (None, None)
