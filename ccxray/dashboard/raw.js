// Raw JSON as a collapsible tree. Children are built only when a node is
// opened and long arrays are shown a page at a time, so a 5 MB body never
// freezes the page; strings are cut with a "show all" that reveals the rest.

import {copyButton, el} from "./dom.js";

const PAGE = 200;
const STRING_CHARS = 2000;

function preview(value) {
  if (Array.isArray(value)) return "[" + value.length + "]";
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    return "{" + keys.slice(0, 4).join(", ") + (keys.length > 4 ? ", …" : "") + "}";
  }
  return "";
}

function scalar(value) {
  if (typeof value === "string") {
    const node = el("span", {class: "j-str"});
    if (value.length <= STRING_CHARS) { node.textContent = JSON.stringify(value); return node; }
    node.textContent = JSON.stringify(value.slice(0, STRING_CHARS)) + " … ";
    node.append(el("button", {class: "link", type: "button", text: "show all " + value.length + " chars",
                              onclick: (e) => { e.stopPropagation(); node.textContent = JSON.stringify(value); }}));
    return node;
  }
  return el("span", {class: "j-" + (value === null ? "null" : typeof value), text: JSON.stringify(value)});
}

function children(value, from = 0) {
  const frag = document.createDocumentFragment();
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  for (const [key, child] of entries.slice(from, from + PAGE)) frag.append(node(key, child));
  if (entries.length > from + PAGE) {
    const more = el("button", {class: "link", type: "button", text: "show " + Math.min(PAGE, entries.length - from - PAGE) + " more of " + entries.length});
    more.addEventListener("click", () => more.replaceWith(children(value, from + PAGE)));
    frag.append(more);
  }
  return frag;
}

function node(key, value, open = false) {
  const label = key === null ? null : el("span", {class: "j-key", text: String(key) + ": "});
  if (!value || typeof value !== "object") return el("div", {class: "j-row"}, label, scalar(value));
  const details = el("details", {class: "j-node"});
  details.append(el("summary", {}, label, el("span", {class: "muted", text: preview(value)})));
  let built = false;
  const body = el("div", {class: "j-children"});
  details.append(body);
  details.addEventListener("toggle", () => {
    if (details.open && !built) { built = true; body.append(children(value)); }
  });
  if (open) details.open = true;
  return details;
}

export function jsonTree(value, title) {
  return el("div", {class: "json"},
    el("div", {class: "json-head"}, el("b", {text: title}),
       copyButton(() => JSON.stringify(value, null, 2), "copy JSON")),
    node(null, value, true));
}
