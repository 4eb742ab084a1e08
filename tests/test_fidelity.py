"""Recording fidelity: what a real client does is recorded as what it is."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ccxray.sessions import prompt_hash

from .conftest import wait_until

CREATED = {"type": "response.created", "response": {"id": "r1", "model": "gpt-5.5", "status": "in_progress"}}
COMPLETED = {"type": "response.completed", "response": {
    "id": "r1", "model": "gpt-5.5", "status": "completed", "output": [],
    "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}}}


class HoldingUpstream:
    """Answers one streamed POST with the given events, then holds back the chunked
    terminator until ``release`` is set (Codex over HTTP leaves in that gap)."""

    def __init__(self, events: list[dict[str, object]]) -> None:
        self.events = events
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        sock, _ = self.listener.accept()
        with sock:
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += sock.recv(65536)
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for event in self.events:
                data = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            self.release.wait(20)
            try:
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the proxy closed this side when its client left

    def __enter__(self) -> "HoldingUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join()
        self.listener.close()


@pytest.fixture
def holding(request) -> Iterator[HoldingUpstream]:
    with HoldingUpstream(request.param) as upstream:
        yield upstream


@pytest.mark.parametrize("holding,error", [([CREATED, COMPLETED], False), ([CREATED], True)],
                         indirect=["holding"], ids=["after-completed", "mid-stream"])
def test_client_leaving_after_the_terminal_event_is_a_normal_end(make_proxy, holding, error):
    proxy = make_proxy(OPENAI_BASE_URL=f"http://127.0.0.1:{holding.port}/v1")
    body = json.dumps({"model": "gpt-5.5", "input": "hi", "stream": True}).encode()
    client = socket.create_connection(("127.0.0.1", proxy.port))
    with client:
        client.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
                       b"originator: codex_exec\r\ncontent-length: %d\r\n\r\n%s" % (proxy.port, len(body), body))
        got = b""
        last = holding.events[-1]["type"].encode()
        while last not in got:
            chunk = client.recv(65536)
            assert chunk, f"proxy closed before {last!r}: {got[:300]!r}"
            got += chunk
    (line,) = proxy.lines(1)
    holding.release.set()
    assert line["status"] == 200
    if error:
        assert line["error"].startswith("client disconnected")
    else:
        assert line["error"] is None and line["usage"]["output_tokens"] == 1


def post_responses(port: int, headers: dict[str, str], instructions: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/responses", body=json.dumps({"model": "gpt-5.5", "instructions": instructions,
                                                          "input": "go"}).encode(),
                 headers={"content-type": "application/json", **headers})
    assert conn.getresponse().read()
    conn.close()


@pytest.mark.parametrize("header", ["x-openai-agent-type", "x-codex-agent-type"])
def test_prompt_agent_type_is_kept_for_any_responses_client_naming_it_in_a_header(fake, proxy, header):
    post_responses(proxy.port, {header: "explorer"}, "You explore the repository.")  # not identified as Codex
    post_responses(proxy.port, {}, "A prompt without an agent type.")
    lines = proxy.lines(2)
    assert lines[0]["agent"] is None and lines[0]["agentType"] == "explorer"
    metas = list((proxy.logs / "shared").glob("openai_prompt_meta_*.json"))
    assert [m.name for m in metas] == [f"openai_prompt_meta_{prompt_hash('You explore the repository.')}.json"]
    assert json.loads(metas[0].read_text()) == {"agentType": "explorer"}


@pytest.mark.parametrize("path", ["/v1/responses/extra", "/v1/realtime/x", "/v1/responses/"])
def test_websocket_gate_is_the_two_endpoints_exactly(fake, proxy, path):
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{proxy.port}{path}", open_timeout=10)
    assert info.value.response.status_code == 404
    assert fake.seen == []
    with connect(f"ws://127.0.0.1:{proxy.port}/v1/responses?model=gpt-5.5",
                 additional_headers={"x-fake-mode": "echo"}) as ws:
        ws.send("ok")
        assert ws.recv(timeout=10) == "ok"
    wait_until(lambda: fake.seen, 10, "the allowed upgrade to reach upstream")
