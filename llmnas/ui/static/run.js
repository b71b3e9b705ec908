// The run page: curves, map, front and rates from /api/runs/RUN, the candidates table from
// /api/runs/RUN/candidates; refreshed every 3 s while the page is open.
"use strict";
(() => {
  const { el, json, num, acc, pct, poll, candidateHref } = llmnas;
  const run = document.body.dataset.run;
  const api = `/api/runs/${encodeURIComponent(run)}`;
  const table = { status: "", operator: "", failure_kind: "", sort: "id", order: "asc", offset: 0, limit: 50 };
  const plotConfig = { displaylogo: false, responsive: true };
  const margin = { l: 55, r: 10, t: 30, b: 45 };
  let lastVersion = null;

  function plot(id, traces, layout) {
    Plotly.react(document.getElementById(id), traces, { margin, showlegend: false, ...layout }, plotConfig);
  }

  function openOnClick(id) {
    const div = document.getElementById(id);
    if (div.dataset.clickBound) return;
    div.dataset.clickBound = "1";
    div.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point && point.customdata !== undefined) window.location.href = candidateHref(run, point.customdata);
    });
  }

  function anytime(curve) {
    const trace = (x) => ({ x, y: curve.best, customdata: curve.id, mode: "lines+markers", line: { shape: "hv" },
      hovertemplate: "best %{y:.4f} (candidate %{customdata})<extra></extra>" });
    plot("anytime-evals", [trace(curve.evaluations)], { title: { text: "against evaluations", font: { size: 13 } },
      xaxis: { title: { text: "evaluations" } }, yaxis: { title: { text: "val. accuracy" } } });
    plot("anytime-time", [trace(curve.seconds)], { title: { text: "against wall time", font: { size: 13 } },
      xaxis: { title: { text: "seconds since the first candidate" } } });
    openOnClick("anytime-evals"); openOnClick("anytime-time");
  }

  function pareto(data) {
    for (const key of ["params", "flops"]) {
      const pts = data.points.filter((p) => p[key] !== null);
      const front = new Set(data.front[key]);
      const onFront = pts.filter((p) => front.has(p.id)).sort((a, b) => a[key] - b[key]);
      const all = { x: pts.map((p) => p[key]), y: pts.map((p) => p.acc), customdata: pts.map((p) => p.id),
        mode: "markers", marker: { size: 5, color: "#9aa6b2" }, hovertemplate: `#%{customdata}: %{y:.4f}, %{x:.3s} ${key}<extra></extra>` };
      const line = { x: onFront.map((p) => p[key]), y: onFront.map((p) => p.acc), customdata: onFront.map((p) => p.id),
        mode: "lines+markers", line: { shape: "hv", color: "#1f5fa8" }, marker: { size: 7 },
        hovertemplate: `front #%{customdata}: %{y:.4f}, %{x:.3s} ${key}<extra></extra>` };
      const shown = data.total > data.points.length ? ` (${data.points.length} of ${data.total} shown)` : "";
      plot(`pareto-${key}`, [all, line], { title: { text: `accuracy against ${key}${shown}`, font: { size: 13 } },
        xaxis: { type: "log", title: { text: key } }, yaxis: { title: { text: "val. accuracy" } } });
      openOnClick(`pareto-${key}`);
    }
  }

  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function color(t) {
    const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    const f = x - i;
    const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
    return `rgb(${c.join(",")})`;
  }

  function heatmap(map) {
    const box = document.getElementById("heatmap");
    if (map.reason) { box.replaceChildren(el("p", { class: "muted" }, map.reason)); return; }
    const NS = "http://www.w3.org/2000/svg";
    const svgEl = (tag, attrs) => { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; };
    const [nx, ny] = map.dims, size = Math.max(8, Math.min(36, Math.floor(440 / Math.max(nx, ny))));
    const left = 60, top = 10, w = nx * size, h = ny * size;
    const svg = svgEl("svg", { width: left + w + 10, height: top + h + 50, viewBox: `0 0 ${left + w + 10} ${top + h + 50}` });
    svg.append(svgEl("rect", { x: left, y: top, width: w, height: h, fill: "#eef1f4" }));
    const objs = map.cells.map((c) => c.objective);
    const lo = Math.min(...objs), hi = Math.max(...objs);
    for (const cell of map.cells) {
      const a = svgEl("a", { href: candidateHref(run, cell.id), "data-testid": "heatmap-cell", "data-id": String(cell.id) });
      a.append(svgEl("rect", { x: left + cell.x * size, y: top + (ny - 1 - cell.y) * size, width: size - 1, height: size - 1,
        fill: color(hi > lo ? (cell.objective - lo) / (hi - lo) : 1) }));
      const title = svgEl("title", {});
      title.textContent = `candidate ${cell.id}: ${map.objective} ${cell.objective.toFixed(4)}; ` +
        map.descriptors.map((d, k) => `${d} ${cell.measures[k].toFixed(3)}`).join(", ");
      a.append(title);
      svg.append(a);
    }
    const label = (x, y, text, extra = {}) => { const t = svgEl("text", { x, y, "font-size": 11, ...extra }); t.textContent = text; svg.append(t); };
    const [[x0, x1], [y0, y1]] = map.bounds;
    label(left, top + h + 14, x0.toFixed(2)); label(left + w, top + h + 14, x1.toFixed(2), { "text-anchor": "end" });
    label(left + w / 2, top + h + 32, map.descriptors[0], { "text-anchor": "middle" });
    label(left - 4, top + h, y0.toFixed(2), { "text-anchor": "end" }); label(left - 4, top + 10, y1.toFixed(2), { "text-anchor": "end" });
    label(12, top + h / 2, map.descriptors[1], { transform: `rotate(-90 12 ${top + h / 2})`, "text-anchor": "middle" });
    const legend = el("p", { class: "muted" }, `${map.cells.length} elites, coverage ${pct(map.coverage)}; colour: ${map.objective} ` +
      (objs.length ? `${lo.toFixed(4)} (dark) to ${hi.toFixed(4)} (light)` : "") + "; click a cell to open its elite");
    box.replaceChildren(svg, legend);
  }

  function rates(id, rows, empty) {
    const body = document.querySelector(`#${id} tbody`);
    if (!rows.length) { body.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted" }, empty))); return; }
    body.replaceChildren(...rows.map((r) => el("tr", {}, el("td", {}, r.name), el("td", {}, `${r.valid} / ${r.total}`), el("td", {}, pct(r.rate)))));
  }

  function options(name, values) {
    const select = document.querySelector(`#filters select[name="${name}"]`);
    const have = [...select.options].map((o) => o.value).slice(1);
    if (have.join("\u0000") === values.join("\u0000")) return;
    select.replaceChildren(el("option", { value: "" }, "all"), ...values.map((v) => el("option", { value: v }, v)));
    select.value = values.includes(table[name]) ? table[name] : "";
  }

  async function candidates() {
    const q = new URLSearchParams(Object.entries(table).filter(([, v]) => v !== ""));
    const data = await json(`${api}/candidates?${q}`);
    const rows = data.rows.map((c) => el("tr", { "data-id": String(c.id) },
      el("td", {}, el("a", { href: candidateHref(run, c.id), "data-testid": "candidate-link" }, `#${c.id}`)),
      el("td", {}, c.generation), el("td", {}, c.operator),
      el("td", {}, ...c.parent_ids.flatMap((p) => [el("a", { href: candidateHref(run, p) }, `#${p}`), " "])),
      el("td", { class: `status-${c.status}` }, c.status), el("td", {}, c.failure_kind ?? ""),
      el("td", {}, acc(c.val_accuracy)), el("td", {}, num(c.params)), el("td", {}, num(c.flops)), el("td", {}, num(c.train_seconds, 2))));
    document.querySelector("#candidates tbody").replaceChildren(...rows);
    const end = Math.min(data.offset + data.limit, data.total);
    document.getElementById("cand-count").textContent = data.total ? `${data.offset + 1}–${end} of ${data.total}` : "none match";
    document.getElementById("prev").disabled = data.offset === 0;
    document.getElementById("next").disabled = end >= data.total;
    for (const th of document.querySelectorAll("#candidates th.sortable")) {
      th.classList.toggle("sorted-asc", th.dataset.sort === table.sort && table.order === "asc");
      th.classList.toggle("sorted-desc", th.dataset.sort === table.sort && table.order === "desc");
    }
  }

  async function refresh() {
    const data = await json(api);
    for (const node of document.querySelectorAll("#run-summary [data-field]")) node.textContent = data[node.dataset.field];
    const version = `${data.candidates}/${data.pending}/${data.tokens}`;
    if (version === lastVersion) return;
    lastVersion = version;
    anytime(data.anytime);
    heatmap(data.heatmap);
    pareto(data.pareto);
    const fails = Object.entries(data.failures);
    document.querySelector("#failures tbody").replaceChildren(...(fails.length
      ? fails.map(([kind, n]) => el("tr", {}, el("td", {}, kind), el("td", {}, n)))
      : [el("tr", {}, el("td", { colspan: 2, class: "muted" }, "no failures"))]));
    rates("operators", data.operators, "no candidates yet");
    rates("instructions", data.instructions, "no prompt instructions in this run");
    for (const name of ["status", "operator", "failure_kind"]) options(name, data.filters[name]);
    await candidates();
  }

  document.getElementById("filters").addEventListener("change", (event) => {
    table[event.target.name] = event.target.value; table.offset = 0; candidates();
  });
  document.getElementById("prev").addEventListener("click", () => { table.offset = Math.max(0, table.offset - table.limit); candidates(); });
  document.getElementById("next").addEventListener("click", () => { table.offset += table.limit; candidates(); });
  for (const th of document.querySelectorAll("#candidates th.sortable")) {
    th.addEventListener("click", () => {
      if (table.sort === th.dataset.sort) table.order = table.order === "asc" ? "desc" : "asc";
      else { table.sort = th.dataset.sort; table.order = th.dataset.sort === "id" ? "asc" : "desc"; }
      table.offset = 0; candidates();
    });
  }
  poll(refresh, 3000);
})();
