"""Response bodies the relay reads past h11 (Content-Length, chunked): they reach
the client byte-identical in its own framing, are recorded whole, and leave the
upstream connection reusable only when it is."""

from __future__ import annotations

import http.client
import random
import socket
import threading
from typing import Any

import pytest

from tools.fake_payloads import pattern_pieces

from .test_http_proxy import MSG

BIG = 3_000_000


def pattern(size: int) -> bytes:
    return b"".join(pattern_pieces(size))


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body as the client's framing carries it), read with http.client's parser."""
    resp = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    resp.begin()
    head = "".join(f"{k.lower()}: {v}\n" for k, v in resp.getheaders()).encode()
    return head, resp.read()


def post_on(sock: socket.socket, port: int, mode: str = "", version: str = "1.1") -> None:
    extra = f"x-fake-mode: {mode}\r\n" if mode else ""
    sock.sendall(f"POST /v1/messages HTTP/{version}\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                 f"{extra}Content-Length: {len(MSG)}\r\n\r\n".encode() + MSG)


@pytest.mark.parametrize("mode,framing", [(f"big:{BIG}", b"content-length: 3000000"),
                                          (f"big-chunked:{BIG}", b"transfer-encoding: chunked")])
def test_a_large_body_arrives_byte_identical_and_the_connections_stay_open(fake: Any, make_proxy: Any,
                                                                           mode: str, framing: bytes) -> None:
    proxy = make_proxy(CCXRAY_RECORD_MAX_MB="1")  # past the budget: the body spills to its file too
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        for _ in range(2):
            post_on(sock, proxy.port, mode)
            head, body = read_response(sock)
            assert framing in head and body == pattern(BIG)
    lines = proxy.lines(2)
    assert [line["status"] for line in lines] == [200, 200] and not any(line["error"] for line in lines)
    assert (proxy.logs / f"{lines[0]['id']}_res.body").read_bytes() == pattern(BIG)
    assert fake.connection_count == 1  # upstream's connection served both


def test_an_http10_client_gets_a_chunked_body_close_delimited(fake: Any, proxy: Any) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        post_on(sock, proxy.port, "big-chunked:300000", version="1.0")
        head, body = read_response(sock)
    assert b"transfer-encoding" not in head and body == pattern(300000)
    (line,) = proxy.lines(1)
    assert line["status"] == 200 and line["error"] is None


class KeepAliveUpstream:
    """Answers each request on a connection with the next scripted bytes; counts connections."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._loop, name="keepalive-upstream")

    def __enter__(self) -> "KeepAliveUpstream":
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accept.join()
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), name="keepalive-upstream-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        with sock:
            data = b""
            try:
                while self.answers:
                    while data.count(b"\r\n\r\n") < 1 or len(data.partition(b"\r\n\r\n")[2]) < len(MSG):
                        more = sock.recv(65536)
                        if not more:
                            return
                        data += more
                    data = data.partition(b"\r\n\r\n")[2][len(MSG):]
                    for piece in self.answers.pop(0):
                        sock.sendall(piece)
            except OSError:
                return


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
EVENTS = b'data: {"type":"ping"}\n\n' * 3


def chunked(payload: bytes, sizes: list[int]) -> bytes:
    out, at = b"", 0
    for size in sizes:
        piece, at = payload[at:at + size], at + size
        if piece:
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"%x\r\n%s\r\n" % (len(payload[at:]), payload[at:]) * bool(payload[at:]) + b"0\r\n\r\n"


@pytest.mark.parametrize("answer,connections", [
    ([HEAD + b"\r\n" + b"5;ext=1\r\ndata:\r\n" + b"0\r\nX-Trailer: yes\r\n\r\n"], 1),
    ([HEAD + b"\r\n", b"5\r\ndata:\r\n", b"0\r\n\r\nJUNK"], 2),  # bytes after the end: not reused
    ([HEAD + b"Connection: close\r\n\r\n5\r\ndata:\r\n0\r\n\r\n"], 2),
    ([HEAD.replace(b"1.1", b"1.0") + b"\r\n5\r\ndata:\r\n0\r\n\r\n"], 2),
    # an interim answer stays between proxy and upstream, alone or with the final head in one read
    ([b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", HEAD + b"\r\n5\r\ndata:\r\n0\r\n\r\n"], 1),
    ([b"HTTP/1.1 103 Early Hints\r\n\r\n" + HEAD + b"\r\n5\r\ndata:\r\n0\r\n\r\n"], 1),
])
def test_the_upstream_connection_is_reused_only_when_it_may_be(make_proxy: Any, answer: list[bytes],
                                                               connections: int) -> None:
    with KeepAliveUpstream([answer, answer]) as upstream:
        proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            for _ in range(2):
                post_on(sock, proxy.port)
                assert read_response(sock)[1] == b"data:"
        assert [line["error"] for line in proxy.lines(2)] == [None, None]
    assert upstream.connections == connections


def test_random_chunkings_and_writes_arrive_identical(make_proxy: Any) -> None:
    rng = random.Random(1103)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5000))) for _ in range(12)]
    answers = []
    for payload in payloads:
        wire = HEAD + b"\r\n" + chunked(payload, [rng.randrange(1, 700) for _ in range(rng.randrange(0, 12))])
        cuts = sorted(rng.randrange(len(wire)) for _ in range(rng.randrange(0, 6)))
        answers.append([wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)]) if b > a])
    with KeepAliveUpstream(answers) as upstream:
        proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            for payload in payloads:
                post_on(sock, proxy.port)
                assert read_response(sock)[1] == payload
        lines = proxy.lines(len(payloads))
    assert upstream.connections == 1 and not any(line["error"] for line in lines)


SPILLING = 2_500_000  # past the 2 MiB floor of CCXRAY_RECORD_MAX_MB=1: read into one buffer, spilled whole


def length_answer(body: bytes, announced: int | None = None, after: bytes = b"") -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        len(body) if announced is None else announced)
    return [head + body[:100_000], body[100_000:] + after]


@pytest.mark.parametrize("after,connections", [(b"", 1), (b"JUNK", 2)])
def test_a_spilling_body_is_read_to_its_exact_end(make_proxy: Any, after: bytes, connections: int) -> None:
    """Never read past the announced end: the next answer on the connection stays whole, and an
    upstream that sent more than it announced is not reused."""
    bodies = [pattern(SPILLING), pattern(SPILLING + 7)[7:]]
    with KeepAliveUpstream([length_answer(bodies[0], after=after), length_answer(bodies[1])]) as upstream:
        proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}", CCXRAY_RECORD_MAX_MB="1")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            for body in bodies:
                post_on(sock, proxy.port)
                assert read_response(sock)[1] == body
        lines = proxy.lines(2)
    assert [line["error"] for line in lines] == [None, None]
    assert [(proxy.logs / f"{line['id']}_res.body").read_bytes() for line in lines] == bodies
    assert upstream.connections == connections


def test_a_spilling_body_cut_short_closes_the_client_and_keeps_what_came(make_proxy: Any) -> None:
    body = pattern(SPILLING)
    with KeepAliveUpstream([length_answer(body[:2_000_000], announced=SPILLING)]) as upstream:
        proxy = make_proxy(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{upstream.port}", CCXRAY_RECORD_MAX_MB="1")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            post_on(sock, proxy.port)
            with pytest.raises(http.client.IncompleteRead) as cut:
                read_response(sock)
        (line,) = proxy.lines(1)
    assert cut.value.partial == body[:2_000_000]
    assert "before the end of the response body" in line["error"]
    assert (proxy.logs / f"{line['id']}_res.body").read_bytes() == body[:2_000_000]
