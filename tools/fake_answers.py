"""What the fake upstream answers an ordinary HTTP request with; no socket I/O.

``Exchange`` is one request as received, ``Answer`` a whole body or SSE
events sent one per write. ``normal_answer`` routes a path to the Anthropic
Messages, Responses or Chat Completions answer (or an echo), and
``response_head`` builds the h11 head with a reason phrase. ``fake_http``
sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11

from tools.fake_modes import requested_mode
from tools.fake_payloads import (
    DEFAULT_MODEL,
    MODELS_BODY,
    Json,
    anthropic_events,
    anthropic_message,
    chat_chunks,
    chat_completion,
    codex_events,
    json_bytes,
    parse_json_object,
    sse_event,
)


CONTENT_JSON = b"application/json"
CONTENT_SSE = b"text/event-stream"
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}  # h11 sends none by itself


@dataclass(frozen=True)
class Exchange:
    """One HTTP request as received."""

    method: str
    target: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]  # raw names, as received
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The values of header ``name`` (lowercase) joined by commas, or None."""
        values = [value for key, value in self.headers if key.lower() == name]
        return b", ".join(values) if values else None

    @property
    def is_upgrade(self) -> bool:
        upgrade = self.header(b"upgrade")
        return upgrade is not None and b"websocket" in upgrade.lower()

    @property
    def mode_text(self) -> str | None:
        return requested_mode(self.query, self.headers)

    def seen_entry(self) -> Json:
        return {
            "method": self.method,
            "target": self.target,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
            "body": self.body.decode("utf-8", "replace"),
            "ws": self.is_upgrade,
        }


@dataclass(frozen=True)
class Answer:
    """A normal answer: one body, or SSE events sent one per write."""

    content_type: bytes
    chunks: Sequence[bytes]
    is_stream: bool

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def json_answer(obj: Any) -> Answer:
    return Answer(CONTENT_JSON, [json_bytes(obj)], is_stream=False)


def sse_answer(events: Sequence[bytes]) -> Answer:
    return Answer(CONTENT_SSE, events, is_stream=True)


def echo_object(ex: Exchange) -> Json:
    entry = ex.seen_entry()
    return {key: entry[key] for key in ("method", "target", "headers", "body")}


def normal_answer(ex: Exchange, number: int) -> Answer:
    """The successful answer for a path; ``number`` makes the ids unique."""
    if ex.method == "POST":
        for suffix, build in _POST_ROUTES:
            if ex.path.endswith(suffix):
                return build(parse_json_object(ex.body), number)
    if ex.method in ("GET", "HEAD"):
        if ex.path == "/":
            return Answer(b"text/plain", [b"ccxray fake upstream\n"], is_stream=False)
        if ex.path.endswith("/models"):
            return json_answer(MODELS_BODY)
    return json_answer(echo_object(ex))


def _model(request: Json, default: str) -> str:
    return str(request.get("model") or default)


def anthropic_answer(request: Json, number: int) -> Answer:
    model, msg_id = _model(request, "claude-fake"), f"msg_fake_{number}"
    if request.get("stream") is True:
        return sse_answer(anthropic_events(model, msg_id))
    return json_answer(anthropic_message(model, msg_id))


def responses_answer(request: Json, number: int) -> Answer:
    events = codex_events(request, number)
    if request.get("stream") is True:
        return sse_answer([sse_event(event["type"], event) for event in events])
    return json_answer(events[-1]["response"])


def chat_answer(request: Json, number: int) -> Answer:
    model = _model(request, DEFAULT_MODEL)
    if request.get("stream") is True:
        return sse_answer(chat_chunks(model, number))
    return json_answer(chat_completion(model, number))


_POST_ROUTES: list[tuple[str, Callable[[Json, int], Answer]]] = [
    ("/v1/messages", anthropic_answer),
    ("/responses", responses_answer),
    ("/chat/completions", chat_answer),
]


def response_head(status: int, headers: Sequence[tuple[bytes, bytes]]) -> h11.Response:
    return h11.Response(status_code=status, headers=list(headers), reason=REASONS.get(status, b""))
