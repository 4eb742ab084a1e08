// Column 1: projects (working directories), each with its sessions.

import {badge, bar, el} from "./dom.js";
import * as fmt from "./format.js";
import {isEmpty, sessionMatches} from "./search.js";

function projectsOf(sessions) {
  const groups = new Map();
  for (const s of sessions) {
    const key = s.cwd || "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s);
  }
  return [...groups.entries()];  // sessions arrive most recent first, so projects do too
}

function sessionTitle(s) {
  return s.title || (s.sessionId === "(none)" ? "calls without a session" : s.sessionId);
}

function agentLabel(s) {
  return [s.agent || "unknown agent", s.agentType && s.agentType !== "default" ? s.agentType : null].filter(Boolean).join(" · ");
}

function sessionRow(s, selected, onOpen) {
  const ctx = typeof s.contextUse === "number"
    ? bar(s.contextUse, "context: " + fmt.tokens(s.contextTokens) + " tokens, " + fmt.pct(s.contextUse) + " of the window")
    : null;
  const row = el("li", {class: "row session" + (selected ? " selected" : ""), tabindex: "-1", role: "option",
                        "aria-selected": selected ? "true" : "false", dataset: {id: s.sessionId}},
    el("div", {class: "row-top"},
      el("span", {class: "live-dot " + (s.live ? "on" : "off"), title: s.live ? "live" : "idle"}),
      el("span", {class: "title", text: sessionTitle(s)})),
    el("div", {class: "row-meta"},
      badge(agentLabel(s), "agent-" + (s.agent || "none")),
      s.subagentCalls ? badge(s.subagentCalls + " sub-agent", "sub", "calls made by sub-agents of this session") : null,
      el("span", {class: "muted", text: (s.lastModel || (s.models || [])[0] || "")})),
    el("div", {class: "row-meta"},
      el("span", {text: fmt.plural(s.turns, "turn") + " · " + fmt.plural(s.calls, "call")}),
      el("span", {text: fmt.tokens(s.input + s.cacheRead + s.cacheWrite) + " in · " + fmt.tokens(s.output) + " out"}),
      el("span", {class: "cost", text: fmt.cost(s.cost)}),
      s.errors ? badge(s.errors + " errors", "err") : null),
    el("div", {class: "row-meta"}, ctx, el("span", {class: "muted", text: fmt.ago(s.last)})));
  row.addEventListener("click", () => onOpen(s.sessionId));
  return row;
}

// Renders into `list`; returns the rows in display order (for keyboard moves).
export function renderSessions(list, sessions, {selected, query, onOpen}) {
  const shown = isEmpty(query) ? sessions : sessions.filter((s) => sessionMatches(s, query));
  const rows = [];
  const nodes = [];
  for (const [cwd, group] of projectsOf(shown)) {
    const cost = group.reduce((sum, s) => sum + (s.cost || 0), 0);
    nodes.push(el("li", {class: "project", title: cwd || "sessions without a working directory"},
      el("span", {class: "project-name", text: fmt.shortPath(cwd)}),
      el("span", {class: "muted", text: fmt.plural(group.length, "session") + " · " + fmt.cost(cost)})));
    for (const s of group) {
      const row = sessionRow(s, s.sessionId === selected, onOpen);
      rows.push(row);
      nodes.push(row);
    }
  }
  if (!nodes.length) nodes.push(el("li", {class: "empty", text: sessions.length ? "No session matches the filter." :
    "No calls recorded yet. Point an agent at this proxy (see the README)."}));
  list.replaceChildren(...nodes);
  return rows;
}
