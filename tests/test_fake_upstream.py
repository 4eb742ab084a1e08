"""Loopback tests of tools/fake_upstream.py, driven directly (no proxy in between).

HTTP goes through http.client and the SDKs, WebSockets through the
``websockets`` sync client (an implementation independent of wsproto), and the
process mode through a real child process. No sleeps: every wait has a deadline.
"""

from __future__ import annotations

import gzip
import http.client
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so plain `pytest` finds tools/ as well as `python -m pytest`
    sys.path.insert(0, str(ROOT))

from tools.fake_upstream import (  # noqa: E402
    HTTP_MODES,
    WS_MODES,
    FakeUpstream,
    Mode,
    ModeError,
    close_frame,
    SeenLog,
    parse_mode,
)

TIMEOUT_S = 5.0
PREWARM = {"type": "response.create", "model": "gpt-5.5", "generate": False, "input": []}


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fails the test if it leaves a thread behind."""
    before = set(threading.enumerate())
    yield
    # a client library's own threads (websockets' keepalive) may take a moment to end on a busy machine
    deadline = time.monotonic() + 10
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    while left and time.monotonic() < deadline:
        left[0].join(0.05)
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def fake(no_thread_leaks: None) -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


# ---------------------------------------------------------------- helpers


def request(
    fake: FakeUpstream, method: str, target: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPResponse, bytes, http.client.HTTPConnection]:
    """One request on a fresh connection; the caller closes the returned connection."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=TIMEOUT_S)
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, target, body=payload, headers=headers or {})
    response = conn.getresponse()
    return response, response.read(), conn


def call(fake: FakeUpstream, method: str, target: str, body: Any = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """Status, lowercased headers and body of one exchange."""
    response, data, conn = request(fake, method, target, body, {k.replace("_", "-"): v for k, v in headers.items()})
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def sse_events(data: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of an SSE body."""
    events = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event"), fields["data"]))
    return events


def recv_json(ws: Any) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=TIMEOUT_S))  # type: ignore[no-any-return]


def recv_until_completed(ws: Any) -> list[dict[str, Any]]:
    events = [recv_json(ws)]
    while events[-1]["type"] != "response.completed":
        events.append(recv_json(ws))
    return events


def raw_exchange(fake: FakeUpstream, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=TIMEOUT_S)
    sock.sendall(head)
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def only_ws_entry(seen: list[dict[str, Any]]) -> dict[str, Any]:
    entries = [entry for entry in seen if entry["ws"]]
    assert len(entries) == 1, entries
    return entries[0]


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("raw", "table", "expected"),
    [
        (None, HTTP_MODES, Mode("default")),
        ("sse:3", HTTP_MODES, Mode("sse", number=3)),
        ("stepped", HTTP_MODES, Mode("stepped")),
        ("status:429", HTTP_MODES, Mode("status", number=429)),
        ("close:4000:bye:now", WS_MODES, Mode("close", close_code=4000, close_reason="bye:now")),
        ("close:none", WS_MODES, Mode("close", close_code=None)),
        ("close:999", WS_MODES, Mode("close", close_code=999)),
    ],
)
def test_parse_mode(raw: str | None, table: Any, expected: Mode) -> None:
    assert parse_mode(raw, table) == expected


@pytest.mark.parametrize("raw", ["nope", "sse", "sse:x", "sse:-1", "echo:1", "status:99", "close:70000", "close:none:x"])
def test_parse_mode_rejects(raw: str) -> None:
    table = WS_MODES if raw.startswith("close") else HTTP_MODES
    with pytest.raises(ModeError):
        parse_mode(raw, table)


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (None, "", b"\x88\x00"),
        (1005, "", b"\x88\x02\x03\xed"),
        (4000, "bye", b"\x88\x05\x0f\xa0bye"),
        # 123 reason bytes would split a character: 61 two-byte characters remain.
        (1000, "\u00e9" * 100, b"\x88\x7c\x03\xe8" + "\u00e9".encode() * 61),
    ],
    ids=["none", "1005", "4000-bye", "long-reason"],
)
def test_close_frame(code: int | None, reason: str, expected: bytes) -> None:
    assert close_frame(code, reason) == expected


def test_seen_log_is_bounded() -> None:
    log = SeenLog(max_entries=2)
    entries = [log.add({"method": "GET", "target": f"/{n}", "ws": False}) for n in range(3)]
    for n in range(3):
        log.append_to(entries[2], "frames", {"dir": "c2u", "text": str(n)})
    seen = log.snapshot()
    assert [e["target"] for e in seen] == ["/1", "/2"] and log.dropped == 1
    assert len(seen[1]["frames"]) == 2 and seen[1]["frames_dropped"] == 1


# ---------------------------------------------------------------- HTTP


def test_head_root_answers_preconnect(fake: FakeUpstream) -> None:
    status, _, body = call(fake, "HEAD", "/")
    assert (status, body) == (200, b"")
    assert fake.seen[0]["method"] == "HEAD"


def test_messages_json_echoes_model_and_records_request(fake: FakeUpstream) -> None:
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    status, headers, data = call(fake, "POST", "/anthropic/v1/messages?beta=true", body, x_api_key="k")
    message = json.loads(data)
    assert status == 200 and headers["content-type"] == "application/json"
    assert (message["type"], message["model"], message["stop_reason"]) == ("message", "claude-x", "end_turn")
    entry = fake.seen[0]
    assert entry["target"] == "/anthropic/v1/messages?beta=true" and json.loads(entry["body"]) == body
    assert ["x-api-key", "k"] in entry["headers"] and entry["ws"] is False


def test_messages_sse_sequence(fake: FakeUpstream) -> None:
    status, headers, data = call(fake, "POST", "/v1/messages", {"model": "claude-x", "stream": True})
    events = sse_events(data)
    names = [name for name, _ in events]
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert names[:2] == ["message_start", "content_block_start"] and names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = json.loads(events[0][1])["message"]
    assert start["model"] == "claude-x" and start["usage"]["cache_read_input_tokens"] == 3
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "hi"


def test_responses_sse_ends_with_completed_usage(fake: FakeUpstream) -> None:
    status, _, data = call(fake, "POST", "/v1/responses", {"model": "gpt-x", "stream": True, "input": []})
    events = sse_events(data)
    assert status == 200 and events[0][0] == "response.created" and events[-1][0] == "response.completed"
    usage = json.loads(events[-1][1])["response"]["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 3 and usage["output_tokens_details"]["reasoning_tokens"] == 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_sdks_parse_the_answers(fake: FakeUpstream) -> None:
    anthropic = pytest.importorskip("anthropic")
    openai = pytest.importorskip("openai")
    with anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0) as client:
        with client.messages.stream(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream:
            assert stream.get_final_text() == "hi"
    with openai.OpenAI(base_url=fake.base_url + "/v1", api_key="k", max_retries=0) as client:
        with client.responses.stream(model="gpt-x", input="x") as stream:
            final = stream.get_final_response()
    assert final.output_text == "hi" and final.usage is not None and final.usage.total_tokens == 14


def test_models_and_chat_completions(fake: FakeUpstream) -> None:
    _, _, models = call(fake, "GET", "/v1/models?client_version=0.169.0")
    assert json.loads(models)["data"][0]["id"] == "gpt-5.5"
    _, _, chat = call(fake, "POST", "/v1/chat/completions", {"model": "m", "stream": True})
    assert sse_events(chat)[-1] == (None, "[DONE]")


def test_echo_mode_and_query_wins_over_header(fake: FakeUpstream) -> None:
    status, _, data = call(fake, "POST", "/v1/messages?fake_mode=echo", {"a": 1}, x_fake_mode="status:500")
    echoed = json.loads(data)
    assert status == 200 and echoed["method"] == "POST" and json.loads(echoed["body"]) == {"a": 1}
    assert ["x-fake-mode", "status:500"] in echoed["headers"]


def test_status_429_has_retry_after(fake: FakeUpstream) -> None:
    status, headers, data = call(fake, "GET", "/v1/models", x_fake_mode="status:429")
    assert (status, headers["retry-after"]) == (429, "1")
    assert json.loads(data) == {"error": {"type": "fake", "message": "status 429"}}


def test_unknown_mode_is_400(fake: FakeUpstream) -> None:
    status, _, data = call(fake, "GET", "/", x_fake_mode="nope")
    assert status == 400 and "nope" in json.loads(data)["error"]["message"]


def test_gzip_body_decodes_to_the_normal_answer(fake: FakeUpstream) -> None:
    status, headers, data = call(fake, "POST", "/v1/messages", {"model": "claude-x"}, x_fake_mode="gzip")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(data))["model"] == "claude-x"


@pytest.mark.parametrize("stream", [True, False])
def test_drop_mid_stream_is_incomplete(fake: FakeUpstream, stream: bool) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=TIMEOUT_S)
    try:
        conn.request("POST", "/v1/messages?fake_mode=drop-mid-stream", body=json.dumps({"model": "m", "stream": stream}))
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(fake: FakeUpstream) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=TIMEOUT_S)
    try:
        for _ in range(3):
            conn.request("GET", "/v1/models")
            assert conn.getresponse().read()
        conn.request("GET", "/v1/models", headers={"x-fake-mode": "big:200000"})
        assert len(conn.getresponse().read()) == 200000
    finally:
        conn.close()
    assert len(fake.seen) == 4


def test_stepped_releases_one_event_per_step(fake: FakeUpstream) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", "/x?fake_mode=stepped:2")
        response = conn.getresponse()  # the head comes before any step
        for index in range(2):
            fake.step()
            assert response.readline() == b'data: {"i":%d}\n' % index
            assert response.readline() == b"\n"
        assert response.read() == b""
    finally:
        conn.close()


STALLING = [
    b"GET /x?fake_mode=stall HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /x?fake_mode=stall-body HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/responses?fake_mode=never-answer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /v1/responses?fake_mode=slow-reader HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
]


@pytest.mark.parametrize("head", STALLING, ids=["stall", "stall-body", "never-answer", "slow-reader"])
def test_stop_unblocks_a_stalled_connection(fake: FakeUpstream, head: bytes) -> None:
    with raw_exchange(fake, head) as sock:
        fake.wait_for(lambda seen: len(seen) == 1, TIMEOUT_S, "the stalled request")
        fake.stop()
        assert b"\r\n\r\n" not in read_to_eof(sock).partition(b"\r\n\r\n")[2]  # nothing after a head


def test_client_going_away_ends_a_stalled_connection(fake: FakeUpstream) -> None:
    with raw_exchange(fake, STALLING[0]):
        fake.wait_for(lambda seen: len(seen) == 1, TIMEOUT_S, "the stalled request")
    # The fixture's stop() then joins the connection thread; no_thread_leaks checks it ended.


# ---------------------------------------------------------------- WebSocket


def test_codex_two_turn_exchange(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses", additional_headers={"openai-beta": "responses_websockets=2026-02-06"}) as ws:
        ws.send(json.dumps(PREWARM))
        prewarm = recv_until_completed(ws)
        previous_id = prewarm[-1]["response"]["id"]
        ws.send(json.dumps({"type": "response.create", "model": "gpt-5.5", "previous_response_id": previous_id, "input": []}))
        turn = recv_until_completed(ws)
    assert [e["type"] for e in prewarm] == ["response.created", "response.completed"]
    assert previous_id.startswith("resp_prewarm_") and prewarm[-1]["response"]["output"] == []
    done = [e for e in turn if e["type"] == "response.output_item.done"][0]["item"]
    assert done["content"][0]["text"] == "hi"
    completed = turn[-1]["response"]
    assert completed["model"] == "gpt-5.5" and completed["previous_response_id"] == previous_id
    assert [e["sequence_number"] for e in turn] == list(range(len(turn)))
    seen = fake.wait_for(lambda s: s[0].get("close") is not None, TIMEOUT_S, "the client's close")
    entry = only_ws_entry(seen)
    assert ["openai-beta", "responses_websockets=2026-02-06"] in entry["headers"]
    assert len(entry["frames"]) == 2 and entry["frames"][0]["dir"] == "c2u"
    assert entry["close"] == {"code": 1000, "reason": ""} and entry["client_gone"] is False


def test_ws_echo_text_and_binary(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/realtime?fake_mode=echo") as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT_S) == "hello"
        ws.send(b"\x00\x01\x02")
        assert ws.recv(timeout=TIMEOUT_S) == b"\x00\x01\x02"
    frames = fake.wait_for(lambda s: len(s[0]["frames"]) == 2, TIMEOUT_S, "two frames")[0]["frames"]
    assert frames == [{"dir": "c2u", "text": "hello"}, {"dir": "c2u", "binary": True, "size": 3}]


def test_ws_turns_mode_answers_each_message_with_one_whole_turn(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses?fake_mode=turns:5") as ws:
        for _ in range(2):
            ws.send(json.dumps({"type": "response.create", "model": "gpt-5.5", "input": "hi"}))
            events = [json.loads(ws.recv(timeout=TIMEOUT_S)) for _ in range(5)]
            assert [e["type"] for e in events] == ["response.output_text.delta"] * 4 + ["response.completed"]
            assert events[-1]["response"]["usage"]["input_tokens"] == 1200


def test_ws_echo_fragmented_reassembles(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses?fake_mode=echo-fragmented") as ws:
        ws.send("abcdefgh")
        assert ws.recv(timeout=TIMEOUT_S) == "abcdefgh"


def test_ws_refuse_403(fake: FakeUpstream) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(fake.ws_url + "/v1/responses", additional_headers={"x-fake-mode": "refuse:403"}, open_timeout=TIMEOUT_S)
    assert info.value.response.status_code == 403
    assert json.loads(info.value.response.body or b"") == {"error": {"type": "fake", "message": "refused 403"}}
    assert fake.seen[0]["ws"] is True


def test_ws_other_path_is_404(fake: FakeUpstream) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(fake.ws_url + "/v1/messages", open_timeout=TIMEOUT_S)
    assert info.value.response.status_code == 404


def test_ws_close_4000_bye(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses?fake_mode=close:4000:bye") as ws:
        ws.send("first")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT_S)
    assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")
    entry = fake.wait_for(lambda s: s[0]["close"] is not None, TIMEOUT_S, "the echoed close")[0]
    assert entry["close"]["code"] == 4000


def test_ws_ping_pongs_are_recorded(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses?fake_mode=ping:3") as ws:
        fake.wait_for(lambda s: len(s[0].get("pongs", [])) == 3, TIMEOUT_S, "three pongs")
        ws.send(json.dumps(PREWARM))
        assert recv_until_completed(ws)[-1]["type"] == "response.completed"
    assert fake.seen[0]["pongs"] == ["p0", "p1", "p2"]


def test_ws_drop_after_first_message(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses?fake_mode=drop-after:1") as ws:
        ws.send("one")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT_S)
    assert info.value.rcvd is None  # a TCP drop, no close frame


def test_ws_tcp_drop_by_client_is_client_gone(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses") as ws:
        ws.send(json.dumps(PREWARM))
        recv_until_completed(ws)
        ws.socket.shutdown(socket.SHUT_RDWR)  # what Codex does at exit: no close frame
    entry = fake.wait_for(lambda s: s[0]["client_gone"], TIMEOUT_S, "client_gone")[0]
    assert entry["close"] is None


def test_ws_deflate_is_negotiated_when_enabled(no_thread_leaks: None) -> None:
    with FakeUpstream(ws_deflate=True) as fake:
        with connect(fake.ws_url + "/v1/responses?fake_mode=echo") as ws:
            assert ws.response is not None
            assert "permessage-deflate" in (ws.response.headers.get("sec-websocket-extensions") or "")
            ws.send("x" * 5000)
            assert ws.recv(timeout=TIMEOUT_S) == "x" * 5000


def test_ws_deflate_is_declined_by_default(fake: FakeUpstream) -> None:
    with connect(fake.ws_url + "/v1/responses?fake_mode=echo") as ws:
        assert ws.response is not None
        assert ws.response.headers.get("sec-websocket-extensions") is None


# ---------------------------------------------------------------- process mode


def read_port_line(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            return int(json.loads(proc.stdout.readline())["port"])
    raise AssertionError(f"no port line within {timeout_s} s")


def get_json(port: int, method: str, target: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request(method, target)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def spawn_fake(*args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(ROOT / "tools" / "fake_upstream.py"), "--port", "0", *args]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_process_mode_serves_seen_and_exits_on_sigterm(no_thread_leaks: None) -> None:
    with spawn_fake() as proc:
        try:
            port = read_port_line(proc, 20.0)
            assert get_json(port, "GET", "/_fake/seen") == []
            get_json(port, "GET", "/v1/models")
            assert [e["target"] for e in get_json(port, "GET", "/_fake/seen")] == ["/v1/models"]
            assert get_json(port, "POST", "/_fake/step") == {"ok": True}
            assert get_json(port, "POST", "/_fake/reset") == {"ok": True}
            assert get_json(port, "GET", "/_fake/seen") == []
            proc.terminate()
            assert proc.wait(timeout=20.0) == 0
        finally:
            proc.kill()


def test_process_mode_exits_on_stdin_eof(no_thread_leaks: None) -> None:
    with spawn_fake("--exit-on-stdin-eof") as proc:
        try:
            read_port_line(proc, 20.0)
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=20.0) == 0
        finally:
            proc.kill()
