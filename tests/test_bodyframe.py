"""The read-at-a-time chunked decoder agrees with h11's reader on every split."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings, strategies as st

from ccxray.bodyframe import MAX_LINE_BYTES, ChunkedDecoder, ChunkedError

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def by_h11(body: bytes, cuts: list[int]) -> tuple[bytes, bool, bytes]:
    """(payload, finished, bytes left after the body) as h11 reads ``body`` fed in pieces."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(HEAD)
    assert isinstance(conn.next_event(), h11.Response)
    payload = b""
    for piece in pieces(body, cuts):
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                payload += event.data
            elif isinstance(event, h11.EndOfMessage):
                return payload, True, conn.trailing_data[0]
            else:
                break
    return payload, False, b""


def by_decoder(body: bytes, cuts: list[int]) -> tuple[bytes, bool, bytes]:
    decoder = ChunkedDecoder()
    payload = b""
    for piece in pieces(body, cuts):
        if decoder.done:
            decoder.leftover += piece
            continue
        payload += b"".join(decoder.feed(piece))
    return payload, decoder.done, decoder.leftover


def pieces(body: bytes, cuts: list[int]) -> list[bytes]:
    marks = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in zip(marks, marks[1:])]


def frame(chunks: list[bytes], exts: list[str], trailers: list[tuple[str, str]]) -> bytes:
    out = b""
    for i, chunk in enumerate(chunks):
        ext = exts[i % len(exts)] if exts else ""
        out += b"%x%s\r\n%s\r\n" % (len(chunk), ext.encode(), chunk)
    out += b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in trailers) + b"\r\n"
    return out


chunk_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=12)
ext_lists = st.lists(st.sampled_from(["", ";a=b", "; name", "  ", ";x=\"y z\"\t"]), max_size=3)
trailer_lists = st.lists(st.tuples(st.sampled_from(["X-Checksum", "Server-Timing", "a"]),
                                   st.text("abcXYZ019 =;", max_size=12).map(str.strip)), max_size=3)
cut_lists = st.lists(st.integers(min_value=0, max_value=5000), max_size=20)


@settings(max_examples=300, deadline=None)
@given(chunk_lists, ext_lists, trailer_lists, cut_lists, st.binary(max_size=20))
def test_decoder_reads_what_h11_reads(chunks: list[bytes], exts: list[str], trailers: list[tuple[str, str]],
                                      cuts: list[int], after: bytes) -> None:
    body = frame(chunks, exts, trailers) + after
    payload, done, left = by_decoder(body, cuts)
    assert (payload, done) == by_h11(body, cuts)[:2] == (b"".join(chunks), True)
    assert left == after


@settings(max_examples=300, deadline=None)
@given(chunk_lists, cut_lists, st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=6))
def test_damaged_framing_fails_where_h11_fails(chunks: list[bytes], cuts: list[int], at: int, junk: bytes) -> None:
    whole = frame(chunks, [], [])
    at %= len(whole)
    body = whole[:at] + junk + whole[at:]
    try:
        theirs: object = by_h11(body, cuts)[:2]
    except h11.RemoteProtocolError:
        theirs = "error"
    try:
        ours: object = by_decoder(body, cuts)[:2]
    except ChunkedError:
        ours = "error"
    # a body still unfinished fails at the connection's end all the same
    assert (ours if ours == "error" or ours[1] else "error") == (theirs if theirs == "error" or theirs[1] else "error")  # type: ignore[index]


def test_a_cut_body_is_not_done() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhel") == [b"hel"]
    assert not decoder.done
    assert decoder.feed(b"lo\r\n0\r\n") == [b"lo"] and not decoder.done
    assert decoder.feed(b"\r\nNEXT") == [] and decoder.done and decoder.leftover == b"NEXT"


@pytest.mark.parametrize("body", [b"zz\r\n", b"5\r\nhelloXY", b"1" * 21 + b"\r\n", b"0\r\n bad\r\n\r\n",
                                  b"0\r\nno colon\r\n\r\n"])
def test_malformed_framing_is_refused(body: bytes) -> None:
    with pytest.raises(ChunkedError):
        ChunkedDecoder().feed(body)


def test_an_endless_size_line_is_refused() -> None:
    decoder = ChunkedDecoder()
    with pytest.raises(ChunkedError):
        for _ in range(MAX_LINE_BYTES // 1000 + 2):
            decoder.feed(b"1" + b" " * 999)


@given(st.integers(min_value=0, max_value=500), cut_lists, st.binary(max_size=10))
def test_length_body_takes_exactly_its_bytes(length: int, cuts: list[int], after: bytes) -> None:
    from ccxray.bodyframe import LengthBody
    body = bytes(range(256)) * 2
    whole = body[:length] + after
    reader = LengthBody(length)
    got = b""
    for piece in pieces(whole, cuts):
        got += b"".join(reader.feed(piece))
    assert got == body[:length] and reader.done and reader.leftover == after


def by_h11_length(body: bytes, length: int) -> tuple[bytes, bytes]:
    """(payload, bytes after it) as h11 reads a Content-Length response whose body is ``body``."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length + body)
    assert isinstance(conn.next_event(), h11.Response)
    payload = b""
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data)
        payload += event.data
    return payload, conn.trailing_data[0]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=3000), cut_lists, st.integers(min_value=1, max_value=700),
       st.binary(max_size=40))
def test_bounded_reads_into_one_buffer_take_what_h11_takes(length: int, cuts: list[int], room: int,
                                                           after: bytes) -> None:
    """The relay's way with a spilling body: reads of at most what is left, into one reused
    buffer, counted; the bytes after the body stay unread for the connection's next answer."""
    from ccxray.bodyframe import LengthBody
    body = (bytes(range(256)) * 12)[:length]
    wire = pieces(body + after, cuts)  # what each recv could return at most
    reader, buf, got = LengthBody(length), bytearray(room), b""
    while not reader.done:
        arrived = wire.pop(0)
        n = min(len(arrived), room, reader.left)
        buf[:n] = arrived[:n]
        if n < len(arrived):
            wire.insert(0, arrived[n:])
        reader.count(n)
        got += bytes(buf[:n])
    assert (got, b"".join(wire)) == by_h11_length(body + after, length)


def test_counting_past_the_body_is_refused() -> None:
    from ccxray.bodyframe import LengthBody
    reader = LengthBody(3)
    reader.count(2)
    with pytest.raises(ValueError):
        reader.count(2)
    assert reader.left == 1
