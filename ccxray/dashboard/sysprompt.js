// The System Prompt view: every distinct prompt (stored once by hash), the
// client version that sent it, first and last seen, and a line diff of any two.

import {api} from "./api.js";
import {badge, clear, copyButton, el} from "./dom.js";
import {renderLineDiff} from "./diff.js";
import * as fmt from "./format.js";

// The newest version and the one before it from the same client, so the
// default diff shows how a prompt evolved rather than two unrelated agents.
function latestPair(versions) {
  const family = (v) => (v.agent || "") + "|" + String(v.clientVersion || "").split(/[ /]/)[0];
  for (let j = versions.length - 1; j > 0; j--) {
    for (let i = j - 1; i >= 0; i--) {
      if (family(versions[i]) === family(versions[j])) return {a: versions[i].hash, b: versions[j].hash};
    }
  }
  return {a: null, b: versions[versions.length - 1].hash};
}

export async function renderPrompts(box, {focus} = {}) {
  clear(box, el("p", {class: "muted", text: "loading…"}));
  const versions = await api.prompts();
  if (!versions.length) { clear(box, el("p", {class: "empty", text: "No system prompt recorded yet."})); return; }
  const state = {a: null, b: null};
  const pane = el("div", {class: "prompt-pane"});
  const list = el("ul", {class: "list prompt-list"});
  const pick = (which, hash) => { state[which] = hash; draw(); show(); };
  const draw = () => list.replaceChildren(...versions.map((v) => el("li", {class: "row prompt" + (v.hash === state.a || v.hash === state.b ? " selected" : ""), dataset: {hash: v.hash}},
    el("div", {class: "row-top"}, el("code", {text: v.hash}), v.clientVersion ? badge(v.clientVersion, "type") : null, v.agent ? badge(v.agent, "agent-" + v.agent) : null),
    el("div", {class: "row-meta"}, el("span", {text: v.calls + " calls · " + v.sessions + " sessions · " + fmt.tokens(v.chars) + " chars"})),
    el("div", {class: "row-meta muted"}, el("span", {text: "first " + fmt.dateTime(v.first)}), el("span", {text: "last " + fmt.ago(v.last)})),
    el("div", {class: "snippet", text: v.preview}),
    el("div", {class: "row-meta"},
      el("button", {type: "button", class: v.hash === state.a ? "on" : "", text: "A (old)", onclick: () => pick("a", v.hash)}),
      el("button", {type: "button", class: v.hash === state.b ? "on" : "", text: "B (new)", onclick: () => pick("b", v.hash)})))));
  const show = async () => {
    if (state.a && state.b && state.a !== state.b) {
      const diff = await api.promptDiff(state.a, state.b);
      clear(pane, el("h3", {text: "Diff"}), diff ? renderLineDiff(diff) : el("p", {text: "not found"}));
      return;
    }
    const one = await api.prompt(state.b || state.a);
    clear(pane, el("h3", {text: "Prompt " + (state.b || state.a)}), copyButton(() => one?.text || ""), el("pre", {class: "prompt-text", text: one?.text || ""}));
  };
  const index = focus ? versions.findIndex((v) => v.hash === focus) : -1;
  if (index >= 0) { state.b = versions[index].hash; state.a = index > 0 ? versions[index - 1].hash : null; }
  else Object.assign(state, latestPair(versions));
  draw();
  clear(box, el("div", {class: "col"}, el("div", {class: "col-head", text: versions.length + " system prompt versions"}), list),
             el("div", {class: "col col-detail"}, pane));
  await show();
}
