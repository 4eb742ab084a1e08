"""What is stored once and named afterwards: system prompts under ``shared/``,
the agent type seen with a Responses prompt, and requests packed on their delta
chains (reqdelta).

Runs on the recorder's thread only (no locks needed). Both assemblers (HTTP and
WebSocket) share one ``Stored``, so a prompt or chain base written by either is
named, not written again, by the other.
"""

from __future__ import annotations

from . import headers as hdr
from .reqdelta import MARK, WHOLE_BELOW_BYTES, Chains
from .sessions import Identity, SessionTracker
from .writes import Writes

MAX_REMEMBERED_PROMPTS = 10_000  # frames held back for an earlier one that may never come
# where a Responses client names its agent type (DESIGN: Sessions and agents)
AGENT_TYPE_HEADERS = ("x-openai-agent-type", "x-codex-agent-type", "x-openai-subagent", "x-codex-turn-metadata")


class Stored:
    """Which shared files and chain bases exist, so later writes only name them."""

    def __init__(self, sessions: SessionTracker) -> None:
        self.sessions = sessions
        self._prompts_stored: set[str] = set()
        self.chains = Chains()

    def forget(self) -> None:
        """Forget which shared files and chain bases exist: after a failed write or a
        prune, the next requests are stored whole and name only files written anew."""
        self._prompts_stored.clear()
        self.chains.forget()

    def keep_whole(self, call_id: str, request: object, size: int, chain: object) -> bool:
        """Whether a request is stored as it came: one under WHOLE_BELOW_BYTES is (a delta
        there saves no disk block and costs a pack and an encode per call); it still
        becomes the base its chain's next request builds on."""
        if size >= WHOLE_BELOW_BYTES or not isinstance(request, dict) or MARK in request:
            return False
        self.chains.start(chain, call_id, request)
        return True

    def request_sidecar(self, call_id: str, request: object, chain: object, system_text: str | None,
                        digest: str | None, writes: Writes) -> object | None:
        """The request as stored: packed against its chain (reqdelta), None if it cannot be."""
        packed = self.chains.pack(chain, call_id, request, system_text, digest)
        if packed is None:
            return None
        writes.shared += [(f"blob_{sha}", value) for sha, value in packed.blobs.items()]
        return packed.body

    def store_system_prompt(self, system_text: str | None, writes: Writes) -> str | None:
        """Write ``shared/system_{hash}.json`` the first time a prompt is seen; returns the hash."""
        if not system_text:
            return None
        digest = self.sessions.prompt_digest(system_text)
        if digest not in self._prompts_stored:
            if len(self._prompts_stored) > MAX_REMEMBERED_PROMPTS:
                self._prompts_stored.clear()  # the store skips files that exist; this only saves a stat
            self._prompts_stored.add(digest)
            writes.shared.append((f"system_{digest}", {"hash": digest, "text": system_text}))
        return digest

    def remember_prompt(self, system_text: str | None, ident: Identity, writes: Writes,
                        provider: str, headers: list[tuple[str, str]]) -> None:
        """Persist the agent type seen with a Responses prompt, so a restart restores it."""
        if not system_text or not ident.agent_type:
            return
        if ident.agent != "codex" and not (provider == "openai" and any(hdr.get(headers, n) for n in AGENT_TYPE_HEADERS)):
            return
        prompt_hash = self.sessions.remember_prompt_agent(system_text, ident.agent_type)
        if prompt_hash:
            writes.shared.append((f"openai_prompt_meta_{prompt_hash}", {"agentType": ident.agent_type}))
