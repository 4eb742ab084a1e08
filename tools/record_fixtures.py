"""Record the test fixtures under tests/fixtures/ from the real agent CLIs.

Runs one "say hi" turn of each real client (Claude Code over HTTP, Codex over
HTTP SSE and over the Responses WebSocket) through an in-process ccxray to
tools/fake_upstream.py, all on loopback (the clients are run as
tests/realclients.py runs them: throwaway HOME, minimal environment, outside
connections sent to a closed port). What is kept:

- ``claude-http/``: the request headers and body Claude Code sent, and the SSE
  events it got back (``{"event", "data"}`` objects, as ccxray records them);
- ``codex-http/``: the same for Codex over HTTP;
- ``codex-ws/say-hi.ndjson``: every WebSocket message of one Codex session, one
  per line (``ts`` ms since the upgrade, ``dir`` ``c2u``/``u2c``, ``binary``,
  ``size`` in bytes, ``text``), captured by a small logging relay between Codex
  and ccxray, plus ``handshake.json`` (the upgrade's headers).

Then redacted and trimmed: API keys, device and installation ids and the
throwaway paths are replaced by fixed placeholders, and strings longer than
TRIM_CHARS (the long system prompt, tool descriptions) lose their middle, so the files
stay small and hold nothing of the machine they were recorded on. Usage:
``CCXRAY_REAL_CLIENTS_BIN=DIR python -m tools.record_fixtures [--out tests/fixtures]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from ccxray.config import load_settings
from ccxray.server import ProxyServer
from ccxray.readback import read_part
from ccxray.store import read_index
from tests import realclients as rc
from tools.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[1]
TRIM_CHARS = 1200
RELAY_SKIP = frozenset({"host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version",
                        "sec-websocket-extensions", "sec-websocket-protocol", "content-length"})
PLACEHOLDER_CWD = "/home/user/project"
ENVIRONMENT_PARAGRAPH = "# Environment\n"
ZERO_ID = "00000000-0000-0000-0000-000000000000"
ID_KEYS = frozenset({"x-codex-installation-id", "installation_id"})  # per machine, not per session
Json = dict[str, Any]


# ---------------------------------------------------------------- redaction


def redactor(secrets: dict[str, str]) -> Callable[[str], str]:
    """A function replacing each secret (and any 64-hex device id) by its placeholder."""
    def clean(text: str) -> str:
        for secret, placeholder in secrets.items():
            text = text.replace(secret, placeholder)
        return re.sub(r"\b[0-9a-f]{64}\b", "0" * 64, text)
    return clean


def trimmed(value: Any, clean: Callable[[str], str]) -> Any:
    """``value`` with every string redacted and cut to TRIM_CHARS (JSON inside strings too)."""
    if isinstance(value, dict):
        return {k: ZERO_ID if k in ID_KEYS else trimmed(v, clean) for k, v in value.items()}
    if isinstance(value, list):
        return [trimmed(v, clean) for v in value]
    if isinstance(value, str):
        text = clean(value)
        return cut_middle(text) if len(text) > TRIM_CHARS else text
    return value


def cut_middle(text: str) -> str:
    """Head and tail of ``text``, keeping the paragraph ccxray reads the cwd from.

    Claude Code's ``# Environment`` paragraph sits in the middle of its system
    prompt; without it a fixture would no longer say where the agent ran.
    """
    half = TRIM_CHARS // 2
    head, middle, tail = text[:half], text[half:-half], text[-half:]
    kept = [p for p in middle.split("\n\n") if p.startswith(ENVIRONMENT_PARAGRAPH)]
    gap = f"\n[... {len(middle) - sum(len(p) for p in kept)} characters trimmed ...]\n"
    return head + gap + "".join(p + gap for p in kept) + tail


def trimmed_frame_text(text: str, clean: Callable[[str], str]) -> str:
    """A JSON frame re-encoded compactly after trimming; other text only redacted."""
    try:
        obj = json.loads(text)
    except ValueError:
        return clean(text)
    return json.dumps(trimmed(obj, clean), separators=(",", ":"), ensure_ascii=False)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- the WebSocket logging relay


class FrameLog:
    """Messages seen by the relay, each with its time since the upgrade."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.frames: list[Json] = []
        self.handshake: list[tuple[str, str]] = []

    def add(self, direction: str, message: str | bytes) -> None:
        data = message.encode() if isinstance(message, str) else message
        entry: Json = {"ts": round((time.monotonic() - self.t0) * 1000), "dir": direction,
                       "binary": isinstance(message, bytes), "size": len(data),
                       "text": message if isinstance(message, str) else None}
        with self.lock:
            self.frames.append(entry)


def relay_handler(upstream_url: str, log: FrameLog) -> Callable[[ServerConnection], None]:
    """Pass every message between the client and ``upstream_url`` + path, logging each."""
    def handle(client: ServerConnection) -> None:
        request = client.request
        assert request is not None
        log.t0 = time.monotonic()
        log.handshake = list(request.headers.raw_items())
        extra = [(k, v) for k, v in log.handshake if k.lower() not in RELAY_SKIP]
        with connect(upstream_url + request.path, additional_headers=extra, max_size=None) as upstream:
            def client_to_upstream() -> None:
                try:
                    for message in client:
                        log.add("c2u", message)
                        upstream.send(message)
                except ConnectionClosed:
                    pass
                upstream.close()
            pump = threading.Thread(target=client_to_upstream, name="relay-c2u")
            pump.start()
            try:
                for message in upstream:
                    log.add("u2c", message)
                    client.send(message)
            except ConnectionClosed:
                pass
            client.close()
            pump.join()
    return handle


# ---------------------------------------------------------------- running the clients


def entry_of(logs: Path, predicate: Callable[[Json], bool]) -> Json:
    found = [line for line in read_index(logs / "index.ndjson") if predicate(line)]
    if len(found) != 1:
        raise RuntimeError(f"expected one matching index line under {logs}, found {len(found)}")
    return found[0]


def sidecar(logs: Path, call_id: str, part: str) -> Any:
    """A response or meta as read back (an HTTP call's meta rides in its response sidecar)."""
    return read_part(logs, call_id, part)


def record_http(out: Path, name: str, fake: FakeUpstream, logs: Path, clean: Callable[[str], str]) -> None:
    seen = [s for s in fake.seen if s["method"] == "POST"]
    if len(seen) != 1:
        raise RuntimeError(f"{name}: expected one POST at the fake, saw {len(seen)}")
    line = entry_of(logs, lambda l: l.get("kind") == "call" and l.get("method") == "POST")
    write_json(out / name / "headers.json", trimmed(seen[0]["headers"], clean))
    write_json(out / name / "request.json", trimmed(sidecar(logs, line["id"], "req"), clean))
    write_json(out / name / "events.json", trimmed(sidecar(logs, line["id"], "res"), clean))


def run_client(argv: list[str], env: dict[str, str], cwd: Path, what: str) -> None:
    result = rc.run(argv, env, cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.describe()}")


def record_claude(out: Path, claude: str, work: Path) -> None:
    home = rc.make_home(work / "claude")
    (home / "w").mkdir()
    with FakeUpstream() as fake, ProxyServer(load_settings(
            {"ANTHROPIC_BASE_URL": fake.base_url, "CCXRAY_HOME": str(work / "claude-ccxray")}, port=0)) as proxy:
        env = rc.claude_env(home, rc.search_path(claude), f"http://127.0.0.1:{proxy.port}")
        run_client([claude, "-p", "say hi", "--output-format", "json"], env, home / "w", "claude")
        assert proxy.recorder.flush(10)
        clean = redactor({rc.ANTHROPIC_KEY: "sk-ant-REDACTED", str(home / "w"): PLACEHOLDER_CWD,
                          str(home): "/home/user",
                          # its per-project folder name: the cwd with every "/" turned into "-"
                          str(home / "w").replace("/", "-"): PLACEHOLDER_CWD.replace("/", "-")})
        record_http(out, "claude-http", fake, proxy.settings.logs_dir, clean)


def codex_home(work: Path, name: str, base_url: str, websockets: bool) -> tuple[Path, Path]:
    home = rc.make_home(work / name)
    rc.write_codex_provider_config(home, base_url, websockets)
    return home, rc.git_repo(home / "repo", home)


def codex_clean(home: Path, repo: Path) -> Callable[[str], str]:
    def clean(text: str) -> str:
        text = redactor({rc.OPENAI_KEY: "sk-proj-REDACTED", str(repo.resolve()): PLACEHOLDER_CWD,
                         str(repo): PLACEHOLDER_CWD, str(home): "/home/user"})(text)
        text = re.sub(r'("(?:x-codex-)?installation[_-]id\\?":\\?")[0-9a-f-]{36}', r"\g<1>" + ZERO_ID, text)
        return re.sub(r'("latest_git_commit_hash\\?":\\?")[0-9a-f]{40}', r"\g<1>" + "0" * 40, text)
    return clean


def record_codex_http(out: Path, codex: str, work: Path) -> None:
    with FakeUpstream() as fake, ProxyServer(load_settings(
            {"OPENAI_BASE_URL": fake.base_url + "/v1", "CCXRAY_HOME": str(work / "codex-http-ccxray")},
            port=0)) as proxy:
        home, repo = codex_home(work, "codex-http", f"http://127.0.0.1:{proxy.port}/v1", websockets=False)
        env = rc.codex_env(home, rc.search_path(codex), OPENAI_API_KEY=rc.OPENAI_KEY)
        run_client([codex, "exec", "--skip-git-repo-check", "--json", "--color", "never", "say hi"],
                   env, repo, "codex (http)")
        assert proxy.recorder.flush(10)
        record_http(out, "codex-http", fake, proxy.settings.logs_dir, codex_clean(home, repo))


def record_codex_ws(out: Path, codex: str, work: Path) -> None:
    log = FrameLog()
    with FakeUpstream() as fake, ProxyServer(load_settings(
            {"OPENAI_BASE_URL": fake.base_url + "/v1", "CCXRAY_HOME": str(work / "codex-ws-ccxray")},
            port=0)) as proxy:
        with serve(relay_handler(f"ws://127.0.0.1:{proxy.port}", log), "127.0.0.1", 0, max_size=None) as relay:
            relay_thread = threading.Thread(target=relay.serve_forever, name="relay")
            relay_thread.start()
            try:
                port = relay.socket.getsockname()[1]
                home, repo = codex_home(work, "codex-ws", f"http://127.0.0.1:{port}/v1", websockets=True)
                env = rc.codex_env(home, rc.search_path(codex), OPENAI_API_KEY=rc.OPENAI_KEY)
                run_client([codex, "exec", "--skip-git-repo-check", "--json", "--color", "never", "say hi"],
                           env, repo, "codex (ws)")
            finally:
                relay.shutdown()
                relay_thread.join()
    clean = codex_clean(home, repo)
    lines = []
    for frame in log.frames:
        if frame["text"] is not None:
            frame["text"] = trimmed_frame_text(frame["text"], clean)
            frame["size"] = len(frame["text"].encode())
        lines.append(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))
    target = out / "codex-ws" / "say-hi.ndjson"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(out / "codex-ws" / "handshake.json", trimmed([list(pair) for pair in log.handshake], clean))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument("--only", choices=["claude-http", "codex-http", "codex-ws"], action="append")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    claude, codex = (shutil.which(n, path=os.environ.get("CCXRAY_REAL_CLIENTS_BIN")) for n in ("claude", "codex"))
    if not claude or not codex:
        print("set CCXRAY_REAL_CLIENTS_BIN to the directory holding claude and codex", file=sys.stderr)
        return 2
    wanted = args.only or ["claude-http", "codex-http", "codex-ws"]
    with tempfile.TemporaryDirectory(prefix="ccxray-fixtures-") as tmp:
        work = Path(tmp)
        if "claude-http" in wanted:
            record_claude(args.out, claude, work)
        if "codex-http" in wanted:
            record_codex_http(args.out, codex, work)
        if "codex-ws" in wanted:
            record_codex_ws(args.out, codex, work)
    print(f"fixtures written under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
