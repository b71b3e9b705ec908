"""The bench report: statistics, plots, ``report.md`` and ``report.json`` from a finished grid.

Units of replication are search seeds: each cell's final number is the mean over its final
training seeds, and strategies are compared on those per-cell numbers with a two-sided
Mann-Whitney U test per pair. Plots use matplotlib's object API (no pyplot global state).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmnas.repeats import pareto_front as front_ids
from llmnas.report_data import CellData, collect_cell
from llmnas.report_llm import (
    anchors_markdown,
    anytime_markdown,
    anytime_summary,
    llm_markdown,
    llm_summary,
)

if TYPE_CHECKING:
    from llmnas.bench import BenchConfig, Cell

__all__ = ["CellData", "checklist", "mann_whitney", "pareto_front", "render_markdown",
           "write_report"]  # fmt: skip


def mann_whitney(a: list[float], b: list[float]) -> dict[str, Any]:
    """Two-sided Mann-Whitney U test, with the smallest p-value these sample sizes allow.

    Without ties scipy's exact (small n) or asymptotic test is used; with ties, an exact
    permutation test (resampled, seeded, beyond 200,000 arrangements)."""
    from scipy.stats import PermutationMethod, mannwhitneyu

    n, m = len(a), len(b)
    out: dict[str, Any] = {"n_a": n, "n_b": m, "U": None, "p": None, "min_p": None}
    if n < 1 or m < 1:
        return out
    out["min_p"] = min(1.0, 2.0 / math.comb(n + m, n))
    if n < 2 and m < 2:
        return out
    tied = len(set(a) | set(b)) < n + m
    rng = np.random.default_rng(0)
    method = PermutationMethod(n_resamples=200_000, rng=rng) if tied else "auto"
    res = mannwhitneyu(a, b, alternative="two-sided", method=method)
    out["U"], out["p"] = float(res.statistic), float(res.pvalue)
    out["method"] = "permutation (ties)" if tied else "exact/asymptotic"
    return out


def pareto_front(params: list[float], acc: list[float]) -> list[tuple[float, float]]:
    """Non-dominated points (fewer params, higher accuracy), by increasing params."""
    ids = front_ids([(i, a, p) for i, (p, a) in enumerate(zip(params, acc, strict=True))])
    return sorted((params[i], acc[i]) for i in ids)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _fmt(mean: float | None, std: float | None = None, digits: int = 4) -> str:
    text = "—" if mean is None else f"{mean:.{digits}f}"
    return text if std is None or mean is None else f"{text} ± {std:.{digits}f}"


def _summarise(name: str, cells: list[CellData]) -> dict[str, Any]:
    done = [c for c in cells if c.state == "finished"]
    finals = [c.final["final"] for c in done if c.final and c.final.get("final") is not None]
    statuses = [s for c in cells for s in c.statuses]
    ok = sum(s == "ok" for s in statuses)
    fails = dict(Counter(s for s in statuses if s != "ok"))
    mean, std = _mean_std(finals)
    qd = _mean_std([c.qd_score for c in done if c.qd_score is not None])
    cov = _mean_std([c.coverage for c in done if c.coverage is not None])
    inc_params = [c.final.get("params") for c in done if c.final and c.final.get("params")]
    return {
        "strategy": name, "cells": len(cells), "finished": len(done),
        "unavailable": [c.message for c in cells if c.state == "unavailable"][:1],
        "final": finals, "final_mean": mean, "final_std": std, "incumbent_params": inc_params,
        "incumbent_val": [c.final.get("val_accuracy") for c in done if c.final],
        "qd_score": qd, "coverage": cov, "evaluations": len(statuses),
        "valid_rate": ok / len(statuses) if statuses else None, "not_ok": fails,
        "tokens": sum(c.tokens for c in cells), "cost_usd": sum(c.cost for c in cells),
        "models": sorted({m for c in cells for m in c.models}),
        "search_wall_s": _mean_std([c.times[-1] for c in done if c.times]),
    }  # fmt: skip


def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, FigureCanvasAgg(fig).figure.add_subplot(1, 1, 1)


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> str:
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path.name


def _band(ax, x: np.ndarray, curves: np.ndarray, label: str, color: str) -> float:
    """Mean (where all seeds have a score) and min..max band; returns the band's late low."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a first score
        mean = curves.mean(axis=0)
        low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
    dot = "o" if np.isfinite(mean).sum() <= 2 else None  # DARTS: one evaluation per run
    ax.plot(x, mean, label=f"{label} (n={len(curves)})", color=color, drawstyle="steps-post",
            marker=dot, markevery=[int(np.argmax(np.isfinite(mean)))] if dot else None)  # fmt: skip
    ax.fill_between(x, low, high, color=color, alpha=0.2, step="post", linewidth=0)
    tail = low[len(low) // 10 :]  # the y range follows the band after its first tenth
    return float(np.nanmin(tail)) if np.isfinite(tail).any() else np.nan


def _zoom(ax, low: float) -> None:  # keep the late, small differences visible
    if np.isfinite(low):
        top, margin = ax.dataLim.y1, 0.05 * (ax.dataLim.y1 - low)
        ax.set_ylim(max(0.0, low - margin), top + margin)


def _plots(groups: dict[str, list[CellData]], out: Path, final_label: str) -> dict[str, str]:
    colors = [f"C{i}" for i in range(10)]
    names: dict[str, str] = {}
    fig, ax = _figure()
    fig2, ax2 = _figure()
    lows = [np.nan, np.nan]
    for (name, cells), color in zip(groups.items(), colors * 10, strict=False):
        runs = [c for c in cells if c.state == "finished" and c.val]
        if not runs:
            continue
        n = max(len(c.val) for c in runs)
        curves = np.full((len(runs), n), np.nan)
        for i, c in enumerate(runs):
            curve = c.best_curve
            curves[i, : len(curve)] = curve
            curves[i, len(curve) :] = curve[-1]
        lows[0] = np.fmin(lows[0], _band(ax, np.arange(1, n + 1), curves, name, color))
        grid = np.linspace(0.0, max(c.times[-1] for c in runs), 200)
        timed = np.full((len(runs), len(grid)), np.nan)
        for i, c in enumerate(runs):
            idx = np.searchsorted(np.asarray(c.times), grid, side="right") - 1
            timed[i] = np.where(idx >= 0, c.best_curve[np.maximum(idx, 0)], np.nan)
        lows[1] = np.fmin(lows[1], _band(ax2, grid, timed, name, color))
    _zoom(ax, lows[0])
    _zoom(ax2, lows[1])
    ax.set_xscale("log")
    best = "best validation accuracy so far"
    title = "Anytime performance (mean; band: min..max over seeds)"
    names["anytime_evals"] = _save(fig, ax, out / "anytime_evals.png", "evaluations", best, title)
    title = "Anytime performance against wall time (incl. LLM/proxy time)"
    xlabel = "wall time since start [s]"
    names["anytime_time"] = _save(fig2, ax2, out / "anytime_time.png", xlabel, best, title)

    fig, ax = _figure()
    for (name, cells), color in zip(groups.items(), colors * 10, strict=False):
        pts = [
            (p, v)
            for c in cells
            for p, v in zip(c.params, c.val, strict=True)
            if p and v is not None
        ]
        if not pts:
            continue
        p, v = zip(*pts, strict=True)
        ax.scatter(p, v, s=6, alpha=0.25, color=color)
        front = pareto_front(list(p), list(v))
        fx, fy = zip(*front, strict=True)
        ax.plot(fx, fy, drawstyle="steps-post", color=color, marker="o", ms=3, label=name)
    ax.set_xscale("log")
    every = [v for cells in groups.values() for c in cells for v in c.val if v is not None]
    _zoom(ax, float(np.percentile(every, 5)) if every else np.nan)
    title = "Pareto fronts: all ok candidates of all seeds (y from 5th percentile)"
    names["pareto"] = _save(fig, ax, out / "pareto.png", "parameters", "validation accuracy", title)

    fig, ax = _figure(5.0, 3.6)
    labels = list(groups)
    for i, name in enumerate(labels):
        vals = [c.final["final"] for c in groups[name] if (c.final or {}).get("final") is not None]
        if vals:
            jitter = np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else [0.0]
            ax.scatter(np.add(i, jitter), vals, s=14, color=colors[i % 10], alpha=0.7)
            ax.errorbar(i + 0.3, np.mean(vals), yerr=np.std(vals, ddof=1) if len(vals) > 1 else 0,
                        fmt="D", color="k", ms=4, capsize=3)  # fmt: skip
    ax.set_xticks(range(len(labels)), labels)
    title = "Final score per search seed (dots), mean ± std"
    names["final"] = _save(fig, ax, out / "final.png", "", final_label, title)
    return names


def write_report(config: BenchConfig, cells: list[Cell], out: Path) -> Path:
    """Write ``report.md``, ``report.json`` and the PNGs into ``out``; returns ``report.md``."""
    from llmnas.tasks import get_task

    task, data = get_task(config.task), [collect_cell(c) for c in cells]
    groups: dict[str, list[CellData]] = {}
    for d in data:
        groups.setdefault(d.strategy, []).append(d)
    summaries = [_summarise(name, cs) for name, cs in groups.items()]
    by, names = {s["strategy"]: s["final"] for s in summaries}, list(groups)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    tests = [{"a": a, "b": b, **mann_whitney(by[a], by[b])} for a, b in pairs]
    final_label = "validation accuracy (table)" if task.tabular else "test accuracy"
    plots = _plots(groups, out, final_label)
    env = next((d.environment for d in data if d.environment), {})
    epochs = None if task.tabular else config.final_epochs or task.recipe.full_epochs
    versions = {**env.get("versions", {}), **_REPORT_LIBS}
    report = {
        "bench": config.model_dump(mode="json"),
        "task": {"name": task.name, "tabular": task.tabular, "recipe": asdict(task.recipe)},
        "final_protocol": {"metric": final_label, "epochs": epochs,
                           "seeds": 0 if task.tabular else config.final_seeds},
        "strategies": summaries, "tests": tests,
        "test_split_in_search": any(d.test_in_search for d in data),
        "environment": {"versions": versions, "hardware": env.get("hardware", {})},
        "cells": [{k: v for k, v in asdict(d).items() if k in _CELL_KEYS} for d in data],
        "plots": plots, "llm": llm_summary(groups),
        "anytime": anytime_summary(groups, config.budget),
    }  # fmt: skip
    report["checklist"] = checklist(report)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(render_markdown(report))
    return out / "report.md"


_REPORT_LIBS = {d: importlib.metadata.version(d) for d in ("scipy", "matplotlib")}
_CELL_KEYS = ("strategy", "seed", "state", "message", "qd_score", "coverage", "tokens", "final")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(r) + " |" for r in (head, ["---"] * len(head), *rows)] + [""]


def _how(task: dict[str, Any], fp: dict[str, Any]) -> str:
    if task["tabular"]:
        return ("the incumbent's validation accuracy from the NAS-Bench-201 table (tabular task: "
                "no training, and the table shipped here has no separate test split)")  # fmt: skip
    return (
        f"the incumbent (chosen on validation only) retrained for {fp['epochs']} epochs with "
        f"{fp['seeds']} seed(s) and scored once on the test split; mean over those seeds"
    )


def checklist(r: dict[str, Any]) -> dict[str, str]:
    """The NAS best-practice checklist (Lindauer & Hutter, 2020), filled from the report."""
    b, task, fp, env = r["bench"], r["task"], r["final_protocol"], r["environment"]
    seeds = list(range(b["seeds"])) if isinstance(b["seeds"], int) else b["seeds"]
    models = sorted({m for s in r["strategies"] for m in s["models"]})
    tokens = sum(s["tokens"] for s in r["strategies"])
    used = ", ".join(f"{s['strategy']} {s['evaluations']}" for s in r["strategies"])
    opts = {e["name"] or e["strategy"]: e["run"] for e in b["strategies"] if e["run"]}
    opts.update(
        {k: b["run"][k] for k in ("strategy_options", "cascade", "archive") if k in b["run"]}
    )
    test = (
        "NO: some search candidates carry test metrics" if r["test_split_in_search"]
        else "not used at all (tabular: no test split here)" if task["tabular"]
        else "yes: no search candidate has a test metric; only the final evaluation predicts "
        "the test split, once per incumbent and seed"
    )  # fmt: skip
    return {
        "Seeds": f"search seeds {seeds}; final-training seeds "
        f"{list(range(fp['seeds'])) if fp['seeds'] else 'none (tabular: no training)'}",
        "Equal budgets": f"{b['budget']} evaluations per run for every strategy (used in all: "
        f"{used}); wall-time cap {b['wall_time_s'] or 'none'}; {b['workers']} worker(s)",
        "Task and recipe": f"{task['name']}; " + ("no training here: NAS-Bench-201's tabulated "
        "results (its own training recipe)" if task["tabular"] else f"recipe {task['recipe']}"),
        "Same final evaluation for all": f"yes: {_how(task, fp)}",
        "Test split used only once": test,
        "Random search baseline": "yes"
        if any(e["strategy"] == "random" for e in b["strategies"]) else "no",
        "Tabular benchmark": "yes (NAS-Bench-201 lookup)" if task["tabular"] else "no",
        "Search hyperparameters": f"library defaults, not tuned; overrides: {opts or 'none'}",
        "LLM models and tokens": f"{', '.join(models) or 'none'}; {tokens:,} tokens",
        "Library versions": ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "Hardware": ", ".join(f"{k} {v}" for k, v in env["hardware"].items()),
        "End-to-end time": "reported above (search wall time per run, incl. LLM and proxies)",
    }  # fmt: skip


def render_markdown(r: dict[str, Any]) -> str:
    """The human-readable report from the ``report.json`` structure."""
    b, task, fp = r["bench"], r["task"], r["final_protocol"]
    seeds = list(range(b["seeds"])) if isinstance(b["seeds"], int) else b["seeds"]
    lines = [
        f"# llmnas bench: {task['name']}",
        "",
        f"Strategies {', '.join(s['strategy'] for s in r['strategies'])}; search seeds {seeds}; "
        f"budget {b['budget']} evaluations per run; {b['workers']} worker(s); search epochs "
        f"{'n/a (lookup)' if task['tabular'] else b['epochs'] or task['recipe']['epochs']}. "
        f"Final score per run: {_how(task, fp)}.",
        "",
        "## Final results",
        "",
    ]
    rows = []
    for s in r["strategies"]:
        if not s["finished"]:
            rows.append([s["strategy"], f"0/{s['cells']}", "unavailable: " + "; ".join(
                s["unavailable"]) if s["unavailable"] else "not finished"] + ["—"] * 3)  # fmt: skip
            continue
        params = np.median(s["incumbent_params"]) if s["incumbent_params"] else None
        rows.append([
            s["strategy"], f"{s['finished']}/{s['cells']}", _fmt(s["final_mean"], s["final_std"]),
            ", ".join(f"{v:.4f}" for v in s["final"]),
            "—" if params is None else f"{params:,.0f}",
            _fmt(*_mean_std([v for v in s["incumbent_val"] if v is not None])),
        ])  # fmt: skip
    head = ["strategy", "runs", f"final {fp['metric']} (mean ± std)", "per seed",
            "incumbent params (median)", "incumbent val acc"]  # fmt: skip
    lines += _table(head, rows)
    lines += anytime_markdown(r["anytime"]) if r.get("anytime") else []
    lines += ["## Search behaviour", ""]
    rows = []
    for s in r["strategies"]:
        fails = ", ".join(f"{k} {v}" for k, v in sorted(s["not_ok"].items())) or "none"
        llm = f"{s['tokens']:,} / ${s['cost_usd']:.3f}" if s["models"] or s["tokens"] else "—"
        rows.append([
            s["strategy"], str(s["evaluations"]),
            "—" if s["valid_rate"] is None else f"{s['valid_rate']:.1%} ({fails} not ok)",
            _fmt(*s["qd_score"], digits=2), _fmt(*s["coverage"], digits=3),
            _fmt(*s["search_wall_s"], digits=0), llm,
        ])  # fmt: skip
    head = ["strategy", "evaluations", "valid-code rate (ok/all)", "QD-score", "coverage",
            "search wall time per run [s]", "LLM tokens / cost"]  # fmt: skip
    lines += _table(head, rows)
    lines += llm_markdown(r.get("llm", {}))
    lines += ["## Rank tests (two-sided Mann-Whitney U on the per-run final scores)", ""]
    rows = [
        [f"{t['a']} vs {t['b']}", f"{t['n_a']} vs {t['n_b']}",
         "—" if t["U"] is None else f"{t['U']:.1f}", "—" if t["p"] is None else f"{t['p']:.4f}",
         "—" if t["min_p"] is None else f"{t['min_p']:.3g}"]
        for t in r["tests"]
    ]  # fmt: skip
    lines += _table(["pair", "n", "U", "p", "smallest p possible at this n"], rows)
    floors = [t["min_p"] for t in r["tests"] if t["min_p"] is not None]
    floor = f"At these sample sizes no pair can reach p < {min(floors):.3g}. " if floors else ""
    lines += [
        "Caveat: the unit here is the search seed, and there are few of them, so these tests "
        "have little power: a large p-value means the data cannot tell the strategies apart, "
        f"not that they are equal. {floor}No correction for multiple comparisons is applied; "
        "differences within the spread of the final-training seeds should be read as ties.",
        "",
    ]
    lines += anchors_markdown(b.get("anchors", []))
    lines += ["## Plots", ""]
    for key, caption in (("anytime_evals", "incumbent's validation accuracy (mean over its "
                          "repeated trainings where repeated) against evaluations"),
                         ("anytime_time", "the same against wall time since each run began"),
                         ("pareto", "accuracy against parameters, Pareto fronts"),
                         ("final", "final score per search seed")):  # fmt: skip
        lines += [f"![{caption}]({r['plots'][key]})", ""]
    lines += ["## Notes", "", b["notes"].strip(), ""] if b["notes"].strip() else []
    lines += ["## NAS best-practice checklist (Lindauer & Hutter, 2020)", ""]
    lines += [f"- **{k}**: {val}" for k, val in r["checklist"].items()] + [""]
    return "\n".join(lines)
