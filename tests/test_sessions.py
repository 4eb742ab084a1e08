"""Who is talking: identify() on what the real clients send, and SessionTracker."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccxray.sessions import Identity, SessionTracker, codex_may_name_session, identify, identify_codex, prompt_hash
from ccxray.sessions import codex_headers as read_codex_headers

from .recorded import shared, shared_path

SID = "6f1c9a3e-2b7d-4c1e-9f00-1234567890ab"
THREAD = "019e6dc4-eef8-7190-8047-46445b850061"


def fixture(rel: str) -> object:
    return shared(rel)


# Claude Code 2.1.197's POST /v1/messages headers (REAL_CLIENTS.md), secrets elided.
CLAUDE_HEADERS = [
    ("Accept", "application/json"), ("Content-Type", "application/json"),
    ("User-Agent", "claude-cli/2.1.197 (external, sdk-cli)"), ("X-Claude-Code-Session-Id", SID),
    ("X-Stainless-Lang", "js"), ("anthropic-version", "2023-06-01"), ("x-api-key", "sk-ant-elided"),
    ("x-app", "cli"), ("Connection", "keep-alive"),
]


def claude_body(session_id: str | None = SID, env: str = " - Primary working directory: /home/u/proj\n") -> dict[str, object]:
    metadata = {} if session_id is None else {
        "user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": session_id})}
    return {
        "model": "claude-opus-4-8", "metadata": metadata, "stream": True,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.123;"},
                   {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK."},
                   {"type": "text", "text": "Prompt.\n\n# Environment\nYou have been invoked in the following "
                                            "environment:\n" + env + " - Is a git repository: false\n"}],
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_claude_code_headers_and_body() -> None:
    ident = identify("anthropic", CLAUDE_HEADERS, claude_body())
    assert ident == Identity(session_id=SID, agent="claude", cwd="/home/u/proj")


def test_claude_session_from_header_without_body() -> None:
    ident = identify("anthropic", CLAUDE_HEADERS, None)
    assert (ident.session_id, ident.agent, ident.is_subagent) == (SID, "claude", False)


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"user_id": json.dumps({"device_id": "d", "account_uuid": "", "session_id": "s-json"})}, "s-json"),
    ({"user_id": "user_" + "a" * 64 + "_account_" + SID + "_session_" + SID}, SID),
    ({"user_id": "user_abc_account__session_0000-11"}, "0000-11"),
    ({"session_id": "s-meta", "user_id": "user-test"}, "s-meta"),
    ({"user_id": "{not json"}, None),
    ({"user_id": 5}, None),
    ({}, None),
])
def test_claude_session_from_metadata(metadata: dict[str, object], expected: str | None) -> None:
    ident = identify("anthropic", [("user-agent", "claude-cli/2.1.197 (external, cli)")], {"metadata": metadata})
    assert ident.session_id == expected
    assert ident.is_subagent == (expected is None)


def test_claude_fixture_metadata_session() -> None:
    ident = identify("anthropic", [("x-app", "cli")], fixture("anthropic/turn1_req.json"))
    assert (ident.session_id, ident.agent, ident.cwd) == ("abc123-test-session-001", "claude", None)


@pytest.mark.parametrize(("env", "cwd"), [
    (" - Primary working directory: /a/b c\n", "/a/b c"),
    ("<env>\nWorking directory: /legacy/dir\nIs directory a git repo: No\n</env>\n", "/legacy/dir"),
    ("Working directory: `/quoted`\n", "/quoted"),
    (" - Additional working directories: /other\n", None),
    ("", None),
])
def test_claude_cwd_from_environment_block(env: str, cwd: str | None) -> None:
    assert identify("anthropic", CLAUDE_HEADERS, claude_body(env=env)).cwd == cwd


def test_claude_cwd_from_a_system_role_message() -> None:
    body = {"system": "plain", "messages": [{"role": "system", "content": "<env>\nWorking directory: /m\n</env>"}]}
    assert identify("anthropic", CLAUDE_HEADERS, body).cwd == "/m"


def test_non_claude_anthropic_traffic() -> None:
    ident = identify("anthropic", [("user-agent", "Anthropic/Python 0.40.0")], {"model": "claude-haiku-4-5"})
    assert ident == Identity()


# Codex 0.169's headers (REAL_CLIENTS.md).
TURN_METADATA = {
    "installation_id": "i", "session_id": THREAD, "thread_id": THREAD, "agent_name": "/root",
    "turn_id": "turn-1", "window_id": f"{THREAD}:0", "request_kind": "turn", "thread_source": "user",
    "workspaces": {"/home/u/repo": {"latest_git_commit_hash": "abc", "has_changes": False}}, "model": "gpt-5.5",
}


def codex_headers(**meta: object) -> list[tuple[str, str]]:
    return [
        ("authorization", "Bearer sk-elided"), ("originator", "codex_exec"),
        ("user-agent", "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)"),
        ("session-id", THREAD), ("thread-id", THREAD), ("x-client-request-id", THREAD),
        ("x-codex-window-id", f"{THREAD}:0"), ("x-codex-beta-features", "remote_compaction_v2"),
        ("x-codex-turn-metadata", json.dumps({**TURN_METADATA, **meta}, separators=(",", ":"))),
    ]


def test_codex_http_headers() -> None:
    ident = identify("openai", codex_headers(), {"model": "gpt-5.5", "input": []})
    assert ident == Identity(session_id=THREAD, agent="codex", agent_type="default", cwd="/home/u/repo",
                             thread_id=THREAD, turn_id="turn-1", request_kind="turn")


def test_codex_websocket_upgrade_without_body() -> None:
    ident = identify("openai", codex_headers(request_kind="prewarm", turn_id=""), None)
    assert (ident.session_id, ident.thread_id, ident.turn_id, ident.request_kind) == (THREAD, THREAD, None, "prewarm")
    assert ident.cwd == "/home/u/repo" and ident.agent == "codex"


def test_codex_review_subagent() -> None:
    headers = codex_headers(subagent_kind="review", thread_source="subagent") + [("x-openai-subagent", "review")]
    ident = identify("openai", headers, None)
    assert (ident.is_subagent, ident.agent_type) == (True, "review")


@pytest.mark.parametrize(("extra", "expected"), [
    ([("x-openai-agent-type", "Explorer")], "explorer"),
    ([("x-codex-agent-type", "worker")], "worker"),
])
def test_codex_agent_type_headers(extra: list[tuple[str, str]], expected: str) -> None:
    assert identify("openai", codex_headers() + extra, None).agent_type == expected


@pytest.mark.parametrize(("name", "expected"), [("/root", "default"), ("/root/worker", "worker"), ("", None)])
def test_codex_agent_name(name: str, expected: str | None) -> None:
    assert identify("openai", [("x-codex-turn-metadata", json.dumps({"agent_name": name}))], None).agent_type == expected


def test_codex_alternative_session_headers() -> None:
    assert identify("openai", [("session_id", "a")], None).session_id == "a"
    assert identify("openai", [("x-openai-session-id", "b")], None).session_id == "b"
    assert identify("openai", [("session_id", "a")], None).agent is None


def say_hi_frame(index: int) -> dict[str, object]:
    path = shared_path("codex-ws/say-hi.ndjson")
    frame = json.loads(path.read_text(encoding="utf-8").splitlines()[index])
    return json.loads(frame["text"])  # type: ignore[no-any-return]


def test_codex_frames_client_metadata() -> None:
    prewarm = identify("openai", [], say_hi_frame(0))
    assert (prewarm.session_id, prewarm.thread_id, prewarm.request_kind) == (THREAD, THREAD, "prewarm")
    assert prewarm.cwd == "/Users/justinlee/dev/ccxray" and prewarm.agent == "codex"
    assert prewarm.turn_id is None
    turn = identify("openai", codex_headers(request_kind="prewarm", turn_id=""), say_hi_frame(4))
    assert (turn.request_kind, turn.turn_id) == ("turn", "019e6dc4-f65c-7dc0-af39-6f8ca01e3fbb")
    assert turn.cwd == "/Users/justinlee/dev/ccxray"


def test_codex_cwd_from_environment_context() -> None:
    body = {"input": [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "<environment_context>\n  <cwd>/env/cwd</cwd>\n</environment_context>"}]}]}
    assert identify("openai", [("originator", "codex_exec")], body).cwd == "/env/cwd"


def test_openai_fixture_metadata() -> None:
    ident = identify("openai", [], fixture("openai/turn1_req.json"))
    assert (ident.session_id, ident.cwd, ident.turn_id) == (
        "019e6d05-02ad-7d83-afa0-6c480945a1be", "/Users/test/project", "019e6d05-096f-74b0-b026-9f83af64469e")


def test_unknown_provider() -> None:
    assert identify("grok", CLAUDE_HEADERS, claude_body()) == Identity()


def test_tracker_infers_the_active_claude_session() -> None:
    tracker = SessionTracker()
    orphan = identify("anthropic", [("x-app", "cli")], {})
    assert tracker.resolve(orphan, 1.0) == orphan
    parent = tracker.resolve(identify("anthropic", CLAUDE_HEADERS, claude_body()), 2.0)
    assert parent.session_id == SID and not parent.session_inferred
    other = identify("anthropic", [("x-app", "cli")], claude_body(session_id="other", env=""))
    tracker.resolve(other, 1.5)  # older: does not become the active session
    child = tracker.resolve(orphan, 3.0)
    assert (child.session_id, child.session_inferred, child.is_subagent, child.cwd) == (SID, True, True, "/home/u/proj")
    tracker.resolve(other, 4.0)
    assert tracker.resolve(orphan, 5.0).session_id == "other"


def test_tracker_leaves_codex_sessions_alone() -> None:
    tracker = SessionTracker()
    ident = identify("openai", codex_headers(), None)
    assert tracker.resolve(ident, 1.0) == ident
    bare = identify("openai", [("originator", "codex_exec")], None)
    assert tracker.resolve(bare, 2.0) == bare


def test_prompt_agent_memory() -> None:
    tracker = SessionTracker()
    prompt = "You are a worker agent."
    key = tracker.remember_prompt_agent(prompt, "worker")
    assert key == prompt_hash(prompt) and len(key) == 16
    assert tracker.remember_prompt_agent(prompt, "worker") is None
    assert tracker.remember_prompt_agent(prompt, "default") is None
    assert tracker.agent_type_for_prompt(prompt) == "worker"
    assert tracker.remember_prompt_agent(prompt, "explorer") == key
    assert tracker.agent_type_for_prompt("neutral prompt") is None
    assert tracker.remember_prompt_agent("", "worker") is None


def test_prompt_agent_restore_and_resolve() -> None:
    tracker = SessionTracker()
    neutral = "You are Codex, a coding agent."
    tracker.restore_prompt_agent(prompt_hash(neutral), "explorer")
    ident = identify("openai", [("originator", "codex_exec")], None)
    assert ident.agent_type is None
    assert tracker.resolve(ident, 1.0, system_text=neutral).agent_type == "explorer"
    assert tracker.resolve(ident, 1.0, system_text="unknown").agent_type is None
    assert tracker.remember_prompt_agent(neutral, "default") is None


def test_prompt_hash_survives_lone_surrogates() -> None:
    assert len(prompt_hash("\ud800 broken")) == 16


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
header_names = st.sampled_from(["user-agent", "x-app", "x-claude-code-session-id", "session-id", "thread-id",
                                "x-codex-turn-metadata", "originator", "x-openai-subagent", "x-openai-agent-type"])
header_values = st.one_of(st.text(max_size=20), json_values.map(json.dumps))
bodies = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "metadata": json_values, "client_metadata": st.one_of(json_values, st.fixed_dictionaries(
        {"x-codex-turn-metadata": header_values})),
    "system": json_values, "messages": json_values, "input": json_values, "type": st.just("response.create"),
}))


@given(st.sampled_from(["anthropic", "openai", "x"]), st.lists(st.tuples(header_names, header_values), max_size=5),
       bodies)
def test_identify_never_raises(provider: str, headers: list[tuple[str, str]], body: object) -> None:
    ident = identify(provider, headers, body)
    tracker = SessionTracker()
    assert tracker.resolve(ident, 0.0, system_text="p").session_inferred is False


def test_prompt_digests_remember_recent_prompts_by_value() -> None:
    from ccxray.sessions import PromptDigests
    digests = PromptDigests(size=2)
    first = "You are Codex." * 1000
    assert digests(first) == prompt_hash(first)
    same = "".join(["You are Codex."] * 1000)  # equal text, another object (a new frame's)
    assert same is not first and digests(same) == prompt_hash(first)
    assert digests("b") == prompt_hash("b") and digests("c") == prompt_hash("c")  # `first` is evicted
    assert digests(first + "!") == prompt_hash(first + "!") and digests(first) == prompt_hash(first)


_META_VALUES = st.one_of(st.none(), st.just({}), st.just("x"),
                         st.fixed_dictionaries({}, optional={"session_id": st.sampled_from(["s1", ""]),
                                                             "x-codex-turn-metadata": st.just('{"session_id":"s2"}')}))


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={"client_metadata": _META_VALUES, "metadata": _META_VALUES,
                                           "type": st.just("response.create"), "input": st.just("hi")}),
       st.sampled_from([[], [("session_id", "h1")], [("x-codex-turn-metadata", '{"session_id":"m1"}')],
                        [("x-codex-turn-metadata", '{"turn_id":"t"}')], [("originator", "codex_cli_rs")]]))
def test_a_frame_said_to_name_no_session_names_none(body: dict[str, object], headers: list[tuple[str, str]]) -> None:
    parsed = read_codex_headers(headers)
    if not codex_may_name_session(parsed, body):
        assert identify_codex(parsed, body).session_id is None
    if identify_codex(parsed, body).session_id is not None:
        assert codex_may_name_session(parsed, body)
