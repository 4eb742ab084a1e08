// The live feed: new index lines and in-flight calls through /_api/events.
// EventSource reconnects by itself (the server asks for a 2 s retry); after
// a reconnect the page reloads its lists, since events were missed meanwhile.

import {feed} from "./api.js";

export function connectLive({onLine, onInflight, onStatus, onReconnect}) {
  const source = feed();
  let wasDown = false;
  source.addEventListener("open", () => {
    onStatus("live");
    if (wasDown) onReconnect();
    wasDown = false;
  });
  source.addEventListener("error", () => {
    wasDown = true;
    onStatus(source.readyState === EventSource.CLOSED ? "offline" : "reconnecting");
  });
  source.addEventListener("message", (event) => {
    try { onLine(JSON.parse(event.data)); } catch (err) { console.warn("ccxray: bad live line", err); }
  });
  source.addEventListener("inflight", (event) => {
    try { onInflight(JSON.parse(event.data)); } catch (err) { console.warn("ccxray: bad in-flight event", err); }
  });
  return source;
}
