"""Turns on one Codex (OpenAI Responses) WebSocket connection.

Theory of operation: a turn opens at a client-to-upstream `response.create`
text frame and closes at the upstream-to-client terminal event
(`response.completed`, `response.failed`, `response.incomplete`,
`response.done`) or at an `error` event. Every upstream event in between
belongs to it. Codex sends one `response.create` at a time; one arriving
while a turn is still open ends that turn as partial. `finish()` (the
connection ended) returns the open turn as partial.

Frames are parsed lazily: an event's type is read from its first bytes
(``{"type":"...``, how every real capture starts; anything else is parsed
whole), and only what the turn's facts need is decoded: the
`response.create`, the terminal or error event, the events the response
fold reads, and the first candidate for the first token. Deltas are decoded
only when they could change the turn's line: not when the terminal output
settles what they would add (see `openai.fold_settled`), nor when no text
could open like a generated title (see `_unbraced`). The line's facts are
those of decoding every frame; the response text and tool-call arguments of
a `Turn` then leave out what the deltas held.

Timestamps are the caller's clock in seconds (e.g. `time.time()`); the
tracker never reads a clock. Non-JSON and binary frames are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from . import RequestFacts, ResponseFacts, as_dict, get_dict
from . import openai

_FIRST_TOKEN_ITEMS = frozenset({"message", "function_call", "custom_tool_call"})
SUPERSEDED = "superseded by a new response.create before the turn ended"
CREATE = "response.create"
_TEXT_DELTA = openai.TEXT_DELTA
_ITEM_ADDED = "response.output_item.added"
_DELTAS = frozenset({_TEXT_DELTA, "response.function_call_arguments.delta", "response.custom_tool_call_input.delta"})
_ENDS = openai.TERMINAL_EVENTS | {"error"}
_FOLDED = openai.FOLDED_EVENTS - _DELTAS  # decoded for the fold whatever the deltas do
_HEADS = ('{"type":"', '{"type": "')
_HEAD_LEN = len(_HEADS[0])
# one value from an index, without loads()'s whitespace regexes: half its cost on a small frame
_SCAN: Callable[[str, int], tuple[object, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def event_kind(text: str) -> str | None:
    """The `type` an event's text opens with (``{"type":"...``), or None when it
    does not open so (the caller parses it whole)."""
    if text.startswith(_HEADS[0]):
        start = len(_HEADS[0])
    elif text.startswith(_HEADS[1]):
        start = len(_HEADS[1])
    else:
        return None
    end = text.find('"', start)
    kind = text[start:end]
    return None if end < 0 or "\\" in kind else kind


def decode(text: str) -> object:
    """The JSON value of ``text`` (as ``json.loads``), or None when it is not JSON."""
    try:
        value, end = _SCAN(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError, RecursionError):
        pass
    try:
        return json.loads(text)  # leading or trailing whitespace, or not JSON at all
    except (ValueError, RecursionError):
        return None


Row = tuple[str | None, str, float, int]  # (type from the head, text, ts, payload bytes)


class Frames:
    """A turn's upstream frames as rows (type from the head, text, ts, size),
    each decoded on demand, at most once (a row is cheaper to keep than an object)."""

    __slots__ = ("rows", "_values")

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self._values: dict[int, dict[str, object] | None] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def keep(self, at: int, value: dict[str, object]) -> None:
        """The decoded value of row ``at``, worked out by the caller already."""
        self._values[at] = value

    def value(self, at: int) -> dict[str, object] | None:
        """Row ``at`` as a JSON object, None when it is not one."""
        try:
            return self._values[at]
        except KeyError:
            value = self._values[at] = as_dict(decode(self.rows[at][1]))
            return value


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
    frames: Frames
    request_kind: str
    first_token_ts: float | None
    partial: bool
    error: str | None
    bytes_c2u: int = 0

    @property
    def events(self) -> list[dict[str, object]]:
        """The upstream events of the turn, decoded (frames that are not JSON objects left out)."""
        values = (self.frames.value(at) for at in range(len(self.frames)))
        return [v for v in values if v is not None]

    @property
    def bytes_u2c(self) -> int:
        """Payload bytes of the turn's upstream events."""
        frames = self.frames
        return sum(row[3] for at, row in enumerate(frames.rows) if frames.value(at) is not None)

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
    request_facts: RequestFacts
    size: int
    frames: Frames = field(default_factory=Frames)


def _is_first_token(event: dict[str, object]) -> bool:
    kind = event.get("type")
    if kind == _TEXT_DELTA:
        return True
    item = get_dict(event, "item")
    return kind == _ITEM_ADDED and item is not None and item.get("type") in _FIRST_TOKEN_ITEMS


def _first_token_ts(frames: Frames) -> float | None:
    """When the first output came: the first frame that decodes as a first token
    (only frames whose head says they could be one are decoded)."""
    for at, (kind, _, ts, _) in enumerate(frames.rows):
        if kind in (_TEXT_DELTA, _ITEM_ADDED) or kind is None:
            value = frames.value(at)
            if value is not None and _is_first_token(value):
                return ts
    return None


def _has_output(event: dict[str, object]) -> bool:
    """Whether an event carries a response with output items (only those can settle the deltas)."""
    output = (get_dict(event, "response") or {}).get("output")
    return isinstance(output, list) and bool(output)


def _fold(frames: Frames) -> ResponseFacts:
    """The line's response facts, decoding deltas only when the rest does not settle them."""
    rest: list[dict[str, object]] = []
    deltas: list[str] = []  # texts of the text deltas
    other_deltas = False
    for at, (kind, text, _, _) in enumerate(frames.rows):
        if kind in _DELTAS:
            if kind == _TEXT_DELTA:
                deltas.append(text)
            else:
                other_deltas = True
        elif kind is None or kind in _FOLDED:
            value = frames.value(at)
            if value is not None:
                rest.append(value)
    if not deltas and not other_deltas:
        return openai.fold_events(rest)
    settled = openai.fold_settled(rest) if any(_has_output(v) for v in rest) else None
    if settled is not None:
        return settled
    return _unbraced(rest, deltas) or openai.fold_typed(
        [(kind, v) for at, (kind, *_) in enumerate(frames.rows) if (v := frames.value(at)) is not None])


def _unbraced(rest: list[dict[str, object]], deltas: list[str]) -> ResponseFacts | None:
    """The facts without the deltas when neither they nor the other events' texts
    hold a "{": the reply's text then cannot open like a generated title, the one
    line field text deltas feed (other deltas feed only tool-call arguments, not
    on the line). None when they might: fold them all."""
    # JSON spells a "{" only as itself or as an escape \u007b: the deltas hold none
    # but their own opening braces when they hold no such escape and one brace each
    joined = "".join(deltas)
    if joined.count("{") != len(deltas) or "\\u007" in joined:
        return None
    facts = openai.fold_events(rest)
    return None if "{" in facts.text else facts


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
        """Account one frame ("c2u"/"u2c"; text None for binary or unrecorded); returns the turns it ended."""
        if text is None:
            return []
        if direction == "c2u":
            request = self.opens_turn("c2u", text)
            return [] if request is None else self.open_turn(request, ts, size)
        if direction == "u2c":
            return self.on_upstream(ts, text, size)
        return []

    def on_upstream(self, ts: float, text: str, size: int) -> list[Turn]:
        """Account one upstream text frame; returns the turn it ended, if it did."""
        return [turn for _, turn in self.upstream_run(ts, [(text, size, False)])]

    def upstream_run(self, ts: float, found: list[tuple[str | None, int, bool]]) -> list[tuple[int, Turn]]:
        """Account upstream frames that came together ((text or None, size, not kept)
        each, as a relay hands them over); returns each turn ended, with the position
        of the frame that ended it. The recorder calls it for most frames: one call a run."""
        ended: list[tuple[int, Turn]] = []
        turn = self._open
        for at, (text, size, truncated) in enumerate(found):
            if turn is None:
                break  # only a response.create opens a turn: the run's rest belongs to none
            if text is None or truncated:
                continue
            if text.startswith(_HEADS[0]):  # (`event_kind`'s common case, inlined)
                end = text.find('"', _HEAD_LEN)
                head = text[_HEAD_LEN:end]
                kind = None if end < 0 or "\\" in head else head
            else:
                kind = event_kind(text)
            rows = turn.frames.rows
            if kind is None or kind in _ENDS:
                value = as_dict(decode(text))
                if value is None:
                    continue  # not a JSON object: not an event of the turn
                named = value.get("type")
                kind = named if isinstance(named, str) else None  # None: folded whole, whatever it is
                turn.frames.keep(len(rows), value)
            rows.append((kind, text, ts, size))
            if kind in _ENDS:
                ended.append((at, self._close(ts, partial=False, error=None)))
                turn = None
        return ended

    def opens_turn(self, direction: str, text: str | None) -> dict[str, object] | None:
        """The request when this frame is a `response.create` (decoded once: pass it to `open_turn`)."""
        if direction != "c2u" or text is None:
            return None
        kind = event_kind(text)
        if kind is not None and kind != CREATE:
            return None
        event = as_dict(decode(text))
        return event if event is not None and event.get("type") == CREATE else None

    def open_request_facts(self) -> RequestFacts:
        """The facts of the open turn's request (empty when no turn is open)."""
        return RequestFacts() if self._open is None else self._open.request_facts

    def finish(self, ts: float, reason: str) -> list[Turn]:
        """The connection ended: the open turn, if any, as a partial turn with `error=reason`."""
        if self._open is None:
            return []
        return [self._close(ts, partial=True, error=reason)]

    def open_turn(self, request: dict[str, object], ts: float, size: int) -> list[Turn]:
        """A `response.create` already decoded (see `opens_turn`); returns the turn it superseded."""
        done = self.finish(ts, SUPERSEDED)
        self._open = _OpenTurn(index=self._next_index, started=ts, request=request,
                               request_facts=openai.request_facts(request), size=size)
        self._next_index += 1
        return done

    def _close(self, ts: float, partial: bool, error: str | None) -> Turn:
        turn, self._open = self._open, None
        if turn is None:
            raise AssertionError("no open turn to close")
        response = _fold(turn.frames)
        response.first_token_ts = _first_token_ts(turn.frames)
        return Turn(
            connection_id=self.connection_id, index=turn.index, started=turn.started, ended=ts,
            request=turn.request, request_facts=turn.request_facts, response=response,
            frames=turn.frames, request_kind="prewarm" if turn.request.get("generate") is False else "turn",
            first_token_ts=response.first_token_ts, partial=partial,
            error=error if error is not None or response.error is None else _error_text(response.error),
            bytes_c2u=turn.size,
        )


__all__ = ["CREATE", "Frames", "SUPERSEDED", "Turn", "TurnTracker", "decode", "event_kind"]
