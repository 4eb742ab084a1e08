// Column 2: the turns of a session as cards, newest first. HTTP calls and
// WebSocket turns look the same; a Codex connection holds its turns (prewarm
// dimmed); calls in flight show first with a running clock.

import {badge, bar, el} from "./dom.js";
import * as fmt from "./format.js";
import {isEmpty, lineMatches} from "./search.js";

// "#3" for main-agent turns in order; sub-agent calls, title calls and prewarms are not turns.
export function numberTurns(lines) {
  const numbers = new Map();
  let n = 0;
  for (const line of lines) {
    if (line.kind === "connection" || line.requestKind === "prewarm" || line.isSubagent || line.generatedTitle) continue;
    numbers.set(line.id, ++n);
  }
  return numbers;
}

function statusBadge(line) {
  if (line.error) return badge(line.status ? String(line.status) : "error", "err", line.error);
  if (line.kind === "connection") return badge(line.status === 101 ? "closed " + (line.close?.code ?? "") : String(line.status), "");
  return badge(String(line.status ?? "?"), line.status >= 400 ? "err" : "ok");
}

function kindBadges(line) {
  return [
    line.isSubagent ? badge("sub-agent", "sub", line.sessionInferred ? "no session id of its own: placed under the active session" : "") : null,
    line.agentType && line.agentType !== "default" ? badge(line.agentType, "type") : null,
    line.requestKind === "prewarm" ? badge("prewarm", "dim") : null,
    line.generatedTitle ? badge("title: " + line.generatedTitle, "dim", "Claude Code generated the session title") : null,
    line.transport === "websocket" ? badge("ws", "dim", "WebSocket turn") : null,
  ];
}

function figures(line) {
  const t = fmt.usageTokens(line.usage);
  const hit = fmt.cacheHit(line);
  const ctx = typeof line.contextUse === "number"
    ? bar(line.contextUse, "context: " + fmt.tokens(line.contextTokens) + " of " + fmt.tokens(line.contextWindow) +
          " tokens (" + fmt.pct(line.contextUse) + ")", "ctx")
    : null;
  return el("div", {class: "figures"},
    el("span", {title: "input tokens", text: "in " + fmt.tokens(t.input)}),
    el("span", {title: "output tokens", text: "out " + fmt.tokens(t.output)}),
    el("span", {title: "cache read tokens", text: "cr " + fmt.tokens(t.cacheRead)}),
    el("span", {title: "cache write tokens", text: "cw " + fmt.tokens(t.cacheWrite)}),
    el("span", {class: hit !== null && hit < 0.5 && t.cacheRead + t.input > 4096 ? "warn" : "", title: "share of the prompt read from cache",
                text: "hit " + fmt.pct(hit)}),
    ctx,
    el("span", {class: "cost", text: fmt.cost(line.cost), title: line.costNote || "cost in USD"}));
}

function timing(line) {
  const ttft = line.ttftMs ?? line.ttfb;
  return el("div", {class: "row-meta"},
    el("span", {class: "muted", text: fmt.clock(line.ts)}),
    el("span", {text: fmt.ms(line.elapsed), title: "elapsed"}),
    ttft !== undefined && ttft !== null ? el("span", {class: "muted", text: "ttft " + fmt.ms(ttft), title: "time to first token"}) : null,
    line.stopReason ? el("span", {class: "muted", text: line.stopReason, title: "stop reason"}) : null);
}

export function turnCard(line, {number, selected, onOpen}) {
  const tools = (line.toolNames || []).slice(0, 8);
  const card = el("li", {class: "row card" + (selected ? " selected" : "") + (line.error ? " failed" : "") +
                                (line.requestKind === "prewarm" ? " prewarm" : "") + (line.isSubagent ? " subagent" : ""),
                         tabindex: "-1", role: "option", "aria-selected": selected ? "true" : "false", dataset: {id: line.id}},
    el("div", {class: "row-top"},
      el("span", {class: "num", text: number ? "#" + number : "·"}),
      el("span", {class: "model", text: line.model || line.url || ""}),
      statusBadge(line), ...kindBadges(line)),
    el("div", {class: "title", text: line.title || (line.kind === "connection" ? "WebSocket connection" : line.method + " " + line.url)}),
    timing(line),
    line.kind === "connection" ? null : figures(line),
    tools.length ? el("div", {class: "tools"}, tools.map((t) => badge(t, "tool"))) : null,
    line.error ? el("div", {class: "error-text", text: line.error}) : null);
  card.addEventListener("click", (event) => { event.stopPropagation(); onOpen(line.id); });
  return card;
}

export function pendingCard(call, now = Date.now()) {
  return el("li", {class: "row card pending", dataset: {id: call.id, started: call.receivedAt}},
    el("div", {class: "row-top"},
      el("span", {class: "spinner", "aria-hidden": "true"}),
      el("span", {class: "model", text: call.model || call.url}),
      badge(call.ended ? "finishing" : "in flight", "live"),
      call.transport === "websocket" ? badge("ws", "dim") : null),
    call.title ? el("div", {class: "title", text: call.title}) : null,
    el("div", {class: "row-meta"},
      el("span", {class: "muted", text: call.method + " " + call.url}),
      el("span", {class: "clock", text: fmt.ms(now - call.receivedAt)})));
}

function connectionGroup(conn, turns, ctx) {
  const live = ctx.pendingIds.has(conn.id) || conn.pending.length > 0;
  const head = el("div", {class: "group-head"},
    badge("WebSocket", "dim"),
    el("span", {text: fmt.plural(turns.filter((t) => t.requestKind !== "prewarm").length, "turn")}),
    conn.line ? el("span", {class: "muted", text: (conn.line.frameCounts ? (conn.line.frameCounts.clientToUpstream + conn.line.frameCounts.upstreamToClient) + " frames" : "")}) : null,
    live ? badge("open", "live") : null,
    el("button", {class: "link", type: "button", text: "frames", title: "open this connection and its frames",
                  onclick: (event) => { event.stopPropagation(); ctx.onOpen(conn.id); }}));
  const inner = el("ul", {class: "group-turns"});
  for (const p of conn.pending) inner.append(pendingCard(p));  // a turn under way: its clock shows how long
  for (const t of turns.slice().reverse()) inner.append(turnCard(t, {number: ctx.numbers.get(t.id), selected: t.id === ctx.selected, onOpen: ctx.onOpen}));
  return el("li", {class: "group" + (conn.id === ctx.selected ? " selected" : ""), dataset: {id: conn.id}}, head, inner);
}

// Renders into `list`; returns the cards in display order (for keyboard moves).
export function renderTurns(list, lines, pending, {selected, query, onOpen, more, onMore, bodyHits = new Set()}) {
  const numbers = numberTurns(lines);
  const pendingIds = new Set(pending.map((p) => p.id));
  const shown = isEmpty(query) ? lines : lines.filter((l) => lineMatches(l, query, bodyHits.has(l.id)));
  const groups = new Map();
  const items = [];
  const group = (connId) => {
    if (!groups.has(connId)) { const g = {id: connId, turns: [], line: null, pending: []}; groups.set(connId, g); items.push({group: g}); }
    return groups.get(connId);
  };
  const turnsUnderWay = pending.filter((p) => p.connectionId).sort((a, b) => b.receivedAt - a.receivedAt);
  for (const p of turnsUnderWay) group(p.connectionId).pending.push(p);  // their connections first, newest first
  for (const line of shown.slice().reverse()) {
    const connId = line.kind === "connection" ? line.id : line.connectionId;
    if (!connId) { items.push({line}); continue; }
    if (line.kind === "connection") group(connId).line = line; else group(connId).turns.unshift(line);
  }
  const ctx = {numbers, pendingIds, selected, onOpen};
  const nodes = pending.filter((p) => !p.connectionId && !groups.has(p.id)).map((p) => pendingCard(p));
  for (const item of items) {
    nodes.push(item.line ? turnCard(item.line, {number: numbers.get(item.line.id), selected: item.line.id === selected, onOpen})
                         : connectionGroup(item.group, item.group.turns, ctx));
  }
  if (more) nodes.push(el("li", {class: "more"}, el("button", {type: "button", text: "Load older calls", onclick: onMore})));
  if (!nodes.length) nodes.push(el("li", {class: "empty", text: lines.length ? "No call matches the filter." : "No calls in this session yet."}));
  list.replaceChildren(...nodes);
  return [...list.querySelectorAll(".card:not(.pending)")];
}

// Keep running clocks of pending cards moving without re-rendering the list.
export function tickClocks(list, now = Date.now()) {
  for (const card of list.querySelectorAll(".card.pending")) {
    const clock = card.querySelector(".clock");
    if (clock) clock.textContent = fmt.ms(now - Number(card.dataset.started));
  }
}
