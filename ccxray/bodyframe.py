"""A response body's framing read a whole ``recv`` at a time (sans-IO):
Content-Length (:class:`LengthBody`) or chunked (:class:`ChunkedDecoder`).

h11 turns every chunk into an event (a 500-event SSE stream costs ~4 ms in
its reader alone); this decoder takes whatever one ``recv`` brought and
returns the payload bytes of all of it, partial chunks included, so the
relay forwards each read at once and in one piece. It accepts what h11's
reader accepts (chunk sizes of 1-20 hex digits, extensions and trailing
blanks ignored, trailers read and dropped, as the relay drops them) and
fails with :class:`ChunkedError` where h11 fails.
"""

from __future__ import annotations

import re

MAX_LINE_BYTES = 64 * 1024   # a chunk-size line or the trailer section (h11's incomplete-event bound)
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
_SIZE, _DATA, _CRLF, _TRAILER, _DONE = range(5)


class ChunkedError(ValueError):
    """The body is not valid chunked framing."""


class LengthBody:
    """A body of ``length`` bytes; the same interface as ChunkedDecoder."""

    def __init__(self, length: int) -> None:
        self._left = length
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self._left == 0

    @property
    def left(self) -> int:
        return self._left

    def count(self, size: int) -> None:
        """``size`` body bytes were read outside ``feed`` (never past the body's end)."""
        if size > self._left:
            raise ValueError(f"{size} bytes read where {self._left} were left")
        self._left -= size

    def feed(self, data: bytes) -> list[bytes]:
        if len(data) <= self._left:
            self._left -= len(data)
            return [data] if data else []
        body, self._left = data[:self._left], 0
        self.leftover += data[len(body):]
        return [body] if body else []


class ChunkedDecoder:
    """Feed the raw body bytes in any pieces; get back the payload they carry."""

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0            # payload bytes still due in the current chunk
        self._pending = b""       # an unfinished size line, chunk end or trailer section
        self._trailer = 0         # trailer bytes seen
        self._bad: bytes | None = None  # the first malformed trailer line
        self.leftover = b""       # bytes after the body's end (a reusable connection has none)

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        """The payload pieces in ``data`` (in order). Raises ChunkedError."""
        if self._pending:
            data, self._pending = self._pending + data, b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and self._state != _DONE:
            if self._state == _DATA:
                take = min(self._left, end - pos)
                out.append(data[pos:pos + take] if take < end or pos else data)
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _CRLF
            elif self._state == _CRLF:
                if end - pos < 2:
                    break
                if data[pos:pos + 2] != b"\r\n":
                    raise ChunkedError(f"malformed chunk end {data[pos:pos + 2]!r} (expected b'\\r\\n')")
                pos += 2
                self._state = _SIZE
            elif self._state == _SIZE:
                pos = self._size_line(data, pos)
                if pos < 0:
                    pos = -pos - 1
                    break
            else:
                pos = self._trailer_lines(data, pos)
                if pos < 0:
                    pos = -pos - 1
                    break
        if self._state == _DONE:
            self.leftover += data[pos:]
        else:
            self._pending = data[pos:]
        return out

    def _size_line(self, data: bytes, pos: int) -> int:
        """Past the size line at ``pos``; ``-pos - 1`` when it is not whole yet."""
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            if len(data) - pos > MAX_LINE_BYTES:
                raise ChunkedError(f"chunk-size line over {MAX_LINE_BYTES} bytes")
            return -pos - 1
        match = _SIZE_LINE.fullmatch(data, pos, eol)
        if match is None:
            raise ChunkedError(f"illegal chunk header: {data[pos:eol + 2][:80]!r}")
        self._left = int(match.group(1), 16)
        self._state = _DATA if self._left else _TRAILER
        return eol + 2

    def _trailer_lines(self, data: bytes, pos: int) -> int:
        """Past the trailer lines at ``pos`` (to the blank line that ends the body)."""
        while True:
            eol = data.find(b"\n", pos)
            if eol < 0:
                if self._trailer + len(data) - pos > MAX_LINE_BYTES:
                    raise ChunkedError(f"chunked trailer over {MAX_LINE_BYTES} bytes")
                return -pos - 1
            line = data[pos:eol].rstrip(b"\r") if eol > pos else b""
            self._trailer += eol + 1 - pos
            pos = eol + 1
            if not line:
                if self._bad is not None:  # judged once the section is whole, as h11 does
                    raise ChunkedError(f"illegal trailer line {self._bad[:80]!r}")
                self._state = _DONE
                return pos
            if self._bad is None and (b":" not in line or line[:1] in (b" ", b"\t")):
                self._bad = line
