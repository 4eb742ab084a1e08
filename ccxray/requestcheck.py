"""Pure checks of a client's request that h11 lets through but a proxy must not.

- RFC 9112 §2.3/§3: only HTTP/1.0 and 1.1 are spoken here; the HTTP/2
  connection preface (``PRI * HTTP/2.0``) gets 505 instead of being forwarded.
- RFC 9112 §6.1: a request with both Content-Length and Transfer-Encoding is
  a smuggling attempt or a broken client; it is answered, then the
  connection is closed (nothing pipelined behind it is read).
- RFC 9112 §7.1: a chunk size is hex of any length; h11 then waits for that
  many bytes. :class:`ChunkSizeWatcher` follows the chunk framing beside h11
  and answers at once: 400 for a size of more than 16 hex digits, 413 for
  one beyond the body cap.
- RFC 6455 §4.2.1: a WebSocket upgrade needs a Sec-WebSocket-Key that is
  base64 of 16 bytes and Sec-WebSocket-Version 13; anything else is refused
  before upstream is contacted.
"""

from __future__ import annotations

import base64
import binascii
from enum import Enum
from typing import Sequence

from .errors import ClientProtocolError

SUPPORTED_VERSIONS = (b"1.0", b"1.1")
WS_VERSION = "13"
MAX_CHUNK_LINE_BYTES = 4096
MAX_CHUNK_SIZE_DIGITS = 16  # 2^64 - 1: no real body comes near


def _values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name]


def check_version(http_version: bytes) -> None:
    """Raise ClientProtocolError(505) for anything but HTTP/1.x (e.g. an HTTP/2 preface)."""
    if http_version not in SUPPORTED_VERSIONS:
        raise ClientProtocolError(
            f"HTTP/{http_version.decode('latin-1')} is not supported here; speak HTTP/1.1", 505)


def has_length_and_chunking(headers: Sequence[tuple[str, str]]) -> bool:
    """True for a request framed both ways (RFC 9112 §6.1: close after answering)."""
    return bool(_values(headers, "content-length")) and bool(_values(headers, "transfer-encoding"))


def ws_handshake_problem(headers: Sequence[tuple[str, str]]) -> str | None:
    """What is wrong with a WebSocket upgrade's key or version, or None."""
    keys = _values(headers, "sec-websocket-key")
    if len(keys) != 1:
        return "a WebSocket upgrade needs exactly one Sec-WebSocket-Key"
    try:
        raw = base64.b64decode(keys[0].strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        return "Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455 4.2.1)"
    versions = _values(headers, "sec-websocket-version")
    if [v.strip() for v in versions] != [WS_VERSION]:
        return f"Sec-WebSocket-Version must be {WS_VERSION}"
    return None


class _Part(Enum):
    SIZE_LINE = "size line"
    DATA = "data"
    DATA_END = "data end"
    TRAILERS = "trailers"
    DONE = "done"


class ChunkSizeWatcher:
    """Follows chunked framing over the body bytes h11 is fed, to refuse huge chunk sizes early.

    h11 stays the parser of record: this only reads sizes, and once it is
    unsure (a malformed line) it stops watching and leaves the error to h11.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._part = _Part.SIZE_LINE
        self._line = bytearray()
        self._left = 0

    def feed(self, data: bytes) -> None:
        """Take the next body bytes; raise ClientProtocolError(400) for an impossible chunk size."""
        view = memoryview(data)
        while view and self._part is not _Part.DONE:
            if self._part is _Part.DATA or self._part is _Part.DATA_END:
                take = min(self._left, len(view))
                self._left -= take
                view = view[take:]
                if self._left == 0:
                    self._next_after_data()
                continue
            view = self._feed_line(view)

    def _next_after_data(self) -> None:
        if self._part is _Part.DATA:
            self._part, self._left = _Part.DATA_END, 2  # the CRLF after the chunk's data
        else:
            self._part = _Part.SIZE_LINE

    def _feed_line(self, view: memoryview) -> memoryview:
        end = bytes(view[:MAX_CHUNK_LINE_BYTES + 1]).find(b"\n")
        if end < 0:
            self._line += view
            if len(self._line) > MAX_CHUNK_LINE_BYTES:
                self._part = _Part.DONE  # h11 will refuse this line itself
            return view[len(view):]
        self._line += view[:end + 1]
        line, self._line = bytes(self._line).strip(), bytearray()
        if self._part is _Part.TRAILERS:
            if not line:
                self._part = _Part.DONE
        else:
            self._on_size_line(line)
        return view[end + 1:]

    def _on_size_line(self, line: bytes) -> None:
        digits = line.split(b";", 1)[0].strip()
        try:
            size = int(digits, 16)
        except ValueError:
            self._part = _Part.DONE
            return
        if len(digits) > MAX_CHUNK_SIZE_DIGITS:
            raise ClientProtocolError(f"impossible chunk size {digits[:40].decode('latin-1')!r}", 400)
        if size > self.limit:
            raise ClientProtocolError(f"a chunk of {size} bytes is beyond the {self.limit}-byte body cap "
                                      "(CCXRAY_MAX_BODY_MB)", 413)
        if size == 0:
            self._part = _Part.TRAILERS
        else:
            self._part, self._left = _Part.DATA, size
