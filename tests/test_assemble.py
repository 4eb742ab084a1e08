"""The assembler on its own: relay facts in, index lines and sidecars out."""

from __future__ import annotations

import json

from ccxray.assemble import Assembler
from ccxray.pricing import PriceTable
from ccxray.record import CloseInfo, WsClosed, WsFrame, WsOpened

T0 = 1_795_500_000.0
HEADERS = [("session-id", "s-1"), ("originator", "codex_exec")]


def frames() -> list[WsFrame]:
    events = [
        ("c2u", {"type": "response.create", "model": "gpt-5.5", "input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "hi"}]}]}),
        ("u2c", {"type": "response.created", "response": {"id": "r1", "model": "gpt-5.5"}}),
        ("u2c", {"type": "response.output_text.delta", "delta": "hi"}),
        ("u2c", {"type": "response.completed", "response": {"id": "r1", "model": "gpt-5.5", "status": "completed",
                 "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}}}),
    ]
    return [WsFrame("c1", d, T0 + i * 0.01, json.dumps(e), len(json.dumps(e)), seq=i + 1)
            for i, (d, e) in enumerate(events)]


def run(order: list[int]) -> list[dict]:
    asm = Assembler(PriceTable.load())
    asm.handle(WsOpened("c1", T0, "/v1/responses", "openai", "http://up/v1/responses", HEADERS))
    lines: list[dict] = []
    items = frames()
    for index in order:
        writes = asm.handle(items[index])
        lines += writes.lines if writes else []
    closed = WsClosed("c1", 101, [], b"", CloseInfo("client", 1006), {"clientToUpstream": 1, "upstreamToClient": 3},
                      {"clientToUpstream": 1, "upstreamToClient": 1}, 1.0)
    writes = asm.handle(closed)
    return lines + (writes.lines if writes else [])


def test_replies_recorded_before_their_request_still_make_one_whole_turn():
    in_order = run([0, 1, 2, 3])
    # the u2c pump submitted its frames before the c2u pump submitted the request
    shuffled = run([1, 2, 3, 0])
    for lines in (in_order, shuffled):
        (turn,) = [l for l in lines if l["kind"] == "turn"]
        assert turn["usage"] == {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
        assert turn["error"] is None and turn["status"] == 200
    assert [l["kind"] for l in in_order] == ["turn", "connection"]


def test_a_turn_line_is_written_as_soon_as_the_turn_ends():
    asm = Assembler(PriceTable.load())
    asm.handle(WsOpened("c1", T0, "/v1/responses", "openai", "http://up/v1/responses", HEADERS))
    written = [asm.handle(f) for f in frames()]
    assert [w is not None and [l["kind"] for l in w.lines] for w in written][-1] == ["turn"]


def test_system_prompt_is_stored_once_by_hash():
    from ccxray.record import HttpCall
    asm = Assembler(PriceTable.load())
    body = json.dumps({"model": "claude-haiku-4-5", "system": "You are a careful agent.", "messages": []}).encode()
    shared = []
    hashes = []
    for n in range(3):
        call = HttpCall(id=f"c{n}", started=T0, method="POST", url="/v1/messages", provider="anthropic",
                        upstream_url=None, req_headers=[], req_body=body, status=200)
        writes = asm.handle(call)
        shared += [name for name, _ in writes.shared]
        hashes.append(writes.lines[0]["systemPromptHash"])
    assert len(set(hashes)) == 1 and hashes[0]
    assert shared == [f"system_{hashes[0]}"]
