// "What changed since the previous turn" and line diffs of system prompts.

import {append, badge, el} from "./dom.js";
import * as fmt from "./format.js";

export function itemSummary(item) {
  if (item.kind === "tool_call") return "tool call " + (item.name || "(no name)");
  if (item.kind === "tool_result") return "tool result" + (item.isError ? " (error)" : "");
  if (item.kind === "unknown") return "unknown block " + (item.type || "");
  return item.kind;
}

export function messageLine(message) {
  const text = message.items.map((i) => i.kind === "text" ? i.text : "").join(" ").trim();
  return el("li", {class: "changed-msg"},
    badge(message.role, "role role-" + message.role),
    el("span", {class: "kinds", text: message.items.map(itemSummary).join(", ") || "(empty)"}),
    text ? el("span", {class: "snippet", text: text.length > 160 ? text.slice(0, 160) + "…" : text}) : null);
}

function fact(label, value, cls = "") {
  return el("div", {class: "fact " + cls}, el("span", {class: "muted", text: label}), el("span", {text: value}));
}

export function renderChanges(view, onOpen) {
  const c = view.changes;
  const messages = view.conversation.messages.slice(c.newFrom);
  const box = el("div", {class: "changes"});
  if (c.cacheBreak) box.append(el("div", {class: "cache-break", text: "Cache break: " + c.cacheBreak}));
  append(box, [
    c.previousId
      ? fact("compared with", "the previous request of this chain ", "")
      : fact("first request", "nothing earlier in this chain: everything is new"),
    c.previousId ? el("button", {class: "link", type: "button", text: "open previous", onclick: () => onOpen(c.previousId)}) : null,
    fact("new messages", String(c.newCount)),
    c.historyRewritten ? fact("history", "rewritten or compacted: " + c.droppedCount + " earlier messages changed or dropped", "warn") : null,
    fact("system prompt", c.systemChanged ? "changed" : "unchanged", c.systemChanged ? "warn" : ""),
    fact("tools", c.toolsAdded.length || c.toolsRemoved.length
      ? [c.toolsAdded.length ? "+" + c.toolsAdded.join(", +") : "", c.toolsRemoved.length ? "−" + c.toolsRemoved.join(", −") : ""].filter(Boolean).join("  ")
      : "unchanged", c.toolsAdded.length || c.toolsRemoved.length ? "warn" : ""),
    c.gapS !== null ? fact("gap since previous", fmt.ms(c.gapS * 1000)) : null,
    c.cacheReadBefore !== null ? fact("cache reads", fmt.tokens(c.cacheReadBefore) + " → " + fmt.tokens(c.cacheReadAfter)) : null]);
  box.append(el("h4", {text: "New since the previous turn"}),
             el("ul", {class: "changed-list"}, messages.length ? messages.map(messageLine) : el("li", {class: "muted", text: "no new messages"})));
  return box;
}

export function renderLineDiff(diff) {
  const pre = el("div", {class: "line-diff", role: "table"});
  let context = [];
  const flush = (last) => {
    // long unchanged runs fold to their edges
    if (context.length > 8) {
      const hidden = context.slice(3, last ? context.length : context.length - 3);
      pre.append(...context.slice(0, 3).map((t) => el("div", {class: "d-same", text: "  " + t})));
      const fold = el("details", {class: "d-fold"}, el("summary", {text: hidden.length + " unchanged lines"}));
      fold.addEventListener("toggle", () => { if (fold.open && fold.childNodes.length === 1) fold.append(...hidden.map((t) => el("div", {class: "d-same", text: "  " + t}))); });
      pre.append(fold);
      if (!last) pre.append(...context.slice(-3).map((t) => el("div", {class: "d-same", text: "  " + t})));
    } else pre.append(...context.map((t) => el("div", {class: "d-same", text: "  " + t})));
    context = [];
  };
  for (const [op, text] of diff.lines) {
    if (op === " ") { context.push(text); continue; }
    flush(false);
    pre.append(el("div", {class: op === "+" ? "d-add" : "d-del", text: op + " " + text}));
  }
  flush(true);
  return el("div", {},
    el("div", {class: "diff-head"}, badge("+" + diff.added, "ok"), badge("−" + diff.removed, "err"),
       el("span", {class: "muted", text: diff.old + " → " + diff.new})),
    pre);
}
