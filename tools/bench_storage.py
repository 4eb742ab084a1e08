"""Storage benchmark (issue 7): delta requests on disk, recorder CPU, read-back time.

    python tools/bench.py --only storage [--quick]

* Bytes on disk for the 200-turn sessions of ``tools/storage_sessions.py``
  (Claude Code style, Codex over HTTP, Codex over WebSocket): request sidecars
  (for a WebSocket, the client-to-upstream lines of its frame log; the note
  also gives the whole log) plus ``shared/`` against the bytes of every
  request stored whole.
* Recorder CPU per call (process CPU time of the writer's own step,
  ``Recorder._handle``, sidecars and line written to disk; the mean over the
  session, median of 5 runs) storing requests whole ("before", what the
  previous version did) and as deltas ("after").
* Read-back of the deepest call of a chain (``read_request``), and of
  ``GET /_api/entries/ID`` on a proxy whose index has 1,000,000 lines
  (200,000 with --quick), found through the id->offset map the restore built.

Everything runs in this process on a throwaway home; times are medians.
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tools.bench_log import generate
from tools.bench_plan import Report
from tools.bench_report import Compare, Row
from tools.storage_sessions import claude_session, codex_session, codex_ws_frames

SECTION = "storage"
TURNS = 200


def _claude_call(call_id: str, body: dict[str, Any], started: float) -> Any:
    from ccxray.record import HttpCall
    return HttpCall(id=call_id, started=started, method="POST", url="/v1/messages", provider="anthropic",
                    upstream_url=None, req_headers=[("x-claude-code-session-id", "bench")],
                    req_body=json.dumps(body).encode(), status=200,
                    resp_headers=[("content-type", "application/json")], resp_body=[b'{"type":"message"}'])


def _codex_call(call_id: str, body: dict[str, Any], started: float) -> Any:
    from ccxray.record import HttpCall
    return HttpCall(id=call_id, started=started, method="POST", url="/v1/responses", provider="openai",
                    upstream_url=None, req_headers=[("session-id", "bench"), ("originator", "codex_exec")],
                    req_body=json.dumps(body).encode(), status=200,
                    resp_headers=[("content-type", "application/json")], resp_body=[b'{"object":"response"}'])


def _ws_items(frames: Iterable[dict[str, Any]], started: float) -> list[Any]:
    from ccxray.record import CloseInfo, WsClosed, WsFrame, WsOpened
    items: list[Any] = [WsOpened("ws1", started, "/v1/responses", "openai", None, [("session-id", "bench")])]
    seq = 0
    for n, frame in enumerate(frames):
        done = json.dumps({"type": "response.completed", "response": {"id": f"resp_{n}", "status": "completed"}})
        for direction, text in (("c2u", json.dumps(frame)), ("u2c", done)):
            seq += 1
            items.append(WsFrame("ws1", direction, started + seq / 1000, text, len(text), seq=seq))
    items.append(WsClosed("ws1", 101, [], b"", CloseInfo("client", 1000), {}, {}, 1.0))
    return items


def _record(logs: Path, items: list[Any], whole: bool) -> list[float]:
    """CPU seconds of the writer's step per item; ``whole`` stores requests as sent."""
    from ccxray.assemble import Assembler
    from ccxray.pricing import PriceTable
    from ccxray.recorder import Recorder
    from ccxray.store import Store
    asm = Assembler(PriceTable.load())
    if whole:
        asm.chains.pack = lambda *args, **kw: None  # type: ignore[method-assign]
    recorder = Recorder(Store(logs), asm)
    cpu = []
    for item in items:
        t = time.process_time()
        recorder.handle_now(item)
        cpu.append(time.process_time() - t)
    recorder.store.close()
    return cpu


def _disk_bytes(logs: Path, replies: bool = False) -> int:
    """Request sidecars, the client-to-upstream lines of WebSocket frame logs (the
    requests; with ``replies`` the whole logs) and shared files."""
    files = [p for p in logs.glob("*_req.json")] + [p for p in (logs / "shared").iterdir()]
    total = sum(p.stat().st_size for p in files)
    for log in logs.glob("*_frames.ndjson"):
        lines = log.read_bytes().splitlines(keepends=True)
        total += sum(len(line) for line in lines if replies or b'"dir":"c2u"' in line.split(b"\t", 1)[0])
    return total


def _sessions(started: float) -> dict[str, tuple[list[Any], int]]:
    claude = list(claude_session(TURNS))
    codex = list(codex_session(TURNS))
    ws = list(codex_ws_frames(TURNS))
    return {
        "Claude-style": ([_claude_call(f"c{n:03d}", b, started + n) for n, b in enumerate(claude)],
                         sum(len(json.dumps(b)) for b in claude)),
        "Codex HTTP": ([_codex_call(f"x{n:03d}", b, started + n) for n, b in enumerate(codex)],
                       sum(len(json.dumps(b)) for b in codex)),
        "Codex WebSocket": (_ws_items(ws, started), sum(len(json.dumps(b)) for b in ws)),
    }


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def _deepest(logs: Path) -> str:
    from ccxray.reqdelta import delta_base
    depth: dict[str, int] = {}
    for path in sorted(logs.glob("c*_req.json")):
        call_id = path.name[:-len("_req.json")]
        base = delta_base(json.loads(path.read_text()))
        depth[call_id] = 0 if base is None else depth.get(base, 0) + 1
    return max(depth, key=lambda k: depth[k])


def run_sizes_and_cpu(report: Report, tmp: Path) -> Path:
    """Sessions recorded whole and as deltas; returns the delta log of the Claude-style one."""
    claude_logs = tmp
    for name, (items, full) in _sessions(time.time()).items():
        after: list[float] = []
        before: list[float] = []
        for run in range(5):  # alternate, so both see the same machine load
            for whole, into in ((True, before), (False, after)):
                logs = tmp / f"{name}-{whole}-{run}".replace(" ", "_")
                cpu = _record(logs, items, whole)
                into.append(sum(cpu) / len(cpu) * 1e6)  # the mean: a base every K calls costs more
                if not whole and name == "Claude-style":
                    claude_logs = logs
        share = _disk_bytes(tmp / f"{name}-False-0".replace(" ", "_")) / full * 100
        target = "<= 5" if name == "Claude-style" else ""
        report.add(Row(SECTION, f"{name} {TURNS} turns: bytes on disk vs full copies", "%", None, share,
                       Compare.NONE, target, share <= 5 if target else None))
        report.add(Row(SECTION, f"{name}: recorder CPU per call, mean (whole -> delta)", "us",
                       statistics.median(before), statistics.median(after), Compare.ADDED))
        logs = tmp / f"{name}-False-0".replace(" ", "_")
        report.note(f"storage: {name}: {full / 1e6:.1f} MB of requests sent, {_disk_bytes(logs) / 1e6:.2f} MB stored"
                    + (f" ({_disk_bytes(logs, replies=True) / 1e6:.2f} MB with the replies in the frame log)"
                       if list(logs.glob("*_frames.ndjson")) else ""))
    return claude_logs


def run_read_back(report: Report, claude_logs: Path, lines: int) -> None:
    from ccxray.config import load_settings
    from ccxray.readback import read_request
    from ccxray.server import ProxyServer
    from ccxray.store import Store
    deepest = _deepest(claude_logs)
    ms = _median_ms(lambda: read_request(claude_logs, deepest), 50)
    report.add(Row(SECTION, "read back the deepest call of a chain", "ms", None, ms, Compare.NONE, "< 20", ms < 20))
    home = claude_logs.parent / "big-home"
    size = generate(home / "logs", lines)
    store = Store(home / "logs")
    middle = f"id{lines // 2}"
    with open(claude_logs / "index.ndjson") as fh:
        for line in fh:
            store.append(json.loads(line))
    store.close()
    for path in list(claude_logs.glob("*.json")) + list((claude_logs / "shared").iterdir()):
        target = home / "logs" / path.relative_to(claude_logs)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    server = ProxyServer(load_settings({"CCXRAY_HOME": str(home)}, port=0)).start()
    try:
        deadline = time.monotonic() + 300
        while server.app.restore_stats is None and time.monotonic() < deadline:
            time.sleep(0.1)  # a benchmark, not a test: waiting for the restore to map the log
        restore_s = server.app.restore_stats.seconds if server.app.restore_stats else float("nan")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def get(call_id: str) -> bytes:
            conn.request("GET", f"/_api/entries/{call_id}")
            return conn.getresponse().read()
        for call_id, label in ((deepest, "deepest chain call"), (middle, "a line mid-log")):
            if json.loads(get(call_id))["id"] != call_id:
                raise RuntimeError(f"/_api/entries/{call_id} answered another call")
            ms = _median_ms(lambda: get(call_id), 50)
            report.add(Row(SECTION, f"/_api/entries/ID, {label}, {lines:,}-line log", "ms", None, ms,
                           Compare.NONE, "< 5", ms < 5))
        conn.close()
    finally:
        server.stop()
    report.note(f"storage: {lines:,}-line index ({size / 1e6:.0f} MB) plus the Claude-style session; "
                f"the restore mapped it in {restore_s:.1f} s")


def run_storage(report: Report, quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="ccxray-bench-storage-") as tmp:
        claude_logs = run_sizes_and_cpu(report, Path(tmp))
        run_read_back(report, claude_logs, 200_000 if quick else 1_000_000)
