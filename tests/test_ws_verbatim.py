"""Verbatim forwarding, checked against wsproto.

Property: random sequences of text, binary, fragmented and control frames,
cut into random chunks on both legs, come out of the bridge byte-identical
on the other side, and the messages handed to the recorder are the ones
wsproto parses from the same bytes.

Close cases: the verbatim bridge and a validating reference (wsproto on both
legs, re-serialising every frame: ``ref_wsbridge``, the proxy's former
bridge) agree on what each side is sent and on what is recorded.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, Pong, TextMessage

from ccxray.wsbridge import MAX_FRAME_BYTES, OTHER, Output, Side, WsBridge
from ccxray.wsscan import HOLD_BYTES, FrameScanner, unmask

from . import ref_wsbridge
from .wsmessages import messages

AT = {Side.CLIENT: ConnectionType.CLIENT, Side.UPSTREAM: ConnectionType.SERVER}  # the peer's role at each side
FACING = {Side.CLIENT: ConnectionType.SERVER, Side.UPSTREAM: ConnectionType.CLIENT}  # who reads that peer's frames

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
binary = st.binary(max_size=300)
control = st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125))
message = st.tuples(st.sampled_from(["text", "binary"]), st.one_of(text, binary), st.integers(1, 4),
                    st.lists(control, max_size=2))


def _pieces(data: str | bytes, parts: int) -> list[str | bytes]:
    step = max(1, -(-len(data) // parts))
    pieces = [data[i:i + step] for i in range(0, len(data), step)] or [data[:0]]
    return pieces


def sender_bytes(side: Side, plan: list) -> tuple[bytes, list[tuple[str, object]]]:
    """Frames for ``plan`` as ``side`` would send them; and the messages in them."""
    conn = Connection(AT[side])
    out = bytearray()
    expected: list[tuple[str, object]] = []
    for kind, data, parts, controls in plan:
        data = data if (kind == "text") == isinstance(data, str) else (
            data.decode("latin-1") if kind == "text" else data.encode("utf-8"))
        pieces = _pieces(data, parts)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            event: Event = TextMessage(data=piece, message_finished=last) if kind == "text" else \
                BytesMessage(data=piece, message_finished=last)
            out += conn.send(event)
            if i < len(controls):  # control frames may sit between the fragments of a message
                ctl_kind, payload = controls[i]
                out += conn.send(Ping(payload=payload) if ctl_kind == "ping" else Pong(payload=payload))
        expected.append((kind, data))
    return bytes(out), expected


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def wsproto_messages(side: Side, data: bytes) -> list[tuple[str, object]]:
    """What wsproto, as the receiver of ``side``'s frames, parses from ``data``."""
    conn = Connection(FACING[side])
    conn.receive_data(data)
    found: list[tuple[str, object]] = []
    parts: list = []
    for event in conn.events():
        if isinstance(event, Message):
            parts.append(event.data)
            if event.message_finished:
                is_text = isinstance(event, TextMessage)
                found.append(("text" if is_text else "binary", ("" if is_text else b"").join(parts)))
                parts = []
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message, max_size=6), st.lists(message, max_size=6),
       st.lists(st.integers(0, 5000), max_size=8), st.lists(st.integers(0, 5000), max_size=8),
       st.lists(st.booleans(), max_size=20))
def test_random_frames_pass_byte_identical_and_are_recorded_as_wsproto_parses_them(
        client_plan, upstream_plan, client_cuts, upstream_cuts, order):
    sent = {Side.CLIENT: sender_bytes(Side.CLIENT, client_plan), Side.UPSTREAM: sender_bytes(Side.UPSTREAM, upstream_plan)}
    queues = {Side.CLIENT: chunks(sent[Side.CLIENT][0], client_cuts),
              Side.UPSTREAM: chunks(sent[Side.UPSTREAM][0], upstream_cuts)}
    bridge = WsBridge()
    got = {Side.CLIENT: bytearray(), Side.UPSTREAM: bytearray()}
    recorded: dict[Side, list[tuple[str, object]]] = {Side.CLIENT: [], Side.UPSTREAM: []}
    picks = iter(order)
    while queues[Side.CLIENT] or queues[Side.UPSTREAM]:
        side = Side.CLIENT if next(picks, True) else Side.UPSTREAM
        if not queues[side]:
            side = OTHER[side]
        out = bridge.feed(side, queues[side].pop(0))
        for target in Side:
            got[target] += out.to[target]
        for msg in messages(out):
            recorded[msg.side].append(("text" if msg.text is not None else "binary", msg.text if msg.text is not None else msg.size))
    for side in Side:
        data, expected = sent[side]
        assert bytes(got[OTHER[side]]) == data  # verbatim
        parsed = wsproto_messages(side, data)
        assert parsed == expected
        assert recorded[side] == [(k, v if k == "text" else len(v)) for k, v in parsed]  # type: ignore[arg-type]
        assert bridge.frame_counts[side] == len(parsed)
    assert bridge.close is None


# ---------------------------------------------------------------- close cases


def frame(opcode: int, payload: bytes, masked: bool, fin: bool = True, rsv: int = 0,
          length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    mbit = 0x80 if masked else 0
    if n > 0xFFFF:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    elif n > 125:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | n])
    if not masked:
        return head + payload
    mask = b"\x11\x22\x33\x44"
    return head + mask + unmask(payload, mask)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


CLOSE_CASES = {
    "normal": lambda m: frame(0x8, close_payload(1000, b"bye"), m),
    "app code": lambda m: frame(0x8, close_payload(4321, b"app"), m),
    "no status": lambda m: frame(0x8, b"", m),
    "one byte": lambda m: frame(0x8, b"\x03", m),
    "long reason": lambda m: frame(0x8, close_payload(4001, "€".encode() * 41), m),
    "bad utf-8 reason": lambda m: frame(0x8, close_payload(1000, b"\xff\xfe"), m),
    **{f"code {c}": (lambda c: lambda m: frame(0x8, close_payload(c), m))(c)
       for c in (999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1001, 1011, 3000, 4999)},
    "bad utf-8 text": lambda m: frame(0x1, b"\xc3\x28", m),
    "bad utf-8 across fragments": lambda m: frame(0x1, b"ok \xe2", m, fin=False) + frame(0x0, b"\x28", m),
    "rsv bit": lambda m: frame(0x1, b"hi", m, rsv=4),
    "reserved opcode": lambda m: frame(0x3, b"hi", m),
    "fragmented ping": lambda m: frame(0x9, b"p", m, fin=False),
    "long ping": lambda m: frame(0x9, b"p" * 126, m),
    "orphan continuation": lambda m: frame(0x0, b"x", m),
    "message inside a message": lambda m: frame(0x1, b"a", m, fin=False) + frame(0x2, b"b", m),
    "wrong masking": lambda m: frame(0x1, b"hi", not m),
    "non-minimal length": lambda m: bytes([0x82, (0x80 if m else 0) | 126, 0, 5]) + (b"\0" * 4 if m else b"") + b"x" * 5,
    "top bit length": lambda m: bytes([0x82, (0x80 if m else 0) | 127]) + b"\x80" + b"\0" * 7,
    "text then close": lambda m: frame(0x1, b"last", m) + frame(0x8, close_payload(1000), m),
    "data after close": lambda m: frame(0x8, close_payload(1000), m) + frame(0x1, b"late", m),
}


def _events(role: ConnectionType, data: bytes) -> list:
    conn = Connection(role)
    conn.receive_data(data)
    out = []
    for event in conn.events():
        if isinstance(event, CloseConnection):
            out.append(("close", int(event.code), event.reason))
            break  # what follows a close is not read by a peer
        out.append((type(event).__name__, getattr(event, "data", getattr(event, "payload", None))))
    return out


def _run(bridge_cls, side_cls, sender: str, data: bytes, chunk: int, drop: bool):
    bridge = bridge_cls()
    side = side_cls(sender)
    got = {s: bytearray() for s in side_cls}
    seen = []
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    for piece in pieces + ([None] if drop else []):
        out = bridge.feed(side, piece)
        for s in side_cls:
            got[s] += out.to[s]
        seen += [(m.text, m.size) for m in (messages(out) if isinstance(out, Output) else out.messages)]
    close = bridge.close.to_json() if bridge.close else None
    if close and bridge.error:
        close["reason"] = None  # a violation's reason is each parser's own wording
    return ({s.value: _events(AT[Side(s.value)], bytes(got[s])) for s in side_cls}, close, seen, bool(bridge.error))


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
@pytest.mark.parametrize("sender", ["client", "upstream"])
@pytest.mark.parametrize("case", list(CLOSE_CASES))
def test_verbatim_and_validating_bridges_agree_on_close(case, sender, chunk):
    data = frame(0x1, "héllo".encode(), sender == "client") + CLOSE_CASES[case](sender == "client")
    new = _run(WsBridge, Side, sender, data, chunk, drop=False)
    old = _run(ref_wsbridge.WsBridge, ref_wsbridge.Side, sender, data, chunk, drop=False)
    assert new == old


@pytest.mark.parametrize("sender", ["client", "upstream"])
def test_tcp_drop_mid_frame_agrees_and_closes_the_other_side_with_1011(sender):
    data = frame(0x1, b"complete", sender == "client") + frame(0x1, b"cut short", sender == "client")[:-3]
    new = _run(WsBridge, Side, sender, data, 4, drop=True)
    old = _run(ref_wsbridge.WsBridge, ref_wsbridge.Side, sender, data, 4, drop=True)
    assert new == old
    other = "upstream" if sender == "client" else "client"
    assert new[0][other][-1][:2] == ("close", 1011) and new[1]["code"] == 1006


def test_1014_is_passed_on_where_wsproto_refuses_it():
    bridge = WsBridge()
    out = bridge.feed(Side.UPSTREAM, frame(0x8, close_payload(1014, b"bad gateway"), False))
    assert bytes(out.to[Side.CLIENT]) == frame(0x8, close_payload(1014, b"bad gateway"), False)  # wsproto would refuse it
    assert bridge.close is not None and bridge.close.code == 1014 and not bridge.error


@pytest.mark.parametrize("side", list(Side))
def test_frame_announcing_more_than_the_cap_gets_1009_and_the_other_side_1011(side):
    bridge = WsBridge(max_frame_bytes=1000)
    out = bridge.feed(side, frame(0x2, b"", side is Side.CLIENT, length=1001))  # the header is enough
    assert _events(AT[side], bytes(out.to[side]))[-1][:2] == ("close", 1009)
    assert _events(AT[OTHER[side]], bytes(out.to[OTHER[side]]))[-1][:2] == ("close", 1011)
    assert bridge.close is not None and bridge.close.code == 1009
    assert WsBridge().feed(side, frame(0x2, b"", side is Side.CLIENT, length=2 ** 40)).to[side]  # default cap
    assert MAX_FRAME_BYTES < 2 ** 40


def test_a_frame_too_large_to_hold_streams_on_and_a_close_then_hangs_up():
    scanner = FrameScanner(masked=False, max_frame_bytes=MAX_FRAME_BYTES, record_limit=1 << 30)
    big = frame(0x2, b"x" * (HOLD_BYTES + 10), False)
    found: list = []
    assert scanner.feed(big[:HOLD_BYTES + 4], found) == big[:HOLD_BYTES + 4] and scanner.mid_frame
    assert not found
    assert scanner.feed(big[HOLD_BYTES + 4:], found) == big[HOLD_BYTES + 4:] and not scanner.mid_frame
    assert found == [(None, HOLD_BYTES + 10, False)]
    bridge = WsBridge()
    out = bridge.feed(Side.UPSTREAM, big[:HOLD_BYTES + 4])
    assert bytes(out.to[Side.CLIENT]) == big[:HOLD_BYTES + 4]
    ended = bridge.close_both(1001, "shutting down")
    assert ended.hangup == {Side.CLIENT}  # mid-frame: no close frame can go in
    assert _events(ConnectionType.SERVER, bytes(ended.to[Side.UPSTREAM]))[-1][:2] == ("close", 1001)
