"""Reference: the turn tracker that decodes every frame (what ccxray did before
it parsed frames lazily); tests check the lazy tracker gives the same facts.

Turns on one Codex (OpenAI Responses) WebSocket connection.

Theory of operation: a turn opens at a client-to-upstream `response.create`
text frame and closes at the upstream-to-client terminal event
(`response.completed`, `response.failed`, `response.incomplete`,
`response.done`) or at an `error` event. Every upstream event in between
belongs to it. Codex sends one `response.create` at a time; one arriving
while a turn is still open ends that turn as partial. `finish()` (the
connection ended) returns the open turn as partial.

Timestamps are the caller's clock in seconds (e.g. `time.time()`); the
tracker never reads a clock. Non-JSON and binary frames are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ccxray.wire import RequestFacts, ResponseFacts, as_dict, get_dict
from ccxray.wire import openai

_FIRST_TOKEN_ITEMS = frozenset({"message", "function_call", "custom_tool_call"})
SUPERSEDED = "superseded by a new response.create before the turn ended"


@dataclass
class Turn:
    """One `response.create` and everything upstream sent for it."""

    connection_id: str
    index: int
    started: float
    ended: float
    request: dict[str, object]
    request_facts: RequestFacts
    response: ResponseFacts
    events: list[dict[str, object]]
    request_kind: str
    first_token_ts: float | None
    partial: bool
    error: str | None
    bytes_c2u: int = 0
    bytes_u2c: int = 0

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds from the `response.create` frame to the turn's end."""
        return round((self.ended - self.started) * 1000, 1)

    @property
    def ttft_ms(self) -> float | None:
        """Milliseconds to the first output (text delta or announced message/tool call)."""
        if self.first_token_ts is None:
            return None
        return round((self.first_token_ts - self.started) * 1000, 1)


@dataclass
class _OpenTurn:
    index: int
    started: float
    request: dict[str, object]
    size: int
    events: list[dict[str, object]] = field(default_factory=list)
    first_token_ts: float | None = None
    bytes_u2c: int = 0


def _is_first_token(event: dict[str, object]) -> bool:
    kind = event.get("type")
    if kind == "response.output_text.delta":
        return True
    item = get_dict(event, "item")
    return kind == "response.output_item.added" and item is not None and item.get("type") in _FIRST_TOKEN_ITEMS


def _error_text(err: dict[str, object]) -> str:
    message = err.get("message")
    return f"{err['type']}: {message}" if isinstance(message, str) and message else str(err["type"])


class TurnTracker:
    """Feed every data frame of one connection; get back the turns each frame finished."""

    def __init__(self, connection_id: str) -> None:
        self.connection_id = connection_id
        self._open: _OpenTurn | None = None
        self._next_index = 0

    def on_frame(self, direction: str, ts: float, text: str | None, size: int) -> list[Turn]:
        """Account one frame ("c2u"/"u2c"; text None for binary); returns the turns it ended."""
        if text is None:
            return []
        try:  # as the recorder parsed frames (json.loads, NaN included)
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        return self.on_event(direction, ts, value, size)

    def on_event(self, direction: str, ts: float, value: object, size: int) -> list[Turn]:
        """Like on_frame, for a frame the caller already parsed (None if it was not JSON)."""
        event = as_dict(value)
        if event is None:
            return []
        if direction == "c2u":
            return self._client_event(event, ts, size)
        if direction == "u2c" and self._open is not None:
            return self._upstream_event(self._open, event, ts, size)
        return []

    def finish(self, ts: float, reason: str) -> list[Turn]:
        """The connection ended: the open turn, if any, as a partial turn with `error=reason`."""
        if self._open is None:
            return []
        return [self._close(ts, partial=True, error=reason)]

    def _client_event(self, event: dict[str, object], ts: float, size: int) -> list[Turn]:
        if event.get("type") != "response.create":
            return []
        done = self.finish(ts, SUPERSEDED)
        self._open = _OpenTurn(index=self._next_index, started=ts, request=event, size=size)
        self._next_index += 1
        return done

    def _upstream_event(self, turn: _OpenTurn, event: dict[str, object], ts: float, size: int) -> list[Turn]:
        turn.events.append(event)
        turn.bytes_u2c += size
        if turn.first_token_ts is None and _is_first_token(event):
            turn.first_token_ts = ts
        kind = event.get("type")
        if kind in openai.TERMINAL_EVENTS:
            return [self._close(ts, partial=False, error=None)]
        if kind == "error":
            return [self._close(ts, partial=False, error=None)]
        return []

    def _close(self, ts: float, partial: bool, error: str | None) -> Turn:
        turn, self._open = self._open, None
        if turn is None:
            raise AssertionError("no open turn to close")
        response = openai.fold_events(turn.events)
        response.first_token_ts = turn.first_token_ts
        return Turn(
            connection_id=self.connection_id, index=turn.index, started=turn.started, ended=ts,
            request=turn.request, request_facts=openai.request_facts(turn.request), response=response,
            events=turn.events, request_kind="prewarm" if turn.request.get("generate") is False else "turn",
            first_token_ts=turn.first_token_ts, partial=partial,
            error=error if error is not None or response.error is None else _error_text(response.error),
            bytes_c2u=turn.size, bytes_u2c=turn.bytes_u2c,
        )


__all__ = ["Turn", "TurnTracker", "SUPERSEDED"]
