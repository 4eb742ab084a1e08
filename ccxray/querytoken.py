"""The one reader of ccxray's ``token`` query parameter.

Authentication and stripping must agree on which pairs are the token, or a
spelling that one accepts and the other misses leaks the token upstream
(``?tok%65n=T`` authenticated but was forwarded). So both use
:func:`split_token`: the query is cut at every ``&`` and ``;`` (some servers
split on either), each key is percent-decoded (``+`` as space, surrounding
space dropped, case folded), and every pair whose key decodes to ``token``
counts, however often it repeats. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

TOKEN_KEY = "token"
_SEPARATOR = re.compile(r"([&;])")


@dataclass(frozen=True)
class TargetToken:
    """A request target split into ccxray's token values and everything else."""

    values: tuple[str, ...]  # decoded values of every token pair, in order
    stripped: str            # the target without them; other bytes exactly as sent


def is_token_key(raw_key: str) -> bool:
    """True when a raw (still percent-encoded) query key names ccxray's token."""
    return unquote_plus(raw_key).strip().casefold() == TOKEN_KEY


def split_token(target: str) -> TargetToken:
    """Find every token pair in ``target``'s query and cut them out.

    The remaining pairs keep their bytes and separators; a query left empty
    is dropped along with its ``?``.
    """
    path, sep, query = target.partition("?")
    if not sep:
        return TargetToken((), target)
    pieces = _SEPARATOR.split(query)  # [pair, sep, pair, sep, pair, ...]
    values: list[str] = []
    kept: list[str] = []
    for index in range(0, len(pieces), 2):
        key, _, value = pieces[index].partition("=")
        if is_token_key(key):
            values.append(unquote_plus(value))
            continue
        if kept:
            kept.append(pieces[index - 1])
        kept.append(pieces[index])
    if not values:
        return TargetToken((), target)
    rest = "".join(kept)
    return TargetToken(tuple(values), path + ("?" + rest if rest else ""))
