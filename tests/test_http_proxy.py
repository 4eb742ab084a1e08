"""HTTP relay over real loopback sockets: the fake upstream behind a real proxy.

What the client receives through the proxy must equal what it receives
directly; upstream must see the right path, host and headers; the log must
hold what happened.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading

import pytest

from tools.fake_upstream import FakeUpstream

from .conftest import wait_until


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, read until the proxy closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


MSG = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10,
                  "messages": [{"role": "user", "content": "say hi"}]}).encode()


@pytest.mark.parametrize("mode,path", [
    ("", "/v1/messages"), ("gzip", "/v1/messages"), ("deflate", "/v1/messages"), 
    ("sse:20", "/v1/messages"), ("big:300000", "/v1/messages"), ("big-chunked:300000", "/v1/messages"),
    ("status:429", "/v1/messages"), ("", "/v1/responses"), ("", "/v1/chat/completions"),
])
def test_body_identical_direct_and_through_proxy(fake, proxy, mode, path):
    """A twin fake answers the direct call, so both see their first request (same ids)."""
    headers = {"content-type": "application/json", "x-fake-mode": mode} if mode else {"content-type": "application/json"}
    with FakeUpstream() as twin:
        direct = request(twin.port, "POST", path, MSG, headers)
    proxied = request(proxy.port, "POST", path, MSG, headers)
    assert proxied[0] == direct[0]
    assert proxied[2] == direct[2]
    for name in ("content-type", "content-encoding", "retry-after"):
        assert proxied[1].get(name) == direct[1].get(name)


def test_upstream_sees_path_host_and_headers(fake, proxy):
    status, _, _ = request(proxy.port, "POST", "/v1/messages?beta=true", MSG, {
        "x-api-key": "sk-ant-secret", "anthropic-version": "2023-06-01", "Connection": "keep-alive, X-Hop",
        "X-Hop": "1", "content-type": "application/json"})
    assert status == 200
    seen = fake.seen[-1]
    names = {n.lower(): v for n, v in seen["headers"]}
    assert seen["target"] == "/v1/messages?beta=true"
    assert names["host"] == f"127.0.0.1:{fake.port}"
    assert names["x-api-key"] == "sk-ant-secret"
    assert "x-hop" not in names
    assert seen["body"] == MSG.decode()


def test_anthropic_call_is_recorded_with_fields_and_redaction(fake, proxy):
    request(proxy.port, "POST", "/v1/messages", MSG, {"x-api-key": "sk-ant-secret", "content-type": "application/json"})
    (line,) = proxy.lines(1)
    assert line["kind"] == "call" and line["transport"] == "http" and line["provider"] == "anthropic"
    assert line["status"] == 200 and line["method"] == "POST" and line["url"] == "/v1/messages"
    assert line["model"] == "claude-sonnet-4-5"
    assert line["usage"]["input_tokens"] == 12
    for field in ("id", "ts", "receivedAt", "sessionId", "sessionInferred", "agent", "elapsed", "isSSE", "cost",
                  "stopReason", "cwd", "isSubagent", "agentType", "msgCount", "toolCount", "title", "responseMetadata", "error"):
        assert field in line
    assert proxy.sidecar(line["id"], "req")["model"] == "claude-sonnet-4-5"
    assert proxy.sidecar(line["id"], "res")["type"] == "message"
    everything = "".join(p.read_text() for p in proxy.logs.rglob("*.json*"))
    assert "sk-ant-secret" not in everything


def test_sse_is_recorded_as_events(fake, proxy):
    body = json.dumps({"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 5, "messages": []}).encode()
    status, headers, data = request(proxy.port, "POST", "/v1/messages", body, {"content-type": "application/json"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    (line,) = proxy.lines(1)
    assert line["isSSE"] is True and line["stopReason"] == "end_turn"
    events = proxy.sidecar(line["id"], "res")
    assert events[0]["event"] == "message_start" and events[-1]["event"] == "message_stop"


def test_gzip_passes_untouched_and_recorder_decodes(fake, proxy):
    status, headers, data = request(proxy.port, "POST", "/v1/messages", MSG, {"x-fake-mode": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(data))["type"] == "message"
    (line,) = proxy.lines(1)
    assert proxy.sidecar(line["id"], "res")["type"] == "message"
    assert line["usage"] is not None


def test_undecodable_encoding_is_recorded_as_such(fake, proxy):
    request(proxy.port, "POST", "/v1/messages", MSG, {"x-fake-mode": "br-fake"})
    (line,) = proxy.lines(1)
    res = proxy.sidecar(line["id"], "res")
    assert "not decoded" in res["undecoded"]


def test_keep_alive_reuses_client_and_upstream_connections(fake, proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("POST", "/v1/messages", body=MSG)
            assert conn.getresponse().read()
    finally:
        conn.close()
    assert len(proxy.lines(3)) == 3
    assert fake.connection_count == 1


def test_head_preconnect_and_local_page(proxy):
    status, headers, body = request(proxy.port, "HEAD", "/")
    assert status == 200 and body == b""
    status, headers, body = request(proxy.port, "GET", "/")
    assert status == 200 and b"ccxray" in body
    assert request(proxy.port, "GET", "/favicon.ico")[0] == 200
    assert proxy.lines() == []


def test_upstream_unreachable_gives_502(make_proxy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{closed_port}")
    status, headers, body = request(proxy.port, "POST", "/v1/messages", MSG)
    assert status == 502
    assert json.loads(body)["error"] == "proxy_error"
    (line,) = proxy.lines(1)
    assert line["status"] == 502 and "cannot connect" in line["error"]


def test_upstream_timeout_before_head_gives_504(fake, make_proxy):
    proxy = make_proxy(CCXRAY_READ_TIMEOUT_MS="300")
    status, _, body = request(proxy.port, "POST", "/v1/messages", MSG, {"x-fake-mode": "stall"})
    assert status == 504 and json.loads(body)["error"] == "proxy_error"
    assert proxy.lines(1)[0]["status"] == 504


def test_upstream_dying_mid_stream_closes_client_and_is_recorded(fake, proxy):
    body = json.dumps({"model": "m", "stream": True}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request("POST", "/v1/messages", body=body, headers={"x-fake-mode": "drop-mid-stream"})
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
    finally:
        conn.close()
    (line,) = proxy.lines(1)
    assert line["status"] == 200 and "mid-response" in line["error"]


def test_client_disconnect_mid_stream_releases_upstream(fake, make_proxy):
    proxy = make_proxy(CCXRAY_ALLOWED_HOSTS="x")
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-fake-mode: stepped\r\nContent-Length: 2\r\n\r\n{}")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()
    line = proxy.wait_lines(lambda ls: len(ls) == 1, what="the call line")[0]
    assert "client" in line["error"]
    fake.step(10)  # the fake only notices a closed peer when it writes
    wait_until(lambda: fake.open_connections == 0, 10, "the upstream connection to close")


def test_malformed_request_gets_400(proxy):
    assert raw_exchange(proxy.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")


def test_oversized_head_gets_431(make_proxy):
    proxy = make_proxy(CCXRAY_ALLOWED_HOSTS="x")
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    assert raw_exchange(proxy.port, head).startswith(b"HTTP/1.1 431")


def test_body_over_cap_gets_413(make_proxy):
    proxy = make_proxy(CCXRAY_MAX_BODY_MB="0.001")
    status, _, body = request(proxy.port, "POST", "/v1/messages", b"x" * 5000)
    assert status == 413


def test_chunked_body_over_cap_gets_413(make_proxy):
    proxy = make_proxy(CCXRAY_MAX_BODY_MB="0.001", CCXRAY_ALLOWED_HOSTS="x")
    chunk = b"x" * 4000
    data = (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
    assert raw_exchange(proxy.port, data).startswith(b"HTTP/1.1 413")


def test_slow_head_gets_408(make_proxy):
    proxy = make_proxy(CCXRAY_HEADER_TIMEOUT_MS="200", CCXRAY_ALLOWED_HOSTS="x")
    assert raw_exchange(proxy.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n").startswith(b"HTTP/1.1 408")


def test_expect_100_continue(fake, make_proxy):
    proxy = make_proxy(CCXRAY_ALLOWED_HOSTS="x")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 100")
        s.sendall(b"{}")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")


def test_auth_token_required_checked_and_stripped(fake, make_proxy):
    proxy = make_proxy(AUTH_TOKEN="s3cret")
    assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 401
    assert request(proxy.port, "GET", "/_api/sessions")[0] == 401
    assert request(proxy.port, "POST", "/v1/messages", MSG, {"X-Ccxray-Auth": "wrong"})[0] == 401
    assert request(proxy.port, "POST", "/v1/messages", MSG, {"X-Ccxray-Auth": "s3cret"})[0] == 200
    assert request(proxy.port, "POST", "/v1/messages?beta=true&token=s3cret", MSG)[0] == 200
    assert request(proxy.port, "GET", "/?token=s3cret")[0] == 200
    targets = [s["target"] for s in fake.seen]
    assert targets == ["/v1/messages", "/v1/messages?beta=true"]
    assert all("x-ccxray-auth" not in {n.lower() for n, _ in s["headers"]} for s in fake.seen)
    lines = proxy.lines(2)  # the relay submits after the client has its answer: wait, not flush
    assert [l["url"] for l in lines] == ["/v1/messages", "/v1/messages?beta=true"]
    assert "s3cret" not in "".join(p.read_text() for p in proxy.logs.rglob("*.json*"))


def test_dashboard_host_guard(proxy):
    assert request(proxy.port, "GET", "/_api/sessions", headers={"Host": "evil.example"})[0] == 403
    assert request(proxy.port, "GET", "/_api/sessions", headers={"Host": f"localhost:{proxy.port}"})[0] == 200


def test_hundred_concurrent_calls_give_hundred_lines(fake, proxy):
    errors: list[BaseException] = []

    def one() -> None:
        try:
            assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 200
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    proxy.lines(100)
    raw = (proxy.logs / "index.ndjson").read_bytes().splitlines()
    assert len(raw) == 100
    assert len({json.loads(line)["id"] for line in raw}) == 100


def test_recorder_failure_does_not_break_traffic(fake, tmp_path, make_proxy):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    proxy = make_proxy(CCXRAY_HOME=str(blocker))
    for _ in range(3):
        assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 200
    assert proxy.server.recorder.flush(10)
    assert proxy.server.recorder.failures >= 1


def test_a_relay_bug_is_recorded_and_the_proxy_keeps_serving(fake, proxy, monkeypatch):
    from ccxray.http_relay import Exchange

    def broken(self, up, out, streaming):
        raise RuntimeError("simulated relay bug")

    monkeypatch.setattr(Exchange, "_pump_body", broken)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        request(proxy.port, "POST", "/v1/messages", MSG)
    (line,) = proxy.lines(1)
    assert "internal proxy error" in line["error"]
    monkeypatch.undo()
    assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 200
