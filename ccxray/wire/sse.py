"""Incremental Server-Sent Events parser (WHATWG HTML, "Parsing an event stream").

Theory of operation: bytes are decoded as UTF-8 incrementally (a character
split across feeds is joined; invalid bytes become U+FFFD; one leading BOM is
dropped), then cut into lines at CRLF, LF or CR. A CR that ends one feed and
an LF that starts the next are one line end, tracked by `_skip_lf`. Fields
accumulate into an event that is dispatched on a blank line, and only if at
least one `data` field was seen. At end of stream an unterminated event is
discarded, as the spec requires.

Invariants: `_buf` never holds a line terminator; `feed` never raises.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass

from . import loads_json

_LINE_END = re.compile(r"\r\n|\r|\n")
MAX_RETRY_DIGITS = 12


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (None for the default "message"), data and last event id."""

    event: str | None
    data: str
    id: str | None


class SseParser:
    """Feed bytes in any chunking; get back the events completed by each chunk."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._buf = ""
        self._skip_lf = False
        self._event_type = ""
        self._data: list[str] = []
        self._last_id = ""
        self.retry_ms: int | None = None

    def feed(self, data: bytes) -> list[SseEvent]:
        """Parse more of the stream; returns the events it completed."""
        text = self._decoder.decode(data)
        if not text:
            return []
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        buf = self._buf + text
        events: list[SseEvent] = []
        pos = 0
        for match in _LINE_END.finditer(buf):
            event = self._line(buf[pos:match.start()])
            if event is not None:
                events.append(event)
            pos = match.end()
        self._buf = buf[pos:]
        self._skip_lf = pos == len(buf) and buf.endswith("\r")
        return events

    def close(self) -> list[SseEvent]:
        """End of stream: any incomplete line or event is discarded (always [])."""
        self._decoder.decode(b"", final=True)
        self._buf = ""
        self._data = []
        self._event_type = ""
        return []

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._field(name, value)
        return None

    def _field(self, name: str, value: str) -> None:
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            # Digits only; longer than any sane delay is ignored (int() caps huge strings).
            if value.isascii() and value.isdigit() and len(value) <= MAX_RETRY_DIGITS:
                self.retry_ms = int(value)

    def _dispatch(self) -> SseEvent | None:
        data, event_type = self._data, self._event_type
        self._data, self._event_type = [], ""
        if not data:
            return None
        return SseEvent(event=event_type or None, data="\n".join(data), id=self._last_id or None)


def parse_sse(data: bytes) -> list[SseEvent]:
    """All complete events of a whole SSE body: what SseParser gives for it in
    any chunking, in one pass over its lines (the recorder reads whole bodies;
    the parser's per-feed bookkeeping costs it ~3x)."""
    text = data.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    lines.pop()  # the unterminated last line (or "" after a final line end) is never dispatched
    events: list[SseEvent] = []
    event_type, last_id = "", ""
    data_lines: list[str] = []
    for line in lines:
        if not line:
            if data_lines:
                events.append(SseEvent(event_type or None, "\n".join(data_lines), last_id or None))
                data_lines = []
            event_type = ""
            continue
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
    return events


def event_to_json(ev: SseEvent) -> dict[str, object]:
    """How an SSE event is recorded: `{"event": name|None, "data": JSON value or the string}`."""
    ok, value = loads_json(ev.data)
    return {"event": ev.event, "data": value if ok else ev.data}


def events_to_json(events: list[SseEvent]) -> tuple[list[dict[str, object]], bytes]:
    """``event_to_json`` of each event, and the JSON bytes of that list made from
    the events' own text: a data that parsed is valid JSON as it stands, so the
    recorder writes it as it came instead of encoding it again."""
    parsed: list[dict[str, object]] = []
    parts: list[str] = []
    names: dict[str | None, str] = {None: "null"}  # a stream uses a handful of event names
    for ev in events:
        ok, value = loads_json(ev.data)
        parsed.append({"event": ev.event, "data": value if ok else ev.data})
        name = names.get(ev.event)
        if name is None:
            name = names[ev.event] = json.dumps(ev.event, ensure_ascii=False)
        data = ev.data if ok else json.dumps(ev.data, ensure_ascii=False)
        parts.append(f'{{"event":{name},"data":{data}}}')
    return parsed, ("[" + ",".join(parts) + "]").encode("utf-8", "surrogatepass")
