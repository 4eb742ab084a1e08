"""WebSocket turns kept in a frame log per connection: read back whole, after a
kill -9 mid-connection too; logs written before frame logs still read back;
retention removes a frame log only with its connection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from ccxray.assemble import Assembler
from ccxray.compact import compact
from ccxray.dashboard.views import _response_has
from ccxray.pricing import PriceTable
from ccxray.readback import ReadBackError, read_call, read_request, read_response_text
from ccxray.record import PID_DIGITS, CloseInfo, IdFactory, WsClosed, WsFrame, WsOpened, id_pid
from ccxray.recorder import Recorder
from ccxray.retention import open_connections, remove_unneeded
from ccxray.store import Store, read_index
from tools.storage_sessions import codex_ws_frames

from .conftest import wait_until
from .test_cli import Running
from .test_recorder_faults import _env, _whole_lines

HEADERS = [("session-id", "s1"), ("originator", "codex_exec")]


def _done(n: int) -> dict[str, Any]:
    return {"type": "response.completed", "response": {"id": f"resp_{n}", "status": "completed",
                                                       "usage": {"input_tokens": 10 + n, "output_tokens": 2}}}


def _session(conn: str, started: float, creates: list[dict[str, Any]], close: bool = True) -> list[Any]:
    """A connection: per create, a delta, a text frame that is not JSON, a binary frame and the completion."""
    items: list[Any] = [WsOpened(conn, started, "/v1/responses", "openai", None, HEADERS)]
    seq = 0
    for n, create in enumerate(creates):
        for direction, text in (("c2u", json.dumps(create)),
                                ("u2c", json.dumps({"type": "response.output_text.delta", "delta": f"é{n}\n"})),
                                ("u2c", "not json\twith a tab\nand a newline"), ("u2c", None),
                                ("u2c", json.dumps(_done(n)))):
            seq += 1
            items.append(WsFrame(conn, direction, started + seq / 100, text, len(text or "x"), seq=seq))
    if close:
        items.append(WsClosed(conn, 101, [], b"", CloseInfo("client", 1000), {}, {}, 9.0))
    return items


def _record(logs: Path, items: list[Any]) -> Recorder:
    recorder = Recorder(Store(logs), Assembler(PriceTable.load()))
    for item in items:
        recorder.handle_now(item)
    return recorder


def _creates(n: int) -> list[dict[str, Any]]:
    return list(codex_ws_frames(n, "s1"))


def test_every_turn_and_the_connection_read_back_from_the_frame_log(tmp_path: Path) -> None:
    logs, creates = tmp_path / "logs", _creates(5)
    recorder = _record(logs, _session("ws1", time.time(), creates))
    recorder.store.close()
    offsets = recorder.store.offsets  # where the lines are: a turn's line says where its request is
    assert json.dumps(read_request(logs, "ws1-t3", offsets)) == json.dumps(creates[3])
    lines = list(read_index(logs / "index.ndjson"))
    turns = [l for l in lines if l["kind"] == "turn"]
    assert [l["id"] for l in turns] == [f"ws1-t{n}" for n in range(5)]
    assert sorted(p.name for p in logs.glob("ws1*")) == ["ws1_frames.ndjson", "ws1_meta.json"]  # no per-turn files
    for n, line in enumerate(turns):
        call = read_call(logs, line["id"])
        assert call is not None and json.dumps(call["request"]) == json.dumps(creates[n])
        assert call["response"] == [{"type": "response.output_text.delta", "delta": f"é{n}\n"}, _done(n)]
        assert line["usage"]["input_tokens"] == 10 + n and call["meta"] is None
        assert json.dumps(read_request(logs, line["id"])) == json.dumps(creates[n])
    whole = read_call(logs, "ws1")
    assert whole is not None and whole["meta"]["request"]["url"] == "/v1/responses"
    assert [f["data"] for f in whole["request"]] == creates
    kinds = [f.get("data", {}).get("type") if "data" in f else next(k for k in ("text", "binary") if k in f)
             for f in whole["response"][:4]]
    assert kinds == ["response.output_text.delta", "text", "binary", "response.completed"]
    assert whole["response"][1]["text"] == "not json\twith a tab\nand a newline"
    assert read_request(logs, "ws1") == whole["request"]


def test_frames_reach_the_disk_while_the_connection_lives(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    recorder = _record(logs, _session("ws1", time.time(), _creates(3), close=False))
    try:
        size = (logs / "ws1_frames.ndjson").stat().st_size
        assert size > 0 and not recorder.assembler.take_frames()  # nothing of it waits in memory
        turns = [l for l in read_index(logs / "index.ndjson") if l["kind"] == "turn"]
        assert len(turns) == 3 and all(l["frames"][1] <= size for l in turns)
    finally:
        recorder.store.close()


def test_the_page_search_finds_a_turn_by_its_reply(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    recorder = _record(logs, _session("ws1", time.time(), _creates(2)))
    recorder.store.close()
    assert "resp_1" in read_response_text(logs, "ws1-t1", None, 1 << 20)
    assert "resp_1" not in read_response_text(logs, "ws1-t0", None, 1 << 20)
    assert "response.create" not in read_response_text(logs, "ws1", None, 1 << 20)  # replies only

    class App:  # what _response_has reads of the app
        class settings:
            logs_dir = logs

        class recorder:
            offsets = Store(logs).offsets
    assert _response_has(App, "ws1-t1", ["resp_1"]) and not _response_has(App, "ws1-t0", ["resp_1"])  # type: ignore[arg-type]


def test_a_turn_whose_create_line_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _record(logs, _session("ws1", time.time(), _creates(2))).store.close()
    log = logs / "ws1_frames.ndjson"
    log.write_bytes(log.read_bytes().replace(b'{"turn":"ws1-t1"', b'{"gone":"ws1-t1"'))
    with pytest.raises(ReadBackError, match="ws1-t1"):
        read_call(logs, "ws1-t1")
    assert read_call(logs, "ws1-t0") is not None


def test_a_failed_frame_write_leaves_later_turns_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = tmp_path / "logs"
    items = _session("ws1", time.time(), _creates(3))
    recorder = Recorder(Store(logs), Assembler(PriceTable.load()))
    real = recorder.store.append_frames
    calls = []

    def flaky(conn_id: str, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(conn_id, data)
    monkeypatch.setattr(recorder.store, "append_frames", flaky)
    for item in items:
        recorder.handle_now(item)
    recorder.store.close()
    assert recorder.failures == 1
    readable = []
    for n in range(3):
        try:
            call = read_call(logs, f"ws1-t{n}")
            readable.append(call is not None and call["response"][-1] == _done(n))
        except ReadBackError:
            readable.append(False)
    assert readable[-1] and readable.count(True) >= 2  # only the turn whose bytes were lost is not


# -- logs written before frame logs ----------------------------------------------------------

def _old_layout(logs: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A connection with two turns as the previous version wrote it: per-turn request and
    response sidecars, the connection's frames whole in its own sidecars at its close."""
    logs.mkdir(parents=True)
    creates = _creates(2)
    events = [[{"type": "response.output_text.delta", "delta": "hi"}, _done(n)] for n in range(2)]
    lines = []
    for n in range(2):
        lines.append({"id": f"old-t{n}", "kind": "turn", "transport": "websocket", "connectionId": "old"})
        (logs / f"old-t{n}_req.json").write_text(json.dumps(creates[n]))
        (logs / f"old-t{n}_res.json").write_text(json.dumps(events[n]))
    lines.append({"id": "old", "kind": "connection", "transport": "websocket"})
    c2u = [{"ts": 1.0 + n, "dir": "c2u", "size": 5, "turnRequest": f"old-t{n}"} for n in range(2)]
    u2c = [{"ts": 1.5 + n, "dir": "u2c", "size": 5, "data": e} for n in range(2) for e in events[n]]
    (logs / "old_req.json").write_text(json.dumps(c2u))
    (logs / "old_res.json").write_text(json.dumps(u2c))
    (logs / "old_meta.json").write_text(json.dumps({"request": {"url": "/v1/responses"}}))
    (logs / "index.ndjson").write_text("".join(json.dumps(l) + "\n" for l in lines))
    return creates, events


def test_a_log_from_before_frame_logs_still_reads_back(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    creates, events = _old_layout(logs)
    for n in range(2):
        call = read_call(logs, f"old-t{n}")
        assert call is not None and call["request"] == creates[n] and call["response"] == events[n]
    conn = read_call(logs, "old")
    assert conn is not None and [f["data"] for f in conn["request"]] == creates
    assert conn["response"][1]["data"] == _done(0) and conn["meta"] == {"request": {"url": "/v1/responses"}}
    assert "resp_1" in read_response_text(logs, "old-t1", None, 1 << 20)
    # a proxy writing the new layout beside it: both read back, compact leaves both whole
    _record(logs, _session("ws1", time.time(), _creates(2))).store.close()
    compact(logs)
    assert read_call(logs, "old-t1")["request"] == creates[1]  # type: ignore[index]
    assert json.dumps(read_call(logs, "ws1-t1")["request"]) == json.dumps(_creates(2)[1])  # type: ignore[index]


# -- retention --------------------------------------------------------------------------------

def _age(logs: Path, when: float) -> None:
    for path in logs.iterdir():
        if path.is_file():
            os.utime(path, (when, when))


def test_a_turn_is_under_way_from_its_create_until_its_line(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()))
    recorder.follow_turns(lambda call: events.append(("start", call.id)), lambda turn_id: events.append(("end", turn_id)))
    recorder.add_listener(lambda line: events.append(("line", line["id"])))
    items = _session("c1", time.time(), _creates(2), close=False)
    for item in items[:2]:  # opened, the first create
        recorder.handle_now(item)
    assert events == [("start", "c1-t0")]
    for item in items[2:] + [WsClosed("c1", 101, [], b"", CloseInfo("client", 1000), {}, {}, 9.0)]:
        recorder.handle_now(item)
    assert events == [("start", "c1-t0"), ("line", "c1-t0"), ("end", "c1-t0"),
                      ("start", "c1-t1"), ("line", "c1-t1"), ("end", "c1-t1"), ("line", "c1")]
    recorder.store.close()


def test_a_turn_begun_and_ended_within_one_write_is_never_announced(tmp_path: Path) -> None:
    """Nobody reading what is written could have seen it under way: no start, no end, just its line."""
    events: list[tuple[str, str]] = []
    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()))
    recorder.follow_turns(lambda call: events.append(("start", call.id)), lambda turn_id: events.append(("end", turn_id)))
    recorder.add_listener(lambda line: events.append(("line", line["id"])))
    recorder._handle_batch(_session("c1", time.time(), _creates(1), close=False))
    recorder._write_held()
    assert events == [("line", "c1-t0")]
    recorder.store.close()


def test_a_turn_the_connection_cut_short_is_no_longer_under_way(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()))
    recorder.follow_turns(lambda call: events.append(("start", call.connectionId or "")),
                          lambda turn_id: events.append(("end", turn_id)))
    for item in _session("c2", time.time(), _creates(1), close=False)[:2]:
        recorder.handle_now(item)
    recorder.handle_now(WsClosed("c2", 101, [], b"", CloseInfo("client", 1006), {}, {}, 9.0))
    assert events == [("start", "c2"), ("end", "c2-t0")]
    assert [l["status"] for l in read_index(tmp_path / "logs" / "index.ndjson") if l["id"] == "c2-t0"] == [None]
    recorder.store.close()


def test_a_turn_whose_line_could_not_be_built_ends_with_its_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import ccxray.wsassemble as wsassemble_module
    from ccxray.inflight import InFlightRegistry

    registry = InFlightRegistry()
    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()))
    recorder.follow_turns(registry.start, registry.end)
    for item in _session("c3", time.time(), _creates(1), close=False)[:2]:
        recorder.handle_now(item)
    assert [c["id"] for c in registry.list()] == ["c3-t0"]

    def broken(*args: object) -> dict[str, object]:
        raise RuntimeError("a bug building the turn line")
    monkeypatch.setattr(wsassemble_module, "summarize_turn", broken)
    recorder.handle_now(WsClosed("c3", 101, [], b"", CloseInfo("client", 1006), {}, {}, 9.0))
    assert registry.list() == [] and "could not handle WsClosed" in caplog.text
    recorder.store.close()


def test_a_small_create_is_logged_as_sent_and_the_next_builds_on_it(tmp_path: Path) -> None:
    from ccxray.reqdelta import WHOLE_BELOW_BYTES, delta_base

    logs = tmp_path / "logs"
    said = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ping"}]}]
    small = {"type": "response.create", "model": "gpt-5-codex", "input": said}
    larger = {**small, "input": said + [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "x" * WHOLE_BELOW_BYTES}]}]}
    recorder = _record(logs, _session("c4", time.time(), [small, larger]))
    recorder.store.close()
    creates = [l for l in (logs / "c4_frames.ndjson").read_text().splitlines() if l.startswith('{"turn"')]
    assert json.loads(creates[0])["request"] == small and json.dumps(small) in creates[0]  # the text that came
    assert delta_base(json.loads(creates[1])["request"]) == "c4-t0"
    for turn_id, create in (("c4-t0", small), ("c4-t1", larger)):
        call = read_call(logs, turn_id)
        assert call is not None and json.dumps(call["request"]) == json.dumps(create)


def _keep_only(logs: Path, keep: set[str]) -> None:
    lines = [l for l in read_index(logs / "index.ndjson") if l["id"] in keep]
    (logs / "index.ndjson").write_text("".join(json.dumps(l) + "\n" for l in lines))


def test_retention_removes_a_frame_log_only_with_its_connection(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    recorder = Recorder(Store(logs), Assembler(PriceTable.load()))
    for item in _session("ws1", time.time() - 1000, _creates(3)) + _session("ws2", time.time() - 900, _creates(3)):
        recorder.handle_now(item)
    recorder.store.close()
    _age(logs, time.time() - 500)
    _keep_only(logs, {"ws2-t2"})  # a kept turn: its connection's line and its other turns went
    remove_unneeded(logs, time.time() - 100)
    names = sorted(p.name for p in logs.iterdir() if p.is_file())
    assert "ws1_frames.ndjson" not in names and "ws1_meta.json" not in names
    assert "ws2_frames.ndjson" in names
    call = read_call(logs, "ws2-t2")
    assert call is not None and json.dumps(call["request"]) == json.dumps(_creates(3)[2])  # its chain and blobs kept
    _keep_only(logs, set())
    remove_unneeded(logs, time.time() - 100)
    assert not list(logs.glob("*_frames.ndjson"))


def test_retention_keeps_a_young_frame_log_of_a_live_connection(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    recorder = _record(logs, _session("live", time.time(), _creates(1), close=False))
    recorder.store.close()
    _keep_only(logs, set())  # no line names it yet
    remove_unneeded(logs, time.time() - 100)
    assert (logs / "live_frames.ndjson").exists()


def test_retention_keeps_an_open_connections_idle_frame_log_until_it_closes(tmp_path: Path) -> None:
    """An open connection whose log is older than the cutoff (idle, or pinging
    without data) keeps it, and later turns land in it; once closed it goes."""
    logs = tmp_path / "logs"
    conn = IdFactory().new_id()  # carries this process's pid: the open set decides, not the pid
    items = _session(conn, time.time() - 1000, _creates(2), close=False)
    recorder = _record(logs, items[:6])  # opened, and the first turn
    _age(logs, time.time() - 500)
    recorder.prune_older_than(0)  # every line is past the cutoff, every file older than it
    assert (logs / f"{conn}_frames.ndjson").exists() and not list(read_index(logs / "index.ndjson"))
    for item in items[6:] + [WsClosed(conn, 101, [], b"", CloseInfo("client", 1000), {}, {}, 9.0)]:
        recorder.handle_now(item)
    call = read_call(logs, f"{conn}-t1")
    assert call is not None and json.dumps(call["request"]) == json.dumps(_creates(2)[1])
    assert call["response"][-1]["type"] == "response.completed"
    recorder.store.close()
    _age(logs, time.time() - 500)
    recorder.prune_older_than(0)
    assert not list(logs.glob("*_frames.ndjson"))


def _pid_field_in_use(field: int) -> bool:
    """From /proc, independently of the retention's own probe: does a running pid show as ``field``?"""
    return any(int(name) % 10 ** PID_DIGITS == field for name in os.listdir("/proc") if name.isdecimal())


def test_retention_keeps_the_frame_log_of_another_running_proxy(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    field = other.pid % 10 ** PID_DIGITS
    open_conn, closed_conn = (f"20261130T000000000Z-{field:05d}-00000{n}" for n in (1, 2))
    try:
        for conn in (open_conn, closed_conn):
            (logs / f"{conn}_frames.ndjson").write_text('{"ts":0,"dir":"u2c","size":1}\tx\n')
        _age(logs, time.time() - 500)
        remove_unneeded(logs, time.time() - 100, open_connections(logs, (), closed={closed_conn}))
        assert (logs / f"{open_conn}_frames.ndjson").exists()
        assert not (logs / f"{closed_conn}_frames.ndjson").exists()  # its closing line came: over
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(20)
    remove_unneeded(logs, time.time() - 100, open_connections(logs, ()))  # its proxy is gone
    # (unless another process now has a pid that shows the same: then it is kept, as it should be)
    assert (logs / f"{open_conn}_frames.ndjson").exists() == _pid_field_in_use(field)


def test_an_id_names_its_proxy_pid_only_in_ascii_digits() -> None:
    assert id_pid("20261130T000000000Z-01234-000001") == 1234
    assert id_pid("20261130T000000000Z-01234-000001-t3") == 1234
    assert id_pid("20261130T000000000Z-0123\u00b2-000001") is None  # isdigit() says yes; int() refuses
    assert id_pid("live") is None and id_pid("a-b-c") is None


# -- kill -9 -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_mid_connection_leaves_every_completed_turn_readable(fake, tmp_path: Path) -> None:
    home = tmp_path / "home"
    logs = home / "logs"
    proxy = Running(_env(fake, home))
    creates = _creates(6)
    try:
        headers = {"originator": "codex_exec", "session-id": "s-kill"}
        with connect(f"ws://127.0.0.1:{proxy.port}/v1/responses", additional_headers=headers) as ws:
            for create in creates[:5]:
                ws.send(json.dumps(create))
                while json.loads(ws.recv(timeout=20))["type"] != "response.completed":
                    pass
            wait_until(lambda: sum(l.get("kind") == "turn" for l in read_index(logs / "index.ndjson")) >= 5,
                       20, "five turn lines")
            ws.send(json.dumps(creates[5]))  # a turn under way
            proxy.proc.send_signal(signal.SIGKILL)
            proxy.proc.wait(20)
    finally:
        proxy.stop(signal.SIGKILL)
    lines = _whole_lines(logs / "index.ndjson")
    turns = [l for l in lines if l.get("kind") == "turn"]
    assert not [l for l in lines if l.get("kind") == "connection"] and len(turns) >= 5
    for n, line in enumerate(turns[:5]):
        call = read_call(logs, line["id"])
        assert call is not None and json.dumps(call["request"]) == json.dumps(creates[n])
        assert call["response"][-1]["type"] == "response.completed"


def test_frame_logs_beyond_the_open_cap_reopen_and_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ccxray.store as store_module
    monkeypatch.setattr(store_module, "MAX_OPEN_FRAME_LOGS", 2)
    store = Store(tmp_path / "logs")
    try:
        for round_ in range(3):
            for conn in ("a", "b", "c", "d"):
                store.append_frames(conn, f"{conn}{round_}\n".encode())
        assert len(store._frame_logs) == 2
    finally:
        store.close()
    for conn in ("a", "b", "c", "d"):
        assert (tmp_path / "logs" / f"{conn}_frames.ndjson").read_bytes() == f"{conn}0\n{conn}1\n{conn}2\n".encode()
