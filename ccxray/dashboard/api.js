// The data layer: the JSON API and the live feed. The page keeps the ?token=
// it was opened with and sends it on every call, so a protected proxy works.

const token = new URLSearchParams(location.search).get("token");

export function withToken(url) {
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
}

async function get(path) {
  const response = await fetch(withToken(path), {cache: "no-store"});
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

const q = encodeURIComponent;

export const api = {
  sessions: () => get("/_api/sessions"),
  entries: (session, {before, limit = 200} = {}) =>
    get("/_api/entries?limit=" + limit + (session ? "&session=" + q(session) : "") + (before ? "&before=" + q(before) : "")),
  entry: (id) => get("/_api/entries/" + q(id)),
  turn: (id) => get("/_api/turns/" + q(id)),
  inflight: () => get("/_api/inflight"),
  health: () => get("/_api/health"),
  search: (session, text) => get("/_api/search?session=" + q(session) + "&q=" + q(text)),
  prompts: () => get("/_api/prompts"),
  prompt: (hash) => get("/_api/prompts/" + q(hash)),
  promptDiff: (a, b) => get("/_api/prompts/diff?old=" + q(a) + "&new=" + q(b)),
  usage: (last) => get("/_api/usage" + (last ? "?last=" + q(last) : "")),
};

export function feed() {
  return new EventSource(withToken("/_api/events"));
}
