"""Turns relay facts into what is written: index lines, sidecars, shared files.

Dispatches each fact by its type and assembles HTTP calls here; WebSocket
connections and their turns are ``WsAssembler``'s (wsassemble), and what is
stored once and named afterwards is ``Stored``'s (stored), shared by both.

Runs on the recorder's thread only (no locks needed). Pure apart from the
wall-clock timestamps carried in by the facts themselves.
"""

from __future__ import annotations

import base64
from typing import Any

from . import headers as hdr
from .decode import content_encodings, decode_body
from .jsonends import json_ends
from .pricing import PriceTable
from .reqdelta import MARK, WHOLE_BELOW_BYTES
from .record import INDEX_FIELDS, HttpCall, WsClosed, WsFrame, WsOpened, WsRun, iso_ms
from .store import RawJson, ResponseWithMeta
from .sessions import Identity, SessionTracker
from .stored import Stored
from .summarize import Summary, identity_fields, summarize_http
from .writes import Writes, provider_name, sidecar_meta
from .wsassemble import WsAssembler


def _spilled_sample(head: bytes, call: HttpCall) -> bytes:
    """A body that outgrew memory, summarized from its ends: the head up to its
    last whole SSE event, then the tail from its first (usage and stop reason
    come last). A body that is not an event stream gives only its head."""
    if call.resp_headers and "text/event-stream" not in (hdr.get(call.resp_headers, "content-type") or ""):
        return head
    cut = head.rfind(b"\n\n")
    start = call.resp_tail.find(b"\n\n")
    if cut < 0 or start < 0:
        return head
    return head[:cut + 2] + call.resp_tail[start + 2:]


def _spilled_json_ends(head: bytes, call: HttpCall) -> dict[str, object] | None:
    """The line's fields of a spilled JSON body (not content-encoded), read from its
    two ends: its head alone is no JSON, so it is not parsed whole in vain."""
    content_type = hdr.get(call.resp_headers, "content-type") or ""
    if "json" not in content_type.lower() or content_encodings(call.resp_headers):
        return None
    return json_ends(head, call.resp_tail)


class Assembler:
    """Per-item logic of the recorder; owns session state, HTTP assembly and the
    ``WsAssembler`` that holds WebSocket turn state."""

    def __init__(self, prices: PriceTable, sessions: SessionTracker | None = None) -> None:
        self.prices = prices
        self.sessions = sessions or SessionTracker()
        self.stored = Stored(self.sessions)
        self.chains = self.stored.chains
        self.ws = WsAssembler(prices, self.sessions, self.stored)
        # bound once: ``handle`` makes one call per item, as when these were its own methods
        self._ws_run = self.ws.handle_run
        self._ws_frame = self.ws.handle_frame
        self._ws_opened = self.ws.handle_opened
        self._ws_closed = self.ws.handle_closed

    def forget_stored(self) -> None:
        """Forget which shared files and chain bases exist: after a failed write or a
        prune, the next requests are stored whole and name only files written anew."""
        self.stored.forget()

    def open_connections(self) -> list[str]:
        """Ids of the WebSocket connections opened and not yet closed."""
        return self.ws.open_connections()

    def take_frames(self) -> list[tuple[str, bytes, bool]]:
        """Frame-log bytes to append before the lines handled so far are written:
        (connection id, bytes, whether the connection ended)."""
        return self.ws.take_frames()

    def frames_lost(self, conn_id: str, size: int) -> None:
        """Appending ``size`` bytes to the connection's frame log failed: later lines
        point where the log really ends (lines that named the lost bytes read back as missing)."""
        self.ws.frames_lost(conn_id, size)

    def handle(self, item: object) -> Writes | None:
        """What to write for one relay fact (None: nothing yet)."""
        if isinstance(item, WsRun):  # the most frequent by far
            return self._ws_run(item)
        if isinstance(item, WsFrame):
            return self._ws_frame(item)
        if isinstance(item, HttpCall):
            return self._http(item)
        if isinstance(item, WsOpened):
            self._ws_opened(item)
            return None
        if isinstance(item, WsClosed):
            return self._ws_closed(item)
        raise TypeError(f"recorder got an unknown item {type(item).__name__}")

    # -- HTTP -------------------------------------------------------------

    def _http(self, call: HttpCall) -> Writes:
        raw = b"".join(call.resp_body)
        ends = None
        if call.resp_spill is not None:
            raw = _spilled_sample(raw, call)
            ends = _spilled_json_ends(raw, call)
        body, undecoded = decode_body(raw, call.resp_headers) if ends is None else (b"", None)
        provider = provider_name(call.provider)
        summary = summarize_http(provider, call.req_headers, call.req_body,
                                 call.resp_headers, body if undecoded is None else b"",
                                 call.status, self.prices, ends)
        ident = self.sessions.resolve(summary.identity, call.started, summary.system_text)
        response: object = summary.response
        if undecoded is not None:
            response = {"undecoded": undecoded, "size": len(raw), "base64": base64.b64encode(raw[:1 << 20]).decode()}
        line = self._call_line(call, provider, summary, ident)
        writes = Writes(lines=[line])
        digest = line["systemPromptHash"] = self.stored.store_system_prompt(summary.system_text, writes)
        if self._is_complete_stream(call.error, summary.is_sse, summary.response_facts.is_terminal):
            line["error"] = None
        stored_req = self._http_request(call, summary, ident, digest, writes)
        if summary.response_is_raw and undecoded is None:
            writes.raw.append((f"{call.id}_res.body", body))
            response = {**summary.response, "bodyFile": f"{call.id}_res.body"}  # type: ignore[dict-item]
        whole_json = summary.response_is_json and undecoded is None
        if call.resp_spill is not None:  # the body is in its file already; the line comes from its ends
            writes.raw.clear()
            whole_json = False
            response = {"bodyFile": call.resp_spill, "size": call.resp_size, "spilled": True,
                        "truncated": call.resp_truncated}
        if call.resp_note:
            line["recordingError"] = call.resp_note
        if response is summary.response and summary.response_json is not None:
            response = RawJson(summary.response_json)  # the same list, not encoded a second time
        meta = sidecar_meta(call.method, call.url, call.upstream_url, call.req_headers, call.status, call.resp_headers)
        writes.sidecars += [
            (call.id, "req", stored_req),
            (call.id, "res", ResponseWithMeta(RawJson(body) if whole_json else response, meta)),
        ]
        self.stored.remember_prompt(summary.system_text, ident, writes, provider, call.req_headers)
        return writes

    @staticmethod
    def _call_line(call: HttpCall, provider: str, summary: Summary, ident: Identity) -> dict[str, Any]:
        """The call's index line, built in place (what ``index_line`` gives, without its copies)."""
        line: dict[str, Any] = dict.fromkeys(INDEX_FIELDS)
        line.update(
            id=call.id, ts=iso_ms(call.started + (call.elapsed_s or 0)), receivedAt=int(call.started * 1000),
            kind="call", transport="http", provider=provider, method=call.method, url=call.url,
            status=call.status, elapsed=None if call.elapsed_s is None else round(call.elapsed_s * 1000, 1),
            ttfb=None if call.first_byte_s is None else round(call.first_byte_s * 1000, 1),
            isSSE=summary.is_sse, error=call.error,
        )
        line.update(summary.fields)
        line.update(identity_fields(ident))
        if call.resp_truncated:
            line["responseTruncated"] = True
        return line

    def _http_request(self, call: HttpCall, summary: Summary, ident: Identity, digest: str | None,
                      writes: Writes) -> object:
        """The request sidecar: packed on its session's chain, else (small, or not an
        object) the body as it came."""
        if not summary.request_is_json:
            return summary.request
        chain = (provider_name(call.provider), ident.session_id, ident.is_subagent, digest)
        if self.stored.keep_whole(call.id, summary.request, len(call.req_body), chain):
            return RawJson(call.req_body)
        packed = self.stored.request_sidecar(call.id, summary.request, chain, summary.system_text, digest, writes)
        return RawJson(call.req_body) if packed is None else packed

    @staticmethod
    def _is_complete_stream(error: str | None, is_sse: bool, is_terminal: bool) -> bool:
        """A client that hangs up after the terminal event of a stream (Codex over HTTP
        leaves before the chunked terminator) got everything: a normal end."""
        return bool(error) and is_sse and is_terminal and str(error).startswith("client disconnected")
