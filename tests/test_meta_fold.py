"""An HTTP call's meta rides in its response sidecar (one file created per call
instead of two); logs written before, with a ``{id}_meta.json`` of its own, and
WebSocket connections read back the same through every reader."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ccxray.assemble import Assembler
from ccxray.cli import main
from ccxray.dashboard.views import SEARCH_BYTES
from ccxray.pricing import PriceTable
from ccxray.readback import read_call, read_part, read_response_text
from ccxray.record import HttpCall
from ccxray.recorder import Recorder
from ccxray.store import ResponseWithMeta, Store, encode_json

from .test_dashboard_api import call, get

RESPONSE = {"type": "message", "content": [{"type": "text", "text": "hello there"}], "meta": {"x": 1}}


def call_of(call_id: str, body: bytes = json.dumps(RESPONSE).encode()) -> HttpCall:
    return HttpCall(id=call_id, started=time.time(), method="POST", url="/v1/messages", provider="anthropic",
                    upstream_url="https://api.anthropic.com/v1/messages",
                    req_headers=[("x-api-key", "sk-secret"), ("content-type", "application/json")],
                    req_body=b'{"model":"claude-sonnet-4-5","messages":[]}', status=200,
                    resp_headers=[("content-type", "application/json"), ("request-id", "req_1")],
                    resp_body=[body], resp_size=len(body))


def record(logs: Path, *calls: HttpCall) -> Recorder:
    recorder = Recorder(Store(logs), Assembler(PriceTable.load()))
    for call in calls:
        recorder.handle_now(call)
    return recorder


def test_new_calls_write_no_meta_file_and_read_back_whole(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    record(logs, call_of("c1")).close()
    assert sorted(p.name for p in logs.glob("c1_*")) == ["c1_req.json", "c1_res.json"]
    whole = read_call(logs, "c1")
    assert whole is not None and whole["response"] == RESPONSE
    assert whole["meta"]["request"]["url"] == "/v1/messages" and whole["meta"]["response"]["status"] == 200
    assert ["x-api-key", "[redacted]"] in whole["meta"]["request"]["headers"]
    assert read_part(logs, "c1", "res") == RESPONSE and read_part(logs, "c1", "meta") == whole["meta"]


def test_old_layout_with_a_meta_file_reads_back_the_same(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    record(logs, call_of("c1")).close()
    meta = read_part(logs, "c1", "meta")
    # rewrite the call as an earlier version stored it: the body as it came, meta beside it
    (logs / "c1_res.json").write_text(json.dumps(RESPONSE))
    (logs / "c1_meta.json").write_text(json.dumps(meta))
    whole = read_call(logs, "c1")
    assert whole is not None and whole["response"] == RESPONSE and whole["meta"] == meta


def test_show_and_the_entry_api_give_the_meta_back(fake: Any, proxy: Any, tmp_path: Path,
                                                   capsys: Any) -> None:
    logs = tmp_path / "home" / "logs"
    record(logs, call_of("c1")).close()
    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "show", "c1", "--meta"]) == 0
    assert json.loads(capsys.readouterr().out)["request"]["upstreamUrl"] == "https://api.anthropic.com/v1/messages"
    assert main([*home, "show", "c1", "--res"]) == 0
    assert json.loads(capsys.readouterr().out) == RESPONSE
    call(proxy.port, "s-1")
    (line,) = proxy.lines(1)
    assert not (proxy.logs / f"{line['id']}_meta.json").exists()
    entry = get(proxy.port, f"/_api/entries/{line['id']}")[1]
    assert entry["meta"]["request"]["method"] == "POST" and entry["meta"]["response"]["status"] == 200
    assert entry["response"]["type"] == "message"


def test_a_dropped_body_keeps_the_meta(tmp_path: Path) -> None:
    writes = Assembler(PriceTable.load()).handle(call_of("c1"))
    assert writes is not None
    recorder = Recorder(Store(tmp_path / "logs"), Assembler(PriceTable.load()))
    recorder._drop_bodies(writes)
    ((_, part, kept),) = writes.sidecars
    assert part == "res" and isinstance(kept, ResponseWithMeta) and kept.response is None
    assert kept.meta["request"]["url"] == "/v1/messages"  # type: ignore[index]
    recorder.close()


def _response_has(logs: Path, call_id: str, needles: list[str]) -> bool:
    """What the page's search matches in a response (its text as read back for a search)."""
    text = read_response_text(logs, call_id, None, SEARCH_BYTES).lower()
    return bool(text) and all(n in text for n in needles)


def test_search_does_not_match_the_folded_meta(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    record(logs, call_of("c1")).close()
    assert _response_has(logs, "c1", ["hello", "there"])
    assert not _response_has(logs, "c1", ["anthropic.com"])  # only in the meta's upstream URL
    assert not _response_has(logs, "c1", ["request-id"])      # only in the meta's headers
    assert _response_has(logs, "c1", ['"meta"'])               # the body's own "meta" key still counts


def test_folded_bytes_are_one_json_document() -> None:
    raw = encode_json(ResponseWithMeta(RESPONSE, {"request": {"url": "/x"}}))
    assert json.loads(raw) == {"$ccxray": "res", "response": RESPONSE, "meta": {"request": {"url": "/x"}}}
