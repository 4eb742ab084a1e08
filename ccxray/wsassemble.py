"""WebSocket connections and the Codex turns on them: frames into the
connection's frame log, ``response.create`` into an open turn, the terminal
event into the turn's index line, the close into the connection's line.

Runs on the recorder's thread only (no locks needed). Pure apart from the
wall-clock timestamps carried in by the facts themselves. Invariant: a
connection's frames are handled in sequence order (``_WsState.waiting`` holds
those that came early), so its frame log and its turns read as the wire went.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field, replace
from typing import Any

from .framelog import create_line, frame_line, frame_lines
from .inflight import InFlight
from .pricing import PriceTable
from .record import INDEX_FIELDS, WsClosed, WsFrame, WsOpened, WsRun, index_line, iso_ms
from .sessions import (
    CodexHeaders, Identity, SessionTracker, codex_headers, codex_may_name_session, identify, identify_codex,
)
from .stored import Stored
from .summarize import identity_fields, summarize_turn
from .wire.codex_ws import Turn, TurnTracker
from .writes import Writes, merge, provider_name, sidecar_meta

MAX_RECORDED_FRAME_BYTES = 64 * 1024 * 1024  # per connection; beyond it frames are logged by size
MAX_WAITING_FRAMES = 1000
# one encoder for every stored request: json.dumps builds one a call when given options
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


@dataclass
class _TurnStart:
    """What a turn's line takes from its ``response.create``: worked out when it arrives."""

    fields: dict[str, object]  # the line's identity fields
    prompt_digest: str | None
    offset: int  # where its create line starts in the frame log


@dataclass
class _WsState:
    opened: WsOpened
    identity: Identity
    tracker: TurnTracker
    headers: CodexHeaders  # the upgrade's, read once for every turn
    out: list[str] = field(default_factory=list)  # frame-log lines not yet taken by the writer
    logged: int = 0  # bytes of the frame log, those in ``out`` included
    starts: dict[int, _TurnStart] = field(default_factory=dict)  # open turn's request side, by turn index
    kept_bytes: int = 0
    turns: int = 0
    # The two pumps submit after forwarding, each in its own order, so a reply can
    # reach the recorder before the request that caused it: frames wait here until
    # every earlier sequence number has arrived (all have once the socket closed).
    waiting: list[tuple[int, int, WsFrame]] = field(default_factory=list)  # (seq, arrival, frame)
    next_seq: int = 1
    arrivals: int = 0
    creates: int = 0  # response.create frames seen: the turn tracker numbers turns the same way
    turn_fields: dict[str, Any] | None = None  # a turn line's fields that are the connection's (built once)


def _richer(known: Identity, seen: Identity) -> Identity:
    """The connection's identity, completed by what a turn revealed (cwd, agent type)."""
    return Identity(
        session_id=known.session_id or seen.session_id,
        # not from the upgrade's headers: learned from a frame, or not known at all
        session_inferred=known.session_inferred if known.session_id else True,
        agent=known.agent or seen.agent, agent_type=known.agent_type or seen.agent_type,
        is_subagent=known.is_subagent or seen.is_subagent, cwd=known.cwd or seen.cwd,
        thread_id=known.thread_id or seen.thread_id,
    )


def _connection_identity(ident: Identity) -> Identity:
    """A WebSocket whose upgrade named no session is marked inferred (DESIGN: sessionInferred)."""
    if ident.session_id is None and not ident.session_inferred:
        return replace(ident, session_inferred=True)
    return ident


def _byte_length(lines: list[str]) -> int:
    """The UTF-8 length of frame-log lines (their characters, when all are ASCII)."""
    text = "".join(lines)
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _encode(lines: list[str]) -> bytes:
    return "".join(lines).encode("utf-8", "surrogatepass")


class WsAssembler:
    """WebSocket connection and turn state; what to write for each WebSocket fact."""

    def __init__(self, prices: PriceTable, sessions: SessionTracker, stored: Stored) -> None:
        self.prices = prices
        self.sessions = sessions
        self.stored = stored
        self._ws: dict[str, _WsState] = {}
        self._dirty: list[_WsState] = []  # connections with frame-log lines not yet taken
        self._ended: list[tuple[str, list[str]]] = []  # closed connections' last frame-log lines

    def open_connections(self) -> list[str]:
        """Ids of the WebSocket connections opened and not yet closed."""
        return list(self._ws)

    def handle_opened(self, opened: WsOpened) -> None:
        headers, provider = codex_headers(opened.req_headers), provider_name(opened.provider)
        seen = identify_codex(headers, None) if provider == "openai" else identify(provider, opened.req_headers, None)
        # marked inferred from the start (as ``_richer`` marks it after a turn): every turn
        # of a connection whose upgrade named no session then says so alike
        ident = _connection_identity(self.sessions.resolve(seen, opened.started))
        self._ws[opened.id] = _WsState(opened, ident, TurnTracker(opened.id), headers)

    def handle_run(self, run: WsRun) -> Writes | None:
        """One recv's messages: in order and within the recording cap (the common
        case) in one pass; anything else message by message."""
        state = self._ws.get(run.conn_id)
        if state is None:
            return None
        found = run.found
        kept = state.kept_bytes + sum(size for text, size, _ in found if text is not None)
        if run.seq > state.next_seq or state.waiting or kept > MAX_RECORDED_FRAME_BYTES:
            writes: Writes | None = None
            for frame in run.frames():
                writes = merge(writes, self.handle_frame(frame))
            return writes
        state.kept_bytes = kept
        state.next_seq = run.seq + len(found)
        rel_ms = round((run.ts - state.opened.started) * 1000, 3)
        if run.direction != "u2c":
            return self._client_run(state, run.ts, rel_ms, found)
        lines = frame_lines(rel_ms, "u2c", found)
        if not state.out:
            self._dirty.append(state)
        state.out += lines
        return self._upstream_events(state, run.ts, lines, found)

    def _client_run(self, state: _WsState, ts: float, rel_ms: float,
                    found: list[tuple[str | None, int, bool]]) -> Writes | None:
        """Client messages in order: a ``response.create`` opens a turn, any other is logged as it came."""
        writes: Writes | None = None
        for text, size, truncated in found:
            request = None if truncated else state.tracker.opens_turn("c2u", text)
            if request is not None and text is not None:
                writes = merge(writes, self._turn_opened(state, ts, size, request, text, rel_ms))
            else:
                self._log(state, frame_line(rel_ms, "c2u", size, text, truncated))
        return writes

    def _upstream_events(self, state: _WsState, ts: float, lines: list[str],
                         found: list[tuple[str | None, int, bool]]) -> Writes | None:
        """Feed a run's events to the turn tracker; the log's length is worked out
        only where a turn ended (its line names where its terminal event's line ends)."""
        logged = state.logged
        writes: Writes | None = None
        for at, turn in state.tracker.upstream_run(ts, found):
            state.logged = logged + _byte_length(lines[:at + 1])
            writes = merge(writes, self._turn_writes(state, [turn]))
        state.logged = logged + _byte_length(lines)
        return writes

    def handle_frame(self, frame: WsFrame) -> Writes | None:
        state = self._ws.get(frame.conn_id)
        if state is None:
            return None
        if frame.seq <= state.next_seq and not state.waiting:  # in order, the common case: no heap
            state.next_seq = frame.seq + 1
            return self._ws_frame_in_order(state, frame)
        state.arrivals += 1
        heapq.heappush(state.waiting, (frame.seq, state.arrivals, frame))
        writes: Writes | None = None
        while state.waiting and (state.waiting[0][0] <= state.next_seq or len(state.waiting) > MAX_WAITING_FRAMES):
            _, _, ready = heapq.heappop(state.waiting)  # (past the cap: a dropped item left a gap; skip it)
            state.next_seq = ready.seq + 1
            writes = merge(writes, self._ws_frame_in_order(state, ready))
        return writes

    def _drain_waiting(self, state: _WsState) -> Writes | None:
        """At close every frame has been submitted: take what waits (gaps were dropped items)."""
        writes: Writes | None = None
        while state.waiting:
            _, _, frame = heapq.heappop(state.waiting)
            writes = merge(writes, self._ws_frame_in_order(state, frame))
        return writes

    def take_frames(self) -> list[tuple[str, bytes, bool]]:
        """Frame-log bytes to append before the lines handled so far are written:
        (connection id, bytes, whether the connection ended)."""
        taken = [(state.opened.id, _encode(state.out), False) for state in self._dirty if state.out]
        taken += [(conn_id, _encode(out), True) for conn_id, out in self._ended]
        for state in self._dirty:
            state.out = []
        self._dirty, self._ended = [], []
        return taken

    def frames_lost(self, conn_id: str, size: int) -> None:
        """Appending ``size`` bytes to the connection's frame log failed: later lines
        point where the log really ends (lines that named the lost bytes read back as missing)."""
        state = self._ws.get(conn_id)
        if state is not None:
            state.logged -= size

    def _log(self, state: _WsState, line: str) -> int:
        """Queue a frame-log line; returns the offset it will start at."""
        at = state.logged
        if not state.out:
            self._dirty.append(state)
        state.out.append(line)
        state.logged += len(line) if line.isascii() else len(line.encode("utf-8", "surrogatepass"))
        return at

    def _ws_frame_in_order(self, state: _WsState, frame: WsFrame) -> Writes | None:
        if frame.text is not None and state.kept_bytes + frame.size > MAX_RECORDED_FRAME_BYTES:
            frame.truncated = True
        elif frame.text is not None:
            state.kept_bytes += frame.size
        text = None if frame.truncated else frame.text
        rel_ms = round((frame.ts - state.opened.started) * 1000, 3)
        if frame.direction == "c2u":
            request = state.tracker.opens_turn("c2u", text)
            if request is not None and text is not None:
                return self._turn_opened(state, frame.ts, frame.size, request, text, rel_ms)
        line = frame_line(rel_ms, frame.direction, frame.size, frame.text, frame.truncated)
        if not state.out:  # (_log, inlined: the path every frame takes)
            self._dirty.append(state)
        state.out.append(line)
        state.logged += len(line) if line.isascii() else len(line.encode("utf-8", "surrogatepass"))
        if text is None or frame.direction != "u2c":
            return None
        turns = state.tracker.on_upstream(frame.ts, text, frame.size)
        return self._turn_writes(state, turns) if turns else None

    def _turn_opened(self, state: _WsState, ts: float, size: int, request: dict[str, object], text: str,
                     rel_ms: float) -> Writes:
        """A ``response.create``: the turn it supersedes ends; its request is identified,
        stored on its chain and logged now, so its line needs only the response."""
        done = state.tracker.open_turn(request, ts, size)
        writes = self._turn_writes(state, done) if done else Writes()
        turn_id = f"{state.opened.id}-t{state.creates}"
        facts = state.tracker.open_request_facts()
        system_text = facts.system_text
        # a frame that names no session takes the connection's identity whole: the
        # frame's own is worked out only when it may name one
        seen = identify_codex(state.headers, request) if codex_may_name_session(state.headers, request) else None
        ident = self.sessions.resolve(seen if seen and seen.session_id else state.identity, ts, system_text)
        self.stored.remember_prompt(system_text, ident, writes, "openai", state.opened.req_headers)
        if ident is not state.identity:  # (the connection's own: nothing to add)
            state.identity = _richer(state.identity, ident)
        digest = self.stored.store_system_prompt(system_text, writes)
        chain = ("ws", ident.session_id or state.opened.id, ident.is_subagent, digest)
        if "\n" not in text and self.stored.keep_whole(turn_id, request, size, chain):
            stored = text  # as HTTP requests under a disk block are: as they came
        else:
            packed = self.stored.request_sidecar(turn_id, request, chain, system_text, digest, writes)
            stored = _COMPACT_JSON(packed) if packed is not None else (
                text if "\n" not in text else json.dumps(request, ensure_ascii=False))
        offset = self._log(state, create_line(turn_id, rel_ms, size, stored))
        state.starts[state.creates] = _TurnStart(identity_fields(ident), digest, offset)
        state.creates += 1
        opened = state.opened
        writes.started.append(InFlight(turn_id, int(ts * 1000), "WS", opened.url, provider_name(opened.provider),
                                       "websocket", ident.session_id, facts.model, opened.id, facts.title))
        return writes

    def _turn_writes(self, state: _WsState, turns: list[Turn]) -> Writes:
        writes = Writes()
        for turn in turns:
            state.turns += 1
            writes.lines.append(self._turn_line(state, turn, state.starts.pop(turn.index)))
            writes.ended.append(writes.lines[-1]["id"])
        return writes

    def _turn_line(self, state: _WsState, turn: Turn, start: _TurnStart) -> dict[str, Any]:
        """The turn's index line, built in place (what ``index_line`` gives, without its copies)."""
        opened = state.opened
        if state.turn_fields is None:  # what every turn line of the connection says alike, in the line's order
            state.turn_fields = dict.fromkeys(INDEX_FIELDS)
            state.turn_fields.update(kind="turn", transport="websocket", provider=provider_name(opened.provider),
                                     method="WS", url=opened.url, isSSE=False, connectionId=opened.id)
        line = state.turn_fields.copy()
        line.update(
            id=f"{opened.id}-t{turn.index}", ts=iso_ms(turn.ended), receivedAt=int(turn.started * 1000),
            status=None if turn.partial else 200, error=turn.error, frames=[start.offset, state.logged],
        )
        line.update(summarize_turn(turn, self.prices))
        line.update(start.fields)
        line["systemPromptHash"] = start.prompt_digest
        return line

    def handle_closed(self, closed: WsClosed) -> Writes | None:
        state = self._ws.pop(closed.conn_id, None)
        if state is None:
            return None
        end_ts = state.opened.started + closed.elapsed_s
        pending = self._drain_waiting(state)
        writes = self._turn_writes(state, state.tracker.finish(end_ts, "connection closed before the turn ended"))
        if pending is not None:
            writes = merge(pending, writes) or writes
        if state.out or state.logged:
            self._ended.append((closed.conn_id, state.out))
            state.out = []  # taken as the connection's last lines, not again as a live one's
        opened = state.opened
        writes.lines.append(index_line(
            id=opened.id, ts=iso_ms(end_ts), receivedAt=int(opened.started * 1000), kind="connection",
            transport="websocket", provider=provider_name(opened.provider), method="GET", url=opened.url,
            status=closed.status, elapsed=round(closed.elapsed_s * 1000, 1), isSSE=False,
            error=closed.error, frameCounts=closed.frame_counts, byteCounts=closed.byte_counts,
            close=closed.close.to_json(), turnCount=state.turns, frames=[0, state.logged],
            **identity_fields(_connection_identity(state.identity)),
        ))
        refusal = closed.resp_body.decode("utf-8", "replace") if closed.resp_body else None
        if refusal is not None:
            writes.sidecars.append((opened.id, "res", {"refusal": refusal}))
        writes.sidecars.append((opened.id, "meta", sidecar_meta("GET", opened.url, opened.upstream_url,
                                                                opened.req_headers, closed.status,
                                                                closed.resp_headers)))
        return writes
