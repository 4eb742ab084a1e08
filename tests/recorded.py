"""Fixtures the suite reads: recorded ones in the repository, captured extras beside it.

``tests/fixtures/`` holds one "say hi" turn of each real client (Claude Code
over HTTP, Codex over HTTP SSE and over the Responses WebSocket), recorded
through ccxray against tools/fake_upstream.py by ``python -m
tools.record_fixtures`` and redacted there; every test that needs real client
traffic reads these, so a fresh clone runs the whole suite.

``../shared/fixtures`` (beside the repository, optional) holds captured traffic
from elsewhere; the tests reading it are extras and skip with SHARED_SKIP when
it is absent (tests/expected_skips.txt lists that reason).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "fixtures"
# CCXRAY_SHARED_FIXTURES points elsewhere, e.g. to run the extras from a checkout without ../shared
SHARED = Path(os.environ.get("CCXRAY_SHARED_FIXTURES") or ROOT.parent / "shared" / "fixtures")
SHARED_SKIP = "optional captured traffic absent: ../shared/fixtures/"


def recorded(rel: str) -> Any:
    """A JSON fixture from tests/fixtures (always present)."""
    return json.loads((RECORDED / rel).read_text(encoding="utf-8"))


def recorded_frames() -> list[dict[str, Any]]:
    """The recorded Codex WebSocket session, one message per item (see tools/record_fixtures.py)."""
    text = (RECORDED / "codex-ws" / "say-hi.ndjson").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def recorded_headers(rel: str) -> list[tuple[str, str]]:
    return [(str(n), str(v)) for n, v in recorded(rel)]


def shared_path(rel: str) -> Path:
    """A file of ../shared/fixtures, or skip the test (an extra) when it is absent."""
    path = SHARED / rel
    if not path.exists():
        pytest.skip(SHARED_SKIP + rel)
    return path


def shared(rel: str) -> Any:
    return json.loads(shared_path(rel).read_text(encoding="utf-8"))
