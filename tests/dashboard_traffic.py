"""Agent-like traffic through a proxy in front of the fake upstream, for the dashboard tests.

A Claude Code-style conversation over SSE (thinking, a Read tool call, its
result, a follow-up under a changed system prompt), a Claude sub-agent call
and a Codex WebSocket session with a prewarm and two turns. The first prompt
carries markup on purpose: the page must show it as text.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from websockets.sync.client import connect

CLAUDE_SESSION = "5f1c2a7e-0000-4000-8000-00000000c1a0"
CODEX_SESSION = "019e-dash-codex"
CLAUDE_CWD = "/home/dev/shop"
CODEX_CWD = "/home/dev/engine"
HOSTILE_PROMPT = 'read notes.txt <script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
FOLLOW_UP = "thanks, now summarise the notes"
SUBAGENT_PROMPT = "Explore the repository layout and report back"
CODEX_PROMPTS = ("say hi", "now say bye")
CLAUDE_UA = "claude-cli/2.1.197 (external, cli)"


def claude_system(version: str, extra: str = "") -> list[dict[str, str]]:
    return [
        {"type": "text", "text": f"x-anthropic-billing-header: cc_version={version}.abc;"},
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Be concise.\n" + extra + "\n# Environment\nYou have been invoked in the "
                                 f"following environment:\n - Primary working directory: {CLAUDE_CWD}\n"
                                 " - Is a git repository: true\n"},
    ]


# descriptions as long as Claude Code's own (KBs each): its requests are never small, so they are
# stored as deltas (a body under reqdelta.WHOLE_BELOW_BYTES is stored as it came)
TOOLS = [
    {"name": "Read", "description": "Read a file. " + "Reads the file at the given path from the local filesystem. " * 40,
     "input_schema": {"type": "object"}},
    {"name": "Bash", "description": "Run a command. " + "Runs the command in a persistent shell session. " * 40,
     "input_schema": {"type": "object"}},
]


def post(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={
            "content-type": "application/json", "x-api-key": "sk-ant-secret", **headers})
        return conn.getresponse().read()
    finally:
        conn.close()


def claude_body(messages: list[dict[str, Any]], system: list[dict[str, str]], session: str | None) -> dict[str, Any]:
    metadata = {} if session is None else {
        "user_id": json.dumps({"device_id": "d" * 8, "account_uuid": "", "session_id": session})}
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True, "metadata": metadata,
            "system": system, "tools": TOOLS, "messages": messages}


def claude_step(port: int, messages: list[dict[str, Any]], system: list[dict[str, str]],
                session: str | None = CLAUDE_SESSION, mode: str = "agent") -> bytes:
    headers = {"user-agent": CLAUDE_UA, "x-fake-mode": mode}
    if session is not None:
        headers["X-Claude-Code-Session-Id"] = session
    return post(port, "/v1/messages", claude_body(messages, system, session), headers)


def claude_conversation(port: int) -> None:
    """Three calls: a tool call, the answer after its result, a follow-up under a new prompt."""
    v1 = claude_system("2.1.197")
    first = [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>Today is Monday.</system-reminder>"},
                                          {"type": "text", "text": HOSTILE_PROMPT}]}]
    claude_step(port, first, v1)
    second = first + [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants the file; read it first.", "signature": "sig"},
            {"type": "text", "text": "Let me read it."},
            {"type": "tool_use", "id": "toolu_fake_1", "name": "Read", "input": {"file_path": "notes.txt"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_fake_1", "content": "ship it"}]},
    ]
    claude_step(port, second, v1)
    third = second + [
        {"role": "assistant", "content": [{"type": "text", "text": "The notes say: ship it."}]},
        {"role": "user", "content": FOLLOW_UP},
    ]
    claude_step(port, third, claude_system("2.1.198", "Prefer short answers."))


def claude_subagent(port: int) -> None:
    """A Task sub-agent: Claude's user agent, no session id, its own prompt."""
    system = [{"type": "text", "text": "You are an agent for Claude Code. Explore and report."}]
    claude_step(port, [{"role": "user", "content": SUBAGENT_PROMPT}], system, session=None)


CODEX_HEADERS = {
    "Authorization": "Bearer sk-proj-secret",
    "openai-beta": "responses_websockets=2026-02-06",
    "session-id": CODEX_SESSION,
    "originator": "codex_exec",
    "user-agent": "codex_exec/0.169.0",
    "x-codex-turn-metadata": json.dumps({"session_id": CODEX_SESSION, "request_kind": "turn",
                                         "workspaces": {CODEX_CWD: {"latest_git_commit_hash": "abc"}}}),
}


def _codex_create(prompt: str, history: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    items = history + [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}]
    return {"type": "response.create", "model": "gpt-5.5", "instructions": "You are Codex, a coding agent.",
            "tools": [{"type": "function", "name": "shell"}, {"type": "web_search"}], "input": items, **extra}


def _until_completed(ws: Any) -> list[dict[str, Any]]:
    events = []
    while True:
        event = json.loads(ws.recv(timeout=20))
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "error"):
            return events


def codex_session(port: int) -> None:
    """One WebSocket: a prewarm, then two turns, each naming the previous response."""
    with connect(f"ws://127.0.0.1:{port}/v1/responses", additional_headers=CODEX_HEADERS) as ws:
        ws.send(json.dumps(_codex_create(CODEX_PROMPTS[0], [], generate=False)))
        previous = _until_completed(ws)[-1]["response"]["id"]
        history: list[dict[str, Any]] = []
        for prompt in CODEX_PROMPTS:
            ws.send(json.dumps(_codex_create(prompt, history, previous_response_id=previous)))
            done = _until_completed(ws)[-1]["response"]
            previous = done["id"]
            history = history + [{"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": prompt}]}] + done["output"]


def all_traffic(port: int) -> None:
    claude_conversation(port)
    claude_subagent(port)
    codex_session(port)
