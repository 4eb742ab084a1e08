"""The index read in byte ranges (``read_index(start, stop)``, ``usage`` past its parallel threshold)
and the line parser's end check.

A file cut at any offsets must yield every valid line exactly once: a line
belongs to the range its first byte falls in, whether a cut lands inside it,
exactly on its first byte, between ``\\r`` and ``\\n`` or at the very end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccxray.logcli import summarise, summarise_file
from ccxray.store import ReadStats, iter_index, read_index


def line(i: int, pad: int = 0) -> dict[str, Any]:
    return {"id": f"c{i}", "kind": "call", "model": f"m{i % 3}", "sessionId": f"s{i % 2}", "cwd": "/p",
            "usage": {"input_tokens": i, "output_tokens": 2 * i}, "pad": "x" * pad}


def write(path: Path, lines: list[dict[str, Any]], eol: bytes = b"\n", torn: bytes = b"") -> bytes:
    data = b"".join(json.dumps(l).encode() + eol for l in lines) + torn
    path.write_bytes(data)
    return data


def read_in_ranges(path: Path, cuts: list[int], stats: ReadStats | None = None) -> list[dict[str, Any]]:
    size = path.stat().st_size
    bounds = [0, *sorted(cuts), size]
    found: list[dict[str, Any]] = []
    for start, stop in zip(bounds, bounds[1:]):
        found += read_index(path, stats, start=start, stop=stop)
    return found


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_one_cut_at_every_offset(tmp_path: Path, eol: bytes) -> None:
    lines = [line(i, pad=i % 4) for i in range(6)]
    data = write(tmp_path / "index.ndjson", lines, eol)
    for cut in range(len(data) + 1):
        assert read_in_ranges(tmp_path / "index.ndjson", [cut]) == lines, f"cut at byte {cut}"


def test_two_cuts_at_every_pair_of_offsets(tmp_path: Path) -> None:
    lines = [line(i) for i in range(3)]
    data = write(tmp_path / "index.ndjson", lines, b"\r\n")
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1, 7):
            assert read_in_ranges(tmp_path / "index.ndjson", [first, second]) == lines, (first, second)


def test_a_cut_exactly_at_a_line_start_gives_the_line_to_the_later_range(tmp_path: Path) -> None:
    lines = [line(0), line(1), line(2)]
    data = write(tmp_path / "index.ndjson", lines)
    boundary = data.index(b"\n") + 1  # first byte of the second line
    path = tmp_path / "index.ndjson"
    assert list(read_index(path, start=0, stop=boundary)) == lines[:1]
    assert list(read_index(path, start=boundary, stop=len(data))) == lines[1:]
    # one byte earlier the second line still starts in the later range; one later it starts in the earlier
    assert list(read_index(path, start=0, stop=boundary - 1)) == lines[:1]
    assert list(read_index(path, start=0, stop=boundary + 1)) == lines[:2]
    assert list(read_index(path, start=boundary + 1, stop=len(data))) == lines[2:]


def test_cut_between_cr_and_lf(tmp_path: Path) -> None:
    lines = [line(0), line(1)]
    data = write(tmp_path / "index.ndjson", lines, b"\r\n")
    cut = data.index(b"\r\n") + 1  # after the \r, before the \n
    assert read_in_ranges(tmp_path / "index.ndjson", [cut]) == lines
    assert list(read_index(tmp_path / "index.ndjson", start=cut)) == lines[1:]


@pytest.mark.parametrize("torn", [b'{"id": "torn", "kind": "ca', b"{", b"\x00\x00"])
def test_a_torn_last_line_is_skipped_in_whichever_range_holds_it(tmp_path: Path, torn: bytes) -> None:
    lines = [line(i) for i in range(4)]
    data = write(tmp_path / "index.ndjson", lines, torn=torn)
    for cut in range(len(data) + 1):
        stats = ReadStats()
        assert read_in_ranges(tmp_path / "index.ndjson", [cut], stats) == lines, f"cut at byte {cut}"
        assert (stats.lines, stats.skipped) == (4, 1)


def test_ranges_past_the_end_and_empty_ranges(tmp_path: Path) -> None:
    lines = [line(0), line(1)]
    data = write(tmp_path / "index.ndjson", lines)
    path = tmp_path / "index.ndjson"
    assert list(read_index(path, start=len(data), stop=len(data) + 10)) == []
    assert list(read_index(path, start=5, stop=5)) == []
    assert list(read_index(tmp_path / "missing.ndjson", start=3, stop=9)) == []


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pads=st.lists(st.integers(0, 40), min_size=0, max_size=12), crlf=st.booleans(),
       torn=st.sampled_from([b"", b'{"id": "t', b"\r\n", b"\n\n"]),
       cut_fractions=st.lists(st.floats(0, 1), max_size=6))
def test_any_cuts_read_every_line_once(tmp_path: Path, pads: list[int], crlf: bool, torn: bytes,
                                      cut_fractions: list[float]) -> None:
    lines = [line(i, pad) for i, pad in enumerate(pads)]
    data = write(tmp_path / "index.ndjson", lines, b"\r\n" if crlf else b"\n", torn)
    cuts = [int(f * len(data)) for f in cut_fractions]
    assert read_in_ranges(tmp_path / "index.ndjson", cuts) == lines


# ---------------------------------------------------------------- usage over byte ranges, in processes


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_usage_in_parallel_ranges_equals_one_pass(tmp_path: Path, workers: int) -> None:
    lines = [line(i, pad=(i * 7) % 23) for i in range(40)]
    lines.insert(5, {"id": "k", "kind": "connection", "usage": {"input_tokens": 999}})  # not counted
    write(tmp_path / "index.ndjson", lines, b"\r\n", torn=b'{"id": "torn"')
    path = tmp_path / "index.ndjson"
    one_pass = summarise(read_index(path), None, None, None).to_json()
    parallel = summarise_file(path, None, None, None, parallel_min_bytes=0, workers=workers).to_json()
    assert parallel == one_pass
    assert one_pass["total"]["calls"] == 40 and one_pass["total"]["input"] == sum(range(40))
    by_session = summarise_file(path, None, "s1", None, parallel_min_bytes=0, workers=workers).to_json()
    assert by_session["total"]["calls"] == 20


@pytest.mark.parametrize("workers", [2, 4, 5, 8])
def test_usage_ranges_cut_exactly_at_line_starts(tmp_path: Path, workers: int) -> None:
    """40 lines of equal length: every range bound falls on the first byte of a line."""
    lines = [line(i) for i in range(10, 50)]
    assert len({len(json.dumps(l)) for l in lines}) == 1
    write(tmp_path / "index.ndjson", lines)
    report = summarise_file(tmp_path / "index.ndjson", None, None, None, parallel_min_bytes=0, workers=workers)
    assert report.to_json()["total"]["calls"] == 40
    assert report.to_json()["total"]["input"] == sum(range(10, 50))


def test_usage_stays_in_process_below_the_threshold(tmp_path: Path) -> None:
    write(tmp_path / "index.ndjson", [line(1)])
    report = summarise_file(tmp_path / "index.ndjson", None, None, None, parallel_min_bytes=10**9, workers=4)
    assert report.to_json()["total"]["calls"] == 1
    assert summarise_file(tmp_path / "none.ndjson", None, None, None, parallel_min_bytes=0).to_json()["total"][
        "calls"] == 0


# ---------------------------------------------------------------- the parser's end check


@pytest.mark.parametrize("text", [
    '{"id": "a"} trailing',
    '{"id": "a"}{"id": "b"}',
    '{"id": "a"},',
    '{"id": "a"} ]',
    '{"id": "a"}\x00',
    '["not", "an", "object"]',
    '"just a string"',
    "{",
    "{" * 5000 + "}" * 5000,
])
def test_lines_with_anything_after_or_besides_one_object_are_skipped(text: str) -> None:
    stats = ReadStats()
    assert list(iter_index([text, '{"id": "ok"}'], stats)) == [{"id": "ok"}]
    assert (stats.lines, stats.skipped) == (1, 1)


@pytest.mark.parametrize("text", ['{"id": "a"}', '  {"id": "a"}  ', '{"id": "a"}\r\n', b'{"id": "a"}\n', ""])
def test_whitespace_around_an_object_is_fine(text: str | bytes) -> None:
    stats = ReadStats()
    got = list(iter_index([text], stats))
    assert got == ([] if text == "" else [{"id": "a"}]) and stats.skipped == 0
