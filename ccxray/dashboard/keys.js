// Keyboard: "/" filter, j/k or arrows move, Enter opens, Esc goes back,
// 1/2/3 switch views, t toggles the theme, "?" lists the keys.

export const KEYS = [
  ["/", "filter by text, model:, status:, agent:, tool:, type:"],
  ["j  ↓", "next session or turn"], ["k  ↑", "previous session or turn"],
  ["Enter  →", "open"], ["Esc  ←", "back (close the turn, then the session)"],
  ["1 2 3", "Sessions, System prompts, Usage"], ["[  ]", "previous / next tab of a turn"],
  ["t", "light / dark"], ["?", "this list"],
];

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

export function installKeys(actions) {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape" || event.key === "Enter") { event.target.blur(); if (event.key === "Enter") actions.move(0); }
      return;
    }
    const act = {
      "/": actions.search, "?": actions.help, "j": () => actions.move(1), "ArrowDown": () => actions.move(1),
      "k": () => actions.move(-1), "ArrowUp": () => actions.move(-1), "Enter": actions.open, "ArrowRight": actions.open,
      "Escape": actions.back, "ArrowLeft": actions.back, "1": () => actions.view("sessions"),
      "2": () => actions.view("prompts"), "3": () => actions.view("usage"), "t": actions.theme,
      "[": () => actions.tab(-1), "]": () => actions.tab(1),
    }[event.key];
    if (!act) return;
    event.preventDefault();
    act();
  });
}
