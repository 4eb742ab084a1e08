"""Token and cost totals over index lines (shared by `usage`, the session list and restore).

These run once per line of a large log, so they are written for speed:
tokens travel as a 4-tuple (input, output, cacheRead, cacheWrite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TOKEN_KEYS = ("input", "output", "cacheRead", "cacheWrite")
Tokens = tuple[int, int, int, int]
NO_TOKENS: Tokens = (0, 0, 0, 0)


def _num(value: object) -> int:
    """A token count; anything else (bool, string, NaN, infinity) counts 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0


def token_tuple(usage: object) -> Tokens:
    """Provider usage -> (input, output, cacheRead, cacheWrite), 0 where absent.

    Anthropic's input_tokens excludes cache reads and writes; OpenAI's
    input_tokens includes its cached_tokens, reported as cacheRead too.
    """
    if not isinstance(usage, dict):
        return NO_TOKENS
    get = usage.get
    inp = get("input_tokens")
    out = get("output_tokens")
    details = get("input_tokens_details")
    if inp is None:
        inp = get("prompt_tokens")
        out = get("completion_tokens")
        details = get("prompt_tokens_details")
    cached = _num(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return (_num(inp), _num(out), _num(get("cache_read_input_tokens")) + cached,
            _num(get("cache_creation_input_tokens")))


def usage_tokens(usage: object) -> dict[str, int]:
    """Provider usage -> {input, output, cacheRead, cacheWrite} (0 when absent)."""
    return dict(zip(TOKEN_KEYS, token_tuple(usage)))


def line_cost(line: dict[str, Any]) -> float | None:
    """The line's total cost in USD, or None when it has no (finite) price."""
    cost = line.get("cost")
    total = cost.get("total") if isinstance(cost, dict) else None
    if isinstance(total, (int, float)) and not isinstance(total, bool) and math.isfinite(total):
        return float(total)
    return None


def figures(line: dict[str, Any]) -> tuple[float | None, Tokens, bool]:
    """(cost, tokens, has usage) of one line."""
    usage = line.get("usage")
    return line_cost(line), token_tuple(usage), bool(usage)


def counts_usage(line: dict[str, Any]) -> bool:
    """Connection lines summarise sockets; their turns carry the usage."""
    return line.get("kind") != "connection"


@dataclass
class Totals:
    """Calls, cost and tokens added up."""

    calls: int = 0
    cost: float = 0.0
    unpriced: int = 0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def add(self, line: dict[str, Any]) -> None:
        self.add_figures(*figures(line))

    def add_figures(self, cost: float | None, tokens: Tokens, has_usage: bool) -> None:
        """Add one line's figures (see ``figures``), computed once for several totals."""
        self.calls += 1
        if cost is not None:
            self.cost += cost
        elif has_usage:
            self.unpriced += 1
        self.input += tokens[0]
        self.output += tokens[1]
        self.cache_read += tokens[2]
        self.cache_write += tokens[3]

    def merge(self, other: "Totals") -> None:
        self.calls += other.calls
        self.cost += other.cost
        self.unpriced += other.unpriced
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write

    @property
    def tokens(self) -> dict[str, int]:
        return dict(zip(TOKEN_KEYS, (self.input, self.output, self.cache_read, self.cache_write)))

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "cost": round(self.cost, 6), "unpricedCalls": self.unpriced, **self.tokens}
