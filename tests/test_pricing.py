"""The bundled price table, model matching and the cost of a call."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxray.pricing import PriceTable, parse_row

TABLE = PriceTable.load()
OFFICIAL_HOSTS = ("https://platform.claude.com/", "https://docs.anthropic.com/", "https://developers.openai.com/",
                  "https://platform.openai.com/", "https://openai.com/")


def test_bundled_table_is_well_formed() -> None:
    doc = json.loads(resources.files("ccxray").joinpath("prices.json").read_text(encoding="utf-8"))
    assert doc["currency"] == "USD" and doc["unit"] == "per_million_tokens"
    assert TABLE.warnings == [] and TABLE.updated == doc["updated"]
    assert len(TABLE.rows) == len(doc["models"])
    for raw in doc["models"]:
        assert raw["provider"] in ("anthropic", "openai")
        assert raw["source"].startswith("https://") and raw["date"] and raw["match"] == raw["match"].lower()
        assert raw["output"] >= raw["input"] > 0
        assert raw["source"].startswith(OFFICIAL_HOSTS), raw["match"]
        assert isinstance(raw.get("note", ""), str)
        long = raw.get("longContext")
        if long is not None:
            assert long["threshold"] > 0 and long["input"] >= raw["input"] and long["output"] >= raw["output"]


def test_long_context_rows_parse_completely() -> None:
    for row in TABLE.rows:
        assert (row.long_rates is None) == (row.long_threshold is None), row.match


def test_matches_are_unique_per_provider() -> None:
    keys = [(row.provider, row.match) for row in TABLE.rows]
    assert len(keys) == len(set(keys))


def test_every_row_finds_itself() -> None:
    for row in TABLE.rows:
        assert TABLE.find(row.provider, row.match) is row


@pytest.mark.parametrize(("model", "match"), [
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-sonnet-4-0", "claude-sonnet-4-0"),
    ("claude-opus-4-20250514", "claude-opus-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
    ("claude-sonnet-4-5-20250929[1m]", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
    ("gpt-5", "gpt-5"),
    ("GPT-5", "gpt-5"),
    ("gpt-5-2025-08-07", "gpt-5"),
    ("gpt-5-mini", "gpt-5-mini"),
    ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
    ("gpt-5-nano", "gpt-5-nano"),
    ("gpt-5-codex", "gpt-5-codex"),
    ("gpt-5.1", "gpt-5.1"),
    ("gpt-5.1-2025-11-13", "gpt-5.1"),
    ("gpt-5.1-codex", "gpt-5.1-codex"),
    ("gpt-4.1-2025-04-14", "gpt-4.1"),
    ("gpt-4.1-mini", "gpt-4.1-mini"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("o3-2025-04-16", "o3"),
    ("o4-mini", "o4-mini"),
    # ids current clients send (Claude Code 2.1, Codex 0.169, SDKs)
    ("claude-opus-4-8", "claude-opus-4-8"),
    ("claude-opus-4-8[1m]", "claude-opus-4-8"),
    ("claude-opus-4-7", "claude-opus-4-7"),
    ("claude-opus-4-6", "claude-opus-4-6"),
    ("claude-opus-5", "claude-opus-5"),
    ("claude-opus-5-5", "claude-opus-5-5"),
    ("claude-sonnet-4-6", "claude-sonnet-4-6"),
    ("claude-sonnet-5", "claude-sonnet-5"),
    ("claude-sonnet-5-5", "claude-sonnet-5-5"),
    ("claude-haiku-4-5", "claude-haiku-4-5"),
    ("claude-haiku-5-5", "claude-haiku-5-5"),
    ("claude-fable-5", "claude-fable-5"),
    ("claude-fable-5-1", "claude-fable-5-1"),
    ("gpt-5.5", "gpt-5.5"),
    ("gpt-5.5-2026-04-23", "gpt-5.5"),
    ("gpt-5.4", "gpt-5.4"),
    ("gpt-5.4-mini", "gpt-5.4-mini"),
    ("gpt-5.4-nano", "gpt-5.4-nano"),
    ("gpt-5.6", "gpt-5.6"),
    ("gpt-5.6-sol", "gpt-5.6-sol"),
    ("gpt-5.6-terra", "gpt-5.6-terra"),
    ("gpt-5.6-luna", "gpt-5.6-luna"),
    ("gpt-6.2-sol", "gpt-6.2-sol"),
])
def test_matching(model: str, match: str) -> None:
    row = TABLE.find(None, model)
    assert row is not None and row.match == match


@pytest.mark.parametrize("model", [
    "gpt-5-pro", "gpt-5.1-codex-mini", "gpt-5.1-codex-max", "gpt-5-chat", "gpt-4o-audio-preview",
    "o3-mini", "o3-pro", "claude-sonnet-45", "gpt-5-1", "gpt-50", "gpt-5-2025", "claude-opus-4-20250514-v1:0",
    "gpt-5.5-pro", "gpt-5.2", "gpt-5.3-codex", "gpt-5.4-pro", "gpt-6.2-sol-fast", "claude-opus-4-9", "claude-opus-5-6",
    "claude-fable-5-2", "claude-mythos-5", "claude-haiku-5", "", "x",
])
def test_no_match_for_other_families(model: str) -> None:
    assert TABLE.find(None, model) is None


@pytest.mark.parametrize(("model", "family"), [
    ("gpt-5.5", "gpt-5"), ("gpt-5.5-2026-04-23", "gpt-5"), ("gpt-5.4-mini", "gpt-5.4"), ("gpt-5.6-sol", "gpt-5.6"),
    ("claude-opus-4-8", "claude-opus-4"), ("claude-opus-4-8-20260528", "claude-opus-4"),
    ("claude-opus-5-5", "claude-opus-5"), ("claude-sonnet-5-5", "claude-sonnet-5"), ("claude-fable-5-1", "claude-fable-5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4"),
])
def test_family_row_never_prices_another_model(model: str, family: str) -> None:
    family_row = parse_row({"match": family, "input": 1, "output": 1})
    assert family_row is not None and PriceTable([family_row]).find(None, model) is None
    row = TABLE.find(None, model)
    assert row is not None and row.match != family


def test_new_models_are_not_priced_as_their_family() -> None:
    opus48, opus4 = TABLE.find("anthropic", "claude-opus-4-8"), TABLE.find("anthropic", "claude-opus-4")
    gpt55, gpt5 = TABLE.find("openai", "gpt-5.5"), TABLE.find("openai", "gpt-5")
    assert opus48 is not None and opus4 is not None and opus48.rates.input == 5.0 and opus4.rates.input == 15.0
    assert gpt55 is not None and gpt5 is not None and gpt55.rates.input == 5.0 and gpt5.rates.input == 1.25


@pytest.mark.parametrize(("provider", "model", "usage", "total"), [
    # Claude Code default: 1M uncached in, 1M out, 1M cache read, 1M 5m write, 1M 1h write
    ("anthropic", "claude-opus-4-8", {"input_tokens": 1_000_000, "output_tokens": 1_000_000,
                                      "cache_read_input_tokens": 1_000_000, "cache_creation_input_tokens": 2_000_000,
                                      "cache_creation": {"ephemeral_5m_input_tokens": 1_000_000,
                                                         "ephemeral_1h_input_tokens": 1_000_000}}, 46.75),
    ("anthropic", "claude-haiku-4-5-20251001", {"input_tokens": 1_000_000, "output_tokens": 1_000_000}, 6.0),
    ("anthropic", "claude-opus-5-5", {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 1_000_000}, 0.2),
    ("anthropic", "claude-fable-5-1", {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 1_000_000}, 0.25),
    ("openai", "gpt-5.5", {"input_tokens": 1_000_000, "output_tokens": 1_000_000}, 35.0),
    ("openai", "gpt-5.5-2026-04-23", {"input_tokens": 1_000_000, "output_tokens": 1_000_000}, 35.0),
    ("openai", "gpt-5.4-mini", {"input_tokens": 1_000_000, "output_tokens": 1_000_000}, 5.25),
    ("openai", "gpt-5.4-nano", {"input_tokens": 1_000_000, "input_tokens_details": {"cached_tokens": 1_000_000}}, 0.02),
])
def test_current_client_ids_get_a_cost(provider: str, model: str, usage: dict[str, object], total: float) -> None:
    cost, note = TABLE.cost(provider, model, usage)
    assert note is None and cost is not None and cost["total"] == total


def test_openai_long_context_tier_applies_past_272k() -> None:
    short, _ = TABLE.cost("openai", "gpt-6.2-sol", {"input_tokens": 272_000, "output_tokens": 1_000_000})
    long, _ = TABLE.cost("openai", "gpt-6.2-sol", {"input_tokens": 272_001, "output_tokens": 1_000_000,
                                                   "input_tokens_details": {"cached_tokens": 100_000}})
    assert short is not None and short["input"] == 0.544 and short["output"] == 10.0
    assert long is not None and long["input"] == round(172_001 * 4 / 1e6, 6) and long["cacheRead"] == 0.02
    assert long["output"] == 15.0


def test_provider_filter() -> None:
    assert TABLE.find("anthropic", "gpt-5") is None
    assert TABLE.find("openai", "gpt-5") is not None


def test_anthropic_cost_with_cache() -> None:
    usage = {"input_tokens": 1200, "output_tokens": 42, "cache_creation_input_tokens": 500,
             "cache_read_input_tokens": 200}
    cost, note = TABLE.cost("anthropic", "claude-sonnet-4-20250514", usage)
    assert note is None
    assert cost == {"input": 0.0036, "output": 0.00063, "cacheRead": 0.00006, "cacheWrite": 0.001875,
                    "total": 0.006165, "currency": "USD"}


def test_anthropic_cache_write_split_5m_1h() -> None:
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 3_000_000,
             "cache_creation": {"ephemeral_5m_input_tokens": 1_000_000, "ephemeral_1h_input_tokens": 1_000_000}}
    cost, _ = TABLE.cost("anthropic", "claude-opus-4-5-20251101", usage)
    # 1M at 5m (6.25) + 1M at 1h (10) + 1M not split, priced as 5m (6.25)
    assert cost is not None and cost["cacheWrite"] == 22.5 and cost["total"] == 22.5


def test_sonnet_long_context_rates() -> None:
    short, _ = TABLE.cost("anthropic", "claude-sonnet-4-5", {"input_tokens": 200_000, "output_tokens": 1000})
    long, _ = TABLE.cost("anthropic", "claude-sonnet-4-5", {"input_tokens": 100_000, "output_tokens": 1000,
                                                           "cache_read_input_tokens": 100_001})
    assert short is not None and short["input"] == 0.6 and short["output"] == 0.015
    assert long is not None and long["input"] == 0.6 and long["output"] == 0.0225 and long["cacheRead"] == 0.060001


def test_openai_responses_cost_subtracts_cached_tokens() -> None:
    usage = {"input_tokens": 16281, "input_tokens_details": {"cached_tokens": 3456}, "output_tokens": 6,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 16287}
    cost, note = TABLE.cost("openai", "gpt-5-2025-08-07", usage)
    assert note is None and cost is not None
    assert cost["input"] == round(12825 * 1.25 / 1e6, 6)
    assert cost["cacheRead"] == round(3456 * 0.125 / 1e6, 6)
    assert cost["output"] == 0.00006 and cost["cacheWrite"] == 0.0


def test_openai_chat_cost() -> None:
    usage = {"prompt_tokens": 1000, "prompt_tokens_details": {"cached_tokens": 400}, "completion_tokens": 100}
    cost, _ = TABLE.cost("openai", "gpt-4o-mini", usage)
    assert cost is not None
    assert (cost["input"], cost["cacheRead"], cost["output"]) == (0.00009, 0.00003, 0.00006)


def test_model_without_cache_discount_prices_cached_as_input() -> None:
    cost, _ = TABLE.cost("openai", "gpt-4o-2024-05-13",
                         {"input_tokens": 1_000_000, "input_tokens_details": {"cached_tokens": 500_000}})
    assert cost is not None and cost["input"] == 2.5 and cost["cacheRead"] == 2.5


@pytest.mark.parametrize(("model", "usage", "words"), [
    ("gpt-5.5-pro", {"input_tokens": 1}, ["'gpt-5.5-pro'", "2026-11-24"]),
    ("gpt-5", None, ["no usage"]),
    ("gpt-5", {}, ["no usage"]),
    ("gpt-5", {"input_tokens": "many"}, ["no usage"]),
    (None, {"input_tokens": 1}, ["no model"]),
])
def test_no_cost_says_why(model: str | None, usage: dict[str, object] | None, words: list[str]) -> None:
    cost, note = TABLE.cost("openai", model, usage)
    assert cost is None and note is not None and all(w in note for w in words)


def test_override_replaces_and_adds_rows() -> None:
    override = json.dumps({"updated": "2099-01-01", "models": [
        {"match": "gpt-5.5-pro", "provider": "openai", "input": 5, "output": 30, "cacheRead": 0.5},
        {"match": "gpt-5", "provider": "openai", "input": 2, "output": 20},
        {"match": "broken"},
    ]})
    table = PriceTable.load(override)
    assert table.updated == "2099-01-01" and len(table.rows) == len(TABLE.rows) + 1
    assert len(table.warnings) == 1 and "row 2" in table.warnings[0]
    cost, _ = table.cost("openai", "gpt-5.5-pro", {"input_tokens": 1_000_000, "output_tokens": 1_000_000})
    assert cost is not None and cost["total"] == 35.0
    gpt5 = table.find("openai", "gpt-5")
    assert gpt5 is not None and gpt5.rates.input == 2.0
    mini = table.find("openai", "gpt-5-mini")
    assert mini is not None and mini.rates.input == 0.25


def test_override_as_bare_list_and_tie_goes_to_override() -> None:
    table = PriceTable.load(json.dumps([{"match": "gpt-5", "input": 9, "output": 9}]))
    row = table.find("openai", "gpt-5")
    assert row is not None and row.rates.input == 9.0 and row.provider is None


@pytest.mark.parametrize("text", ["{nope", "[]", "null", '{"models": 5}', '{"models": [1, "x", null]}'])
def test_bad_override_never_raises(text: str) -> None:
    table = PriceTable.load(text)
    assert len(table.rows) == len(TABLE.rows)


@pytest.mark.parametrize("raw", [
    {"match": "m", "input": -1, "output": 1}, {"match": "m", "input": True, "output": 1},
    {"match": " ", "input": 1, "output": 1}, {"match": "m", "input": 10 ** 400, "output": 1}, None,
])
def test_invalid_rows(raw: object) -> None:
    assert parse_row(raw) is None


def test_context_window() -> None:
    assert TABLE.context_window("gpt-4.1-mini-2025-04-14") == 1047576
    assert TABLE.context_window("claude-sonnet-4-5-20250929") == 200000
    assert TABLE.context_window("claude-opus-4-8") == 1_000_000
    assert TABLE.context_window("gpt-5.5-2026-04-23") == 1_000_000
    assert TABLE.context_window("claude-opus-4-7") is None
    assert TABLE.context_window("gpt-5.5-pro") is None and TABLE.context_window(None) is None


numbers = st.one_of(st.integers(-10, 10**9), st.floats(allow_nan=True), st.text(max_size=3), st.none(),
                    st.booleans())
usages = st.dictionaries(
    st.sampled_from(["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                     "prompt_tokens", "completion_tokens", "total_tokens"]),
    numbers, max_size=6,
).flatmap(lambda base: st.fixed_dictionaries({}, optional={
    "input_tokens_details": st.dictionaries(st.just("cached_tokens"), numbers),
    "cache_creation": st.dictionaries(st.sampled_from(["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"]),
                                      numbers),
}).map(lambda extra: {**base, **extra}))


@given(st.sampled_from(["anthropic", "openai"]),
       st.sampled_from(["claude-sonnet-4-5", "claude-opus-4-1-20250805", "gpt-5", "gpt-4o-mini", "o3"]), usages)
def test_cost_never_raises_and_adds_up(provider: str, model: str, usage: dict[str, object]) -> None:
    cost, note = TABLE.cost(provider, model, usage)
    assert (cost is None) != (note is None)
    if cost is not None:
        values = [cost[k] for k in ("input", "output", "cacheRead", "cacheWrite", "total")]
        assert all(isinstance(v, float) and v >= 0 for v in values)
        parts = [float(str(v)) for v in values]
        assert math.isclose(sum(parts[:4]), parts[4], rel_tol=1e-9, abs_tol=5e-6)


def test_absurd_token_counts_give_a_note_not_inf() -> None:
    cost, note = TABLE.cost("anthropic", "claude-sonnet-4-5", {"input_tokens": 1e308, "output_tokens": 1e308})
    assert cost is None and note == "usage token counts out of range"
