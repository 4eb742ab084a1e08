"""The parts of an agent's system prompt, with token estimates (pure).

Claude Code sends its prompt as system blocks (billing header, identity,
instructions with an ``# Environment`` section) and puts CLAUDE.md and the
skills list into ``<system-reminder>`` blocks of the first user message;
Codex sends ``instructions`` plus developer/user items holding AGENTS.md,
``<environment_context>`` and skills. Tools come from the request's tool
list; names starting ``mcp__`` are MCP tools. Estimates are characters / 4,
the usual rule of thumb, labelled as estimates on the page.
"""

from __future__ import annotations

import re
from typing import Any

CHARS_PER_TOKEN = 4
_ENV = re.compile(r"(?m)^(# Environment\b|<env>|<environment_context>)")
_PROJECT = re.compile(r"(Contents of [^\n]*(CLAUDE|AGENTS)\.md|# AGENTS\.md instructions|<user_instructions>|"
                      r"claudeMd|# claudeMd)")
_SKILLS = re.compile(r"(The following skills are available|<skills_instructions>|## Skills|# Skills)")
_VERSION = re.compile(r"cc_version=(\d+\.\d+\.\d+)")


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _part(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "chars": len(text), "tokens": estimate_tokens(text), "text": text}


def _split_system(system: str) -> list[dict[str, Any]]:
    """Core instructions and the environment block of the system text."""
    match = _ENV.search(system)
    if not match:
        return [_part("core instructions", system)] if system else []
    core, env = system[:match.start()], system[match.start():]
    return [p for p in (_part("core instructions", core), _part("environment", env)) if p["chars"]]


def _injected_texts(conv: dict[str, Any]) -> list[str]:
    """Injected and developer texts of the first messages, where clients put CLAUDE.md, AGENTS.md and skills."""
    texts = []
    for message in conv["messages"][:3]:
        for item in message["items"]:
            if item.get("kind") in ("injected", "text") and (item.get("kind") == "injected" or message["role"] in ("developer", "system")):
                texts.append(str(item.get("text") or ""))
    return texts


def system_parts(conv: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{name, chars, tokens, text}]`` for core, environment, project instructions, skills, tools."""
    parts = _split_system(conv.get("system") or "")
    for text in _injected_texts(conv):
        if _PROJECT.search(text):
            parts.append(_part("project instructions (CLAUDE.md / AGENTS.md)", text))
        elif _SKILLS.search(text):
            parts.append(_part("skills", text))
        elif _ENV.search(text):
            parts.append(_part("environment", text))
    tools = conv.get("tools") or []
    builtin = [t for t in tools if not t.startswith("mcp__")]
    mcp = [t for t in tools if t.startswith("mcp__")]
    if builtin:
        parts.append({**_part(f"tools ({len(builtin)})", ", ".join(builtin)), "tokens": None})
    if mcp:
        parts.append({**_part(f"MCP tools ({len(mcp)})", ", ".join(mcp)), "tokens": None})
    return parts


def client_version(system_text: str, user_agent: str | None) -> str | None:
    """The client version that sent a prompt: Claude Code's ``cc_version``, else the user agent."""
    match = _VERSION.search(system_text)
    if match:
        return f"claude-code {match.group(1)}"
    if user_agent:
        return user_agent.split(" ")[0]
    return None
