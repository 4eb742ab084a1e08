"""What the delta storage must survive: retention mid-chain, a deleted base, a torn
sidecar, a failed write, compaction beside a running proxy; and the read-back
entry points (offset map, dashboard API, ``show``)."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ccxray.assemble import Assembler
from ccxray.cli import main
from ccxray.compact import compact
from ccxray.config import load_settings
from ccxray.pricing import PriceTable
from ccxray.readback import ReadBackError, read_call, read_request
from ccxray.record import HttpCall
from ccxray.recorder import Recorder
from ccxray.reqdelta import WHOLE_BELOW_BYTES, delta_base, is_packed
from ccxray.restore import prune
from ccxray.server import ProxyServer
from ccxray.store import Store, read_index
from tools.storage_sessions import claude_session

from .conftest import ProxyHandle, proxy_env, wait_until

DAY_S = 86400.0


def call_of(call_id: str, body: dict[str, Any], started: float, session: str = "s1") -> HttpCall:
    return HttpCall(id=call_id, started=started, method="POST", url="/v1/messages", provider="anthropic",
                    upstream_url=None, req_headers=[("x-claude-code-session-id", session)],
                    req_body=json.dumps(body).encode(), status=200,
                    resp_headers=[("content-type", "application/json")], resp_body=[b'{"type":"message"}'])


def record(logs: Path, bodies: list[dict[str, Any]], started: float, prefix: str = "c",
           session: str = "s1", assembler: Assembler | None = None) -> list[str]:
    """Record calls as the proxy's writer thread would (same assembler, same store)."""
    store, asm = Store(logs), assembler or Assembler(PriceTable.load())
    recorder = Recorder(store, asm)
    ids = [f"{prefix}{n:03d}" for n in range(len(bodies))]
    for n, (call_id, body) in enumerate(zip(ids, bodies)):
        recorder.handle_now(call_of(call_id, body, started + n, session))
    store.close()
    return ids


def age(logs: Path, ids: list[str], when: float) -> None:
    """Make these calls look recorded at ``when``: index lines and file times."""
    wanted = set(ids)
    lines = [json.loads(l) for l in (logs / "index.ndjson").read_text().splitlines()]
    for line in lines:
        if line["id"] in wanted:
            line["receivedAt"] = int(when * 1000)
    (logs / "index.ndjson").write_text("".join(json.dumps(l) + "\n" for l in lines))
    for path in logs.glob("*.json"):
        if path.name.rsplit("_", 1)[0] in wanted:
            os.utime(path, (when, when))
    for path in (logs / "shared").iterdir():
        os.utime(path, (when, when))


def test_retention_cut_mid_chain_keeps_every_later_call_readable(tmp_path):
    logs = tmp_path / "logs"
    now = time.time()
    bodies = list(claude_session(turns=60))
    ids = record(logs, bodies, now - 100)
    other = record(logs, list(claude_session(turns=3, session="other")), now - 100, "o", "s2")
    age(logs, ids[:45] + other, now - 10 * DAY_S)  # 33 is a base: 34..44 go, their base stays
    store = Store(logs)
    prune(store, 3, now)
    store.close()
    kept = [l["id"] for l in read_index(logs / "index.ndjson")]
    assert kept == ids[45:]
    for call_id, body in zip(ids[45:], bodies[45:]):
        assert read_request(logs, call_id) == body
    assert (logs / f"{ids[44]}_req.json").exists() and (logs / f"{ids[33]}_req.json").exists()
    assert not (logs / f"{ids[44]}_res.json").exists()  # only the request sidecars of a chain stay
    assert not (logs / f"{ids[20]}_req.json").exists() and not (logs / f"{ids[32]}_req.json").exists()
    assert not any(logs.glob("o*_req.json"))  # a whole chain nobody needs: gone
    assert len(list((logs / "shared").glob("system_*.json"))) == 1  # the other session's prompt went


def test_a_deleted_base_is_a_clear_error_for_its_chain_only(tmp_path, capsys):
    logs = tmp_path / "home" / "logs"
    bodies = list(claude_session(turns=6))
    ids = record(logs, bodies, time.time())
    others = record(logs, list(claude_session(turns=2, session="x")), time.time(), "x", "s2")
    base = delta_base(json.loads((logs / f"{ids[5]}_req.json").read_text()))
    assert base == ids[4]
    (logs / f"{ids[2]}_req.json").unlink()  # c003.. build on c002
    for call_id in ids[3:]:
        with pytest.raises(ReadBackError) as info:
            read_call(logs, call_id)
        assert info.value.path == logs / f"{ids[2]}_req.json" and "missing" in str(info.value)
    assert read_request(logs, ids[1]) == bodies[1] and read_request(logs, others[1]) is not None
    assert read_request(logs, ids[2]) is None  # its own sidecar is gone: no request, no guess
    assert main(["--home", str(tmp_path / "home"), "show", ids[4], "--req"]) == 1
    assert f"{ids[2]}_req.json: missing" in capsys.readouterr().err
    assert main(["--home", str(tmp_path / "home"), "show", ids[1], "--req"]) == 0
    assert json.loads(capsys.readouterr().out) == bodies[1]


def test_a_torn_sidecar_never_makes_another_call_unreadable(tmp_path):
    logs = tmp_path / "logs"
    bodies = list(claude_session(turns=12))
    first = record(logs, bodies[:6], time.time())
    # kill -9 while the next call was written: half its request on disk, half its line
    torn = logs / "t000_req.json"
    whole = json.dumps(bodies[6]).encode()
    torn.write_bytes(whole[: len(whole) // 2])
    with open(logs / "index.ndjson", "ab") as fh:
        fh.write(b'{"id":"t000","kind":"ca')
    # the restarted proxy goes on with the same session
    later = record(logs, bodies[6:], time.time(), "n")
    for call_id, body in zip(first + later, bodies[:6] + bodies[6:]):
        assert read_request(logs, call_id) == body
    with pytest.raises(ReadBackError, match="t000_req.json: unreadable"):
        read_request(logs, "t000")
    assert delta_base(json.loads((logs / f"{later[0]}_req.json").read_text())) is None


def test_write_failure_resets_chains(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    bodies = list(claude_session(turns=6))
    asm = Assembler(PriceTable.load())
    store = Store(logs)
    recorder = Recorder(store, asm)
    real = Store.write_sidecar
    calls = 0

    def second_req_fails(self: Store, call_id: str, part: str, obj: object) -> None:
        nonlocal calls
        if part == "req":
            calls += 1
            if calls == 3:
                raise OSError(28, "No space left on device")
        real(self, call_id, part, obj)
    monkeypatch.setattr(Store, "write_sidecar", second_req_fails)
    for n, body in enumerate(bodies):
        recorder.handle_now(call_of(f"c{n}", body, time.time() + n))
    store.close()
    assert recorder.failures == 1 and not (logs / "c2_req.json").exists()
    assert delta_base(json.loads((logs / "c3_req.json").read_text())) is None  # never builds on c2
    for n in (0, 1, 3, 4, 5):
        assert read_request(logs, f"c{n}") == bodies[n]


def post(port: int, body: dict[str, Any], session: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/messages", body=json.dumps(body).encode(),
                 headers={"X-Claude-Code-Session-Id": session, "content-type": "application/json"})
    assert conn.getresponse().read()
    conn.close()


def write_old_format(logs: Path, bodies: list[dict[str, Any]], session: str) -> list[str]:
    """A log as the previous version wrote it: whole request bodies."""
    logs.mkdir(parents=True, exist_ok=True)
    ids = []
    with open(logs / "index.ndjson", "a") as index:
        for n, body in enumerate(bodies):
            call_id = f"old-{session}-{n:03d}"
            (logs / f"{call_id}_req.json").write_text(json.dumps(body))
            (logs / f"{call_id}_res.json").write_text("{}")
            index.write(json.dumps({"id": call_id, "kind": "call", "provider": "anthropic", "sessionId": session,
                                    "isSubagent": False, "receivedAt": int(time.time() * 1000)}) + "\n")
            ids.append(call_id)
    return ids


SMALL = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "ping"}]}
LARGER = {**SMALL, "messages": SMALL["messages"] + [{"role": "assistant", "content": "pong"},
                                                    {"role": "user", "content": "x" * WHOLE_BELOW_BYTES}]}


def test_a_small_request_is_stored_as_sent_and_a_later_one_builds_on_it(tmp_path):
    logs = tmp_path / "logs"
    first, second = record(logs, [SMALL, LARGER], time.time())
    assert (logs / f"{first}_req.json").read_bytes() == json.dumps(SMALL).encode()  # the bytes that came
    assert delta_base(json.loads((logs / f"{second}_req.json").read_text())) == first
    for call_id, body in ((first, SMALL), (second, LARGER)):
        assert json.dumps(read_request(logs, call_id)) == json.dumps(body)


def test_compact_leaves_a_small_request_whole_and_builds_on_it(tmp_path):
    logs = tmp_path / "logs"
    first, second = write_old_format(logs, [SMALL, LARGER], "s")
    assert compact(logs).converted == 1
    assert (logs / f"{first}_req.json").read_text() == json.dumps(SMALL)
    assert delta_base(json.loads((logs / f"{second}_req.json").read_text())) == first
    assert read_request(logs, second) == LARGER


def test_compact_beside_a_writing_proxy_loses_nothing(fake, tmp_path):
    home = tmp_path / "home"
    logs = home / "logs"
    old_bodies = list(claude_session(turns=40, session="old")) + list(claude_session(turns=20, session="old2"))
    old = write_old_format(logs, old_bodies[:40], "old") + write_old_format(logs, old_bodies[40:], "old2")
    before = sum((logs / f"{i}_req.json").stat().st_size for i in old)
    proxy = ProxyHandle(ProxyServer(load_settings(proxy_env(fake, home), port=0)).start())
    live = list(claude_session(turns=30, session="live"))
    try:
        writer = threading.Thread(target=lambda: [post(proxy.port, b, "live") for b in live])
        writer.start()
        try:
            stats = compact(logs)
        finally:
            writer.join()
        lines = proxy.lines(len(old) + len(live))
    finally:
        proxy.server.stop()
    assert stats.converted >= 50 and stats.bytes_after < before / 5
    assert len(lines) == len(old) + len(live)
    for call_id, body in zip(old, old_bodies):
        assert is_packed(json.loads((logs / f"{call_id}_req.json").read_text())) or call_id.endswith("000")
        assert json.dumps(read_request(logs, call_id)) == json.dumps(body)
    new_ids = [l["id"] for l in lines if not l["id"].startswith("old-")]
    for call_id, body in zip(new_ids, live):
        assert read_request(logs, call_id) == body
    assert compact(logs).converted == 0  # a second run finds nothing left to do


def test_api_and_restore_find_calls_by_offset(fake, tmp_path):
    home = tmp_path / "home"
    settings = load_settings(proxy_env(fake, home), port=0)
    first = ProxyHandle(ProxyServer(settings).start())
    bodies = list(claude_session(turns=5))
    try:
        for body in bodies:
            post(first.port, body, "s1")
        ids = [l["id"] for l in first.lines(5)]
    finally:
        first.server.stop()
    second = ProxyHandle(ProxyServer(settings).start())
    try:
        offsets = second.server.recorder.store.offsets
        wait_until(lambda: len(offsets) == 5, 10, "the restore to map every line")
        index = (home / "logs" / "index.ndjson").read_bytes()
        for call_id in ids:
            (at,) = offsets.candidates(call_id)
            assert index[at:].startswith(b'{"id":"' + call_id.encode())
        conn = http.client.HTTPConnection("127.0.0.1", second.port, timeout=10)
        conn.request("GET", f"/_api/entries/{ids[4]}")
        entry = json.loads(conn.getresponse().read())
        assert entry["id"] == ids[4] and entry["request"] == bodies[4] and entry["meta"]["response"]["status"] == 200
        (home / "logs" / f"{ids[2]}_req.json").unlink()
        conn.request("GET", f"/_api/entries/{ids[4]}")
        broken = json.loads(conn.getresponse().read())
        assert broken["request"] is None and f"{ids[2]}_req.json: missing" in broken["readError"]
        conn.request("GET", "/_api/entries/no-such-id")
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        second.server.stop()


def test_show_prints_parts_and_refuses_unknown_ids(tmp_path, capsys):
    logs = tmp_path / "home" / "logs"
    bodies = list(claude_session(turns=3))
    ids = record(logs, bodies, time.time())
    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "show", ids[2]]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["id"] == ids[2] and whole["request"] == bodies[2] and whole["response"] == {"type": "message"}
    assert main([*home, "show", ids[2], "--meta"]) == 0
    assert json.loads(capsys.readouterr().out)["request"]["url"] == "/v1/messages"
    assert main([*home, "show", "nope"]) == 1 and "no call 'nope'" in capsys.readouterr().err
    assert main([*home, "show", ids[0], "--req", "--res"]) == 2
    assert main([*home, "compact"]) == 0 and "0 requests converted" in capsys.readouterr().out


def test_offsets_follow_a_prune_by_another_process(tmp_path):
    logs = tmp_path / "logs"
    ours, theirs = Store(logs), Store(logs)
    for n in range(10):
        ours.append({"id": f"a{n}", "receivedAt": n})
    theirs.rewrite_index(lambda line: line["receivedAt"] >= 5)  # the other process's retention
    ours.append({"id": "b0", "receivedAt": 99})  # notices the new file and maps it again
    data = (logs / "index.ndjson").read_bytes()
    for call_id in ("a5", "a9", "b0"):
        (at,) = ours.offsets.candidates(call_id)
        assert data[at:].startswith(b'{"id":"' + call_id.encode())
    assert ours.offsets.candidates("a1") == []
    ours.close()
    theirs.close()


def test_compact_converts_an_old_websocket_connection_and_its_turns(tmp_path):
    from tools.bench_storage import _ws_items
    from tools.storage_sessions import SYSTEM_MARKER, codex_ws_frames
    logs = tmp_path / "logs"
    recorder = Recorder(Store(logs), Assembler(PriceTable.load()))
    for item in _ws_items(codex_ws_frames(6), time.time()):
        recorder.handle_now(item)
    recorder.store.close()
    lines = list(read_index(logs / "index.ndjson"))
    ids = [l["id"] for l in lines]
    whole = {call_id: read_request(logs, call_id) for call_id in ids}
    for call_id, body in whole.items():  # as a version before frame logs wrote them
        (logs / f"{call_id}_req.json").write_text(json.dumps(body))
    (logs / "index.ndjson").write_text("".join(json.dumps({k: v for k, v in l.items() if k != "frames"}) + "\n"
                                               for l in lines))
    (logs / "ws1_frames.ndjson").unlink()
    assert sum(p.read_text().count(SYSTEM_MARKER) for p in logs.glob("*_req.json")) == 12
    stats = compact(logs)
    assert stats.converted == len(ids) and stats.skipped == 0
    assert sum(p.read_text().count(SYSTEM_MARKER) for p in logs.glob("*_req.json")) == 0
    assert '"turnRequest"' in (logs / "ws1_req.json").read_text()
    for call_id, body in whole.items():
        assert json.dumps(read_request(logs, call_id)) == json.dumps(body)


def test_two_writers_of_one_shared_blob_both_succeed(tmp_path):
    stores = [Store(tmp_path / "logs") for _ in range(4)]
    value = {"tools": ["x" * 100_000]}
    errors: list[BaseException] = []

    def write(store: Store) -> None:
        try:
            for n in range(50):
                store.write_shared(f"blob_{n}", value)
        except OSError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert not errors
    shared = tmp_path / "logs" / "shared"
    assert all(json.loads((shared / f"blob_{n}.json").read_text()) == value for n in range(50))
    assert not list(shared.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("pattern,reason", [("blob_*.json", "missing"), ("system_*.json", "missing")])
def test_a_missing_shared_file_is_an_error_naming_it(tmp_path, pattern, reason):
    logs = tmp_path / "logs"
    ids = record(logs, list(claude_session(turns=2)), time.time())
    (gone,) = (logs / "shared").glob(pattern)
    gone.unlink()
    with pytest.raises(ReadBackError) as info:
        read_request(logs, ids[1])
    assert info.value.path == gone and info.value.reason == reason


def test_a_corrupt_shared_prompt_or_slice_is_an_error_not_a_wrong_body(tmp_path):
    logs = tmp_path / "logs"
    ids = record(logs, list(claude_session(turns=2)), time.time())
    (prompt,) = (logs / "shared").glob("system_*.json")
    prompt.write_text(json.dumps({"hash": "x", "text": "too short"}))
    with pytest.raises(ReadBackError, match="outside prompt"):
        read_request(logs, ids[0])
    prompt.write_text("{")
    with pytest.raises(ReadBackError, match="unreadable"):
        read_request(logs, ids[0])
