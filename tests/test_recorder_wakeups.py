"""The writer thread gathers what the relays submit for a moment before it
handles it (one GIL hand-off per batch, not per item), and flush and close
never wait that moment out."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ccxray.assemble import Assembler
from ccxray.pricing import PriceTable
from ccxray.record import HttpCall
from ccxray.recorder import BACKLOG_ITEMS, COALESCE_S, Recorder
from ccxray.store import Store

from .conftest import wait_until


class _Counting(Recorder):
    """A recorder that remembers the size of every batch it handled."""

    def __init__(self, logs: Path, coalesce_s: float) -> None:
        super().__init__(Store(logs), Assembler(PriceTable.load()), coalesce_s)
        self.batches: list[list[object]] = []

    def _handle_batch(self, batch: list[object]) -> bool:
        self.batches.append(list(batch))
        return super()._handle_batch(batch)


def test_items_submitted_together_are_handled_as_one_batch_and_flush_does_not_wait(tmp_path):
    recorder = _Counting(tmp_path / "logs", coalesce_s=600.0)  # a window no test could sit out
    recorder.start()
    ran: list[str] = []
    try:
        recorder.run_on_writer(lambda: ran.append("first"))
        recorder.run_on_writer(lambda: ran.append("second"))
        started = time.monotonic()
        assert recorder.flush(timeout=30.0)
        assert time.monotonic() - started < 30.0  # flush cut the 600 s window short
    finally:
        recorder.close(timeout=30.0)
    assert ran == ["first", "second"]
    # the first item woke the writer; the second and the flush joined its batch
    assert len(recorder.batches[0]) == 3, recorder.batches


def test_close_does_not_wait_out_the_window(tmp_path):
    recorder = _Counting(tmp_path / "logs", coalesce_s=600.0)
    recorder.start()
    recorder.run_on_writer(lambda: None)
    thread = recorder._thread
    recorder.close(timeout=30.0)
    assert thread is not None and not thread.is_alive()


def test_the_proxy_default_is_a_short_window():
    assert 0 < COALESCE_S <= 0.005  # the index trails completed calls by at most this much more


def test_a_long_batch_gives_the_cpu_away_between_items(tmp_path, monkeypatch):
    """Handling yields (GIL released) once its work passes YIELD_EVERY_S, so a relay
    whose socket became readable does not wait out the whole batch."""
    from ccxray import recorder as recorder_module
    from ccxray.record import CloseInfo, WsClosed, WsOpened

    yields: list[int] = []
    monkeypatch.setattr(recorder_module, "YIELD_EVERY_S", 0.0)  # every item counts as long
    monkeypatch.setattr(recorder_module, "_yield_cpu", lambda: yields.append(1))
    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()))
    opened = WsOpened("c1", time.time(), "/v1/responses", "openai", "http://up/v1/responses", [])
    closed = WsClosed("c1", 101, [], b"", CloseInfo("client", 1000), {}, {}, 0.01)
    recorder._handle_batch([opened, closed])
    assert len(yields) == 2
    recorder._write_held()
    recorder.store.close()
    lines = [json.loads(line) for line in (tmp_path / "logs" / "index.ndjson").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["c1"]  # yielding changed nothing recorded


def _call(recorder: Recorder) -> HttpCall:
    return HttpCall(id=recorder.new_id(), started=time.time(), method="POST", url="/v1/messages",
                    provider="anthropic", upstream_url=None, req_headers=[], req_body=b"{}", status=200)


def test_calls_past_the_backlog_wait_each_at_its_own_gate_until_the_writer_catches_up(tmp_path):
    recorder = _Counting(tmp_path / "logs", coalesce_s=600.0)  # the writer sits in its window until flushed
    recorder.start()
    try:
        for _ in range(BACKLOG_ITEMS - 1):
            recorder.submit(_call(recorder))  # within the backlog: no wait
        paced = [threading.Thread(target=recorder.submit, args=(_call(recorder),)) for _ in range(2)]
        for thread in paced:
            thread.start()
        wait_until(lambda: recorder.gates.waiting == 2, 30, "two submitters at their gates")
        assert all(thread.is_alive() for thread in paced)  # nothing was written: both still wait
        assert recorder.flush(timeout=30.0)
        for thread in paced:
            thread.join(30.0)
        assert not any(thread.is_alive() for thread in paced) and recorder.gates.waiting == 0
    finally:
        recorder.close(timeout=30.0)
    lines = (tmp_path / "logs" / "index.ndjson").read_text().splitlines()
    assert len(lines) == BACKLOG_ITEMS + 1


def test_what_batches_write_is_held_for_a_window_then_each_frame_log_takes_one_write(tmp_path, monkeypatch):
    """Turns handled in separate batches inside one WRITE_EVERY_S window reach the
    disk together: one frame-log write for the connection, the lines after it."""
    from ccxray.record import WsOpened, WsRun

    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()), write_every_s=600.0)
    appends: list[int] = []
    real_append = recorder.store.append_frames
    monkeypatch.setattr(recorder.store, "append_frames",
                        lambda conn_id, data: (appends.append(len(data)), real_append(conn_id, data)))
    now = time.time()
    recorder._handle_batch([WsOpened("c1", now, "/v1/responses", "openai", None, [])])
    create = json.dumps({"type": "response.create", "model": "gpt-5-codex", "input": "hi"})
    done = json.dumps({"type": "response.completed", "response": {"id": "r", "status": "completed"}})
    seq = 1
    for turn in range(3):
        recorder._handle_batch([[WsRun("c1", "c2u", now + turn, seq, [(create, len(create), False)])]])
        recorder._handle_batch([[WsRun("c1", "u2c", now + turn, seq + 1, [(done, len(done), False)])]])
        seq += 2
    index = tmp_path / "logs" / "index.ndjson"
    assert appends == [] and (not index.exists() or index.read_text() == "")  # all held
    recorder._write_held()
    recorder.store.close()
    lines = [json.loads(line) for line in index.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["c1-t0", "c1-t1", "c1-t2"]
    assert len(appends) == 1  # three turns' frames, one write
    log_size = (tmp_path / "logs" / "c1_frames.ndjson").stat().st_size
    assert appends == [log_size] and lines[-1]["frames"][1] == log_size


def test_an_http_call_is_written_at_its_batch_end_whatever_the_window(tmp_path):
    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()), write_every_s=600.0)
    call = _call(recorder)
    recorder._handle_batch([call])
    recorder.store.close()
    lines = (tmp_path / "logs" / "index.ndjson").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [call.id]


def test_the_writer_writes_a_held_window_without_a_flush(tmp_path):
    """With the thread running, what was handled reaches the index once the window
    ends even when nothing else is submitted (the wait is cut to the window)."""
    from ccxray.record import CloseInfo, WsClosed, WsOpened

    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()))
    recorder.start()
    index = tmp_path / "logs" / "index.ndjson"
    try:
        recorder.submit(WsOpened("c1", time.time(), "/v1/responses", "openai", None, []))
        recorder.submit(WsClosed("c1", 101, [], b"", CloseInfo("client", 1000), {}, {}, 0.01))
        wait_until(lambda: index.exists() and '"c1"' in index.read_text(), timeout=30.0)
    finally:
        recorder.close(timeout=30.0)


def test_a_periodic_task_sees_every_held_line_written(tmp_path):
    """A prune that runs while writes are held must find them in the index first."""
    from ccxray.record import CloseInfo, WsClosed, WsOpened

    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()), write_every_s=600.0)
    index = tmp_path / "logs" / "index.ndjson"
    seen: list[str] = []
    recorder.every(0.0, lambda: seen.append(index.read_text() if index.exists() else ""))
    recorder._handle_batch([WsOpened("c1", time.time(), "/v1/responses", "openai", None, []),
                            WsClosed("c1", 101, [], b"", CloseInfo("client", 1000), {}, {}, 0.01)])
    assert not index.exists() or '"c1"' not in index.read_text()  # held
    recorder._due()
    recorder.store.close()
    assert len(seen) == 1 and '"c1"' in seen[0]
