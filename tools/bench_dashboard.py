"""Dashboard benchmark: the page in Chromium over a large generated log.

    python tools/bench_dashboard.py [--calls 10000] [--sessions 200] [--runs 5] [--json]

Generates CALLS Claude Code-style calls across SESSIONS sessions (index
lines plus request, response and header sidecars; one request of about
1 MB; requests stored as the proxy stores them, as deltas on their
session's chain with the prompt and tools shared) in a throwaway CCXRAY_HOME, starts the proxy on it, and measures in
headless Chromium (Playwright, Debian's chromium):

- first render: navigation start to the session list drawn (the page's
  ``ccxray-drawn`` performance mark);
- opening a session: hash change to its turn cards drawn;
- opening a turn whose request is 1 MB: hash change to its timeline drawn;

and, over HTTP from Python, ``/_api/entries/ID`` for ids spread across the
log. Medians of RUNS runs (the machine is shared: single runs are noisy).
Targets from the issue: 1 s, 200 ms, 300 ms, 5 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ccxray.config import load_settings  # noqa: E402
from ccxray.reqdelta import Chains  # noqa: E402
from ccxray.server import ProxyServer  # noqa: E402

BIG_BYTES = 1 << 20
PROJECTS = 20
SYSTEM = "You are Claude Code, Anthropic's official CLI for Claude.\n" + "Follow the rules.\n" * 200
SYSTEM_HASH = "bench0000000001"


def call_line(n: int, session: int, turn: int, start_ms: int) -> dict[str, Any]:
    received = start_ms + n * 1000
    return {
        "id": f"20260101T000000000Z-{session:05d}-{n:06d}", "ts": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(received / 1000)),
        "receivedAt": received, "kind": "call", "transport": "http", "sessionId": f"session-{session:04d}",
        "sessionInferred": False, "provider": "anthropic", "agent": "claude", "method": "POST", "url": "/v1/messages",
        "status": 200, "elapsed": 2000.0 + n % 900, "isSSE": True, "model": "claude-sonnet-4-5",
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 3000 + turn * 900,
                  "output_tokens": 250},
        "cost": {"input": 4e-05, "output": 0.00375, "cacheRead": 0.0009, "cacheWrite": 0.0019, "total": 0.0066, "currency": "USD"},
        "costNote": None, "stopReason": "tool_use" if turn % 3 else "end_turn", "cwd": f"/home/dev/project-{session % PROJECTS:02d}",
        "isSubagent": False, "agentType": None, "msgCount": 1 + 2 * turn, "toolCount": 20,
        "title": f"session {session}: fix the failing test in module {session % 37}", "responseMetadata": None, "error": None,
        "ttfb": 500.0, "contextTokens": 3512 + turn * 900, "contextWindow": 200000, "contextUse": round((3512 + turn * 900) / 200000, 4),
        "toolNames": ["Read"] if turn % 3 else [], "systemPromptHash": "bench0000000001",
    }


def request_body(turn: int, big: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix the failing test"}]
    for t in range(turn):
        result = "x" * BIG_BYTES if big and t == turn - 1 else f"file contents {t}\n" * 20
        messages += [{"role": "assistant", "content": [{"type": "text", "text": f"step {t}"},
                                                       {"type": "tool_use", "id": f"t{t}", "name": "Read", "input": {"file_path": f"f{t}.py"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{t}", "content": result}]}]
    return {"model": "claude-sonnet-4-5", "stream": True, "system": SYSTEM, "tools": [{"name": "Read"}], "messages": messages}


RESPONSE = [{"event": "message_start", "data": {"type": "message_start", "message": {"usage": {}}}},
            {"event": "content_block_start", "data": {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}},
            *[{"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}}}] * 40,
            {"event": "message_stop", "data": {"type": "message_stop"}}]


def generate(logs: Path, calls: int, sessions: int) -> str:
    """Write the log; returns the id of the call with the 1 MB request."""
    (logs / "shared").mkdir(parents=True)
    (logs / "shared" / f"system_{SYSTEM_HASH}.json").write_text(json.dumps({"hash": SYSTEM_HASH, "text": SYSTEM}))
    chains = Chains()
    per = calls // sessions
    big_id = ""
    response = json.dumps(RESPONSE)
    meta = json.dumps({"request": {"headers": [["user-agent", "claude-cli/2.1.197"]]}, "response": {"status": 200, "headers": []}})
    start_ms = int(time.time() * 1000) - (calls + 60) * 1000  # recent: the start-up restore reads recent days
    with open(logs / "index.ndjson", "w", encoding="utf-8") as index:
        for n in range(calls):
            session, turn = n % sessions, n // sessions  # sessions interleave, as they do on a busy machine
            line = call_line(n, session, turn, start_ms)
            big = session == 7 and turn == per // 2
            big_id = line["id"] if big else big_id
            index.write(json.dumps(line) + "\n")
            write_request(logs, chains, session, line["id"], request_body(min(turn, 12), big))
            (logs / f"{line['id']}_res.json").write_text(response)
            (logs / f"{line['id']}_meta.json").write_text(meta)
    return big_id


def write_request(logs: Path, chains: Chains, session: int, call_id: str, body: dict[str, Any]) -> None:
    """The request sidecar as the proxy writes it: packed on its session's chain, shared parts apart."""
    packed = chains.pack(session, call_id, body, SYSTEM, SYSTEM_HASH)
    assert packed is not None
    for sha, value in packed.blobs.items():
        (logs / "shared" / f"blob_{sha}.json").write_text(json.dumps(value))
    (logs / f"{call_id}_req.json").write_text(json.dumps(packed.body))


def ms_until(page: Any, hash_: str, selector: str) -> float:
    """Milliseconds from a hash change to ``selector`` existing, timed inside the page."""
    return float(page.evaluate("""([hash, selector]) => new Promise((resolve) => {
        const t0 = performance.now();
        location.hash = hash;
        const check = () => document.querySelector(selector) ? resolve(performance.now() - t0) : requestAnimationFrame(check);
        check();
    })""", [hash_, selector]))


def measure_page(url: str, session: str, big_id: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    times: dict[str, list[float]] = {"first render": [], "open session": [], "open 1 MB turn": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector("#session-list .session", timeout=60000)
                page.wait_for_selector("body[data-ready]")
                times["first render"].append(page.evaluate("performance.getEntriesByName('ccxray-drawn')[0].startTime"))
                times["open session"].append(ms_until(page, f"#/s/{session}", "#turn-list .card"))
                times["open 1 MB turn"].append(ms_until(page, f"#/s/{session}/t/{big_id}", ".timeline"))
                context.close()
        finally:
            browser.close()
    return times


def measure_entry(port: int, ids: list[str], samples: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    try:
        for entry_id in random.Random(1).sample(ids, min(samples, len(ids))):
            t0 = time.perf_counter()
            conn.request("GET", f"/_api/entries/{entry_id}")
            body = conn.getresponse().read()
            out.append((time.perf_counter() - t0) * 1000)
            if entry_id.encode() not in body:
                raise RuntimeError(f"/_api/entries/{entry_id} did not return it")
    finally:
        conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ccxray-bench-dash-") as home:
        t0 = time.perf_counter()
        big_id = generate(Path(home) / "logs", args.calls, args.sessions)
        generated_s = time.perf_counter() - t0
        env = {"CCXRAY_HOME": home, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
               "CHATGPT_BASE_URL": "http://127.0.0.1:9/backend-api/codex"}
        server = ProxyServer(load_settings(env, port=0)).start()
        try:
            server.recorder.flush(120)  # the start-up restore of the session list
            ids = [json.loads(l)["id"] for l in (Path(home) / "logs" / "index.ndjson").read_text().splitlines()]
            entry_first = measure_entry(server.port, ids[:1], 1)  # cold: a new connection, nothing read yet
            entry = measure_entry(server.port, ids, 500)
            page = measure_page(f"http://127.0.0.1:{server.port}/", "session-0007", big_id, args.runs)
        finally:
            server.stop(grace_s=2)
    result = {name: round(statistics.median(values), 1) for name, values in page.items()}
    result.update({"entries/ID median": round(statistics.median(entry), 2),
                   "entries/ID p95": round(sorted(entry)[int(len(entry) * 0.95)], 2),
                   "entries/ID first": round(entry_first[0], 1),
                   "calls": args.calls, "sessions": args.sessions, "runs": args.runs, "generate s": round(generated_s, 1)})
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            unit = "" if key in ("calls", "sessions", "runs", "generate s") else " ms"
            print(f"{key:<36} {value}{unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
