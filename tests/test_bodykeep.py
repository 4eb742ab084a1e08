"""Bounded memory per response: a body past CCXRAY_RECORD_MAX_MB goes to its
sidecar file as it streams, the recorder summarizes from its ends.

The slow test streams 200 MB of small SSE events from a raw upstream through
a proxy subprocess and bounds the proxy's peak RSS (VmHWM).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from ccxray.assemble import Assembler
from ccxray.bodykeep import HEAD_BYTES, TAIL_BYTES, BodyKeeper
from ccxray.pricing import PriceTable
from ccxray.record import HttpCall

from .conftest import wait_until
from .test_cli import Running
from .test_recorder_faults import _env

MB = 1024 * 1024


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


START = sse("message_start", {"type": "message_start", "message": {
    "id": "msg_big", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
    "usage": {"input_tokens": 11, "output_tokens": 1}}})
PING = sse("ping", {"type": "ping"})
END = sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                            "usage": {"output_tokens": 4321}}) + sse("message_stop", {"type": "message_stop"})


def test_keeper_holds_a_small_body_whole(tmp_path):
    keeper = BodyKeeper(8 * MB, 50 * MB, str(tmp_path / "x_res.body"))
    keeper.add(b"abc")
    keeper.add(b"def")
    keeper.close()
    assert b"".join(keeper.head) == b"abcdef" and not keeper.spilled and not (tmp_path / "x_res.body").exists()


def test_keeper_spills_past_its_budget_and_keeps_head_and_tail(tmp_path):
    path = tmp_path / "logs" / "x_res.body"  # the folder does not exist yet
    keeper = BodyKeeper(1, 50 * MB, str(path))
    chunks = [bytes([i % 251]) * 65536 for i in range(80)]  # 5 MiB
    for chunk in chunks:
        keeper.add(chunk)
    keeper.close()
    whole = b"".join(chunks)
    assert keeper.spilled and keeper.size == len(whole) and path.read_bytes() == whole
    assert b"".join(keeper.head) == whole[:HEAD_BYTES]
    tail = keeper.tail_bytes()
    assert whole.endswith(tail) and TAIL_BYTES <= len(tail) < TAIL_BYTES + 65536


def test_keeper_spills_from_the_first_byte_when_the_length_announced_is_past_its_budget(tmp_path):
    path = tmp_path / "x_res.body"
    keeper = BodyKeeper(2 * MB, 50 * MB, str(path))
    chunks = [bytes([i % 251]) * 300_000 for i in range(12)]  # 3.4 MB, chunks straddle the head's end
    keeper.expect(sum(map(len, chunks)))
    keeper.add(chunks[0])
    assert keeper.spilled and path.stat().st_size == len(chunks[0])  # nothing held back
    for chunk in chunks[1:]:
        keeper.add(chunk)
    keeper.close()
    whole = b"".join(chunks)
    assert keeper.size == len(whole) and path.read_bytes() == whole
    assert b"".join(keeper.head) == whole[:HEAD_BYTES]
    assert whole.endswith(keeper.tail_bytes()) and len(keeper.tail_bytes()) >= TAIL_BYTES


def test_keeper_given_a_length_within_its_budget_holds_the_body(tmp_path):
    keeper = BodyKeeper(2 * MB, 50 * MB, str(tmp_path / "x_res.body"))
    keeper.expect(6)
    keeper.add(b"abcdef")
    keeper.close()
    assert b"".join(keeper.head) == b"abcdef" and not keeper.spilled


def test_keeper_stops_the_file_at_the_cap_and_says_truncated(tmp_path):
    keeper = BodyKeeper(1, 3 * MB, str(tmp_path / "x_res.body"))
    for _ in range(80):
        keeper.add(b"z" * 65536)
    keeper.close()
    assert keeper.truncated and (tmp_path / "x_res.body").stat().st_size == 3 * MB
    assert keeper.tail_bytes().endswith(b"z")


def test_spilled_stream_is_summarized_from_its_ends(tmp_path):
    head = START + PING * 100
    call = HttpCall(id="big1", started=time.time(), method="POST", url="/v1/messages", provider="anthropic",
                    upstream_url="https://api.anthropic.com/v1/messages",
                    req_headers=[("content-type", "application/json")],
                    req_body=b'{"model":"claude-sonnet-4-5","stream":true,"messages":[]}', status=200,
                    resp_headers=[("content-type", "text/event-stream")],
                    resp_body=[head + b"event: ping\ndata: {\"ty"],  # cut mid-event, as a head is
                    resp_spill="big1_res.body", resp_tail=b"pe\":\"ping\"}\n\n" + PING * 3 + END,
                    resp_size=123 * MB, resp_truncated=True, elapsed_s=1.0)
    writes = Assembler(PriceTable.load()).handle(call)
    assert writes is not None
    (line,) = writes.lines
    assert line["model"] == "claude-sonnet-4-5" and line["stopReason"] == "end_turn"
    assert line["usage"]["output_tokens"] == 4321 and line["usage"]["input_tokens"] == 11
    assert line["responseTruncated"] is True and line["isSSE"] is True
    (res,) = [obj.response for cid, part, obj in writes.sidecars if part == "res"]
    assert res == {"bodyFile": "big1_res.body", "size": 123 * MB, "spilled": True, "truncated": True}
    assert not writes.raw


def test_a_body_over_the_budget_reaches_its_file_through_the_proxy(fake, make_proxy):
    proxy = make_proxy(CCXRAY_RECORD_MAX_MB="1")  # raised to the 2 MiB floor (head + tail)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request("POST", "/v1/messages", body=b'{"model":"m","max_tokens":1,"messages":[]}',
                     headers={"content-type": "application/json", "x-fake-mode": "big:3000000"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200 and len(body) >= 3_000_000
    (line,) = proxy.lines(1)
    res = proxy.sidecar(line["id"], "res")
    assert res["spilled"] is True and res["size"] == len(body)
    assert (proxy.logs / res["bodyFile"]).read_bytes() == body


def _serve_big_sse(listener: socket.socket, total: int, done: threading.Event) -> None:
    sock, _ = listener.accept()
    with sock:
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        block = PING * (256 * 1024 // len(PING))
        framed = b"%x\r\n%s\r\n" % (len(block), block)
        sock.sendall(b"%x\r\n%s\r\n" % (len(START), START))
        sent = 0
        while sent < total:
            sock.sendall(framed)
            sent += len(block)
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(END), END))
        done.wait(60)


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.slow
def test_200_mb_of_small_sse_events_keeps_proxy_memory_bounded(fake, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    upstream = threading.Thread(target=_serve_big_sse, args=(listener, 200 * MB, done))
    upstream.start()
    env = _env(fake, tmp_path / "home")
    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
    proxy = Running(env)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=120)
        conn.request("POST", "/v1/messages", body=b'{"model":"claude-sonnet-4-5","stream":true,"messages":[]}',
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        relayed = 0
        while chunk := resp.read(1 << 20):
            relayed += len(chunk)
        conn.close()
        index = tmp_path / "home" / "logs" / "index.ndjson"
        lines = wait_until(lambda: index.exists() and index.read_text().splitlines(), 60, "the call's line")
        peak_mb = _peak_rss_kb(proxy.proc.pid) / 1024
    finally:
        done.set()
        proxy.stop()
        upstream.join()
        listener.close()
    line = json.loads(lines[0])
    print(f"200 MB SSE stream: relayed {relayed / MB:.0f} MiB, proxy peak RSS {peak_mb:.1f} MiB")
    assert relayed >= 200 * MB
    assert line["stopReason"] == "end_turn" and line["usage"]["output_tokens"] == 4321
    assert peak_mb < 150, f"peak RSS {peak_mb:.1f} MiB"


def test_keeper_given_views_of_one_reused_buffer_copies_only_what_it_keeps(tmp_path):
    """The relay reads a spilling body into one buffer: the file gets every byte, the head and
    tail are copies (a later read into the buffer cannot change them), and with the length
    known only the last TAIL_BYTES are held for the tail."""
    path = tmp_path / "x_res.body"
    keeper = BodyKeeper(2 * MB, 50 * MB, str(path))
    whole = b"".join(bytes([i % 251]) * 200_000 for i in range(30))  # 6 MB, reads straddle head and tail
    keeper.expect(len(whole))
    assert keeper.spills_whole
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    for at in range(0, len(whole), len(buf)):
        piece = whole[at:at + len(buf)]
        buf[:len(piece)] = piece
        keeper.add(view[:len(piece)])
    buf[:] = b"\xff" * len(buf)
    keeper.close()
    assert path.read_bytes() == whole and keeper.size == len(whole)
    assert b"".join(keeper.head) == whole[:HEAD_BYTES]
    tail = keeper.tail_bytes()
    assert whole.endswith(tail) and TAIL_BYTES <= len(tail) < TAIL_BYTES + len(buf)
