"""From one finished call (or WebSocket turn) to the index-line fields ccxray records.

`summarize_http` parses the request and the (already content-decoded)
response, folds the provider's events, identifies the caller and prices the
usage. `summarize_turn` does the same for a turn of a Codex WebSocket.
Both are pure and never raise on odd bodies. `sessionInferred` and
everything else that needs state across calls is the caller's
`SessionTracker`'s job: `Summary.identity` is the raw, per-call identity.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Sequence

from .pricing import PriceTable
from .totals import usage_tokens
from .sessions import Header, Identity, header, identify
from .wire import RequestFacts, ResponseFacts, anthropic, loads_json, openai
from .wire.codex_ws import Turn
from .wire.sse import events_to_json, parse_sse

FIELD_NAMES = (
    "sessionId", "sessionInferred", "agent", "agentType", "isSubagent", "cwd", "model", "usage",
    "cost", "costNote", "stopReason", "msgCount", "toolCount", "title",
    "contextTokens", "contextWindow", "contextUse", "toolNames", "generatedTitle", "responseMetadata",
)  # the order summarize_http builds them in
_RATE_LIMIT_PREFIXES = (
    "anthropic-ratelimit-", "x-ratelimit-", "x-codex-primary-", "x-codex-secondary-", "x-codex-credits-",
)
MAX_TITLE_REPLY_CHARS = 1000
MAX_TOOL_NAMES = 64  # the tools a response called, listed on its line for the page's filter
_SSE_STARTS = (b"event:", b"data:", b"id:", b":")


@dataclass
class Summary:
    """What the recorder writes for one HTTP call."""

    request: object
    response: object
    is_sse: bool
    fields: dict[str, object]
    identity: Identity = field(default_factory=Identity)
    request_facts: RequestFacts = field(default_factory=RequestFacts)
    response_facts: ResponseFacts = field(default_factory=ResponseFacts)
    request_is_json: bool = False   # the request body bytes are the recorded JSON as they are
    response_is_json: bool = False  # likewise for the (decoded) response body
    response_is_raw: bool = False   # a large non-JSON body: store its bytes beside the sidecar
    response_json: bytes | None = None  # ``response`` as JSON text (SSE: made from the events' own text)

    @property
    def system_text(self) -> str | None:
        """The request's system prompt text (the key of the per-prompt agent-type memory)."""
        return self.request_facts.system_text


def _parse_body(body: bytes) -> tuple[object, bool]:
    """(request body as recorded: parsed JSON, `{"text": ...}`, `{"base64": ...}` or None, is_json)."""
    if not body:
        return None, False
    ok, value = loads_json(body)
    if ok:
        return value, True
    return _wrap_non_json(body), False


def _wrap_non_json(body: bytes) -> object:
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


def _is_sse(resp_headers: Sequence[Header], body: bytes) -> bool:
    content_type = header(resp_headers, "content-type")
    if content_type is not None:
        return "text/event-stream" in content_type.lower()
    return body.lstrip().startswith(_SSE_STARTS)


RAW_BODY_BYTES = 64 * 1024  # a non-JSON body above this is kept as raw bytes, not a JSON string


def _parse_response(resp_headers: Sequence[Header], body: bytes) -> tuple[object, bool, bool]:
    """(recorded response: SSE event list, parsed JSON, text or None, is_sse, is_json)."""
    if _is_sse(resp_headers, body):
        return events_to_json(parse_sse(body)), True, False
    if not body:
        return None, False, False
    ok, value = loads_json(body)
    if ok:
        return value, False, True
    if len(body) > RAW_BODY_BYTES:
        return {"size": len(body), "contentType": header(resp_headers, "content-type")}, False, False
    return body.decode("utf-8", "replace"), False, False


def _facts(provider: str, request: object, response: object, is_sse: bool) -> tuple[RequestFacts, ResponseFacts]:
    wire_api = anthropic if provider == "anthropic" else openai
    request_facts = wire_api.request_facts(request)
    if is_sse and isinstance(response, list):
        events = [ev.get("data") if isinstance(ev, dict) else ev for ev in response]
        fold = anthropic.fold_stream if provider == "anthropic" else openai.fold_events
        return request_facts, fold(events)
    return request_facts, wire_api.response_facts(response)


def rate_limit_headers(resp_headers: Sequence[Header]) -> dict[str, str] | None:
    """Rate-limit response headers by lower-case name (None when there are none)."""
    found = {n.lower(): v for n, v in resp_headers if n.lower().startswith(_RATE_LIMIT_PREFIXES)}
    retry = header(resp_headers, "retry-after")
    if retry is not None:
        found["retry-after"] = retry
    return found or None


def _response_metadata(resp_headers: Sequence[Header], facts: ResponseFacts) -> dict[str, object]:
    return {
        "responseId": facts.response_id,
        "requestId": header(resp_headers, "request-id", "x-request-id", "x-oai-request-id"),
        "rateLimits": rate_limit_headers(resp_headers),
        "codexRateLimits": facts.rate_limits,
        "error": facts.error,
    }


def identity_fields(ident: Identity) -> dict[str, object]:
    """The index-line fields of an Identity (use after `SessionTracker.resolve`)."""
    return {
        "sessionId": ident.session_id, "sessionInferred": ident.session_inferred, "agent": ident.agent,
        "agentType": ident.agent_type, "isSubagent": ident.is_subagent, "cwd": ident.cwd,
    }


def context_tokens(provider: str, usage: object) -> int | None:
    """Tokens of prompt the model read: Anthropic counts cache reads and writes
    apart from input_tokens, OpenAI's input_tokens already includes them."""
    if not isinstance(usage, dict):
        return None
    t = usage_tokens(usage)
    total = t["input"] + (t["cacheRead"] + t["cacheWrite"] if provider == "anthropic" else 0)
    return total or None


def _call_fields(provider: str, req: RequestFacts, res: ResponseFacts, prices: PriceTable) -> dict[str, object]:
    model = res.model or req.model
    cost, note = prices.cost(provider, model, res.usage)
    used = context_tokens(provider, res.usage)
    window = prices.context_window(model)
    return {
        "model": model, "usage": res.usage, "cost": cost, "costNote": note, "stopReason": res.stop_reason,
        "msgCount": req.msg_count, "toolCount": req.tool_count, "title": req.title,
        "contextTokens": used, "contextWindow": window,
        "contextUse": round(used / window, 4) if used and window else None,
        "toolNames": [str(c.get("name") or "(no name)") for c in res.tool_calls][:MAX_TOOL_NAMES],
        "generatedTitle": generated_title(res.text),
    }


def generated_title(text: str) -> str | None:
    """The title in a reply shaped ``{"title": "..."}``: Claude Code's session-title calls."""
    stripped = text.strip()
    if not stripped.startswith("{") or len(stripped) > MAX_TITLE_REPLY_CHARS:
        return None
    ok, value = loads_json(stripped)
    title = value.get("title") if ok and isinstance(value, dict) else None
    return title.strip()[:200] or None if isinstance(title, str) else None


def summarize_http(provider: str, req_headers: Sequence[Header], req_body: bytes,
                   resp_headers: Sequence[Header], resp_body: bytes, status: int | None,
                   prices: PriceTable, ends: dict[str, object] | None = None) -> Summary:
    """Everything the index line and sidecars need from one finished HTTP call.

    `provider` is "anthropic" or "openai"; `resp_body` is already content-decoded.
    `ends`: for a JSON body too large to keep, the top-level fields found at its
    ends (jsonends) stand for the response; `resp_body` is then not read.
    `status` is accepted for symmetry with the record (the body says more).
    """
    request, request_is_json = _parse_body(req_body)
    if ends is None:
        response, is_sse, response_is_json = _parse_response(resp_headers, resp_body)
    else:
        response, is_sse, response_is_json, resp_body = ends, False, False, b""
    response_json = None
    if is_sse:  # the events, and the JSON text of their list as it will be stored
        response, response_json = response  # type: ignore[misc]
    req_facts, res_facts = _facts(provider, request, response, is_sse)
    ident = identify(provider, req_headers, request)
    fields = identity_fields(ident)
    fields.update(_call_fields(provider, req_facts, res_facts, prices))
    fields["responseMetadata"] = _response_metadata(resp_headers, res_facts)
    return Summary(request=request, response=response, is_sse=is_sse,
                   fields=fields,
                   identity=ident, request_facts=req_facts, response_facts=res_facts,
                   request_is_json=request_is_json, response_is_json=response_is_json,
                   response_json=response_json,
                   response_is_raw=not is_sse and not response_is_json and len(resp_body) > RAW_BODY_BYTES)


def summarize_turn(turn: Turn, prices: PriceTable) -> dict[str, object]:
    """The turn-line fields of one Codex WebSocket turn (identity fields are the caller's)."""
    fields = _call_fields("openai", turn.request_facts, turn.response, prices)
    fields.update({
        "requestKind": turn.request_kind,
        "ttftMs": turn.ttft_ms,
        "elapsed": turn.elapsed_ms,
        "toolCalls": len(turn.response.tool_calls),
        "responseMetadata": {
            "responseId": turn.response.response_id,
            "rateLimits": turn.response.rate_limits,
            "error": turn.response.error,
        },
    })
    return fields
