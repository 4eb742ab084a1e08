"""Content decoding for the recorder's own copy of a body.

The client always gets the bytes exactly as upstream sent them; only the
recorder decodes. What it cannot decode is reported as such, never guessed.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Iterable

MAX_DECODED_BYTES = 256 * 1024 * 1024


def content_encodings(headers: Iterable[tuple[str, str]]) -> list[str]:
    """Content-Encoding tokens in the order they were applied."""
    codings: list[str] = []
    for name, value in headers:
        if name.lower() == "content-encoding":
            codings += [t.strip().lower() for t in value.split(",") if t.strip()]
    return [c for c in codings if c != "identity"]


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompressobj().decompress(data, MAX_DECODED_BYTES)
    except zlib.error:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, MAX_DECODED_BYTES)


def _gunzip(data: bytes) -> bytes:
    out = bytearray()
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += d.decompress(data, MAX_DECODED_BYTES - len(out))
        data = d.unused_data if d.eof else b""
        if not d.eof:
            break
    return bytes(out)


def decode_body(data: bytes, headers: Iterable[tuple[str, str]]) -> tuple[bytes, str | None]:
    """(decoded bytes, None) or (raw bytes, why it could not be decoded)."""
    for coding in reversed(content_encodings(headers)):
        try:
            if coding in ("gzip", "x-gzip"):
                data = _gunzip(data)
            elif coding == "deflate":
                data = _inflate(data)
            else:
                return data, f"content-encoding {coding} is not decoded by ccxray"
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            return data, f"content-encoding {coding} could not be decoded: {exc}"
    return data, None
