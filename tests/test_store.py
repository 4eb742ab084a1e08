"""The log writer (ccxray/store.py): index lines, torn tails, prune, sidecars, shared files; read_part."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ccxray import store as st
from ccxray.readback import ReadBackError, read_part
from ccxray.store import RawJson, ReadStats, Store, read_index


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "logs")
    yield s
    s.close()


@pytest.mark.parametrize("value", ["abc", "A-Z_0.9", "x" * 128, "20260101T000000Z-1", "a..b"])
def test_safe_ids(value: str) -> None:
    assert st.is_safe_id(value)


@pytest.mark.parametrize("value", ["", ".", "..", "x" * 129, "a/b", "../x", "a b", "a\nb", "abc\n", "é"])
def test_unsafe_ids(value: str) -> None:
    assert not st.is_safe_id(value)


def test_dumps_line_is_one_compact_utf8_line() -> None:
    data = st.dumps_line({"a": "x\ny", "b": "é", "c": [1, 2]})
    assert data == '{"a":"x\\ny","b":"é","c":[1,2]}\n'.encode()
    assert data.count(b"\n") == 1


def test_append_reads_back_and_is_owner_only(store: Store) -> None:
    store.append({"id": "a", "n": 1})
    store.append({"id": "b", "n": 2})
    assert list(read_index(store.index_path)) == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    assert stat.S_IMODE(store.index_path.stat().st_mode) == 0o600
    assert store.shared_dir.is_dir()


def test_a_torn_tail_is_ended_before_the_next_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / st.INDEX_NAME).write_bytes(b'{"id": "old"}\n{"id": "to')
    s = Store(logs)
    s.append({"id": "new"})
    s.close()
    stats = ReadStats()
    assert list(read_index(logs / st.INDEX_NAME, stats)) == [{"id": "old"}, {"id": "new"}]
    assert (stats.lines, stats.skipped) == (2, 1)
    assert (logs / st.INDEX_NAME).read_bytes().endswith(b'{"id": "to\n{"id":"new"}\n')


def test_a_clean_tail_gets_no_extra_newline(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / st.INDEX_NAME).write_bytes(b'{"id": "old"}\n')
    s = Store(logs)
    s.append({"id": "new"})
    s.close()
    assert (logs / st.INDEX_NAME).read_bytes() == b'{"id": "old"}\n{"id":"new"}\n'


def test_rewrite_index_keeps_what_keep_accepts_and_unparseable_lines(store: Store) -> None:
    for i in range(5):
        store.append({"id": f"c{i}", "n": i})
    with open(store.index_path, "ab") as fh:
        fh.write(b"not json\n")
    assert store.rewrite_index(lambda line: line["n"] % 2 == 0) == 2
    assert store.index_path.read_bytes().count(b"not json\n") == 1
    assert [l["n"] for l in read_index(store.index_path)] == [0, 2, 4]
    store.append({"id": "after", "n": 9})  # reopened on the new file
    assert [l["n"] for l in read_index(store.index_path)] == [0, 2, 4, 9]
    assert not (store.logs_dir / (st.INDEX_NAME + ".prune")).exists()


def test_rewrite_index_ends_a_crash_remnant_with_a_newline(store: Store) -> None:
    store.append({"id": "a", "n": 1})
    with open(store.index_path, "ab") as fh:
        fh.write(b'{"id": "torn"')
    assert store.rewrite_index(lambda line: True) == 0
    assert store.index_path.read_bytes() == b'{"id":"a","n":1}\n{"id": "torn"\n'


def test_an_append_after_another_writer_replaced_the_index_reaches_the_new_file(store: Store, tmp_path: Path) -> None:
    store.append({"id": "a"})
    other = Store(store.logs_dir)
    other.rewrite_index(lambda line: False)
    other.close()
    store.append({"id": "b"})
    assert list(read_index(store.index_path)) == [{"id": "b"}]


def test_sidecars_write_json_and_raw_bytes(store: Store) -> None:
    store.write_sidecar("c1", "req", {"text": "é\ud800"})
    assert "é".encode() in (store.logs_dir / "c1_req.json").read_bytes()  # UTF-8 as is, not \u00e9
    assert json.loads((store.logs_dir / "c1_req.json").read_bytes().decode("utf-8", "surrogatepass")) == {
        "text": "é\ud800"}
    store.write_sidecar("c1", "res", RawJson(b'{"raw": true}'))
    assert (store.logs_dir / "c1_res.json").read_bytes() == b'{"raw": true}'
    assert read_part(store.logs_dir, "c1", "res") == {"raw": True}
    store.write_raw("c1_body.bin", b"\x00\x01")
    assert (store.logs_dir / "c1_body.bin").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize(("call_id", "part"), [("../x", "req"), ("a", "re_q"), ("a", "../r"), ("", "req"), ("a", "")])
def test_unsafe_sidecar_names_are_refused(store: Store, call_id: str, part: str) -> None:
    with pytest.raises(ValueError):
        store.write_sidecar(call_id, part, {})
    assert read_part(store.logs_dir, call_id, part) is None


def test_unsafe_raw_and_shared_names_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.write_raw("../x", b"")
    with pytest.raises(ValueError):
        store.write_shared("a/b", {})


def test_shared_files_are_written_once(store: Store) -> None:
    assert store.write_shared("system_abc", {"v": 1}) is True
    assert store.write_shared("system_abc", {"v": 2}) is False
    assert json.loads((store.shared_dir / "system_abc.json").read_text()) == {"v": 1}


def test_read_part_missing_is_none_and_broken_is_an_error_naming_the_file(store: Store) -> None:
    assert read_part(store.logs_dir, "nope", "res") is None
    store.write_raw("bad_res.json", b"{not json")
    with pytest.raises(ReadBackError, match="bad_res.json"):
        read_part(store.logs_dir, "bad", "res")


def test_sidecars_are_owner_only(store: Store) -> None:
    store.write_sidecar("c1", "req", {"a": 1})
    store.write_raw("c1_body.bin", b"x")
    for name in ("c1_req.json", "c1_body.bin"):
        assert stat.S_IMODE((store.logs_dir / name).stat().st_mode) == 0o600


def test_read_part_never_leaves_the_logs_directory(store: Store) -> None:
    store.append({"id": "x"})
    (store.logs_dir.parent / "evil_req.json").write_text('{"secret": 1}')
    (store.logs_dir / "ok_req.json").write_text('{"fine": 1}')
    assert read_part(store.logs_dir, "../evil", "req") is None
    assert read_part(store.logs_dir, "ok", "req") == {"fine": 1}
    assert read_part(store.logs_dir, "ok", "req.json") is None


def test_blank_lines_do_not_stop_the_reader() -> None:
    stats = ReadStats()
    assert list(st.iter_index(['{"n": 1}', "", "   ", "\n", '{"n": 2}'], stats)) == [{"n": 1}, {"n": 2}]
    assert (stats.lines, stats.skipped) == (2, 0)


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    assert list(st.iter_index([b'{"t": "\xff"}'])) == [{"t": "\ufffd"}]
    path = tmp_path / st.INDEX_NAME
    path.write_bytes(b'{"t": "a\xffb"}\n{"t": "ok"}\n')
    expected = [{"t": "a\ufffdb"}, {"t": "ok"}]
    assert list(read_index(path)) == expected
    assert list(read_index(path, start=0, stop=path.stat().st_size)) == expected
    assert list(read_index(path, start=1)) == expected[1:]
