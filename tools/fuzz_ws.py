"""WebSocket inputs for the fuzz harness: client frames and the mutators that break them.

``ws_frame`` builds one client frame with any bits, opcode, mask or
declared length. ``WS_MUTATORS`` maps a name to a mutator and its weight; a
mutator returns the bytes to send after a valid upgrade and the close codes
the proxy must answer a targeted violation with (1002 protocol error, 1007
bad UTF-8, RFC 6455 section 7.4.1). ``ws_case`` draws one ``Case``. Pure:
bytes in, bytes out.
"""

from __future__ import annotations

import random
from typing import Callable

from tools.fuzz_common import (
    BAD_UTF8,
    INVALID_CLOSE,
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    RESERVED_OPCODES,
    SENDABLE_CLOSE,
    Case,
    _bit_flips,
    _random_bytes,
)


# -- WebSocket frames


def ws_frame(rng: random.Random, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0,
             masked: bool = True, length: int | None = None, wide: bool = False) -> bytes:
    """One client frame; ``length`` overrides the declared length, ``wide`` forces 64-bit length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF
    mbit = 0x80 if masked else 0
    if wide or n > 0xFFFF:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    elif n > 125:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | n])
    if not masked:
        return head + payload
    key = _random_bytes(rng, 4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def _ws_text(rng: random.Random, fin: bool = True) -> bytes:
    return ws_frame(rng, OPCODE_TEXT, b"hello %d" % rng.randrange(1000), fin=fin)


def _w_random(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    data = _random_bytes(rng, rng.randint(1, 2048))
    if rng.random() < 0.5:
        data += ws_frame(rng, OPCODE_CLOSE, _close_payload(1000))
    return data, None


def _w_mutated_valid(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    frames = [_ws_text(rng), ws_frame(rng, OPCODE_BINARY, _random_bytes(rng, rng.randint(0, 300))),
              ws_frame(rng, OPCODE_PING, b"p"), _ws_text(rng, fin=False) + ws_frame(rng, 0x0, b"tail")]
    data = b"".join(rng.sample(frames, rng.randint(1, len(frames))))
    data = _bit_flips(rng, data) if rng.random() < 0.7 else data[:rng.randrange(1, len(data))]
    return data + ws_frame(rng, OPCODE_CLOSE, _close_payload(1000)), None


def _w_reserved_bits(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, OPCODE_TEXT, b"hi", rsv=rng.randint(1, 7)), frozenset({"ws close 1002"})


def _w_reserved_opcode(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, rng.choice(RESERVED_OPCODES), b"hi"), frozenset({"ws close 1002"})


def _w_unmasked(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, rng.choice((OPCODE_TEXT, OPCODE_BINARY, OPCODE_PING)), b"hi", masked=False), \
        frozenset({"ws close 1002"})


def _w_oversized_control(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    opcode = rng.choice((OPCODE_PING, OPCODE_PONG, OPCODE_CLOSE))
    payload = _close_payload(1000, b"r" * 200) if opcode == OPCODE_CLOSE else b"x" * rng.randint(126, 400)
    return ws_frame(rng, opcode, payload), frozenset({"ws close 1002"})


def _w_fragmented_control(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    return ws_frame(rng, rng.choice((OPCODE_PING, OPCODE_PONG)), b"p", fin=False), frozenset({"ws close 1002"})


def _w_bad_utf8_text(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    bad = b"ok " + rng.choice(BAD_UTF8) + b" more"
    if rng.random() < 0.5:
        return ws_frame(rng, OPCODE_TEXT, bad), frozenset({"ws close 1007"})
    return ws_frame(rng, OPCODE_TEXT, b"start ", fin=False) + ws_frame(rng, 0x0, bad), frozenset({"ws close 1007"})


def _w_bad_close(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    pick = rng.randrange(3)
    if pick == 0:
        return ws_frame(rng, OPCODE_CLOSE, b"\x03"), frozenset({"ws close 1002"})
    if pick == 1:
        return ws_frame(rng, OPCODE_CLOSE, _close_payload(rng.choice(INVALID_CLOSE))), frozenset({"ws close 1002"})
    return ws_frame(rng, OPCODE_CLOSE, _close_payload(1000, rng.choice(BAD_UTF8))), frozenset({"ws close 1007"})


def _w_valid_close(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    code = rng.choice(sorted(SENDABLE_CLOSE - {1014}))
    return ws_frame(rng, OPCODE_CLOSE, _close_payload(code, b"bye")), frozenset({f"ws close {code}"})


def _w_bad_sequence(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    if rng.random() < 0.5:  # a continuation with nothing to continue
        return ws_frame(rng, 0x0, b"orphan"), frozenset({"ws close 1002"})
    return _ws_text(rng, fin=False) + _ws_text(rng), frozenset({"ws close 1002"})  # new message mid-message


def _w_bad_length(rng: random.Random) -> tuple[bytes, frozenset[str] | None]:
    if rng.random() < 0.5:  # a 16-bit length for a payload that fits in 7 bits
        b0, key = 0x80 | OPCODE_TEXT, _random_bytes(rng, 4)
        return bytes([b0, 0x80 | 126, 0, 5]) + key + bytes(c ^ key[i % 4] for i, c in enumerate(b"hello")), \
            frozenset({"ws close 1002"})
    return bytes([0x80 | OPCODE_BINARY, 0x80 | 127]) + (1 << 63 | 5).to_bytes(8, "big") + b"\0" * 9, \
        frozenset({"ws close 1002"})


WsMutator = Callable[[random.Random], tuple[bytes, "frozenset[str] | None"]]
WS_MUTATORS: dict[str, tuple[WsMutator, int]] = {
    "random-bytes": (_w_random, 4),
    "mutated-valid": (_w_mutated_valid, 4),
    "reserved-bits": (_w_reserved_bits, 1),
    "reserved-opcode": (_w_reserved_opcode, 1),
    "unmasked": (_w_unmasked, 1),
    "oversized-control": (_w_oversized_control, 1),
    "fragmented-control": (_w_fragmented_control, 1),
    "bad-utf8": (_w_bad_utf8_text, 1),
    "bad-close": (_w_bad_close, 2),
    "valid-close": (_w_valid_close, 1),
    "bad-sequence": (_w_bad_sequence, 1),
    "bad-length": (_w_bad_length, 1),
}


def ws_case(rng: random.Random) -> Case:
    """Bytes to send on an upgraded /v1/responses (echo) connection."""
    names = sorted(WS_MUTATORS)
    name = rng.choices(names, weights=[WS_MUTATORS[n][1] for n in names])[0]
    data, expect = WS_MUTATORS[name][0](rng)
    if expect is not None and rng.random() < 0.3:  # a good message first: the violation comes mid-session
        data = _ws_text(rng) + data
    return Case(f"ws {name}", data, ws=True, expect=expect)
