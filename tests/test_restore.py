"""Restart and retention: what the log rebuilds, what pruning drops, what it must not lose."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from pathlib import Path

from websockets.sync.client import connect

from ccxray.config import load_settings
from ccxray.server import ProxyServer
from ccxray.store import Store, read_index

from .conftest import ProxyHandle, proxy_env


def post(port: int, body: dict, headers: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", body.pop("_path", "/v1/messages"), body=json.dumps(body).encode(), headers=headers)
    assert conn.getresponse().read()
    conn.close()


def start(fake, home: Path, **extra: str) -> ProxyHandle:
    return ProxyHandle(ProxyServer(load_settings(proxy_env(fake, home, **extra), port=0)).start())


CODEX_PROMPT = "You are a worker sub-agent. Do the task you are given."


def traffic(proxy: ProxyHandle) -> None:
    claude = {"model": "claude-haiku-4-5", "max_tokens": 5, "stream": True,
              "messages": [{"role": "user", "content": "fix it"}],
              "system": "Environment\nWorking directory: /home/u/proj\n"}
    post(proxy.port, dict(claude), {"X-Claude-Code-Session-Id": "claude-s1", "User-Agent": "claude-cli/2.1.197"})
    post(proxy.port, dict(claude), {"User-Agent": "claude-cli/2.1.197"})  # a sub-agent call without a session
    codex = {"_path": "/v1/responses", "model": "gpt-5", "instructions": CODEX_PROMPT, "input": "go"}
    post(proxy.port, dict(codex), {"originator": "codex_exec", "session-id": "codex-s1", "x-openai-agent-type": "worker"})
    with connect(f"ws://127.0.0.1:{proxy.port}/v1/responses",
                 additional_headers={"originator": "codex_exec", "session-id": "codex-s2"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-5", "input": [], "generate": False}))
        while json.loads(ws.recv(timeout=10))["type"] != "response.completed":
            pass


def test_restart_restores_sessions_agent_types_and_costs(fake, tmp_path):
    home = tmp_path / "home"
    first = start(fake, home)
    try:
        traffic(first)
        first.lines(5)
        before = {s["sessionId"]: s for s in first.server.app.sessions.list()}
    finally:
        first.server.stop()
    assert before["claude-s1"]["calls"] == 2  # the sub-agent call joined its parent session
    second = start(fake, home)
    try:
        assert second.server.recorder.flush(10)
        after = {s["sessionId"]: s for s in second.server.app.sessions.list()}
        assert after == before
        # the prompt's agent type survives the restart: no header this time
        post(second.port, {"_path": "/v1/responses", "model": "gpt-5", "instructions": CODEX_PROMPT, "input": "again"},
             {"originator": "codex_exec", "session-id": "codex-s1"})
        last = second.lines(6)[-1]
        assert last["agentType"] == "worker"
        # a sub-agent call after the restart still joins the last active Claude session
        post(second.port, {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}, {"User-Agent": "claude-cli/2.1.197"})
        last = second.lines(7)[-1]
        assert last["sessionId"] == "claude-s1" and last["sessionInferred"] is True
    finally:
        second.server.stop()


def test_torn_and_invalid_lines_are_skipped_and_counted(fake, tmp_path):
    home = tmp_path / "home"
    logs = home / "logs"
    logs.mkdir(parents=True)
    good = {"id": "a", "sessionId": "s", "receivedAt": int(time.time() * 1000), "kind": "call"}
    (logs / "index.ndjson").write_bytes(json.dumps(good).encode() + b"\nnot json\n[1,2]\n{\"id\": \"torn")
    proxy = start(fake, home)
    try:
        post(proxy.port, {"model": "claude-haiku-4-5", "messages": []}, {})
        lines = proxy.lines(2)
        assert [l["id"] for l in lines][0] == "a" and len(lines) == 2  # the new line did not glue onto the torn one
        stats = proxy.server.app.restore_stats
        assert stats is not None and stats.lines == 1 and stats.skipped == 3
    finally:
        proxy.server.stop()


def test_retention_prunes_old_lines_and_sidecars(fake, tmp_path):
    home = tmp_path / "home"
    logs = home / "logs"
    logs.mkdir(parents=True)
    now = time.time()
    old = {"id": "old1", "receivedAt": int((now - 10 * 86400) * 1000), "kind": "call"}
    new = {"id": "new1", "receivedAt": int((now - 1 * 86400) * 1000), "kind": "call"}
    (logs / "index.ndjson").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    for call_id, age in (("old1", 10), ("new1", 1)):
        path = logs / f"{call_id}_req.json"
        path.write_text("{}")
        os.utime(path, (now - age * 86400, now - age * 86400))
    proxy = start(fake, home, LOG_RETENTION_DAYS="3")
    try:
        assert proxy.server.recorder.flush(10)
        assert [l["id"] for l in read_index(logs / "index.ndjson")] == ["new1"]
        assert not (logs / "old1_req.json").exists() and (logs / "new1_req.json").exists()
    finally:
        proxy.server.stop()


def test_prune_loses_no_line_appended_meanwhile(tmp_path):
    logs = tmp_path / "logs"
    pruner, writer = Store(logs), Store(logs)
    now_ms = int(time.time() * 1000)
    for i in range(20000):
        pruner.append({"id": f"old{i}", "receivedAt": 0})
    stop = threading.Event()
    written: list[str] = []

    def keep_writing() -> None:
        i = 0
        while not stop.is_set() or i < 50:
            writer.append({"id": f"live{i}", "receivedAt": now_ms})
            written.append(f"live{i}")
            i += 1

    t = threading.Thread(target=keep_writing)
    t.start()
    try:
        dropped = pruner.rewrite_index(lambda line: line.get("receivedAt", 0) > 0)
    finally:
        stop.set()
        t.join()
        pruner.close()
        writer.close()
    assert dropped == 20000
    ids = [l["id"] for l in read_index(logs / "index.ndjson")]
    assert ids == written
