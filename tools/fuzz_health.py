"""Health checks for the fuzz harness: the proxy must keep serving and recording.

Between the inputs go well-behaved calls: ``http_health`` (one Messages
POST) and ``ws_health`` (a WebSocket session that echoes one text and
closes with 1000). Each must succeed, and afterwards
``missing_health_lines`` checks that each has its correct line in the
proxy's index: the proxy loses nothing however much garbage came between.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from pathlib import Path
from typing import Iterable

from ccxray.store import read_index
from tools.fuzz_client import ServerFrame, _recv, _send, parse_server_frames, ws_open
from tools.fuzz_common import DEADLINE_S, MSG, OPCODE_CLOSE, OPCODE_TEXT
from tools.fuzz_ws import _close_payload, ws_frame


# ---------------------------------------------------------------- health checks


def http_health(port: int, number: int, timeout_s: float = DEADLINE_S) -> str | None:
    """A normal call through the proxy; None if it succeeded, else what went wrong."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", f"/v1/messages?fuzz_health={number}", body=MSG,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return f"HTTP health call {number}: status {resp.status} {body[:80]!r}"
        json.loads(body)
        return None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"HTTP health call {number} failed: {exc!r}"
    finally:
        conn.close()


def ws_health(port: int, number: int, timeout_s: float = DEADLINE_S) -> str | None:
    """A normal WebSocket session (echo one text, close 1000); None if it went right."""
    deadline = time.monotonic() + timeout_s
    rng = random.Random(number)
    text = b"health %d" % number
    try:
        sock, buf = ws_open(port, deadline, f"/v1/responses?fuzz_health={number}")
    except (ConnectionError, OSError) as exc:
        return f"WebSocket health {number}: {exc}"
    with sock:
        _send(sock, ws_frame(rng, OPCODE_TEXT, text))
        seen: list[ServerFrame] = []
        closing = False
        while True:
            seen += parse_server_frames(buf)
            if not closing and any(f.opcode == OPCODE_TEXT and f.payload == text for f in seen):
                closing = _send(sock, ws_frame(rng, OPCODE_CLOSE, _close_payload(1000)))
            closes = [f for f in seen if f.opcode == OPCODE_CLOSE]
            if closes:
                code = int.from_bytes(closes[0].payload[:2], "big") if len(closes[0].payload) >= 2 else None
                if closing and code == 1000:
                    return None
                return f"WebSocket health {number}: close {code} (echo seen: {closing})"
            chunk = _recv(sock, deadline)
            if not chunk:
                return f"WebSocket health {number}: {'timeout' if chunk is None else 'EOF'} (echo seen: {closing})"
            buf += chunk


def missing_health_lines(logs_dir: Path, http_numbers: Iterable[int], ws_numbers: Iterable[int]) -> list[str]:
    """Health calls that have no (correct) index line: the proxy must lose nothing."""
    by_url: dict[str, list[dict[str, object]]] = {}
    for line in read_index(logs_dir / "index.ndjson"):
        by_url.setdefault(str(line.get("url")), []).append(line)
    problems = []
    for n in http_numbers:
        lines = by_url.get(f"/v1/messages?fuzz_health={n}", [])
        if len(lines) != 1 or lines[0].get("status") != 200 or lines[0].get("error"):
            problems.append(f"HTTP health call {n}: index lines {lines!r}")
    for n in ws_numbers:
        conns = [l for l in by_url.get(f"/v1/responses?fuzz_health={n}", []) if l.get("kind") == "connection"]
        close = conns[0].get("close") if len(conns) == 1 else None
        if not isinstance(close, dict) or close.get("code") != 1000:
            problems.append(f"WebSocket health {n}: connection lines {conns!r}")
    return problems
