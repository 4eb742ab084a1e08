// The "/" filter: free words match titles, projects, models, tools, errors
// (and, in an open session, the text of requests and responses, searched by the server);
// key:value words narrow by field (model:, status:, agent:, tool:, type:).

const KEYS = ["model", "status", "agent", "tool", "type"];

export function parseQuery(text) {
  const query = {words: [], fields: {}};
  for (const word of String(text || "").toLowerCase().split(/\s+/).filter(Boolean)) {
    const colon = word.indexOf(":");
    const key = colon > 0 ? word.slice(0, colon) : "";
    if (KEYS.includes(key) && word.length > colon + 1) query.fields[key] = word.slice(colon + 1);
    else query.words.push(word);
  }
  return query;
}

export function isEmpty(query) {
  return !query.words.length && !Object.keys(query.fields).length;
}

const has = (value, needle) => String(value ?? "").toLowerCase().includes(needle);

// `bodyHit`: the server found the words in this call's request or response.
export function lineMatches(line, query, bodyHit = false) {
  const f = query.fields;
  if (f.model && !has(line.model, f.model)) return false;
  if (f.status && !(has(line.status, f.status) || (f.status === "error" && line.error))) return false;
  if (f.agent && !(has(line.agent, f.agent) || has(line.agentType, f.agent) || (f.agent === "sub" && line.isSubagent))) return false;
  if (f.tool && !(line.toolNames || []).some((t) => has(t, f.tool))) return false;
  if (f.type && !(has(line.kind, f.type) || has(line.transport, f.type) || has(line.requestKind, f.type))) return false;
  if (bodyHit) return true;
  const hay = [line.title, line.model, line.stopReason, line.error, line.cwd, line.agent, line.agentType, line.status,
               ...(line.toolNames || [])].join(" ").toLowerCase();
  return query.words.every((w) => hay.includes(w));
}

export function sessionMatches(session, query) {
  const f = query.fields;
  if (f.model && !(session.models || []).some((m) => has(m, f.model))) return false;
  if (f.agent && !(has(session.agent, f.agent) || has(session.agentType, f.agent))) return false;
  if (f.status === "error" && !session.errors) return false;
  const hay = [session.title, session.cwd, session.sessionId, session.agent, session.agentType,
               ...(session.models || [])].join(" ").toLowerCase();
  return query.words.every((w) => hay.includes(w));
}
