"""The proxy's own API: sessions, entries, one entry with sidecars, live events."""

from __future__ import annotations

import http.client
import json
import socket
import threading

from .conftest import wait_until

MSG = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5,
                  "messages": [{"role": "user", "content": "what is up"}]}).encode()


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if resp.getheader("content-type", "").startswith("application/json") else body
    finally:
        conn.close()


def call(port: int, session: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/messages", body=MSG, headers={"X-Claude-Code-Session-Id": session, "x-api-key": "sk-x"})
    assert conn.getresponse().read()
    conn.close()


def test_sessions_entries_and_entry(fake, proxy):
    call(proxy.port, "s-1")
    call(proxy.port, "s-1")
    call(proxy.port, "s-2")
    proxy.lines(3)
    status, sessions = get(proxy.port, "/_api/sessions")
    assert status == 200
    by_id = {s["sessionId"]: s for s in sessions}
    assert by_id["s-1"]["calls"] == 2 and by_id["s-2"]["calls"] == 1
    status, entries = get(proxy.port, "/_api/entries?session=s-1")
    assert status == 200 and len(entries) == 2
    status, entry = get(proxy.port, f"/_api/entries/{entries[0]['id']}")
    assert status == 200 and entry["request"]["model"] == "claude-haiku-4-5"
    assert entry["response"]["type"] == "message"
    assert ["x-api-key", "[redacted]"] in entry["meta"]["request"]["headers"]
    assert get(proxy.port, "/_api/entries/nope")[0] == 404
    assert get(proxy.port, "/_api/entries/..%2f..%2fetc")[0] == 404


def test_live_events_stream_new_lines(fake, proxy):
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    received = bytearray()
    try:
        sock.sendall(f"GET /_api/events HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n".encode())
        wait_until(lambda: received.extend(sock.recv(65536)) or b": connected" in received, 10, "the stream to open")
        call(proxy.port, "s-live")
        wait_until(lambda: b"s-live" in received or received.extend(sock.recv(65536)), 10, "the live line")
    finally:
        sock.close()
    assert b"text/event-stream" in received


def test_page_token_flow(fake, make_proxy):
    proxy = make_proxy(AUTH_TOKEN="pagetok")
    assert get(proxy.port, "/")[0] == 401
    status, page = get(proxy.port, "/?token=pagetok")
    assert status == 200 and b"/_api/ui/app.js" in page
    status, module = get(proxy.port, "/_api/ui/api.js")  # page code needs no token: a module import cannot carry it
    assert status == 200 and b"token" in module  # the data layer forwards ?token= to its API calls
    assert get(proxy.port, "/_api/ui/nope.js")[0] == 401  # only the page's own files are open
    assert get(proxy.port, "/_api/sessions?token=pagetok")[0] == 200
    assert get(proxy.port, "/_api/sessions", {"X-Ccxray-Auth": "pagetok"})[0] == 200


def test_graceful_stop_finishes_in_flight_call(fake, proxy):
    result: dict = {}

    def slow_call() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
        conn.request("POST", "/v1/messages", body=b"{}", headers={"x-fake-mode": "stepped"})
        resp = conn.getresponse()
        result["body"] = resp.read()
        conn.close()

    t = threading.Thread(target=slow_call)
    t.start()
    fake.wait_for(lambda seen: len(seen) == 1, 10, "the call to reach upstream")
    stopper = threading.Thread(target=proxy.server.stop, kwargs={"grace_s": 10})
    stopper.start()
    wait_until(lambda: proxy.server.app.stopping.is_set(), 10, "the stop to begin")
    fake.step(10)
    t.join(20)
    stopper.join(20)
    assert result["body"].count(b"data:") == 3  # the whole stream arrived
    assert len(proxy.lines()) == 1


def test_entries_page_back_with_before_and_limit(fake, proxy):
    for session in ("s-page", "s-page", "s-other", "s-page", "s-page", "s-page"):
        call(proxy.port, session)
    ids = [l["id"] for l in proxy.lines(6) if l["sessionId"] == "s-page"]
    status, newest = get(proxy.port, "/_api/entries?session=s-page&limit=2")
    assert status == 200 and [e["id"] for e in newest] == ids[-2:]
    _, older = get(proxy.port, f"/_api/entries?session=s-page&limit=2&before={ids[-2]}")
    assert [e["id"] for e in older] == ids[1:3]
    _, oldest = get(proxy.port, f"/_api/entries?session=s-page&limit=2&before={ids[1]}")
    assert [e["id"] for e in oldest] == ids[:1]
    assert get(proxy.port, f"/_api/entries?session=s-page&before={ids[0]}")[1] == []
    everything = [e["id"] for e in get(proxy.port, "/_api/entries?limit=0")[1]]  # a bad limit falls back to the default
    assert everything == [l["id"] for l in proxy.lines()]  # all sessions, in log order
    assert get(proxy.port, "/_api/entries?before=..%2fx")[0] == 400
    assert get(proxy.port, "/_api/entries?session=nobody")[1] == []


def test_entry_is_found_through_the_offset_map(fake, proxy):
    call(proxy.port, "s-map")
    [line] = proxy.lines(1)
    offsets = proxy.server.recorder.store.offsets  # the store's map: the one id lookup
    status, found = get(proxy.port, f"/_api/entries/{line['id']}")
    assert status == 200 and found["id"] == line["id"]
    [offset] = offsets.candidates(line["id"])
    raw = (proxy.logs / "index.ndjson").read_bytes()
    assert json.loads(raw[offset:raw.index(b"\n", offset)])["id"] == line["id"]  # the map points at the line itself
    call(proxy.port, "s-map")
    second = proxy.lines(2)[1]
    assert get(proxy.port, f"/_api/entries/{second['id']}")[1]["id"] == second["id"]
    assert offsets.candidates(line["id"]) == [offset]


def test_turn_view_prompts_and_usage(fake, proxy):
    from ccxray.logcli import summarise

    from . import dashboard_traffic as traffic
    traffic.claude_conversation(proxy.port)
    lines = proxy.lines(3)
    status, view = get(proxy.port, f"/_api/turns/{lines[1]['id']}")
    assert status == 200 and view["changes"]["previousId"] == lines[0]["id"] and view["changes"]["newCount"] == 2
    assert view["reply"]["items"][-1] == {"kind": "text", "text": "The notes say: ship it."}
    assert view["nextId"] == lines[2]["id"] and view["systemParts"][0]["name"] == "core instructions"
    first = get(proxy.port, f"/_api/turns/{lines[0]['id']}")[1]
    assert first["reply"]["items"][2]["result"] == {"text": "ship it", "isError": False}
    assert get(proxy.port, "/_api/turns/nope")[0] == 404 and get(proxy.port, "/_api/turns/..")[0] == 404
    status, prompts = get(proxy.port, "/_api/prompts")
    assert status == 200 and [p["clientVersion"] for p in prompts] == ["claude-code 2.1.197", "claude-code 2.1.198"]
    assert prompts[0]["calls"] == 2 and prompts[0]["sessions"] == 1
    old, new = prompts[0]["hash"], prompts[1]["hash"]
    status, diff = get(proxy.port, f"/_api/prompts/diff?old={old}&new={new}")
    assert status == 200 and ["+", "Prefer short answers."] in diff["lines"] and diff["removed"] == 2
    assert get(proxy.port, f"/_api/prompts/{old}")[1]["text"].startswith("x-anthropic-billing-header")
    assert get(proxy.port, "/_api/prompts/diff?old=x&new=y")[0] == 404
    assert get(proxy.port, "/_api/prompts/..%2f..")[0] == 404
    status, usage = get(proxy.port, "/_api/usage")
    expected = summarise(iter(lines), None, None, None).to_json()
    assert status == 200 and usage["total"] == expected["total"] and usage["byModel"] == expected["byModel"]
    assert sum(d["calls"] for d in usage["byDay"].values()) == 3
    assert usage["rateLimits"]["anthropic"]["headers"]["anthropic-ratelimit-unified-5h-utilization"] == "0.42"
    assert get(proxy.port, "/_api/usage?last=7d")[1]["total"]["calls"] == 3
    assert get(proxy.port, "/_api/usage?last=soon")[0] == 400
    sessions = {s["sessionId"]: s for s in get(proxy.port, "/_api/sessions")[1]}
    assert sessions[traffic.CLAUDE_SESSION]["turns"] == 3 and sessions[traffic.CLAUDE_SESSION]["live"]


def test_views_read_a_request_stored_as_a_delta_whole(fake, proxy):
    from . import dashboard_traffic as traffic
    traffic.claude_conversation(proxy.port)
    first, second, third = proxy.lines(3)
    stored = json.loads((proxy.logs / f"{second['id']}_req.json").read_text())
    assert stored["messages"]["$delta"]["base"] == first["id"]  # the second request holds only what is new
    assert "window.__xss" not in json.dumps(stored)
    whole = get(proxy.port, f"/_api/entries/{second['id']}")[1]["request"]
    assert len(whole["messages"]) == 3 and whole["messages"][0]["content"][1]["text"] == traffic.HOSTILE_PROMPT
    view = get(proxy.port, f"/_api/turns/{second['id']}")[1]
    texts = [i.get("text") for m in view["conversation"]["messages"] for i in m["items"]]
    assert traffic.HOSTILE_PROMPT in texts and "ship it" in texts
    assert view["changes"]["newFrom"] == 1 and view["changes"]["newCount"] == 2 and not view["changes"]["systemChanged"]
    # a word only in the first message: the delta-stored request still holds it when read back whole
    found = get(proxy.port, f"/_api/search?session={traffic.CLAUDE_SESSION}&q=window.__xss")[1]
    assert found == [first["id"], second["id"], third["id"]]
    (proxy.logs / f"{first['id']}_req.json").unlink()  # the delta's base: the view says so, never a wrong body
    view = get(proxy.port, f"/_api/turns/{second['id']}")[1]
    assert f"{first['id']}_req.json: missing" in view["line"]["readError"] and view["conversation"]["messages"] == []


def test_static_files_carry_a_strict_csp(fake, proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        for path, kind in (("/", "text/html"), ("/_api/ui/app.js", "text/javascript"), ("/_api/ui/style.css", "text/css")):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200 and resp.getheader("content-type").startswith(kind)
            csp = resp.getheader("content-security-policy")
            assert "default-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    finally:
        conn.close()
    assert get(proxy.port, "/_api/ui/../api.py")[0] == 404
    assert get(proxy.port, "/_api/nothing")[0] == 404


def test_inflight_calls_listed_and_streamed(fake, proxy):
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    received = bytearray()
    result: dict = {}

    def slow_call() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
        conn.request("POST", "/v1/messages", body=MSG, headers={"x-fake-mode": "stepped", "X-Claude-Code-Session-Id": "s-fly"})
        result["body"] = conn.getresponse().read()
        conn.close()

    t = threading.Thread(target=slow_call)
    try:
        sock.sendall(f"GET /_api/events HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n".encode())
        wait_until(lambda: received.extend(sock.recv(65536)) or b": connected" in received, 10, "the stream to open")
        assert b"retry: " in received
        t.start()
        fake.wait_for(lambda seen: len(seen) == 1, 10, "the call to reach upstream")
        [flying] = get(proxy.port, "/_api/inflight")[1]
        assert flying["sessionId"] == "s-fly" and flying["model"] == "claude-haiku-4-5" and flying["transport"] == "http"
        wait_until(lambda: b'"phase": "start"' in received or received.extend(sock.recv(65536)), 10, "the start event")
        fake.step(10)
        t.join(20)
        wait_until(lambda: b'"phase": "end"' in received or received.extend(sock.recv(65536)), 10, "the end event")
    finally:
        fake.step(10)
        if t.is_alive():
            t.join(20)
        sock.close()
    assert b"event: inflight" in received and get(proxy.port, "/_api/inflight")[1] == []


def test_search_looks_inside_request_and_response_bodies(fake, proxy):
    from . import dashboard_traffic as traffic
    traffic.claude_conversation(proxy.port)
    lines = proxy.lines(3)
    status, ids = get(proxy.port, f"/_api/search?session={traffic.CLAUDE_SESSION}&q=SHIP+it")
    assert status == 200 and ids == [lines[1]["id"], lines[2]["id"]]
    assert get(proxy.port, f"/_api/search?session={traffic.CLAUDE_SESSION}&q=")[1] == []
    assert get(proxy.port, "/_api/search?session=nobody&q=x")[1] == []
