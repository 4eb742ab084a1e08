// Numbers, times and money as people read them.

export function cost(value) {
  const n = typeof value === "object" && value ? value.total : value;
  if (typeof n !== "number" || !isFinite(n)) return "–";
  return n >= 1 ? "$" + n.toFixed(2) : n >= 0.01 ? "$" + n.toFixed(3) : "$" + n.toFixed(4);
}

export function tokens(n) {
  if (typeof n !== "number" || !isFinite(n)) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + "k";
  return String(n);
}

// Provider usage -> {input, output, cacheRead, cacheWrite}, the same rules as totals.py.
export function usageTokens(u) {
  if (!u || typeof u !== "object") return {input: 0, output: 0, cacheRead: 0, cacheWrite: 0};
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : 0);
  let input = u.input_tokens, output = u.output_tokens, details = u.input_tokens_details;
  if (input === undefined || input === null) { input = u.prompt_tokens; output = u.completion_tokens; details = u.prompt_tokens_details; }
  const cached = details && typeof details === "object" ? num(details.cached_tokens) : 0;
  return {input: num(input), output: num(output), cacheRead: num(u.cache_read_input_tokens) + cached,
          cacheWrite: num(u.cache_creation_input_tokens)};
}

// Share of the prompt served from cache (Anthropic counts reads apart from input, OpenAI inside it).
export function cacheHit(line) {
  const t = usageTokens(line.usage);
  const prompt = line.provider === "anthropic" ? t.input + t.cacheRead + t.cacheWrite : t.input;
  return prompt > 0 ? t.cacheRead / prompt : null;
}

export function pct(f) {
  return typeof f === "number" && isFinite(f) ? (f * 100).toFixed(f < 0.1 ? 1 : 0) + "%" : "–";
}

export function ms(value) {
  if (typeof value !== "number" || !isFinite(value)) return "–";
  if (value < 1000) return Math.round(value) + " ms";
  if (value < 60000) return (value / 1000).toFixed(1) + " s";
  return Math.floor(value / 60000) + "m " + Math.round((value % 60000) / 1000) + "s";
}

export function clock(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleTimeString([], {hour12: false});
}

export function dateTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString([], {hour12: false});
}

export function ago(ts, now = Date.now()) {
  const t = typeof ts === "number" ? ts : Date.parse(ts);
  if (!isFinite(t)) return "";
  const s = Math.max(0, (now - t) / 1000);
  if (s < 60) return Math.round(s) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  if (s < 86400) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}

export function bytes(n) {
  if (typeof n !== "number") return "–";
  return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : n >= 1024 ? (n / 1024).toFixed(1) + " kB" : n + " B";
}

export function shortPath(path) {
  if (!path) return "(no project)";
  const parts = String(path).split("/").filter(Boolean);
  return parts.length > 2 ? "…/" + parts.slice(-2).join("/") : String(path);
}

export function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}
