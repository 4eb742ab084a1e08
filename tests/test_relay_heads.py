"""The heads the relay rebuilds from what h11 parsed skip only h11's header
regexes (they already ran on those bytes): every other check still holds."""

from __future__ import annotations

import h11
import pytest

from ccxray.http_relay import relayed_request, relayed_response


def test_a_relayed_request_is_written_as_h11_would_write_it() -> None:
    headers = [("Host", "up.example"), ("X-Api-Key", "k"), ("Content-Length", "2")]
    conn = h11.Connection(h11.CLIENT)
    wire = conn.send(relayed_request(b"POST", "/v1/messages?beta=true", headers))
    checked = h11.Connection(h11.CLIENT).send(h11.Request(method=b"POST", target=b"/v1/messages?beta=true",
                                                          headers=headers))
    assert wire == checked


@pytest.mark.parametrize("target,headers", [
    ("/v1/messages with space", [("Host", "up.example")]),  # the target is still validated
    ("/v1/messages", []),  # HTTP/1.1 needs a Host
    ("/v1/messages", [("Host", "a"), ("Host", "b")]),
    ("/v1/messages", [("Host", "a"), ("Content-Length", "1"), ("Content-Length", "2")]),
    ("/v1/messages", [("Host", "a"), ("Transfer-Encoding", "gzip")]),
])
def test_a_relayed_request_h11_would_refuse_is_still_refused(target: str, headers: list[tuple[str, str]]) -> None:
    with pytest.raises(h11.LocalProtocolError):
        relayed_request(b"POST", target, headers)


def test_a_relayed_response_keeps_status_reason_and_headers() -> None:
    upstream = h11.Connection(h11.CLIENT)
    upstream.send(h11.Request(method=b"GET", target=b"/", headers=[(b"Host", b"a")]))
    upstream.send(h11.EndOfMessage())
    upstream.receive_data(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\nX-Id: 7\r\n\r\n")
    head = upstream.next_event()
    assert isinstance(head, h11.Response)
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    server.next_event()
    wire = server.send(relayed_response(head, [("Content-Length", "0"), ("X-Id", "7")]))
    assert wire is not None and wire.startswith(b"HTTP/1.1 418 I'm a teapot\r\n") and b"X-Id: 7\r\n" in wire
