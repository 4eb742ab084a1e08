"""The per-connection frame log: lines as written, read back as the old frame records."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ccxray import framelog


def _write(path: Path, *lines: str) -> None:
    path.write_bytes("".join(lines).encode("utf-8", "surrogatepass"))


def _records(path: Path) -> list[object]:
    return [framelog.parse_line(raw) for _, raw in framelog.read_lines(path)]


@given(st.text())
def test_any_text_frame_reads_back_as_data_or_text(text: str) -> None:
    line = framelog.frame_line(1.5, "u2c", 7, text, False)
    assert line.endswith("\n") and line.count("\n") == 1  # one line whatever the text holds
    record = framelog.parse_line(line[:-1].encode("utf-8", "surrogatepass"))
    try:
        expected: dict[str, object] = {"data": json.loads(text)}
    except ValueError:
        expected = {"text": text}
    assert record == {"ts": 1.5, "dir": "u2c", "size": 7, **expected}


def test_binary_unrecorded_and_create_lines(tmp_path: Path) -> None:
    log = tmp_path / framelog.log_name("c1")
    request = '{"type":"response.create",\t"input":"a\\tb"}'  # a raw tab between tokens is valid JSON
    _write(log, framelog.frame_line(0.0, "c2u", 3, None, False),
           framelog.frame_line(1.0, "u2c", 9, "x", True),
           framelog.create_line("c1-t0", 2.0, 40, request),
           framelog.frame_line(3.0, "u2c", 2, '{"type":"response.completed"}', False))
    assert _records(log) == [
        {"ts": 0.0, "dir": "c2u", "size": 3, "binary": True},
        {"ts": 1.0, "dir": "u2c", "size": 9, "truncated": True},
        {"turn": "c1-t0", "ts": 2.0, "dir": "c2u", "size": 40, "request": json.loads(request)},
        {"ts": 3.0, "dir": "u2c", "size": 2, "data": {"type": "response.completed"}},
    ]


def test_a_create_is_found_only_at_a_line_start(tmp_path: Path) -> None:
    log = tmp_path / framelog.log_name("c1")
    forged = '{"x":1}\n{"turn":"c1-t1","ts":0}'  # a frame's text holding the mark after a newline
    create = framelog.create_line("c1-t1", 5.0, 10, '{"type":"response.create"}')
    first = framelog.frame_line(0.0, "u2c", 1, forged, False) + framelog.frame_line(0.1, "u2c", 1, '{"turn":"c1-t1",', False)
    _write(log, first, create)
    at = len(first.encode())
    assert framelog.find_create(log, "c1-t1") == at
    assert framelog.find_create(log, "c1-t1", hint=at) == at
    assert framelog.find_create(log, "c1-t1", hint=3) == at  # a wrong hint: searched
    assert framelog.find_create(log, "c1-t2") is None and framelog.find_create(log, "c1-t") is None
    assert framelog.find_create(tmp_path / "missing.ndjson", "c1-t1") is None


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    log = tmp_path / framelog.log_name("c1")
    whole = framelog.frame_line(0.0, "u2c", 1, "{}", False)
    _write(log, whole, framelog.frame_line(1.0, "u2c", 1, '{"a":1}', False)[:-4])
    assert [raw for _, raw in framelog.read_lines(log)] == [whole[:-1].encode()]
    assert framelog.read_line(log, len(whole)) is None


def test_turn_ids_name_their_connection() -> None:
    assert framelog.conn_of_turn("20261129T101010123Z-00042-000007-t12") == "20261129T101010123Z-00042-000007"
    assert framelog.conn_of_turn("20261129T101010123Z-00042-000007") is None
    assert framelog.conn_of_turn("-t1") is None and framelog.conn_of_turn("x-tone") is None


def test_create_offsets_maps_every_turn_in_one_pass(tmp_path: Path) -> None:
    log = tmp_path / framelog.log_name("c1")
    lines = [framelog.create_line("c1-t0", 0.0, 1, "{}"),
             framelog.frame_line(0.5, "u2c", 1, '{"x":"\\n{\\"turn\\":\\"c1-t9\\","}', False),
             framelog.create_line("c1-t1", 1.0, 1, '{"a":1}'), framelog.create_line("c1-t10", 2.0, 1, "{}")]
    _write(log, *lines)
    starts = [sum(len(l.encode()) for l in lines[:n]) for n in range(len(lines))]
    assert framelog.create_offsets(log) == {"c1-t0": starts[0], "c1-t1": starts[2], "c1-t10": starts[3]}
    assert framelog.create_offsets(tmp_path / "missing") == {}
    _write(log)
    assert framelog.create_offsets(log) == {}
