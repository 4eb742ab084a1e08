"""Log-side benchmark (issue 4): restore and ``usage`` on a generated index, parser speed.

    python tools/bench.py --only log [--quick]

Generates an index of realistic lines (about 1 KB each, 1,000,000 of them;
200,000 with --quick) in a throwaway CCXRAY_HOME, then measures in fresh
processes, so peak memory is the process's own: the start-up restore
(``ccxray.restore.restore``) and ``python -m ccxray usage --json``. Also the
SSE parser's events per second on a 20,000-event stream fed in 4 KiB reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.bench_plan import Report
from tools.bench_report import Compare, Row

ROOT = Path(__file__).resolve().parent.parent
SECTION = "log"
SESSIONS = 2000
LINE = json.dumps({
    "id": "ID", "ts": "2026-11-24T07:00:17.522Z", "receivedAt": 0, "kind": "call", "transport": "http",
    "sessionId": "SESSION", "sessionInferred": False, "provider": "anthropic", "agent": "claude", "method": "POST",
    "url": "/v1/messages?beta=true", "status": 200, "elapsed": 1234.5, "isSSE": True, "model": "MODEL",
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 3000,
              "output_tokens": 250},
    "cost": {"input": 6e-05, "output": 0.00625, "cacheRead": 0.0015, "cacheWrite": 3e-05, "total": 0.00784,
             "currency": "USD"},
    "costNote": None, "stopReason": "end_turn", "cwd": "/home/user/project", "isSubagent": False,
    "agentType": None, "msgCount": 12, "toolCount": 24, "title": "fix the failing test in the parser module please",
    "responseMetadata": {"responseId": "msg_01abc", "requestId": "req_01xyz",
                         "rateLimits": {"anthropic-ratelimit-requests-remaining": "49"}, "codexRateLimits": None,
                         "error": None},
    "error": None, "ttfb": 512.3, "contextTokens": 3017, "contextWindow": 1000000, "contextUse": 0.003,
}, separators=(",", ":"))

RESTORE = """
import json, resource, sys, time
from pathlib import Path
from ccxray.restore import restore
from ccxray.sessionindex import SessionIndex
from ccxray.sessions import SessionTracker
index = SessionIndex()
t = time.perf_counter()
stats = restore(Path(sys.argv[1]), SessionTracker(), index, restore_days=None)
print(json.dumps({"seconds": time.perf_counter() - t, "lines": stats.lines, "sessions": len(index),
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def generate(logs: Path, lines: int) -> int:
    """Write ``lines`` index lines (recent, spread over SESSIONS sessions); returns bytes written."""
    logs.mkdir(parents=True)
    now_ms = int(time.time() * 1000)
    # %-placeholders: the JSON's own braces would confuse str.format
    template = LINE.replace('"receivedAt":0', '"receivedAt":%(t)d').replace('"ID"', '"id%(i)d"')
    template = template.replace('"SESSION"', '"s-%(s)d"').replace('"MODEL"', '"%(m)s"')
    models = ("claude-opus-4-8", "claude-haiku-4-5", "gpt-5.5")
    size = 0
    with open(logs / "index.ndjson", "w", encoding="utf-8") as fh:
        for i in range(lines):
            text = template % {"t": now_ms - i, "i": i, "s": i % SESSIONS, "m": models[i % 3]} + "\n"
            size += len(text)
            fh.write(text)
    return size


def _python(code_or_args: list[str], home: Path) -> tuple[float, str, int]:
    """Run a Python child; (wall seconds, stdout, peak RSS KiB of the child)."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    done = subprocess.run([sys.executable, *code_or_args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"CCXRAY_HOME": str(home), "PATH": "/usr/bin:/bin"}, check=True)
    wall = time.perf_counter() - t
    return wall, done.stdout, max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)


def sse_events_per_s() -> float:
    sys.path.insert(0, str(ROOT))
    from ccxray.wire.sse import SseParser
    data = b"".join(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                    b'"delta":{"type":"text_delta","text":"hello %d"}}\n\n' % i for i in range(20000))
    parser = SseParser()
    t = time.perf_counter()
    count = 0
    for start in range(0, len(data), 4096):
        count += len(parser.feed(data[start:start + 4096]))
    return count / (time.perf_counter() - t)


def run_log(report: Report, quick: bool) -> None:
    lines = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="ccxray-bench-log-") as tmp:
        home = Path(tmp)
        size = generate(home / "logs", lines)
        report.note(f"log: generated {lines:,} index lines ({size / 1e6:.0f} MB), {SESSIONS} sessions")
        _, out, _ = _python(["-c", RESTORE, str(home / "logs")], home)
        restored = json.loads(out)
        report.add(Row(SECTION, f"restore {lines:,} lines", "s", None, restored["seconds"], Compare.NONE,
                       "< 10", restored["seconds"] < 10))
        report.add(Row(SECTION, "restore peak memory (whole process)", "MB", None, restored["maxrss_kib"] / 1024,
                       Compare.NONE, "< 200", restored["maxrss_kib"] / 1024 < 200))
        wall, out, _ = _python(["-m", "ccxray", "usage", "--json"], home)
        calls = json.loads(out)["total"]["calls"]
        report.add(Row(SECTION, f"usage --json over {calls:,} lines", "s", None, wall, Compare.NONE, "< 5", wall < 5))
    report.add(Row(SECTION, "SSE parser (4 KiB reads)", "events/s", None, sse_events_per_s()))
