"""Token prices and the cost of one call.

The bundled `prices.json` holds USD per million tokens for the models whose
public prices were certain when it was written; rows of an override file of
the same shape replace or add rows. A model the table does not know has no
cost (and a note saying so), never a guessed one.

Matching: a row's `match` is an exact model id, or a family id that also
matches its dated snapshots (`claude-sonnet-4-5-20250929`, `gpt-5-2025-08-07`,
`...@20250929`) and `-latest`, never another family (`gpt-5` does not match
`gpt-5-mini` or `gpt-5.5`). The longest matching `match` wins; on a tie the
later row (an override) wins.

Usage shapes: Anthropic (`input_tokens` uncached, `cache_read_input_tokens`,
`cache_creation_input_tokens` with an optional `cache_creation` split into
5-minute and 1-hour writes), OpenAI Responses (`input_tokens` including
`input_tokens_details.cached_tokens`; `output_tokens` including reasoning)
and Chat Completions (`prompt_tokens`, `prompt_tokens_details.cached_tokens`,
`completion_tokens`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Mapping

from .wire import as_dict, as_list, get_dict, get_str, loads_json

PER_TOKENS = 1_000_000
COST_DECIMALS = 6
_SNAPSHOT_SUFFIX = re.compile(r"(?:-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8}|-latest)?(?:\[1m\])?")
_RATE_KEYS = ("input", "output", "cacheRead", "cacheWrite5m", "cacheWrite1h")
_EXACT_INTS = 1 << 53


@dataclass(frozen=True)
class Rates:
    """USD per million tokens; None where the table gives no separate rate."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None


@dataclass(frozen=True)
class PriceRow:
    """One row of the table."""

    match: str
    provider: str | None
    rates: Rates
    context_window: int | None = None
    long_threshold: int | None = None
    long_rates: Rates | None = None
    date: str | None = None
    source: str | None = None

    def matches(self, model: str) -> bool:
        """True for the exact id, or the id plus a snapshot/`-latest` suffix."""
        low = model.strip().lower()
        return low.startswith(self.match) and _SNAPSHOT_SUFFIX.fullmatch(low[len(self.match):]) is not None


def _nonneg(value: object) -> float | None:
    """A finite, non-negative JSON number as float, else None."""
    if type(value) is int and 0 <= value < _EXACT_INTS:  # token counts: the common case, first
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _rates(obj: Mapping[str, object]) -> Rates | None:
    values = [_nonneg(obj.get(key)) for key in _RATE_KEYS]
    if values[0] is None or values[1] is None:
        return None
    return Rates(values[0], values[1], values[2], values[3], values[4])


def _int_or_none(value: object) -> int | None:
    number = _nonneg(value)
    return None if number is None else int(number)


def parse_row(raw: object) -> PriceRow | None:
    """A PriceRow from a JSON row, or None when it lacks match/input/output."""
    obj = as_dict(raw)
    match = get_str(obj, "match")
    rates = None if obj is None else _rates(obj)
    if obj is None or match is None or not match.strip() or rates is None:
        return None
    long = get_dict(obj, "longContext")
    return PriceRow(
        match=match.strip().lower(), provider=get_str(obj, "provider"), rates=rates,
        context_window=_int_or_none(obj.get("contextWindow")),
        long_threshold=None if long is None else _int_or_none(long.get("threshold")),
        long_rates=None if long is None else _rates(long),
        date=get_str(obj, "date"), source=get_str(obj, "source"),
    )


def _tokens(usage: Mapping[str, object], key: str, inner: str | None = None) -> float:
    """The token count at `usage[key]` (or `usage[key][inner]`); 0 when absent or not a number."""
    value = usage.get(key)
    if inner is not None:
        value = value.get(inner) if isinstance(value, dict) else None
    return _nonneg(value) or 0.0


def _has_tokens(usage: Mapping[str, object]) -> bool:
    for key, value in usage.items():  # a loop, not any(generator): this runs for every call
        if key.endswith("_tokens") and _nonneg(value) is not None:
            return True
    return False


@dataclass
class _Counts:
    """Tokens split by how they are priced."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write_5m: float = 0.0
    cache_write_1h: float = 0.0

    @property
    def prompt(self) -> float:
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h


def _anthropic_counts(usage: Mapping[str, object]) -> _Counts:
    created = _tokens(usage, "cache_creation_input_tokens")
    write_5m = _tokens(usage, "cache_creation", "ephemeral_5m_input_tokens")
    write_1h = _tokens(usage, "cache_creation", "ephemeral_1h_input_tokens")
    rest = max(0.0, created - write_5m - write_1h)
    return _Counts(
        input=_tokens(usage, "input_tokens"), output=_tokens(usage, "output_tokens"),
        cache_read=_tokens(usage, "cache_read_input_tokens"),
        cache_write_5m=write_5m + rest, cache_write_1h=write_1h,
    )


def _openai_counts(usage: Mapping[str, object]) -> _Counts:
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        prompt, cached = _tokens(usage, "prompt_tokens"), _tokens(usage, "prompt_tokens_details", "cached_tokens")
        output = _tokens(usage, "completion_tokens")
    else:
        prompt, cached = _tokens(usage, "input_tokens"), _tokens(usage, "input_tokens_details", "cached_tokens")
        output = _tokens(usage, "output_tokens")
    cached = min(cached, prompt)
    return _Counts(input=prompt - cached, output=output, cache_read=cached)


def _priced(counts: _Counts, rates: Rates) -> dict[str, object] | None:
    read = rates.cache_read if rates.cache_read is not None else rates.input
    write_5m = rates.cache_write_5m if rates.cache_write_5m is not None else rates.input
    write_1h = rates.cache_write_1h if rates.cache_write_1h is not None else write_5m
    inp, out = counts.input * rates.input, counts.output * rates.output
    cache_read = counts.cache_read * read
    cache_write = counts.cache_write_5m * write_5m + counts.cache_write_1h * write_1h
    total = inp + out + cache_read + cache_write
    if not math.isfinite(total):
        return None
    return {
        "input": _usd(inp), "output": _usd(out), "cacheRead": _usd(cache_read), "cacheWrite": _usd(cache_write),
        "total": _usd(total), "currency": "USD",
    }


def _usd(per_million: float) -> float:
    """Dollars, rounded to COST_DECIMALS (round() to digits goes through a decimal
    conversion: a part with no tokens, the common case for cache parts, skips it)."""
    return round(per_million / PER_TOKENS, COST_DECIMALS) if per_million else 0.0


def _table_rows(doc: object) -> tuple[list[object], str | None]:
    """(rows, updated) of a price document: `{"models": [...]}` or a bare list of rows."""
    obj = as_dict(doc)
    if obj is not None:
        return as_list(obj.get("models")) or [], get_str(obj, "updated")
    return as_list(doc) or [], None


class PriceTable:
    """The price rows in force: the bundled table with any override layered over it."""

    def __init__(self, rows: list[PriceRow], updated: str | None = None, warnings: list[str] | None = None) -> None:
        self.rows = rows
        self.updated = updated
        self.warnings = warnings or []
        self._found: dict[tuple[str | None, str], PriceRow | None] = {}  # find() runs for every call

    @classmethod
    def load(cls, override_text: str | None = None) -> PriceTable:
        """The bundled `prices.json`, with `override_text`'s rows replacing or adding rows.

        Never raises: an unreadable bundled file or a bad override leaves a note
        in `warnings` (bad rows are skipped one by one).
        """
        table = cls([], None)
        table._add_document(_bundled_text(table.warnings), "bundled prices.json")
        if override_text is not None:
            table._add_document(override_text, "price override")
        return table

    def _add_document(self, text: str | None, label: str) -> None:
        if text is None:
            return
        ok, doc = loads_json(text)
        if not ok:
            self.warnings.append(f"{label}: not valid JSON, ignored")
            return
        raw_rows, updated = _table_rows(doc)
        for index, raw in enumerate(raw_rows):
            row = parse_row(raw)
            if row is None:
                self.warnings.append(f"{label}: row {index} lacks match/input/output, skipped")
            else:
                self._put(row)
        if updated and (self.updated is None or updated > self.updated):
            self.updated = updated

    def _put(self, row: PriceRow) -> None:
        self._found.clear()
        for index, old in enumerate(self.rows):
            if old.match == row.match and old.provider == row.provider:
                self.rows[index] = row
                return
        self.rows.append(row)

    def find(self, provider: str | None, model: str | None) -> PriceRow | None:
        """The longest-matching row for `model` (of `provider`, when given), or None."""
        if not model:
            return None
        key = (provider, model)
        if key not in self._found:
            if len(self._found) > 4096:  # model names come from traffic: keep the memo bounded
                self._found.clear()
            self._found[key] = self._search(provider, model)
        return self._found[key]

    def _search(self, provider: str | None, model: str) -> PriceRow | None:
        best: tuple[int, int, PriceRow] | None = None
        for order, row in enumerate(self.rows):
            if provider and row.provider and row.provider != provider:
                continue
            if row.matches(model) and (best is None or (len(row.match), order) > best[:2]):
                best = (len(row.match), order, row)
        return None if best is None else best[2]

    def cost(self, provider: str, model: str | None, usage: Mapping[str, object] | None,
             ) -> tuple[dict[str, object] | None, str | None]:
        """`({input, output, cacheRead, cacheWrite, total, currency}, None)` in USD, or `(None, reason)`."""
        if usage is None or not _has_tokens(usage):
            return None, "no usage reported"
        if not model:
            return None, "no model reported"
        row = self.find(provider, model)
        if row is None:
            return None, f"no price for model {model!r} in the price table (updated {self.updated or 'unknown'})"
        counts = _anthropic_counts(usage) if provider == "anthropic" else _openai_counts(usage)
        rates = row.rates
        if row.long_rates is not None and row.long_threshold is not None and counts.prompt > row.long_threshold:
            rates = row.long_rates
        cost = _priced(counts, rates)
        return (cost, None) if cost is not None else (None, "usage token counts out of range")

    def context_window(self, model: str | None) -> int | None:
        """The model's context window in tokens, when the table has one."""
        row = self.find(None, model)
        return None if row is None else row.context_window


def _bundled_text(warnings: list[str]) -> str | None:
    try:
        return resources.files("ccxray").joinpath("prices.json").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(f"bundled prices.json unreadable: {exc}")
        return None
