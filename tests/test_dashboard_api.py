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
