"""WebSocket transport through a real proxy: websockets (an independent
implementation) as the client, the fake upstream or a websockets server as
upstream, real loopback sockets throughout."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import os
import socket
import threading

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import serve

from ccxray.readback import read_call, read_request

from .conftest import wait_until
from .recorded import recorded_frames

CREATE = {"type": "response.create", "model": "gpt-5.5", "input": [{"type": "message", "role": "user",
          "content": [{"type": "input_text", "text": "say hi"}]}]}
CODEX_HEADERS = {
    "Authorization": "Bearer sk-proj-secret",
    "openai-beta": "responses_websockets=2026-02-06",
    "session-id": "019e-session",
    "thread-id": "019e-session",
    "originator": "codex_exec",
    "x-codex-turn-metadata": json.dumps({"session_id": "019e-session", "request_kind": "prewarm",
                                         "workspaces": {"/work/repo": {"latest_git_commit_hash": "abc"}}}),
}


def ws_url(proxy, path="/v1/responses"):
    return f"ws://127.0.0.1:{proxy.port}{path}"


def recv_until_completed(ws):
    events = []
    while True:
        event = json.loads(ws.recv(timeout=10))
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "error"):
            return events


def close_of(ws) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=10)
    rcvd = info.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, None)


def test_codex_session_two_turns_recorded(fake, proxy):
    with connect(ws_url(proxy), additional_headers=CODEX_HEADERS) as ws:
        ws.send(json.dumps({**CREATE, "generate": False}))
        prewarm = recv_until_completed(ws)
        ws.send(json.dumps({**CREATE, "previous_response_id": prewarm[-1]["response"]["id"]}))
        turn = recv_until_completed(ws)
    assert turn[-1]["response"]["usage"]["output_tokens"] == 2
    lines = proxy.lines(3)
    turns = [l for l in lines if l["kind"] == "turn"]
    (conn,) = [l for l in lines if l["kind"] == "connection"]
    assert [t["requestKind"] for t in turns] == ["prewarm", "turn"]
    assert all(t["connectionId"] == conn["id"] and t["transport"] == "websocket" for t in turns)
    assert conn["status"] == 101 and conn["transport"] == "websocket"
    assert conn["frameCounts"] == {"clientToUpstream": 2, "upstreamToClient": len(prewarm) + len(turn)}
    assert conn["byteCounts"]["clientToUpstream"] > 0
    assert conn["close"]["side"] == "client" and conn["close"]["code"] == 1000
    assert conn["sessionId"] == "019e-session" and conn["cwd"] == "/work/repo"
    assert turns[1]["usage"]["output_tokens"] == 2 and turns[1]["model"] == "gpt-5.5"
    assert turns[1]["cost"]["total"] > 0 and turns[1]["cost"]["currency"] == "USD"  # gpt-5.5 is in the table
    frames = read_request(proxy.logs, conn["id"])
    assert frames[0]["data"]["generate"] is False
    assert "sk-proj-secret" not in "".join(p.read_text() for p in proxy.logs.rglob("*.json*"))


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/realtime", "/v1/realtime?model=gpt-realtime"])
def test_both_gates_proxy_to_openai(fake, proxy, path):
    with connect(ws_url(proxy, path), additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.send("ping-text")
        assert ws.recv(timeout=10) == "ping-text"
    assert fake.seen[-1]["target"] == path
    assert fake.seen[-1]["ws"] is True


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/models", "/", "/_api/events", "/v1/responsesX"])
def test_other_upgrade_paths_get_404(fake, proxy, path):
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(proxy, path), open_timeout=10)
    assert info.value.response.status_code == 404
    assert fake.seen == []


def test_token_required_before_upstream_and_stripped(fake, make_proxy):
    proxy = make_proxy(AUTH_TOKEN="tok")
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(proxy), open_timeout=10)
    assert info.value.response.status_code == 401
    assert fake.seen == []
    with connect(ws_url(proxy, "/v1/responses?fake_mode=echo&token=tok")) as ws:
        ws.send("a")
        assert ws.recv(timeout=10) == "a"
    with connect(ws_url(proxy, "/v1/realtime?fake_mode=echo"), additional_headers={"X-Ccxray-Auth": "tok"}) as ws:
        ws.send("b")
        assert ws.recv(timeout=10) == "b"
    assert [s["target"] for s in fake.seen] == ["/v1/responses?fake_mode=echo", "/v1/realtime?fake_mode=echo"]
    assert "tok" not in json.dumps(proxy.lines(2))


def test_headers_and_subprotocol_forwarded(fake, proxy):
    with connect(ws_url(proxy), additional_headers={**CODEX_HEADERS, "x-fake-mode": "echo"},
                 subprotocols=["realtime", "openai-insecure-api-key.sk-key"]) as ws:
        assert ws.subprotocol == "realtime"
    seen = {n.lower(): v for n, v in fake.seen[-1]["headers"]}
    for name, value in CODEX_HEADERS.items():
        assert seen[name.lower()] == value
    assert seen["host"] == f"127.0.0.1:{fake.port}"
    assert "sec-websocket-extensions" not in seen
    (conn,) = [l for l in proxy.lines(1) if l["kind"] == "connection"]
    meta = proxy.sidecar(conn["id"], "meta")
    assert "sk-key" not in json.dumps(meta) and "sk-proj-secret" not in json.dumps(meta)


def test_chatgpt_account_routes_to_chatgpt_upstream(fake, proxy):
    with connect(ws_url(proxy), additional_headers={"chatgpt-account-id": "acct-1", "x-fake-mode": "echo"}) as ws:
        ws.send("x")
        ws.recv(timeout=10)
    assert fake.seen[-1]["target"] == "/backend-api/codex/responses"


def test_refused_handshake_status_and_body_reach_client(fake, proxy):
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(proxy), additional_headers={"x-fake-mode": "refuse:429"}, open_timeout=10)
    assert info.value.response.status_code == 429
    assert b"refused 429" in info.value.response.body
    (line,) = proxy.lines(1)
    assert line["status"] == 429 and line["kind"] == "connection"
    wait_until(lambda: fake.open_connections == 0, 10, "the refused upstream socket to be closed")


def test_handshake_never_answered_gives_504(fake, make_proxy):
    proxy = make_proxy(CCXRAY_WS_IDLE_TIMEOUT_MS="300")
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(proxy), additional_headers={"x-fake-mode": "never-answer"}, open_timeout=10)
    assert info.value.response.status_code == 504
    assert proxy.lines(1)[0]["status"] == 504


def test_idle_timeout_closes_both_sides_with_1011(fake, make_proxy):
    proxy = make_proxy(CCXRAY_WS_IDLE_TIMEOUT_MS="300")
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:
        assert close_of(ws)[0] == 1011
    fake.wait_for(lambda seen: seen and seen[-1].get("close"), 10, "the upstream close")
    assert fake.seen[-1]["close"]["code"] == 1011
    (line,) = proxy.lines(1)
    assert line["status"] == 504 and line["close"]["side"] == "proxy" and line["close"]["code"] == 1011


def test_pipelined_bytes_over_cap_are_refused(fake, make_proxy):
    proxy = make_proxy(CCXRAY_WS_MAX_QUEUE_BYTES="1024", CCXRAY_WS_IDLE_TIMEOUT_MS="5000")
    head = (f"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "x-fake-mode: never-answer\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(head)
        s.sendall(b"\x81\xfe\x08\x00" + os.urandom(4) + b"x" * 2048)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("mode,code,reason", [
    ("close:4000:bye", 4000, "bye"), ("close:1000", 1000, ""), ("close:1001:going", 1001, "going"),
    ("close:1013:later", 1013, "later"), ("close:3000", 3000, ""), ("close:4999:x", 4999, "x"),
    ("close:none", 1005, ""),
    ("close:999", 1011, None), ("close:1004", 1011, None), ("close:1005", 1011, None), ("close:1006", 1011, None),
    ("close:1015", 1011, None), ("close:1016", 1011, None), ("close:2999", 1011, None), ("close:5000", 1011, None),
])
def test_upstream_close_codes(fake, proxy, mode, code, reason):
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": mode}) as ws:
        ws.send("go")
        got_code, got_reason = close_of(ws)
    assert got_code == code
    if reason is not None:
        assert got_reason == reason
    (line,) = proxy.lines(1)
    assert line["close"]["side"] == "upstream"
    if code == 1011:  # an invalid code: upstream was told 1002
        fake.wait_for(lambda seen: seen[-1].get("close") or seen[-1].get("client_gone"), 10, "upstream's close")
        assert fake.seen[-1]["close"]["code"] == 1002


def test_client_close_codes_pass_to_upstream(fake, proxy):
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.close(4321, "client bye")
    fake.wait_for(lambda seen: seen and seen[-1].get("close"), 10, "upstream to get the close")
    assert fake.seen[-1]["close"] == {"code": 4321, "reason": "client bye"}
    (line,) = proxy.lines(1)
    assert line["close"] == {"side": "client", "code": 4321, "reason": "client bye"}


def test_long_reason_is_cut_to_120_bytes(fake, proxy):
    # the mode goes in the query, percent-encoded: header bytes are not reliably UTF-8 across clients
    mode = urllib.parse.quote("close:4001:" + "é" * 61)
    with connect(ws_url(proxy, f"/v1/responses?fake_mode={mode}")) as ws:
        ws.send("go")
        code, reason = close_of(ws)
    assert code == 4001 and len(reason.encode()) <= 120 and reason == "é" * 60


def test_upstream_tcp_drop_gives_client_1011(fake, proxy):
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "drop-after:1"}) as ws:
        ws.send("go")
        assert close_of(ws)[0] == 1011
    (line,) = proxy.lines(1)
    assert line["close"] == {"side": "upstream", "code": 1006, "reason": None}


def test_client_tcp_drop_gives_upstream_1011(fake, proxy):
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.send("x")
        ws.recv(timeout=10)
        ws.socket.shutdown(socket.SHUT_RDWR)  # like Codex at exit: no close frame
        fake.wait_for(lambda seen: seen and seen[-1].get("close"), 10, "upstream to get 1011")
    assert fake.seen[-1]["close"]["code"] == 1011
    (line,) = proxy.lines(1)
    assert line["close"]["side"] == "client" and line["close"]["code"] == 1006
    assert line["error"] is None  # Codex ends every session this way: not an error


def test_upstream_protocol_violation(fake, proxy):
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "invalid-frame"}) as ws:
        ws.send("go")
        assert close_of(ws)[0] == 1011
    fake.wait_for(lambda seen: seen[-1].get("close") or seen[-1].get("client_gone"), 10, "upstream's close")
    assert fake.seen[-1]["close"]["code"] == 1002


def test_binary_and_fragmented_messages(fake, proxy):
    blob = os.urandom(70000)
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo-fragmented"}, max_size=None) as ws:
        ws.send(blob)
        assert ws.recv(timeout=10) == blob
        ws.send(["frag", "mented ", "text"])
        assert ws.recv(timeout=10) == "fragmented text"
    assert fake.seen[-1]["frames"][0] == {"dir": "c2u", "binary": True, "size": 70000}
    (line,) = proxy.lines(1)
    assert line["frameCounts"] == {"clientToUpstream": 2, "upstreamToClient": 2}
    assert line["byteCounts"] == {"clientToUpstream": 70015, "upstreamToClient": 70015}


def test_pings_pass_through_and_pongs_come_back(fake, proxy):
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "ping:3"}) as ws:
        fake.wait_for(lambda seen: len(seen[-1].get("pongs", [])) == 3, 10, "three pongs at upstream")
        ws.send(json.dumps(CREATE))
        recv_until_completed(ws)


def test_replay_real_codex_session_unchanged(proxy, make_proxy):
    frames = recorded_frames()
    received: list[str] = []
    problems: list[str] = []

    def upstream(conn) -> None:
        try:
            for f in frames:
                if f["dir"] == "c2u":
                    received.append(conn.recv(timeout=10))
                else:
                    conn.send(f["text"])
            conn.recv(timeout=10)
        except ConnectionClosed:
            pass
        except Exception as exc:  # reported in the test thread
            problems.append(repr(exc))

    with serve(upstream, "127.0.0.1", 0, max_size=None) as server:
        port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            replay_proxy = make_proxy(OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
            got: list[str] = []
            with connect(ws_url(replay_proxy), additional_headers=CODEX_HEADERS, max_size=None) as ws:
                for f in frames:
                    if f["dir"] == "c2u":
                        ws.send(f["text"])
                    else:
                        got.append(ws.recv(timeout=10))
        finally:
            server.shutdown()
            thread.join()
    assert not problems
    assert received == [f["text"] for f in frames if f["dir"] == "c2u"]
    assert got == [f["text"] for f in frames if f["dir"] == "u2c"]
    lines = replay_proxy.lines(3)
    (conn,) = [l for l in lines if l["kind"] == "connection"]
    assert conn["frameCounts"] == {"clientToUpstream": 2, "upstreamToClient": len(frames) - 2}
    assert conn["byteCounts"]["clientToUpstream"] == sum(f["size"] for f in frames if f["dir"] == "c2u")
    assert conn["byteCounts"]["upstreamToClient"] == sum(f["size"] for f in frames if f["dir"] == "u2c")
    turns = [l for l in lines if l["kind"] == "turn"]
    assert [t["requestKind"] for t in turns] == ["prewarm", "turn"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_soak_sessions_leave_nothing_behind(fake, proxy):
    baseline_threads = threading.active_count()
    baseline_fds = open_fds()
    for i in range(200):
        with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:
            ws.send(f"m{i}")
            assert ws.recv(timeout=10) == f"m{i}"
    proxy.lines(200)
    wait_until(lambda: threading.active_count() <= baseline_threads, 10, "relay threads to end")
    wait_until(lambda: open_fds() <= baseline_fds + 2, 10, "sockets to be closed")


def test_stop_sends_going_away_to_open_sessions(fake, proxy):
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.send("x")
        ws.recv(timeout=10)
        stopper = threading.Thread(target=proxy.server.stop, kwargs={"grace_s": 5})
        stopper.start()
        code, reason = close_of(ws)
        stopper.join(20)
    assert code == 1001 and "shutting down" in reason
    fake.wait_for(lambda seen: seen[-1].get("close"), 10, "upstream to get 1001")
    assert fake.seen[-1]["close"]["code"] == 1001


def test_many_concurrent_sessions(fake, proxy):
    baseline = threading.active_count()
    stack = contextlib.ExitStack()
    with stack:
        sessions = [stack.enter_context(connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}))
                    for _ in range(100)]
        for i, ws in enumerate(sessions):
            ws.send(f"hello {i}")
        for i, ws in enumerate(sessions):
            assert ws.recv(timeout=10) == f"hello {i}"
    lines = proxy.lines(100)
    assert all(l["frameCounts"] == {"clientToUpstream": 1, "upstreamToClient": 1} for l in lines)
    wait_until(lambda: threading.active_count() <= baseline, 10, "all relay threads to end")


def test_a_relay_bug_still_ends_in_one_recorded_line(fake, proxy, monkeypatch, caplog):
    from ccxray.wsbridge import WsBridge

    def broken(self, side, data):
        raise RuntimeError("simulated bridge bug")

    monkeypatch.setattr(WsBridge, "feed", broken)
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.send("trigger")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    (line,) = proxy.lines(1)
    assert line["status"] == 502 and "simulated bridge bug" in line["error"]
    monkeypatch.undo()
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:  # still serving
        ws.send("ok")
        assert ws.recv(timeout=10) == "ok"


def test_turn_cut_by_a_dropped_socket_is_recorded_partially(make_proxy):
    """Upstream streams part of a turn, then the TCP connection drops: the turn
    line still comes, marked partial, with what was seen."""
    def upstream(conn) -> None:
        try:
            conn.recv(timeout=10)
            conn.send(json.dumps({"type": "response.created", "response": {"id": "resp_cut", "model": "gpt-5.5"}}))
            conn.send(json.dumps({"type": "response.output_text.delta", "delta": "half an ans"}))
            # no close frame, no response.completed: a FIN after the data, then wait for the
            # proxy to hang up (closing first, with bytes unread, could reset the data away)
            conn.socket.shutdown(socket.SHUT_WR)
            conn.socket.settimeout(10)
            while conn.socket.recv(65536):
                pass
        except ConnectionClosed:
            pass

    with serve(upstream, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            proxy = make_proxy(OPENAI_BASE_URL=f"http://127.0.0.1:{server.socket.getsockname()[1]}/v1")
            with connect(ws_url(proxy), additional_headers=CODEX_HEADERS) as ws:
                ws.send(json.dumps(CREATE))
                assert json.loads(ws.recv(timeout=10))["type"] == "response.created"
                assert close_of(ws)[0] == 1011
        finally:
            server.shutdown()
            thread.join()
    lines = proxy.lines(2)
    (turn,) = [l for l in lines if l["kind"] == "turn"]
    (conn,) = [l for l in lines if l["kind"] == "connection"]
    assert turn["status"] is None and turn["error"] and turn["connectionId"] == conn["id"]
    assert turn["model"] == "gpt-5.5" and turn["ttftMs"] is not None
    events = read_call(proxy.logs, turn["id"])["response"]  # from the connection's frame log
    assert [e["type"] for e in events] == ["response.created", "response.output_text.delta"]
    assert conn["close"] == {"side": "upstream", "code": 1006, "reason": None}


def test_session_without_id_in_the_upgrade_is_marked_inferred(fake, proxy):
    with connect(ws_url(proxy)) as ws:  # no session headers at all
        ws.send(json.dumps({**CREATE, "generate": False, "client_metadata": {"session_id": "from-frame"}}))
        recv_until_completed(ws)
    lines = proxy.lines(2)
    (conn,) = [l for l in lines if l["kind"] == "connection"]
    assert conn["sessionInferred"] is True and conn["sessionId"] == "from-frame"
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.send("no ids anywhere")
        ws.recv(timeout=10)
    conn = [l for l in proxy.lines(3) if l["kind"] == "connection"][-1]
    assert conn["sessionInferred"] is True and conn["sessionId"] is None


def test_every_turn_of_a_connection_without_a_session_says_so_alike(fake, proxy):
    """The first turn used to say ``sessionInferred: false`` and the later ones true."""
    with connect(ws_url(proxy)) as ws:  # no session headers, no session in the frames
        for _ in range(3):
            ws.send(json.dumps(CREATE))
            recv_until_completed(ws)
    turns = [l for l in proxy.lines(4) if l["kind"] == "turn"]
    assert [(t["sessionId"], t["sessionInferred"]) for t in turns] == [(None, True)] * 3


def test_the_benchmarks_turns_mode_records_a_whole_priced_turn_per_round(fake, proxy):
    """``tools/bench.py`` charges "Codex turns of K events" to the recorder's per-turn
    work: each round there must be a turn line with usage and cost."""
    with connect(ws_url(proxy), additional_headers={"x-fake-mode": "turns:4"}) as ws:
        for _ in range(3):
            ws.send(json.dumps(CREATE))
            assert [json.loads(ws.recv(timeout=10))["type"] for _ in range(4)][-1] == "response.completed"
    turns = [l for l in proxy.lines(4) if l["kind"] == "turn"]
    assert len(turns) == 3 and all(t["status"] == 200 and t["error"] is None for t in turns)
    assert all(t["usage"]["input_tokens"] == 1200 and t["cost"]["total"] > 0 for t in turns)
