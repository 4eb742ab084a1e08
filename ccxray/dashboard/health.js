// The header's recording warning: shown only while the recorder reports writes
// that failed, frames it had to drop or bodies it left out under backlog, so a
// user knows the log is incomplete before looking for a call that is not there.

const EVERY_MS = 10000;

function problems(health) {
  const found = [];
  if (health.failures) found.push(health.failures + " failed write" + (health.failures === 1 ? "" : "s"));
  if (health.framesDropped) found.push(health.framesDropped + " frames not recorded");
  if (health.sidecarsDropped) found.push(health.sidecarsDropped + " bodies not written");
  return found;
}

export function watchHealth(node, fetchHealth) {
  async function check() {
    const health = await fetchHealth();
    const found = health ? problems(health) : [];
    node.textContent = found.length ? "recording: " + found.join(", ") : "";
    node.title = found.length && health.lastFailure ? "last failure: " + health.lastFailure : "";
    node.hidden = !found.length;
  }
  const run = () => check().catch(console.warn);
  run();
  return setInterval(run, EVERY_MS);
}
