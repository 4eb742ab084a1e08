"""The scanner's fast path (whole frames in one loop) against its general
path and against wsproto: each shortcut it takes is checked where it could
go wrong (cuts at every byte, UTF-8 split across frames and recvs, the
length encodings' edges, limits, wrong masking, violations after good
frames in one recv)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccxray.wsbridge import OTHER, Side, WsBridge
from ccxray.wsscan import FrameScanner, Found

from . import ref_wsbridge
from .test_ws_verbatim import AT, CLOSE_CASES, _events, _run, frame, wsproto_messages
from .wsmessages import messages


class GeneralOnly(FrameScanner):
    """The scanner with its fast path switched off: the reference for it."""

    def _whole_frames(self, buf: bytes | bytearray, pos: int, found: list[Found]) -> int:
        return pos


def scan_all(scanner: FrameScanner, pieces: list[bytes]) -> tuple[bytes, list[Found], object, int | None]:
    forward, found = b"", []
    for piece in pieces:
        forward += scanner.feed(piece, found)
    code = scanner.violation.code if scanner.violation else None
    return forward, found, scanner.close, code


def both(masked: bool, pieces: list[bytes], **limits: int) -> tuple[tuple, tuple]:
    args = dict(max_frame_bytes=limits.get("max_frame", 1 << 26), record_limit=limits.get("record_limit", 1 << 26))
    fast = scan_all(FrameScanner(masked, **args), pieces)
    general = scan_all(GeneralOnly(masked, **args), pieces)
    return fast, general


def cut_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(len(data) + 1)] + [[data[i:i + 1] for i in range(len(data))]]


@pytest.mark.parametrize("masked", [True, False])
def test_frames_cut_at_every_byte_arrive_identical_and_whole(masked):
    text = '{"type":"response.create","x":"é€😀"}'
    data = (frame(0x1, text.encode(), masked) + frame(0x2, b"\x00\xff" * 70, masked)
            + frame(0x1, "ü".encode() * 100, masked) + frame(0x1, b"", masked))
    expected = [(text, len(text.encode()), False), (None, 140, False), ("ü" * 100, 200, False), ("", 0, False)]
    for pieces in cut_everywhere(data):
        fast, general = both(masked, pieces)
        assert fast == general == (data, expected, None, None)


@pytest.mark.parametrize("masked", [True, False])
def test_a_character_split_across_fragments_and_recvs_is_decoded_whole(masked):
    raw = "a€😀b".encode()
    for split in range(len(raw) + 1):
        data = frame(0x1, raw[:split], masked, fin=False) + frame(0x0, raw[split:], masked)
        for pieces in cut_everywhere(data):
            fast, general = both(masked, pieces)
            assert fast == general == (data, [("a€😀b", len(raw), False)], None, None)


@pytest.mark.parametrize("masked", [True, False])
def test_bad_utf8_after_good_frames_in_one_recv_forwards_the_good_ones_then_1007(masked):
    good = frame(0x1, b"fine", masked) + frame(0x2, b"\xff", masked)
    for bad in (b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"):  # bad, surrogate, > U+10FFFF, cut
        fast, general = both(masked, [good + frame(0x1, bad, masked) + frame(0x1, b"late", masked)])
        assert fast == general
        assert fast[0] == good and fast[1] == [("fine", 4, False), (None, 1, False)] and fast[3] == 1007


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("side", list(Side))
def test_length_encoding_edges_pass_verbatim_and_are_recorded_as_wsproto_parses_them(size, side):
    masked = side is Side.CLIENT
    data = frame(0x1, b"t" * size, masked) + frame(0x2, b"\x01" * size, masked) + frame(0x1, b"after", masked)
    bridge = WsBridge()
    out = bridge.feed(side, data)
    assert out.to[OTHER[side]] == data
    parsed = wsproto_messages(side, data)
    assert [(m.text, m.size) for m in messages(out)] == [
        (v if k == "text" else None, len(v)) for k, v in parsed]  # type: ignore[arg-type]
    for pieces in ([data[:3], data[3:]], [data[:size], data[size:]], [data[:-1], data[-1:]]):
        fast, general = both(masked, pieces)
        assert fast == general and fast[0] == data


@pytest.mark.parametrize("masked", [True, False])
def test_frames_over_the_limits_leave_the_fast_path(masked):
    over_record = frame(0x1, b"r" * 50, masked) + frame(0x1, b"small", masked)
    fast, general = both(masked, [over_record], record_limit=20)
    assert fast == general == (over_record, [(None, 50, True), ("small", 5, False)], None, None)
    over_cap = frame(0x1, b"ok", masked) + frame(0x2, b"c" * 120, masked)
    fast, general = both(masked, [over_cap], max_frame=100)
    assert fast == general and fast[0] == frame(0x1, b"ok", masked) and fast[3] == 1009


@pytest.mark.parametrize("side", list(Side))
def test_wrong_masking_after_good_frames_agrees_with_wsproto_bridge(side):
    masked = side is Side.CLIENT
    data = frame(0x1, b"one", masked) + frame(0x1, b"two", masked) + frame(0x1, b"wrong", not masked)
    new = _run(WsBridge, Side, side.value, data, len(data), drop=False)
    old = _run(ref_wsbridge.WsBridge, ref_wsbridge.Side, side.value, data, len(data), drop=False)
    assert new == old
    assert new[0][side.value][-1][:2] == ("close", 1002)
    assert new[0][OTHER[side].value][:2] == [("TextMessage", "one"), ("TextMessage", "two")]


@pytest.mark.parametrize("masked", [True, False])
def test_control_frames_inside_a_fragmented_message(masked):
    data = (frame(0x1, "dé".encode(), masked, fin=False) + frame(0x9, b"ping", masked) + frame(0x0, b"but", masked, fin=False)
            + frame(0xA, b"", masked) + frame(0x0, "€".encode(), masked) + frame(0x1, b"next", masked))
    for pieces in cut_everywhere(data):
        fast, general = both(masked, pieces)
        assert fast == general == (data, [("début€", 9, False), ("next", 4, False)], None, None)
    events = _events(AT[Side.UPSTREAM if masked else Side.CLIENT], data)
    assert [e[0] for e in events] == ["TextMessage", "Ping", "TextMessage", "Pong", "TextMessage", "TextMessage"]


@pytest.mark.parametrize("case", list(CLOSE_CASES))
@pytest.mark.parametrize("masked", [True, False])
def test_fast_and_general_paths_agree_on_every_close_case(case, masked):
    data = frame(0x1, "héllo".encode(), masked) + frame(0x2, b"bin", masked) + CLOSE_CASES[case](masked)
    for pieces in ([data], [data[:7], data[7:]], [data[i:i + 1] for i in range(len(data))]):
        fast, general = both(masked, pieces)
        assert fast == general


frame_part = st.one_of(
    st.builds(lambda op, payload, fin: (op, payload, fin), st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3]),
              st.one_of(st.binary(max_size=200), st.text(max_size=80).map(str.encode)), st.booleans()),
    st.binary(min_size=1, max_size=12),  # garbage
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_part, max_size=12), st.booleans(), st.lists(st.integers(0, 3000), max_size=6),
       st.booleans())
def test_fast_path_changes_nothing_on_random_and_broken_input(parts, masked, cuts, wrong_mask):
    data = b"".join(p if isinstance(p, bytes) else frame(p[0], p[1], masked != wrong_mask, fin=p[2]) for p in parts)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in zip(points, points[1:])]
    fast, general = both(masked, pieces)
    assert fast == general


def test_bytes_held_across_recvs_are_not_forwarded_twice():
    scanner = FrameScanner(False, 1 << 20, 1 << 20)
    whole, half = frame(0x1, b"a" * 10, False), frame(0x1, b"b" * 300, False)
    found: list[Found] = []
    assert scanner.feed(whole + half[:5], found) == whole
    assert scanner.feed(half[5:200], found) == b""
    assert scanner.feed(half[200:] + whole, found) == half + whole
    assert found == [("a" * 10, 10, False), ("b" * 300, 300, False), ("a" * 10, 10, False)]
    assert (scanner.messages, scanner.payload_bytes) == (3, 320)
