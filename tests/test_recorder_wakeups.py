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
        wait_until(lambda: len(recorder._paced) == 2, 30, "two submitters at their gates")
        assert all(thread.is_alive() for thread in paced)  # nothing was written: both still wait
        assert recorder.flush(timeout=30.0)
        for thread in paced:
            thread.join(30.0)
        assert not any(thread.is_alive() for thread in paced) and recorder._paced == []
    finally:
        recorder.close(timeout=30.0)
    lines = (tmp_path / "logs" / "index.ndjson").read_text().splitlines()
    assert len(lines) == BACKLOG_ITEMS + 1
