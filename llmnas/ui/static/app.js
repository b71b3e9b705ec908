// Shared helpers. Every piece of text from the server is inserted with textContent (never as
// markup): candidate code, replies and messages are untrusted.
"use strict";
const llmnas = (() => {
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
    }
    return node;
  }
  async function json(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }
  function num(value, digits = 4) {
    if (value === null || value === undefined) return "—";
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return Number(value).toFixed(digits);
  }
  function acc(value) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(4);
  }
  function pct(value) {
    return value === null || value === undefined ? "—" : (100 * value).toFixed(1) + " %";
  }
  function when(seconds) {
    if (!seconds) return "—";
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
  }
  function poll(fn, ms) {
    async function tick() {
      try { await fn(); } catch (err) { console.error(err); }
      setTimeout(tick, ms);
    }
    tick();
  }
  function candidateHref(run, id) {
    return `/run/${encodeURIComponent(run)}/candidate/${Number(id)}`;
  }
  return { el, json, num, acc, pct, when, poll, candidateHref };
})();
