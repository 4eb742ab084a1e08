// The page's controller: state, routing by location.hash, the three views,
// live updates and keys. Views render from state; nothing here builds HTML
// from strings.
//   #/                           sessions
//   #/s/SESSION[/t/TURN[/TAB]]   a session, a turn and one of its tabs
//   #/prompts[/HASH]             system prompt versions
//   #/usage[/7d]                 usage

import {api} from "./api.js";
import {bar, clear, el} from "./dom.js";
import * as fmt from "./format.js";
import {KEYS, installKeys} from "./keys.js";
import {connectLive} from "./live.js";
import {watchHealth} from "./health.js";
import {parseQuery} from "./search.js";
import {renderSessions} from "./sessions.js";
import {renderTurnView} from "./timeline.js";
import {renderTurns, tickClocks} from "./turns.js";
import {renderPrompts} from "./sysprompt.js";
import {quotaText, renderUsage} from "./usage.js";

const PAGE = 200;
const TABS = ["timeline", "changes", "system", "raw"];
const $ = (id) => document.getElementById(id);
const state = {
  view: "sessions", session: null, turn: null, tab: "timeline", sessions: [], lines: [], more: false,
  pending: new Map(), query: parseQuery(""), sessionRows: [], turnRows: [], cursor: {sessions: -1, turns: -1},
  limits: {}, turnView: null, bodyHits: new Set(),
};

const enc = encodeURIComponent;
const sessionHash = (sid) => "#/s/" + enc(sid);
const turnHash = (sid, tid, tab) => sessionHash(sid) + "/t/" + enc(tid) + (tab && tab !== "timeline" ? "/" + tab : "");

function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

// -- views ---------------------------------------------------------------

function showView(name) {
  state.view = name;
  for (const v of ["sessions", "prompts", "usage"]) {
    $("view-" + v).hidden = v !== name;
    document.querySelector(`.tabs [data-view="${v}"]`).setAttribute("aria-current", v === name ? "page" : "false");
  }
}

function drawSessions() {
  state.sessionRows = renderSessions($("session-list"), state.sessions, {
    selected: state.session, query: state.query, onOpen: (sid) => go(sessionHash(sid))});
  const live = state.sessions.filter((s) => s.live).length;
  $("sessions-head").textContent = fmt.plural(state.sessions.length, "session") + (live ? " · " + live + " live" : "");
}

function pendingHere() {
  return [...state.pending.values()].filter((p) => p.sessionId === state.session || (!p.sessionId && state.session));
}

function drawTurns() {
  if (!state.session) {
    clear($("turn-list"), el("li", {class: "empty", text: "Pick a session to see its turns."}));
    state.turnRows = [];
    return;
  }
  state.turnRows = renderTurns($("turn-list"), state.lines, pendingHere(), {
    selected: state.turn, query: state.query, more: state.more, onMore: loadOlder, bodyHits: state.bodyHits,
    onOpen: (id) => go(turnHash(state.session, id, state.tab))});
  const s = state.sessions.find((x) => x.sessionId === state.session);
  clear($("turns-head"), el("span", {class: "title", text: s ? (s.title || s.sessionId) : state.session}),
        s ? el("span", {class: "muted", text: " · " + fmt.plural(s.turns, "turn") + " · " + fmt.cost(s.cost)}) : null);
}

function drawCrumbs() {
  const crumbs = [el("a", {href: "#/", text: "All projects"})];
  const s = state.sessions.find((x) => x.sessionId === state.session);
  if (state.view === "sessions" && state.session) {
    crumbs.push(el("span", {class: "muted", text: fmt.shortPath(s?.cwd)}));
    crumbs.push(el("a", {href: sessionHash(state.session), text: (s?.title || state.session).slice(0, 48)}));
    if (state.turn) {
      const line = state.lines.find((l) => l.id === state.turn);
      crumbs.push(el("span", {text: line?.kind === "connection" ? "connection" : "turn " + (line?.title ? "“" + line.title.slice(0, 30) + "”" : state.turn.slice(-8))}));
    }
  } else if (state.view !== "sessions") crumbs.push(el("span", {text: state.view === "prompts" ? "System prompts" : "Usage"}));
  clear($("crumbs"), ...crumbs.flatMap((c, i) => (i ? [el("span", {class: "sep", text: "›"}), c] : [c])));
  const cols = $("view-sessions");
  cols.classList.toggle("has-session", Boolean(state.session));
  cols.classList.toggle("has-turn", Boolean(state.turn));
}

function drawQuota() {
  const parts = quotaText(state.limits);
  clear($("quota"), ...parts.map((q) => el("span", {class: "quota-item", title: q.title}, bar(q.fraction, q.title, "quota-bar"), el("span", {text: q.label}))));
}

async function drawDetail() {
  const box = $("detail");
  if (!state.turn) {
    clear(box, el("div", {class: "empty"}, el("p", {text: state.session ? "Pick a turn to see what the agent sent, what came back, what it did and what it cost." : "Pick a session."}),
      el("p", {class: "muted", text: "Keys: j/k move, Enter opens, Esc goes back, / filters, ? lists all keys."})));
    return;
  }
  if (!state.turnView || state.turnView.line.id !== state.turn) {
    clear(box, el("p", {class: "muted", text: "loading…"}));
    const wanted = state.turn;
    const view = await api.turn(wanted);
    if (wanted !== state.turn) return;
    if (!view) { clear(box, el("p", {class: "error-text", text: "This call is not in the log (pruned?)."})); return; }
    state.turnView = view;
  }
  renderTurnView(box, state.turnView, {tab: state.tab, onOpen: (id) => go(turnHash(state.session, id, state.tab)),
    onTab: (tab) => {
      if (tab === state.tab) return;
      state.tab = tab;
      history.replaceState(null, "", turnHash(state.session, state.turn, tab));
    }});
}

// -- data ------------------------------------------------------------------

async function loadSessions() {
  state.sessions = await api.sessions();
  drawSessions();
}

async function loadSession() {
  state.lines = [];
  state.more = false;
  state.turnView = null;
  if (!state.session) return;
  const wanted = state.session;
  const lines = await api.entries(wanted, {limit: PAGE});
  if (wanted !== state.session) return;
  state.lines = lines;
  state.more = lines.length >= PAGE;
}

async function loadOlder() {
  if (!state.lines.length) return;
  const older = await api.entries(state.session, {before: state.lines[0].id, limit: PAGE});
  state.lines = older.concat(state.lines);
  state.more = older.length >= PAGE;
  drawTurns();
}

async function loadInflight() {
  state.pending = new Map((await api.inflight()).map((c) => [c.id, c]));
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "prompts") {
    showView("prompts");
    drawCrumbs();
    await renderPrompts($("view-prompts"), {focus: parts[1]});
    return;
  }
  if (parts[0] === "usage") {
    showView("usage");
    drawCrumbs();
    const report = await renderUsage($("view-usage"), parts[1] || "");
    state.limits = report.rateLimits || {};
    drawQuota();
    return;
  }
  showView("sessions");
  const session = parts[0] === "s" ? parts[1] || null : null;
  const turn = session && parts[2] === "t" ? parts[3] || null : null;
  state.tab = TABS.includes(parts[4]) ? parts[4] : "timeline";
  const sessionChanged = session !== state.session || !state.turnRows.length;
  if (session !== state.session) {
    state.session = session;
    state.cursor.turns = -1;
    await loadSession();
    searchBodiesSoon();
  }
  if (turn !== state.turn) state.turnView = null;
  state.turn = turn;
  // only the selection moves when the lists stay the same: redrawing 200 rows costs more than the turn
  markSelected($("session-list"), state.session);
  if (sessionChanged) drawTurns(); else markSelected($("turn-list"), state.turn);
  drawCrumbs();
  await drawDetail();
}

let searchTimer = null;
function searchBodiesSoon() {
  clearTimeout(searchTimer);
  state.bodyHits = new Set();
  const words = state.query.words.join(" ");
  if (!state.session || !words) return;
  const session = state.session;
  searchTimer = setTimeout(async () => {
    const ids = await api.search(session, words);
    if (session !== state.session || words !== state.query.words.join(" ")) return;
    state.bodyHits = new Set(ids);
    drawTurns();
  }, 250);
}

function markSelected(list, id) {
  for (const row of list.querySelectorAll("[aria-selected], .group")) {
    const on = row.dataset.id === id;
    row.classList.toggle("selected", on);
    if (row.hasAttribute("aria-selected")) row.setAttribute("aria-selected", on ? "true" : "false");
  }
}

// -- live ------------------------------------------------------------------

let sessionsTimer = null;
function refreshSessionsSoon() {
  clearTimeout(sessionsTimer);
  sessionsTimer = setTimeout(() => loadSessions().then(drawCrumbs).catch(console.warn), 300);
}

function onLine(line) {
  refreshSessionsSoon();
  if (line.responseMetadata?.rateLimits || line.responseMetadata?.codexRateLimits) {
    const meta = line.responseMetadata;
    if (line.kind !== "turn" && meta.rateLimits) state.limits[line.provider === "anthropic" ? "anthropic" : "openai"] = {headers: meta.rateLimits};
    const codex = meta.codexRateLimits || (line.kind === "turn" ? meta.rateLimits : null);
    if (codex) state.limits.codex = {limits: codex};
    drawQuota();
  }
  state.pending.delete(line.id);
  if ((line.sessionId || "(none)") === state.session && !state.lines.some((l) => l.id === line.id)) {
    state.lines.push(line);
  }
  if (state.session) drawTurns();
}

// Calls and turns under way; a WebSocket connection counts only while none of its turns does.
function inflightCount() {
  const calls = [...state.pending.values()];
  const busy = new Set(calls.map((p) => p.connectionId).filter(Boolean));
  return calls.filter((p) => !busy.has(p.id)).length;
}

function onInflight(event) {
  const {phase, ...call} = event;
  if (phase === "start") state.pending.set(call.id, call);
  else if (state.pending.has(call.id)) {
    state.pending.get(call.id).ended = true;
    // its line normally follows at once; drop the card if none ever comes
    setTimeout(() => { if (state.pending.delete(call.id)) drawTurns(); }, 15000);
  }
  const count = inflightCount();
  $("inflight").textContent = count ? count + " in flight" : "";
  if (state.session) drawTurns();
  if (phase === "start" && call.sessionId && !state.sessions.some((s) => s.sessionId === call.sessionId)) refreshSessionsSoon();
}

function onStatus(status) {
  const node = $("live");
  node.textContent = status;
  node.className = "live-status " + status;
}

async function onReconnect() {
  await Promise.all([loadSessions(), loadInflight()]);
  if (state.session) {
    const keepTurn = state.turnView;
    await loadSession();
    state.turnView = keepTurn;
  }
  drawTurns();
}

// -- keys ------------------------------------------------------------------

function activeColumn() {
  return state.session ? "turns" : "sessions";
}

function move(delta) {
  if (state.view !== "sessions") return;
  const col = activeColumn();
  const rows = col === "turns" ? state.turnRows : state.sessionRows;
  if (!rows.length) return;
  let index = state.cursor[col];
  if (index < 0 || index >= rows.length) {
    const current = col === "turns" ? state.turn : state.session;
    index = Math.max(0, rows.findIndex((r) => r.dataset.id === current));
    if (delta < 0 && !current) index = 0;
  } else index = Math.max(0, Math.min(rows.length - 1, index + delta));
  state.cursor[col] = index;
  for (const r of rows) r.classList.remove("cursor");
  rows[index].classList.add("cursor");
  rows[index].focus({preventScroll: true});
  rows[index].scrollIntoView({block: "nearest"});
}

function openCursor() {
  if (state.view !== "sessions") return;
  const col = activeColumn();
  const rows = col === "turns" ? state.turnRows : state.sessionRows;
  const row = rows[state.cursor[col]];
  if (!row) return move(0);
  if (col === "sessions") { state.cursor.turns = -1; go(sessionHash(row.dataset.id)); }
  else go(turnHash(state.session, row.dataset.id, state.tab));
}

function back() {
  if ($("help").open) return $("help").close();
  if (state.view !== "sessions") return go("#/");
  if (state.turn) return go(sessionHash(state.session));
  if (state.session) return go("#/");
}

function switchTab(delta) {
  if (!state.turn || !state.turnView || state.turnView.line.kind === "connection") return;
  state.tab = TABS[(TABS.indexOf(state.tab) + delta + TABS.length) % TABS.length];
  go(turnHash(state.session, state.turn, state.tab));
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "light" : "dark";
  try { localStorage.setItem("ccxray-theme", document.documentElement.dataset.theme); } catch (err) { /* private mode */ }
}

function setUpChrome() {
  try {
    const saved = localStorage.getItem("ccxray-theme");
    if (saved === "dark" || saved === "light") document.documentElement.dataset.theme = saved;
  } catch (err) { /* private mode */ }
  $("theme").addEventListener("click", toggleTheme);
  $("help-btn").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  clear($("help-keys"), ...KEYS.map(([k, what]) => el("div", {class: "key-row"}, el("kbd", {text: k}), el("span", {text: what}))));
  $("search").addEventListener("input", () => {
    state.query = parseQuery($("search").value);
    state.cursor = {sessions: -1, turns: -1};
    drawSessions();
    drawTurns();
    searchBodiesSoon();
  });
  installKeys({
    search: () => { $("search").focus(); $("search").select(); }, help: () => $("help").showModal(),
    move, open: openCursor, back, tab: switchTab, theme: toggleTheme,
    view: (name) => go(name === "sessions" ? (state.session ? sessionHash(state.session) : "#/") : "#/" + name),
  });
  setInterval(() => { if (state.pending.size) tickClocks($("turn-list")); }, 250);
  setInterval(() => { if (state.view === "sessions") drawSessions(); }, 30000);  // "3m ago" and live/idle age
}

async function start() {
  setUpChrome();
  window.addEventListener("hashchange", () => route().catch(showError));
  try {
    await Promise.all([loadSessions(), loadInflight()]);
    await route();
  } catch (err) {
    showError(err);
  }
  performance.mark("ccxray-drawn");
  connectLive({onLine, onInflight, onStatus, onReconnect: () => onReconnect().catch(showError)});
  watchHealth($("health"), api.health);
  api.usage("").then((report) => { state.limits = {...report.rateLimits, ...state.limits}; drawQuota(); }).catch(console.warn);
  document.body.dataset.ready = "1";
  performance.mark("ccxray-ready");  // first render done: read by tools/bench_dashboard.py
}

function showError(err) {
  console.error(err);
  $("live").textContent = "cannot reach the proxy API";
  $("live").className = "live-status offline";
}

start();
