// The Usage view: cost and tokens by day, model, project and session as
// inline SVG bars, cache efficiency, and the latest rate-limit state.
// The numbers come from the same code as `python -m ccxray usage`.

import {api} from "./api.js";
import {clear, el, svg} from "./dom.js";
import * as fmt from "./format.js";

const BAR_W = 360;

function hbars(title, groups, label = (k) => k) {
  const rows = Object.entries(groups).slice(0, 15);
  const max = Math.max(...rows.map(([, t]) => t.cost), 1e-9);
  const h = 22;
  const chart = svg("svg", {class: "hbars", viewBox: `0 0 ${BAR_W + 380} ${rows.length * h + 4}`, preserveAspectRatio: "xMinYMin meet", role: "img", "aria-label": title});
  rows.forEach(([key, t], i) => {
    const w = Math.max(1, (t.cost / max) * BAR_W);
    const tip = svg("title", {}, `${label(key)}: ${fmt.cost(t.cost)}, ${t.calls} calls, ${fmt.tokens(t.input + t.cacheRead + t.cacheWrite)} in, ${fmt.tokens(t.output)} out`);
    chart.append(svg("g", {transform: `translate(0 ${i * h + 2})`}, tip,
      svg("text", {x: 0, y: 14, class: "lbl"}, label(key).slice(0, 34)),
      svg("rect", {x: 250, y: 3, width: w, height: 14, rx: 2, class: "bar-rect"}),
      svg("text", {x: 256 + w, y: 14, class: "val"}, fmt.cost(t.cost) + " · " + t.calls)));
  });
  return el("section", {class: "usage-box"}, el("h3", {text: title}), rows.length ? chart : el("p", {class: "muted", text: "nothing yet"}));
}

function dayBars(days) {
  const rows = Object.entries(days).slice(-30);
  const max = Math.max(...rows.map(([, t]) => t.cost), 1e-9);
  const w = 44, h = 120;
  const chart = svg("svg", {class: "vbars", viewBox: `0 0 ${Math.max(rows.length, 1) * w} ${h + 34}`, preserveAspectRatio: "xMinYMin meet", role: "img", "aria-label": "cost by day"});
  rows.forEach(([day, t], i) => {
    const bh = Math.max(1, (t.cost / max) * h);
    chart.append(svg("g", {}, svg("title", {}, `${day}: ${fmt.cost(t.cost)}, ${t.calls} calls`),
      svg("rect", {x: i * w + 3, y: h - bh, width: w - 6, height: bh, rx: 2, class: "bar-rect"}),
      svg("text", {x: i * w + w / 2, y: h + 14, class: "lbl", "text-anchor": "middle"}, day.slice(5))));
  });
  return el("section", {class: "usage-box wide"}, el("h3", {text: "Cost by day (UTC)"}), rows.length ? chart : el("p", {class: "muted", text: "nothing yet"}));
}

function tile(label, value, title) {
  return el("div", {class: "tile", title}, el("div", {class: "muted", text: label}), el("div", {class: "big", text: value}));
}

export function quotaText(limits) {
  const parts = [];
  const a = limits?.anthropic?.headers;
  if (a) {
    const util = Number(a["anthropic-ratelimit-unified-5h-utilization"]);
    const reset = Number(a["anthropic-ratelimit-unified-5h-reset"]);
    if (isFinite(util)) parts.push({label: "Claude 5h " + fmt.pct(util), fraction: util,
      title: "Anthropic unified 5-hour limit" + (isFinite(reset) ? ", resets " + new Date(reset * 1000).toLocaleString() : "") + " (" + (a["anthropic-ratelimit-unified-status"] || "") + ")"});
    const remaining = Number(a["anthropic-ratelimit-tokens-remaining"]), limit = Number(a["anthropic-ratelimit-tokens-limit"]);
    if (isFinite(remaining) && isFinite(limit) && limit > 0) parts.push({label: "tokens " + fmt.pct(1 - remaining / limit), fraction: 1 - remaining / limit,
      title: "Anthropic token limit, resets " + (a["anthropic-ratelimit-tokens-reset"] || "?")});
  }
  const c = limits?.codex?.limits;
  const windows = c?.rate_limits || c;
  for (const [name, w] of [["5h", windows?.primary], ["week", windows?.secondary]]) {
    if (!w || typeof w.used_percent !== "number") continue;
    const at = w.reset_at || w.resets_at;
    const resets = at ? new Date(at * 1000).toLocaleString() : "?";
    parts.push({label: "Codex " + name + " " + Math.round(w.used_percent) + "%", fraction: w.used_percent / 100,
                title: "Codex " + (w.window_minutes ? w.window_minutes + "-minute" : name) + " window, resets " + resets});
  }
  return parts;
}

export async function renderUsage(box, last) {
  clear(box, el("p", {class: "muted", text: "loading…"}));
  const report = await api.usage(last);
  const t = report.total;
  const prompt = t.input + t.cacheRead + t.cacheWrite;
  const periods = el("div", {class: "periods"}, ["", "24h", "7d", "30d"].map((p) =>
    el("a", {href: "#/usage" + (p ? "/" + p : ""), class: (last || "") === p ? "on" : "", text: p || "all time"})));
  clear(box, el("div", {class: "usage"},
    el("div", {class: "usage-top"}, periods,
      el("div", {class: "tiles"},
        tile("cost", fmt.cost(t.cost), t.unpricedCalls ? t.unpricedCalls + " calls had no price" : "USD"),
        tile("calls", String(t.calls)),
        tile("input (incl. cache)", fmt.tokens(prompt)), tile("output", fmt.tokens(t.output)),
        tile("cache reads", fmt.pct(prompt ? t.cacheRead / prompt : null), "share of prompt tokens read from cache"),
        tile("cache writes", fmt.tokens(t.cacheWrite)))),
    dayBars(report.byDay),
    hbars("By model", report.byModel), hbars("By project", report.byProject, fmt.shortPath),
    hbars("By session", report.bySession, (k) => k.slice(0, 18)),
    el("section", {class: "usage-box"}, el("h3", {text: "Rate limits"}),
      quotaText(report.rateLimits).length ? el("ul", {}, quotaText(report.rateLimits).map((q) => el("li", {text: q.label + " — " + q.title})))
                                          : el("p", {class: "muted", text: "No rate-limit headers or events seen."}))));
  return report;
}
