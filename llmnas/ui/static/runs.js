// The runs page: every run under the folder, refreshed every 2 s while the page is open.
"use strict";
(() => {
  const { el, json, num, acc, pct, when, poll } = llmnas;
  const body = document.querySelector('[data-testid="runs-table"] tbody');
  const status = document.getElementById("runs-status");

  function row(run) {
    const link = el("a", { href: `/run/${encodeURIComponent(run.id)}`, "data-testid": "run-link" }, run.name);
    if (run.error) {
      return el("tr", { "data-run": run.id }, el("td", {}, link), el("td", { colspan: 12, class: "error" }, run.error));
    }
    const progress = `${num(run.candidates)} / ${num(run.budget)}` + (run.pending ? ` (+${run.pending} in flight)` : "");
    return el("tr", { "data-run": run.id },
      el("td", {}, link),
      el("td", { "data-field": "status" }, run.status),
      el("td", {}, run.task), el("td", {}, run.strategy), el("td", {}, run.model ?? "—"),
      el("td", { "data-field": "progress" }, progress),
      el("td", {}, acc(run.best_val_accuracy)),
      el("td", {}, pct(run.coverage)), el("td", {}, num(run.qd_score, 3)),
      el("td", {}, num(run.tokens)), el("td", {}, run.cost_usd ? run.cost_usd.toFixed(4) : "0"),
      el("td", {}, when(run.started)), el("td", {}, when(run.updated)));
  }

  poll(async () => {
    const data = await json("/api/runs");
    body.replaceChildren(...data.runs.map(row));
    const live = data.runs.filter((r) => r.status === "running").length;
    status.textContent = `${data.runs.length} runs under ${data.root}` + (live ? `, ${live} running` : "");
  }, 2000);
})();
