"""Who is talking: session, agent, sub-agent and working directory of a call.

`identify` is pure: it reads what the clients send (see shared/REAL_CLIENTS.md).

- Claude Code: `X-Claude-Code-Session-Id`, `metadata.user_id` (a JSON string
  with `session_id`, or the legacy `user_<hash>_account_<uuid>_session_<uuid>`),
  `metadata.session_id`; the cwd from the system prompt's environment block
  (`Primary working directory: ...` in 2.x, `Working directory: ...` in the
  older `<env>` block).
- Codex: `session-id` / `session_id` / `x-openai-session-id`, `thread-id`,
  `x-codex-turn-metadata` (header, or the same JSON string inside the body's
  `client_metadata`), body `metadata` / `client_metadata`; the cwd is the
  first key of the turn metadata's `workspaces`, else the `<cwd>` of the
  `<environment_context>` input item.

`SessionTracker` holds the little state identification needs across calls
(the active Claude session, agent types seen per Codex prompt). It is a
plain object: the caller serialises access and persists what it returns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from .wire import anthropic as anthropic_wire
from .wire import as_dict, as_list, get_dict, get_list, get_str, loads_json

Header = tuple[str, str]

_LEGACY_USER_ID = re.compile(r"_session_([0-9A-Za-z-]+)$")
_CLAUDE_CWD = re.compile(
    r"^[ \t]*(?:[-*][ \t]+)?(?:primary |current )?working directory[ \t]*:[ \t]*(\S[^\r\n]*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_CODEX_CWD = re.compile(r"<cwd>\s*([^<\r\n]+?)\s*</cwd>")
_FALSEY = frozenset({"", "0", "false", "no"})
ROOT_AGENT_NAME = "/root"
PROMPT_HASH_CHARS = 16


@dataclass
class Identity:
    """Session and agent facts of one call (None when the traffic does not say)."""

    session_id: str | None = None
    session_inferred: bool = False
    agent: str | None = None
    agent_type: str | None = None
    is_subagent: bool = False
    cwd: str | None = None
    thread_id: str | None = None
    turn_id: str | None = None
    request_kind: str | None = None


def header(headers: Sequence[Header], *names: str) -> str | None:
    """The first non-empty value among `names` (case-insensitive, in that order)."""
    for name in names:
        low = name.lower()
        for key, value in headers:
            if isinstance(key, str) and key.lower() == low and isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _json_object(value: object) -> dict[str, object] | None:
    """A JSON object given as a dict or as a JSON string."""
    if isinstance(value, str):
        ok, parsed = loads_json(value)
        return as_dict(parsed) if ok else None
    return as_dict(value)


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


# -- Claude ---------------------------------------------------------------------

def _is_claude(headers: Sequence[Header]) -> bool:
    agent = (header(headers, "user-agent") or "").lower()
    return agent.startswith("claude-cli/") or (header(headers, "x-app") or "").lower() == "cli"


def _claude_session(headers: Sequence[Header], body: dict[str, object] | None) -> str | None:
    metadata = get_dict(body, "metadata")
    user_id = get_str(metadata, "user_id")
    # only a JSON object can name a session_id: a failed parse of the legacy form costs an exception
    from_json = get_str(_json_object(user_id), "session_id") if user_id and user_id.lstrip()[:1] == "{" else None
    legacy = _LEGACY_USER_ID.search(user_id) if user_id else None
    return _first(
        header(headers, "x-claude-code-session-id"), from_json,
        legacy.group(1) if legacy else None, get_str(metadata, "session_id"),
    )


def claude_cwd(body: dict[str, object] | None) -> str | None:
    """The working directory named in the system prompt (or a system-role message)."""
    texts = [anthropic_wire.system_text((body or {}).get("system")) or ""]
    for raw in get_list(body, "messages") or []:
        message = as_dict(raw)
        if message is not None and message.get("role") == "system":
            texts.append(anthropic_wire.system_text(message.get("content")) or "")
    for text in texts:
        match = _CLAUDE_CWD.search(text)
        if match:
            return match.group(1).strip("`'\"")
    return None


def _identify_claude(headers: Sequence[Header], body: dict[str, object] | None) -> Identity:
    agent = "claude" if _is_claude(headers) else None
    session_id = _claude_session(headers, body)
    return Identity(
        session_id=session_id, agent=agent, cwd=claude_cwd(body),
        is_subagent=agent == "claude" and session_id is None,
    )


# -- Codex ----------------------------------------------------------------------

@dataclass(frozen=True)
class CodexHeaders:
    """What a Codex request's headers say, read once (a WebSocket's upgrade serves all its turns)."""

    session_id: str | None = None
    thread_id: str | None = None
    agent_type: str | None = None      # x-openai-agent-type / x-codex-agent-type
    subagent: str | None = None        # x-openai-subagent
    is_codex_client: bool = False      # originator or user-agent names codex
    meta: Mapping[str, object] = field(default_factory=dict)  # x-codex-turn-metadata
    cwd: str | None = None             # the metadata's first workspace


def codex_headers(headers: Sequence[Header]) -> CodexHeaders:
    """The identity parts of Codex request headers."""
    originator = (header(headers, "originator") or "").lower()
    agent = (header(headers, "user-agent") or "").lower()
    meta = _json_object(header(headers, "x-codex-turn-metadata")) or {}
    return CodexHeaders(
        session_id=header(headers, "session-id", "session_id", "x-openai-session-id"),
        thread_id=header(headers, "thread-id", "thread_id"),
        agent_type=header(headers, "x-openai-agent-type", "x-codex-agent-type"),
        subagent=header(headers, "x-openai-subagent"),
        is_codex_client=originator.startswith("codex") or agent.startswith("codex"),
        meta=meta, cwd=_workspace_cwd(meta),
    )


@dataclass
class _CodexSources:
    headers: CodexHeaders
    body: dict[str, object]
    metadata: dict[str, object]
    client: dict[str, object]
    body_meta: dict[str, object]
    is_frame: bool
    meta: dict[str, object]  # turn metadata: the body's over the header's (the frame's own turn wins)

    @property
    def turn_meta(self) -> dict[str, object]:
        """Turn-scoped metadata: a WebSocket frame's own only (the header is the upgrade's)."""
        return self.body_meta if self.is_frame else self.meta


def _codex_sources(headers: CodexHeaders, raw_body: object) -> _CodexSources:
    body = as_dict(raw_body) or {}
    client = get_dict(body, "client_metadata") or {}
    body_meta = _json_object(client.get("x-codex-turn-metadata")) or {}
    return _CodexSources(
        headers=headers, body=body, metadata=get_dict(body, "metadata") or {}, client=client,
        body_meta=body_meta, is_frame=body.get("type") == "response.create",
        meta={**headers.meta, **body_meta} if body_meta else dict(headers.meta),
    )


def _is_codex(src: _CodexSources) -> bool:
    return src.headers.is_codex_client or bool(src.headers.meta or src.body_meta)


def _agent_name_type(name: str | None) -> str | None:
    if not name:
        return None
    if name.rstrip("/") == ROOT_AGENT_NAME:
        return "default"
    return name.rstrip("/").rsplit("/", 1)[-1] or None


def _codex_agent_type(src: _CodexSources) -> str | None:
    meta = src.meta
    value = _first(
        src.headers.agent_type, get_str(meta, "agent_type"), get_str(src.metadata, "agent_type"),
        src.headers.subagent, get_str(meta, "subagent_kind"),
        _agent_name_type(get_str(meta, "agent_name")),
    )
    return value.lower() if value else None


def _codex_is_subagent(src: _CodexSources) -> bool:
    flag = src.headers.subagent
    if flag is not None and flag.lower() not in _FALSEY:
        return True
    if src.meta.get("thread_source") == "subagent" or src.metadata.get("thread_source") == "subagent":
        return True
    return src.metadata.get("is_subagent") is True


def _workspace_cwd(meta: Mapping[str, object]) -> str | None:
    workspaces = get_dict(meta, "workspaces")
    return next((k for k in workspaces or {} if k), None)


def _environment_cwd(body: dict[str, object]) -> str | None:
    for raw in reversed(get_list(body, "input") or []):
        for part in as_list((as_dict(raw) or {}).get("content")) or []:
            match = _CODEX_CWD.search(get_str(as_dict(part), "text") or "")
            if match:
                return match.group(1)
    return None


def _codex_request_kind(src: _CodexSources) -> str | None:
    if src.body.get("generate") is False:
        return "prewarm"
    kind = get_str(src.turn_meta, "request_kind")
    return kind or ("turn" if src.is_frame else None)


def identify_codex(headers: CodexHeaders, raw_body: object) -> Identity:
    """Identity of a Codex call from its headers (read once by `codex_headers`) and parsed body."""
    src = _codex_sources(headers, raw_body)
    meta, client, metadata = src.meta, src.client, src.metadata
    # `or` chains, not _first(): the input scan for an <environment_context> cwd runs only when needed
    return Identity(
        session_id=headers.session_id or get_str(meta, "session_id") or get_str(client, "session_id")
        or get_str(metadata, "session_id") or None,
        agent="codex" if _is_codex(src) else None,
        agent_type=_codex_agent_type(src),
        is_subagent=_codex_is_subagent(src),
        cwd=_workspace_cwd(src.body_meta) or headers.cwd or _workspace_cwd(metadata) or _environment_cwd(src.body),
        thread_id=headers.thread_id or get_str(meta, "thread_id") or get_str(client, "thread_id")
        or get_str(metadata, "thread_id") or None,
        turn_id=get_str(src.turn_meta, "turn_id") or get_str(client, "turn_id") or get_str(metadata, "turn_id")
        or None,
        request_kind=_codex_request_kind(src),
    )


def codex_may_name_session(headers: CodexHeaders, body: Mapping[str, object]) -> bool:
    """False when `identify_codex(headers, body)` certainly finds no session id: the
    headers name none and the body has no metadata to name one in (see its sources)."""
    return bool(headers.session_id or headers.meta or body.get("client_metadata") or body.get("metadata"))


def identify(provider: str, headers: Sequence[Header], body: object) -> Identity:
    """Identity of one call from its request headers and parsed body (None for no body).

    `provider` is "anthropic" or "openai"; anything else gives an empty Identity.
    Never raises.
    """
    if provider == "anthropic":
        return _identify_claude(headers, as_dict(body))
    if provider == "openai":
        return identify_codex(codex_headers(headers), body)
    return Identity()


# -- State across calls ------------------------------------------------------------

def prompt_hash(system_text: str) -> str:
    """sha256 of the prompt text, first 16 hex digits (the sidecar key)."""
    digest = hashlib.sha256(system_text.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:PROMPT_HASH_CHARS]


class PromptDigests:
    """`prompt_hash` remembering the last few prompts: an agent sends the same
    system prompt (~20 KB for Codex) with every turn, and comparing it with one
    seen before costs a fraction of hashing it again."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._recent: list[tuple[str, str]] = []  # (text, digest), newest last

    def __call__(self, system_text: str) -> str:
        recent = self._recent
        for at in range(len(recent) - 1, -1, -1):
            text, digest = recent[at]
            if text is system_text or (len(text) == len(system_text) and text == system_text):
                return digest
        digest = prompt_hash(system_text)
        recent.append((system_text, digest))
        if len(recent) > self._size:
            del recent[0]
        return digest


@dataclass
class _ActiveSession:
    session_id: str
    ts: float
    cwd: str | None


class SessionTracker:
    """Identity state across calls: the active Claude session, agent types per Codex prompt."""

    def __init__(self) -> None:
        self._claude: _ActiveSession | None = None
        self._prompt_agents: dict[str, str] = {}
        self.prompt_digest = PromptDigests()  # the prompt_hash every caller on this thread shares

    def resolve(self, ident: Identity, ts: float, system_text: str | None = None) -> Identity:
        """`ident` completed from earlier calls.

        A Claude call without a session id gets the most recently active Claude
        session (`session_inferred=True`, and its cwd if it has none). A Codex
        call without an agent type gets the one remembered for `system_text`.
        """
        if ident.agent == "claude":
            return self._resolve_claude(ident, ts)
        if ident.agent == "codex" and ident.agent_type is None and system_text:
            remembered = self.agent_type_for_prompt(system_text)
            if remembered is not None:
                return replace(ident, agent_type=remembered)
        return ident

    def _resolve_claude(self, ident: Identity, ts: float) -> Identity:
        active = self._claude
        if ident.session_id is not None:
            if active is None or ts >= active.ts:
                same = active is not None and active.session_id == ident.session_id
                cwd = ident.cwd or (active.cwd if same and active is not None else None)
                self._claude = _ActiveSession(ident.session_id, ts, cwd)
            return ident
        if active is None:
            return ident
        return replace(ident, session_id=active.session_id, session_inferred=True, cwd=ident.cwd or active.cwd)

    def remember_prompt_agent(self, system_text: str, agent_type: str) -> str | None:
        """Note the agent type seen with a prompt; returns its hash when that is news to persist.

        A specific type (`worker`, `explorer`, ...) is never replaced by
        `default`: a prompt shared with the root agent keeps the specific type.
        """
        if not system_text or not agent_type:
            return None
        key = self.prompt_digest(system_text)
        known = self._prompt_agents.get(key)
        if known == agent_type or (known is not None and known != "default" and agent_type == "default"):
            return None
        self._prompt_agents[key] = agent_type
        return key

    def restore_prompt_agent(self, prompt_hash: str, agent_type: str) -> None:
        """Load one persisted `openai_prompt_meta_{hash}.json` at start."""
        if prompt_hash and agent_type:
            self._prompt_agents[prompt_hash] = agent_type

    def agent_type_for_prompt(self, system_text: str) -> str | None:
        """The agent type remembered for this prompt, or None (never a guess)."""
        if not system_text:
            return None
        return self._prompt_agents.get(self.prompt_digest(system_text))
