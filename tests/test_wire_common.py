"""Helpers shared by the wire parsers (ccxray/wire/__init__.py): event unwrapping and titles."""

from __future__ import annotations

import pytest

from ccxray.wire import collapse_title, merge_usage, unwrap_event


@pytest.mark.parametrize(("value", "expected"), [
    ({"event": "message_stop", "data": {"type": "message_stop"}}, {"type": "message_stop"}),
    ({"type": "x", "data": {"type": "x", "v": 1}}, {"type": "x", "v": 1}),
    ({"type": "x", "data": {"type": "y", "v": 1}}, {"type": "x", "data": {"type": "y", "v": 1}}),
    ({"type": "x", "data": "text"}, {"type": "x", "data": "text"}),
    ({"type": "x", "data": {"type": "x"}, "more": 1}, {"type": "x", "data": {"type": "x"}, "more": 1}),
    ({"type": "x"}, {"type": "x"}),
    ("[DONE]", "[DONE]"),
])
def test_unwrap_event(value: object, expected: object) -> None:
    assert unwrap_event(value) == expected


def test_titles_are_collapsed_and_cut_at_80_characters() -> None:
    assert collapse_title("  say \n\t hi  ") == "say hi"
    assert collapse_title(" \n ") is None
    exact = "a" * 80
    assert collapse_title(exact) == exact
    cut = collapse_title("b" * 81)
    assert cut == "b" * 79 + "…" and len(cut) == 80
    assert collapse_title("word " * 30) == ("word " * 16).rstrip()[:79].rstrip() + "…"


def test_merge_usage() -> None:
    base = {"input_tokens": 5, "details": {"cached": 1, "x": 2}}
    assert merge_usage(base, None) == base
    assert merge_usage(None, {"output_tokens": 3}) == {"output_tokens": 3}
    assert merge_usage(base, {"input_tokens": None, "output_tokens": 3, "details": {"cached": 4}}) == {
        "input_tokens": 5, "output_tokens": 3, "details": {"cached": 4, "x": 2}}
