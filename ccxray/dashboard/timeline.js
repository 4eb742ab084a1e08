// Column 3: one turn. Tabs: the conversation timeline, what changed since
// the previous turn, the system prompt's parts, and the raw JSON. A
// WebSocket connection shows its turns and its frames instead.

import {api} from "./api.js";
import {badge, bar, clear, copyButton, el, lazyDetails} from "./dom.js";
import {renderChanges} from "./diff.js";
import * as fmt from "./format.js";
import {jsonTree} from "./raw.js";

const LONG_TEXT = 4000;

function textBlock(text, cls = "text") {
  const node = el("div", {class: cls});
  if (text.length <= LONG_TEXT) { node.textContent = text; return node; }
  node.textContent = text.slice(0, LONG_TEXT) + "…";
  node.append(el("button", {class: "link", type: "button", text: " show all " + text.length + " chars",
                            onclick: () => { node.textContent = text; }}));
  return node;
}

function inputBlock(input) {
  const text = typeof input === "string" ? input : JSON.stringify(input, null, 2);
  return el("div", {class: "tool-input"}, el("pre", {text: text ?? ""}), copyButton(() => text ?? ""));
}

function itemNode(item, inReply = false) {
  switch (item.kind) {
    case "text": return textBlock(item.text || "");
    case "injected":
      return lazyDetails(el("summary", {class: "injected-sum"}, badge("injected", "dim"),
                            el("span", {text: (item.text.match(/^\s*<([a-zA-Z_-]+)/) || [, "block"])[1] + " · " + item.text.length + " chars"})),
                         () => textBlock(item.text, "text injected"), {cls: "injected"});
    case "thinking":
    case "reasoning":
      return lazyDetails(el("summary", {}, badge(item.kind, "think"), el("span", {class: "muted", text: (item.text || "").slice(0, 90)})),
                         () => textBlock(item.text || "", "text thinking"), {cls: "thinking"});
    case "tool_call": return toolCall(item, inReply);
    case "tool_result":
      return lazyDetails(el("summary", {}, badge("tool result", item.isError ? "err" : "tool"), el("span", {class: "muted", text: (item.id || "") + " · " + (item.text || "").length + " chars"})),
                         () => textBlock(item.text || "", "text result"), {cls: "tool-result" + (item.isError ? " failed" : ""), open: (item.text || "").length < 400});
    case "web_search": return el("div", {class: "tool-call"}, badge("web_search", "tool"), el("span", {text: item.text || ""}));
    case "image": return el("div", {class: "muted", text: item.text});
    default:
      return lazyDetails(el("summary", {}, badge("unknown block " + (item.type || ""), "warn")), () => el("pre", {text: item.text || ""}), {cls: "unknown"});
  }
}

function toolCall(item, inReply) {
  const box = el("div", {class: "tool-call"},
    el("div", {class: "tool-head"}, badge("tool call", "tool"), el("b", {text: item.name || "(no name)"}), el("span", {class: "muted", text: item.id || ""})),
    inputBlock(item.input));
  if (item.result) {
    box.append(el("div", {class: "tool-output" + (item.result.isError ? " failed" : "")},
      el("div", {class: "muted", text: (item.result.isError ? "result (error)" : "result") + (inReply ? ", from the next request" : "")}),
      textBlock(item.result.text || "", "text result")));
  } else if (inReply && item.id) {
    box.append(el("div", {class: "muted small", text: "result: not in a later request (yet)"}));
  }
  return box;
}

function messageNode(message) {
  if (message.role === "system" || message.role === "developer") {
    // instructions the client injects as messages: visible, but folded like other injected blocks
    const size = message.items.reduce((n, i) => n + (i.text || "").length, 0);
    return el("div", {class: "msg role-" + message.role},
      el("div", {class: "msg-role", text: message.role}),
      lazyDetails(el("summary", {class: "injected-sum"}, badge("injected", "dim"),
                     el("span", {class: "muted", text: size + " chars · " + (message.items[0]?.text || "").slice(0, 80)})),
                  () => el("div", {class: "msg-items"}, message.items.map((i) => itemNode(i))), {cls: "injected"}));
  }
  return el("div", {class: "msg role-" + message.role},
    el("div", {class: "msg-role", text: message.role}),
    el("div", {class: "msg-items"}, message.items.map(itemNode)));
}

function timelineTab(view) {
  const {messages} = view.conversation;
  const from = view.changes.newFrom;
  const box = el("div", {class: "timeline"});
  if (from > 0) {
    box.append(lazyDetails(el("summary", {class: "earlier", text: fmt.plural(from, "earlier message") + " (unchanged since the previous turn)"}),
                           () => el("div", {}, messages.slice(0, from).map(messageNode)), {cls: "earlier-box"}));
  }
  box.append(...messages.slice(from).map(messageNode));
  const reply = el("div", {class: "msg role-assistant reply"},
    el("div", {class: "msg-role", text: "reply"}),
    el("div", {class: "msg-items"}, view.reply.items.length ? view.reply.items.map((i) => itemNode(i, true)) : el("div", {class: "muted", text: "(no content)"})));
  if (view.reply.partial) reply.append(el("div", {class: "warn-text", text: "The stream ended before the model finished: this reply is partial."}));
  box.append(reply);
  return box;
}

function systemTab(view) {
  const total = view.systemParts.reduce((sum, p) => sum + (p.tokens || 0), 0);
  const line = view.line;
  return el("div", {class: "sysparts"},
    el("p", {class: "muted", text: "Token counts are estimates (characters / 4)."}),
    line.systemPromptHash ? el("a", {href: "#/prompts/" + line.systemPromptHash, text: "This prompt among all versions (" + line.systemPromptHash + ")"}) : null,
    el("ul", {}, view.systemParts.map((p) => el("li", {},
      lazyDetails(el("summary", {},
        el("span", {class: "part-name", text: p.name}),
        p.tokens !== null ? bar(total ? p.tokens / total : 0, p.tokens + " of ~" + total + " tokens", "part") : null,
        el("span", {class: "muted", text: p.tokens !== null ? "~" + fmt.tokens(p.tokens) + " tokens" : p.chars + " chars"})),
        () => textBlock(p.text, "text"))))),
    view.conversation.tools.length ? el("p", {class: "muted", text: view.conversation.tools.length + " tools offered"}) : null);
}

function rawTab(id) {
  const box = el("div", {class: "raw", text: "loading…"});
  api.entry(id).then((entry) => {
    if (!entry) { box.textContent = "not found"; return; }
    const {request, response, meta, ...line} = entry;
    clear(box, jsonTree(request, "request"), jsonTree(response, "response"), jsonTree(meta, "headers (redacted)"), jsonTree(line, "index line"));
  }).catch((err) => { box.textContent = String(err); });
  return box;
}

function header(line) {
  const t = fmt.usageTokens(line.usage);
  return el("div", {class: "detail-head"},
    el("div", {class: "row-top"},
      el("b", {text: line.model || line.url}), badge(String(line.status ?? "?"), line.error || line.status >= 400 ? "err" : "ok"),
      line.isSubagent ? badge("sub-agent", "sub") : null, line.requestKind === "prewarm" ? badge("prewarm", "dim") : null,
      el("span", {class: "muted", text: fmt.dateTime(line.ts)})),
    el("div", {class: "figures"},
      el("span", {text: "in " + fmt.tokens(t.input)}), el("span", {text: "out " + fmt.tokens(t.output)}),
      el("span", {text: "cache read " + fmt.tokens(t.cacheRead)}), el("span", {text: "cache write " + fmt.tokens(t.cacheWrite)}),
      el("span", {text: "hit " + fmt.pct(fmt.cacheHit(line))}), el("span", {class: "cost", text: fmt.cost(line.cost)}),
      el("span", {text: fmt.ms(line.elapsed)}), line.stopReason ? el("span", {text: line.stopReason}) : null,
      typeof line.contextUse === "number" ? bar(line.contextUse, "context " + fmt.tokens(line.contextTokens) + " / " + fmt.tokens(line.contextWindow), "ctx") : null),
    line.error ? el("div", {class: "error-text", text: line.error}) : null,
    line.readError ? el("div", {class: "error-text read-error", text: "The recorded request cannot be read back: " + line.readError}) : null);
}

function tabs(panes, selected, onSelect) {
  const bodies = new Map();
  const content = el("div", {class: "tab-body"});
  const strip = el("div", {class: "subtabs", role: "tablist"});
  const show = (name) => {
    for (const button of strip.children) button.setAttribute("aria-selected", button.dataset.tab === name ? "true" : "false");
    if (!bodies.has(name)) bodies.set(name, panes[name]());
    content.replaceChildren(bodies.get(name));
    onSelect(name);
  };
  for (const name of Object.keys(panes)) {
    strip.append(el("button", {type: "button", role: "tab", dataset: {tab: name}, text: name, onclick: () => show(name)}));
  }
  show(panes[selected] ? selected : Object.keys(panes)[0]);
  return [strip, content];
}

export function renderTurnView(box, view, {tab, onTab, onOpen}) {
  if (view.line.kind === "connection") return renderConnection(box, view, {onOpen});
  const panes = {
    timeline: () => timelineTab(view),
    changes: () => renderChanges(view, onOpen),
    system: () => systemTab(view),
    raw: () => rawTab(view.line.id),
  };
  const cacheBreak = view.changes.cacheBreak ? el("div", {class: "cache-break", text: "Cache break: " + view.changes.cacheBreak}) : null;
  clear(box, header(view.line), cacheBreak, ...tabs(panes, tab, onTab));
}

function frameRow(frame) {
  const text = typeof frame.data === "string" ? frame.data : JSON.stringify(frame.data);
  const kind = frame.data && typeof frame.data === "object" ? frame.data.type : null;
  return lazyDetails(el("summary", {class: "frame " + frame.dir},
      el("span", {class: "dir", text: frame.dir === "c2u" ? "→ upstream" : "← client"}),
      el("span", {class: "muted", text: fmt.ms(frame.ts)}), el("span", {class: "muted", text: fmt.bytes(frame.size)}),
      el("span", {text: kind || (text || "").slice(0, 80)})),
    () => el("pre", {class: "frame-text", text: text}));
}

function renderConnection(box, view, {onOpen}) {
  const line = view.line;
  const frames = el("div", {class: "frames"}, el("button", {type: "button", text: "Show frames", onclick: async (event) => {
    event.target.textContent = "loading…";
    const entry = await api.entry(line.id);
    const all = [...(entry?.request || []), ...(entry?.response || [])].sort((a, b) => a.ts - b.ts);
    frames.replaceChildren(el("p", {class: "muted", text: all.length + " frames"}), ...all.slice(0, 2000).map(frameRow));
  }}));
  clear(box, el("div", {class: "detail-head"},
      el("div", {class: "row-top"}, el("b", {text: "WebSocket connection"}), badge(String(line.status), line.error ? "err" : "ok"),
         el("span", {class: "muted", text: fmt.dateTime(line.ts)})),
      el("div", {class: "figures"},
        el("span", {text: "frames → " + (line.frameCounts?.clientToUpstream ?? 0) + " / ← " + (line.frameCounts?.upstreamToClient ?? 0)}),
        el("span", {text: "bytes → " + fmt.bytes(line.byteCounts?.clientToUpstream) + " / ← " + fmt.bytes(line.byteCounts?.upstreamToClient)}),
        el("span", {text: "closed by " + (line.close?.side ?? "?") + " " + (line.close?.code ?? "")}), el("span", {text: fmt.ms(line.elapsed)})),
      line.error ? el("div", {class: "error-text", text: line.error}) : null),
    el("h4", {text: "Turns"}),
    el("ul", {class: "conn-turns"}, view.turns.map((t) => el("li", {class: t.requestKind === "prewarm" ? "prewarm" : ""},
      el("button", {class: "link", type: "button", text: (t.requestKind === "prewarm" ? "prewarm" : t.title || t.id), onclick: () => onOpen(t.id)}),
      el("span", {class: "muted", text: " " + fmt.cost(t.cost) + " · " + fmt.ms(t.elapsed)})))),
    el("h4", {text: "Frames"}), frames);
}
