"""HTTP inputs for the fuzz harness: well-formed requests and the mutators that break them.

``valid_requests`` builds the requests mutation starts from;
``HTTP_MUTATORS`` maps a name to a mutator and its weight. A mutator takes
a ``random.Random`` and a valid request and returns the bytes to send and,
for a targeted input, the outcomes the proxy must answer with (``status
431`` for an oversize head, say), or None when any 4xx/5xx or close will
do. ``http_case`` draws one ``Case``. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import json
import random
from typing import Callable, Iterable

from tools.fuzz_common import (
    MAX_BODY_MB,
    MSG,
    OVERSIZE_MIN_BYTES,
    WS_KEY,
    Case,
    _bit_flips,
    _random_bytes,
    _request,
)


def _chunked(body: bytes, sizes: Iterable[int]) -> bytes:
    out, pos = bytearray(), 0
    for size in sizes:
        piece = body[pos:pos + size]
        pos += len(piece)
        if piece:
            out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    if pos < len(body):
        out += b"%x\r\n" % (len(body) - pos) + body[pos:] + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def valid_requests(port: int) -> dict[str, bytes]:
    """Well-formed requests that the mutators start from."""
    host = b"127.0.0.1:%d" % port
    base = [(b"Host", host), (b"User-Agent", b"ccxray-fuzz")]
    json_h = base + [(b"Content-Type", b"application/json"), (b"x-fake-mode", b"echo")]
    stream = json.dumps({"model": "gpt-5.5", "stream": True, "input": "hi"}).encode()
    return {
        "post-json": _request(b"POST", b"/v1/messages", json_h + [(b"Content-Length", b"%d" % len(MSG))], MSG),
        "post-chunked": _request(b"POST", b"/v1/messages?beta=true",
                                 json_h + [(b"Transfer-Encoding", b"chunked")], _chunked(MSG, (7, 13))),
        "post-sse": _request(b"POST", b"/v1/responses", base + [(b"x-fake-mode", b"sse:3"),
                             (b"Content-Length", b"%d" % len(stream))], stream),
        "get-models": _request(b"GET", b"/v1/models", base),
        "head-root": _request(b"HEAD", b"/", base),
        "api-sessions": _request(b"GET", b"/_api/sessions", base),
        "api-entry": _request(b"GET", b"/_api/entries/does-not-exist", base),
        "api-entries": _request(b"GET", b"/_api/entries?limit=20&session=s1", base),
        "ws-upgrade": _request(b"GET", b"/v1/responses", base + [
            (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", WS_KEY.encode()),
            (b"Sec-WebSocket-Version", b"13"), (b"x-fake-mode", b"echo")]),
    }


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    return head + sep, body


def _with_header(data: bytes, line: bytes) -> bytes:
    """Insert a header line right after the request line."""
    first, _, rest = data.partition(b"\r\n")
    return first + b"\r\n" + line + b"\r\n" + rest


def _token_noise(rng: random.Random) -> bytes:
    return rng.choice([b"(", b")", b" ", b"@", b"\x00", b"\x7f", b"\xff", b"{", b"\t", b"/", b"\"", b"="])


HttpMutator = Callable[[random.Random, bytes], tuple[bytes, "frozenset[str] | None"]]


def _m_bitflip(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return _bit_flips(rng, data), None


def _m_head_bitflip(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    head, _ = _split_head(data)
    return _bit_flips(rng, data, 0, max(len(head) - 4, 1)), None


def _m_truncate(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return data[:rng.randrange(len(data))], None


def _m_splice(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(buf) + 1)
        op = rng.randrange(3)
        if op == 0:
            buf[at:at] = _random_bytes(rng, rng.randint(1, 32))
        elif op == 1:
            del buf[at:at + rng.randint(1, 16)]
        else:
            buf[at:at] = buf[at:at + rng.randint(1, 64)]
    return bytes(buf), None


def _m_huge_header(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    size = OVERSIZE_MIN_BYTES + rng.randint(0, 200_000)
    return _with_header(data, b"X-Huge: " + b"a" * size), frozenset({"status 431"})


def _m_many_headers(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    lines = b"\r\n".join(b"X-Many-%d: %d" % (i, i) for i in range(OVERSIZE_MIN_BYTES // 12))
    return _with_header(data, lines), frozenset({"status 431"})


def _m_huge_target(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    first, sep, rest = data.partition(b" ")
    target = b"/v1/" + b"x" * (OVERSIZE_MIN_BYTES + rng.randint(0, 10_000))
    return first + sep + target + rest, frozenset({"status 431"})


def _m_duplicate_header(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    head, body = _split_head(data)
    lines = head.split(b"\r\n")
    pick = rng.randrange(1, max(len(lines) - 2, 2))
    lines.insert(pick, lines[pick])
    return b"\r\n".join(lines) + body, None


def _m_conflicting_length(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return _with_header(_with_header(data, b"Content-Length: 3"), b"Content-Length: 4"), frozenset({"status 400"})


def _m_invalid_header_name(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    name = b"X-B" + _token_noise(rng) + b"ad"
    return _with_header(data, name + b": v"), frozenset({"status 400"})


def _m_invalid_header_value(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    bad = rng.choice([b"\x00", b"\r", b"\x0b"])  # h11 lets other controls through (RFC 9110 5.5 allows it)
    return _with_header(data, b"X-Value: a" + bad + b"b"), frozenset({"status 400"})


def _m_bad_content_length(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    value = rng.choice([b"-1", b"abc", b"1.5", b"0x10", b"", b"1 2", b"+5", b"\xb2", b"5,6"])
    return _with_header(data, b"Content-Length: " + value), frozenset({"status 400"})


def _m_wrong_content_length(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    head, body = _split_head(data)
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith((b"content-length", b"transfer-encoding"))]
    head = b"\r\n".join(l for l in lines if l) + b"\r\n"
    n = max(len(body) + rng.randint(-len(body), 64), 0)
    return head + b"Content-Length: %d\r\n\r\n" % n + body, None


def _m_body_over_cap(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    size = MAX_BODY_MB * 1024 * 1024 + rng.randint(1, 10**9)
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Content-Length", b"%d" % size)])
    return req + b"{", frozenset({"status 413"})


def _m_bad_chunk(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    size = rng.choice([b"zz", b"-1", b"1 2", b"0x5", b"", b"\xff"])  # h11 reads chunk extensions loosely
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")])
    return req + size + b"\r\nhello\r\n0\r\n\r\n", frozenset({"status 400"})


def _m_bad_chunk_framing(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")])
    return req + b"3\r\nhelloXX\r\n0\r\n\r\n", frozenset({"status 400"})


def _m_unknown_coding(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    coding = rng.choice([b"gzip", b"chunked, gzip", b"identity", b"x-fuzz"])
    req = _request(b"POST", b"/v1/messages", [(b"Host", b"x"), (b"Transfer-Encoding", coding)])
    return req + b"{}", frozenset({"status 501"})


def _m_bad_request_line(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    first, sep, rest = data.partition(b"\r\n")
    line = rng.choice([
        b"GET", b"GET /v1/models", b"G\x00T /v1/models HTTP/1.1", b"GET /v1/models HTTP/1.1 extra",
        b"GET\t/v1/models\tHTTP/1.1", b"GET /v1/mo dels HTTP/1.1", b"GET /v1/models HTTP/x.y",
        b" GET /v1/models HTTP/1.1", b"GET /v1/models\x7f HTTP/1.1", b"GE(T /v1/models HTTP/1.1",
    ])
    return line + sep + rest, frozenset({"status 400", "status 505"})


ODD_QUERIES = (b"limit=%C2%B2", b"limit=-1", b"limit=0", b"limit=1e3", b"limit=99999999999999999999",
               b"session=%ff%fe", b"session=%00", b"%zz", b"a=%", b"&&&", b"token=", b"token=%ff", b"=x",
               b"session=" + b"s" * 3000, b"limit=%D9%A3", b"limit=%EF%BC%95")


def _m_odd_query(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    first, sep, rest = data.partition(b"\r\n")
    method, _, target = first.partition(b" ")
    path, _, version = target.rpartition(b" ")
    path = path.partition(b"?")[0]
    query = b"&".join(rng.sample(ODD_QUERIES, rng.randint(1, 3)))
    return method + b" " + path + b"?" + query + b" " + version + sep + rest, None


def _m_pipelined_garbage(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    garbage = rng.choice([_random_bytes(rng, rng.randint(1, 512)), b"GARBAGE\r\n\r\n", b"\r\n\r\n\x00\x00",
                          b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: \x00\r\n\r\n"])
    return data + garbage, None


def _m_pipelined_twice(rng: random.Random, data: bytes) -> tuple[bytes, frozenset[str] | None]:
    return data + data, None


HTTP_MUTATORS: dict[str, tuple[HttpMutator, int]] = {  # name -> (mutator, weight)
    "bitflip": (_m_bitflip, 6),
    "head-bitflip": (_m_head_bitflip, 6),
    "truncate": (_m_truncate, 5),
    "splice": (_m_splice, 5),
    "huge-header": (_m_huge_header, 1),
    "many-headers": (_m_many_headers, 1),
    "huge-target": (_m_huge_target, 1),
    "duplicate-header": (_m_duplicate_header, 2),
    "conflicting-content-length": (_m_conflicting_length, 2),
    "invalid-header-name": (_m_invalid_header_name, 2),
    "invalid-header-value": (_m_invalid_header_value, 2),
    "bad-content-length": (_m_bad_content_length, 2),
    "wrong-content-length": (_m_wrong_content_length, 2),
    "body-over-cap": (_m_body_over_cap, 1),
    "bad-chunk-size": (_m_bad_chunk, 2),
    "bad-chunk-framing": (_m_bad_chunk_framing, 1),
    "unknown-transfer-coding": (_m_unknown_coding, 1),
    "bad-request-line": (_m_bad_request_line, 2),
    "odd-query": (_m_odd_query, 3),
    "pipelined-garbage": (_m_pipelined_garbage, 3),
    "pipelined-twice": (_m_pipelined_twice, 1),
}


def http_case(rng: random.Random, port: int) -> Case:
    """A mutated request (or pure random bytes) for a fresh connection."""
    if rng.random() < 0.06:
        return Case("random-bytes", _random_bytes(rng, rng.randint(1, 4096)), half_close=rng.random() < 0.5)
    base_name, base = rng.choice(sorted(valid_requests(port).items()))
    names = sorted(HTTP_MUTATORS)
    name = rng.choices(names, weights=[HTTP_MUTATORS[n][1] for n in names])[0]
    data, expect = HTTP_MUTATORS[name][0](rng, base)
    return Case(f"http {name} ({base_name})", data, half_close=rng.random() < 0.4, expect=expect)
