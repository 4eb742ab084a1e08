"""In-memory bridge tests: a wsproto client plays the agent, a wsproto server
plays upstream, and bytes pass through WsBridge (no sockets, no threads)."""

from __future__ import annotations

import struct

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

from ccxray.wsbridge import Output, Side, WsBridge

from .wsmessages import messages


class Harness:
    def __init__(self) -> None:
        self.bridge = WsBridge()
        self.agent = Connection(ConnectionType.CLIENT)
        self.upstream = Connection(ConnectionType.SERVER)
        self.seen: list = []

    def _deliver(self, out: Output) -> None:
        self.seen += messages(out)
        if out.to[Side.CLIENT]:
            self.agent.receive_data(bytes(out.to[Side.CLIENT]))
        if out.to[Side.UPSTREAM]:
            self.upstream.receive_data(bytes(out.to[Side.UPSTREAM]))

    def from_agent(self, *events) -> None:
        for e in events:
            self._deliver(self.bridge.feed(Side.CLIENT, self.agent.send(e)))

    def from_upstream(self, *events) -> None:
        for e in events:
            self._deliver(self.bridge.feed(Side.UPSTREAM, self.upstream.send(e)))

    def raw_from_upstream(self, data: bytes) -> None:
        self._deliver(self.bridge.feed(Side.UPSTREAM, data))

    def drop(self, side: Side) -> None:
        self._deliver(self.bridge.feed(side, None))


def events(conn: Connection) -> list:
    return list(conn.events())


def close_frame(code: int | None, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return bytes([0x88, len(payload)]) + payload


def test_text_and_binary_pass_both_ways_and_are_counted():
    h = Harness()
    h.from_agent(TextMessage(data='{"type":"response.create"}'), BytesMessage(data=b"\x00\x01"))
    assert events(h.upstream) == [TextMessage(data='{"type":"response.create"}'), BytesMessage(data=b"\x00\x01")]
    h.from_upstream(TextMessage(data="é" * 10))
    assert events(h.agent) == [TextMessage(data="é" * 10)]
    assert h.bridge.frame_counts == {Side.CLIENT: 2, Side.UPSTREAM: 1}
    assert h.bridge.byte_counts == {Side.CLIENT: 28, Side.UPSTREAM: 20}
    assert [(m.side, m.text, m.size) for m in h.seen] == [
        (Side.CLIENT, '{"type":"response.create"}', 26), (Side.CLIENT, None, 2), (Side.UPSTREAM, "é" * 10, 20)]


def test_fragmented_message_keeps_fragments_and_records_one_message():
    h = Harness()
    h.from_agent(Message(data="hel", message_finished=False), Message(data="lo", message_finished=True))
    got = events(h.upstream)
    assert [(e.data, e.message_finished) for e in got] == [("hel", False), ("lo", True)]
    assert [m.text for m in h.seen] == ["hello"]
    assert h.bridge.frame_counts[Side.CLIENT] == 1


def test_ping_and_pong_are_passed_not_answered():
    h = Harness()
    h.from_upstream(Ping(payload=b"p1"))
    assert events(h.agent) == [Ping(payload=b"p1")]
    assert events(h.upstream) == []
    h.from_agent(Pong(payload=b"p1"))
    assert events(h.upstream) == [Pong(payload=b"p1")]
    assert h.bridge.frame_counts == {Side.CLIENT: 0, Side.UPSTREAM: 0}


def test_close_code_and_reason_pass_through_and_are_echoed():
    h = Harness()
    h.from_upstream(CloseConnection(code=4000, reason="bye"))
    assert events(h.agent) == [CloseConnection(code=4000, reason="bye")]
    assert events(h.upstream) == [CloseConnection(code=4000, reason="bye")]  # the echo
    assert h.bridge.close.to_json() == {"side": "upstream", "code": 4000, "reason": "bye"}
    h.from_agent(CloseConnection(code=4000, reason="bye"))
    assert h.bridge.is_finished


def test_close_without_status_stays_without_status():
    h = Harness()
    h.raw_from_upstream(close_frame(None))
    got = events(h.agent)
    assert len(got) == 1 and got[0].code == 1005  # wsproto reports an empty close as 1005
    assert h.bridge.close.code == 1005 and h.bridge.close.side == "upstream"


def test_long_reason_is_cut_on_utf8_boundary():
    h = Harness()
    h.raw_from_upstream(close_frame(4001, ("€" * 41).encode()))  # 123 bytes
    (got,) = events(h.agent)
    assert got.code == 4001 and len(got.reason.encode()) <= 120 and got.reason == "€" * 40


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_invalid_code_gets_1002_back_and_1011_forward(code):
    h = Harness()
    h.raw_from_upstream(close_frame(code))
    (to_upstream,) = events(h.upstream)
    (to_agent,) = events(h.agent)
    assert to_upstream.code == 1002
    assert to_agent.code == 1011
    assert h.bridge.close.side == "upstream" and h.bridge.error


def test_tcp_drop_closes_other_side_with_1011_and_records_1006():
    h = Harness()
    h.drop(Side.CLIENT)
    (got,) = events(h.upstream)
    assert got.code == 1011
    assert h.bridge.close.to_json() == {"side": "client", "code": 1006, "reason": None}


def test_proxy_close_both():
    h = Harness()
    h._deliver(h.bridge.close_both(1011, "idle timeout"))
    assert [e.code for e in events(h.agent)] == [1011]
    assert [e.code for e in events(h.upstream)] == [1011]
    assert h.bridge.close.side == "proxy"


def test_trailing_data_is_processed_on_start():
    agent = Connection(ConnectionType.CLIENT)
    bridge = WsBridge(client_trailing=agent.send(TextMessage(data="early")))
    out = bridge.start()
    upstream = Connection(ConnectionType.SERVER)
    upstream.receive_data(bytes(out.to[Side.UPSTREAM]))
    assert events(upstream) == [TextMessage(data="early")]


def test_invalid_utf8_text_gets_1007():
    h = Harness()
    h.raw_from_upstream(bytes([0x81, 2, 0xC3, 0x28]))
    (to_upstream,) = events(h.upstream)
    assert to_upstream.code == 1007
    assert [e.code for e in events(h.agent)] == [1011]


def test_multibyte_text_counts_bytes_not_characters():
    h = Harness()
    h.from_upstream(TextMessage(data="€" * 50))  # 150 bytes: a 2-byte extended length
    assert h.bridge.byte_counts[Side.UPSTREAM] == 150
    assert h.seen[-1].size == 150 and h.seen[-1].text == "€" * 50
