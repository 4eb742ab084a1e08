"""End to end with the real agent CLIs: Claude Code and Codex through ccxray to the fake upstream.

Claude Code (2.1.x) and Codex (0.169.x), installed from npm, run exactly as
shared/REAL_CLIENTS.md describes: a throwaway HOME, a minimal environment,
every outside connection sent to a closed loopback port, stdin from
/dev/null and a timeout. Each test runs one "say hi" turn the way a user
does, through the ``python -m ccxray claude|codex`` launchers and the shared
background proxy (started by ``ccxray start``, or by the first launcher), to
tools/fake_upstream.py, and checks what the client printed, what the fake
received and what ccxray recorded.

Set ``CCXRAY_REAL_CLIENTS_BIN`` to the directory holding ``claude`` and
``codex`` (``npm install --prefix DIR @anthropic-ai/claude-code
@openai/codex`` gives ``DIR/node_modules/.bin``); without the CLIs these
tests skip, or fail with ``CCXRAY_REQUIRE_REAL_CLIENTS=1``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from ccxray.hub import stop
from ccxray.hubfiles import HubPaths
from ccxray.readback import read_request
from ccxray.store import read_index
from tools.fake_upstream import FakeUpstream

from . import realclients as rc
from .conftest import ROOT, proxy_env, read_sidecar, wait_until
from .hubagents import SharedProxy, shared_proxy_env

pytestmark = pytest.mark.slow

FALLBACK = "Falling back from WebSockets"
CODEX_EXEC = ["exec", "--skip-git-repo-check", "--json", "--color", "never"]
CLAUDE_ARGS = ["-p", "say hi", "--output-format", "json"]
LINE_WAIT_S = 10.0


@pytest.fixture
def claude_bin() -> str:
    return rc.find_client("claude")


@pytest.fixture
def codex_bin() -> str:
    return rc.find_client("codex")


@pytest.fixture
def proxy(fake: FakeUpstream, tmp_path: Path) -> Iterator[SharedProxy]:
    """A shared background proxy (``ccxray start``) in front of the fake; the clients join it via launchers."""
    shared = SharedProxy(shared_proxy_env(proxy_env(fake, tmp_path / "ccxray")))
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture(params=[False, True], ids=["plain-upstream", "deflate-upstream"])
def ws_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FakeUpstream, SharedProxy]]:
    """A fake (accepting permessage-deflate or not) and a shared ccxray in front of it."""
    with FakeUpstream(ws_deflate=request.param) as upstream:
        shared = SharedProxy(shared_proxy_env(proxy_env(upstream, tmp_path / "ccxray")))
        try:
            yield upstream, shared
        finally:
            shared.stop()


# ---------------------------------------------------------------- helpers


def calls(lines: list[dict[str, Any]], method: str, url: str) -> list[dict[str, Any]]:
    return [l for l in lines if l.get("kind") == "call" and l["method"] == method and l["url"] == url]


def seen_one(fake: FakeUpstream, method: str, target: str, ws: bool = False) -> dict[str, Any]:
    found = [s for s in fake.seen if s["method"] == method and s["target"] == target and bool(s.get("ws")) == ws]
    assert len(found) == 1, f"expected one {method} {target} (ws={ws}) at the fake, saw " + repr(
        [(s["method"], s["target"], s.get("ws")) for s in fake.seen])
    return found[0]


def thread_id(stdout: str) -> str:
    started = [e for e in rc.json_lines(stdout) if e.get("type") == "thread.started"]
    assert started, f"no thread.started event in codex output:\n{stdout}"
    return str(started[0]["thread_id"])


def assert_codex_said_hi(result: rc.Run) -> None:
    assert result.returncode == 0, result.describe()
    assert rc.codex_agent_messages(result.stdout) == ["hi"], result.describe()
    assert not [e for e in rc.json_lines(result.stdout) if e.get("type") in ("turn.failed", "error")], result.describe()


def assert_no_secrets(logs: Path, *secrets: str, skip: frozenset[str] = frozenset()) -> None:
    assert (logs / "index.ndjson").exists()
    leaked = rc.secrets_in(logs, secrets, skip)
    assert not leaked, f"secret values written under {logs}: {leaked}"


def run_codex(codex_bin: str, proxy: SharedProxy, home: Path, repo: Path, **env: str) -> rc.Run:
    """``ccxray codex exec ... "say hi"``: the launcher joins ``proxy`` and adds both base URLs."""
    return rc.run([*proxy.launcher("codex"), *CODEX_EXEC, "say hi"],
                  rc.codex_env(home, rc.search_path(codex_bin), PYTHONPATH=str(ROOT), **env), repo)


def check_codex_websocket(fake: FakeUpstream, proxy: SharedProxy, result: rc.Run, repo: Path,
                          target: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The checks common to API-key and ChatGPT WebSocket runs; returns (connection, turns, handshake)."""
    assert_codex_said_hi(result)
    assert FALLBACK not in result.stdout + result.stderr, result.describe()
    thread = thread_id(result.stdout)
    assert not [s for s in fake.seen if s["method"] == "POST" and s["target"].endswith("/responses")], \
        "the turn went over HTTP, not the WebSocket"

    hs = seen_one(fake, "GET", target, ws=True)
    assert rc.header(hs, "openai-beta") == "responses_websockets=2026-02-06"
    assert rc.header(hs, "session-id") == thread
    frames = [json.loads(f["text"]) for f in hs["frames"]]
    assert [f["type"] for f in frames] == ["response.create", "response.create"]
    assert frames[0].get("generate") is False and "previous_response_id" not in frames[0]
    assert "generate" not in frames[1] and frames[1].get("previous_response_id")

    lines = proxy.wait_lines(
        lambda ls: sum(l.get("kind") == "turn" for l in ls) >= 2 and any(l.get("kind") == "connection" for l in ls),
        LINE_WAIT_S, "two turn lines and a connection line")
    (conn,) = [l for l in lines if l["kind"] == "connection"]
    turns = [l for l in lines if l["kind"] == "turn"]
    assert conn["transport"] == "websocket" and conn["status"] == 101
    assert conn["method"] == "GET" and conn["url"] == "/v1/responses"
    assert conn["agent"] == "codex" and conn["provider"] == "openai"
    assert conn["sessionId"] == thread
    assert conn["frameCounts"]["clientToUpstream"] == 2
    assert conn["frameCounts"]["upstreamToClient"] >= 4
    assert conn["byteCounts"]["clientToUpstream"] >= sum(len(f["text"].encode()) for f in hs["frames"])
    # Codex closes TCP without a close frame at exit: a normal end, not an error.
    assert conn["close"] == {"side": "client", "code": 1006, "reason": None}, conn["close"]
    assert conn["error"] is None

    assert [t["requestKind"] for t in turns] == ["prewarm", "turn"]
    for turn in turns:
        assert turn["connectionId"] == conn["id"]
        assert turn["transport"] == "websocket" and turn["agent"] == "codex"
        assert turn["sessionId"] == thread
        assert turn["model"] == rc.CODEX_MODEL
        assert turn["stopReason"] == "completed" and turn["error"] is None
    prewarm, turn = turns
    assert prewarm["usage"]["output_tokens"] == 0
    assert turn["usage"]["input_tokens"] == 12 and turn["usage"]["output_tokens"] == 2
    assert prewarm["responseMetadata"]["responseId"] == frames[1]["previous_response_id"]
    # The prewarm carries no workspaces (REAL_CLIENTS.md); the turn's metadata names the repo.
    assert rc.same_path(turn["cwd"], repo), turn["cwd"]
    assert prewarm["cwd"] is None or rc.same_path(prewarm["cwd"], repo), prewarm["cwd"]

    recorded = read_request(proxy.logs, conn["id"])
    assert recorded[0]["data"]["generate"] is False
    # The client dropped TCP; upstream gets a close frame (1011) from the proxy.
    wait_until(lambda: [s for s in fake.seen if s.get("ws") and s["target"] == target
                        and (s.get("close") or s.get("client_gone"))], LINE_WAIT_S,
               "the upstream WebSocket to be closed by the proxy")
    closed = seen_one(fake, "GET", target, ws=True)
    assert closed["close"] is not None and closed["close"]["code"] == 1011, closed.get("close")
    return conn, turns, hs


# ---------------------------------------------------------------- Claude Code


def test_claude_print_json_through_proxy(claude_bin: str, fake: FakeUpstream, proxy: SharedProxy,
                                         tmp_path: Path) -> None:
    home = rc.make_home(tmp_path)
    work = home / "work"
    work.mkdir()
    result = rc.run([*proxy.launcher("claude"), *CLAUDE_ARGS],
                    rc.claude_env(home, rc.search_path(claude_bin), proxy.url, PYTHONPATH=str(ROOT)), work)
    assert result.returncode == 0, result.describe()
    out = json.loads(result.stdout)
    assert out["is_error"] is False and out["subtype"] == "success", out
    assert out["result"] == "hi" and out["stop_reason"] == "end_turn", out

    seen = seen_one(fake, "POST", "/v1/messages?beta=true")
    assert rc.header(seen, "x-api-key") == rc.ANTHROPIC_KEY
    session = rc.header(seen, "X-Claude-Code-Session-Id")
    assert session and out["session_id"] == session
    body = json.loads(seen["body"])
    assert body["stream"] is True

    lines = proxy.wait_lines(lambda ls: bool(calls(ls, "POST", "/v1/messages?beta=true")), LINE_WAIT_S,
                             "the /v1/messages call line")
    (line,) = calls(lines, "POST", "/v1/messages?beta=true")
    assert line["provider"] == "anthropic" and line["agent"] == "claude"
    assert line["transport"] == "http" and line["status"] == 200
    assert line["sessionId"] == session and line["sessionInferred"] is False
    assert line["isSSE"] is True
    assert line["model"] == body["model"]
    assert line["usage"]["input_tokens"] == 12 and line["usage"]["output_tokens"] == 2
    assert line["stopReason"] == "end_turn" and line["error"] is None
    assert rc.same_path(line["cwd"], work), line["cwd"]
    assert not calls(lines, "POST", "/v1/messages")  # nothing else went to the model
    assert_no_secrets(proxy.logs, rc.ANTHROPIC_KEY)


def launcher_argv(data: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "ccxray", "--port", "0", "--no-browser", "--home", str(data), *flags]


def wait_hub_gone(data: Path) -> None:
    """The launcher-started proxy leaves (flushing its log) a grace after its last launcher."""
    wait_until(lambda: not (data / "ccxray.pid").exists(), 30, "the shared proxy to leave")


def test_launcher_runs_claude_through_the_shared_proxy(claude_bin: str, fake: FakeUpstream, tmp_path: Path) -> None:
    home = rc.make_home(tmp_path)
    work = home / "work"
    work.mkdir()
    data = tmp_path / "ccxray-home"
    env = rc.claude_env(home, rc.search_path(claude_bin), fake.base_url, PYTHONPATH=str(ROOT),
                        CCXRAY_HUB_GRACE_MS="1")
    try:
        result = rc.run([*launcher_argv(data), "claude", *CLAUDE_ARGS], env, work)
        wait_hub_gone(data)
    finally:
        stop(HubPaths(data), None, 2.0)
    assert result.returncode == 0, result.describe()
    out = json.loads(result.stdout)  # the launcher's own messages go to stderr
    assert out["is_error"] is False and out["result"] == "hi", out
    assert "started proxy pid" in result.stderr, result.describe()

    seen = seen_one(fake, "POST", "/v1/messages?beta=true")
    assert rc.header(seen, "x-api-key") == rc.ANTHROPIC_KEY
    lines = list(read_index(data / "logs" / "index.ndjson"))
    (line,) = calls(lines, "POST", "/v1/messages?beta=true")
    assert line["agent"] == "claude" and line["provider"] == "anthropic" and line["status"] == 200
    assert line["sessionId"] == rc.header(seen, "X-Claude-Code-Session-Id") == out["session_id"]
    assert line["usage"]["output_tokens"] == 2 and line["stopReason"] == "end_turn"
    assert_no_secrets(data / "logs", rc.ANTHROPIC_KEY)


def test_claude_and_codex_launchers_share_one_proxy(claude_bin: str, codex_bin: str, fake: FakeUpstream,
                                                    tmp_path: Path) -> None:
    """Claude Code starts the proxy (kept), Codex (ChatGPT login, WebSocket) joins it."""
    home = rc.make_home(tmp_path)
    repo = rc.git_repo(home / "repo", home)
    jwt = rc.write_codex_chatgpt_login(home)
    data = tmp_path / "ccxray-home"
    path = rc.search_path(claude_bin, codex_bin)
    # The proxy keeps the upstreams of the launcher that started it: give it all three.
    upstreams = {"OPENAI_BASE_URL": fake.base_url + "/v1", "CHATGPT_BASE_URL": fake.base_url + "/backend-api/codex"}
    try:
        claude = rc.run([*launcher_argv(data, "--keep"), "claude", *CLAUDE_ARGS],
                        rc.claude_env(home, path, fake.base_url, PYTHONPATH=str(ROOT), **upstreams), repo)
        assert claude.returncode == 0 and json.loads(claude.stdout)["result"] == "hi", claude.describe()
        codex = rc.run([*launcher_argv(data), "codex", *CODEX_EXEC, "say hi"],
                       rc.codex_env(home, path, PYTHONPATH=str(ROOT)), repo)
    finally:
        stopped = stop(HubPaths(data), None, 2.0)
    pid = re.search(r"started proxy pid (\d+)", claude.stderr)
    assert pid and f"joined proxy pid {pid.group(1)}" in codex.stderr, claude.stderr + codex.stderr
    assert stopped["stopped"] and stopped["pid"] == int(pid.group(1))
    assert_codex_said_hi(codex)
    assert FALLBACK not in codex.stdout + codex.stderr, codex.describe()
    hs = seen_one(fake, "GET", "/backend-api/codex/responses", ws=True)
    assert rc.header(hs, "authorization") == f"Bearer {jwt}"
    lines = list(read_index(data / "logs" / "index.ndjson"))
    assert calls(lines, "POST", "/v1/messages?beta=true")[0]["agent"] == "claude"
    (conn,) = [l for l in lines if l.get("kind") == "connection"]
    assert conn["agent"] == "codex" and conn["sessionId"] == thread_id(codex.stdout)
    assert [t["requestKind"] for t in lines if t.get("kind") == "turn"] == ["prewarm", "turn"]


# ---------------------------------------------------------------- Codex, API key


def test_codex_http_sse_through_proxy(codex_bin: str, fake: FakeUpstream, proxy: SharedProxy,
                                      tmp_path: Path) -> None:
    home = rc.make_home(tmp_path)
    repo = rc.git_repo(home / "repo", home)
    rc.write_codex_provider_config(home, proxy.url + "/v1", websockets=False)
    result = run_codex(codex_bin, proxy, home, repo, OPENAI_API_KEY=rc.OPENAI_KEY)
    assert_codex_said_hi(result)
    thread = thread_id(result.stdout)

    seen = seen_one(fake, "POST", "/v1/responses")
    assert rc.header(seen, "authorization") == f"Bearer {rc.OPENAI_KEY}"
    session = rc.header(seen, "session-id")
    assert session == thread
    assert not [s for s in fake.seen if s.get("ws")]

    lines = proxy.wait_lines(lambda ls: bool(calls(ls, "POST", "/v1/responses")), LINE_WAIT_S,
                             "the /v1/responses call line")
    (line,) = calls(lines, "POST", "/v1/responses")
    assert line["provider"] == "openai" and line["agent"] == "codex"
    assert line["transport"] == "http" and line["status"] == 200 and line["isSSE"] is True
    assert line["sessionId"] == session
    assert rc.same_path(line["cwd"], repo), line["cwd"]
    assert line["model"] == rc.CODEX_MODEL
    assert line["usage"]["input_tokens"] == 12 and line["usage"]["output_tokens"] == 2
    assert line["stopReason"] == "completed" and line["error"] is None
    assert_no_secrets(proxy.logs, rc.OPENAI_KEY)


def test_codex_websocket_through_proxy(codex_bin: str, ws_pair: tuple[FakeUpstream, SharedProxy],
                                       tmp_path: Path) -> None:
    fake, proxy = ws_pair
    home = rc.make_home(tmp_path)
    repo = rc.git_repo(home / "repo", home)
    rc.write_codex_provider_config(home, proxy.url + "/v1", websockets=True)
    result = run_codex(codex_bin, proxy, home, repo, OPENAI_API_KEY=rc.OPENAI_KEY)
    _, _, hs = check_codex_websocket(fake, proxy, result, repo, "/v1/responses")
    assert rc.header(hs, "authorization") == f"Bearer {rc.OPENAI_KEY}"
    # Codex offers permessage-deflate; the proxy does not pass the offer on, so
    # even an upstream that would accept it talks uncompressed.
    assert rc.header(hs, "sec-websocket-extensions") is None
    assert_no_secrets(proxy.logs, rc.OPENAI_KEY)


# ---------------------------------------------------------------- Codex, ChatGPT login


def test_codex_chatgpt_login_websocket_through_proxy(codex_bin: str, fake: FakeUpstream, proxy: SharedProxy,
                                                     tmp_path: Path) -> None:
    home = rc.make_home(tmp_path)
    repo = rc.git_repo(home / "repo", home)
    jwt = rc.write_codex_chatgpt_login(home)
    result = run_codex(codex_bin, proxy, home, repo)  # the launcher points both base URLs at the proxy
    _, _, hs = check_codex_websocket(fake, proxy, result, repo, "/backend-api/codex/responses")
    assert rc.header(hs, "chatgpt-account-id") == rc.CHATGPT_ACCOUNT
    assert rc.header(hs, "authorization") == f"Bearer {jwt}"
    assert not [s for s in fake.seen if s["target"].startswith("/v1/")], \
        "a ChatGPT-login request reached the OpenAI upstream"
    # The fake answers the /api/codex/* calls by echoing the request, headers
    # included: those response bodies (faithfully recorded) are the one place
    # the secrets may appear; a real upstream does not echo them.
    echoed = frozenset(f"{l['id']}_res.json" for l in proxy.lines() if l["url"].startswith("/v1/api/codex/"))
    for name in echoed:
        echo = read_sidecar(proxy.logs, name[:-len("_res.json")], "res")
        assert set(echo) == {"method", "target", "headers", "body"}
    assert_no_secrets(proxy.logs, rc.CHATGPT_ACCOUNT, jwt, rc.CHATGPT_REFRESH, skip=echoed)
