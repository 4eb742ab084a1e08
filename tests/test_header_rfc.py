"""Header rules checked end to end against the RFCs and the contract, not against ccxray's own sets.

The lists below are written out from the specifications on purpose: a test
that imported ``ccxray.headers.HOP_BY_HOP`` or ``SECRET_HEADERS`` would agree
with any bug in them.

- Hop-by-hop (RFC 9110 §7.6.1, plus the legacy fields it names): ``Connection``
  and every field it lists, ``Proxy-Connection``, ``Keep-Alive``, ``TE``,
  ``Trailer``, ``Transfer-Encoding``, ``Upgrade``. A proxy must not forward
  them, in either direction: checked at the fake upstream for requests, and at
  a raw client socket for responses coming back from a raw upstream.
- Secrets (the contract): ``authorization``, ``x-api-key``, ``api-key``,
  ``cookie``, ``set-cookie``, ``proxy-authorization``, ``chatgpt-account-id``,
  the ``openai-insecure-api-key.*`` WebSocket subprotocol and ccxray's own
  token (``X-Ccxray-Auth`` header or ``?token=``). Each secret's value is sent
  through the proxy, then looked for in every file under the proxy's home and
  in ``/_api/entries/ID``: it must be in neither.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from websockets.sync.client import connect

from .conftest import ProxyHandle, wait_until

# RFC 9110 §7.6.1 (and RFC 9112 §9.6 / RFC 7230 §6.1 for Proxy-Connection, Keep-Alive)
HOP_BY_HOP = ("connection", "proxy-connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade")
CONNECTION_NAMED = "x-hop-named"  # an extension field made hop-by-hop by naming it in Connection
# Proxy-Authenticate / Proxy-Authorization (RFC 9110 §11.7.1, §11.7.2) are meant for the
# next proxy on the chain (here ccxray), not the far end: also never passed on.

REDACTED_REQUEST = ("authorization", "x-api-key", "api-key", "cookie", "proxy-authorization", "chatgpt-account-id")
REDACTED_MARK = "[redacted]"

MESSAGE = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi"}]}).encode()
IO_TIMEOUT_S = 10.0


# ---------------------------------------------------------------- raw HTTP on both ends


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, what followed) of one HTTP message read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before the end of the head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def header_pairs(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines)]


def chunked(body: bytes, trailer: bytes = b"") -> bytes:
    return b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(body), body, trailer)


def raw_exchange(port: int, request: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Send ``request`` as is; return the response's headers (lower-case names) and the rest read."""
    # the proxy checks Host against its own address and port
    request = request.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1:%d\r\n" % port, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(request)
        head, rest = read_head(sock)
    assert head.startswith(b"HTTP/1.1 200"), head
    return header_pairs(head), rest


class RawUpstream:
    """A one-answer-per-connection HTTP server on port 0 that sends ``response`` byte for byte."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, name="raw-upstream")
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # listener closed: the test is over
                return
            with conn:
                conn.settimeout(IO_TIMEOUT_S)
                head, _ = read_head(conn)
                self.requests.append(head)
                conn.sendall(self.response)
                conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        # shutdown wakes the blocked accept() on Linux; close alone does not
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(IO_TIMEOUT_S)


@pytest.fixture
def raw_upstream() -> Iterator[Callable[[bytes], RawUpstream]]:
    started: list[RawUpstream] = []

    def start(response: bytes) -> RawUpstream:
        started.append(RawUpstream(response))
        return started[-1]
    yield start
    for upstream in started:
        upstream.close()


def post(extra_headers: bytes, body: bytes = MESSAGE, target: bytes = b"/v1/messages") -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + extra_headers + b"Content-Length: %d\r\n\r\n" % len(body) + body)


# ---------------------------------------------------------------- hop-by-hop, request direction


def test_request_hop_by_hop_fields_never_reach_upstream(fake, proxy):
    request = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Connection: keep-alive, X-Hop-Named\r\nX-Hop-Named: client-named\r\n"
               b"Proxy-Connection: client-proxy-connection\r\nKeep-Alive: timeout=5, max=99\r\n"
               b"TE: trailers, deflate;q=0.5\r\nTrailer: X-Client-Trailer\r\nUpgrade: client-upgrade/1\r\n"
               b"X-End-To-End: kept\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(MESSAGE, b"X-Client-Trailer: t\r\n"))
    raw_exchange(proxy.port, request)
    seen = fake.seen[-1]
    got = [(n.lower(), v) for n, v in seen["headers"]]
    names = {n for n, _ in got}
    assert ("x-end-to-end", "kept") in got, "the end-to-end control header must be forwarded"
    assert json.loads(seen["body"]) == json.loads(MESSAGE), "the chunked body must arrive whole"
    for name in (*HOP_BY_HOP, CONNECTION_NAMED):
        if name == "transfer-encoding" and name in names:
            # the proxy may frame the body itself; never the client's field copied through
            assert [v for n, v in got if n == name] == ["chunked"], got
            continue
        assert name not in names, f"hop-by-hop {name!r} forwarded upstream: {got}"


@pytest.mark.parametrize("name", [*HOP_BY_HOP[1:], CONNECTION_NAMED, "proxy-authorization"])
def test_each_request_hop_by_hop_field_alone(fake, proxy, name):
    """One field at a time (with Connection naming only what it must), so no rule hides behind another."""
    value = {"te": "trailers", "upgrade": "client-upgrade/1", "transfer-encoding": "chunked"}.get(name, "client-value")
    connection = b"Connection: X-Hop-Named\r\n" if name == CONNECTION_NAMED else b""
    body = chunked(MESSAGE) if name == "transfer-encoding" else MESSAGE
    framing = b"" if name == "transfer-encoding" else b"Content-Length: %d\r\n" % len(body)
    request = (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               + connection + name.encode() + b": " + value.encode() + b"\r\n" + framing + b"\r\n" + body)
    raw_exchange(proxy.port, request)
    got = [(n.lower(), v) for n, v in fake.seen[-1]["headers"]]
    assert (name, value) not in got, f"hop-by-hop {name!r} forwarded upstream: {got}"
    if name != "transfer-encoding":
        assert name not in {n for n, _ in got}, got


# ---------------------------------------------------------------- hop-by-hop, response direction


UPSTREAM_BODY = b'{"id":"msg_raw","type":"message","content":[]}'
HOP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Connection: keep-alive, X-Hop-Named\r\nX-Hop-Named: upstream-named\r\n"
    b"Proxy-Connection: upstream-proxy-connection\r\nKeep-Alive: timeout=7, max=77\r\n"
    b"TE: upstream-te\r\nTrailer: X-Upstream-Trailer\r\nUpgrade: upstream-upgrade/1\r\n"
    b"X-End-To-End: kept\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(UPSTREAM_BODY, b"X-Upstream-Trailer: t\r\n")
)


def test_response_hop_by_hop_fields_never_reach_the_client(raw_upstream, make_proxy):
    upstream = raw_upstream(HOP_RESPONSE)
    proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}")
    got, _ = raw_exchange(proxy.port, post(b""))
    names = {n for n, _ in got}
    assert ("x-end-to-end", "kept") in got, "the end-to-end control header must come back"
    for name, _ in got:
        assert name not in ("proxy-connection", "keep-alive", "te", "trailer", "upgrade", CONNECTION_NAMED), got
    for value in ("upstream-named", "upstream-proxy-connection", "timeout=7", "upstream-te", "X-Upstream-Trailer",
                  "upstream-upgrade/1"):
        assert not [v for _, v in got if value.lower() in v.lower()], f"{value!r} came back: {got}"
    # Connection and Transfer-Encoding may be the proxy's own, never the upstream's list
    assert all(CONNECTION_NAMED not in v.lower() for n, v in got if n == "connection"), got
    assert [v for n, v in got if n == "transfer-encoding"] in ([], ["chunked"]), got
    assert "content-type" in names


@pytest.mark.parametrize("name", ["proxy-connection", "keep-alive", "te", "trailer", "upgrade", CONNECTION_NAMED,
                                  "proxy-authenticate"])
def test_each_response_hop_by_hop_field_alone(raw_upstream, make_proxy, name):
    connection = b"Connection: X-Hop-Named\r\n" if name == CONNECTION_NAMED else b""
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + connection + name.encode()
                + b": upstream-value\r\nContent-Length: %d\r\n\r\n" % len(UPSTREAM_BODY) + UPSTREAM_BODY)
    upstream = raw_upstream(response)
    proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}")
    got, _ = raw_exchange(proxy.port, post(b""))
    assert name not in {n for n, _ in got}, f"hop-by-hop {name!r} came back to the client: {got}"


# ---------------------------------------------------------------- redaction, end to end


def files_holding(home: Path, secret: str) -> list[str]:
    """Every file under ``home`` whose bytes contain ``secret`` (raw or JSON-escaped)."""
    needles = {secret.encode(), json.dumps(secret)[1:-1].encode()}
    return [str(p.relative_to(home)) for p in sorted(home.rglob("*"))
            if p.is_file() and any(n in p.read_bytes() for n in needles)]


def api_entry(proxy: ProxyHandle, call_id: str, headers: dict[str, str] | None = None) -> tuple[bytes, Any]:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT_S) as sock:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        sock.sendall(f"GET /_api/entries/{call_id} HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n{extra}"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return body, json.loads(body)


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2:]


def recorded_header(entry: Any, side: str, name: str) -> list[str]:
    return [v for n, v in entry["meta"][side]["headers"] if n.lower() == name]


def assert_nowhere(proxy: ProxyHandle, call_id: str, secret: str, api_headers: dict[str, str] | None = None) -> Any:
    proxy.lines()  # flushed
    home = proxy.logs.parent
    assert not files_holding(home, secret), f"secret on disk in {files_holding(home, secret)}"
    raw, entry = api_entry(proxy, call_id, api_headers)
    assert secret.encode() not in raw, "secret in /_api/entries/ID"
    return entry


@pytest.mark.parametrize("name", REDACTED_REQUEST)
def test_request_secret_header_is_nowhere_on_disk_or_in_the_api(fake, proxy, name):
    secret = f"sk-secret-{name}-0123456789"
    raw_exchange(proxy.port, post(f"{name}: {secret}\r\n".encode()))
    (line,) = proxy.lines(1)
    entry = assert_nowhere(proxy, line["id"], secret)
    forwarded = [v for n, v in fake.seen[-1]["headers"] if n.lower() == name]
    if name == "proxy-authorization":  # hop-by-hop too (RFC 9110 §11.7.2): consumed, not forwarded
        assert forwarded == []
    else:
        assert forwarded == [secret], "the secret must still reach upstream unchanged"
        assert recorded_header(entry, "request", name) == [REDACTED_MARK]


def test_set_cookie_from_upstream_is_nowhere_on_disk_or_in_the_api(raw_upstream, make_proxy):
    secret = "sid=secret-session-cookie-0123456789"
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: " + secret.encode()
                + b"\r\nContent-Length: %d\r\n\r\n" % len(UPSTREAM_BODY) + UPSTREAM_BODY)
    upstream = raw_upstream(response)
    proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}")
    got, _ = raw_exchange(proxy.port, post(b""))
    assert ("set-cookie", secret) in got, "the cookie must still reach the client"
    (line,) = proxy.lines(1)
    entry = assert_nowhere(proxy, line["id"], secret)
    assert recorded_header(entry, "response", "set-cookie") == [REDACTED_MARK]


def test_insecure_api_key_subprotocol_is_nowhere_on_disk_or_in_the_api(fake, proxy):
    secret = "sk-proj-subprotocol-secret-0123456789"
    create = json.dumps({"type": "response.create", "model": "gpt-5.5", "input": []})
    with connect(f"ws://127.0.0.1:{proxy.port}/v1/realtime?model=gpt-5.5",
                 subprotocols=[f"openai-insecure-api-key.{secret}", "realtime"],  # type: ignore[list-item]
                 open_timeout=IO_TIMEOUT_S) as ws:
        ws.send(create)
        wait_until(lambda: '"response.completed"' in str(ws.recv(timeout=IO_TIMEOUT_S)), IO_TIMEOUT_S,
                   "response.completed")
    lines = proxy.wait_lines(lambda ls: any(l.get("kind") == "connection" for l in ls), IO_TIMEOUT_S,
                             "the connection line")
    (conn,) = [l for l in lines if l["kind"] == "connection"]
    upgrade = next(s for s in fake.seen if s.get("ws"))
    offered = [v for n, v in upgrade["headers"] if n.lower() == "sec-websocket-protocol"]
    assert offered and secret in offered[0], "the key must still reach upstream"
    entry = assert_nowhere(proxy, conn["id"], secret)
    assert recorded_header(entry, "request", "sec-websocket-protocol") == [
        f"openai-insecure-api-key.{REDACTED_MARK}, realtime"]


@pytest.mark.parametrize("how", ["header", "query"])
def test_ccxray_token_is_nowhere_on_disk_or_in_the_api(fake, make_proxy, how):
    secret = "ccxray-token-secret-0123456789"
    proxy = make_proxy(AUTH_TOKEN=secret)
    if how == "header":
        raw_exchange(proxy.port, post(f"X-Ccxray-Auth: {secret}\r\n".encode()))
    else:
        raw_exchange(proxy.port, post(b"", target=f"/v1/messages?beta=true&token={secret}".encode()))
    (line,) = proxy.lines(1)
    assert all(secret not in json.dumps(s) for s in fake.seen), "ccxray's token must not reach upstream"
    assert_nowhere(proxy, line["id"], secret, api_headers={"X-Ccxray-Auth": secret})
