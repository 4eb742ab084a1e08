"""The data messages of a bridge Output, one object each (the bridge hands them out in runs)."""

from __future__ import annotations

from typing import NamedTuple

from ccxray.wsbridge import Output, Side


class Seen(NamedTuple):
    side: Side
    text: str | None
    size: int
    truncated: bool
    seq: int


def messages(out: Output) -> list[Seen]:
    return [Seen(side, text, size, truncated, seq + i)
            for side, seq, found in out.runs for i, (text, size, truncated) in enumerate(found)]
