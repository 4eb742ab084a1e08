// Building DOM nodes. Recorded text only ever enters the page through
// textContent / createTextNode: prompts contain markup on purpose.

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// A bar showing `part` of `whole` (0..1), with a title saying the numbers.
export function bar(fraction, title, cls = "") {
  const f = Math.max(0, Math.min(1, Number(fraction) || 0));
  const fill = el("span", {class: "bar-fill" + (f > 0.8 ? " hot" : f > 0.5 ? " warm" : "")});
  fill.style.width = (f * 100).toFixed(1) + "%";
  return el("span", {class: "bar " + cls, title, role: "img", "aria-label": title}, fill);
}

export function badge(text, cls = "", title) {
  return el("span", {class: "badge " + cls, text, title});
}

export function copyButton(getText, label = "copy") {
  const button = el("button", {class: "copy", type: "button", text: label, title: "Copy to clipboard"});
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    try {
      await navigator.clipboard.writeText(getText());
      button.textContent = "copied";
    } catch (err) {
      button.textContent = "copy failed";
    }
    setTimeout(() => { button.textContent = label; }, 1200);
  });
  return button;
}

// A <details> whose body is built only when first opened (big bodies stay cheap).
export function lazyDetails(summary, build, {open = false, cls = ""} = {}) {
  const details = el("details", {class: cls});
  details.append(summary instanceof Node ? summary : el("summary", {text: summary}));
  let built = false;
  const fill = () => {
    if (built || !details.open) return;
    built = true;
    details.append(build());
  };
  details.addEventListener("toggle", fill);
  if (open) { details.open = true; fill(); }
  return details;
}
