"""Token and cost totals over index lines (shared by `usage`, the session list and restore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TOKEN_KEYS = ("input", "output", "cacheRead", "cacheWrite")


def _num(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def usage_tokens(usage: object) -> dict[str, int]:
    """Provider usage -> {input, output, cacheRead, cacheWrite} (0 when absent).

    Anthropic's input_tokens excludes cache reads and writes; OpenAI's
    input_tokens includes its cached_tokens, reported here as cacheRead too.
    """
    u = usage if isinstance(usage, dict) else {}
    details = u.get("input_tokens_details") or u.get("prompt_tokens_details") or {}
    cached = _num(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return {
        "input": _num(u.get("input_tokens", u.get("prompt_tokens"))),
        "output": _num(u.get("output_tokens", u.get("completion_tokens"))),
        "cacheRead": _num(u.get("cache_read_input_tokens")) + cached,
        "cacheWrite": _num(u.get("cache_creation_input_tokens")),
    }


def line_cost(line: dict[str, Any]) -> float | None:
    """The line's total cost in USD, or None when it has no price."""
    cost = line.get("cost")
    total = cost.get("total") if isinstance(cost, dict) else None
    return float(total) if isinstance(total, (int, float)) else None


def counts_usage(line: dict[str, Any]) -> bool:
    """Connection lines summarise sockets; their turns carry the usage."""
    return line.get("kind") != "connection"


@dataclass
class Totals:
    """Calls, cost and tokens added up."""

    calls: int = 0
    cost: float = 0.0
    unpriced: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KEYS, 0))

    def add(self, line: dict[str, Any]) -> None:
        self.calls += 1
        cost = line_cost(line)
        if cost is not None:
            self.cost = round(self.cost + cost, 6)
        elif line.get("usage"):
            self.unpriced += 1
        for key, value in usage_tokens(line.get("usage")).items():
            self.tokens[key] += value

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "cost": self.cost, "unpricedCalls": self.unpriced, **self.tokens}
