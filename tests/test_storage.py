"""Storage that grows with what is new: long sessions through the proxy with the
official SDKs, read back whole and compared with what the fake upstream received."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import anthropic
import openai
import pytest
from websockets.sync.client import connect

from ccxray.readback import read_call
from ccxray.reqdelta import delta_base, is_packed
from ccxray.store import read_index
from tools.storage_sessions import SYSTEM_MARKER, claude_session, codex_session, codex_ws_frames

from .conftest import ProxyHandle

TURNS = 200
COMPACT_AT = 120


def drive_claude(proxy: ProxyHandle, bodies: Iterable[dict[str, Any]], session: str) -> None:
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0, timeout=20) as client:
        for body in bodies:
            with client.messages.create(**body, extra_headers={"X-Claude-Code-Session-Id": session}) as stream:
                for _ in stream:
                    pass


def drive_codex_http(proxy: ProxyHandle, bodies: Iterable[dict[str, Any]], session: str) -> None:
    headers = {"originator": "codex_exec", "session-id": session}
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-proj-test", max_retries=0, timeout=20) as client:
        for body in bodies:
            # the rest goes as extra_body: the SDK's typed transform of 600 input items costs ~0.2 s a call
            extra = {k: v for k, v in body.items() if k not in ("model", "stream")}
            with client.responses.create(model=body["model"], stream=True, extra_body=extra,
                                         extra_headers=headers) as stream:
                for _ in stream:
                    pass


def drive_codex_ws(proxy: ProxyHandle, frames: Iterable[dict[str, Any]], session: str) -> None:
    headers = {"originator": "codex_exec", "session-id": session}
    with connect(f"ws://127.0.0.1:{proxy.port}/v1/responses", additional_headers=headers, max_size=None) as ws:
        for frame in frames:
            ws.send(json.dumps(frame))
            while json.loads(ws.recv(timeout=20))["type"] != "response.completed":
                pass


def same_json(a: object, b: object) -> bool:
    """Equal values with the same key order."""
    return json.dumps(a) == json.dumps(b)


def marker_count(logs: Path) -> int:
    return sum(p.read_bytes().count(SYSTEM_MARKER.encode()) for p in logs.rglob("*") if p.is_file())


def calls_of(proxy: ProxyHandle, count: int, kind: str = "call") -> list[dict[str, Any]]:
    lines = proxy.wait_lines(lambda ls: sum(l["kind"] == kind for l in ls) >= count, 30, f"{count} {kind} lines")
    return [l for l in lines if l["kind"] == kind]


@pytest.mark.slow
@pytest.mark.parametrize("style", ["claude", "codex-http"])
def test_long_http_session_reads_back_exactly_what_upstream_received(fake, proxy, style):
    if style == "claude":
        drive_claude(proxy, claude_session(TURNS, "s-claude", COMPACT_AT), "s-claude")
    else:
        drive_codex_http(proxy, codex_session(TURNS, "s-codex", COMPACT_AT), "s-codex")
    lines = calls_of(proxy, TURNS)
    assert proxy.server.recorder.flush()
    received = [json.loads(seen["body"]) for seen in fake.seen]
    assert len(received) == len(lines) == TURNS
    stored = []
    for line, sent in zip(lines, received):
        call = read_call(proxy.logs, line["id"], proxy.server.recorder.store.offsets)
        assert call is not None and same_json(call["request"], sent), line["id"]
        stored.append(json.loads((proxy.logs / f"{line['id']}_req.json").read_text()))
    assert marker_count(proxy.logs) == 1  # the system prompt is on disk once
    assert all(is_packed(s) for s in stored)
    # the compaction rewrote the history: a new base, and later calls build on it (Claude's
    # next call moves the cache mark off the summary, its only message: one more base)
    after = COMPACT_AT + (2 if style == "claude" else 1)
    assert delta_base(stored[COMPACT_AT]) is None and delta_base(stored[COMPACT_AT - 1]) is not None
    assert delta_base(stored[after]) == lines[after - 1]["id"]
    bases = sum(delta_base(s) is None for s in stored)
    assert 4 <= bases <= 12  # bounded chains: a snapshot every K calls, not every call
    full = sum(len(json.dumps(r)) for r in received)
    on_disk = sum(p.stat().st_size for p in proxy.logs.glob("*_req.json")) + \
        sum(p.stat().st_size for p in (proxy.logs / "shared").iterdir())
    assert on_disk < 0.10 * full, (on_disk, full)


@pytest.mark.slow
def test_long_websocket_session_reads_back_every_frame(fake, proxy):
    drive_codex_ws(proxy, codex_ws_frames(TURNS, "s-ws"), "s-ws")
    turns = calls_of(proxy, TURNS, "turn")
    (conn,) = calls_of(proxy, 1, "connection")
    sent = [json.loads(f["text"]) for f in fake.seen[-1]["frames"] if f["dir"] == "c2u"]
    assert len(sent) == len(turns) == TURNS
    for line, frame in zip(turns, sent):
        call = read_call(proxy.logs, line["id"])
        assert call is not None and same_json(call["request"], frame), line["id"]
    whole = read_call(proxy.logs, conn["id"])
    assert whole is not None
    assert [f["data"] for f in whole["request"]] == sent  # the connection's frames, put back from its turns
    assert marker_count(proxy.logs) == 1
